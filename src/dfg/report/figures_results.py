"""Figures of the run metrics: accuracy bars, per-class recall, learning curves (see figures.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from dfg.report import paper
from dfg.report.stats import summarise

if TYPE_CHECKING:  # pragma: no cover
    from dfg.report.figures import Context

log = logging.getLogger(__name__)

GROUP_WIDTH = 0.8        # share of a task's slot on the x axis taken by its bars
MINORITY_SHADE = 0.35    # grey alpha of a class that is minority in every seed
MAX_CLASS_TICKS = 30     # label every class on the x axis up to this many classes


def _legend_below(ax: plt.Axes, handles: list, labels: list[str]) -> None:
    """Legend under the x-axis label, 3 columns; savefig's tight bounding box keeps it in the file."""
    ax.legend(handles, labels, loc="upper center", ncol=min(len(labels), 3), frameon=False,
              bbox_to_anchor=(0.5, -0.14))


def accuracy_bars(ctx: Context) -> list[Path]:
    """Bars of mean top-1 accuracy per task and method, error bars = sample std over seeds, n at the foot of
    each bar; black diamonds = the paper's reported value where the task follows its protocol."""
    if ctx.table is not None:
        summary = ctx.table[ctx.table.metric == "accuracy"]
    else:
        summary = summarise(ctx.runs, ["accuracy"], ctx.params.get("suite", ""))
    summary = summary.set_index(["task", "method"])
    tasks, methods = ctx.tasks, ctx.methods
    width = GROUP_WIDTH / len(methods)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + len(tasks) * (0.35 * len(methods) + 0.6)), 4.6))
    paper_x, paper_y = [], []
    bars = {}
    for i, method in enumerate(methods):
        xs, ys, errs, ns = [], [], [], []
        for t, task in enumerate(tasks):
            x = t - GROUP_WIDTH / 2 + (i + 0.5) * width
            if (task, method) in summary.index:
                r = summary.loc[(task, method)]
                xs.append(x)
                ys.append(100 * r["mean"])
                errs.append(0.0 if pd.isna(r["std"]) else 100 * r["std"])
                ns.append(int(r["n_runs"]))
            col = ctx.params.get("tasks", {}).get(task, {}).get("paper_column")
            rep = paper.reported(method, col)
            if rep:
                paper_x.append(x)
                paper_y.append(rep[0])
        bars[method] = ax.bar(xs, ys, width * 0.9, yerr=errs, capsize=2, color=ctx.colours[method],
                              error_kw={"elinewidth": 0.8})
        for x, n in zip(xs, ns):  # inside the bar's foot: never collides with error bars or diamonds
            ax.text(x, 2, f"n={n}", ha="center", va="bottom", fontsize=6, rotation=90,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    handles, labels = list(bars.values()), [ctx.labels[m] for m in bars]
    if paper_x:
        handles.append(ax.scatter(paper_x, paper_y, marker="D", s=14, color="black", zorder=3))
        labels.append("reported in the paper")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_xlabel("Task")
    ax.set_ylabel("Top-1 test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Top-1 accuracy: mean over seeds, error bar = sample std, n = runs")
    _legend_below(ax, handles, labels)
    return ctx.save(fig, "accuracy")


def _minority_counts(group: pd.DataFrame, k: int) -> tuple[np.ndarray, int]:
    """Per class, in how many of this task's splits (one per seed) it is a minority class; and how many
    splits there are."""
    splits = {row["seed"]: set(row["minority_classes"]) for _, row in group.iterrows()
              if row["minority_classes"] is not None}
    return np.array([sum(c in s for s in splits.values()) for c in range(k)]), len(splits)


def per_class_recall(ctx: Context) -> list[Path]:
    """One figure per task: recall of each class, one line per method (mean over seeds). The data seed
    chooses the minority classes, so a class may be minority in some seeds only: the grey shade of a class
    is proportional to the share of seeds in which it is minority (the share is written above it)."""
    written = []
    for task in ctx.tasks:
        group = ctx.runs[(ctx.runs.task == task) & ctx.runs.per_class_recall.notna()]
        if group.empty:
            log.info("per-class recall of %s: skipped, no run reports per_class_recall", task)
            continue
        k = len(group.iloc[0]["per_class_recall"])
        counts, n_splits = _minority_counts(group, k)
        fig, ax = plt.subplots(figsize=(max(6.5, min(16.0, 0.06 * k + 5)), 4.4))
        for c in np.flatnonzero(counts):
            ax.axvspan(c - 0.5, c + 0.5, color="0.5", alpha=MINORITY_SHADE * counts[c] / n_splits, lw=0)
            if counts[c] < n_splits and k <= MAX_CLASS_TICKS:
                ax.text(c, 101, f"{counts[c]}/{n_splits}", ha="center", va="bottom", fontsize=6, color="0.3")
        handles, labels = [], []
        for method in ctx.methods:
            rows = group[group.method == method]
            if rows.empty:
                continue
            recall = 100 * np.mean(np.stack([np.asarray(r, dtype=float) for r in rows.per_class_recall]), axis=0)
            (line,) = ax.plot(range(k), recall, marker="o" if k <= MAX_CLASS_TICKS else None, ms=3, lw=1,
                              color=ctx.colours[method])
            handles.append(line)
            labels.append(f"{ctx.labels[method]} (n={len(rows)})")
        handles.append(Patch(color="0.5", alpha=MINORITY_SHADE))
        labels.append("minority class (shade = share of seeds)")
        if k <= MAX_CLASS_TICKS:
            ax.set_xticks(range(k))
        ax.set_xlim(-0.5, k - 0.5)
        ax.set_ylim(0, 108)
        ax.set_xlabel("Class index")
        ax.set_ylabel("Recall on the test set (%)")
        ax.set_title(f"{task}: per-class recall, mean over seeds")
        _legend_below(ax, handles, labels)
        written += ctx.save(fig, f"per_class_recall_{task}")
    return written


def _curves(ctx: Context, task: str, method: str) -> list[pd.DataFrame]:
    out = []
    for _, row in ctx.runs[(ctx.runs.task == task) & (ctx.runs.method == method)].iterrows():
        path = ctx.run_dir(row) / "curves.csv"
        if path.is_file():
            df = pd.read_csv(path)
            if {"step", "test_accuracy"} <= set(df.columns) and len(df):
                out.append(df[["step", "test_accuracy"]].assign(seed=row["seed"]))
    return out


def learning_curves(ctx: Context) -> list[Path]:
    """One figure per task: test accuracy vs training step, mean over seeds (line) and min-max (band)."""
    written = []
    for task in ctx.tasks:
        fig, ax = plt.subplots(figsize=(6.5, 4.4))
        handles, labels = [], []
        for method in ctx.methods:
            curves = _curves(ctx, task, method)
            if not curves:
                continue
            stats = pd.concat(curves).groupby("step")["test_accuracy"].agg(["mean", "min", "max"])
            x = stats.index.to_numpy()
            (line,) = ax.plot(x, 100 * stats["mean"], lw=1.3, color=ctx.colours[method])
            ax.fill_between(x, 100 * stats["min"], 100 * stats["max"], color=ctx.colours[method], alpha=0.15,
                            lw=0)
            handles.append(line)
            labels.append(f"{ctx.labels[method]} (n={len(curves)})")
        if not handles:
            plt.close(fig)
            log.info("learning curves of %s: skipped, no curves.csv", task)
            continue
        ax.set_xlabel("Training step")
        ax.set_ylabel("Test accuracy (%)")
        ax.set_title(f"{task}: learning curves, mean over seeds (band = min to max)")
        _legend_below(ax, handles, labels)
        written += ctx.save(fig, f"learning_curves_{task}")
    return written
