"""The shared loop on an easy task (sklearn digits upscaled, LeNet-5, CPU): learning, determinism, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dfg import DfgError
from dfg.train import run_training
from dfg.utils.io import load_torch, save_torch
from loop_fixtures import digits_task_with_source, make_params

CONTRACT_KEYS = {
    "accuracy", "balanced_accuracy", "macro_f1", "g_mean", "per_class_recall", "majority_accuracy",
    "minority_accuracy", "ece", "confusion_matrix", "n_test", "task", "method", "label", "addition", "seed",
    "dataset", "source", "class_counts", "minority_classes", "split_sha256", "steps", "wall_seconds", "device",
    "torch_version", "git_commit", "params", "provenance",
}
TIMING_KEYS = {"wall_seconds", "resumed_from_step", "git_commit"}  # git: other commits may land mid-test


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    return digits_task_with_source(tmp_path_factory.mktemp("digits"))


def train(task: dict, out: Path, method: str = "original", steps: int = 60, callback=None, **train_cfg) -> dict:
    return run_training(make_params(steps=steps, **train_cfg), "digits-test", method, 0, split_file=task["split"],
                        prepared_dir=task["prepared"], source_file=task["source"], out_model=out / "m.pt",
                        out_dir=out / "res", device="cpu", callback=callback)


@pytest.mark.parametrize("method", ["original", "finetune"])
def test_methods_beat_chance_and_write_contract_outputs(task, tmp_path, method):
    m = train(task, tmp_path, method)
    assert m["accuracy"] > 0.6  # chance is 0.1
    assert m["steps"] == 60 and m["n_test"] == 497
    written = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(written)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "g_mean", "majority_accuracy", "minority_accuracy",
                "ece"):
        assert 0.0 <= written[key] <= 1.0
    assert written["source"] == (None if method == "original" else "lenet5-digits")
    prov = written["provenance"]  # where the numbers were computed (issue: reproducible on any machine)
    assert prov["machine"] and prov["cpu_model"] and prov["torch_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512",
                                                                                        "NEON", "SVE256", "VSX", "ZVECTOR")
    assert prov["torch_threads"] == 1 and prov["deterministic_algorithms"] is True and prov["gpu"] is None
    assert set(prov["numeric_env"]) >= {"ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR"}
    assert prov["versions"]["torch"] == torch.__version__.split("+")[0] and prov["versions"]["scikit-learn"]
    assert all(v for k, v in prov["versions"].items())
    assert any(pool["internal_api"] == "openblas" for pool in prov["blas"])
    assert written["class_counts"][0] == 15 and written["minority_classes"] == [0, 1]
    rows = (tmp_path / "res" / "curves.csv").read_text().splitlines()
    assert rows[0] == "step,test_accuracy,test_balanced_accuracy,loss_ce"
    assert [r.split(",")[0] for r in rows[1:]] == ["20", "40", "60"]
    ckpt = load_torch(tmp_path / "m.pt")
    assert ckpt["kind"] == "run" and ckpt["steps"] == 60 and ckpt["method"] == method
    assert not (tmp_path / "m.resume.pt").exists()


def test_finetune_starts_from_source(task, tmp_path):
    """With one step at a tiny lr, finetune is still the source model (~0.9), original is near chance."""
    tiny = {"optimizer": {"lenet5": {"name": "adam", "lr": 1e-7, "betas": [0.9, 0.999], "weight_decay": 0.0}}}
    ft = train(task, tmp_path / "ft", "finetune", steps=1, **tiny)
    orig = train(task, tmp_path / "orig", "original", steps=1, **tiny)
    assert ft["accuracy"] > 0.8
    assert orig["accuracy"] < 0.35


def test_original_needs_no_source(task, tmp_path):
    t = dict(task, source=tmp_path / "missing.pt")
    assert train(t, tmp_path, "original", steps=2)["source"] is None
    with pytest.raises(DfgError, match="dfg pretrain"):
        train(t, tmp_path, "finetune", steps=2)


def test_same_seed_same_metrics(task, tmp_path):
    a = train(task, tmp_path / "a", "finetune", steps=30)
    b = train(task, tmp_path / "b", "finetune", steps=30)
    assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {k: v for k, v in b.items() if k not in TIMING_KEYS}
    wa, wb = load_torch(tmp_path / "a" / "m.pt")["net"], load_torch(tmp_path / "b" / "m.pt")["net"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted(task, tmp_path):
    full = train(task, tmp_path / "full", "finetune", steps=40)

    def kill_at_30(step: int, logs: dict) -> None:
        if step == 30:
            raise Killed

    with pytest.raises(Killed):
        train(task, tmp_path / "cut", "finetune", steps=40, callback=kill_at_30)
    resume = tmp_path / "cut" / "m.resume.pt"
    assert load_torch(resume)["step"] == 20  # checkpoint_every = 20
    assert not (tmp_path / "cut" / "m.pt").exists() and not (tmp_path / "cut" / "res").exists()
    resumed = train(task, tmp_path / "cut", "finetune", steps=40)
    assert resumed["resumed_from_step"] == 20 and resumed["steps"] == 40
    assert {k: v for k, v in resumed.items() if k not in TIMING_KEYS} == \
        {k: v for k, v in full.items() if k not in TIMING_KEYS}
    assert (tmp_path / "cut" / "res" / "curves.csv").read_text() == (tmp_path / "full" / "res" / "curves.csv").read_text()
    assert not resume.exists()
    wa, wb = load_torch(tmp_path / "full" / "m.pt")["net"], load_torch(tmp_path / "cut" / "m.pt")["net"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_of_another_run_is_refused(task, tmp_path):
    def kill(step: int, logs: dict) -> None:
        if step == 21:
            raise Killed

    with pytest.raises(Killed):
        train(task, tmp_path, "finetune", steps=30, callback=kill)
    with pytest.raises(DfgError, match="another run"):
        train(task, tmp_path, "finetune", steps=31)


def test_resume_written_on_another_device_type_is_refused(task, tmp_path):
    """CPU and CUDA generator states do not convert: a checkpoint from a GPU node met on a CPU node
    (or the reverse) is refused with the fix named, not a raw RNG-size error on every rerun."""
    def kill(step: int, logs: dict) -> None:
        if step == 21:
            raise Killed

    with pytest.raises(Killed):
        train(task, tmp_path, "finetune", steps=30, callback=kill)
    resume = tmp_path / "m.resume.pt"
    state = load_torch(resume)
    assert state["device_type"] == "cpu"
    save_torch(resume, {**state, "device_type": "cuda"})
    with pytest.raises(DfgError, match="written on cuda and this run is on cpu.*--device cuda"):
        train(task, tmp_path, "finetune", steps=30)


def test_non_finite_loss_stops_the_run_at_the_next_evaluation(task, tmp_path, monkeypatch):
    """Losses are read at evaluations only (no per-step host sync); a NaN from step 26 on stops the run
    at the evaluation of step 40, naming the steps, and no checkpoint is written after it."""
    from dfg.methods.finetune import CrossEntropyMethod

    real_step = CrossEntropyMethod.train_step

    def step_going_nan(self, step):
        logs = real_step(self, step)
        return {k: v * float("nan") for k, v in logs.items()} if step >= 25 else logs

    monkeypatch.setattr(CrossEntropyMethod, "train_step", step_going_nan)
    with pytest.raises(DfgError, match=r"original: the training loss became non-finite between steps 21 and 40 "
                                       r"\(loss_ce = nan\); lower the learning rate"):
        train(task, tmp_path, "original", steps=60)
    assert load_torch(tmp_path / "m.resume.pt")["step"] == 20
    assert not (tmp_path / "m.pt").exists()


def test_cuda_without_gpu_is_a_clear_error(task, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DfgError, match="--device cpu"):
        run_training(make_params(steps=1), "digits-test", "original", 0, split_file=task["split"],
                     prepared_dir=task["prepared"], out_model=tmp_path / "m.pt", out_dir=tmp_path / "r",
                     device="cuda")


def test_bench_times_real_steps():
    from dfg.bench import bench_one

    params = make_params()
    r = bench_one(params, "lenet5", "original", torch.device("cpu"), steps=3, warmup=1)
    assert r["steps"] == 3 and r["seconds"] > 0
    assert r["images_per_s"] == pytest.approx(r["steps_per_s"] * params["train"]["batch_size"])


def test_bench_times_each_phase_of_a_phased_method(capsys):
    """DIFA's generator and matching steps do different work: one row each, each timed from its own
    first step (the nominal run is long, so the default run's switch stays outside the window)."""
    from dfg.bench import BENCH_RUN_STEPS, bench_one, main

    params = make_params()
    first = bench_one(params, "lenet5", "difa_cmwgan", torch.device("cpu"), steps=2, warmup=1)
    assert first["phase"] == "generator" and first["phases"] == ["generator", "matching"]
    # the generator phase draws the 5-batch critic queue per step, the matching phase one batch
    matching = bench_one(params, "lenet5", "difa_cmwgan", torch.device("cpu"), steps=2, warmup=1, phase="matching")
    assert matching["images_per_s"] / matching["steps_per_s"] == pytest.approx(params["train"]["batch_size"])
    assert first["images_per_s"] / first["steps_per_s"] > 2 * params["train"]["batch_size"]
    assert BENCH_RUN_STEPS * params["methods"]["difa_cmwgan"]["generator_fraction"] > 3
    with pytest.raises(DfgError, match="no phase 'critic'"):
        bench_one(params, "lenet5", "difa_cmwgan", torch.device("cpu"), steps=1, warmup=0, phase="critic")
    import argparse

    args = argparse.Namespace(backbones="lenet5", methods="difa_cmwgan,original", steps=1, device="cpu")
    assert main(args, params) == 0
    rows = [line[10:34].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("lenet5")]
    assert rows == ["difa_cmwgan (generator)", "difa_cmwgan (matching)", "original"]


def test_bench_times_a_variant_beside_its_base_and_writes_csv(tmp_path):
    """A suite's variant benches like a method (its base class with the variant's settings), so that the
    two compare in one run; --out writes the rows."""
    import argparse

    import pandas as pd

    from dfg.bench import main

    params = make_params()
    params["variants"] = {"dfg_slope02": {"of": "dfg", "label": "DFG, slope 0.2", "set": {"activation_slope": 0.2}}}
    args = argparse.Namespace(backbones="lenet5", methods="dfg,dfg_slope02", steps=2, device="cpu",
                              out=tmp_path / "b" / "bench.csv")
    assert main(args, params) == 0
    rows = pd.read_csv(tmp_path / "b" / "bench.csv")
    assert list(rows.method) == ["dfg", "dfg_slope02"] and (rows.steps == 2).all()
    assert (rows.ms_per_step - 1000 / rows.steps_per_s).abs().max() < 1e-9
    # DFG draws its 5-batch critic queue in the first step and one fresh batch a step after that
    assert (rows.images_per_s / rows.steps_per_s == params["train"]["batch_size"]).all()
    with pytest.raises(DfgError, match="unknown method 'dfg_slope2'"):
        main(argparse.Namespace(backbones="lenet5", methods="dfg_slope2", steps=1, device="cpu"), params)


def test_cpu_threads_fix_the_result_whatever_the_process_default(task, tmp_path):
    """train.cpu_threads = 1: a run started in a 2-thread process (plain `dfg train`, `dvc repro`) equals
    one started in a 1-thread process (Snakemake's OMP_NUM_THREADS=1), metrics and curves alike."""
    from threadpoolctl import threadpool_info, threadpool_limits

    torch_before = torch.get_num_threads()
    blas_before = {lib["user_api"]: lib["num_threads"] for lib in threadpool_info()}
    try:
        torch.set_num_threads(2)
        a = train(task, tmp_path / "a", "finetune", steps=40, cpu_threads=1)
        assert torch.get_num_threads() == 1
        assert all(lib["num_threads"] == 1 for lib in threadpool_info())
        torch.set_num_threads(1)
        b = train(task, tmp_path / "b", "finetune", steps=40, cpu_threads=1)
        torch.set_num_threads(2)
        train(task, tmp_path / "c", "finetune", steps=1, cpu_threads=0)  # 0: the process's count stays
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(torch_before)
        threadpool_limits(limits=blas_before)
    assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {k: v for k, v in b.items() if k not in TIMING_KEYS}
    assert (tmp_path / "a" / "res" / "curves.csv").read_text() == (tmp_path / "b" / "res" / "curves.csv").read_text()


def test_runtime_choices():
    from dfg.runtime import autocast_factory, choose_device, derive_seed

    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DfgError, match="unknown device"):
        choose_device("tpu")
    with autocast_factory(torch.device("cpu"), amp=True)():  # a no-op on the CPU: full precision
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    assert derive_seed(0, "batches") == derive_seed(0, "batches") != derive_seed(1, "batches")
    assert 0 <= derive_seed(0, "x") < 2**63


