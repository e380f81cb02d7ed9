"""scripts/suite-cost.py on fabricated benchmark files and metrics: per-method medians and the suite's
totals by hand, with a run resumed from a checkpoint (its benchmark covers only the last attempt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "suite-cost.py"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _job(root: Path, method: str, seed: int, bench_s: float, cpu_s: float, loop_s: float,
         resumed: int | None = None) -> None:
    tsv = root / "benchmarks" / "s" / "train" / "t" / method / f"seed{seed}.tsv"
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text(HEADER + f"{bench_s}\t0:00:00\t1\t1\t1\t1\t0\t0\t90\t{cpu_s}\n")
    run = root / "results" / "s" / "runs" / "t" / method / f"seed{seed}"
    run.mkdir(parents=True)
    metrics = {"wall_seconds": loop_s, **({"resumed_from_step": resumed} if resumed is not None else {})}
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_resumed_job_counts_every_attempt(tmp_path: Path) -> None:
    _job(tmp_path, "dfg", 0, bench_s=7200, cpu_s=7000, loop_s=6840)                 # set-up 360 s
    _job(tmp_path, "dfg", 1, bench_s=3600, cpu_s=3500, loop_s=9000, resumed=1000)   # last attempt only
    _job(tmp_path, "original", 0, bench_s=2880, cpu_s=2700, loop_s=2640)
    out = subprocess.run([sys.executable, str(SCRIPT), "s", "--jobs", "2"], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    lines = out.splitlines()
    # dfg: job walls 7200 and 9000 + 360 = 9360 s, median 138.0 min; CPU of the uninterrupted run only
    # (7000 s = 116.7 min); loop median (6840 + 9000) / 2 = 132.0 min
    assert "| dfg | 2 | 138.0 | 116.7 | 132.0 |" in lines
    assert "| original | 1 | 48.0 | 45.0 | 44.0 |" in lines
    # 7200 + 9360 + 2880 = 19 440 s = 5.4 h; two at a time 2.7 h; CPU 7000 + 2700 s = 2.7 h
    assert "3 training jobs: 5.4 h of job wall time in all; at 2 jobs at a time, about 2.7 h" in out
    assert "CPU time of the 2 jobs that ran in one attempt: 2.7 h." in out
    assert "t/dfg/seed1 (from step 1000)" in out


def test_no_benchmarks_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(SCRIPT), "nothing"], check=False, cwd=tmp_path, capture_output=True,
                         text=True)
    assert res.returncode == 2
    assert "no benchmark files under benchmarks/nothing/train" in res.stderr
