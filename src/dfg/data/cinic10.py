"""CINIC-10: CINIC-10.tar.gz, a folder tree {train,valid,test}/<class>/<name>.png of 32x32 images
(CIFAR-10 images plus downsampled ImageNet ones; 9 000 per class and split).

The protocol uses the train split (9 000 per class) and the test split; valid is not read. Images are
ordered by (class, file name), so the prepared arrays do not depend on the archive's member order.
The authors publish no checksum: `dfg fetch` records the archive's sha256 in its manifest instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg import DfgError
from dfg.data.cifar10 import CLASSES
from dfg.data.imageops import decode_rgb
from dfg.data.prepared import write_arrays
from dfg.data.rawio import iter_tar, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

ARCHIVE = "CINIC-10.tar.gz"
# No published checksum: `dfg fetch` accepts the archive when it reads as a tar.gz to its end. size=None
# because the archive's size is unverified: third-party code lists 687,544,992 bytes (one repository) and
# md5 6ee4d0c996905fe93221de577967a372 (several), neither published by the authors nor checked by us.
FILES = (RemoteFile(ARCHIVE, ("https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz",),
                    size=None),)
SPLITS = {"train": "train", "test": "test"}  # prepared split -> archive folder
SIDE = 32


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    (archive,) = require(raw_dir, ARCHIVE)
    label_of = {c: i for i, c in enumerate(CLASSES)}
    items: dict[str, list[tuple[int, str, np.ndarray]]] = {s: [] for s in SPLITS}
    folders = {v: k for k, v in SPLITS.items()}
    for name, read in iter_tar(archive):
        parts = name.parts
        if len(parts) < 3 or parts[-3] not in folders or name.suffix.lower() != ".png":
            continue
        split, cls = folders[parts[-3]], parts[-2]
        if cls not in label_of:
            raise DfgError(f"{archive}: unknown class folder {cls!r} in {name}; is it the official archive?")
        img = np.asarray(decode_rgb(read(), f"{archive}:{name}"))
        if img.shape != (SIDE, SIDE, 3):
            raise DfgError(f"{archive}:{name} is {img.shape[1]}x{img.shape[0]}, expected {SIDE}x{SIDE}")
        items[split].append((label_of[cls], name.name, img))
    arrays = []
    for split in SPLITS:
        if not items[split]:
            raise DfgError(f"{archive} has no {split}/<class>/*.png images; is it the official archive?")
        rows = sorted(items[split], key=lambda t: (t[0], t[1]))
        arrays.append((np.stack([r[2] for r in rows]), np.array([r[0] for r in rows], dtype=np.int64)))
    write_arrays(out_dir, spec, arrays[0], arrays[1])


SPEC = register(DatasetSpec(
    name="cinic10", num_classes=10, classes=CLASSES, files=FILES,
    mirror_dirs=("cinic10", "cinic-10", "CINIC-10"), image_size=SIDE, channels=3,
    native_format="tar.gz folder tree {train,valid,test}/<class>/*.png, 32x32 RGB, 90 000 per split",
    prepare_fn=prepare, download_mb=687, homepage="https://github.com/BayesWatch/cinic-10",
))
