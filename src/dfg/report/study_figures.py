"""The figures of `dfg study` (docs/study.md): every run under each selection rule beside the paper's
reported mean ± std (study_split_spread), accuracy against step on the fixed split with the evaluation
each rule keeps (study_rules), and experiment 2's accuracy, critic loss and classifier cross-entropies
(study_critic). Written through figures.save_figure in the formats of params `figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dfg.report import paper
from dfg.report.runs import SELECTED, VAL_SELECTED, method_labels
from dfg.report.study import PAPER_COLUMN, read_full_curve


def figure_spread(long: pd.DataFrame, fixed: pd.DataFrame, full: pd.DataFrame | None, out: Path,
                  fig_params: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfg.report.figures import STYLE, save_figure

    methods = list(dict.fromkeys(long.method))
    labels = dict(zip(long.method, long.label, strict=False))
    groups = [("varying splits,\nauthors' rule", full, SELECTED, "tab:grey"),
              ("one split,\nfinal step", fixed, "accuracy", "tab:blue"),
              ("one split,\nvalidation", fixed, VAL_SELECTED, "tab:green"),
              ("one split,\nauthors' rule", fixed, SELECTED, "tab:orange")]
    groups = [g for g in groups if g[1] is not None and g[2] in g[1] and g[1][g[2]].notna().any()]
    width = 0.8 / (len(groups) + 1)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(1.9 * len(methods) + 2.5, 4.2))
        for i, method in enumerate(methods):
            for j, (name, runs, col, colour) in enumerate(groups):
                v = 100 * runs.loc[runs.method == method, col].dropna().to_numpy(dtype=float)
                x = i - 0.4 + width * (j + 0.5)
                ax.scatter(np.full(len(v), x), v, s=14, color=colour, alpha=0.8, lw=0,
                           label=name.replace("\n", " ") if i == 0 else None, zorder=3)
                if len(v) > 1:
                    ax.errorbar(x + width * 0.3, v.mean(), yerr=v.std(ddof=1), fmt="_", color=colour, ms=10,
                                capsize=3, lw=1.2, zorder=4)
            rep = paper.reported(method, PAPER_COLUMN)
            if rep:
                x = i - 0.4 + width * (len(groups) + 0.5)
                ax.errorbar(x, rep[0], yerr=rep[1], fmt="D", color="black", ms=4, capsize=3, lw=1.2,
                            label="reported in the paper (mean ± std)" if i == 0 else None, zorder=4)
        ax.set_xticks(range(len(methods)), [labels[m] for m in methods])
        ax.set_ylabel("Top-1 accuracy on the test set (%)")
        ax.set_title("F-MNIST 40:1: the runs under each rule (dots) with mean ± std (bars)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.tight_layout()
        written = save_figure(fig, out, "study_split_spread", fig_params)
    return written


def figure_critic(ablation: pd.DataFrame, out: Path, fig_params: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfg.report.figures import STYLE, save_figure

    labels = method_labels(ablation)
    colours = {"original": "tab:blue", "delta": "tab:green", "dfg": "tab:red"}
    curves = {m: [read_full_curve(r) for _, r in g.iterrows()] for m, g in ablation.groupby("method", sort=False)}
    order = [m for m in ("original", "delta", "dfg") if m in curves] + sorted(set(curves) - {"original", "delta", "dfg"})
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0))

        def band(ax, method, column, scale=1.0, ls="-", label=None):
            cs = [c.set_index("step")[column] for c in curves[method] if column in c]
            if not cs:
                return
            table = pd.concat(cs, axis=1).dropna(how="all") * scale
            colour = colours.get(method, "tab:purple")
            ax.plot(table.index, table.mean(axis=1), color=colour, ls=ls, lw=1.2,
                    label=label or f"{labels[method]} (n={len(cs)})")
            ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.12, lw=0)

        for m in order:
            band(axes[0], m, "test_accuracy", 100)
        axes[0].set(xlabel="Training step", ylabel="Test accuracy (%)", title="Test accuracy (mean, min-max band)")
        axes[0].legend(loc="lower right", frameon=False)
        for m in [x for x in order if x not in ("original", "delta")]:
            band(axes[1], m, "loss_d")
        axes[1].axhline(0, color="black", lw=0.6)
        axes[1].set(xlabel="Training step", ylabel="Critic loss E[D(fake)] − E[D(real)] + penalty",
                    title="The critic's loss (0 = G's features indistinguishable)")
        axes[1].legend(loc="lower right", frameon=False)
        for m in [x for x in order if x not in ("original", "delta")]:
            band(axes[2], m, "clf_ce_generated", label=f"{labels[m]}: on generated")
            band(axes[2], m, "clf_ce_real", ls="--", label=f"{labels[m]}: on real")
        axes[2].set_yscale("log")
        axes[2].set(xlabel="Training step", ylabel="Cross-entropy (nats, log scale)",
                    title="C's cross-entropy in its classifier-only update")
        axes[2].legend(loc="upper right", frameon=False)
        fig.tight_layout()
        written = save_figure(fig, out, "study_critic", fig_params)
    return written


def figure_rules(fixed: pd.DataFrame, out: Path, fig_params: dict,
                 methods: tuple[str, ...] = ("delta", "dfg")) -> list[Path]:
    """Accuracy against step on the fixed split, one panel per method: test and validation accuracy (mean
    over seeds, min-max band) and, per run, the evaluation each rule keeps (final step, best validation,
    best test), with the paper's reported mean ± std at the right edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dfg.report.figures import STYLE, save_figure

    labels = method_labels(fixed)
    methods = tuple(m for m in methods if m in set(fixed.method))
    if not methods:
        return []
    marks = (("accuracy", "steps", "final step", "o", "tab:blue"),
             (VAL_SELECTED, "val_selected_step", "selected on validation", "^", "tab:green"),
             (SELECTED, "selected_step", "selected on the test set (authors' rule)", "*", "tab:orange"))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(methods), figsize=(6.4 * len(methods), 5.2), sharey=True, squeeze=False)
        for ax, method in zip(axes[0], methods, strict=True):
            runs = fixed[fixed.method == method].sort_values("seed")
            curves = [read_full_curve(r).set_index("step") for _, r in runs.iterrows()]
            for column, name, colour, ls in (("test_accuracy", "test accuracy", "black", "-"),
                                             ("val_accuracy", "validation accuracy", "tab:green", "--")):
                cs = [c[column] for c in curves if column in c and c[column].notna().any()]
                if not cs:
                    continue
                table = pd.concat(cs, axis=1) * 100
                ax.plot(table.index, table.mean(axis=1), color=colour, ls=ls, lw=0.9, alpha=0.8,
                        label=f"{name} (mean of {len(cs)} run{'s' * (len(cs) > 1)}; band: min-max)")
                ax.fill_between(table.index, table.min(axis=1), table.max(axis=1), color=colour, alpha=0.10, lw=0)
            for col, step_col, name, marker, colour in marks:
                if col not in runs or runs[col].isna().all():
                    continue
                ax.scatter(runs[step_col], 100 * runs[col], marker=marker, s=110 if marker == "*" else 55,
                           color=colour, edgecolor="black", lw=0.4, zorder=4,
                           label=f"{name}: each run, mean {100 * runs[col].mean():.2f}")
            rep = paper.reported(method, PAPER_COLUMN)
            if rep:
                right = float(runs.steps.max())
                ax.errorbar(right * 1.03, rep[0], yerr=rep[1], fmt="D", color="tab:red", ms=4, capsize=3,
                            zorder=4, label=f"reported in the paper: {rep[0]:.2f} ± {rep[1]:.2f}")
            n = len(runs)
            ax.set(xlabel="Training step", title=f"{labels.get(method, method)} on one split ({n} seed{'s' * (n > 1)})")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, fontsize="small")
        axes[0][0].set_ylabel("Top-1 accuracy (%)")
        shown = fixed.loc[fixed.method.isin(methods), [c for c, *_ in marks if c in fixed]].to_numpy(float) * 100
        reported = [paper.reported(m, PAPER_COLUMN) for m in methods]
        top = max([float(np.nanmax(shown))] + [r[0] for r in reported if r])
        axes[0][0].set_ylim(max(0.0, np.nanmin(shown) - 6), min(100.0, top + 2))
        fig.tight_layout()
        written = save_figure(fig, out, "study_rules", fig_params)
    return written
