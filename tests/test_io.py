"""Atomic writes: a failed write leaves neither the target nor a temp file."""

import numpy as np
import pytest

from dfg.utils.io import atomic_path, load_torch, save_numpy, save_torch, write_json


def test_save_numpy_roundtrip_and_no_stray_files(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    save_numpy(tmp_path / "a.npy", arr)
    assert np.array_equal(np.load(tmp_path / "a.npy"), arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_failed_write_leaves_nothing_and_keeps_old_content(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_torch_roundtrip_weights_only(tmp_path):
    import torch

    save_torch(tmp_path / "c.pt", {"w": torch.ones(2), "n": 3, "s": "x"})
    out = load_torch(tmp_path / "c.pt")
    assert out["n"] == 3 and out["s"] == "x" and torch.equal(out["w"], torch.ones(2))


def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    import os

    write_json(tmp_path / "x.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
