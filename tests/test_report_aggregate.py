"""`dfg aggregate` on fabricated run folders: numbers against hand-computed means/stds, run counts with
missing seeds, paper numbers only where a task has a paper_column, and paired tests against scipy.

`fabricate_runs` is also used by test_report_figures.py.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from dfg import DfgError
from dfg.report import aggregate
from dfg.report.runs import load_runs
from dfg.report.stats import paired_test, summarise, wilcoxon_min_pvalue

K = 10  # classes
# Top-1 accuracy per task, method and seed 0, 1, 2; None = that run is missing (failed or not yet run).
ACC = {
    "fmnist-synth": {
        "original": [0.70, 0.72, 0.74],
        "finetune": [0.75, 0.76, 0.80],
        "delta": [0.78, None, 0.79],
        "difa_cmwgan": [0.79, 0.80, 0.81],
        "dfg": [0.82, 0.83, 0.85],
        "cb_focal": [0.81, None, None],
    },
    "svhn": {
        "original": [0.60, 0.62, 0.61],
        "finetune": [0.66, 0.66, 0.66],
        "delta": [0.70, 0.71, 0.72],
        "difa_cmwgan": [0.72, 0.70, 0.74],
        "dfg": [0.74, 0.74, 0.75],
        "cb_focal": [0.73, 0.74, 0.75],
    },
}
PARAMS = {
    "suite": "fab",
    "run": {"tasks": ["fmnist-synth", "svhn"], "seeds": [0, 1, 2],
            "methods": ["original", "finetune", "delta", "difa_cmwgan", "dfg", "cb_focal"]},
    "tasks": {"fmnist-synth": {"paper_column": None}, "svhn": {"paper_column": "svhn"}},
    "aggregate": {"metric_table": "accuracy", "extra_metrics": ["balanced_accuracy", "minority_accuracy"],
                  "reference_method": "dfg"},
    "figures": {"formats": ["png", "pdf"], "dpi": 60, "tsne_perplexity": 30, "tsne_seed": 0,
                "attention_panels": 3},
}


def _minority(seed: int) -> list[int]:
    """8 of 10 classes are minority; which ones depends on the data seed, as in real splits."""
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(K, size=8, replace=False))


def fabricate_runs(root: Path, with_artefacts: bool = True) -> Path:
    """Write results/<suite>/runs/<task>/<method>/seed<k>/{metrics.json, curves.csv, artefacts.pt} in the
    formats of docs/architecture.md for ACC's grid, skipping the None entries. Returns the runs folder."""
    runs_dir = root / "runs"
    for task, by_method in ACC.items():
        for method, accs in by_method.items():
            for seed, acc in enumerate(accs):
                if acc is None:
                    continue
                d = runs_dir / task / method / f"seed{seed}"
                d.mkdir(parents=True)
                minority = _minority(seed)
                recall = [acc - 0.1 if c in minority else min(acc + 0.1, 1.0) for c in range(K)]
                counts = [150 if c in minority else 6000 for c in range(K)]
                m = {
                    "accuracy": acc, "balanced_accuracy": acc - 0.05, "macro_f1": acc - 0.06,
                    "g_mean": acc - 0.07, "per_class_recall": recall, "majority_accuracy": acc + 0.1,
                    "minority_accuracy": acc - 0.1, "ece": 0.05, "confusion_matrix": [[0] * K] * K,
                    "n_test": 10000, "task": task, "method": method,
                    "label": "CB-Focal" if method == "cb_focal" else method.upper(),
                    "addition": method == "cb_focal", "seed": seed, "dataset": "fashion-mnist",
                    "source": "lenet5-synthdigits", "class_counts": counts, "minority_classes": minority,
                    "split_sha256": "0" * 64, "steps": 300, "wall_seconds": 10.0 + seed,
                    "device": "cpu", "torch_version": torch.__version__, "git_commit": "abc", "params": {},
                }
                (d / "metrics.json").write_text(json.dumps(m))
                steps = [0, 100, 200, 300]
                curve = pd.DataFrame({
                    "step": steps,
                    # the best evaluation (step 200) is 3 points above the final one: the authors' rule
                    "test_accuracy": [0.1, acc - 0.2, round(acc + 0.03, 4), acc],
                    "test_balanced_accuracy": [0.1, acc - 0.25, acc - 0.1, acc - 0.05],
                    "loss_c": [2.3, 1.0, 0.7, 0.5],
                })
                curve.to_csv(d / "curves.csv", index=False)
                if with_artefacts and method in ("dfg", "difa_cmwgan"):
                    g = torch.Generator().manual_seed(seed)
                    n, dim = 40, 24
                    real_y = torch.tensor(minority, dtype=torch.int64).repeat(n // 8)
                    centres = torch.randn(K, dim, generator=g) * 3
                    real = centres[real_y] + torch.randn(n, dim, generator=g)
                    gen = centres[real_y] + 1.5 * torch.randn(n, dim, generator=g)
                    art = {"features": {"real": real.float(), "real_labels": real_y,
                                        "generated": gen.float(), "generated_labels": real_y.clone()},
                           "minority_classes": minority, "classes": [f"class{c}" for c in range(K)]}
                    if method == "dfg":
                        logits = torch.randn(3, K, 6, generator=g)
                        art["attention"] = {"steps": torch.tensor([100, 200, 300]),
                                            "matrices": torch.softmax(logits, dim=-1)}
                    torch.save(art, d / "artefacts.pt")
    return runs_dir


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return fabricate_runs(tmp_path / "results" / "fab")


def test_load_runs_counts_present_runs(runs_dir: Path) -> None:
    runs = load_runs([runs_dir])
    assert len(runs) == sum(a is not None for by in ACC.values() for accs in by.values() for a in accs) == 33
    assert set(runs.task) == {"fmnist-synth", "svhn"}


def test_summary_matches_hand_computed(runs_dir: Path) -> None:
    s = summarise(load_runs([runs_dir]), ["accuracy", "minority_accuracy"], "fab").set_index(
        ["task", "method", "metric"])
    r = s.loc[("fmnist-synth", "dfg", "accuracy")]
    assert r["mean"] == pytest.approx(0.8333333333)                       # (0.82+0.83+0.85)/3
    assert r["std"] == pytest.approx(0.0152752523)                        # sqrt(((-.0133)^2+(-.0033)^2+.0167^2)/2)
    assert r["n_runs"] == 3
    r = s.loc[("fmnist-synth", "delta", "accuracy")]                      # seed 1 missing
    assert (r["mean"], r["n_runs"]) == (pytest.approx(0.785), 2)
    assert r["std"] == pytest.approx(0.0070710678)                        # |0.78-0.79| / sqrt(2)
    r = s.loc[("fmnist-synth", "cb_focal", "accuracy")]                   # one run: no std
    assert r["n_runs"] == 1 and r["mean"] == pytest.approx(0.81) and math.isnan(r["std"])
    r = s.loc[("svhn", "finetune", "minority_accuracy")]
    assert r["mean"] == pytest.approx(0.56) and r["std"] == pytest.approx(0.0, abs=1e-12)


def _run_verb(runs_dir: Path, out_dir: Path, params: dict = PARAMS) -> int:
    args = argparse.Namespace(out_dir=out_dir, metrics=[str(runs_dir)])
    return aggregate.main(args, params)


def test_tables_written_and_consistent(runs_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results" / "fab"
    assert _run_verb(runs_dir, out) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "table.csv")
    assert list(table.columns) == ["suite", "task", "method", "metric", "mean", "std", "n_runs"]
    row = table[(table.task == "svhn") & (table.method == "original") & (table.metric == "accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(0.61, abs=1e-6) and row["std"] == pytest.approx(0.01, abs=1e-6)
    one = table[(table.method == "cb_focal") & (table.task == "fmnist-synth") & (table.metric == "accuracy")]
    assert one.iloc[0]["n_runs"] == 1 and pd.isna(one.iloc[0]["std"])     # blank in the CSV

    md = (out / "table.md").read_text()
    assert md in printed
    assert "83.33 ± 1.53 (n=3)" in md                                      # fmnist-synth DFG
    assert "78.50 ± 0.71 (n=2)" in md                                      # fmnist-synth DELTA, one missing
    assert "81.00 (n=1)" in md                                             # a single run has no ±
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    order = [ln.split("|")[1].strip() for ln in lines[2:8]]
    assert order == ["ORIGINAL", "FINE-TUNING", "DELTA", "DIFA + CMWGAN (reconstruction)", "DFG",
                     aggregate.ADDITIONS_HEADER]
    assert lines[8].split("|")[1].strip() == "CB-Focal (addition)"
    # The paper's numbers: only beside svhn (paper_column set), never beside fmnist-synth.
    header = lines[0]
    assert "svhn: reported in the paper (SVHN 10:1)" in header
    assert "fmnist-synth: reported" not in header and "F-MNIST 40:1" not in md
    # per task: ours at the final step, ours under the authors' rule (best evaluation), then the reported
    assert [c.strip() for c in header.split("|")[2:7]] == [
        "fmnist-synth: final step", f"fmnist-synth: {aggregate.SELECTED_COLUMN}", "svhn: final step",
        f"svhn: {aggregate.SELECTED_COLUMN}", "svhn: reported in the paper (SVHN 10:1)"]
    assert "selected on the test set (authors' rule; optimistic)" in aggregate.SELECTED_COLUMN
    dfg_row = next(ln for ln in lines if ln.split("|")[1].strip() == "DFG").split("|")
    assert dfg_row[6].strip() == "80.81 ± 0.25"                            # the reported column
    assert dfg_row[4].strip() == "74.33 ± 0.58 (n=3)"                      # our svhn cell, separate
    assert dfg_row[5].strip() == "77.33 ± 0.58 (n=3)"                      # best evaluations: +3 points each
    assert dfg_row[3].strip() == "86.33 ± 1.53 (n=3)"                      # fmnist-synth, selected
    assert "(4 per run)" in md and "overstates" in md                    # the curve has 4 rows
    with_sources = {**PARAMS, "tasks": {**PARAMS["tasks"], "svhn": {"paper_column": "svhn", "source": "lenet5-emnist"}},
                    "sources": {"lenet5-emnist": {"dataset": "emnist"}}}
    _run_verb(runs_dir, tmp_path / "with-sources", with_sources)
    assert "Our source models: svhn transfers from lenet5-emnist (trained on emnist)." in \
        (tmp_path / "with-sources" / "table.md").read_text()
    cb_row = lines[8].split("|")
    assert cb_row[6].strip() == aggregate.NO_RUNS                          # the paper has no CB-Focal
    tex = (out / "table.tex").read_text()
    assert r"83.33 $\pm$ 1.53 (n=3)" in tex and r"\begin{tabular}{lccccc}" in tex
    # the paper's order on its SVHN column, tested on our runs under both rules
    assert ("The paper's order on SVHN 10:1 (svhn): DFG > DELTA > FINE-TUNING > DIFA + CMWGAN (reconstruction) "
            "> ORIGINAL") in md
    pair = [ln for ln in lines if ln.split("|")[1].strip() == "FINE-TUNING > DIFA + CMWGAN (reconstruction)"]
    assert len(pair) == 2 and [c.strip() for c in pair[0].split("|")[2:5]] == ["final step", "+0.02", "-6.00"]
    assert pair[0].split("|")[-2].strip() == "no" and "F-MNIST 40:1" not in md
    # every fabricated run's best evaluation is step 200 of 300, 3 points above its final accuracy
    gap = next(ln for ln in lines if ln.split("|")[1].strip() == "svhn" and ln.split("|")[2].strip() == "DFG")
    assert [c.strip() for c in gap.split("|")[3:8]] == ["3", "+3.00", "+3.00 to +3.00", "200", "67%"]
    assert md.index("The paper's order on SVHN") < md.index("## How optimistic the authors' rule is")
    extra = (out / "table_extra.md").read_text()
    assert "Balanced accuracy" in extra and "Minority-class accuracy" in extra
    assert "73.33 ± 1.53 (n=3)" in extra                                   # fmnist-synth DFG minority
    assert "reported in the paper" not in extra                           # paper numbers: accuracy only


def test_paired_tests_equal_scipy(runs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run_verb(runs_dir, out)
    tests = pd.read_csv(out / "paired_tests.csv")
    r = tests[(tests.task == "fmnist-synth") & (tests.method == "original")].iloc[0]
    a, b = [0.82, 0.83, 0.85], [0.70, 0.72, 0.74]
    assert r["n_pairs"] == 3 and r["reference"] == "dfg"
    assert r["t_pvalue"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-5)
    assert r["wilcoxon_pvalue"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-5) == 0.25
    r = tests[(tests.task == "fmnist-synth") & (tests.method == "delta")].iloc[0]   # seed 1 missing
    assert r["n_pairs"] == 2 and r["seeds"] == "0 2"
    assert r["t_pvalue"] == pytest.approx(stats.ttest_rel([0.82, 0.85], [0.78, 0.79]).pvalue, rel=1e-5)
    r = tests[(tests.task == "fmnist-synth") & (tests.method == "cb_focal")].iloc[0]
    assert r["n_pairs"] == 1 and pd.isna(r["t_pvalue"]) and "no test" in r["note"]
    ours = tests[tests.comparison == "against the reference"]
    assert len(ours) == 2 * 2 * 5                      # 5 others per task, final step and selected
    sel = ours[(ours.metric == "test_selected_accuracy") & (ours.task == "svhn") & (ours.method == "delta")].iloc[0]
    assert sel["mean_diff"] == pytest.approx(np.mean([0.74, 0.74, 0.75]) - np.mean([0.70, 0.71, 0.72]))
    order = tests[tests.comparison == "paper order"]
    assert len(order) == 4 * 2 and set(order.task) == {"svhn"}  # 4 neighbouring pairs of 5 methods, 2 rules
    r = order[(order.reference == "dfg") & (order.metric == "accuracy")].iloc[0]
    assert r["method"] == "delta" and r["reported_diff"] == pytest.approx(80.81 - 78.47)
    md = (out / "table.md").read_text()
    assert "Paired tests across seeds" in md and "low power" in md


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy on constant differences, checked below
def test_paired_test_identical_and_constant_differences() -> None:
    s = pd.Series([0.5, 0.6, 0.7], index=[0, 1, 2])
    same = paired_test(s, s.copy())
    assert math.isnan(same["t_pvalue"]) and math.isnan(same["wilcoxon_pvalue"]) and "identical" in same["note"]
    shifted = paired_test(s + 0.25, s)                   # constant difference: scipy gives t = inf, p = 0
    assert shifted["n_pairs"] == 3 and shifted["mean_diff"] == pytest.approx(0.25)
    assert shifted["t_pvalue"] == stats.ttest_rel(s + 0.25, s).pvalue
    assert shifted["wilcoxon_pvalue"] == pytest.approx(0.25)
    assert wilcoxon_min_pvalue(3) == 0.25 and wilcoxon_min_pvalue(6) < 0.05 < wilcoxon_min_pvalue(5)


def test_errors_are_clear(tmp_path: Path, runs_dir: Path) -> None:
    with pytest.raises(DfgError, match="does not exist"):
        load_runs([tmp_path / "nope" / "metrics.json"])
    dup = tmp_path / "dup.json"
    dup.write_text((runs_dir / "svhn" / "dfg" / "seed0" / "metrics.json").read_text())
    with pytest.raises(DfgError, match="two metrics.json"):
        load_runs([runs_dir, dup])
    bad = tmp_path / "bad" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text('{"task": "x"}')
    with pytest.raises(DfgError, match="lacks method, seed, accuracy"):
        load_runs([bad])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DfgError, match="no metrics.json"):
        aggregate.main(argparse.Namespace(out_dir=tmp_path / "o", metrics=[str(empty)]), PARAMS)
    with pytest.raises(DfgError, match="unknown metric 'top5'"):
        _run_verb(runs_dir, tmp_path / "o", {**PARAMS, "aggregate": {"metric_table": "top5"}})
    assert not (tmp_path / "o").exists()                  # nothing half-written on an error


def test_paper_order_without_paired_seeds_is_not_a_verdict() -> None:
    """A pair whose runs share no seed has no difference: "holds" is "—", not "no"."""
    rows = [("dfg", 0, 0.80), ("dfg", 1, 0.82), ("delta", 2, 0.79), ("delta", 3, 0.81),
            ("difa_cmwgan", 0, 0.81), ("difa_cmwgan", 1, 0.80), ("original", 0, 0.79), ("original", 1, 0.80)]
    runs = pd.DataFrame([{"task": "t", "method": m, "seed": s, "accuracy": a, "test_selected_accuracy": a}
                         for m, s, a in rows])
    md, table = aggregate.paper_order_section(runs, ["t"], {"t": "svhn"}, {}, "s")
    # SVHN's reported order: DFG 80.81 > DELTA 78.47 > DIFA 76.64 > ORIGINAL 76.57
    assert list(zip(table.reference, table.method, table.n_pairs, strict=True))[::2] == [
        ("dfg", "delta", 0), ("delta", "difa_cmwgan", 0), ("difa_cmwgan", "original", 2)]
    verdict = {ln.split("|")[1].strip(): ln.split("|")[-2].strip() for ln in md.splitlines()
               if ln.startswith("| ") and " > " in ln}
    assert verdict == {"dfg > delta": "—", "delta > difa_cmwgan": "—", "difa_cmwgan > original": "yes"}
    assert table.mean_diff.iloc[4] == pytest.approx(0.01)                  # (0.02 + 0.00) / 2


def test_selected_accuracy_and_its_step_by_hand() -> None:
    """The authors' rule on one run: best of the evaluations and the final accuracy, with its step."""
    from dfg.report.runs import selected

    curve = pd.DataFrame({"step": [100, 200, 300, 400], "test_accuracy": [0.50, 0.72, 0.72, 0.70]})
    assert selected(0.70, 400, curve) == (0.72, 200)                      # earliest of a tie
    assert selected(0.75, 400, curve) == (0.75, 400)                      # nothing beats the final: its step
    assert selected(0.72, 400, curve[curve.step != 400]) == (0.72, 200)   # final equals an evaluation
    assert selected(0.60, 20, curve.iloc[:0]) == (0.60, 20)               # no evaluations (post-hoc runs)


def test_selection_gap_section_by_hand() -> None:
    """Gaps (selected - final) of three runs: 2, 4 and 0 points -> mean +2.00, range +0.00 to +4.00; best
    evaluations at steps 1 000, 3 000 and 4 000 (final) of 4 000 -> median 3 000, 75 %. A run without
    evaluations (n_evaluations 0) is left out."""
    runs = pd.DataFrame({
        "task": ["t"] * 4, "method": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0],
        "accuracy": [0.80, 0.70, 0.75, 0.5], aggregate.SELECTED: [0.82, 0.74, 0.75, 0.5],
        "selected_step": [1000, 3000, 4000, 0], "steps": [4000] * 3 + [0], "n_evaluations": [40, 40, 40, 0],
    })
    md = aggregate.selection_gap_section(runs, ["a", "b"], ["t"], {"a": "Method A"})
    rows = [ln for ln in md.splitlines() if ln.startswith("| t ")]
    assert len(rows) == 1
    assert [c.strip() for c in rows[0].split("|")[1:-1]] == [
        "t", "Method A", "3", "+2.00", "+0.00 to +4.00", "3,000", "75%"]
    assert aggregate.selection_gap_section(runs[runs.method == "b"], ["b"], ["t"], {}) == ""
