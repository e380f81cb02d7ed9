"""Figures of the run metrics: accuracy bars, per-class recall, learning curves (see figures.py)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from dfg.report import paper
from dfg.report.runs import is_addition, read_curve
from dfg.report.stats import summarise

if TYPE_CHECKING:  # pragma: no cover
    from dfg.report.figures import Context

log = logging.getLogger(__name__)

PANELS_PER_ROW = 3       # task panels per row of the accuracy figure
MINORITY_SHADE = 0.35    # grey alpha of a class that is minority in every seed
MAX_CLASS_TICKS = 30     # label every class on the x axis up to this many classes
MAX_MARKED_POINTS = 30   # learning curves with at most this many evaluations get point markers
MAX_LINES = 8            # more methods than this: per-class recall as a heat map instead of lines
LEGEND_GAP = 0.03        # space between the x-axis label and a legend below it (axes fraction)


def _legend_below(ax: plt.Axes, handles: list, labels: list[str], ncol: int = 3) -> None:
    """Legend under everything drawn below the axes (tick labels, slanted class names, the x-axis label),
    `ncol` columns; savefig's tight bounding box keeps it in the file. Call it after the x axis is set."""
    box = ax.get_tightbbox(ax.figure.canvas.get_renderer()).transformed(ax.transAxes.inverted())
    ax.legend(handles, labels, loc="upper center", ncol=min(len(labels), ncol), frameon=False,
              bbox_to_anchor=(0.5, box.y0 - LEGEND_GAP))


