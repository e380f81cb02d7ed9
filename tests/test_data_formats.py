"""Every downloadable dataset, end to end on tiny FABRICATED files in its exact official format:
mirror folder -> `fetch` (checksum-verified copy) -> `prepare` -> the prepared format of
docs/architecture.md, with pixel- and label-level checks of each format's quirks (EMNIST transposed,
SVHN's label 10, STL-10 column-major, CIFAR channel planes, folder trees, official lists)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfg.config import load_params
from dfg.data.imageops import luma, resize_batch
from dfg.data.prepare import prepare_dataset
from dfg.data.prepared import load_arrays, load_index, load_meta
from dfg.data.registry import DATASETS, DatasetSpec, RemoteFile

ROOT = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port: nothing listens, so a download would fail at once


@pytest.fixture
def params(tmp_path: Path) -> dict:
    p = load_params(ROOT / "params.yaml", semantic=False)
    p["data"]["root"] = str(tmp_path / "data")
    p["fetch"].update(mirrors=[str(tmp_path / "mirror")], retries=1, timeout_s=2)
    return p


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def in_mirror(tmp_path: Path, name: str, files: dict[str, bytes]) -> DatasetSpec:
    """Place fabricated files in the mirror; return the registry spec pointed at their checksums."""
    spec = DATASETS.get(name)
    folder = tmp_path / "mirror" / spec.mirror_dirs[0]
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    assert [f.name for f in spec.files] == list(files), "fabricated file names must be the official ones"
    return spec.with_files([RemoteFile(n, (CLOSED_PORT_URL + n,), md5=md5(d)) for n, d in files.items()])


def fetch_prepare(spec: DatasetSpec, params: dict, tmp_path: Path) -> Path:
    raw = tmp_path / "data" / "raw" / spec.name
    spec.fetch(raw, params)
    manifest = json.loads((raw / "fetched.json").read_text())
    assert [r["file"] for r in manifest["files"]] == [f.name for f in spec.files]
    assert all(r["source"].startswith(str(tmp_path / "mirror")) for r in manifest["files"])
    out = tmp_path / "data" / "prepared" / spec.name
    prepare_dataset(spec, raw, out, params)
    return out


def idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def rng_images(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_fashion_mnist_idx_gz(tmp_path, params):
    xtr, xte = rng_images(0, 6, 28, 28), rng_images(1, 4, 28, 28)
    ytr, yte = np.array([9, 0, 0, 3, 0, 2]), np.array([1, 2, 3, 4])
    files = {"train-images-idx3-ubyte.gz": gzip.compress(idx(xtr)), "train-labels-idx1-ubyte.gz": gzip.compress(idx(ytr)),
             "t10k-images-idx3-ubyte.gz": gzip.compress(idx(xte)), "t10k-labels-idx1-ubyte.gz": gzip.compress(idx(yte))}
    out = fetch_prepare(in_mirror(tmp_path, "fashion-mnist", files), params, tmp_path)
    x, y = load_arrays(out, "train")
    assert x.shape == (6, 32, 32, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], xtr)  # padded 2 px each side
    assert x[:, :2].max() == 0 and x[:, 30:].max() == 0 and x[:, :, :2].max() == 0
    assert y.tolist() == [9, 0, 0, 3, 0, 2]
    meta = load_meta(out)
    assert (meta["n_train"], meta["n_test"], meta["image_size"], meta["channels"]) == (6, 4, 32, 1)
    assert meta["classes"][9] == "Ankle boot" and meta["format"] == "array"
    assert meta["sha256"]["train_x.npy"] == hashlib.sha256((out / "train_x.npy").read_bytes()).hexdigest()


def test_emnist_gzip_zip_bundle_is_transposed_back(tmp_path, params):
    true_tr, true_te = rng_images(2, 5, 28, 28), rng_images(3, 3, 28, 28)
    ytr, yte = np.array([0, 1, 2, 3, 9]), np.array([7, 8, 9])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split, x, y in (("train", true_tr, ytr), ("test", true_te, yte)):
            zf.writestr(f"gzip/emnist-digits-{split}-images-idx3-ubyte.gz", gzip.compress(idx(x.transpose(0, 2, 1))))
            zf.writestr(f"gzip/emnist-digits-{split}-labels-idx1-ubyte.gz", gzip.compress(idx(y)))
        zf.writestr("gzip/emnist-letters-train-labels-idx1-ubyte.gz", gzip.compress(idx(np.array([1]))))
    out = fetch_prepare(in_mirror(tmp_path, "emnist", {"gzip.zip": buf.getvalue()}), params, tmp_path)
    x, y = load_arrays(out, "test")
    np.testing.assert_array_equal(x[:, 2:30, 2:30, 0], true_te)
    assert y.tolist() == [7, 8, 9] and load_meta(out)["n_train"] == 5


def test_svhn_mat_grayscale_and_label_ten(tmp_path, params):
    import scipy.io

    def mat(seed: int, labels: list[int]) -> bytes:
        x = rng_images(seed, 32, 32, 3, len(labels))  # SVHN's layout: [H, W, C, N]
        buf = io.BytesIO()
        scipy.io.savemat(buf, {"X": x, "y": np.array(labels, dtype=np.uint8)[:, None]})
        return buf.getvalue()

    files = {"train_32x32.mat": mat(4, [10, 1, 5, 10]), "test_32x32.mat": mat(5, [3, 10])}
    out = fetch_prepare(in_mirror(tmp_path, "svhn", files), params, tmp_path)
    x, y = load_arrays(out, "train")
    assert x.shape == (4, 32, 32, 1) and y.tolist() == [0, 1, 5, 0]
    rgb = rng_images(4, 32, 32, 3, 4)[..., 1]
    np.testing.assert_array_equal(x[1, :, :, 0], np.asarray(Image.fromarray(rgb).convert("L")))
    assert load_arrays(out, "test")[1].tolist() == [3, 0]


def _cifar_batch(seed: int, labels: list[int]) -> tuple[bytes, np.ndarray]:
    imgs = rng_images(seed, len(labels), 32, 32, 3)
    data = imgs.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # 1024 R, then G, then B, row-major
    batch = {"batch_label": "fabricated", "labels": labels, "data": data, "filenames": ["x.png"] * len(labels)}
    return pickle.dumps(batch, protocol=2), imgs


def test_cifar10_pickled_batches(tmp_path, params):
    members, train_imgs = {}, []
    for i in range(1, 6):
        data, imgs = _cifar_batch(10 + i, [i, i + 1])
        members[f"cifar-10-batches-py/data_batch_{i}"] = data
        train_imgs.append(imgs)
    members["cifar-10-batches-py/test_batch"], test_imgs = _cifar_batch(20, [9, 0, 4])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": names, "num_vis": 3072}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    out = fetch_prepare(in_mirror(tmp_path, "cifar10", {"cifar-10-python.tar.gz": tar_bytes(members)}), params, tmp_path)
    x, y = load_arrays(out, "train")
    np.testing.assert_array_equal(x, np.concatenate(train_imgs))
    assert y.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    xt, yt = load_arrays(out, "test")
    np.testing.assert_array_equal(xt, test_imgs)
    assert yt.tolist() == [9, 0, 4] and load_meta(out)["classes"] == names


def test_cifar10_refuses_a_pickle_that_runs_code(tmp_path, params):
    from dfg import DfgError

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    members = {f"cifar-10-batches-py/data_batch_{i}": pickle.dumps({"data": Evil()}) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = pickle.dumps({"data": Evil()})
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({"label_names": []})
    spec = in_mirror(tmp_path, "cifar10", {"cifar-10-python.tar.gz": tar_bytes(members)})
    with pytest.raises(DfgError, match="not a readable CIFAR batch"):
        fetch_prepare(spec, params, tmp_path)
    assert not (tmp_path / "data" / "prepared" / "cifar10").exists()


def test_stl10_binary_column_major(tmp_path, params):
    true = rng_images(6, 3, 96, 96, 3)
    true[0, :, :48] = 255  # left half white, right half black: orientation survives the resize
    true[0, :, 48:] = 0
    stored = true.transpose(0, 3, 2, 1).tobytes()  # (image, channel, column, row)
    test_true = rng_images(7, 2, 96, 96, 3)
    members = {"stl10_binary/train_X.bin": stored, "stl10_binary/train_y.bin": bytes([1, 10, 5]),
               "stl10_binary/unlabeled_X.bin": rng_images(8, 1, 3, 96, 96).tobytes(),
               "stl10_binary/test_X.bin": test_true.transpose(0, 3, 2, 1).tobytes(),
               "stl10_binary/test_y.bin": bytes([2, 3]), "stl10_binary/class_names.txt": b"airplane\n"}
    out = fetch_prepare(in_mirror(tmp_path, "stl10", {"stl10_binary.tar.gz": tar_bytes(members)}), params, tmp_path)
    x, y = load_arrays(out, "train")
    assert x.shape == (3, 32, 32, 3) and y.tolist() == [0, 9, 4]
    np.testing.assert_array_equal(x, resize_batch(true, 32))
    assert x[0, :, :15].min() == 255 and x[0, :, 17:].max() == 0
    assert load_arrays(out, "test")[1].tolist() == [1, 2]


def test_cinic10_folder_tree(tmp_path, params):
    classes = DATASETS.get("cinic10").classes
    members, expect = {}, {"train": [], "test": []}
    for split in ("train", "valid", "test"):
        for label in (3, 0):  # archive order is not label order: prepare sorts
            for k in (2, 1):
                img = np.full((32, 32, 3), 10 * label + k, dtype=np.uint8)
                members[f"./{split}/{classes[label]}/cifar10-{split}-{k}.png"] = encode(img, "PNG")
                if split != "valid":
                    expect[split].append((label, k))
    gray = np.full((32, 32), 77, dtype=np.uint8)  # some CINIC-10 images are grayscale PNGs
    members["./train/truck/n02701002_1.png"] = encode(gray, "PNG")
    out = fetch_prepare(in_mirror(tmp_path, "cinic10", {"CINIC-10.tar.gz": tar_bytes(members)}), params, tmp_path)
    x, y = load_arrays(out, "train")
    assert y.tolist() == [0, 0, 3, 3, 9]
    assert x[:, 0, 0, 0].tolist() == [1, 2, 31, 32, 77] and x.shape == (5, 32, 32, 3)
    assert load_meta(out)["n_test"] == 4


def test_caltech256_tar_seeded_split(tmp_path, params):
    members = {}
    for c in range(1, 258):
        folder = "257.clutter" if c == 257 else f"{c:03d}.{'ak47' if c == 1 else f'class{c}'}"
        for k in range(1, 5 if c == 257 else 4):
            members[f"256_ObjectCategories/{folder}/{c:03d}_{k:04d}.jpg"] = encode(
                np.full((12, 20, 3), c % 256, dtype=np.uint8), "JPEG")
    members["256_ObjectCategories/198.class198/RENAME2"] = b"stray file in the official archive"
    params["prepare"].update(image_size=16, caltech256={"train_per_class": 2, "test_per_class": 1, "seed": 3})
    spec = in_mirror(tmp_path, "caltech256", {"256_ObjectCategories.tar": tar_bytes(members, mode="w")})
    out = fetch_prepare(spec, params, tmp_path)
    meta = load_meta(out)
    assert meta["format"] == "files" and meta["num_classes"] == 257 and meta["image_size"] == 16
    assert meta["classes"][0] == "ak47" and meta["classes"][256] == "clutter"
    paths, y = load_index(out, "train")
    assert len(paths) == 2 * 257 and np.bincount(y).tolist() == [2] * 257
    tpaths, ty = load_index(out, "test")
    assert len(tpaths) == 257 and ty.tolist() == list(range(257)) and not set(paths) & set(tpaths)
    img = Image.open(paths[0])
    assert img.size == (16, 16) and img.mode == "RGB"
    # the draw is seeded: the same seed gives the same images, another seed (eventually) others
    again = tmp_path / "again"
    prepare_dataset(spec, tmp_path / "data" / "raw" / "caltech256", again, params)
    assert [p.name for p in load_index(again, "train")[0]] == [p.name for p in paths]


def test_food101_official_lists(tmp_path, params):
    classes = [f"food_{i:03d}" for i in range(101)]
    classes[0] = "apple_pie"
    members = {"food-101/meta/classes.txt": ("\n".join(classes) + "\n").encode()}
    train, test = [], []
    for i, c in enumerate(classes):
        for k in range(3):
            members[f"food-101/images/{c}/{1000 + k}.jpg"] = encode(np.full((30, 40, 3), i, np.uint8), "JPEG")
            (test if k == 2 else train).append(f"{c}/{1000 + k}")
    members["food-101/meta/train.txt"] = ("\n".join(train) + "\n").encode()
    members["food-101/meta/test.txt"] = ("\n".join(test) + "\n").encode()
    members["food-101/README.txt"] = b"Food-101"
    params["prepare"]["image_size"] = 24
    out = fetch_prepare(in_mirror(tmp_path, "food101", {"food-101.tar.gz": tar_bytes(members)}), params, tmp_path)
    paths, y = load_index(out, "train")
    assert len(paths) == 202 and y[:2].tolist() == [0, 0] and y[-1] == 100
    assert paths[0] == out / "images" / "apple_pie" / "1000.jpg" and Image.open(paths[0]).size == (24, 24)
    tp, ty = load_index(out, "test")
    assert len(tp) == 101 and ty.tolist() == list(range(101))
    assert load_meta(out)["classes"] == classes


def test_luma_matches_pil():
    rgb = rng_images(9, 4, 8, 8, 3)
    pil = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])
    np.testing.assert_array_equal(luma(rgb)[..., 0], pil)


def test_registry_names_and_real_checksums():
    assert DATASETS.names() == sorted(["emnist", "svhn", "fashion-mnist", "cifar10", "stl10", "cinic10",
                                       "caltech256", "food101", "synthdigits", "sklearn-digits", "mnist5k"])
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        assert spec.num_classes >= 10 and (not spec.classes or len(spec.classes) == spec.num_classes)
        assert all(f.urls and f.urls[0].startswith("http") for f in spec.files)
    assert DATASETS.get("caltech256").num_classes == 257 and DATASETS.get("food101").num_classes == 101
    # torchvision's values stay in the real entries (tests only override copies)
    assert DATASETS.get("svhn").files[0].md5 == "e26dedcc434d2e4c54c9b2d4a06d8373"
    assert DATASETS.get("cifar10").files[0].md5 == "c58f30108f718f92721af3b95e74349a"


def test_archive_member_escaping_the_folder_is_refused(tmp_path, params):
    from dfg import DfgError

    png = encode(np.zeros((32, 32, 3), np.uint8), "PNG")
    spec = in_mirror(tmp_path, "cinic10", {"CINIC-10.tar.gz": tar_bytes({"train/cat/../../../../evil.png": png})})
    with pytest.raises(DfgError, match="unsafe member name"):
        fetch_prepare(spec, params, tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../gzip/emnist-digits-train-images-idx3-ubyte.gz", b"")
    with pytest.raises(DfgError, match="unsafe member name"):
        fetch_prepare(in_mirror(tmp_path, "emnist", {"gzip.zip": buf.getvalue()}), params, tmp_path)
    assert not (tmp_path / "evil.png").exists()
    assert sorted(p.name for p in (tmp_path / "data" / "prepared").iterdir()) == []


def test_corrupt_image_in_food101_fails_clean(tmp_path, params):
    from dfg import DfgError

    members = {"food-101/meta/classes.txt": b"apple_pie\n", "food-101/meta/train.txt": b"apple_pie/1\n",
               "food-101/meta/test.txt": b"apple_pie/2\n",
               "food-101/images/apple_pie/1.jpg": encode(np.zeros((8, 8, 3), np.uint8), "JPEG"),
               "food-101/images/apple_pie/2.jpg": b"\xff\xd8 not really a jpeg"}
    spec = in_mirror(tmp_path, "food101", {"food-101.tar.gz": tar_bytes(members)})
    with pytest.raises(DfgError, match=r"images/apple_pie/2.jpg is not a readable image"):
        fetch_prepare(spec, params, tmp_path)
    assert sorted(p.name for p in (tmp_path / "data" / "prepared").iterdir()) == []
