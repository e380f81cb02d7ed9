"""`dfg fetch-weights`: torchvision's ResNet-50 file through the mirror path, verified by the sha256
prefix in its name, converted into a source checkpoint whose SplitNet computes what torchvision's does."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from dfg import DfgError
from dfg.config import load_params
from dfg.data.registry import RemoteFile
from dfg.models import build_backbone
from dfg.models import weights as W
from dfg.utils.io import load_torch

ROOT = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "http://127.0.0.1:9/"


@pytest.fixture
def params(tmp_path: Path, monkeypatch) -> dict:
    p = load_params(ROOT / "params.yaml", semantic=False)
    p["data"]["root"] = str(tmp_path / "data")
    p["fetch"].update(mirrors=[str(tmp_path / "mirror")], retries=1, timeout_s=2)
    monkeypatch.setattr(W, "torch_hub_checkpoints", lambda: tmp_path / "no-hub-cache")
    return p


def test_real_entry_is_torchvisions_v1_file():
    spec = W.WEIGHTS.get("resnet50-imagenet")
    assert spec.file.name == "resnet50-0676ba61.pth" and spec.file.sha256_prefix == "0676ba61"
    assert spec.file.urls == ("https://download.pytorch.org/models/resnet50-0676ba61.pth",)
    meta = spec.load_meta()
    assert meta["num_classes"] == 1000 and meta["test_accuracy"] == pytest.approx(0.7613)


@pytest.mark.parametrize("saved_by", ["modern", "pre-0.4.1"])
def test_fabricated_weights_via_mirror_become_an_equivalent_source_model(tmp_path, params, saved_by):
    """Also in the form of the real resnet50-0676ba61.pth (saved in 2017): a plain dict of tensors without
    BatchNorm's num_batches_tracked entries, which torchvision's loader accepts."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    with torch.no_grad():  # non-trivial running statistics, so that a dropped buffer would show
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    mirror = tmp_path / "mirror" / "weights"
    mirror.mkdir(parents=True)
    name = "resnet50-0676ba61.pth"  # the official name; its checksum is overridden for the fake below
    state = reference.state_dict()
    if saved_by == "pre-0.4.1":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # no _metadata either
        assert len(state) == 267  # 53 BatchNorm counters fewer than the 320 entries a save has today
    torch.save(state, mirror / name)
    digest = hashlib.sha256((mirror / name).read_bytes()).hexdigest()
    spec = dataclasses.replace(W.WEIGHTS.get("resnet50-imagenet"),
                               file=RemoteFile(name, (CLOSED_PORT_URL + name,), sha256_prefix=digest[:8]))
    out = tmp_path / "models" / "source" / "resnet50-imagenet.pt"
    info = W.fetch_weights(params, "resnet50-imagenet", out=out, spec=spec)
    assert (tmp_path / "data" / "raw" / "weights" / "resnet50-imagenet" / name).is_file()
    ckpt = load_torch(out)
    assert ckpt["kind"] == "source" and ckpt["backbone"] == "resnet50" and ckpt["num_classes"] == 1000
    assert ckpt["source"] == "resnet50-imagenet" and len(ckpt["classes"]) == 1000 and info["weights"] == spec.name
    assert torch.equal(ckpt["net"]["C.layer2.0.conv1.weight"], reference.state_dict()["layer2.0.conv1.weight"])
    net = build_backbone("resnet50", 1000).eval()
    net.load_state_dict(ckpt["net"], strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.C(net.F(x)), reference(x))


def test_weights_checksum_mismatch_and_offline_leave_nothing(tmp_path, params):
    mirror = tmp_path / "mirror" / "weights"
    mirror.mkdir(parents=True)
    (mirror / "resnet50-0676ba61.pth").write_bytes(b"not the published file")
    spec = dataclasses.replace(W.WEIGHTS.get("resnet50-imagenet"),
                               file=dataclasses.replace(W.WEIGHTS.get("resnet50-imagenet").file,
                                                        urls=(CLOSED_PORT_URL + "resnet50-0676ba61.pth",)))
    out = tmp_path / "models" / "source" / "resnet50-imagenet.pt"
    with pytest.raises(DfgError, match=r"cannot download resnet50-imagenet .*resnet50-0676ba61.pth"):
        W.fetch_weights(params, "resnet50-imagenet", out=out, spec=spec)
    assert not out.exists() and list((tmp_path / "data" / "raw" / "weights" / "resnet50-imagenet").iterdir()) == []


def test_source_without_weights_is_a_clear_error(params):
    with pytest.raises(DfgError, match="names no `weights`; train it with `dfg pretrain lenet5-synthdigits`"):
        W.fetch_weights(params, "lenet5-synthdigits")
    with pytest.raises(DfgError, match="unknown source 'nope'"):
        W.fetch_weights(params, "nope")
