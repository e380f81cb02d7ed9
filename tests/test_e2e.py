"""The tiny suite through Snakemake, end to end on the CPU: every stage runs, the table and figures
come out, and a second run finds nothing to do."""

from __future__ import annotations

import pytest

from workflow_fixtures import TINY_TASK, metrics_of, snakemake, tiny_local_run, tiny_runs

pytestmark = pytest.mark.slow


def test_tiny_suite_produces_table_and_figures():
    root = tiny_local_run()
    table = (root / "results/tiny/table.md").read_text()
    for label in ("ORIGINAL", "FINE-TUNING", "DFG"):
        assert label in table
    assert table.count("(n=2)") >= 4  # every method x 2 seeds
    for ext in ("csv", "tex"):
        assert (root / f"results/tiny/table.{ext}").stat().st_size > 0
    figures = root / "results/tiny/figures"
    pngs = sorted(p.stem for p in figures.glob("*.png"))
    assert pngs and pngs == sorted(p.stem for p in figures.glob("*.pdf"))
    assert any(s.startswith("accuracy") for s in pngs)
    for task, method, seed in tiny_runs():
        m = metrics_of(root, method, seed)
        assert (m["task"], m["method"], m["seed"]) == (task, method, seed)
        assert 0.0 <= m["accuracy"] <= 1.0
        assert (root / f"models/tiny/runs/{TINY_TASK}/{method}/seed{seed}.pt").exists()
        assert not (root / f"models/tiny/runs/{TINY_TASK}/{method}/seed{seed}.resume.pt").exists()
        assert (root / f"logs/tiny/train/{TINY_TASK}/{method}/seed{seed}.log").exists()
        assert (root / f"benchmarks/tiny/train/{TINY_TASK}/{method}/seed{seed}.tsv").exists()
    # a pre-trained source beats chance on 10 classes: the finetune runs started from something real
    assert (root / "models/source/lenet5-synthdigits-tiny.pt").exists()


def test_second_run_does_nothing():
    root = tiny_local_run()
    r = snakemake(["--cores", "2", "--config", "suite=tiny"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Nothing to be done" in r.stdout + r.stderr
