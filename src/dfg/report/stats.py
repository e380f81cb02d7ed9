"""Summary statistics over seeds and paired tests of one reference method against the others.

Runs of one task and seed share the identical split (method.md §4), so methods are compared *paired by
seed*: the paired t-test (scipy.stats.ttest_rel) and the Wilcoxon signed-rank test (scipy.stats.wilcoxon)
on the per-seed differences. With the 3-5 seeds of our suites both have little power, which the tables
say next to the numbers.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

SUMMARY_COLUMNS = ["suite", "task", "method", "metric", "mean", "std", "n_runs"]
PAIRED_COLUMNS = [
    "suite", "task", "metric", "reference", "method", "n_pairs", "seeds", "mean_ref", "mean_other",
    "mean_diff", "t_statistic", "t_pvalue", "wilcoxon_statistic", "wilcoxon_pvalue", "note",
]


def summarise(runs: pd.DataFrame, metrics: list[str], suite: str) -> pd.DataFrame:
    """Long table: one row per (task, method, metric) with the mean, the sample std (ddof = 1; NaN for a
    single run, where no spread can be estimated) and n_runs = runs that report the metric."""
    rows = []
    for (task, method), group in runs.groupby(["task", "method"], sort=False):
        for metric in metrics:
            values = group[metric].dropna().to_numpy(dtype=float)
            n = len(values)
            rows.append({
                "suite": suite, "task": task, "method": method, "metric": metric,
                "mean": float(values.mean()) if n else float("nan"),
                "std": float(values.std(ddof=1)) if n >= 2 else float("nan"),
                "n_runs": n,
            })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def wilcoxon_min_pvalue(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can return with n non-zero pairs: all
    signs alike has probability 2 / 2**n. It is 0.25 at n = 3 and first drops below 0.05 at n = 6."""
    return 2.0 ** (1 - n) if n >= 1 else 1.0


def paired_test(ref: pd.Series, other: pd.Series) -> dict:
    """Both tests on the seeds present in both series (indexed by seed). Undefined cases give NaN p-values
    and a note instead of an error: fewer than 2 pairs, or all differences zero (identical samples)."""
    seeds = sorted(set(ref.dropna().index) & set(other.dropna().index))
    a = ref.loc[seeds].to_numpy(dtype=float)
    b = other.loc[seeds].to_numpy(dtype=float)
    out = {
        "n_pairs": len(seeds), "seeds": " ".join(str(s) for s in seeds),
        "mean_ref": float(a.mean()) if seeds else math.nan,
        "mean_other": float(b.mean()) if seeds else math.nan,
        "mean_diff": float((a - b).mean()) if seeds else math.nan,
        "t_statistic": math.nan, "t_pvalue": math.nan,
        "wilcoxon_statistic": math.nan, "wilcoxon_pvalue": math.nan, "note": "",
    }
    if len(seeds) < 2:
        out["note"] = f"{len(seeds)} paired seed(s): no test possible"
        return out
    diff = a - b
    if np.all(diff == 0):
        out["note"] = "identical on every seed: no test (differences all zero)"
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant differences: scipy returns inf/0, fine
        t = stats.ttest_rel(a, b)
        out["t_statistic"], out["t_pvalue"] = float(t.statistic), float(t.pvalue)
        try:
            w = stats.wilcoxon(a, b)
            out["wilcoxon_statistic"], out["wilcoxon_pvalue"] = float(w.statistic), float(w.pvalue)
        except ValueError as e:  # scipy refuses some degenerate inputs; report, don't crash
            out["note"] = f"wilcoxon undefined: {e}"
    nonzero = int(np.count_nonzero(diff))
    ties = f" ({nonzero} non-zero differences)" if nonzero < len(seeds) else ""
    low_power = (f"low power: {len(seeds)} pairs{ties}, smallest possible Wilcoxon p = "
                 f"{wilcoxon_min_pvalue(nonzero):.3g}")
    out["note"] = "; ".join(x for x in (out["note"], low_power) if x)
    return out


def same_split(ref: pd.Series, other: pd.Series, ref_split: pd.Series | None,
               other_split: pd.Series | None) -> tuple[pd.Series, pd.Series, str]:
    """`ref` and `other` (indexed by seed) less the seeds whose two runs trained on different splits (by
    split sha256; an unknown split pairs with any): paired tests compare runs of one split only. The note
    says how many seeds were left out."""
    if ref_split is None or other_split is None:
        return ref, other, ""
    common = sorted(set(ref.dropna().index) & set(other.dropna().index))
    differ = [s for s in common if ref_split.get(s) and other_split.get(s) and ref_split[s] != other_split[s]]
    if not differ:
        return ref, other, ""
    note = f"seed(s) {' '.join(map(str, differ))} not paired: their runs trained on different splits"
    return ref.drop(differ), other.drop(differ), note


def paired_tests(runs: pd.DataFrame, reference: str, metric: str, suite: str,
                 methods: list[str]) -> pd.DataFrame:
    """`reference` against every other method of `methods`, per task, paired by seed on `metric`.
    Tasks without a run of the reference method are skipped (nothing to compare against)."""
    rows = []
    for task, group in runs.groupby("task", sort=False):
        by_method = {m: g.set_index("seed")[metric] for m, g in group.groupby("method")}
        splits = ({m: g.set_index("seed")["split_sha256"] for m, g in group.groupby("method")}
                  if "split_sha256" in group.columns else {})
        if reference not in by_method:
            continue
        for method in methods:
            if method == reference or method not in by_method:
                continue
            ref, other, note = same_split(by_method[reference], by_method[method], splits.get(reference),
                                          splits.get(method))
            res = paired_test(ref, other)
            if "split_seed" in group.columns:
                both = group[group.method.isin([reference, method]) & group.seed.isin(ref.index)]
                if (both.split_seed != both.seed).any():
                    note = "; ".join(x for x in (note, "on split seed(s) " + " ".join(
                        str(s) for s in sorted(set(both.split_seed)))) if x)
            res["note"] = "; ".join(x for x in (note, res["note"]) if x)
            rows.append({"suite": suite, "task": task, "metric": metric, "reference": reference,
                         "method": method, **res})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