def accuracy_bars(ctx: Context) -> list[Path]:
    """One panel per task (up to PANELS_PER_ROW a row, shared axes): a bar per method = mean top-1
    accuracy, error bar = sample std over seeds, n at the foot of each bar; black diamonds = the paper's
    reported value where the task follows its protocol; a dashed line separates the paper's methods from
    the additions."""
    if ctx.table is not None:
        summary = ctx.table[ctx.table.metric == "accuracy"]
    else:
        summary = summarise(ctx.runs, ["accuracy"], ctx.params.get("suite", ""))
    summary = summary.set_index(["task", "method"])
    tasks, methods = ctx.tasks, ctx.methods
    ncols = min(len(tasks), PANELS_PER_ROW)
    nrows = math.ceil(len(tasks) / ncols)
    panel_w = max(4.5 if ncols == 1 else 2.6, 0.3 * len(methods) + 0.8)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols + 0.8, 2.9 * nrows + 1.4), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    n_paper = sum(not is_addition(m) for m in methods)
    diamonds = None
    for ax, task in zip(axes.flat, tasks):
        col = ctx.params.get("tasks", {}).get(task, {}).get("paper_column")
        for i, method in enumerate(methods):
            if (task, method) in summary.index:
                r = summary.loc[(task, method)]
                err = 0.0 if pd.isna(r["std"]) else 100 * r["std"]
                ax.bar(i, 100 * r["mean"], 0.8, yerr=err, capsize=2, color=ctx.colours[method],
                       error_kw={"elinewidth": 0.8})
                # inside the bar's foot: never collides with error bars or diamonds
                ax.text(i, 2, f"n={int(r['n_runs'])}", ha="center", va="bottom", fontsize=6, rotation=90,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
            rep = paper.reported(method, col)
            if rep:
                diamonds = ax.scatter(i, rep[0], marker="D", s=16, color="black", zorder=3)
        if 0 < n_paper < len(methods):
            ax.axvline(n_paper - 0.5, color="0.4", ls="--", lw=0.8)
        ax.set_title(task + (f" (paper: {paper.PAPER_COLUMNS[col]})" if col else ""))
        ax.grid(axis="x", visible=False)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("Top-1 test accuracy (%)")
    axes[0, 0].set_ylim(0, 100)
    axes[0, 0].set_xticks(range(len(methods)))
    for ax in axes.flat:  # method names under every bottom panel (shared x hides the others)
        ax.set_xticklabels([ctx.labels[m] for m in methods], rotation=45, ha="right", rotation_mode="anchor")
    handles, labels = [], []
    if diamonds is not None:
        handles.append(diamonds)
        labels.append("reported in the paper (not our runs)")
    if 0 < n_paper < len(methods):
        handles.append(Line2D([], [], color="0.4", ls="--", lw=0.8))
        labels.append("right of the dashed line: additions (not in the paper)")
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle("Top-1 accuracy: mean over seeds,\nerror bar = sample std, n = runs" if ncols == 1 else
                 "Top-1 accuracy per task: mean over seeds, error bar = sample std, n = runs")
    return ctx.save(fig, "accuracy")


def _minority_counts(group: pd.DataFrame, k: int) -> tuple[np.ndarray, int]:
    """Per class, in how many of this task's splits (one per seed) it is a minority class; and how many
    splits there are."""
    splits = {row["seed"]: set(row["minority_classes"]) for _, row in group.iterrows()
              if row["minority_classes"] is not None}
    return np.array([sum(c in s for s in splits.values()) for c in range(k)]), len(splits)


def class_names(group: pd.DataFrame, k: int) -> list[str] | None:
    """The task's class names from the dataset registry (metrics.json names the dataset), or None where
    the registry has none for it (names then come from an archive) or the count does not match."""
    from dfg.data.registry import DATASETS

    datasets = [d for d in group.get("dataset", pd.Series(dtype=object)).dropna().unique() if d in DATASETS.names()]
    names = list(DATASETS.get(datasets[0]).classes) if len(datasets) == 1 else []
    return names if len(names) == k else None


def _class_axis(ax: plt.Axes, k: int, names: list[str] | None) -> None:
    """Every class named on the x axis (slanted when names are words), else its index."""
    if names and any(len(n) > 2 for n in names):
        ax.set_xticks(range(k), names, rotation=35, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(range(k), names or [str(c) for c in range(k)])
    ax.set_xlabel("Class" if names else "Class index")


def _recall_lines(task: str, means: dict, counts: np.ndarray, n_splits: int, ctx: Context,
                  names: list[str] | None = None) -> plt.Figure:
    """Few classes and methods: one line per method over the classes, minority classes shaded."""
    k = len(counts)
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for c in np.flatnonzero(counts):
        ax.axvspan(c - 0.5, c + 0.5, color="0.5", alpha=MINORITY_SHADE * counts[c] / n_splits, lw=0)
        if counts[c] < n_splits:
            ax.text(c, 101, f"{counts[c]}/{n_splits}", ha="center", va="bottom", fontsize=6, color="0.3")
    handles, labels = [], []
    for method, (recall, n) in means.items():
        (line,) = ax.plot(range(k), recall, marker="o", ms=3, lw=1, color=ctx.colours[method])
        handles.append(line)
        labels.append(f"{ctx.labels[method]} (n={n})")
    handles.append(Patch(color="0.5", alpha=MINORITY_SHADE))
    labels.append(f"minority class (shade = share of the {n_splits} seeds)")
    _class_axis(ax, k, names)
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(0, 108)
    ax.set_ylabel("Recall on the test set (%)")
    ax.set_title(f"{task}: per-class recall, mean over seeds")
    _legend_below(ax, handles, labels)
    return fig


def _recall_heatmap(task: str, means: dict, counts: np.ndarray, n_splits: int, ctx: Context,
                    names: list[str] | None = None) -> plt.Figure:
    """Many classes or methods: methods x classes heat map (values written in the cells when there is
    room), with a strip above it giving each class's share of seeds in which it is a minority class."""
    k, m = len(counts), len(means)
    grid = np.stack([recall for recall, _ in means.values()])
    fig, (top, ax) = plt.subplots(2, 1, figsize=(min(16.0, max(7.0, 0.55 * k + 3.5)), 0.33 * m + 2.4),
                                  sharex=True, height_ratios=[1, max(3, m)], layout="constrained")
    top.bar(range(k), counts / n_splits, 1.0, color="0.5")
    top.set_ylim(0, 1)
    top.set_yticks([0, 1])
    top.set_ylabel(f"minority in\nshare of {n_splits}\nseeds", fontsize=7)
    top.grid(False)
    top.set_title(f"{task}: per-class recall, mean over seeds; grey strip = how often a class is minority")
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
    if k <= MAX_CLASS_TICKS:
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 60 else "black")
        _class_axis(ax, k, names)
    else:
        ax.set_xlabel("Class index")
    ax.set_yticks(range(m), [f"{ctx.labels[meth]} (n={n})" for meth, (_, n) in means.items()])
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="Recall on the test set (%)", fraction=0.03)
    return fig


