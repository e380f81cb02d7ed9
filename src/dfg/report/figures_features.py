"""Figures of the artefacts of feature-generating methods (artefacts.pt, docs/architecture.md): t-SNE of
real vs generated minority-class features, the same comparison in numbers for every seed
(generated_features.csv), and DFG's class-attention matrices (see figures.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from dfg.utils.io import atomic_path, load_torch

if TYPE_CHECKING:  # pragma: no cover
    from dfg.report.figures import Context

log = logging.getLogger(__name__)

#: Methods that write generated features (architecture.md, artefacts.pt): two GANs and, as the reference
#: they are up against, SMOTE's interpolations of real features.
GENERATING_METHODS = ("dfg", "difa_cmwgan", "smote_feat")
MAX_CLASS_TICKS = 30
TSNE_THREADS = 1


def _artefacts(ctx: Context, task: str, method: str) -> tuple[int, dict] | None:
    """The artefacts of the lowest seed of (task, method) that has them, with that seed; else None."""
    rows = ctx.runs[(ctx.runs.task == task) & (ctx.runs.method == method)].sort_values("seed")
    for _, row in rows.iterrows():
        path = ctx.run_dir(row) / "artefacts.pt"
        if path.is_file():
            return int(row["seed"]), load_torch(path, what="artefacts file", fix="rerun that training job")
    return None


def _subsample(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= n:
        return x, y
    keep = np.sort(rng.choice(len(x), size=n, replace=False))
    return x[keep], y[keep]


def tsne_perplexity(requested: float, n_points: int) -> float:
    """The requested perplexity, clipped to (n - 1) / 3 for small samples: t-SNE needs perplexity < n, and
    about 3 x perplexity neighbours per point for a stable embedding (sklearn's own rule of thumb)."""
    return float(max(1.0, min(requested, (n_points - 1) / 3)))


def _embed(ctx: Context, feats: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t-SNE of real + generated features: (2-D points, labels, is_generated)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    fp = ctx.fig_params
    rng = np.random.default_rng(fp.get("tsne_seed", 0))
    n_max = fp.get("tsne_max_points", 200)
    real, ry = _subsample(feats["real"].float().flatten(1).numpy(), feats["real_labels"].numpy(), n_max, rng)
    gen, gy = _subsample(feats["generated"].float().flatten(1).numpy(), feats["generated_labels"].numpy(),
                         n_max, rng)
    x = np.concatenate([real, gen])
    # PCA first (the usual t-SNE practice): F's outputs have 1 176 (LeNet) to 802 816 (ResNet-50) dims.
    dims = min(fp.get("tsne_pca_dims", 50), *x.shape)
    perplexity = tsne_perplexity(fp.get("tsne_perplexity", 30), len(x))
    # One thread: at most 400 points embed in well under a second, the result does not depend on the
    # machine's core count, and a busy shared CPU does not make OpenMP threads spin (10x slower here).
    with threadpool_limits(TSNE_THREADS):
        if dims < x.shape[1]:
            x = PCA(n_components=dims, random_state=fp.get("tsne_seed", 0)).fit_transform(x)
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca",
                   random_state=fp.get("tsne_seed", 0)).fit_transform(x)
    return emb, np.concatenate([ry, gy]), np.r_[np.zeros(len(real), bool), np.ones(len(gen), bool)]


def tsne(ctx: Context) -> list[Path]:
    """One figure per task: a panel per generating method (lowest seed with artefacts), colours = class,
    circles = real features of the target data, crosses = generated features."""
    written = []
    for task in ctx.tasks:
        found = {m: a for m in ctx.methods if ctx.base(m) in GENERATING_METHODS and (a := _artefacts(ctx, task, m))}
        if not found:
            log.info("t-SNE of %s: skipped, no artefacts.pt of %s", task, " or ".join(GENERATING_METHODS))
            continue
        embedded = {m: (seed, art, _embed(ctx, art["features"])) for m, (seed, art) in found.items()}
        classes = sorted({int(c) for *_, (_, y, _) in embedded.values() for c in y})
        names = next((list(a["classes"]) for _, a, _ in embedded.values() if a.get("classes")), [])
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}  # same colour per class in every panel
        fig, axes = plt.subplots(1, len(found), figsize=(4.2 * len(found) + 1.6, 4.2), squeeze=False)
        for ax, (method, (seed, _, (emb, y, generated))) in zip(axes[0], embedded.items()):
            for c in classes:
                sel = y == c
                ax.scatter(*emb[sel & ~generated].T, s=12, marker="o", color=colour[c], alpha=0.75, lw=0)
                ax.scatter(*emb[sel & generated].T, s=14, marker="x", color=colour[c], alpha=0.9, lw=0.9)
            ax.set_title(f"{ctx.labels[method]}, seed {seed}")
            ax.set_xlabel("t-SNE dimension 1 (arbitrary units)")
            ax.set_ylabel("t-SNE dimension 2 (arbitrary units)")
            ax.set_xticks([])
            ax.set_yticks([])
        kinds = [Line2D([], [], ls="", marker="o", color="0.3", label="real (target data)"),
                 Line2D([], [], ls="", marker="x", color="0.3", label="generated")]
        fig.legend(handles=kinds, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False,
                   title="feature")
        if len(classes) > 20:  # a class legend would be unreadable; colours still separate classes
            fig.text(1.0, 0.6, f"colour = class\n({len(classes)} minority classes)", fontsize=8, va="top")
        else:
            fig.legend(handles=[Line2D([], [], ls="", marker="s", color=colour[c],
                                       label=names[c] if c < len(names) else str(c)) for c in classes],
                       loc="upper left", bbox_to_anchor=(1.0, 0.68), frameon=False, title="minority class")
        fig.suptitle(f"{task}: t-SNE of F's output features, minority classes, real vs generated")
        fig.tight_layout()
        written += ctx.save(fig, f"tsne_{task}")
    return written


