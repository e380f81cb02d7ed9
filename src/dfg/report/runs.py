"""Reading finished runs: metrics.json files into one table, plus the order and names of rows.

Shared by `dfg aggregate` and `dfg figures`, so both list methods and tasks in the same order with the
same names. Formats: docs/architecture.md, "Run outputs".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dfg import DfgError
from dfg.report.paper import PAPER_LABELS, PAPER_METHODS

log = logging.getLogger(__name__)

#: Scalar metrics that are aggregated (fractions in [0, 1], except wall_seconds): metrics.json's, and
#: SELECTED, computed from the run's curves.csv.
SCALAR_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "macro_f1", "g_mean", "majority_accuracy", "minority_accuracy",
    "ece", "wall_seconds", "test_selected_accuracy",
)
#: The authors' loop kept the best test accuracy of its evaluations (every 100 steps): the highest of
#: the run's curve points and its final accuracy. Selected on the test set, so optimistic; always shown
#: apart from (and labelled unlike) the final-step accuracy, which is ours.
SELECTED = "test_selected_accuracy"
#: Selection on validation data: the test accuracy of the evaluation with the best validation accuracy
#: (runs whose split has a validation set only; NaN otherwise). Not in SCALAR_METRICS, so that the tables
#: of suites without validation stay as they were: `metrics_of` adds it where some run has it.
VAL_SELECTED = "val_selected_accuracy"
#: Keys without which a metrics.json cannot be placed in the table.
REQUIRED_KEYS: tuple[str, ...] = ("task", "method", "seed", "accuracy")
#: Per-run lists kept for figures (per-class recall with the split's minority classes).
LIST_KEYS: tuple[str, ...] = ("per_class_recall", "minority_classes", "class_counts")


def find_metrics(paths: Iterable[str | Path]) -> list[Path]:
    """Expand the command line's paths: a metrics.json file as is, a folder into every metrics.json below
    it. A path that does not exist is an error (a typo would otherwise silently shrink the table)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.rglob("metrics.json")))
        elif p.is_file():
            found.append(p)
        else:
            raise DfgError(f"{p} does not exist; pass metrics.json files of finished runs or their folder")
    return found


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DfgError(f"{path} is not valid JSON ({e}); rerun that training job") from None
    if not isinstance(data, dict):
        raise DfgError(f"{path} must hold a JSON object; rerun that training job")
    return data


def read_curve(path: Path) -> pd.DataFrame:
    """The (step, test_accuracy[, val_accuracy]) evaluations of a run's curves.csv, rows without a test
    accuracy dropped (empty where it has none: a run without training steps); val_accuracy only where the
    run measured one."""
    if not path.is_file():
        return pd.DataFrame({"step": pd.Series(dtype=int), "test_accuracy": pd.Series(dtype=float)})
    try:
        curve = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise DfgError(f"{path} is not a curves.csv of `dfg train` ({e}); rerun that training job") from None
    if not {"step", "test_accuracy"} <= set(curve.columns):
        raise DfgError(f"{path} has no step and test_accuracy columns; rerun that training job")
    cols = ["step", "test_accuracy"] + (["val_accuracy"] if "val_accuracy" in curve.columns else [])
    return curve[cols].dropna(subset=["step", "test_accuracy"]).astype({"step": int, "test_accuracy": float})


def val_selected(curve: pd.DataFrame) -> tuple[float, int | None]:
    """Selection on validation data: the test accuracy of the evaluation with the highest validation
    accuracy (the earliest on a tie) and its step; (NaN, None) for a run without validation accuracy."""
    if "val_accuracy" not in curve.columns or curve.val_accuracy.isna().all():
        return float("nan"), None
    best = curve.val_accuracy.astype(float).idxmax()  # first occurrence
    return float(curve.test_accuracy[best]), int(curve.step[best])


def selected(final: float, steps: int | None, curve: pd.DataFrame) -> tuple[float, int | None]:
    """The authors' rule on one run: the best test accuracy among its evaluations and its final one, and
    the step it was reached at (the earliest on a tie; the final step where nothing beats the final)."""
    if len(curve) and curve.test_accuracy.max() > final:
        best = curve.test_accuracy.idxmax()  # first occurrence
        return float(curve.test_accuracy[best]), int(curve.step[best])
    if len(curve) and (curve.test_accuracy == final).any():
        return final, int(curve.step[curve.test_accuracy == final].iloc[0])
    return final, steps


def _untrained_steps(method: str, run_params: object, base: str | None = None) -> int:
    """The method's untrained_steps for the hp and steps recorded in the run's metrics.json (0 for a
    method this version does not know, or a run file without them). `base`: the registered method a
    variant runs."""
    from dfg.methods import METHODS

    base = base or method
    if base not in METHODS.names() or not isinstance(run_params, dict):
        return 0
    try:
        return int(METHODS.get(base).untrained_steps(run_params["methods"][method],
                                                       int(run_params["train"]["steps"])))
    except (KeyError, TypeError, ValueError):  # an older or hand-made run file: drawn as fully trained
        return 0


