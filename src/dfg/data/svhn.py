"""SVHN (cropped digits): train_32x32.mat / test_32x32.mat, MATLAB v5 files with X [32, 32, 3, N] uint8
and y [N, 1] in 1..10, where label 10 stands for the digit 0.

Prepared: grayscale 32x32 (ITU-R 601 luma, as PIL's 'L'), label 10 -> 0 (method.md §4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.imageops import luma
from dfg.data.prepared import write_arrays
from dfg.data.rawio import require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.SVHN: URLs and MD5s.
BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
FILES = (
    RemoteFile("train_32x32.mat", (BASE_URL + "train_32x32.mat",), md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
    RemoteFile("test_32x32.mat", (BASE_URL + "test_32x32.mat",), md5="eb5a983be6a315427106f1b164d9cef3"),
)
ZERO_LABEL = 10  # SVHN's label for the digit 0


def read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 32, 32, 3] uint8, labels 0..9) of one SVHN .mat file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except (ValueError, OSError, TypeError) as e:
        raise DfgError(f"{path} is truncated or corrupt ({e}); delete it and run `dfg fetch svhn` again") from None
    if "X" not in mat or "y" not in mat or mat["X"].ndim != 4 or mat["X"].shape[2] != 3:
        raise DfgError(f"{path} lacks SVHN's X [32, 32, 3, N] / y [N, 1]; is it the official file?")
    x = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2)).astype(np.uint8, copy=False)
    y = mat["y"].reshape(-1).astype(np.int64)
    y[y == ZERO_LABEL] = 0
    return x, y


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    train_path, test_path = require(raw_dir, "train_32x32.mat", "test_32x32.mat")
    (xtr, ytr), (xte, yte) = read_mat(train_path), read_mat(test_path)
    write_arrays(out_dir, spec, (luma(xtr), ytr), (luma(xte), yte))


SPEC = register(DatasetSpec(
    name="svhn", num_classes=10, classes=tuple("0123456789"), files=FILES,
    mirror_dirs=("svhn",), image_size=32, channels=1,
    native_format="MATLAB .mat: X [32, 32, 3, N] uint8 RGB, y [N, 1] in 1..10 (10 = digit 0); 73 257 + 26 032",
    prepare_fn=prepare, download_mb=246, homepage="http://ufldl.stanford.edu/housenumbers/",
))