def feature_statistics(feats: dict) -> dict[str, float]:
    """Real vs generated features of the classes present in both, in F's output space (flattened):
    - real_spread / generated_spread: mean distance of a feature to its class mean, averaged over classes;
    - spread_ratio: generated_spread / real_spread (well below 1: the generator collapses within a class);
    - class_gap: distance between a class's real and generated means, averaged over classes;
      gap_over_spread = class_gap / real_spread (above 1: generated classes sit outside the real ones);
    - nearest_mean_match: share of generated features whose nearest real class mean is their own class;
    - real_negative / generated_negative: share of entries below 0 (F's outputs end in a ReLU here)."""
    # float32 and one class at a time: ResNet-50's features have 802 816 dims (200 x that is 640 MB)
    real = feats["real"].float().flatten(1).numpy()
    gen = feats["generated"].float().flatten(1).numpy()
    ry, gy = feats["real_labels"].numpy(), feats["generated_labels"].numpy()
    classes = sorted(set(ry.tolist()) & set(gy.tolist()))
    if not classes:
        raise ValueError("no class has both real and generated features")
    means = np.stack([real[ry == c].mean(axis=0) for c in classes])
    real_sp, gen_sp, gaps = [], [], []
    for i, c in enumerate(classes):
        g = gen[gy == c]
        real_sp.append(np.linalg.norm(real[ry == c] - means[i], axis=1).mean())
        gen_sp.append(np.linalg.norm(g - g.mean(axis=0), axis=1).mean())
        gaps.append(np.linalg.norm(g.mean(axis=0) - means[i]))
    keep = np.isin(gy, classes)
    dist = np.stack([np.linalg.norm(gen[keep] - m, axis=1) for m in means], axis=1)  # [n_generated, n_classes]
    nearest = np.asarray(classes)[dist.argmin(axis=1)]
    real_spread, gen_spread, gap = (float(np.mean(v, dtype=np.float64)) for v in (real_sp, gen_sp, gaps))
    return {"classes": len(classes), "real_spread": real_spread, "generated_spread": gen_spread,
            "spread_ratio": gen_spread / real_spread if real_spread > 0 else float("nan"),
            "class_gap": gap, "gap_over_spread": gap / real_spread if real_spread > 0 else float("nan"),
            "nearest_mean_match": float((nearest == gy[keep]).mean()),
            "real_negative": float((real < 0).mean()), "generated_negative": float((gen < 0).mean())}


