"""Damaged and foreign files where a checkpoint is expected (`dfg evaluate`, --source, --init-run, a resume
checkpoint, fetched weights): one message naming the file, what is wrong and what to do, never a
traceback and never torch's advice to load with weights_only=False (which would let the file run code)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from dfg import DfgError
from dfg.evaluate import evaluate_checkpoint
from dfg.train import resume_path_for, run_training
from dfg.utils.io import load_torch
from loop_fixtures import digits_task_with_source, make_params


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict:
    t = digits_task_with_source(tmp_path_factory.mktemp("digits"))
    out = tmp_path_factory.mktemp("run")
    run_training(make_params(steps=20), "digits-test", "finetune", 0, split_file=t["split"], prepared_dir=t["prepared"],
                 source_file=t["source"], out_model=out / "run.pt", out_dir=out / "res", device="cpu")
    t["run"] = out / "run.pt"
    return t


def bad_files(good: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the message must say is wrong)."""
    data = good.read_bytes()
    truncated = tmp / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    corrupted = tmp / "corrupted.pt"
    mid = len(data) // 2
    corrupted.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 4096]) + data[mid + 4096:])
    empty = tmp / "empty.pt"
    empty.write_bytes(b"")
    text = tmp / "notes.pt"
    text.write_text(json.dumps({"net": "not weights"}))
    pickled = tmp / "objects.pt"
    torch.save({"net": {}, "args": argparse.Namespace(lr=1)}, pickled)  # a Python object weights_only refuses
    plain = tmp / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)  # a real PyTorch file, not one of ours
    return {"truncated": (truncated, "truncated or corrupted"), "corrupted": (corrupted, "corrupted"),
            "empty": (empty, "is empty"), "text": (text, "not a PyTorch checkpoint"),
            "objects": (pickled, "holds Python objects"), "plain": (plain, "not a dfg")}


def check(message: str, path: Path, wrong: str, fix: str) -> None:
    assert str(path) in message and wrong in message and fix in message, message
    assert "weights_only" not in message and "Traceback" not in message
    assert "\n" not in message  # one message


@pytest.mark.parametrize("case", ["truncated", "corrupted", "empty", "text", "objects", "plain"])
def test_evaluate_turns_away_a_bad_checkpoint(task, tmp_path, case):
    path, wrong = bad_files(task["run"], tmp_path)[case]
    with pytest.raises(DfgError) as e:
        evaluate_checkpoint(make_params(), path, "digits-test", prepared_dir=task["prepared"], device="cpu")
    check(str(e.value), path, wrong, "pass a run model")


@pytest.mark.parametrize("case", ["truncated", "corrupted", "text", "objects", "plain"])
def test_train_turns_away_a_bad_source_model(task, tmp_path, case):
    path, wrong = bad_files(task["source"], tmp_path)[case]
    with pytest.raises(DfgError) as e:
        run_training(make_params(steps=5), "digits-test", "finetune", 0, split_file=task["split"],
                     prepared_dir=task["prepared"], source_file=path, out_model=tmp_path / "m.pt",
                     out_dir=tmp_path / "r", device="cpu")
    check(str(e.value), path, wrong, "or pass --source FILE")


def test_a_source_of_another_architecture_is_refused_not_silently_skipped(task, tmp_path):
    from dfg.models import build_backbone

    other = tmp_path / "other.pt"
    net = build_backbone("lenet5", 10)
    state = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) for k, v in net.state_dict().items()}  # no shape fits
    torch.save({"kind": "source", "backbone": "lenet5", "net": state}, other)
    with pytest.raises(DfgError, match=r"tensors do not fit this lenet5"):
        run_training(make_params(steps=5), "digits-test", "finetune", 0, split_file=task["split"],
                     prepared_dir=task["prepared"], source_file=other, out_model=tmp_path / "m.pt",
                     out_dir=tmp_path / "r", device="cpu")


@pytest.mark.parametrize("case", ["truncated", "objects", "plain"])
def test_a_bad_init_run_is_turned_away(task, tmp_path, case):
    path, wrong = bad_files(task["run"], tmp_path)[case]
    with pytest.raises(DfgError) as e:
        run_training(make_params(steps=5), "digits-test", "crt", 0, split_file=task["split"],
                     prepared_dir=task["prepared"], source_file=task["source"], init_run=path,
                     out_model=tmp_path / "m.pt", out_dir=tmp_path / "r", device="cpu")
    check(str(e.value), path, wrong, "or pass --init-run FILE")


@pytest.mark.parametrize("case", ["truncated", "corrupted", "objects", "plain"])
def test_a_bad_resume_checkpoint_is_turned_away(task, tmp_path, case):
    out = tmp_path / "m.pt"
    resume = resume_path_for(out)
    path, wrong = bad_files(task["run"], tmp_path)[case]
    resume.write_bytes(path.read_bytes())
    with pytest.raises(DfgError) as e:
        run_training(make_params(steps=5), "digits-test", "finetune", 0, split_file=task["split"],
                     prepared_dir=task["prepared"], source_file=task["source"], out_model=out,
                     out_dir=tmp_path / "r", device="cpu")
    check(str(e.value), resume, wrong if case != "plain" else "not a dfg resume checkpoint",
          "delete it to start the run afresh")


def test_a_good_checkpoint_still_loads(task):
    assert load_torch(task["run"])["kind"] == "run"
