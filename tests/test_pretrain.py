"""`dfg pretrain`: a LeNet-5 source model trained on the shared loop, with its metadata."""

from __future__ import annotations

import pytest
import torch

from dfg import DfgError
from dfg.models import build_backbone
from dfg.pretrain import run_pretrain
from dfg.utils.io import load_torch
from loop_fixtures import digits_task, make_params


def test_pretrain_writes_an_accurate_source_model(tmp_path):
    t = digits_task(tmp_path)
    out = tmp_path / "models" / "source" / "lenet5-digits.pt"
    info = run_pretrain(make_params(), "lenet5-digits", prepared_dir=t["prepared"], out=out, device="cpu")
    ckpt = load_torch(out)  # weights_only
    for key in ("kind", "backbone", "num_classes", "net", "source", "dataset", "epochs", "test_accuracy", "classes"):
        assert key in ckpt
    assert ckpt["kind"] == "source" and ckpt["backbone"] == "lenet5" and ckpt["dataset"] == "digits-test"
    assert ckpt["epochs"] == 2 and ckpt["steps"] == 2 * (1300 // 64) and ckpt["n_train"] == 1300
    assert ckpt["test_accuracy"] == info["test_accuracy"] > 0.8  # 10 classes: chance is 0.1
    net = build_backbone("lenet5", 10)
    net.load_state_dict(ckpt["net"])
    assert not out.with_name("lenet5-digits.resume.pt").exists()
    # same seed, same source model
    again = tmp_path / "again.pt"
    run_pretrain(make_params(), "lenet5-digits", prepared_dir=t["prepared"], out=again, device="cpu")
    b = load_torch(again)["net"]
    assert all(torch.equal(ckpt["net"][k], b[k]) for k in b)


def test_max_train_subsets_the_source_data(tmp_path):
    t = digits_task(tmp_path)
    params = make_params()
    params["sources"]["lenet5-digits"]["max_train"] = 200
    info = run_pretrain(params, "lenet5-digits", prepared_dir=t["prepared"], out=tmp_path / "s.pt", device="cpu")
    assert info["n_train"] == 200 and info["steps"] == 2 * (200 // 64)


def test_sources_that_are_not_trained_here(tmp_path):
    params = make_params()
    with pytest.raises(DfgError, match="fetch-weights"):
        run_pretrain(params, "resnet50-imagenet", out=tmp_path / "r.pt")
    with pytest.raises(DfgError, match="unknown source"):
        run_pretrain(params, "nope", out=tmp_path / "r.pt")
    with pytest.raises(DfgError, match="dfg prepare"):
        run_pretrain(params, "lenet5-digits", prepared_dir=tmp_path / "absent", out=tmp_path / "r.pt", device="cpu")
