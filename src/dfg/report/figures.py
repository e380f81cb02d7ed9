"""`dfg figures --runs-dir results/<suite>/runs --out-dir results/<suite>/figures [--table table.csv]`.

Draws, from finished runs only (formats: docs/architecture.md, "Run outputs"), in every format of params
figures.formats at figures.dpi:
- accuracy.*                    top-1 accuracy, methods x tasks, error bars = std over seeds, n annotated;
- per_class_recall_<task>.*     recall of every class per method (mean over seeds), minority classes shaded;
- learning_curves_<task>.*      test accuracy vs step, mean over seeds and min-max band, one line per method;
- tsne_<task>.*                 t-SNE of real vs generated minority-class features (dfg, difa_cmwgan, smote_feat);
- generated_features.csv        the same comparison in numbers, every seed (spread, class-mean gap, ...);
- attention_<task>.*            DFG's class attention (classes x channels) at the last recorded step;
- attention_training_<task>.*   the attention at several recorded steps and its distance to the final one.
A figure whose inputs are absent (e.g. no dfg run, no artefacts.pt) is skipped with a log line. The list of
files written is printed at the end. Figures are for people: labelled axes with units, legends, titles.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt
import pandas as pd

from dfg import DfgError
from dfg.report.runs import load_runs, method_colours, method_labels, method_order, task_order
from dfg.utils.io import atomic_path

log = logging.getLogger(__name__)

#: Print-friendly defaults: small but legible text, light grid, no top/right spines.
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.bbox": "tight",
    "svg.hashsalt": "dfg",  # fixed SVG element ids (else random per run)
}


#: No timestamps in vector formats, so re-drawing the same runs gives byte-identical files (no git churn).
REPRODUCIBLE_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


@dataclass
class Context:
    """What every figure function gets: the runs, their order/names/colours and the output settings."""

    runs: pd.DataFrame
    methods: list[str]
    tasks: list[str]
    labels: dict[str, str]
    colours: dict[str, tuple]
    params: dict
    out_dir: Path
    table: pd.DataFrame | None = None

    @property
    def fig_params(self) -> dict:
        return self.params.get("figures", {})

    def base(self, method: str) -> str:
        """The registered method a run.methods entry runs (a variant's `variant_of`, else itself)."""
        if "variant_of" not in self.runs.columns:
            return method
        given = self.runs.loc[self.runs.method == method, "variant_of"]
        return next((b for b in given if b), method)

    def run_dir(self, row: pd.Series) -> Path:
        return Path(row["path"]).parent

    def save(self, fig: plt.Figure, name: str) -> list[Path]:
        return save_figure(fig, self.out_dir, name, self.fig_params)


def save_figure(fig: plt.Figure, out_dir: Path, name: str, fig_params: dict) -> list[Path]:
    """Write `fig` as out_dir/name.<fmt> for every format of params `figures` (atomically, no timestamps)
    and close it."""
    written = []
    for fmt in fig_params.get("formats", ["png", "pdf"]):
        path = out_dir / f"{name}.{fmt}"
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=fig_params.get("dpi", 150), metadata=REPRODUCIBLE_METADATA.get(fmt))
        written.append(path)
    plt.close(fig)
    return written


def build_context(runs_dir: Path, out_dir: Path, params: dict, table: Path | None = None) -> Context:
    if not runs_dir.is_dir():
        raise DfgError(f"runs folder {runs_dir} does not exist; train runs first or pass --runs-dir")
    runs = load_runs([runs_dir])
    if runs.empty:
        raise DfgError(f"no metrics.json under {runs_dir}; train runs first (dfg train)")
    run_params = params.get("run", {})
    methods = method_order(runs, run_params.get("methods", []))
    tab = None
    if table is not None:
        if not table.is_file():
            raise DfgError(f"table {table} does not exist; run `dfg aggregate` first or drop --table")
        tab = pd.read_csv(table)
    return Context(runs=runs, methods=methods, tasks=task_order(runs, run_params.get("tasks", [])),
                   labels=method_labels(runs), colours=method_colours(methods), params=params,
                   out_dir=out_dir, table=tab)


def draw_all(ctx: Context) -> list[Path]:
    """Every figure in turn; each returns the files it wrote ([] when skipped)."""
    from dfg.report import figures_features, figures_results

    drawers: list[Callable[[Context], list[Path]]] = [
        figures_results.accuracy_bars, figures_results.per_class_recall, figures_results.learning_curves,
        figures_features.tsne, figures_features.generated_features_table,
        figures_features.attention,
    ]
    written: list[Path] = []
    with plt.rc_context(STYLE):
        for draw in drawers:
            written += draw(ctx)
    return written


def main(args: argparse.Namespace, params: dict) -> int:
    ctx = build_context(args.runs_dir, args.out_dir, params, args.table)
    written = draw_all(ctx)
    print("figures:")
    for p in written:
        print(f"  - {p}")
    return 0
