"""`dfg plan`: what a suite will cost before it runs: its jobs by stage, its GPU-hours per task and method,
and the disk its downloads and models take. Computed from the suite's plan (the same grid Snakemake and
DVC run) and from measured step rates, never typed by hand.

GPU time = training steps of each run (`Method.steps()` of its hp: cRT and feature SMOTE train a share
of train.steps, post-hoc logit adjustment none; DIFA's two phases apart) / the step rate `dfg bench`
measured for that backbone and method (gpu_rates.csv: an NVIDIA H200, batch 64, bf16; rows marked
there). A method without a measured rate on a backbone takes its rate relative to ORIGINAL on the
other backbones (said in the output). Evaluations, data loading of 224-px images, set-up (DELTA's and
DFG's channel ablations, pre-training) are not in it: a lower bound for LeNet-5 / VGG-16 tasks.

Disk = the datasets' official files (their registry's approximate sizes) + one float32 checkpoint per
run and per source model (parameters counted on the `meta` device, nothing allocated). Prepared data
and resume checkpoints (one per unfinished run, about three models' worth with Adam) come on top.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

from dfg import DfgError

RATES_FILE = "gpu_rates.csv"


@dataclass(frozen=True)
class RunCost:
    task: str
    backbone: str
    method: str
    runs: int
    steps: int  # training steps of one run
    seconds: float  # GPU seconds of one run (training steps only)
    estimated: bool  # no measured rate for this backbone and method


def load_rates(path: Path | None = None, capture: str = "graph", channels_last: bool = False
               ) -> tuple[dict[tuple[str, str, str], float], str]:
    """{(backbone, method, phase): steps/s} and a one-line provenance: the packaged gpu_rates.csv, or a
    `dfg bench --out` CSV (`path`), whose rows with a `capture` column count only where it is `capture`
    (a bench of --capture off,on holds both; a method that recorded nothing is timed eagerly there), and
    with a `channels_last` column only where it is `channels_last` (the suite's train.channels_last)."""
    if path is None:
        text = resources.files("dfg.workflow").joinpath(RATES_FILE).read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise DfgError(f"cannot read the rates file {path}: {e.strerror}; write one with "
                           "`dfg bench --device cuda --out FILE`") from None
    lines = text.splitlines()
    source = next((ln[1:].strip() for ln in lines if ln.startswith("#")), "")
    rows = list(csv.DictReader(ln for ln in lines if ln and not ln.startswith("#")))
    if rows and not {"backbone", "method", "phase", "steps_per_s"} <= set(rows[0]):
        raise DfgError(f"{path} is not a `dfg bench --out` file (it needs backbone, method, phase, steps_per_s)")
    if path is not None:
        devices = sorted({r.get("device", "?") for r in rows})
        source = f"dfg bench rows of {path} on {', '.join(devices)}" + (
            f", capture {capture}" if any("capture" in r for r in rows) else "")
    rows = [r for r in rows if r.get("capture", capture) in (capture, "")
            and r.get("channels_last", str(channels_last)) in (str(channels_last), "")]
    if path is not None and not rows:
        raise DfgError(f"{path} has no rows with capture {capture}; bench with `--capture` including it")
    return {(r["backbone"], r["method"], r["phase"] or ""): float(r["steps_per_s"]) for r in rows}, source


def rate(rates: dict, backbone: str, method: str, phase: str = "") -> tuple[float, bool]:
    """(steps/s, estimated?) for one phase of a method on a backbone; unmeasured: ORIGINAL's rate on this
    backbone times the method's mean ratio to ORIGINAL on the backbones where both were measured."""
    if (backbone, method, phase) in rates:
        return rates[(backbone, method, phase)], False
    base = rates.get((backbone, "original", ""))
    ratios = [r / rates[(b, "original", "")] for (b, m, ph), r in rates.items()
              if m == method and ph == phase and (b, "original", "") in rates]
    if base is None or not ratios:
        raise DfgError(f"no GPU step rate for {method} on {backbone}; add one to the rates file (--rates, or "
                       f"src/dfg/workflow/{RATES_FILE}): `dfg bench --device cuda --backbones {backbone} "
                       f"--methods {method} --out FILE`")
    return base * sum(ratios) / len(ratios), True


def method_steps(spec, total: int) -> dict[str, int]:
    """Training steps of one run by phase ('' = single phase; DIFA: generator, matching)."""
    ctx = SimpleNamespace(total_steps=total, hp=spec.hp)
    steps = int(spec.cls.steps(SimpleNamespace(ctx=ctx)))
    if spec.base == "difa_cmwgan":
        first = int(spec.cls.untrained_steps(spec.hp, total))
        return {"generator": first, "matching": steps - first}
    return {"": steps}


def parameter_bytes(backbone: str, num_classes: int) -> int:
    """float32 bytes of a backbone's parameters and buffers, counted without allocating them."""
    import torch

    from dfg.models import build_backbone

    with torch.device("meta"):
        net = build_backbone(backbone, num_classes)
    return sum(t.numel() * 4 for t in [*net.parameters(), *net.buffers()])


def run_costs(plan, rates: dict) -> list[RunCost]:
    from dfg.data.registry import DATASETS
    from dfg.methods.variants import method_spec

    grouped: dict[tuple[str, str], int] = defaultdict(int)
    for task, method, _seed in plan.runs():
        grouped[(task, method)] += 1
    out = []
    for (task, method), n in grouped.items():
        backbone = plan.source(plan.task(task)["source"])["backbone"]
        spec = method_spec(plan.params, method)
        phases = method_steps(spec, int(plan.params["train"]["steps"]))
        seconds, estimated = 0.0, False
        for phase, steps in phases.items():
            if steps:
                r, est = rate(rates, backbone, spec.base, phase)
                seconds += steps / r
                estimated |= est
        out.append(RunCost(task, backbone, method, n, sum(phases.values()), seconds, estimated))
        DATASETS.get(plan.task(task)["dataset"])  # an unknown dataset fails here, not in the disk sum
    return out


def disk(plan) -> dict[str, float]:
    """MB of the official downloads, run models and source models."""
    from dfg.data.registry import DATASETS

    downloads = sum(DATASETS.get(d).download_mb for d in plan.datasets())
    sizes: dict[tuple[str, int], int] = {}

    def model_mb(backbone: str, k: int) -> float:
        if (backbone, k) not in sizes:
            sizes[(backbone, k)] = parameter_bytes(backbone, k)
        return sizes[(backbone, k)] / 1e6

    runs = 0.0
    for task, _method, _seed in plan.runs():
        backbone = plan.source(plan.task(task)["source"])["backbone"]
        runs += model_mb(backbone, DATASETS.get(plan.task(task)["dataset"]).num_classes)
    sources = 0.0
    for s in plan.sources():
        src = plan.source(s)
        k = DATASETS.get(src["dataset"]).num_classes if src.get("dataset") else 1000
        sources += model_mb(src["backbone"], k) * (2 if src.get("weights") else 1)  # fetched file + converted
    return {"downloads": downloads, "run models": runs, "source models": sources}


def size(mb: float) -> str:
    return f"{mb / 1e3:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB" if mb >= 1 else f"{mb:.2f} MB"


def report(params: dict, params_file: str = "params.yaml", markdown: bool = False, rates_file: Path | None = None,
           capture: str = "graph") -> str:
    from dfg.workflow.plan import Plan

    plan = Plan(params, params_file)
    rates, source = load_rates(rates_file, capture, bool(params["train"].get("channels_last", False)))
    costs = run_costs(plan, rates)
    jobs: dict[str, int] = defaultdict(int)
    for job in plan.jobs():
        jobs[job.stage] += 1
    total_jobs = sum(jobs.values()) + 1  # Snakemake's `all`
    lines = [(f"suite {plan.suite}: {len(plan.tasks)} task(s) x {len(plan.methods)} method(s) x {len(plan.seeds)} "
             f"seed(s), {params['train']['steps']:,} steps"),
             (f"jobs: {total_jobs} ({', '.join(f'{k} {v}' for k, v in jobs.items())}, all 1), "
             f"as `snakemake -n` counts them"), ""]
    header = ["task", "backbone", "method", "runs", "steps/run", "GPU-h"]
    rows = []
    by_task: dict[str, float] = defaultdict(float)
    for c in sorted(costs, key=lambda c: (plan.tasks.index(c.task), -c.seconds)):
        hours = c.runs * c.seconds / 3600
        by_task[c.task] += hours
        rows.append([c.task, c.backbone, c.method + (" *" if c.estimated else ""), str(c.runs), f"{c.steps:,}",
                     f"{hours:.2f}"])
    total = sum(by_task.values())
    lines.append(f"GPU time, training steps only, one job per GPU ({source}):")
    if markdown:
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    lines += [f"  {t}: {h:.1f} GPU-h" for t, h in by_task.items()]
    lines.append(f"  total: {total:.1f} GPU-h ({total / 24:.1f} GPU-days)")
    if any(c.estimated for c in costs):
        lines.append("  * no measured rate on this backbone: ORIGINAL's rate times the method's ratio to it "
                     "on the other backbones")
    lines.append("  Not included: evaluations, 224-px data loading, set-up (channel ablations), pre-training.")
    d = disk(plan)
    lines += ["", "disk: " + ", ".join(f"{k} {size(v)}" for k, v in d.items())
              + f"; total {size(sum(d.values()))} (downloads approximate; prepared data and resume checkpoints "
              "on top)"]
    return "\n".join(lines)


def main(args: argparse.Namespace, params: dict) -> int:
    print(report(params, args.params, markdown=args.format == "markdown", rates_file=getattr(args, "rates", None),
                 capture=getattr(args, "capture", None) or "graph"))
    return 0
