"""`dfg aggregate --out-dir results/<suite> METRICS_JSON...`: the suite's results tables.

Writes (all atomically) into --out-dir:
- table.csv: long format (suite, task, method, metric, mean, std, n_runs) over every scalar metric, in the
  units of metrics.json (fractions; wall_seconds in s); std is the sample std (ddof = 1), blank for n = 1;
- table.md / table.tex: methods x tasks, "mean ± std (n=k)" of params aggregate.metric_table in %, the
  paper's rows first, then the additions below a separator. For top-1 accuracy (the paper's metric) each
  task has two columns of ours, the final-step accuracy and the best accuracy of the run's evaluations
  (the authors' selection rule: selected on the test set, optimistic, labelled so), and beside each task
  whose params set `paper_column`, a column with the paper's reported numbers (never mixed into ours);
  table.md ends with the paired tests of aggregate.reference_method against every other method under
  both rules, for a task with a paper column the paired tests of the paper's reported order, and how far
  each method's test-selected accuracy lies above its final one (and at which step it was reached);
- table_extra.md: the same layout for each of aggregate.extra_metrics (balanced and minority accuracy);
- paired_tests.csv: the paired tests across seeds (t-test and Wilcoxon, p-values from scipy): the reference
  against each method under each rule, and the paper's reported order (`comparison` says which).
The Markdown of table.md is printed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
from pathlib import Path

import pandas as pd

from dfg import DfgError
from dfg.report import paper
from dfg.report.runs import (
    SCALAR_METRICS,
    SELECTED,
    VAL_SELECTED,
    is_addition,
    load_runs,
    method_labels,
    method_order,
    metrics_of,
    task_order,
)
from dfg.report.stats import paired_test, paired_tests, summarise, wilcoxon_min_pvalue
from dfg.utils.io import write_text

log = logging.getLogger(__name__)

#: Metrics shown in % in the Markdown/LaTeX tables (all fractions in metrics.json).
PERCENT_METRICS = {"accuracy", "balanced_accuracy", "macro_f1", "g_mean", "majority_accuracy",
                   "minority_accuracy", SELECTED, VAL_SELECTED}
METRIC_NAMES = {
    "accuracy": "Top-1 accuracy", "balanced_accuracy": "Balanced accuracy (mean per-class recall)",
    "macro_f1": "Macro-F1", "g_mean": "G-mean of per-class recall", "majority_accuracy":
    "Majority-class accuracy", "minority_accuracy": "Minority-class accuracy", "ece": "ECE (15 bins)",
    SELECTED: "Top-1 accuracy, best of the run's evaluations (selected on the test set: authors' rule; optimistic)",
    VAL_SELECTED: "Top-1 accuracy of the evaluation with the best validation accuracy (selected on validation data)",
}
FINAL = "final step"
SELECTED_COLUMN = "best of its evaluations, selected on the test set (authors' rule; optimistic)"
VAL_COLUMN = "selected on validation"
ADDITIONS_HEADER = "*additions (not in the paper)*"
REPORTED = "reported in the paper"
NO_RUNS = "—"


def _fmt(mean: float, std: float, n: int, scale: float) -> str:
    """'80.81 ± 0.25 (n=3)'; without ± for a single run; a dash where there is no run."""
    if n == 0 or math.isnan(mean):
        return NO_RUNS
    if n < 2 or math.isnan(std):
        return f"{mean * scale:.2f} (n={n})"
    return f"{mean * scale:.2f} ± {std * scale:.2f} (n={n})"


def _paper_cell(method: str, column: str | None) -> str:
    rep = paper.reported(method, column)
    return f"{rep[0]:.2f} ± {rep[1]:.2f}" if rep else NO_RUNS


def metric_grid(summary: pd.DataFrame, metric: str, methods: list[str], tasks: list[str],
                labels: dict[str, str], paper_columns: dict[str, str | None],
                variants: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """Rows = methods (paper's order, then a separator row, then additions), columns = tasks. For top-1
    accuracy, per task: ours at the final step, ours selected on validation data (VAL_SELECTED, where the
    summary has it), ours under the authors' selection rule (SELECTED), and where the task has a paper
    column, "<task>: reported in the paper". Variants (`variants`) carry their own label, without the
    "(addition)" suffix."""
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    both = metric == "accuracy"
    with_val = both and bool((summary[summary.metric == VAL_SELECTED].n_runs > 0).any())
    shown = ([(FINAL, metric), *([(VAL_COLUMN, VAL_SELECTED)] if with_val else []), (SELECTED_COLUMN, SELECTED)]
             if both else [(None, metric)])
    index = {m: summary[summary.metric == m].set_index(["task", "method"]) for _, m in shown}
    columns = []
    for task in tasks:
        columns += [f"{task}: {head}" if head else task for head, _ in shown]
        if both and paper_columns.get(task):
            columns.append(f"{task}: {REPORTED} ({paper.PAPER_COLUMNS[paper_columns[task]]})")
    rows, names = [], []
    separator_done = False
    for method in methods:
        if is_addition(method) and not separator_done:
            rows.append({})
            names.append(ADDITIONS_HEADER)
            separator_done = True
        row = {}
        for task in tasks:
            for head, m in shown:
                key = f"{task}: {head}" if head else task
                if (task, method) in index[m].index:
                    r = index[m].loc[(task, method)]
                    row[key] = _fmt(r["mean"], r["std"], int(r["n_runs"]), scale)
                else:
                    row[key] = NO_RUNS
            if both and paper_columns.get(task):
                row[f"{task}: {REPORTED} ({paper.PAPER_COLUMNS[paper_columns[task]]})"] = \
                    _paper_cell(method, paper_columns[task])
        rows.append(row)
        names.append(labels[method] + (" (addition)" if is_addition(method) and method not in variants else ""))
    grid = pd.DataFrame(rows, columns=columns).fillna("")
    grid.insert(0, "method", names)
    return grid


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("—", "--"), ("*", "")):
        s = s.replace(a, b)
    return s


def grid_to_tex(grid: pd.DataFrame, caption: str) -> str:
    """A plain tabular (no packages needed) inside a table float; \\hline above the additions."""
    cols = list(grid.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\caption{" + _tex_escape(caption) + "}",
             r"\begin{tabular}{l" + "c" * (len(cols) - 1) + "}", r"\hline",
             " & ".join(_tex_escape(c) for c in cols) + r" \\", r"\hline"]
    for _, row in grid.iterrows():
        if row["method"] == ADDITIONS_HEADER:
            lines.append(r"\hline")
            lines.append(r"\multicolumn{" + str(len(cols)) + r"}{l}{\emph{additions (not in the paper)}} \\")
            continue
        lines.append(" & ".join(_tex_escape(str(row[c])) for c in cols) + r" \\")
    lines += [r"\hline", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _legend(metric: str, summary: pd.DataFrame, any_paper: bool, evaluations: str = "") -> str:
    unit = " (%)" if metric in PERCENT_METRICS else ""
    text = (f"{METRIC_NAMES.get(metric, metric)} on the full test set{unit}: mean ± sample std "
            "(ddof = 1) over seeds; n = number of runs found (a missing seed lowers n; no ± for n = 1).")
    if metric == "accuracy":
        text += (f" \"{FINAL}\": the model after the last training step, our reported number. \"{SELECTED_COLUMN}\": "
                 f"the highest test accuracy among the run's evaluations{evaluations} and its final one, which "
                 "is how the authors' loop chose its model; it is chosen by looking at the test set, so it "
                 "overstates what the method would reach on new data, and it is shown only to compare with "
                 "the paper's numbers on their own terms.")
    if any_paper and metric == "accuracy":
        text += (f" Columns marked \"{REPORTED}\" repeat the paper's published numbers (method.md §4; "
                 "its number of runs is not stated) for tasks that follow its protocol; they are not our runs.")
    return text


def paired_section(tests: pd.DataFrame, reference: str, labels: dict[str, str], metric: str) -> str:
    """Markdown section explaining and listing the paired tests."""
    rule = {"accuracy": " (final step)", SELECTED: " (selected on the test set: authors' rule; optimistic)",
            VAL_SELECTED: " (selected on validation data)"}.get(metric, "")
    lines = [f"## Paired tests across seeds{rule}: {labels.get(reference, reference)} against each method", ""]
    if tests.empty:
        lines.append(f"No task has runs of the reference method `{reference}` and another method; no tests.")
        return "\n".join(lines) + "\n"
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    unit = " (pp)" if scale == 100.0 else ""
    lines.append(
        f"{METRIC_NAMES.get(metric, metric)}, runs paired by seed (every method of one seed sees the same "
        "split). Difference = reference minus method. Two-sided paired t-test (scipy.stats.ttest_rel) and "
        "Wilcoxon signed-rank test (scipy.stats.wilcoxon). With few seeds these tests have low power: "
        f"with n pairs the exact Wilcoxon test cannot give p below 2 / 2^n ({wilcoxon_min_pvalue(3):.2f} "
        f"at n = 3, {wilcoxon_min_pvalue(5):.4f} at n = 5), and a non-significant result is no evidence of "
        "equal accuracy.")
    lines.append("")
    table = pd.DataFrame({
        "task": tests["task"],
        "method": [labels.get(m, m) for m in tests["method"]],
        "n pairs": tests["n_pairs"],
        f"mean difference{unit}": [f"{d * scale:+.2f}" if not math.isnan(d) else NO_RUNS
                                  for d in tests["mean_diff"]],
        "t-test p": [f"{p:.3g}" if not math.isnan(p) else NO_RUNS for p in tests["t_pvalue"]],
        "Wilcoxon p": [f"{p:.3g}" if not math.isnan(p) else NO_RUNS for p in tests["wilcoxon_pvalue"]],
        "note": tests["note"],
    })
    lines.append(table.to_markdown(index=False, disable_numparse=True))
    return "\n".join(lines) + "\n"


def paper_order_section(runs: pd.DataFrame, tasks: list[str], paper_columns: dict[str, str | None],
                        labels: dict[str, str], suite: str) -> tuple[str, pd.DataFrame]:
    """For each task with a paper column: the paper's methods in its reported order on that column, and
    each neighbouring pair (higher reported - lower reported) tested on our runs under both rules."""
    rows, lines = [], []
    for task in tasks:
        col = paper_columns.get(task)
        group = runs[runs.task == task]
        present = [m for m in paper.PAPER_METHODS if m in set(group.method) and paper.reported(m, col)]
        if not col or len(present) < 2:
            continue
        order = sorted(present, key=lambda m: -paper.reported(m, col)[0])
        by = {(m, r): g.set_index("seed")[r] for m, g in group.groupby("method") for r in ("accuracy", SELECTED)}
        for higher, lower in itertools.pairwise(order):
            for rule in ("accuracy", SELECTED):
                res = paired_test(by[(higher, rule)], by[(lower, rule)])
                rows.append({"suite": suite, "task": task, "metric": rule, "reference": higher, "method": lower,
                             "comparison": "paper order", **res,
                             "reported_diff": paper.reported(higher, col)[0] - paper.reported(lower, col)[0]})
    table = pd.DataFrame(rows)
    if table.empty:
        return "", table
    for task, g in table.groupby("task", sort=False):
        col = paper_columns[task]
        chain = " > ".join(labels.get(m, m) for m in dict.fromkeys([*g.reference, g.method.iloc[-1]]))
        lines += [f"## The paper's order on {paper.PAPER_COLUMNS[col]} ({task}): {chain}", "",
                  ("Each pair: the method the paper reports higher minus the one it reports next, on our runs "
                   "paired by seed, under both rules (final step; selected on the test set, optimistic). "
                   "\"holds\" = our mean difference has the paper's sign (— where no seed has both runs); the "
                   "p-values say how surely (same tests and caveats as above)."), ""]
        view = pd.DataFrame({
            "pair": [f"{labels.get(h, h)} > {labels.get(lo, lo)}" for h, lo in zip(g.reference, g.method, strict=True)],
            "rule": [FINAL if r == "accuracy" else "selected on the test set" for r in g.metric],
            "reported difference (pp)": [f"{d:+.2f}" for d in g.reported_diff],
            "our mean difference (pp)": [f"{100 * d:+.2f}" if not math.isnan(d) else NO_RUNS for d in g.mean_diff],
            "n pairs": g.n_pairs,
            "t-test p": [f"{p:.3g}" if not math.isnan(p) else NO_RUNS for p in g.t_pvalue],
            "Wilcoxon p": [f"{p:.3g}" if not math.isnan(p) else NO_RUNS for p in g.wilcoxon_pvalue],
            "holds": ["yes" if d > 0 else "no" if d <= 0 else NO_RUNS for d in g.mean_diff],  # NaN: no pairs
        })
        lines += [view.to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(lines), table


def selection_gap_section(runs: pd.DataFrame, methods: list[str], tasks: list[str],
                          labels: dict[str, str]) -> str:
    """How optimistic the authors' rule is, per task and method: the best test accuracy of a run's
    evaluations minus its final-step accuracy (pp; mean and range over runs), and where the best
    evaluation lay (median step, and as a share of the run's steps)."""
    with_curves = runs[runs.n_evaluations > 0]
    rows = []
    for task in tasks:
        for method in methods:
            g = with_curves[(with_curves.task == task) & (with_curves.method == method)]
            if g.empty:
                continue
            gap = 100 * (g[SELECTED] - g["accuracy"])
            share = (g.selected_step / g.steps).median() if g.steps.notna().all() else float("nan")
            rows.append({
                "task": task, "method": labels.get(method, method), "n": len(g),
                "selected − final (pp), mean": f"{gap.mean():+.2f}",
                "min to max (pp)": f"{gap.min():+.2f} to {gap.max():+.2f}",
                "best evaluation at step (median)": f"{g.selected_step.median():,.0f}",
                "share of the run": NO_RUNS if math.isnan(share) else f"{share:.0%}",
            })
    if not rows:
        return ""
    return "\n".join([
        "## How optimistic the authors' rule is: selected on the test set minus final step", "",
        ("Per run: the best test accuracy among its evaluations (the authors' rule) minus its final-step "
         "accuracy, in percentage points, then the mean and range over the runs of each method; and the step "
         "of that best evaluation (the earliest on a tie), median over runs, also as a share of the run's "
         "steps. A large gap, or a best evaluation far before the end, means the selected number owes much to "
         "choosing the checkpoint on the test set."), "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""])


def _splits(runs: pd.DataFrame) -> str:
    """Which split the runs trained on, where it is not each run's own seed's (the default says nothing, so
    tables of such suites stay as they were)."""
    fixed = runs[runs.split_seed != runs.seed] if "split_seed" in runs.columns else runs.iloc[:0]
    if fixed.empty:
        return ""
    seeds = sorted(set(runs.split_seed))
    which = (f"one split, that of seed {seeds[0]}, for every run" if len(seeds) == 1 else
             f"the splits of seeds {', '.join(map(str, seeds))} (not each run's own seed's)")
    return (f" Split: {which}; the training seed varies only initialisation, batch order and the methods' "
            "random draws. Paired tests pair runs of one training seed and one split.")


def _validation(runs: pd.DataFrame) -> str:
    """The validation set behind "selected on validation": its size, and how many images of which classes
    it took out of their training images."""
    val = runs[runs.val_per_class > 0] if "val_per_class" in runs.columns else runs.iloc[:0]
    if val.empty:
        return ""
    per_class = sorted(set(val.val_per_class))
    taken = sorted({(c, n) for lst in val.val_from_training for c, n in enumerate(lst or []) if n})
    took = (f"; {len({c for c, _ in taken})} class(es) had too few unused images, so "
            f"{', '.join(sorted({str(n) for _, n in taken}))} of each came out of their training images "
            "(those classes trained on that many fewer images than the split asks)" if taken else "")
    return (f" \"{VAL_COLUMN}\": the test accuracy of the evaluation with the highest accuracy on a validation "
            f"set of {'/'.join(map(str, per_class))} images per class, drawn by the split seed from training "
            f"images the split leaves unused{took}; the earliest evaluation on a tie. It is what a practitioner "
            "can report: the test set plays no part in the choice.")


def _sources(params: dict, tasks: list[str], paper_columns: dict[str, str | None]) -> str:
    """Which source model each task beside a paper column transferred from: ours may differ from the
    paper's (e.g. an offline stand-in for EMNIST-digits), which the reader must know."""
    parts = []
    for task in tasks:
        src = params.get("tasks", {}).get(task, {}).get("source")
        if paper_columns.get(task) and src:
            scfg = params.get("sources", {}).get(src, {})
            what = f"trained on {scfg['dataset']}" if scfg.get("dataset") else f"weights {scfg.get('weights', '?')}"
            parts.append(f"{task} transfers from {src} ({what})")
    return (" Our source models: " + "; ".join(parts) + ".") if parts else ""


def write_tables(runs: pd.DataFrame, params: dict, out_dir: Path) -> dict[str, Path]:
    """Compute and write every table of the suite; return {name: path}."""
    agg = params.get("aggregate", {})
    metric = agg.get("metric_table", "accuracy")
    extra = list(agg.get("extra_metrics", ["balanced_accuracy", "minority_accuracy"]))
    reference = agg.get("reference_method", "dfg")
    for m in [metric, *extra]:
        if m not in SCALAR_METRICS:
            raise DfgError(f"aggregate: unknown metric {m!r}; choose from {', '.join(SCALAR_METRICS)}")
    suite = params.get("suite", out_dir.name)
    run_params = params.get("run", {})
    methods = method_order(runs, run_params.get("methods", []))
    tasks = task_order(runs, run_params.get("tasks", []))
    labels = method_labels(runs)
    task_params = params.get("tasks", {})
    paper_columns = {t: task_params.get(t, {}).get("paper_column") for t in tasks}

    summary = summarise(runs, metrics_of(runs), suite)
    with_val = VAL_SELECTED in metrics_of(runs)
    rules = ([metric, *([VAL_SELECTED] if with_val else []), SELECTED] if metric == "accuracy" else [metric])
    tests = {r: paired_tests(runs, reference, r, suite, methods) for r in rules}
    order_md, order_tests = paper_order_section(runs, tasks, paper_columns, labels, suite)
    variants = set(runs.loc[runs.variant_of != "", "method"]) if "variant_of" in runs.columns else set()

    grid = metric_grid(summary, metric, methods, tasks, labels, paper_columns, variants)
    any_paper = any(paper_columns.values())
    seeds = ", ".join(str(s) for s in run_params.get("seeds", [])) or "?"
    evals = sorted(set(runs.loc[runs.n_evaluations > 0, "n_evaluations"]))
    every = params.get("train", {}).get("eval_every")
    count = (f"{evals[0]}" if len(evals) == 1 else f"{evals[0]} to {evals[-1]}") if evals else ""
    evaluations = (f" ({count} per run" + (f", every {every} steps)" if every else ")")) if evals else ""
    md = [f"# Results of suite `{suite}`", "",
          (f"{_legend(metric, summary, any_paper, evaluations)} Seeds of this suite: {seeds}."
           f"{_splits(runs)}{_validation(runs) if metric == 'accuracy' else ''}"
           f"{_sources(params, tasks, paper_columns)}"), "",
          grid.to_markdown(index=False), "", *(paired_section(tests[r], reference, labels, r) for r in rules)]
    if order_md:
        md += ["", order_md]
    if metric == "accuracy" and (gap_md := selection_gap_section(runs, methods, tasks, labels)):
        md += ["", gap_md]
    extra_md = [f"# Further metrics of suite `{suite}`", ""]
    for m in extra:
        extra_md += [f"## {METRIC_NAMES.get(m, m)}", "", _legend(m, summary, False), "",
                     metric_grid(summary, m, methods, tasks, labels, paper_columns, variants).to_markdown(index=False),
                     ""]

    paths = {name: out_dir / name for name in
             ("table.csv", "table.md", "table.tex", "table_extra.md", "paired_tests.csv")}
    write_text(paths["table.csv"], summary.to_csv(index=False, float_format="%.6g"))
    write_text(paths["table.md"], "\n".join(md))
    write_text(paths["table.tex"], grid_to_tex(grid, f"{_legend(metric, summary, any_paper)} Suite {suite}."))
    write_text(paths["table_extra.md"], "\n".join(extra_md))
    all_tests = pd.concat([t.assign(comparison="against the reference") for t in tests.values()] + [order_tests])
    write_text(paths["paired_tests.csv"], all_tests.to_csv(index=False, float_format="%.6g"))
    return paths


def _log_missing(runs: pd.DataFrame, params: dict) -> None:
    """Say which seeds of the suite's grid have no run, so a short n is never a surprise."""
    seeds = set(params.get("run", {}).get("seeds", []))
    for (task, method), group in runs.groupby(["task", "method"]):
        missing = sorted(seeds - set(group["seed"]))
        if missing:
            log.warning("%s / %s: no run for seed(s) %s; its cells show n=%d", task, method,
                        ", ".join(map(str, missing)), len(group))


def main(args: argparse.Namespace, params: dict) -> int:
    runs = load_runs(args.metrics)
    if runs.empty:
        raise DfgError("no metrics.json among the given paths; train some runs first (dfg train)")
    log.info("aggregating %d runs: %d task(s), %d method(s)", len(runs), runs.task.nunique(),
             runs.method.nunique())
    _log_missing(runs, params)
    paths = write_tables(runs, params, args.out_dir)
    for p in paths.values():
        log.info("wrote %s", p)
    print(paths["table.md"].read_text())
    return 0
