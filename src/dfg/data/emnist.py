"""EMNIST, digits split: 240 000 + 40 000 28x28 grayscale digits, from the official `gzip.zip` bundle.

The bundle holds gzip/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte.gz; we read the
digits members straight from the zip. EMNIST stores each image transposed relative to MNIST, so we
transpose back before padding 28 -> 32 like Fashion-MNIST (method.md §4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.imageops import pad_to
from dfg.data.prepared import write_arrays
from dfg.data.rawio import corrupt, parse_idx, read_zip_member, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.EMNIST: URL and MD5 of the bundle.
FILES = (RemoteFile("gzip.zip", ("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",),
                    md5="58c8d27c78d21e728a6bc7b3cc06412e"),)
SPLIT = "digits"
PADDED_SIZE = 32


def _member(raw_zip: Path, split: str, kind: str) -> np.ndarray:
    import gzip
    import zlib

    name = f"gzip/emnist-{SPLIT}-{split}-{kind}-ubyte.gz"
    data = read_zip_member(raw_zip, name)
    try:
        return parse_idx(gzip.decompress(data), f"{raw_zip}:{name}")
    except (OSError, EOFError, zlib.error) as e:
        raise corrupt(raw_zip, f"{name}: {e}") from None


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    (bundle,) = require(raw_dir, "gzip.zip")
    splits = []
    for split in ("train", "test"):
        x = _member(bundle, split, "images-idx3")
        y = _member(bundle, split, "labels-idx1")
        if x.ndim != 3 or len(x) != len(y):
            raise DfgError(f"{bundle}: {split} images {x.shape} and labels {y.shape} do not pair up")
        splits.append((pad_to(np.ascontiguousarray(x.transpose(0, 2, 1)), PADDED_SIZE), y))
    write_arrays(out_dir, spec, splits[0], splits[1])


SPEC = register(DatasetSpec(
    name="emnist", num_classes=10, classes=tuple("0123456789"), files=FILES,
    mirror_dirs=("emnist", "EMNIST/raw"), image_size=PADDED_SIZE, channels=1,
    native_format="gzip.zip bundle of idx .gz files; digits split 240 000 + 40 000, 28x28, stored transposed",
    prepare_fn=prepare, download_mb=562, homepage="https://www.nist.gov/itl/products-and-services/emnist-dataset",
))
