"""Every method under bf16 autocast, on the CPU. On CUDA, `train.amp` runs each forward pass in
torch.autocast(bfloat16); on the CPU the runs are float32, so without this test the autocast code
(dtype mixing between bf16 activations and float32 buffers, the gradient penalty's double backward,
generated features fed back into C, SMOTE on bf16 features) would first run on a GPU. CPU autocast
casts the same families of ops (conv, linear, matmul) to bf16 as CUDA autocast does."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Self

import pytest
import torch

import dfg.evaluate
import dfg.loop
from dfg.evaluate import evaluate_checkpoint
from dfg.methods import METHODS
from dfg.train import run_training
from dfg.utils.io import load_torch
from loop_fixtures import digits_task_with_source, make_params

STEPS = 40
pytestmark = pytest.mark.usefixtures("one_thread")


class DtypeProbe:
    """Counts the output dtypes of every Conv2d/Linear forward while installed (a global hook)."""

    def __init__(self) -> None:
        self.seen: dict[torch.dtype, int] = {}
        self._handle = None

    def __enter__(self) -> Self:
        def hook(module, _inputs, output):
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and isinstance(output, torch.Tensor):
                self.seen[output.dtype] = self.seen.get(output.dtype, 0) + 1

        self._handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def cpu_bf16_factory(device, amp, cache=True):
    """What runtime.autocast_factory returns on CUDA, with device_type cpu."""
    assert device.type == "cpu"
    if not amp:
        return lambda: torch.autocast("cpu", enabled=False)
    return lambda: torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=cache)


@pytest.fixture(scope="module")
def task(tmp_path_factory, one_thread) -> dict:
    tmp = tmp_path_factory.mktemp("digits-amp")
    t = digits_task_with_source(tmp)
    t["finetune"] = tmp / "finetune.pt"
    run_training(make_params(steps=STEPS), "digits-test", "finetune", 0, split_file=t["split"],
                 prepared_dir=t["prepared"], source_file=t["source"], out_model=t["finetune"],
                 out_dir=tmp / "finetune-res", device="cpu")
    return t


@pytest.fixture
def bf16(monkeypatch):
    monkeypatch.setattr(dfg.loop, "autocast_factory", cpu_bf16_factory)
    monkeypatch.setattr(dfg.evaluate, "autocast_factory", cpu_bf16_factory)


CASES = [(m, {}) for m in METHODS.names()] + [("dfg", {"gp_shortcut": False}), ("difa_cmwgan", {"gp_shortcut": False})]


@pytest.mark.parametrize(("method", "hp"), CASES, ids=[m + ("-plain-gp" if hp else "") for m, hp in CASES])
def test_method_trains_under_bf16_autocast(task, tmp_path, bf16, method, hp):
    params = make_params(steps=STEPS)
    params["methods"][method].update(hp)
    with DtypeProbe() as probe:
        m = run_training(params, "digits-test", method, 0, split_file=task["split"], prepared_dir=task["prepared"],
                         source_file=task["source"], init_run=task["finetune"], out_model=tmp_path / "m.pt",
                         out_dir=tmp_path / "res", device="cpu")
    assert probe.seen.get(torch.bfloat16, 0) > 0, f"autocast never engaged: {probe.seen}"
    assert m["accuracy"] > 0.6 and m["balanced_accuracy"] > 0.6, m["accuracy"]  # chance: 0.1
    with open(tmp_path / "res" / "curves.csv") as fh:
        rows = list(csv.DictReader(fh))
    losses = [float(v) for r in rows for k, v in r.items() if k.startswith("loss") and v not in ("", None)]
    assert all(math.isfinite(v) for v in losses)
    state = load_torch(tmp_path / "m.pt")["net"]
    floats = {k: v.dtype for k, v in state.items() if v.is_floating_point()}
    assert set(floats.values()) == {torch.float32}, floats  # weights stay float32; only activations are bf16
    if method == "dfg" and not hp:
        art = load_torch(tmp_path / "res" / "artefacts.pt")
        assert art["features"]["real"].dtype == art["features"]["generated"].dtype == torch.float32
        # re-evaluation under the same autocast reproduces the run's accuracy
        again = evaluate_checkpoint(params, tmp_path / "m.pt", "digits-test", prepared_dir=task["prepared"],
                                    device="cpu")
        assert again["accuracy"] == m["accuracy"]


def test_bf16_and_float32_runs_differ_but_agree_roughly(task, tmp_path, monkeypatch):
    """The factory is really used by the loop: a bf16 DFG run is not bit-identical to the float32 one,
    yet lands within a few points of it on the easy task."""
    def run(out: Path) -> dict:
        return run_training(make_params(steps=STEPS), "digits-test", "dfg", 0, split_file=task["split"],
                            prepared_dir=task["prepared"], source_file=task["source"], out_model=out / "m.pt",
                            out_dir=out / "res", device="cpu")

    fp32 = run(tmp_path / "fp32")
    monkeypatch.setattr(dfg.loop, "autocast_factory", cpu_bf16_factory)
    bf = run(tmp_path / "bf16")
    assert fp32["confusion_matrix"] != bf["confusion_matrix"]
    assert abs(fp32["accuracy"] - bf["accuracy"]) < 0.05
