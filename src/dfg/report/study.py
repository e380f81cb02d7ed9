"""`dfg study`: why the paper's DFG number does not reproduce, in two experiments read from three suites.

- Experiment 1, one fixed split (suite fmnist-fixed-split): the paper's F-MNIST protocol with every training
  seed on seed 0's split and a validation set. Per method, the mean, spread and range of the final step,
  the evaluation selected on validation data and the one selected on the test set (the authors' rule),
  beside the same method over varying splits (suite fmnist-full) and the paper's reported mean ± std.
- Experiment 2, a non-linear critic (suite dfg-slope02): DFG with LeakyReLU slope 0.2 in G and D against
  the authors' affine critic, DELTA and ORIGINAL at 12 000 steps, paired by seed; the critic's loss, the
  classifier's cross-entropy on generated against real features, and generated_features.csv. First, a
  check that each 12 000-step run equals fmnist-full's run of the same method and seed up to step 12 000
  (the premise of comparing against fmnist-full's curves there).

Writes (atomically) into --out-dir: study.md (every table, with how each number is computed),
experiment1.csv, experiment2.csv, prefix_check.csv, losses.csv, cost.csv, and the figures
study_split_spread.*, study_rules.*, study_critic.* (figures.formats; drawn by dfg.report.study_figures).
It reads step_cost.csv there when present (`dfg bench --out`). A suite whose runs are absent is named in
study.md and its section skipped: the report never mixes in numbers it does not have.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dfg import DfgError
from dfg.report import paper
from dfg.report.runs import SELECTED, VAL_SELECTED, load_runs, method_labels
from dfg.report.stats import paired_test, same_split
from dfg.utils.io import atomic_path, write_text

log = logging.getLogger(__name__)

#: The three suites and the step experiment 2 compares at.
FULL, FIXED, ABLATION = "fmnist-full", "fmnist-fixed-split", "dfg-slope02"
PAPER_COLUMN = "fmnist"
#: Rules, as (column of load_runs, label).
RULES = (("accuracy", "final step"), (VAL_SELECTED, "selected on validation"),
         (SELECTED, "selected on the test set (authors' rule; optimistic)"))
#: The step-cost measurement that study.md reads when present: written by
#: `dfg --suite dfg-slope02 bench --backbones lenet5 --methods dfg,dfg_slope02 --out results/study/step_cost.csv`.
STEP_COST = "step_cost.csv"
#: Evaluations averaged for "late in the run" losses: the last this many of each run's curve.
LATE_EVALUATIONS = 20
NO = "—"


# -- small helpers -----------------------------------------------------------------------------------------
def describe(values: pd.Series | np.ndarray, scale: float = 100.0) -> dict:
    """mean, sample std (ddof 1), min, max, n and the 95 % t-interval of the mean, scaled (to %)."""
    v = np.asarray(pd.Series(values).dropna(), dtype=float) * scale
    n = len(v)
    out = {"n": n, "mean": float(v.mean()) if n else math.nan, "std": float(v.std(ddof=1)) if n > 1 else math.nan,
           "min": float(v.min()) if n else math.nan, "max": float(v.max()) if n else math.nan,
           "ci_low": math.nan, "ci_high": math.nan}
    if n > 1:
        from scipy import stats

        half = float(stats.t.ppf(0.975, n - 1)) * out["std"] / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out


def cell(d: dict, with_range: bool = False) -> str:
    if not d["n"]:
        return NO
    text = f"{d['mean']:.2f}" + (f" ± {d['std']:.2f}" if d["n"] > 1 else "") + f" (n={int(d['n'])})"
    return text + (f" [{d['min']:.2f}, {d['max']:.2f}]" if with_range and d["n"] > 1 else "")


def suite_runs(results: Path, suite: str) -> pd.DataFrame | None:
    runs_dir = results / suite / "runs"
    if not runs_dir.is_dir():
        return None
    runs = load_runs([runs_dir])
    return runs if len(runs) else None


def read_full_curve(run_row: pd.Series) -> pd.DataFrame:
    path = Path(run_row["path"]).parent / "curves.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


# -- experiment 1 ------------------------------------------------------------------------------------------
def experiment1(fixed: pd.DataFrame, full: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """Long table (method, setting, rule, stats) and the Markdown section."""
    labels = method_labels(pd.concat([fixed, full]) if full is not None else fixed)
    methods = [m for m in [*paper.PAPER_METHODS, *sorted(set(fixed.method))] if m in set(fixed.method)]
    methods = list(dict.fromkeys(methods))
    rows = []
    for method in methods:
        for setting, runs in (("one split (fmnist-fixed-split)", fixed), ("varying splits (fmnist-full)", full)):
            if runs is None:
                continue
            g = runs[runs.method == method]
            for col, rule in RULES:
                if col not in g or g[col].isna().all():
                    continue
                rows.append({"method": method, "label": labels.get(method, method), "setting": setting,
                             "rule": rule, **describe(g[col])})
        rep = paper.reported(method, PAPER_COLUMN)
        if rep:
            rows.append({"method": method, "label": labels.get(method, method), "setting": "reported in the paper",
                         "rule": "best test evaluation (authors' rule)", "n": math.nan, "mean": rep[0],
                         "std": rep[1], "min": math.nan, "max": math.nan, "ci_low": math.nan, "ci_high": math.nan})
    long = pd.DataFrame(rows)

    split_seeds = sorted(set(fixed.split_seed))
    val = fixed[fixed.val_per_class > 0]
    taken = sorted({n for lst in val.val_from_training for n in (lst or []) if n})
    lines = [
        "## Experiment 1: the paper's protocol on one fixed split", "",
        (f"Suite `{FIXED}`: every training seed ({', '.join(map(str, sorted(set(fixed.seed))))}) trains on the split "
         f"of seed {', '.join(map(str, split_seeds))} (the first seed, not a choice), 40 000 steps, an evaluation "
         "every 100 steps. Its validation set: "
         + (f"{int(val.val_per_class.iloc[0])} images per class from the images the split leaves unused; the two "
            f"majority classes use all of theirs, so {', '.join(map(str, taken))} of each came out of their "
            "training images. " if len(val) else "none. ")
         + f"Beside it, suite `{FULL}`: the same methods with each seed's own split (five different pairs of "
         "majority classes), and the paper's reported mean ± std. Cells: mean ± sample std (n runs) "
         "[min, max], top-1 %."), ""]
    table = []
    for method in methods:
        sub = long[long.method == method]
        row = {"method": labels.get(method, method)}
        for setting, short in (("one split (fmnist-fixed-split)", "one split"),
                               ("varying splits (fmnist-full)", "varying splits")):
            for _, rule in RULES:
                r = sub[(sub.setting == setting) & (sub.rule == rule)]
                if len(r) and not (short == "varying splits" and rule == "selected on validation"):
                    row[f"{short}: {rule}"] = cell(r.iloc[0].to_dict(), with_range=True)
        rep = paper.reported(method, PAPER_COLUMN)
        row["reported in the paper"] = f"{rep[0]:.2f} ± {rep[1]:.2f}" if rep else NO
        table.append(row)
    lines += [pd.DataFrame(table).fillna(NO).to_markdown(index=False, disable_numparse=True), ""]

    # Every run on the fixed split, so that the spread can be read run by run.
    per_run = []
    for method in methods:
        g = fixed[fixed.method == method].sort_values("seed")
        for col, rule in RULES:
            if col in g and g[col].notna().any():
                per_run.append({"method": labels.get(method, method), "rule": rule,
                                **{f"seed {int(r.seed)}": f"{100 * r[col]:.2f}" for _, r in g.iterrows()}})
    if per_run:
        lines += ["### Every run on the fixed split (top-1 %, by training seed)", "",
                  pd.DataFrame(per_run).fillna(NO).to_markdown(index=False, disable_numparse=True), ""]

    # The spread, method by method: one split against varying splits against the paper.
    spread = []
    for method in methods:
        sub = long[long.method == method]

        def std_of(setting: str, rule: str, sub: pd.DataFrame = sub) -> float:
            r = sub[(sub.setting == setting) & (sub.rule == rule)]
            return float(r["std"].iloc[0]) if len(r) else math.nan

        rep = paper.reported(method, PAPER_COLUMN)
        spread.append({
            "method": labels.get(method, method),
            **{f"std, one split, {rule}": f"{std_of('one split (fmnist-fixed-split)', rule):.2f}" for _, rule in RULES},
            "std, varying splits, final step": f"{std_of('varying splits (fmnist-full)', RULES[0][1]):.2f}",
            "std, varying splits, authors' rule": f"{std_of('varying splits (fmnist-full)', RULES[2][1]):.2f}",
            "std reported in the paper": f"{rep[1]:.2f}" if rep else NO,
        })
    lines += ["### The spread over seeds (pp)", "",
              pd.DataFrame(spread).replace("nan", NO).to_markdown(index=False, disable_numparse=True), ""]

    # DFG against the paper's number under the authors' rule on one split.
    dfg = long[(long.method == "dfg") & (long.setting == "one split (fmnist-fixed-split)")
               & (long.rule == RULES[2][1])]
    if len(dfg):
        d = dfg.iloc[0]
        rep = paper.reported("dfg", PAPER_COLUMN)
        inside = d.ci_low <= rep[0] <= d.ci_high
        lines += ["### DFG on one split under the authors' rule, against the paper's 82.65 ± 0.28", "",
                  (f"{d['mean']:.2f} ± {d['std']:.2f} (n={int(d['n'])}), range {d['min']:.2f} to {d['max']:.2f}, "
                   f"95 % t-interval of the mean {d.ci_low:.2f} to {d.ci_high:.2f}: the paper's mean "
                   f"{rep[0]:.2f} lies {'inside' if inside else 'outside'} it "
                   f"({rep[0] - d['mean']:+.2f} pp from ours); our spread is {d['std'] / rep[1]:.1f} times the "
                   f"reported {rep[1]:.2f}."), ""]
    # Paired tests on the fixed split: DFG against each method under each rule.
    tests = []
    for col, rule in RULES:
        if col not in fixed or fixed[col].isna().all() or "dfg" not in set(fixed.method):
            continue
        by = {m: g.set_index("seed") for m, g in fixed.groupby("method")}
        for method in methods:
            if method == "dfg":
                continue
            a, b, _ = same_split(by["dfg"][col], by[method][col], by["dfg"].split_sha256, by[method].split_sha256)
            res = paired_test(a, b)
            tests.append({"DFG minus": labels.get(method, method), "rule": rule, "n pairs": res["n_pairs"],
                          "mean difference (pp)": f"{100 * res['mean_diff']:+.2f}",
                          "t-test p": f"{res['t_pvalue']:.3g}", "Wilcoxon p": f"{res['wilcoxon_pvalue']:.3g}"})
    if tests:
        lines += ["### Paired tests on the fixed split: DFG minus each method", "",
                  ("Runs paired by training seed (one split for all). Two-sided paired t-test and exact Wilcoxon "
                   "signed-rank test; at n = 5 the Wilcoxon test cannot give p below 0.0625."), "",
                  pd.DataFrame(tests).replace("nan", NO).to_markdown(index=False, disable_numparse=True), ""]
    return long, lines


# -- experiment 2 ------------------------------------------------------------------------------------------
def prefix_check(ablation: pd.DataFrame, full: pd.DataFrame, step: int) -> pd.DataFrame:
    """Each ablation-suite run that fmnist-full also has (same method and seed) against that run's curve up
    to `step`: the evaluations compared, the largest difference in test accuracy and in any shared loss
    column, and whether every shared number is identical."""
    rows = []
    for _, r in ablation.iterrows():
        twin = full[(full.method == r.method) & (full.seed == r.seed)]
        if twin.empty:
            continue
        a, b = read_full_curve(r), read_full_curve(twin.iloc[0])
        b = b[b.step <= step]
        merged = a.merge(b, on="step", suffixes=("", "_full"))
        shared = [c for c in a.columns if c != "step" and f"{c}_full" in merged]
        diffs = {c: float((merged[c] - merged[f"{c}_full"]).abs().max()) for c in shared}
        losses = {c: v for c, v in diffs.items() if not c.startswith(("test_", "val_"))}
        rows.append({"method": r.method, "seed": int(r.seed), "evaluations": len(merged),
                     "same split": r.split_sha256 == twin.iloc[0].split_sha256,
                     "max |Δ test accuracy|": diffs.get("test_accuracy", math.nan),
                     "max |Δ loss|": max(losses.values()) if losses else math.nan,
                     "identical": bool(len(merged)) and all(v == 0 for v in diffs.values())})
    return pd.DataFrame(rows)


def late_mean(curve: pd.DataFrame, column: str) -> float:
    if column not in curve or curve[column].isna().all():
        return math.nan
    return float(curve[column].dropna().tail(LATE_EVALUATIONS).mean())


def crossing_step(curve: pd.DataFrame) -> float:
    """The first evaluation at which the classifier's cross-entropy on generated features is below that on
    real features (NaN when it never is, or the run does not log them)."""
    if not {"clf_ce_generated", "clf_ce_real"} <= set(curve.columns):
        return math.nan
    c = curve.dropna(subset=["clf_ce_generated", "clf_ce_real"])
    below = c[c.clf_ce_generated < c.clf_ce_real]
    return float(below.step.iloc[0]) if len(below) else math.nan


def experiment2(ablation: pd.DataFrame, full: pd.DataFrame | None, features: pd.DataFrame | None,
                step: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    labels = method_labels(ablation)
    order = [m for m in ("original", "delta", "dfg") if m in set(ablation.method)]
    order += sorted(set(ablation.method) - set(order))
    variant = next((m for m in order if m not in paper.PAPER_METHODS), None)
    steps = sorted(set(ablation.steps.dropna().astype(int)))
    lines = ["## Experiment 2: DFG with a non-linear critic and generator", "",
             (f"Suite `{ABLATION}`: fmnist-full's task, splits and seeds (each run on its own seed's split), "
              f"{', '.join(f'{s:,}' for s in steps)} steps, no validation set. "
              + (f"{labels[variant]} uses LeakyReLU slope 0.2 in G and D; DFG is the authors' slope 1 (an "
                 "affine critic, a generator linear up to its Tanh). " if variant else "")
              + "Every other number is the same."), ""]

    prefix = prefix_check(ablation, full, step) if full is not None else pd.DataFrame()
    if len(prefix):
        n_id = int(prefix.identical.sum())
        lines += [f"### Does a {step:,}-step run equal the longer fmnist-full run at step {step:,}?", "",
                  (f"Each run here against fmnist-full's run of the same method and seed, evaluation by "
                   f"evaluation up to step {step:,} (test accuracy and every loss column both curves log): "
                   f"{n_id} of {len(prefix)} runs identical in every number. Runs without a learning-rate "
                   "schedule or a step-count-dependent phase do not depend on the total step count; "
                   "identity also needs the same split, source model and CPU code path (fmnist-full ran on "
                   "AVX2: `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` on an AVX-512 machine)."), "",
                  prefix.assign(**{c: prefix[c].map(lambda v: NO if pd.isna(v) else f"{v:.4g}")
                                   for c in ("max |Δ test accuracy|", "max |Δ loss|")}
                                ).to_markdown(index=False, disable_numparse=True), ""]

    # accuracy at the step, both rules, and paired differences
    acc_rows, table = [], []
    for method in order:
        g = ablation[ablation.method == method]
        for col, rule in (("accuracy", "final step"), (SELECTED, RULES[2][1])):
            acc_rows.append({"method": method, "label": labels[method], "rule": rule, **describe(g[col])})
        rules = (("accuracy", f"at step {step:,}"), (SELECTED, f"best evaluation up to {step:,} (authors' rule)"))
        table.append({"method": labels[method],
                      **{rule: cell(describe(g[col]), with_range=True) for col, rule in rules}})
    lines += [f"### Top-1 accuracy at step {step:,} (%)", "",
              pd.DataFrame(table).to_markdown(index=False, disable_numparse=True), ""]
    tests = []
    if variant:
        by = {m: g.set_index("seed") for m, g in ablation.groupby("method")}
        for other in [m for m in ("dfg", "delta", "original") if m in by]:
            for col, rule in (("accuracy", f"at step {step:,}"), (SELECTED, "authors' rule")):
                a, b, _ = same_split(by[variant][col], by[other][col], by[variant].split_sha256,
                                     by[other].split_sha256)
                res = paired_test(a, b)
                tests.append({"pair": f"{labels[variant]} minus {labels[other]}", "rule": rule,
                              "n pairs": res["n_pairs"], "mean difference (pp)": f"{100 * res['mean_diff']:+.2f}",
                              "t-test p": f"{res['t_pvalue']:.3g}", "Wilcoxon p": f"{res['wilcoxon_pvalue']:.3g}"})
        lines += ["Paired by seed (same split), two-sided paired t-test and exact Wilcoxon signed-rank test:", "",
                  pd.DataFrame(tests).replace("nan", NO).to_markdown(index=False, disable_numparse=True), ""]

    # losses late in the run
    loss_rows = []
    for _, r in ablation[ablation.method.isin(["dfg", *([variant] if variant else [])])].iterrows():
        curve = read_full_curve(r)
        loss_rows.append({"method": r.method, "seed": int(r.seed), "critic_loss": late_mean(curve, "loss_d"),
                          "gradient_penalty": late_mean(curve, "gp"),
                          "clf_ce_generated": late_mean(curve, "clf_ce_generated"),
                          "clf_ce_real": late_mean(curve, "clf_ce_real"), "generated_below_real_from": crossing_step(curve),
                          "critic_loss_min": float(curve.loss_d.min()) if "loss_d" in curve else math.nan,
                          "critic_loss_max": float(curve.loss_d.max()) if "loss_d" in curve else math.nan})
    losses = pd.DataFrame(loss_rows)
    if len(losses):
        view = []
        for method, g in losses.groupby("method", sort=False):
            view.append({"method": labels[method],
                         "critic loss, late (mean ± std)": f"{g.critic_loss.mean():.2f} ± {g.critic_loss.std():.2f}",
                         "critic loss, whole run (min to max)": f"{g.critic_loss_min.min():.1f} to {g.critic_loss_max.max():.1f}",
                         "gradient penalty, late": f"{g.gradient_penalty.mean():.3f}",
                         "C's CE on generated, late": f"{g.clf_ce_generated.mean():.4f}",
                         "C's CE on real, late": f"{g.clf_ce_real.mean():.4f}",
                         "generated below real from step (median)": (f"{g.generated_below_real_from.median():,.0f}"
                                                                     if g.generated_below_real_from.notna().any() else NO)})
        lines += ["### The critic and what the generated features teach the classifier", "",
                  (f"Per run, the mean over its last {LATE_EVALUATIONS} evaluations (each the mean of the "
                   "losses since the one before), then the mean over runs. The critic's loss is E[D(fake)] − E[D(real)] + the penalty: near 0 when D "
                   "cannot tell G's features from F's, strongly negative while it can. C's cross-entropies are those "
                   "of DFG's classifier-only update (every 5th step): on G's features of the minority classes "
                   "and on the real batch; a loss on generated features far below the real one means they are "
                   "easy for C and add little."), "",
                  pd.DataFrame(view).to_markdown(index=False, disable_numparse=True), ""]

    if features is not None and len(features):
        cols = ["spread_ratio", "gap_over_spread", "nearest_mean_match", "generated_negative"]
        view = []
        for method, g in features.groupby("method", sort=False):
            view.append({"method": labels.get(method, method), "runs": len(g),
                         **{c: f"{g[c].mean():.3f} ± {g[c].std():.3f}" for c in cols}})
        lines += ["### Generated against real features (generated_features.csv)", "",
                  ("F's output features of the minority classes, 200 real and 200 generated per run at the run's "
                   "end, mean ± std over runs: spread_ratio = generated / real within-class spread (1 = as "
                   "spread as the real ones), gap_over_spread = distance between a class's real and generated "
                   "means over the real spread, nearest_mean_match = share of generated features nearest their "
                   "own class's real mean, generated_negative = share of generated entries below 0 (real ones "
                   "pass a ReLU)."), "",
                  pd.DataFrame(view).to_markdown(index=False, disable_numparse=True), ""]
    return pd.DataFrame(acc_rows), prefix, losses, lines


def step_cost(bench: pd.DataFrame, base: str = "dfg") -> list[str]:
    """The step of each benched method against `base`'s, from one `dfg bench --out` run (its rows were
    timed back to back in one process, so their ratio holds on that machine)."""
    rows = bench[bench.backbone == "lenet5"] if "lenet5" in set(bench.backbone) else bench
    if base not in set(rows.method):
        return []
    ref = float(rows.loc[rows.method == base, "ms_per_step"].iloc[0])
    view = [{"method": r.method, "ms per step": f"{r.ms_per_step:.1f}", "steps/s": f"{r.steps_per_s:.2f}",
             f"× {base}'s step": f"{r.ms_per_step / ref:.2f}"} for r in rows.itertuples()]
    first = rows.iloc[0]
    return ["### The step's cost", "",
            (f"`dfg bench` (random data of the right shape, batch {int(first.batch)}, {int(first.steps)} timed steps "
             f"after the untimed warm-up, {first.device}"
             + (f" ({first.cpu_kernels} kernels)" if "cpu_kernels" in rows and first.device == "cpu" else "")
             + f", {first.threads} thread(s)), every row in one run: "
             "`results/study/step_cost.csv`."), "",
            pd.DataFrame(view).to_markdown(index=False, disable_numparse=True), ""]


# -- cost --------------------------------------------------------------------------------------------------
def cost(suites: dict[str, pd.DataFrame | None]) -> tuple[pd.DataFrame, list[str]]:
    """What each suite's training cost, from its runs' metrics.json: per method, the runs, the median and
    total training-loop time (wall_seconds: the loop with its evaluations, summed over the attempts of a
    resumed run; start-up and set-up excluded), where the runs ran (CPU model, torch's kernel set,
    threads) and how many resumed from a checkpoint."""
    import json

    rows = []
    for suite, runs in suites.items():
        if runs is None:
            continue
        labels = method_labels(runs)
        order = list(dict.fromkeys([m for m in paper.PAPER_METHODS if m in set(runs.method)]
                                   + sorted(set(runs.method) - set(paper.PAPER_METHODS))))
        for method in order:
            g = runs[runs.method == method]
            where, resumed = set(), 0
            for path in g.path:
                m = json.loads(Path(path).read_text())
                prov = m.get("provenance") or {}
                gpu = prov.get("gpu")
                where.add(str(gpu.get("name")) if isinstance(gpu, dict) and gpu.get("name") else
                          f"{prov.get('cpu_model', '?')}, {prov.get('torch_cpu_capability', '?')}, "
                          f"{prov.get('torch_threads', '?')} thread(s)")
                resumed += m.get("resumed_from_step") is not None
            minutes = g.wall_seconds.dropna() / 60
            rows.append({"suite": suite, "method": method, "label": labels.get(method, method), "runs": len(g),
                         "steps": int(g.steps.dropna().max()) if g.steps.notna().any() else math.nan,
                         "median_minutes": float(minutes.median()) if len(minutes) else math.nan,
                         "total_hours": float(minutes.sum() / 60) if len(minutes) else math.nan,
                         "resumed_runs": resumed, "where": "; ".join(sorted(where))})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame, []
    lines = ["## Cost", "",
             ("Training-loop time from each run's metrics.json (`wall_seconds`: the training steps and their "
              "evaluations, summed over the attempts of a run resumed from a checkpoint; start-up and set-up, a "
              "few seconds a job, are not in it). Where the runs ran: the last column, from their provenance."), ""]
    view = frame.assign(**{"median per run (min)": frame.median_minutes.map(lambda v: f"{v:.1f}"),
                           "total (h)": frame.total_hours.map(lambda v: f"{v:.2f}")})
    view = view.rename(columns={"label": "method (label)", "resumed_runs": "resumed runs",
                                "where": "ran on"})
    lines += [view[["suite", "method (label)", "runs", "steps", "median per run (min)", "total (h)",
                    "resumed runs", "ran on"]].to_markdown(index=False, disable_numparse=True), ""]
    totals = frame.groupby("suite", sort=False).agg(runs=("runs", "sum"), hours=("total_hours", "sum"))
    lines += ["Per suite, in all: " + "; ".join(f"`{s}` {int(t.runs)} runs, {t.hours:.1f} h of training loops"
                                               for s, t in totals.iterrows()) + ".", ""]
    return frame, lines


# -- the verb ----------------------------------------------------------------------------------------------
def build(results: Path, out: Path, params: dict) -> list[Path]:
    from dfg.report import study_figures  # matplotlib, only when writing
    full, fixed, ablation = (suite_runs(results, s) for s in (FULL, FIXED, ABLATION))
    if fixed is None and ablation is None:
        raise DfgError(f"no runs of {FIXED} or {ABLATION} under {results}; run those suites first "
                       f"(snakemake --config suite={FIXED}, suite={ABLATION})")
    fig = params.get("figures", {}) if params else {}
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    md = ["# Why the paper's DFG number does not reproduce: two experiments", "",
          ("Generated by `dfg study` from the suites' committed runs; docs/study.md reads these tables. Top-1 "
           "accuracy on the full F-MNIST test set (10 000 images), in %."), ""]
    missing = [s for s, r in ((FULL, full), (FIXED, fixed), (ABLATION, ablation)) if r is None]
    if missing:
        md += [f"Not found, sections skipped: {', '.join(f'`{results / s}/runs`' for s in missing)}.", ""]
    if fixed is not None:
        long, lines = experiment1(fixed, full)
        md += lines
        written.append(out / "experiment1.csv")
        write_csv(written[-1], long)
        written += study_figures.figure_spread(long, fixed, full, out, fig)
        md += ["![runs under each rule](study_split_spread.png)", ""]
        rules = study_figures.figure_rules(fixed, out, fig)
        if rules:
            written += rules
            md += ["![accuracy against step and the evaluation each rule keeps](study_rules.png)", ""]
    if ablation is not None:
        feats_path = results / ABLATION / "figures" / "generated_features.csv"
        feats = pd.read_csv(feats_path) if feats_path.is_file() else None
        step = int(ablation.steps.dropna().max())
        acc, prefix, losses, lines = experiment2(ablation, full, feats, step)
        md += lines
        if (out / STEP_COST).is_file():
            md += step_cost(pd.read_csv(out / STEP_COST))
        for name, frame in (("experiment2.csv", acc), ("prefix_check.csv", prefix), ("losses.csv", losses)):
            if len(frame):
                written.append(out / name)
                write_csv(written[-1], frame)
        written += study_figures.figure_critic(ablation, out, fig)
        md += ["![accuracy, critic loss and the classifier's cross-entropies](study_critic.png)", ""]
    spent, lines = cost({FULL: full, FIXED: fixed, ABLATION: ablation})
    if len(spent):
        md += lines
        written.append(out / "cost.csv")
        write_csv(written[-1], spent)
    written.append(out / "study.md")
    write_text(written[-1], "\n".join(md))
    return written


def main(args: argparse.Namespace, params: dict) -> int:
    written = build(args.results, args.out_dir, params)
    for p in written:
        log.info("wrote %s", p)
    print((args.out_dir / "study.md").read_text())
    return 0
