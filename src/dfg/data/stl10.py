"""STL-10, binary version: stl10_binary.tar.gz with stl10_binary/{train,test}_X.bin (uint8, each image
3x96x96 in column-major order, channel-planar), {train,test}_y.bin (uint8 labels 1..10),
class_names.txt, and 100 000 unlabeled images that we skip while streaming the archive.

Prepared: resized to 32x32 (antialiased bicubic), 3 channels, labels 0..9 (method.md §4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.imageops import resize_batch
from dfg.data.prepared import write_arrays
from dfg.data.rawio import iter_tar, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.STL10: URL and MD5 of the archive.
ARCHIVE = "stl10_binary.tar.gz"
FILES = (RemoteFile(ARCHIVE, ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                    md5="91f7769df0f17e558f3565bffb0c7dfb"),)
FOLDER = "stl10_binary"
NATIVE = 96
SIDE = 32
CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
MEMBERS = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")


def decode_images(data: bytes, where: str) -> np.ndarray:
    """STL-10 binary images -> [N, 96, 96, 3] uint8 (rows, columns, RGB)."""
    per = 3 * NATIVE * NATIVE
    if len(data) % per:
        raise DfgError(f"{where}: {len(data)} bytes is not a whole number of 3x96x96 images; fetch again")
    # Column-major within each channel: the stored axes are (image, channel, column, row).
    return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(-1, 3, NATIVE, NATIVE).transpose(0, 3, 2, 1))


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    (archive,) = require(raw_dir, ARCHIVE)
    found: dict[str, bytes] = {}
    for name, read in iter_tar(archive):
        if name.parent.name == FOLDER and name.name in MEMBERS:
            found[name.name] = read()
    missing = [m for m in MEMBERS if m not in found]
    if missing:
        raise DfgError(f"{archive} lacks {', '.join(missing)}; is it the official file? fetch it again")
    splits = []
    for split in ("train", "test"):
        x = decode_images(found[f"{split}_X.bin"], f"{archive}:{split}_X.bin")
        y = np.frombuffer(found[f"{split}_y.bin"], np.uint8).astype(np.int64) - 1  # 1..10 -> 0..9
        if len(y) != len(x):
            raise DfgError(f"{archive}: {split} has {len(x)} images but {len(y)} labels; fetch it again")
        splits.append((resize_batch(x, SIDE), y))
    write_arrays(out_dir, spec, splits[0], splits[1])


SPEC = register(DatasetSpec(
    name="stl10", num_classes=10, classes=CLASSES, files=FILES,
    mirror_dirs=("stl10", "stl10_binary"), image_size=SIDE, channels=3,
    native_format="tar.gz of raw uint8 arrays: 5 000 train + 8 000 test 3x96x96 column-major, labels 1..10",
    prepare_fn=prepare, download_mb=2640, homepage="https://cs.stanford.edu/~acoates/stl10/",
))
