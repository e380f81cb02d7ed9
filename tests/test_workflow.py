"""The Snakemake workflow without running jobs: dry runs of the default, tiny and paper suites, lint,
early errors, the generated dvc.yaml, and GPU leasing (with fake device lists, no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from dfg import DfgError
from dfg.workflow import gpu_lease
from workflow_fixtures import BIN, ROOT, copy_project, env, job_stats, snakemake


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh copy: no data, models or results, as on a fresh clone."""
    return copy_project(tmp_path_factory.mktemp("project"))


def _params(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def test_dry_run_default_suite_lists_its_grid(project):
    r = snakemake(["-n"], project)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = job_stats(r.stdout)
    run = _params(project)["run"]
    n_runs = len(run["tasks"]) * len(run["methods"]) * len(run["seeds"])
    assert stats.get("train", 0) + stats.get("train_artefacts", 0) == n_runs
    assert stats["split"] == len(run["tasks"]) * len(run["seeds"])
    assert stats["pretrain"] == 1 and stats["aggregate"] == 1 and stats["figures"] == 1
    # fashion-mnist (fetched from a mirror or the net) and synthdigits (generated offline)
    assert stats["prepare"] == 2 and stats["fetch"] == 1


def test_dry_run_paper_suite_lists_the_whole_grid(project):
    r = snakemake(["-n", "--configfile", "workflow/suites/paper.yaml"], project)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = job_stats(r.stdout)
    paper = yaml.safe_load((project / "workflow/suites/paper.yaml").read_text())["run"]
    assert len(paper["tasks"]) == 6 and paper["seeds"] == [0, 1, 2, 3, 4] and len(paper["methods"]) == 13
    # every task x method x seed, less smote_feat on the two ResNet-50 tasks (tasks.<t>.exclude_methods)
    assert stats["train"] + stats["train_artefacts"] == 6 * 13 * 5 - 2 * 5
    assert stats["train_artefacts"] >= 6 * 2 * 5  # at least dfg and difa_cmwgan write artefacts.pt
    assert stats["split"] == 30
    # svhn fmnist stl10 cinic10 caltech256 food101 + emnist cifar10 (sources); ResNet-50 weights fetched
    assert stats["fetch"] == 8 and stats["prepare"] == 8
    assert stats["pretrain"] == 2 and stats["fetch_weights"] == 1


def test_original_runs_wait_for_no_source_model(project):
    r = snakemake(["-n", "results/tiny/runs/digits-tiny/original/seed0/metrics.json", "--config", "suite=tiny"],
                  project)
    assert r.returncode == 0, r.stderr[-3000:]
    stats = job_stats(r.stdout)
    assert "pretrain" not in stats and stats["train"] == 1
    r = snakemake(["-n", "results/tiny/runs/digits-tiny/crt/seed0/metrics.json", "--config", "suite=tiny"], project)
    stats = job_stats(r.stdout)
    assert stats["pretrain"] == 1 and stats["train"] == 2  # crt starts from the finetune run


def test_lint_is_clean(project):
    r = snakemake(["--lint"], project)
    assert r.returncode == 0
    assert "Lints for" not in r.stdout + r.stderr


@pytest.mark.parametrize("overlay, expected", [
    (None, "unknown suite 'nosuch'"),
    ({"run": {"methods": ["original", "nosuch"]}}, "unknown method 'nosuch'"),
])
def test_bad_suite_stops_before_any_job_with_one_message(project, overlay, expected):
    if overlay is not None:
        (project / "workflow/suites/nosuch.yaml").write_text(yaml.safe_dump({"suite": "nosuch", **overlay}))
    try:
        r = snakemake(["--cores", "1", "--config", "suite=nosuch"], project)
    finally:
        (project / "workflow/suites/nosuch.yaml").unlink(missing_ok=True)
    assert r.returncode != 0
    assert expected in r.stdout + r.stderr
    assert "rule " not in r.stdout + r.stderr  # no job was scheduled
    assert not (project / "data").exists()


@pytest.mark.parametrize("overlay, expected", [
    ({"run": {"tasks": ["nosuch"]}}, "unknown task 'nosuch'"),
    ({"tasks": {"fmnist-synth": {"source": "nosource"}}}, "unknown source 'nosource'"),
    ({"sources": {"nosrc": {"backbone": "lenet5"}}, "tasks": {"fmnist-synth": {"source": "nosrc"}}},
     "neither `dataset`"),
    ({"sources": {"lenet5-synthdigits": {"weights": "nosuch-weights"}}}, "unknown weights 'nosuch-weights'"),
])
def test_what_common_smk_checks_first(project, monkeypatch, overlay, expected):
    """The checks common.smk runs before building the DAG (same calls; the Snakemake path of these
    messages is exercised by the test above)."""
    from dfg.config import load_params
    from dfg.workflow.plan import Plan
    from dfg.workflow.preflight import check_buildable

    monkeypatch.chdir(project)
    (project / "workflow/suites/nosuch.yaml").write_text(yaml.safe_dump({"suite": "nosuch", **overlay}))
    try:
        with pytest.raises(DfgError, match=expected):
            check_buildable(Plan(load_params("params.yaml", "nosuch")))
    finally:
        (project / "workflow/suites/nosuch.yaml").unlink()


def test_config_overrides_of_numbers_are_refused(project):
    r = snakemake(["-n", "--config", "train={steps: 5}"], project)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "changed train" in out and "suite file" in out


def test_committed_dvc_yaml_is_not_stale():
    r = subprocess.run(check=False, args=[str(BIN / "dfg"), "dvc-yaml", "--check"], cwd=ROOT, env=env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    committed = subprocess.run(["git", "ls-files", "results/*/dvc.yaml"], check=True, cwd=ROOT, capture_output=True,
                               text=True).stdout.split()                  # committed suites' own pipelines
    for sub in map(Path, committed):
        r = subprocess.run(check=False, args=[str(BIN / "dfg"), "--suite", sub.parent.name, "dvc-yaml", "--check"],
                           cwd=ROOT, env=env(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_other_suite_gets_its_own_pipeline_file(project):
    """A suite other than params.yaml's: results/<suite>/dvc.yaml, stages run from the root, and no stage
    for an output the root dvc.yaml already declares (DVC refuses an output made by two stages)."""
    dfg = str(BIN / "dfg")
    r = subprocess.run([dfg, "--suite", "tiny", "dvc-yaml"], check=True, cwd=project, env=env(), capture_output=True,
                       text=True)
    assert "wrote results/tiny/dvc.yaml" in r.stdout
    text = (project / "results/tiny/dvc.yaml").read_text()
    doc, root = yaml.safe_load(text), yaml.safe_load((project / "dvc.yaml").read_text())
    assert "#   dfg --suite tiny dvc-yaml\n" in text
    assert {s["wdir"] for s in doc["stages"].values()} == {"../.."}
    assert doc["plots"] == ["figures"]                                    # top-level plots: from the file's folder

    def outputs(stages: dict) -> set[str]:
        return {next(iter(o)) if isinstance(o, dict) else o
                for s in stages.values() for k in ("outs", "metrics", "plots") for o in s.get(k, [])}

    assert not outputs(doc["stages"]) & outputs(root["stages"])
    assert "prepare_synthdigits" in root["stages"] and "prepare_synthdigits" not in doc["stages"]
    assert "prepare_sklearn-digits" in doc["stages"] and "train_digits-tiny_dfg_seed0" in doc["stages"]
    ok = subprocess.run([dfg, "--suite", "tiny", "dvc-yaml", "--check"], check=False, cwd=project, env=env(),
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    outside = subprocess.run([dfg, "--suite", "tiny", "dvc-yaml", "--out", str(project.parent / "dvc.yaml")],
                             check=False, cwd=project, env=env(), capture_output=True, text=True)
    assert outside.returncode == 2 and "outside the project" in outside.stderr


def test_dvc_yaml_check_fails_on_a_stale_file(project):
    (project / "dvc.yaml").write_text((project / "dvc.yaml").read_text().replace("--seed 0", "--seed 9", 1))
    r = subprocess.run(check=False, args=[str(BIN / "dfg"), "dvc-yaml", "--check"], cwd=project, env=env(), capture_output=True,
                       text=True)
    assert r.returncode == 1 and "stale" in r.stderr


# -- GPU leasing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("visible, expected", [
    ("0,1", ["0", "1"]), ("3", ["3"]), ("", []), ("-1", []), ("2,-1,3", ["2"]),
    ("GPU-5b1c,GPU-77aa", ["GPU-5b1c", "GPU-77aa"]),
])
def test_candidate_devices_follow_cuda_visible_devices(visible, expected):
    assert gpu_lease.candidate_devices({"CUDA_VISIBLE_DEVICES": visible}) == expected


def test_two_leases_get_distinct_devices_and_a_third_waits(tmp_path):
    with gpu_lease.lease(["0", "1"], tmp_path) as a, gpu_lease.lease(["0", "1"], tmp_path) as b:
        assert {a, b} == {"0", "1"}
        with pytest.raises(DfgError, match="stayed leased"), \
                gpu_lease.lease(["0", "1"], tmp_path, timeout_s=0.2, poll_s=0.05):
            pass
    # released on exit: the next lease gets the first device again
    with gpu_lease.lease(["0", "1"], tmp_path) as c:
        assert c == "0"


def test_a_waiting_lease_gets_the_device_when_it_is_released(tmp_path):
    got = []
    with gpu_lease.lease(["7"], tmp_path):
        t = threading.Thread(target=lambda: got.append(next(iter([_take(tmp_path)]))))
        t.start()
        time.sleep(0.3)
        assert got == []
    t.join(5)
    assert got == ["7"]


def _take(lock_dir: Path) -> str:
    with gpu_lease.lease(["7"], lock_dir, timeout_s=5, poll_s=0.05) as d:
        return d


def test_concurrent_gpu_lease_commands_run_on_distinct_devices(tmp_path):
    e = env() | {"CUDA_VISIBLE_DEVICES": "0,1", "DFG_GPU_LOCK_DIR": str(tmp_path / "locks")}
    e.pop("SLURM_JOB_ID", None)
    cmd = [str(BIN / "dfg"), "gpu-lease", "--", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES; sleep 2"]
    procs = [subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["0", "1"]


def test_gpu_lease_without_gpus_runs_the_command_as_is(tmp_path):
    e = env() | {"CUDA_VISIBLE_DEVICES": "", "DFG_GPU_LOCK_DIR": str(tmp_path / "locks")}
    r = subprocess.run(check=False, args=[str(BIN / "dfg"), "gpu-lease", "--", "sh", "-c", "echo [$CUDA_VISIBLE_DEVICES]; exit 3"],
                       env=e, capture_output=True, text=True)
    assert r.returncode == 3 and r.stdout.strip() == "[]"
    assert not (tmp_path / "locks").exists()


def test_dfg_params_prints_the_resolved_suite():
    r = subprocess.run(check=False, args=[str(BIN / "dfg"), "--suite", "paper", "params", "train.steps"], cwd=ROOT, env=env(),
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "40000"
    assert os.path.exists(ROOT / "workflow/suites/paper.yaml")


def test_unfetchable_inputs_are_named_before_a_run(project, monkeypatch):
    """Offline (host unreachable): every paper dataset without a mirror copy is named, with its folder;
    a mirror copy (or data already on disk) removes it from the list."""
    from dfg.config import load_params
    from dfg.workflow import preflight
    from dfg.workflow.plan import Plan

    monkeypatch.chdir(project)
    monkeypatch.setattr(preflight, "_reachable", lambda url, timeout=0: False)
    plan = Plan(load_params("params.yaml", "paper"))
    plan.params["fetch"]["mirrors"] = ["data/mirror"]
    msgs = preflight.unfetchable(plan)
    names = sorted(m.split("'")[1] for m in msgs)
    assert names == sorted(["svhn", "fashion-mnist", "stl10", "cinic10", "caltech256", "food101", "emnist",
                            "cifar10", "resnet50-imagenet"])
    assert any("place train_32x32.mat, test_32x32.mat in data/mirror/svhn/" in m for m in msgs)
    for f in ("train_32x32.mat", "test_32x32.mat"):
        (project / "data/mirror/svhn").mkdir(parents=True, exist_ok=True)
        (project / "data/mirror/svhn" / f).write_bytes(b"")
    try:
        assert not any("'svhn'" in m for m in preflight.unfetchable(plan))
    finally:
        import shutil

        shutil.rmtree(project / "data")


def test_preflight_probes_the_proxy_a_download_would_use(monkeypatch):
    """Where the network is reached only through a proxy, the start-up check connects to the proxy, as
    `dfg fetch` does, rather than declaring every dataset unfetchable."""
    from dfg.workflow.preflight import _probe_address

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert _probe_address("http://ufldl.stanford.edu/housenumbers/x.mat") == ("ufldl.stanford.edu", 80)
    assert _probe_address("https://download.pytorch.org/models/r.pth") == ("download.pytorch.org", 443)
    monkeypatch.setenv("http_proxy", "http://proxy.lab:3128")
    monkeypatch.setenv("https_proxy", "proxy.lab:8080")
    assert _probe_address("http://ufldl.stanford.edu/housenumbers/x.mat") == ("proxy.lab", 3128)
    assert _probe_address("https://download.pytorch.org/models/r.pth") == ("proxy.lab", 8080)
    monkeypatch.setenv("no_proxy", "stanford.edu")
    assert _probe_address("http://ufldl.stanford.edu/housenumbers/x.mat") == ("ufldl.stanford.edu", 80)


@pytest.mark.parametrize("per_gpu, claim", [(1, "gpu=1"), (4, "gpu_slot=1")])
def test_training_jobs_claim_a_gpu_or_a_share_of_one(project, per_gpu, claim):
    """train.jobs_per_gpu = 1: each CUDA training job claims `gpu=1` of `--resources gpu=N`; K > 1: one
    `gpu_slot`, of which N GPUs provide N x K (job_gpu_resources), so `gpu=N` keeps meaning N GPUs."""
    suite = project / "workflow/suites/gpushare.yaml"
    suite.write_text(yaml.safe_dump({"suite": "gpushare", "device": "cuda", "train": {"jobs_per_gpu": per_gpu}}))
    try:
        r = snakemake(["-n", "results/gpushare/runs/fmnist-synth/original/seed0/metrics.json", "--resources",
                       "gpu=2", "--config", "suite=gpushare"], project)
    finally:
        suite.unlink()
    assert r.returncode == 0, r.stderr[-3000:]
    train_job = r.stdout[r.stdout.index("rule train:"):]
    resources = next(line for line in train_job.splitlines() if line.strip().startswith("resources:"))
    assert claim in resources and ("gpu=1" in resources) == (per_gpu == 1)


def test_gpu_shares_are_counted_per_provided_gpu():
    assert gpu_lease.job_gpu_resources(False, 4, 2) == ({"gpu": 0}, None)
    assert gpu_lease.job_gpu_resources(True, 1, 2) == ({"gpu": 1}, None)
    assert gpu_lease.job_gpu_resources(True, 3, 2) == ({"gpu_slot": 1}, 6)
    assert gpu_lease.job_gpu_resources(True, 3, None) == ({"gpu_slot": 1}, None)  # no --resources gpu: unlimited


def test_each_gpu_is_leased_k_times_first_slots_first(tmp_path):
    """K = 2 on two GPUs: four leases at once, spread over both GPUs before doubling up; a fifth waits."""
    with gpu_lease.lease(["0", "1"], tmp_path, per_device=2) as a, \
            gpu_lease.lease(["0", "1"], tmp_path, per_device=2) as b:
        assert (a, b) == ("0", "1")
        with gpu_lease.lease(["0", "1"], tmp_path, per_device=2) as c, \
                gpu_lease.lease(["0", "1"], tmp_path, per_device=2) as d:
            assert (c, d) == ("0", "1")
            with pytest.raises(DfgError, match="stayed leased"), \
                    gpu_lease.lease(["0", "1"], tmp_path, timeout_s=0.2, poll_s=0.05, per_device=2):
                pass


def test_gpu_lease_reads_k_from_the_workflow(tmp_path):
    """Three concurrent `dfg gpu-lease` commands on one GPU with DFG_JOBS_PER_GPU=3 (what the workflow
    exports) all run at once; a bad K is refused with the fix named."""
    e = env() | {"CUDA_VISIBLE_DEVICES": "0", "DFG_GPU_LOCK_DIR": str(tmp_path / "locks"), "DFG_JOBS_PER_GPU": "3"}
    e.pop("SLURM_JOB_ID", None)
    cmd = [str(BIN / "dfg"), "gpu-lease", "--", "sh", "-c", "date +%s.%N; sleep 2"]
    t0 = time.time()
    procs = [subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    starts = sorted(float(o.strip()) for o, _ in outs)
    assert starts[-1] - starts[0] < 1.5 and time.time() - t0 < 30  # none waited for another's 2 s
    assert all("one of 3 jobs on it" in err for _, err in outs)
    r = subprocess.run([str(BIN / "dfg"), "gpu-lease", "--jobs-per-gpu", "0", "--", "true"], env=e,
                       capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "jobs per GPU must be a whole number >= 1" in r.stderr