def per_class_recall(ctx: Context) -> list[Path]:
    """One figure per task: recall of each class per method (mean over seeds). The data seed chooses the
    minority classes, so a class may be minority in some seeds only: its mark (grey shade or strip) is
    proportional to the share of seeds in which it is minority. Lines for a few classes and methods, a
    heat map beyond (MAX_CLASS_TICKS classes, MAX_LINES methods)."""
    written = []
    for task in ctx.tasks:
        group = ctx.runs[(ctx.runs.task == task) & ctx.runs.per_class_recall.notna()]
        if group.empty:
            log.info("per-class recall of %s: skipped, no run reports per_class_recall", task)
            continue
        k = len(group.iloc[0]["per_class_recall"])
        counts, n_splits = _minority_counts(group, k)
        means = {}
        for method in ctx.methods:
            rows = group[group.method == method]
            if len(rows):
                stacked = np.stack([np.asarray(r, dtype=float) for r in rows.per_class_recall])
                means[method] = (100 * stacked.mean(axis=0), len(rows))
        draw = _recall_lines if k <= MAX_CLASS_TICKS and len(means) <= MAX_LINES else _recall_heatmap
        written += ctx.save(draw(task, means, counts, max(n_splits, 1), ctx, class_names(group, k)),
                            f"per_class_recall_{task}")
    return written


def init_run(method: str) -> str | None:
    """The method whose run of the same seed this one starts from (cRT, feature SMOTE: FINE-TUNING)."""
    from dfg.methods import METHODS

    return METHODS.get(method).init_from_run if method in METHODS.names() else None


def _start_step(ctx: Context, task: str, method: str, seed: int) -> int:
    """Steps already trained when a run began: a run that starts from another run of its seed continues
    that run's curve, so its x axis counts both (that run's steps, else the suite's train.steps)."""
    init = init_run(ctx.base(method))
    if init is None:
        return 0
    rows = ctx.runs[(ctx.runs.task == task) & (ctx.runs.method == init) & (ctx.runs.seed == seed)]
    if len(rows) and pd.notna(rows.iloc[0]["steps"]):
        return int(rows.iloc[0]["steps"])
    return int(ctx.params.get("train", {}).get("steps", 0))


def _curves(ctx: Context, task: str, method: str) -> list[pd.DataFrame]:
    """The evaluations of each run of (task, method) that has any, read and checked as load_runs reads them,
    marked where they fall in the method's untrained steps and shifted by the run's start step."""
    out = []
    for _, row in ctx.runs[(ctx.runs.task == task) & (ctx.runs.method == method)].iterrows():
        df = read_curve(ctx.run_dir(row) / "curves.csv")
        if len(df):
            untrained = int(row.get("untrained_steps", 0))  # evaluations after 1..untrained steps
            df = df.assign(seed=row["seed"], untrained_steps=untrained,
                           untrained=(untrained > 0) & (df.step <= untrained))
            out.append(df.assign(step=df.step + _start_step(ctx, task, method, row["seed"])))
    return out


