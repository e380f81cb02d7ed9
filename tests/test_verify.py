"""`dfg verify`: the tiny suite's runs (made by Snakemake in the portable CPU mode) regenerate identically in a
scratch folder; a doctored metrics.json is a MISMATCH and the command exits 1; the project's own outputs are
never written."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dfg import DfgError
from dfg.verify import check_scratch, expectation
from workflow_fixtures import BIN, TINY_TASK, env, tiny_local_run, tree_hashes

pytestmark = pytest.mark.slow


def _verify(project: Path, scratch: Path, *select: str) -> subprocess.CompletedProcess:
    args = [str(BIN / "dfg"), "--suite", "tiny", "verify", "--scratch", str(scratch)]
    for s in select:
        args += ["--select", s]
    return subprocess.run(args, cwd=project, env=env(), capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("verify") / "project"
    shutil.copytree(tiny_local_run(), dest, symlinks=True)
    return dest


def test_tiny_suite_runs_regenerate_identically(project, tmp_path):
    before = tree_hashes(project, ["results", "models"])
    r = _verify(project, tmp_path / "scratch", f"{TINY_TASK}/original/*", f"{TINY_TASK}/finetune/seed0",
                f"{TINY_TASK}/crt/seed0", f"{TINY_TASK}/dfg/seed1")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    runs = [line for line in lines if line.startswith(TINY_TASK)]
    assert len(runs) == 5 and all(line.split()[1] == "identical" for line in runs), lines
    assert lines[-1].startswith("verify tiny: OK: 5 run(s): 5 identical")
    # crt ran after the finetune run it starts from (the rerun, not the project's model)
    assert [line.split()[0] for line in runs].index(f"{TINY_TASK}/crt/seed0") == 4
    assert (tmp_path / "scratch" / "results/tiny/runs" / TINY_TASK / "dfg/seed1/metrics.json").exists()
    assert tree_hashes(project, ["results", "models"]) == before  # nothing of the project's was touched


def test_a_doctored_metrics_file_is_a_mismatch(project, tmp_path):
    path = project / "results/tiny/runs" / TINY_TASK / "original/seed0/metrics.json"
    doc = json.loads(path.read_text())
    doc["accuracy"] = round(doc["accuracy"] + 0.01, 6)
    path.write_text(json.dumps(doc))
    r = _verify(project, tmp_path / "scratch", f"{TINY_TASK}/original/seed0")
    assert r.returncode == 1, r.stdout + r.stderr[-3000:]
    line = next(line for line in r.stdout.splitlines() if line.startswith(f"{TINY_TASK}/original/seed0"))
    assert "MISMATCH" in line and f"committed {doc['accuracy']:.4f}" in line and "differing: accuracy" in line
    assert "seed-to-seed sd" in line and "both runs should be identical" in line
    assert r.stdout.strip().splitlines()[-1].startswith("verify tiny: FAIL")


def test_what_is_expected_identical_and_where_reruns_may_go(tmp_path):
    portable = {"portable_cpu": True, "gpu": None}
    fast = {"portable_cpu": False, "gpu": None, "cpu_model": "A", "machine": "x86_64", "torch_cpu_capability": "AVX2",
            "torch_threads": 1, "onednn_enabled": True, "versions": {"torch": "2.14.1"}}
    assert expectation({"provenance": portable}, {"provenance": portable}) == "exact"
    assert expectation({"provenance": fast}, {"provenance": dict(fast)}) == "exact"
    assert "cpu_model" in expectation({"provenance": fast}, {"provenance": {**fast, "cpu_model": "B"}})
    assert "portable" in expectation({"provenance": portable}, {"provenance": fast})
    assert "GPU" in expectation({"provenance": {**fast, "gpu": {"name": "H200"}}}, {"provenance": fast})
    assert "no provenance" in expectation({}, {"provenance": fast})
    for bad in (tmp_path, tmp_path / "results", tmp_path / "models" / "x", tmp_path / "data"):
        with pytest.raises(DfgError, match="pick a folder outside"):
            check_scratch(bad, tmp_path)
    check_scratch(tmp_path / "scratch", tmp_path)
    check_scratch(tmp_path.parent / "elsewhere", tmp_path)