def test_cli_train_and_evaluate_on_the_tiny_suite(tmp_path, capsys):
    """`dfg --suite tiny train digits-tiny original ...` end to end through the CLI, then `dfg evaluate`."""
    from dfg.cli import main as cli
    from loop_fixtures import ROOT, digits_arrays, write_prepared

    x, y = digits_arrays()
    prepared = write_prepared(tmp_path / "prep", x[:1300], y[:1300], x[1300:], y[1300:], "sklearn-digits", 10)
    split = {"dataset": "sklearn-digits", "indices": list(range(0, 1300, 2)), "minority_classes": [3],
             "class_counts": [int(c) for c in torch.bincount(torch.as_tensor(y[:1300:2]), minlength=10)],
             "num_classes": 10, "sha256": "0" * 64}
    (tmp_path / "split.json").write_text(json.dumps(split))
    base = ["--params", str(ROOT / "params.yaml"), "--suite", "tiny"]
    paths = ["--split", str(tmp_path / "split.json"), "--prepared", str(prepared), "--out-model",
             str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "res"), "--steps", "3"]
    assert cli([*base, "train", "digits-tiny", "original", "--seed", "0", *paths]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert printed["steps"] == written["steps"] == 3 and written["device"] == "cpu"  # tiny suite: device cpu
    assert written["params"]["train"]["batch_size"] == 32  # the tiny overlay's, not params.yaml's
    assert cli([*base, "evaluate", str(tmp_path / "m.pt"), "--task", "digits-tiny", "--prepared", str(prepared),
                "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["accuracy"] == written["accuracy"]
    if not torch.cuda.is_available():  # a user error: one line on stderr, exit status 2
        assert cli([*base, "train", "digits-tiny", "original", "--seed", "0", *paths, "--device", "cuda"]) == 2
        assert "--device cpu" in capsys.readouterr().err


def test_optimizers_and_step_schedule_from_params():
    from dfg.loop import optimizer_factory

    w = torch.nn.Parameter(torch.zeros(2))
    sgd = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "step_at": 0.5, "gamma": 0.1}
    make_opt, make_sched = optimizer_factory(sgd, lambda: 10)
    opt = make_opt([w])
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    sched = make_sched(opt)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.01] * 5 + [0.001] * 5)  # x gamma at step_at * steps
    adam = {"name": "adam", "lr": 1e-4, "betas": [0.5, 0.9], "weight_decay": 0.0}
    make_opt, make_sched = optimizer_factory(adam, lambda: 10, lr=5e-4)  # a source's lr overrides
    opt = make_opt([w])
    assert opt.param_groups[0]["betas"] == (0.5, 0.9) and opt.param_groups[0]["lr"] == 5e-4
    assert make_sched(opt) is None


