"""The cluster path for real: a one-node SLURM cluster (scripts/slurm-start.sh), the tiny suite through
`snakemake --executor slurm` (tests/profiles/slurm-test), every training job submitted with sbatch,
metrics identical to the local run of the same suite and seeds (CPU determinism), daemons stopped.

Skips with the reason when SLURM cannot be started here (not root, no apt); DFG_REQUIRE_SLURM=1
(set by .ci/run) turns that skip into a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from workflow_fixtures import (
    ROOT,
    TINY_TASK,
    copy_project,
    env,
    metrics_of,
    snakemake,
    tiny_local_run,
    tiny_runs,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

#: Metric keys that must match bit for bit between the SLURM and the local run (timings, device name
#: and paths legitimately differ).
DETERMINISTIC_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "g_mean", "per_class_recall",
                      "majority_accuracy", "minority_accuracy", "ece", "confusion_matrix", "n_test",
                      "class_counts", "minority_classes", "split_sha256", "steps")


def _cannot(reason: str) -> None:
    if os.environ.get("DFG_REQUIRE_SLURM") == "1":
        pytest.fail(f"DFG_REQUIRE_SLURM=1 but SLURM cannot run here: {reason}")
    print(f"skipping the SLURM test: {reason}")
    pytest.skip(reason)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def slurm_cluster(tmp_path):
    """A running one-node cluster, state under tmp_path; stopped (by pid) afterwards."""
    if os.geteuid() != 0:
        _cannot("not root (starting slurmctld/slurmd and installing slurm-wlm need root)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        _cannot("slurm-wlm is not installed and there is no apt-get to install it")
    state = tmp_path / "slurm"
    e = env() | {"DFG_SLURM_DIR": str(state)}
    r = subprocess.run(["bash", str(ROOT / "scripts/slurm-start.sh")], env=e, capture_output=True, text=True,
                       timeout=600, check=False)
    pids = {p.stem: int(p.read_text()) for p in state.glob("*.pid")} if state.exists() else {}
    try:
        if r.returncode != 0:
            _cannot(f"scripts/slurm-start.sh failed: {r.stderr.strip()[-500:]}")
        yield state
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/slurm-stop.sh")], env=e, capture_output=True, timeout=120,
                       check=False)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {n: p for n, p in pids.items() if _alive(p)}
        assert not left, f"daemons still running after slurm-stop.sh: {left}"


def test_tiny_suite_through_slurm_matches_the_local_run(slurm_cluster, tmp_path):
    local = tiny_local_run()
    work = copy_project(tmp_path / "work")
    # Share the local run's data and source model (copied with their times, so Snakemake sees them
    # up to date): the cluster then runs exactly the training jobs, plus the local aggregate/figures.
    shutil.copytree(local / "data", work / "data", copy_function=shutil.copy2)
    shutil.copytree(local / "models/source", work / "models/source", copy_function=shutil.copy2)
    r = snakemake(["--workflow-profile", "tests/profiles/slurm-test", "--config", "suite=tiny"], work, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    # every training job went through sbatch: the plugin's submit line and a SLURM log per run that
    # shows the job's `dfg train` command, and no training job ran on the submit host
    runs = tiny_runs()
    submitted = [line for line in out.splitlines() if "has been submitted with SLURM jobid" in line]
    for _task, method, seed in runs:
        # the plugin files each job's log under rule_<rule>/<wildcard values joined by _>/<jobid>.log
        mine = [line for line in submitted if "/rule_train" in line and f"/{TINY_TASK}_{method}_{seed}/" in line]
        assert len(mine) == 1, (method, seed, submitted)
        log = work / mine[0].split("(log: ")[1].rstrip(").")
        assert f"train {TINY_TASK} {method} --seed {seed}" in log.read_text()
    assert "localrule train" not in out
    for _task, method, seed in runs:
        ours, ref = metrics_of(work, method, seed), metrics_of(local, method, seed)
        for k in DETERMINISTIC_KEYS:
            assert ours[k] == ref[k], (method, seed, k)
    assert (work / "results/tiny/table.md").exists()
    assert TINY_TASK in (work / "results/tiny/table.md").read_text()
