"""`python -m dfg ...` = the `dfg` command (for an environment where the package is on PYTHONPATH
but not installed, e.g. a GPU machine with its own PyTorch: scripts/gpu-check.sh)."""

import sys

from dfg.cli import main

sys.exit(main())
