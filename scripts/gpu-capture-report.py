#!/usr/bin/env python3
"""The capture checks of scripts/gpu-check.sh (CHECKS=capture), two subcommands:

  share K OUT_DIR -- DFG_BENCH_CMD...   run K copies of a `dfg bench ... --out` command at once (each its
                                        own CSV, OUT_DIR/share-kK-I.csv) and wait for all
  report CAP_DIR [--out FILE.md]        the tables: capture off vs on per backbone and method, the
                                        LeNet-5 DFG gate (>= 5x), aggregate steps/s against K, the
                                        full-length runs against fmnist-full's CPU runs, and the suites'
                                        GPU time from the measured captured rates (`dfg plan --rates`)

Plain Python and the project's `dfg` (as `python -m dfg`); prints Markdown and writes it to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GATE = 5.0  # LeNet-5 DFG: captured step at least this many times faster than eager
COLUMN_HOURS = 1.5  # the F-MNIST column's GPU time target


def share(k: int, out_dir: Path, cmd: list[str]) -> int:
    procs = []
    for i in range(k):
        log = open(out_dir / f"share-k{k}-{i}.log", "w")  # noqa: SIM115 (closed with the process)
        procs.append((subprocess.Popen([*cmd, "--out", str(out_dir / f"share-k{k}-{i}.csv")], stdout=log,
                                       stderr=subprocess.STDOUT), log))
    rc = 0
    for p, log in procs:
        rc |= p.wait()
        log.close()
    return rc


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def bench_section(cap: Path) -> tuple[list[str], float | None, Path | None]:
    out, gate, merged = ["## Steps/s, capture off and on (same process, side by side)", ""], None, []
    for f in sorted(cap.glob("bench-*.csv")):
        rs = rows(f)
        merged += rs
        by = {}
        for r in rs:
            by.setdefault((r["method"], r["phase"], r.get("channels_last", "False")), {})[r["capture"]] = r
        body = []
        for (method, phase, nhwc), modes in by.items():
            off, on = modes.get("off"), modes.get("graph") or modes.get("static")
            if not (off and on):
                continue
            speed = float(on["steps_per_s"]) / float(off["steps_per_s"])
            how = f"{on['graphs']} graph(s)" if int(on["graphs"]) else "eager (not captured)"
            if on.get("capture_failed"):
                how = "capture failed: " + on["capture_failed"][:60]
            body.append([method + (f" ({phase})" if phase else "") + (" NHWC" if nhwc == "True" else ""),
                         f"{float(off['steps_per_s']):.1f}",
                         f"{float(on['steps_per_s']):.1f}", f"{speed:.2f}x", how])
            if rs[0]["backbone"] == "lenet5" and method == "dfg" and nhwc != "True":
                gate = speed
        dev = rs[0]["device"] if rs else "?"
        out += [f"### {rs[0]['backbone'] if rs else f.stem} on {dev}, batch {rs[0]['batch'] if rs else '?'}", ""]
        out += table(["method", "eager steps/s", "captured steps/s", "speed-up", "recorded"], body) + [""]
    path = None
    if merged:
        path = cap / "rates.csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(merged[0]))
            w.writeheader()
            w.writerows(merged)
    if gate is not None:
        out += [(f"**Gate: LeNet-5 DFG step captured / eager = {gate:.2f}x (needs >= {GATE:g}x): "
                 f"{'PASS' if gate >= GATE else 'FAIL'}**"), ""]
    return out, gate, path


def share_section(cap: Path) -> tuple[list[str], dict[int, float]]:
    agg: dict[int, float] = {}
    for f in cap.glob("share-k*-*.csv"):
        k = int(re.match(r"share-k(\d+)-", f.name).group(1))
        agg[k] = agg.get(k, 0.0) + sum(float(r["steps_per_s"]) for r in rows(f))
    if not agg:
        return [], {}
    base = agg.get(1)
    body = [[str(k), f"{agg[k]:.1f}", f"{agg[k] / k:.1f}", f"{agg[k] / base:.2f}x" if base else "-"] for k in sorted(agg)]
    return (["## K LeNet-5 DFG jobs on one GPU (capture on)", ""]
            + table(["K", "aggregate steps/s", "steps/s per job", "vs K = 1"], body) + [""]), agg


def full_section(cap: Path) -> list[str]:
    body = []
    for m in sorted((cap / "full").glob("*/seed0/metrics.json")):
        run = json.loads(m.read_text())
        method = run["method"]
        cpu = {}  # seed -> fmnist-full's accuracy at this run's length (its final one, or its curve there)
        for p in sorted((ROOT / "results/fmnist-full/runs/fmnist-mnist5k" / method).glob("seed*/metrics.json")):
            r = json.loads(p.read_text())
            if r["steps"] == run["steps"]:
                cpu[r["seed"]] = r["accuracy"]
            else:
                with open(p.with_name("curves.csv"), newline="") as f:
                    at = [float(c["test_accuracy"]) for c in csv.DictReader(f) if int(c["step"]) == run["steps"]]
                if at:
                    cpu[r["seed"]] = at[0]
        accs = list(cpu.values())
        same = cpu.get(run["seed"])
        inside = bool(accs) and min(accs) <= run["accuracy"] <= max(accs)
        cap_info = run.get("capture", {})
        body.append([method, f"{run['steps']:,}", f"{run['wall_seconds']:.0f}", f"{100 * run['accuracy']:.2f}",
                     "-" if same is None else f"{100 * same:.2f}",
                     f"{100 * min(accs):.2f}-{100 * max(accs):.2f}" if accs else "-",
                     "yes" if inside else "NO", f"{cap_info.get('mode', 'off')}, {cap_info.get('graphs', 0)} graph(s)"])
    if not body:
        return []
    return (["## Full-length F-MNIST runs, seed 0, on the GPU with capture on", "",
             ("GPU results are not bit-identical to the CPU's (other kernels, bf16 autocast): the check is that "
              "they fall inside the band of fmnist-full's five CPU runs at the same step (their final accuracy "
              "at 40 000 steps, their test curve at a shorter run's last step)."), ""]
            + table(["method", "steps", "wall s", "accuracy %", "CPU seed 0 %", "CPU 5 seeds %", "inside", "capture"],
                    body) + [""])


def plan_section(rates: Path | None, agg: dict[int, float]) -> list[str]:
    if rates is None:
        return []
    out = ["## GPU time of the suites from the measured captured rates (`dfg plan --rates`)", ""]
    best = max(agg, key=lambda k: agg[k]) if agg else 1
    gain = agg[best] / agg[1] if agg and 1 in agg else 1.0
    body, gates = [], []
    for suite in ("fmnist-full", "paper"):
        modes = {r["capture"] for r in rows(rates)} - {"off"}
        mode = "graph" if "graph" in modes or not modes else min(modes)  # static: a CPU dry run
        r = subprocess.run([sys.executable, "-m", "dfg", "--suite", suite, "plan", "--rates", str(rates),
                            "--capture", mode],
                           capture_output=True, text=True, cwd=ROOT, check=False)
        (cap_dir := rates.parent / f"plan-{suite}.txt").write_text(r.stdout + r.stderr)
        m = re.search(r"total: ([\d.]+) GPU-h", r.stdout)
        if not m:
            body.append([suite, "-", "-", (r.stderr.strip().splitlines() or ["?"])[-1][:100]])
            continue
        hours = float(m.group(1))
        body.append([suite, f"{hours:.2f}", f"{hours / gain:.2f} (K = {best})", f"{cap_dir.name}"])
        if suite == "fmnist-full":
            column = hours / gain
            gates.append(f"**Gate: F-MNIST column {column:.2f} GPU-h with K = {best} (needs <= {COLUMN_HOURS}): "
                         f"{'PASS' if column <= COLUMN_HOURS else 'FAIL'}**")
    out += table(["suite", "GPU-h, one job per GPU", "GPU-h with K jobs per GPU", "per task and method"], body)
    out += ["", ("Training steps only (evaluations, set-up and 224-px loading not included; `dfg plan`). With K "
                 "jobs the hours scale by the aggregate LeNet-5 DFG gain at that K, measured above."), ""]
    return out + [g for gate in gates for g in (gate, "")]


def report(cap: Path, out: Path | None) -> int:
    bench, gate, rates = bench_section(cap)
    shared, agg = share_section(cap)
    text = "\n".join(["# Captured steps on the GPU", ""] + bench + shared + full_section(cap) + plan_section(rates, agg))
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0 if gate is None or gate >= GATE else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("share")
    s.add_argument("k", type=int)
    s.add_argument("out_dir", type=Path)
    s.add_argument("command", nargs=argparse.REMAINDER)
    r = sub.add_parser("report")
    r.add_argument("cap", type=Path)
    r.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.cmd == "share":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        return share(a.k, a.out_dir, cmd)
    return report(a.cap, a.out)


if __name__ == "__main__":
    sys.exit(main())
