"""`dfg verify [--select GLOB ...] [--scratch DIR]`: do the committed runs of a suite regenerate here?

Each selected run (task/method/seedK of the suite's grid; all by default) is trained again from the same
split, prepared data and source model into a scratch folder (never over the committed files), then its
metrics and curves are compared with the committed ones:
- both made in the portable CPU mode (dfg.portable): they must be identical, bit for bit; any difference
  is a MISMATCH and the command exits 1;
- both made in fast mode on the same kind of CPU (model, torch kernels, threads and library versions
  alike): identical too, a MISMATCH otherwise;
- anything else (fast mode on another CPU, a GPU run): not comparable bit for bit; the difference in
  accuracy is reported beside the seed-to-seed spread of that method (the standard deviation over the
  committed seeds), for a reader to judge; it does not fail.
One line per run, then a verdict. The inputs must be those of the committed runs: a split whose sha256
differs from the one recorded in the committed metrics is reported, not trained.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

from dfg import DfgError

log = logging.getLogger(__name__)

#: metrics.json keys that describe the result (everything else is when, where and with which commit).
RESULT_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "g_mean", "per_class_recall", "majority_accuracy",
               "minority_accuracy", "ece", "confusion_matrix", "n_test", "class_counts", "minority_classes",
               "split_sha256", "steps")
#: Provenance that must agree for two fast-mode runs to be expected identical.
SAME_MACHINE_KEYS = ("machine", "cpu_model", "torch_cpu_capability", "torch_threads", "onednn_enabled", "versions")


def expectation(committed: dict, rerun: dict) -> str:
    """'exact' when the two runs must agree bit for bit, else why they need not."""
    a, b = committed.get("provenance"), rerun.get("provenance")
    if not a or not b:
        return "the committed run records no provenance"
    if a.get("gpu") or b.get("gpu"):
        return "a GPU run (not portable across GPU types)"
    if a.get("portable_cpu") and b.get("portable_cpu"):
        return "exact"
    if not a.get("portable_cpu") and not b.get("portable_cpu"):
        differ = [k for k in SAME_MACHINE_KEYS if a.get(k) != b.get(k)]
        return "exact" if not differ else f"fast mode on another machine ({', '.join(differ)} differ)"
    return "one run in portable mode, the other in fast mode"


def differences(committed: dict, rerun: dict, curves_a: str, curves_b: str) -> list[str]:
    out = [k for k in RESULT_KEYS if committed.get(k) != rerun.get(k)]
    if curves_a != curves_b:
        out.append("curves.csv")
    return out


def seed_spread(plan, task: str, method: str) -> float | None:
    """Standard deviation of the committed accuracy over the suite's seeds (None with fewer than two)."""
    accs = []
    for seed in plan.seeds:
        path = Path(plan.run_files(task, method, seed)["metrics"])
        if path.exists():
            accs.append(json.loads(path.read_text())["accuracy"])
    return statistics.stdev(accs) if len(accs) > 1 else None


def selected(runs: list[tuple[str, str, int]], patterns: list[str]) -> list[tuple[str, str, int]]:
    if not patterns:
        return runs
    return [r for r in runs if any(fnmatch.fnmatchcase(f"{r[0]}/{r[1]}/seed{r[2]}", p) for p in patterns)]


def verify_run(plan, params: dict, run: tuple[str, str, int], scratch: Path, reran: dict) -> tuple[str, str]:
    """(status, line) for one run: status 'identical', 'MISMATCH', 'differs' or 'missing'."""
    from dfg.data.splits import canonical_sha256
    from dfg.train import run_training

    task, method, seed = run
    name = f"{task}/{method}/seed{seed}"
    files = plan.run_files(task, method, seed)
    committed_path = Path(files["metrics"])
    if not committed_path.exists():
        return "missing", f"{name}  missing: no committed {committed_path}"
    committed = json.loads(committed_path.read_text())
    inputs = plan.train_inputs(task, method, seed)
    for path in inputs.values():
        if not Path(path).exists():
            return "missing", (f"{name}  missing input {path}: run `snakemake --config suite={plan.suite} {path}` "
                               "or `dvc pull` first")
    split_sha = canonical_sha256(json.loads(Path(inputs["split"]).read_text()))
    if split_sha != committed.get("split_sha256"):
        return "missing", f"{name}  not run: {inputs['split']} is not the split of the committed run (sha256 differs)"
    init = inputs.get("init_run")
    if init and (task, plan.init_from(method), seed) in reran:  # start from the rerun, not the local model
        init = reran[(task, plan.init_from(method), seed)]
    out_model = scratch / plan.run_model(task, method, seed)
    out_dir = scratch / plan.run_dir(task, method, seed)
    t0 = time.perf_counter()
    rerun = run_training(params, task, method, seed, split_file=Path(inputs["split"]),
                         prepared_dir=Path(inputs["prepared"]), source_file=inputs.get("source"),
                         init_run=init, out_model=out_model, out_dir=out_dir)
    reran[run] = out_model
    seconds = time.perf_counter() - t0
    diff = differences(committed, rerun, Path(files["curves"]).read_text() if Path(files["curves"]).exists() else "",
                       (out_dir / "curves.csv").read_text())
    expect = expectation(committed, rerun)
    if not diff:
        return "identical", f"{name}  identical ({seconds:.0f} s)"
    delta = rerun["accuracy"] - committed["accuracy"]
    spread = seed_spread(plan, task, method)
    spread_text = f"seed-to-seed sd {spread:.4f}" if spread is not None else "one seed: no spread"
    detail = (f"accuracy {rerun['accuracy']:.4f} vs committed {committed['accuracy']:.4f} (delta {delta:+.4f}; "
              f"{spread_text}); differing: {', '.join(diff)}")
    if expect == "exact":
        return "MISMATCH", f"{name}  MISMATCH: {detail}; both runs should be identical"
    return "differs", f"{name}  differs, as it may ({expect}): {detail}"


def check_scratch(scratch: Path, project: Path) -> None:
    """The reruns land in scratch/results/... and scratch/models/...: refuse a scratch folder that would make
    those the project's own (the project root itself) or put them among its data or outputs."""
    s, root = scratch.resolve(), project.resolve()
    if s == root or (root in s.parents and s.relative_to(root).parts[0] in ("results", "models", "data")):
        raise DfgError(f"--scratch {scratch} would write into the project's own results, models or data; "
                       "pick a folder outside them (default: a new temporary folder)")


def main(args: argparse.Namespace, params: dict) -> int:
    from dfg.workflow.plan import Plan

    plan = Plan(params, args.params)
    runs = selected(plan.runs(), args.select)
    if not runs:
        raise DfgError(f"no run of suite {plan.suite} matches {args.select}; names are TASK/METHOD/seedK")
    # dependencies first (crt after the finetune run it starts from), so a rerun chain stays a rerun
    runs.sort(key=lambda r: plan.init_from(r[1]) is not None)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix=f"dfg-verify-{plan.suite}-"))
    check_scratch(scratch, Path.cwd())
    print(f"verify {plan.suite}: {len(runs)} run(s), reruns in {scratch}", flush=True)
    counts: dict[str, int] = {}
    reran: dict = {}
    for run in runs:
        status, line = verify_run(plan, params, run, scratch, reran)
        counts[status] = counts.get(status, 0) + 1
        print(line, flush=True)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    bad = counts.get("MISMATCH", 0) + counts.get("missing", 0)
    verdict = "FAIL" if bad else "OK"
    print(f"verify {plan.suite}: {verdict}: {len(runs)} run(s): {summary}")
    return 1 if bad else 0
