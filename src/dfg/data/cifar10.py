"""CIFAR-10, python version: cifar-10-python.tar.gz with cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}, each a pickled dict with 'data' [10000, 3072] uint8 (1024 R, 1024 G, 1024 B,
row-major) and 'labels'. Read from the archive with a pickle loader that only accepts arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.prepared import write_arrays
from dfg.data.rawio import iter_tar, load_array_pickle, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.CIFAR10: URL and MD5 of the archive.
ARCHIVE = "cifar-10-python.tar.gz"
FILES = (RemoteFile(ARCHIVE, ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                    md5="c58f30108f718f92721af3b95e74349a"),)
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SIDE = 32


def _to_images(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(batch.get("data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE or "labels" not in batch:
        raise DfgError(f"{where}: not a CIFAR-10 batch (data {data.dtype}{data.shape}); fetch the archive again")
    x = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(batch["labels"], dtype=np.int64)


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    (archive,) = require(raw_dir, ARCHIVE)
    wanted = {f"{FOLDER}/{b}" for b in (*TRAIN_BATCHES, TEST_BATCH, "batches.meta")}
    batches: dict[str, dict] = {}
    for name, read in iter_tar(archive):
        if str(name) in wanted:
            batches[name.name] = load_array_pickle(read(), f"{archive}:{name}")
    missing = sorted(w.rsplit("/", 1)[1] for w in wanted if w.rsplit("/", 1)[1] not in batches)
    if missing:
        raise DfgError(f"{archive} lacks {', '.join(missing)}; is it the official file? fetch it again")
    names = tuple(n.decode() if isinstance(n, bytes) else str(n)
                  for n in batches["batches.meta"].get("label_names", CLASSES))
    train = [_to_images(batches[b], f"{archive}:{b}") for b in TRAIN_BATCHES]
    test = _to_images(batches[TEST_BATCH], f"{archive}:{TEST_BATCH}")
    xtr, ytr = np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])
    write_arrays(out_dir, spec, (xtr, ytr), test, classes=names)


SPEC = register(DatasetSpec(
    name="cifar10", num_classes=10, classes=CLASSES, files=FILES,
    mirror_dirs=("cifar10", "cifar-10"), image_size=SIDE, channels=3,
    native_format="tar.gz of 6 pickled batches of 10 000 32x32 RGB images (5 train, 1 test) + batches.meta",
    prepare_fn=prepare, download_mb=170, homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
))