def generated_features_table(ctx: Context) -> list[Path]:
    """generated_features.csv: feature_statistics of every run (task, generating method, seed) that has
    artefacts.pt; the t-SNE shows one seed, this table all of them."""
    rows = []
    runs = ctx.runs[[ctx.base(m) in GENERATING_METHODS for m in ctx.runs.method]]
    for task in ctx.tasks:
        for method in ctx.methods:
            for _, row in runs[(runs.task == task) & (runs.method == method)].sort_values("seed").iterrows():
                path = ctx.run_dir(row) / "artefacts.pt"
                if path.is_file():
                    feats = load_torch(path, what="artefacts file", fix="rerun that training job").get("features")
                    if feats is not None:
                        rows.append({"task": task, "method": method, "seed": int(row["seed"]),
                                     **feature_statistics(feats)})
    if not rows:
        log.info("generated_features.csv: skipped, no artefacts.pt of %s", " or ".join(GENERATING_METHODS))
        return []
    path = ctx.out_dir / "generated_features.csv"
    with atomic_path(path, suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.4f")
    return [path]


def _class_ticks(ax: plt.Axes, k: int, minority: set[int], names: list[str]) -> None:
    """Class names with '*' for minority classes; beyond MAX_CLASS_TICKS classes, red marks on the left
    edge instead (names would not fit)."""
    if k <= MAX_CLASS_TICKS:
        ax.set_yticks(range(k), [(names[c] if c < len(names) else str(c)) + (" *" if c in minority else "")
                                 for c in range(k)])
        ax.set_ylabel("Class (* = minority)" if minority else "Class")
        return
    if minority:
        edge = blended_transform_factory(ax.transAxes, ax.transData)
        ax.scatter(np.full(len(minority), -0.015), sorted(minority), transform=edge, marker=">", s=8,
                   color="tab:red", clip_on=False, zorder=3, lw=0)
    ax.set_ylabel("Class index (red marks = minority)" if minority else "Class index")


def attention(ctx: Context) -> list[Path]:
    """Per task with a DFG run: the class-attention matrix at the last recorded step, and its evolution
    (small multiples at evenly spaced recorded steps, plus the L1 distance of each class's attention row
    to its final value, averaged over minority and over majority classes)."""
    written = []
    for task in ctx.tasks:
        found = _artefacts(ctx, task, "dfg") if "dfg" in ctx.methods else None
        if not found or "attention" not in found[1]:
            log.info("attention of %s: skipped, no dfg artefacts.pt with attention", task)
            continue
        seed, art = found
        steps = np.asarray(art["attention"]["steps"]).astype(int)
        mats = art["attention"]["matrices"].float().numpy()
        k, c = mats.shape[1:]
        minority = {int(x) for x in art.get("minority_classes", [])}
        names = list(art.get("classes") or [])
        vmax = float(mats.max())

        fig, ax = plt.subplots(figsize=(min(12.0, 2.5 + 0.25 * c), min(12.0, 1.5 + 0.3 * k)))
        im = ax.imshow(mats[-1], aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        _class_ticks(ax, k, minority, names)
        ax.set_xlabel("Channel of F's output")
        ax.grid(False)
        fig.colorbar(im, ax=ax, label="Attention weight (each row sums to 1)")
        ax.set_title(f"{task}: DFG class attention at step {steps[-1]} (seed {seed})")
        written += ctx.save(fig, f"attention_{task}")

        if len(steps) < 2:
            log.info("attention over training of %s: skipped, only one recorded step (%d)", task, steps[-1])
            continue
        n_panels = min(len(steps), ctx.fig_params.get("attention_panels", 4))
        picks = np.unique(np.linspace(0, len(steps) - 1, n_panels).round().astype(int))
        fig = plt.figure(figsize=(2.6 * len(picks) + 5.0, 3.8), layout="constrained")
        left, right = fig.subfigures(1, 2, width_ratios=[2.6 * len(picks) + 0.8, 4.2])
        axes = left.subplots(1, len(picks), squeeze=False)
        for j, (ax, t) in enumerate(zip(axes[0], picks)):
            im = ax.imshow(mats[t], aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_title(f"step {steps[t]}")
            ax.set_xlabel("Channel")
            ax.grid(False)
            if j == 0:
                _class_ticks(ax, k, minority, names)
            else:
                ax.set_yticks([])
        left.colorbar(im, ax=list(axes[0]), label="Attention weight")
        ax = right.subplots()
        dist = np.abs(mats - mats[-1]).sum(axis=2)  # [T, K]: L1 distance of each row to its final value
        groups = [("minority classes", sorted(minority)), ("majority classes", sorted(set(range(k)) - minority))]
        for (label, cls), colour in zip(groups, ("tab:red", "tab:blue")):
            if cls:
                ax.plot(steps, dist[:, cls].mean(axis=1), marker="o", ms=3, color=colour, label=label)
                ax.fill_between(steps, dist[:, cls].min(axis=1), dist[:, cls].max(axis=1), color=colour,
                                alpha=0.15, lw=0)
        ax.set_xlabel("Training step")
        ax.set_ylabel("L1 distance to the final row (sum of |Δ weight|)")
        ax.set_title("change per class: mean, band = min to max")
        ax.legend(frameon=False)
        fig.suptitle(f"{task}: DFG class attention over training (seed {seed})")
        written += ctx.save(fig, f"attention_training_{task}")
    return written