def test_a_log_without_terminal_gets_progress_lines_between_evaluations(task, tmp_path, monkeypatch, caplog):
    """A long run's log is not silent until its first evaluation: a line every PROGRESS_EVERY_S seconds
    with step/total, steps/s, ETA and the losses so far (pytest's stderr is not a terminal)."""
    import time

    from dfg import loop

    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.3)
    caplog.set_level("INFO", logger="dfg.loop")
    train(task, tmp_path, "original", steps=30, eval_every=1000, callback=lambda done, logs: time.sleep(0.05))
    lines = [r.getMessage() for r in caplog.records if r.name == "dfg.loop"]
    beats = [line for line in lines if "test acc" not in line]
    assert len(beats) >= 2, lines  # 30 steps x 0.05 s = 1.5 s at one line per 0.3 s
    steps_seen = []
    for line in beats:
        head = line.split()
        assert head[0] == "step" and head[1].endswith("/30") and head[3] == "steps/s" and head[4] == "ETA", line
        assert float(head[2]) > 0 and "loss_ce" in line
        steps_seen.append(int(head[1].split("/")[0]))
    assert steps_seen == sorted(steps_seen) and 0 < steps_seen[0] < 30
    final = lines[-1]  # the evaluation line carries the same fields plus the accuracy
    assert final.startswith("step 30/30") and "steps/s" in final and "test acc" in final and "loss_ce" in final