def load_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: task, method, seed, label, addition, path, variant_of ('' unless a variant),
    split_seed and split_sha256 (the split it trained on), the scalar metrics (NaN where a run lacks one;
    SELECTED and VAL_SELECTED from its curves.csv), the per-run lists of LIST_KEYS, n_evaluations, dataset,
    steps, selected_step and val_selected_step (where they were reached), val_per_class and
    val_from_training (its validation set) and untrained_steps. Two files for the same (task, method,
    seed) are an error, since averaging them would count one seed twice."""
    rows = []
    for path in find_metrics(paths):
        m = _read_json(path)
        missing = [k for k in REQUIRED_KEYS if k not in m]
        if missing:
            raise DfgError(f"{path} lacks {', '.join(missing)}; it is not a metrics.json of `dfg train`")
        row = {
            "task": str(m["task"]), "method": str(m["method"]), "seed": int(m["seed"]),
            "label": str(m.get("label") or ""), "addition": bool(m.get("addition", False)), "path": str(path),
            "variant_of": str(m.get("variant_of") or ""),
            "split_seed": int(m.get("split_seed", m["seed"])), "split_sha256": str(m.get("split_sha256") or ""),
        }
        for k in SCALAR_METRICS:
            v = m.get(k)
            row[k] = float(v) if isinstance(v, int | float) else float("nan")
        for k in LIST_KEYS:
            row[k] = m.get(k)
        curve = read_curve(path.parent / "curves.csv")
        row["dataset"] = m.get("dataset")
        row["steps"] = m.get("steps")
        row[SELECTED], row["selected_step"] = selected(row["accuracy"], row["steps"], curve)
        row[VAL_SELECTED], row["val_selected_step"] = val_selected(curve)
        val = m.get("validation") or {}
        row["val_per_class"] = int(val.get("per_class", 0))
        row["val_from_training"] = val.get("from_training") or []
        row["n_evaluations"] = len(curve)
        row["untrained_steps"] = _untrained_steps(row["method"], m.get("params"), row["variant_of"] or None)
        rows.append(row)
    columns = ["task", "method", "seed", "label", "addition", "path", "variant_of", "split_seed", "split_sha256",
               *SCALAR_METRICS, VAL_SELECTED, *LIST_KEYS, "n_evaluations", "dataset", "steps", "selected_step",
               "val_selected_step", "val_per_class", "val_from_training", "untrained_steps"]
    runs = pd.DataFrame(rows, columns=columns)
    dup = runs[runs.duplicated(["task", "method", "seed"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        raise DfgError(
            f"two metrics.json for task {first.task}, method {first.method}, seed {first.seed}: "
            f"{', '.join(dup[(dup.task == first.task) & (dup.method == first.method) & (dup.seed == first.seed)].path)}"
            "; pass the runs of one suite only"
        )
    return runs.sort_values(["task", "method", "seed"]).reset_index(drop=True)


def metrics_of(runs: pd.DataFrame) -> list[str]:
    """SCALAR_METRICS, plus VAL_SELECTED where some run was selected on validation data."""
    return [*SCALAR_METRICS, *([VAL_SELECTED] if runs[VAL_SELECTED].notna().any() else [])]


def _ordered(present: Iterable[str], preferred: Iterable[str]) -> list[str]:
    present = list(dict.fromkeys(present))
    head = [x for x in preferred if x in present]
    return head + sorted(x for x in present if x not in head)


def is_addition(method: str) -> bool:
    """Methods beyond the paper's five are additions, whatever a run file claims."""
    return method not in PAPER_METHODS


def method_order(runs: pd.DataFrame, preferred: Iterable[str] = ()) -> list[str]:
    """The paper's five in its row order, then the additions in `preferred` order (params run.methods),
    then any other method alphabetically."""
    present = list(runs["method"].unique())
    paper = [m for m in PAPER_METHODS if m in present]
    return paper + _ordered([m for m in present if is_addition(m)], preferred)


def task_order(runs: pd.DataFrame, preferred: Iterable[str] = ()) -> list[str]:
    """Tasks in params run.tasks order, then any other alphabetically."""
    return _ordered(runs["task"].unique(), preferred)


def method_labels(runs: pd.DataFrame) -> dict[str, str]:
    """Display names: the paper's names for its rows, the run's `label` for the rest (else the name)."""
    labels = {}
    for method, group in runs.groupby("method", sort=False):
        given = next((x for x in group["label"] if x), "")
        labels[method] = PAPER_LABELS.get(method) or given or method
    return labels


#: Colours after tab10's ten, for suites of up to 13 methods (all of ours): dark and saturated, unlike
#: tab20's pale halves, which put e.g. FINE-TUNING in a light copy of ORIGINAL's blue.
EXTRA_COLOURS: tuple[str, ...] = ("#000000", "#e6ab02", "#1b9e77")


def method_colours(methods: list[str]) -> dict[str, tuple]:
    """One fixed colour per method (in table order) so every figure uses the same colour for it: tab10,
    then EXTRA_COLOURS, then tab20 over again for longer lists."""
    import matplotlib
    from matplotlib.colors import to_rgba

    palette = [*matplotlib.colormaps["tab10"].colors, *map(to_rgba, EXTRA_COLOURS)]
    if len(methods) > len(palette):
        palette = list(matplotlib.colormaps["tab20"].colors)
    return {m: tuple(to_rgba(palette[i % len(palette)])) for i, m in enumerate(methods)}
