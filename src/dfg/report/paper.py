"""The paper's reported results, as data (method.md §4, "Reported results": top-1 accuracy %, mean ± std
over an unstated number of runs, copied from the seed README of opensuh/DFG).

They are shown *beside* our numbers, in columns labelled "reported in the paper", and only for tasks whose
params set `tasks.<t>.paper_column`; they are never averaged with or written into our cells.
"""

from __future__ import annotations

#: The paper's row order; tables list these first, then the additions.
PAPER_METHODS: tuple[str, ...] = ("original", "finetune", "delta", "difa_cmwgan", "dfg")

#: Display names of the paper's rows. DIFA + CMWGAN is our reconstruction (method.md §3), said so here.
PAPER_LABELS: dict[str, str] = {
    "original": "ORIGINAL",
    "finetune": "FINE-TUNING",
    "delta": "DELTA",
    "difa_cmwgan": "DIFA + CMWGAN (reconstruction)",
    "dfg": "DFG",
}

#: Paper columns (params `tasks.<t>.paper_column`) and their headers in the paper's table.
PAPER_COLUMNS: dict[str, str] = {
    "svhn": "SVHN 10:1",
    "fmnist": "F-MNIST 40:1",
    "stl10": "STL-10 1:1",
    "cinic10": "CINIC-10 10:1",
    "caltech256": "Caltech-256 1:1",
    "food101": "Food-101 5:1",
}

#: method -> paper column -> (mean %, std %). Source: method.md §4 table (seed README of the paper's code).
PAPER_ACCURACY: dict[str, dict[str, tuple[float, float]]] = {
    "original": {
        "svhn": (76.57, 1.65), "fmnist": (77.13, 3.24), "stl10": (66.73, 0.67),
        "cinic10": (58.14, 3.42), "caltech256": (43.30, 0.34), "food101": (30.17, 1.72),
    },
    "finetune": {
        "svhn": (76.66, 0.65), "fmnist": (75.39, 3.54), "stl10": (72.89, 0.38),
        "cinic10": (64.42, 0.81), "caltech256": (81.99, 0.12), "food101": (68.99, 0.42),
    },
    "delta": {
        "svhn": (78.47, 0.57), "fmnist": (78.91, 2.27), "stl10": (79.41, 0.27),
        "cinic10": (68.89, 0.18), "caltech256": (85.33, 0.15), "food101": (72.03, 0.35),
    },
    "difa_cmwgan": {
        "svhn": (76.64, 1.32), "fmnist": (78.27, 2.32), "stl10": (80.08, 0.19),
        "cinic10": (71.82, 0.35), "caltech256": (82.23, 0.32), "food101": (71.71, 0.08),
    },
    "dfg": {
        "svhn": (80.81, 0.25), "fmnist": (82.65, 0.28), "stl10": (81.09, 0.17),
        "cinic10": (72.09, 0.20), "caltech256": (86.29, 0.19), "food101": (76.00, 0.36),
    },
}


def reported(method: str, column: str | None) -> tuple[float, float] | None:
    """The paper's (mean %, std %) for `method` on paper column `column`, or None where it reports none
    (no column, or a method the paper did not run)."""
    if column is None:
        return None
    return PAPER_ACCURACY.get(method, {}).get(column)
