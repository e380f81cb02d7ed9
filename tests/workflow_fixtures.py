"""Shared, expensive work for the workflow tests: a copy of the project and one local run of the tiny
suite, done once per pytest process and reused by test_e2e, test_dvc and test_slurm."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Outputs, never copied from the working tree into a test project.
GENERATED = ("data/", "models/", "results/", "logs/", "benchmarks/", ".snakemake/", ".dvc/", "dvc.lock")
#: The tiny suite's grid (workflow/suites/tiny.yaml).
TINY_TASK = "digits-tiny"
TINY_METHODS = ("original", "finetune", "crt", "dfg")
TINY_SEEDS = (0, 1)


def env() -> dict[str, str]:
    """The environment of a job: this venv's `dfg`, `snakemake` and `dvc` first on PATH."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def unactivated_env() -> dict[str, str]:
    """The environment of a cron job, an IDE or a submit script: this venv is not on PATH (nor activated)."""
    e = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    e["PATH"] = os.pathsep.join(p for p in e.get("PATH", "").split(os.pathsep)
                                if p and Path(p).resolve() != BIN.resolve())
    return e


def run(cmd: list[str], cwd: Path, timeout: float = 600, environ: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, cwd=cwd, env=env() if environ is None else environ,
                          capture_output=True, text=True, timeout=timeout)


def snakemake(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """This venv's Snakemake started by its path, with the venv not on PATH: the rules must run the dfg of
    the Python that runs Snakemake, locally and on SLURM's nodes."""
    return run([str(BIN / "snakemake"), *args], cwd, timeout, environ=unactivated_env())


def copy_project(dest: Path) -> Path:
    """The project's source files (tracked and untracked, minus ignored and generated ones) in dest."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for rel in files:
        if rel.startswith(GENERATED) or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table (rule -> count) from a dry run's output."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats"))
    stats = {}
    for line in lines[start + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    return stats


def tiny_runs() -> list[tuple[str, str, int]]:
    return [(TINY_TASK, m, s) for m in TINY_METHODS for s in TINY_SEEDS]


def metrics_of(root: Path, method: str, seed: int) -> dict:
    return json.loads((root / f"results/tiny/runs/{TINY_TASK}/{method}/seed{seed}/metrics.json").read_text())


def tree_hashes(root: Path, rels: list[str]) -> dict[str, str]:
    """sha256 of every data file under `rels` (Snakemake's empty directory marker is not data; git and
    DVC ignore it)."""
    out = {}
    for rel in rels:
        p = root / rel
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file() and f.name != ".snakemake_timestamp":
                out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


_TINY: dict[str, object] = {}


def tiny_local_run() -> Path:
    """A project copy in which `snakemake --config suite=tiny` has run to the end (once per process)."""
    if "root" in _TINY:
        return _TINY["root"]  # type: ignore[return-value]
    root = Path(tempfile.mkdtemp(prefix="dfg-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    copy_project(root)
    r = snakemake(["--cores", "2", "--config", "suite=tiny"], root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    _TINY["root"] = root
    _TINY["output"] = r.stdout + r.stderr
    return root
