#!/usr/bin/env python3
"""What a suite's training cost on this machine, from Snakemake's benchmark files and the runs' metrics.

    scripts/suite-cost.py fmnist-full            # benchmarks/fmnist-full/train/..., results/fmnist-full/runs/...

Per method: runs, median wall and CPU seconds per run (Snakemake's benchmark of the job: start-up, set-up,
training, evaluations, writing), median training-loop seconds (metrics.json `wall_seconds`, summed over
resumed attempts), then the totals and the span from the first job's start to the last job's end (from
the benchmark files' modification times, so it counts any interruption too). A job that was resumed has
a benchmark of its last attempt only; those runs are counted and named. Prints Markdown.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def main(suite: str) -> int:
    bench_root = Path("benchmarks") / suite / "train"
    rows = []
    for tsv in sorted(bench_root.glob("*/*/seed*.tsv")):
        task, method, seed = tsv.parent.parent.name, tsv.parent.name, tsv.stem
        with open(tsv) as f:
            rec = next(csv.DictReader(f, delimiter="\t"))
        metrics = Path("results") / suite / "runs" / task / method / seed / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.exists() else {}
        rows.append({"method": method, "run": f"{task}/{method}/{seed}", "wall": float(rec["s"]),
                     "cpu": float(rec["cpu_time"]), "loop": m.get("wall_seconds"), "resumed": m.get("resumed_from_step"),
                     "end": tsv.stat().st_mtime})
    if not rows:
        print(f"no benchmark files under {bench_root}", file=sys.stderr)
        return 1
    print("| method | runs | median job wall (min) | median job CPU (min) | median training loop (min) |")
    print("|---|---|---|---|---|")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        loops = [r["loop"] for r in mine if r["loop"] is not None]
        med = lambda xs: statistics.median(xs) / 60 if xs else float("nan")
        print(f"| {method} | {len(mine)} | {med([r['wall'] for r in mine]):.1f} | {med([r['cpu'] for r in mine]):.1f} "
              f"| {med(loops):.1f} |")
    wall, cpu = sum(r["wall"] for r in rows), sum(r["cpu"] for r in rows)
    span = max(r["end"] for r in rows) - min(r["end"] - r["wall"] for r in rows)
    print(f"\n{len(rows)} training jobs: {wall / 3600:.1f} h of job wall time, {cpu / 3600:.1f} h of CPU time; "
          f"first start to last end: {span / 3600:.1f} h.")
    resumed = [r["run"] for r in rows if r["resumed"] is not None]
    if resumed:
        print(f"Resumed from a checkpoint (benchmark = last attempt only): {', '.join(resumed)}.")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
