"""Fashion-MNIST: four idx files, gzip-compressed; 60 000 + 10 000 28x28 grayscale images.

Prepared: padded to 32x32 (2 px each side, method.md §4), 1 channel. Debian's `dataset-fashion-mnist`
installs the same four files recompressed under /usr/share/datasets/fashion-mnist/, so each file also
carries the MD5 of its decompressed content (design.md), which is what a mirror copy is checked against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg.data.imageops import pad_to
from dfg.data.prepared import write_arrays
from dfg.data.rawio import parse_idx, read_gz, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.FashionMNIST: mirror URL and the MD5s of the served .gz files.
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", (BASE_URL + "train-images-idx3-ubyte.gz",),
               md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d", content_md5="f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    RemoteFile("train-labels-idx1-ubyte.gz", (BASE_URL + "train-labels-idx1-ubyte.gz",),
               md5="25c81989df183df01b3e8a0aad5dffbe", content_md5="9018921c3c673c538a1fc5bad174d6f9"),
    RemoteFile("t10k-images-idx3-ubyte.gz", (BASE_URL + "t10k-images-idx3-ubyte.gz",),
               md5="bef4ecab320f06d8554ea6380940ec79", content_md5="8181f5470baa50b63fa0f6fddb340f0a"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", (BASE_URL + "t10k-labels-idx1-ubyte.gz",),
               md5="bb300cfdad3c16e7a12a480ee83cd310", content_md5="15d484375f8d13e6eb1aabb0c3f46965"),
)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
PADDED_SIZE = 32  # LeNet-5 input (method.md §4)


def read_idx_pair(raw_dir: Path, images: str, labels: str):
    """(images uint8 [N, 28, 28], labels) of one split from its two idx .gz files."""
    img_path, lab_path = require(raw_dir, images, labels)
    x = parse_idx(read_gz(img_path), str(img_path))
    y = parse_idx(read_gz(lab_path), str(lab_path))
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        from dfg import DfgError

        raise DfgError(f"{img_path} and {lab_path} do not pair up ({x.shape} vs {y.shape}); fetch them again")
    return x, y


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    splits, means = [], []
    for prefix in ("train", "t10k"):
        x, y = read_idx_pair(raw_dir, f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
        splits.append((pad_to(x, PADDED_SIZE), y))
        means.append(float(x.mean(dtype=np.float64) / 255.0))
    # The 28x28 training mean (0.2860 for the official data) is recorded as a provenance check.
    write_arrays(out_dir, spec, splits[0], splits[1], extra={"native_train_mean_pixel": round(means[0], 6)})


SPEC = register(DatasetSpec(
    name="fashion-mnist", num_classes=10, classes=CLASSES, files=FILES,
    mirror_dirs=("fashion-mnist", "FashionMNIST/raw"), image_size=PADDED_SIZE, channels=1,
    native_format="idx3/idx1 ubyte, gzip: 60 000 train + 10 000 test, 28x28 grayscale",
    prepare_fn=prepare, download_mb=30, homepage="https://github.com/zalandoresearch/fashion-mnist",
))
