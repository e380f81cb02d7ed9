"""delta, difa_cmwgan and dfg end to end through `dfg train`'s code on an easy task (scikit-learn digits
upscaled to 32 px, LeNet-5, CPU): they beat chance by a wide margin in seconds and write the artefacts
of docs/architecture.md; dfg is deterministic for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dfg.train import run_training
from dfg.utils.io import load_torch
from loop_fixtures import digits_task_with_source, make_params

STEPS = 40


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task(tmp_path_factory, one_thread) -> dict:
    tmp = tmp_path_factory.mktemp("digits")
    t = digits_task_with_source(tmp)
    return t


def train(task: dict, out: Path, method: str) -> dict:
    return run_training(make_params(steps=STEPS), "digits-test", method, 0, split_file=task["split"],
                        prepared_dir=task["prepared"], source_file=task["source"], out_model=out / "m.pt",
                        out_dir=out / "res", device="cpu")


@pytest.mark.parametrize("method", ["delta", "difa_cmwgan", "dfg"])
def test_method_beats_chance_and_writes_its_outputs(task, tmp_path, method):
    m = train(task, tmp_path, method)
    assert m["accuracy"] > 0.6 and m["balanced_accuracy"] > 0.6  # chance: 0.1
    assert m["steps"] == STEPS
    written = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert written["label"] == {"delta": "DELTA", "dfg": "DFG",
                                "difa_cmwgan": "DIFA + CMWGAN (reconstruction)"}[method]
    header = (tmp_path / "res" / "curves.csv").read_text().splitlines()[0].split(",")
    expected = {"delta": {"omega_e", "omega_c", "omega_fc"}, "dfg": {"loss_d", "loss_g", "loss_e", "loss_c"},
                "difa_cmwgan": {"loss_d", "loss_g", "loss_ce", "loss_adv"}}[method]
    assert expected <= set(header)
    art_path = tmp_path / "res" / "artefacts.pt"
    if method == "delta":
        assert not art_path.exists()
        return
    art = load_torch(art_path)
    f = art["features"]
    assert f["real"].shape == (f["real_labels"].numel(), 6 * 14 * 14)  # F's output, flattened
    assert f["generated"].shape == (f["generated_labels"].numel(), 6 * 14 * 14)
    assert 0 < f["real"].shape[0] <= 200 and 0 < f["generated"].shape[0] <= 200
    assert set(f["real_labels"].tolist()) == {0, 1} and set(f["generated_labels"].tolist()) <= {0, 1}
    assert art["minority_classes"] == [0, 1] and len(art["classes"]) == 10
    if method == "dfg":
        att = art["attention"]
        assert att["steps"].tolist() == [0] and att["matrices"].shape == (1, 10, 6)
    else:
        assert "attention" not in art


def test_dfg_is_deterministic_for_a_seed(task, tmp_path):
    a = train(task, tmp_path / "a", "dfg")
    b = train(task, tmp_path / "b", "dfg")
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
    wa, wb = load_torch(tmp_path / "a" / "m.pt")["net"], load_torch(tmp_path / "b" / "m.pt")["net"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
