"""`dfg evaluate`: a saved run re-evaluated gives the metrics `dfg train` wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfg import DfgError
from dfg.evaluate import evaluate_checkpoint
from dfg.train import run_training
from dfg.utils.io import load_torch, save_torch
from loop_fixtures import digits_task, make_params

SAME = ("accuracy", "balanced_accuracy", "macro_f1", "g_mean", "per_class_recall", "majority_accuracy",
        "minority_accuracy", "ece", "confusion_matrix", "n_test")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    t = digits_task(tmp)
    params = make_params(steps=40)
    params["tasks"]["digits-test"]["max_test"] = 300
    m = run_training(params, "digits-test", "original", 0, split_file=t["split"], prepared_dir=t["prepared"],
                     out_model=tmp / "m.pt", out_dir=tmp / "res", device="cpu")
    return {"params": params, "metrics": m, "model": tmp / "m.pt", **t}


def test_evaluate_reproduces_training_metrics(run):
    m = evaluate_checkpoint(run["params"], run["model"], "digits-test", prepared_dir=run["prepared"], device="cpu")
    assert m["n_test"] == 300  # the same seeded stratified subset (tasks.digits-test.max_test)
    assert {k: m[k] for k in SAME} == {k: run["metrics"][k] for k in SAME}
    json.dumps(m)


def test_logit_bias_is_applied(run, tmp_path):
    ckpt = load_torch(run["model"])
    bias = torch.zeros(10)
    bias[3] = 1e4  # every prediction becomes class 3
    ckpt["logit_bias"] = bias
    save_torch(tmp_path / "biased.pt", ckpt)
    m = evaluate_checkpoint(run["params"], tmp_path / "biased.pt", "digits-test", prepared_dir=run["prepared"],
                            device="cpu")
    cm = np.array(m["confusion_matrix"])
    assert cm[:, 3].sum() == 300 and m["accuracy"] == pytest.approx(cm[3, 3] / 300)


def test_bad_inputs_are_clear_errors(run, tmp_path):
    with pytest.raises(DfgError, match="not found"):
        evaluate_checkpoint(run["params"], tmp_path / "none.pt", "digits-test", prepared_dir=run["prepared"])
    with pytest.raises(DfgError, match="unknown task"):
        evaluate_checkpoint(run["params"], run["model"], "nope")
    save_torch(tmp_path / "junk.pt", {"a": 1})
    with pytest.raises(DfgError, match="not a dfg"):
        evaluate_checkpoint(run["params"], tmp_path / "junk.pt", "digits-test", prepared_dir=run["prepared"])
