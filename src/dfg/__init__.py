"""Discriminative feature generation (DFG) for imbalanced classification, and its baselines."""

__version__ = "0.1.0"


class DfgError(Exception):
    """An error the user can fix. The CLI prints its message (one line, naming the fix) and exits 2."""
