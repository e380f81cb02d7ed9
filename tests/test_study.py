"""`dfg study` on fabricated suites: the experiment tables against hand-computed numbers, the prefix check
finding an identical and a differing run, and sections skipped (and said so) when a suite is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfg import DfgError
from dfg.report import study

STEPS = [100, 200, 300]


def run(root: Path, suite: str, method: str, seed: int, test_acc: list[float], *, split: str = "a",
        val_acc: list[float] | None = None, split_seed: int | None = None, losses: dict | None = None,
        label: str | None = None, variant_of: str | None = None, steps: list[int] = STEPS) -> None:
    d = root / suite / "runs" / "t" / method / f"seed{seed}"
    d.mkdir(parents=True)
    m = {"task": "t", "method": method, "seed": seed, "accuracy": test_acc[-1], "steps": steps[-1],
         "label": label or method.upper(), "split_sha256": split * 64, "wall_seconds": 60.0 * (seed + 1),
         "resumed_from_step": 100 if seed == 2 else None,
         "provenance": {"cpu_model": "AMD EPYC", "torch_cpu_capability": "AVX2", "torch_threads": 1}}
    if split_seed is not None:
        m["split_seed"] = split_seed
    if val_acc is not None:
        m["validation"] = {"per_class": 100, "n_images": 1000, "from_training": [0, 100, 100]}
    if variant_of:
        m["variant_of"] = variant_of
    (d / "metrics.json").write_text(json.dumps(m))
    curve = {"step": steps, "test_accuracy": test_acc, "test_balanced_accuracy": test_acc}
    if val_acc is not None:
        curve["val_accuracy"] = val_acc
    curve.update(losses or {})
    pd.DataFrame(curve).to_csv(d / "curves.csv", index=False)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    r = tmp_path / "results"
    for seed in range(3):
        # fmnist-full: each seed its own split; DFG peaks at step 200
        run(r, "fmnist-full", "dfg", seed, [0.70, 0.80 + seed / 100, 0.75], split="abc"[seed],
            losses={"loss_d": [-40.0, -41.0, -42.0], "gp": [1.0, 1.0, 1.0]}, steps=[100, 200, 300, 400][:3])
        run(r, "fmnist-full", "delta", seed, [0.71, 0.79, 0.76], split="abc"[seed])
        # fixed split: validation best at step 300 for DFG
        run(r, "fmnist-fixed-split", "dfg", seed, [0.70, 0.83, 0.78 + seed / 100], split="z", split_seed=0,
            val_acc=[0.6, 0.7, 0.8])
        run(r, "fmnist-fixed-split", "delta", seed, [0.70, 0.80, 0.77], split="z", split_seed=0,
            val_acc=[0.6, 0.8, 0.7])
        # ablation at 200 steps: affine DFG = fmnist-full's prefix (identical), except seed 2's loss_d
        losses = {"loss_d": [-40.0, -41.0 if seed < 2 else -41.5], "gp": [1.0, 1.0],
                  "clf_ce_generated": [0.5, 0.01], "clf_ce_real": [0.4, 0.2]}
        run(r, "dfg-slope02", "dfg", seed, [0.70, 0.80 + seed / 100], split="abc"[seed], losses=losses,
            steps=[100, 200])
        run(r, "dfg-slope02", "delta", seed, [0.71, 0.79], split="abc"[seed], steps=[100, 200])
        run(r, "dfg-slope02", "dfg_slope02", seed, [0.72, 0.82 + seed / 100], split="abc"[seed],
            label="DFG, slope-0.2 critic (ablation)", variant_of="dfg", steps=[100, 200],
            losses={"loss_d": [-5.0, -2.0], "gp": [0.1, 0.1], "clf_ce_generated": [0.9, 0.5],
                    "clf_ce_real": [0.4, 0.2]})
    feats = pd.DataFrame({"task": "t", "method": ["dfg"] * 3 + ["dfg_slope02"] * 3, "seed": [0, 1, 2] * 2,
                          "spread_ratio": [0.2, 0.22, 0.24, 0.8, 0.9, 1.0], "gap_over_spread": [1.0] * 6,
                          "nearest_mean_match": [0.0, 0.05, 0.1, 0.6, 0.7, 0.8], "generated_negative": [0.1] * 6})
    (r / "dfg-slope02" / "figures").mkdir(parents=True)
    feats.to_csv(r / "dfg-slope02" / "figures" / "generated_features.csv", index=False)
    return r


def test_study_tables_hold_hand_computed_numbers(results: Path, tmp_path: Path) -> None:
    params = {"figures": {"formats": ["png"], "dpi": 40}}
    (tmp_path / "out").mkdir()
    pd.DataFrame({"device": "cpu", "threads": 1, "batch": 64, "backbone": "lenet5", "method": ["dfg", "dfg_slope02"],
                  "phase": "", "steps": 30, "seconds": [1.5, 3.75], "steps_per_s": [20.0, 8.0],
                  "images_per_s": [1280.0, 512.0], "ms_per_step": [50.0, 125.0]}
                 ).to_csv(tmp_path / "out" / "step_cost.csv", index=False)
    written = study.build(results, tmp_path / "out", params)
    names = {p.name for p in written}
    assert {"study.md", "experiment1.csv", "experiment2.csv", "prefix_check.csv", "losses.csv",
            "study_split_spread.png", "study_rules.png", "study_critic.png", "cost.csv"} <= names
    e1 = pd.read_csv(tmp_path / "out" / "experiment1.csv")
    fixed_dfg = e1[(e1.method == "dfg") & e1.setting.str.startswith("one split")].set_index("rule")
    # final step 0.78, 0.79, 0.80; validation picks step 300 (the same); the test set picks step 200 (0.83)
    assert fixed_dfg.loc["final step", "mean"] == pytest.approx(79.0)
    assert fixed_dfg.loc["final step", "std"] == pytest.approx(1.0)
    assert fixed_dfg.loc["selected on validation", "mean"] == pytest.approx(79.0)
    sel = fixed_dfg.loc["selected on the test set (authors' rule; optimistic)"]
    assert sel["mean"] == pytest.approx(83.0) and sel["n"] == 3
    delta_val = e1[(e1.method == "delta") & (e1.rule == "selected on validation")].iloc[0]
    assert delta_val["mean"] == pytest.approx(80.0)  # validation best at step 200
    varying = e1[(e1.method == "dfg") & e1.setting.str.startswith("varying")
                 & (e1.rule.str.startswith("selected on the test"))].iloc[0]
    assert varying["mean"] == pytest.approx(81.0) and varying["std"] == pytest.approx(1.0)
    assert (e1[e1.setting == "reported in the paper"].set_index("method").loc["dfg", "mean"]) == 82.65
    md = (tmp_path / "out" / "study.md").read_text()
    # 95 % t-interval of 83.0 ± 0 (no spread) is the point itself: the paper's 82.65 lies outside
    assert "the paper's mean 82.65 lies outside it" in md
    assert "| DFG      | final step " in md and "| 78.00 " in md  # the per-run table: seed 0's final step
    # prefix check: seeds 0, 1 of DFG and every DELTA identical; DFG seed 2 differs in loss_d by 0.5
    prefix = pd.read_csv(tmp_path / "out" / "prefix_check.csv")
    assert len(prefix) == 6 and prefix.identical.sum() == 5
    bad = prefix[~prefix.identical].iloc[0]
    assert (bad.method, bad.seed, bad["max |Δ loss|"], bad["max |Δ test accuracy|"]) == ("dfg", 2, 0.5, 0.0)
    assert "5 of 6 runs identical" in md
    e2 = pd.read_csv(tmp_path / "out" / "experiment2.csv").set_index(["method", "rule"])
    assert e2.loc[("dfg_slope02", "final step"), "mean"] == pytest.approx(83.0)
    assert "+2.00" in md  # slope 0.2 minus affine DFG, every seed +2 pp
    losses = pd.read_csv(tmp_path / "out" / "losses.csv").set_index(["method", "seed"])
    assert losses.loc[("dfg", 0), "critic_loss"] == pytest.approx(-40.5)
    assert losses.loc[("dfg", 0), "generated_below_real_from"] == 200
    assert np.isnan(losses.loc[("dfg_slope02", 0), "generated_below_real_from"])  # never below real
    assert "0.900 ± 0.100" in md  # slope 0.2's spread ratio
    assert "| dfg_slope02 | 125.0         | 8.00      | 2.50" in md  # step cost: 125 / 50 ms
    # cost: 60, 120 and 180 s of training loop for seeds 0-2, seed 2 resumed
    spent = pd.read_csv(tmp_path / "out" / "cost.csv").set_index(["suite", "method"])
    row = spent.loc[("fmnist-fixed-split", "dfg")]
    assert (row.runs, row.median_minutes, row.total_hours, row.resumed_runs) == (3, 2.0, pytest.approx(0.1), 1)
    assert row["where"] == "AMD EPYC, AVX2, 1 thread(s)"
    assert "`fmnist-full` 6 runs, 0.2 h of training loops" in md


def test_missing_suites_are_named_and_none_is_an_error(results: Path, tmp_path: Path) -> None:
    import shutil

    shutil.rmtree(results / "dfg-slope02")
    study.build(results, tmp_path / "out", {"figures": {"formats": ["png"], "dpi": 40}})
    md = (tmp_path / "out" / "study.md").read_text()
    assert "dfg-slope02/runs" in md and "Experiment 2" not in md and "Experiment 1" in md
    shutil.rmtree(results / "fmnist-fixed-split")
    with pytest.raises(DfgError, match="run those suites first"):
        study.build(results, tmp_path / "out2", {})