def _curve_panel(ax: plt.Axes, ctx: Context, loaded: dict[str, list[pd.DataFrame]], methods: list[str],
                 reference: str | None = None) -> tuple[list, list[str]]:
    """Mean test-accuracy curve over seeds (line) and min-max band of each method; `reference` (drawn
    dashed, no band) is a method repeated from the other panel for comparison. Evaluations in a method's
    untrained steps (Method.untrained_steps: DIFA's generator phase) are drawn dotted, without a band,
    and the legend says so, so that the untouched starting classifier is not read as learning."""
    handles, labels = [], []
    for method in methods:
        curves = loaded[method]
        every = pd.concat(curves)
        stats = every.groupby("step")["test_accuracy"].agg(["mean", "min", "max"])
        untrained = every.groupby("step")["untrained"].any()
        x = stats.index.to_numpy()
        marker = "o" if len(x) <= MAX_MARKED_POINTS else None  # a one-point curve shows as a dot
        ref = method == reference
        style = {"lw": 1.0 if ref else 1.3, "marker": marker, "ms": 3, "color": ctx.colours[method]}
        first = int(untrained.to_numpy().argmin()) if not untrained.all() else len(x)  # first trained point
        if first:
            # dotted up to and including the first trained evaluation, so the two parts join
            ax.plot(x[:first + 1], 100 * stats["mean"].iloc[:first + 1], **{**style, "lw": 1.0, "ls": ":"})
        (line,) = ax.plot(x[first:], 100 * stats["mean"].iloc[first:], ls="--" if ref else "-", **style)
        if not ref:
            ax.fill_between(x[first:], 100 * stats["min"].iloc[first:], 100 * stats["max"].iloc[first:],
                            color=ctx.colours[method], alpha=0.15, lw=0)
        handles.append(line)
        init = init_run(ctx.base(method))
        labels.append(f"{ctx.labels[method]} (n={len(curves)})" + (" (reference)" if ref else "")
                      + (f", after {ctx.labels.get(init, init)}" if init else "")
                      + (f"\n(dotted: classifier not trained in its first {every.untrained_steps.max():,} steps)"
                         if first else ""))
    ax.set_xlabel("Training step")
    return handles, labels


def learning_curves(ctx: Context) -> list[Path]:
    """One figure per task: test accuracy vs training step, mean over seeds (line) and min-max (band).
    More than MAX_LINES methods: two panels sharing the accuracy axis, the paper's methods and the
    additions, with ORIGINAL repeated dashed in the additions' panel as the common reference."""
    written = []
    for task in ctx.tasks:
        loaded = {m: c for m in ctx.methods if (c := _curves(ctx, task, m))}  # each curves.csv read once
        present = list(loaded)
        if not present:
            log.info("learning curves of %s: skipped, no curves.csv", task)
            continue
        paper_methods = [m for m in present if not is_addition(m)]
        additions = [m for m in present if is_addition(m)]
        if len(present) > MAX_LINES and paper_methods and additions:
            fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.8), sharey=True)
            for ax, methods, title, reference in (
                    (left, paper_methods, "the paper's methods", None),
                    (right, (["original"] if "original" in paper_methods else []) + additions,
                     "additions (not in the paper)", "original")):
                handles, labels = _curve_panel(ax, ctx, loaded, methods, reference)
                ax.set_title(title)
                _legend_below(ax, handles, labels, ncol=2)
            left.set_ylabel("Test accuracy (%)")
            fig.suptitle(f"{task}: learning curves, mean over seeds (band = min to max)")
        else:
            fig, ax = plt.subplots(figsize=(6.5, 4.4))
            handles, labels = _curve_panel(ax, ctx, loaded, present)
            ax.set_ylabel("Test accuracy (%)")
            ax.set_title(f"{task}: learning curves, mean over seeds (band = min to max)")
            _legend_below(ax, handles, labels)
        written += ctx.save(fig, f"learning_curves_{task}")
    return written
