#!/usr/bin/env python3
"""What a suite's training cost on this machine, from Snakemake's benchmark files and the runs' metrics.

    scripts/suite-cost.py fmnist-full            # benchmarks/fmnist-full/train/..., results/fmnist-full/runs/...
    scripts/suite-cost.py fmnist-full --jobs 2   # how many training jobs ran at a time (default 2)

Per method: runs, median job wall time per run (Snakemake's benchmark of the job: start-up, set-up,
training, evaluations, writing), median job CPU time, median training-loop time (metrics.json
`wall_seconds`, summed over resumed attempts); then the suite's totals. Prints Markdown.

A killed job that resumed from a checkpoint has a benchmark of its last attempt only. Its job wall time
is therefore its training-loop time summed over attempts (exact) plus its method's median set-up time
(job wall minus loop, over that method's uninterrupted runs), and its CPU time is left out of the CPU
median (it is unknown for the earlier attempts). Those runs are named below the table.

The suite's wall time is given as total job time / jobs at a time, which is what an uninterrupted run at
that parallelism takes up to its last job's tail. The span from first start to last end is not used: a
suite that was stopped and resumed has gaps between its runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path


def load(suite: str) -> list[dict]:
    rows = []
    for tsv in sorted((Path("benchmarks") / suite / "train").glob("*/*/seed*.tsv")):
        task, method, seed = tsv.parent.parent.name, tsv.parent.name, tsv.stem
        with open(tsv) as f:
            rec = next(csv.DictReader(f, delimiter="\t"))
        metrics = Path("results") / suite / "runs" / task / method / seed / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.exists() else {}
        rows.append({"method": method, "run": f"{task}/{method}/{seed}", "bench": float(rec["s"]),
                     "cpu": float(rec["cpu_time"]), "loop": m.get("wall_seconds"),
                     "resumed": m.get("resumed_from_step")})
    return rows


def job_walls(rows: list[dict]) -> None:
    """Set each row's `wall`: the benchmark where the job ran in one attempt, else loop + median set-up."""
    setup: dict[str, list[float]] = {}
    for r in rows:
        if r["resumed"] is None and r["loop"] is not None:
            setup.setdefault(r["method"], []).append(r["bench"] - r["loop"])
    everyone = [s for v in setup.values() for s in v]
    for r in rows:
        if r["resumed"] is None or r["loop"] is None:
            r["wall"] = r["bench"]
        else:
            overhead = statistics.median(setup.get(r["method"]) or everyone or [0.0])
            r["wall"] = max(r["bench"], r["loop"] + overhead)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--jobs", type=int, default=2, help="training jobs that ran at a time (default 2)")
    args = ap.parse_args()
    rows = load(args.suite)
    if not rows:
        ap.error(f"no benchmark files under benchmarks/{args.suite}/train")
    job_walls(rows)

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs) / 60:.1f}" if xs else "—"

    print("| method | runs | median job wall (min) | median job CPU (min) | median training loop (min) |")
    print("|---|---|---|---|---|")
    for method in sorted(dict.fromkeys(r["method"] for r in rows)):
        mine = [r for r in rows if r["method"] == method]
        print(f"| {method} | {len(mine)} | {med([r['wall'] for r in mine])} "
              f"| {med([r['cpu'] for r in mine if r['resumed'] is None])} "
              f"| {med([r['loop'] for r in mine if r['loop'] is not None])} |")
    wall = sum(r["wall"] for r in rows)
    cpu = sum(r["cpu"] for r in rows if r["resumed"] is None)
    whole = [r for r in rows if r["resumed"] is None]
    print(f"\n{len(rows)} training jobs: {wall / 3600:.1f} h of job wall time in all; at {args.jobs} jobs at a time, "
          f"about {wall / args.jobs / 3600:.1f} h of wall time for the suite. CPU time of the {len(whole)} jobs "
          f"that ran in one attempt: {cpu / 3600:.1f} h.")
    resumed = [f"{r['run']} (from step {r['resumed']})" for r in rows if r["resumed"] is not None]
    if resumed:
        print(f"Resumed from a checkpoint (job wall = summed loop time + set-up; CPU unknown): {', '.join(resumed)}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
