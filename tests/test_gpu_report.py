"""scripts/gpu-capture-report.py, the tables and gates of `CHECKS=capture scripts/gpu-check.sh`, on
fabricated stage outputs: a device call is too scarce to find a bug in its report there."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["device", "cpu_kernels", "threads", "batch", "backbone", "method", "phase", "capture", "graphs",
          "channels_last", "steps", "seconds", "steps_per_s", "images_per_s", "ms_per_step", "capture_failed"]
METHODS = ["original", "finetune", "delta", "dfg", "cb_focal", "ldam_drw", "balanced_softmax", "crt", "drs",
           "remix", "smote_feat"]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_capture_report", ROOT / "scripts/gpu-capture-report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in HEADER} for r in rows)


def row(method: str, capture: str, rate: float, phase: str = "", graphs: int = 1) -> dict:
    return {"device": "cuda:0", "batch": 64, "backbone": "lenet5", "method": method, "phase": phase,
            "capture": capture, "graphs": graphs if capture == "graph" else 0, "channels_last": "False",
            "steps_per_s": rate}


def fabricate(cap: Path, dfg_on: float) -> None:
    """Every fmnist-full method eager at 100 steps/s and captured at 1000 (DFG: 30 and `dfg_on`), K = 1
    and 2 (two jobs at 40 each), a full DFG run of seed 0 inside fmnist-full's band."""
    rows = []
    for m in METHODS:
        off, on = (30.0, dfg_on) if m == "dfg" else (100.0, 1000.0)
        rows += [row(m, "off", off), row(m, "graph", on)]
    for ph in ("generator", "matching"):
        rows += [row("difa_cmwgan", "off", 50.0, ph), row("difa_cmwgan", "graph", 500.0, ph)]
    write_csv(cap / "bench-lenet5.csv", rows)
    write_csv(cap / "share-k1-0.csv", [row("dfg", "graph", 50.0)])
    for i in range(2):
        write_csv(cap / f"share-k2-{i}.csv", [row("dfg", "graph", 40.0)])
    cpu = [json.loads(p.read_text())["accuracy"]
           for p in (ROOT / "results/fmnist-full/runs/fmnist-mnist5k/dfg").glob("seed*/metrics.json")]
    run = cap / "full/dfg/seed0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({
        "method": "dfg", "seed": 0, "steps": 40000, "wall_seconds": 200.0, "accuracy": (min(cpu) + max(cpu)) / 2,
        "capture": {"mode": "graph", "graphs": 2}}))


def test_report_tables_and_passing_gates(tmp_path, capsys):
    report = load_script()
    fabricate(tmp_path, dfg_on=300.0)
    assert report.report(tmp_path, tmp_path / "r.md") == 0
    text = (tmp_path / "r.md").read_text()
    assert "| dfg | 30.0 | 300.0 | 10.00x | 1 graph(s) |" in text
    assert "LeNet-5 DFG step captured / eager = 10.00x (needs >= 5x): PASS" in text
    assert "| 2 | 80.0 | 40.0 | 1.60x |" in text  # two jobs at 40 steps/s against one at 50
    assert "| yes | graph, 2 graph(s) |" in text
    # fmnist-full at the captured rates, per seed: 8 methods x 40 000 steps at 1000/s (320 s), cRT and
    # SMOTE half the steps (20 s each), DFG 40 000 at 300/s (133.3 s), DIFA 2 x 20 000 at 500/s (80 s),
    # post-hoc none: 573.3 s x 5 seeds = 0.796 GPU-h; / 1.6 with K = 2 = 0.498
    assert "| fmnist-full | 0.80 | 0.50 (K = 2) | plan-fmnist-full.txt |" in text
    assert "F-MNIST column" in text and "(needs <= 1.5): PASS" in text
    assert "| paper | - | - |" in text  # no VGG-16 / ResNet-50 rows: said, not a crash


def test_report_fails_the_gate_below_5x(tmp_path):
    report = load_script()
    fabricate(tmp_path, dfg_on=120.0)
    assert report.report(tmp_path, None) == 1


def test_a_shorter_full_run_is_compared_with_fmnist_full_at_its_step(tmp_path):
    """FULL_STEPS=10000: the band is fmnist-full's test curves at step 10 000, not their final accuracies."""
    report = load_script()
    fabricate(tmp_path, dfg_on=300.0)
    at = []
    for p in sorted((ROOT / "results/fmnist-full/runs/fmnist-mnist5k/dfg").glob("seed*/curves.csv")):
        with open(p, newline="") as f:
            at += [float(c["test_accuracy"]) for c in csv.DictReader(f) if c["step"] == "10000"]
    assert len(at) == 5
    m = tmp_path / "full/dfg/seed0/metrics.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "steps": 10000, "accuracy": max(at) + 0.01}))
    report.report(tmp_path, tmp_path / "r.md")
    line = next(ln for ln in (tmp_path / "r.md").read_text().splitlines() if ln.startswith("| dfg | 10,000 |"))
    assert f"| {100 * min(at):.2f}-{100 * max(at):.2f} | NO |" in line
