"""Caltech-256: 256_ObjectCategories.tar (uncompressed) with 256_ObjectCategories/<NNN>.<name>/<NNN>_<k>.jpg
for 257 classes (256 objects + 257.clutter, which the protocol keeps), at least 80 images each.

The dataset has no official split: the protocol draws 60 train / 20 test images per class. We draw them
with a seeded permutation of each class's sorted file names (params prepare.caltech256), resize the
drawn images to prepare.image_size² (squashed, antialiased) and store them as JPEGs with an index.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from dfg import DfgError
from dfg.data.imageops import JpegWriter
from dfg.data.prepared import write_index
from dfg.data.rawio import check_member, read_member, reading, require
from dfg.data.registry import DatasetSpec, RemoteFile, register

# torchvision.datasets.Caltech256: URL and MD5 of the archive.
ARCHIVE = "256_ObjectCategories.tar"
FILES = (RemoteFile(ARCHIVE, ("https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",),
                    md5="67b4f42ca05d46448c6bb8ecd2220f6d"),)
NUM_CLASSES = 257
CLASS_DIR = re.compile(r"^(\d{3})\.(.+)$")  # 001.ak47 ... 257.clutter


def draw_split(files_by_class: dict[int, list[str]], n_train: int, n_test: int, seed: int
               ) -> dict[str, list[tuple[str, int]]]:
    """Seeded per-class draw: class by class in label order, a permutation of the sorted file names."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label in sorted(files_by_class):
        names = sorted(files_by_class[label])
        if len(names) < n_train + n_test:
            raise DfgError(f"caltech256 class {label + 1:03d} has {len(names)} images, fewer than "
                           f"prepare.caltech256 train_per_class + test_per_class = {n_train + n_test}")
        perm = rng.permutation(len(names))
        rows["train"] += [(names[i], label) for i in sorted(perm[:n_train])]
        rows["test"] += [(names[i], label) for i in sorted(perm[n_train:n_train + n_test])]
    return rows


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    (archive,) = require(raw_dir, ARCHIVE)
    p = params["prepare"]
    cfg, size, quality = p["caltech256"], p["image_size"], p["jpeg_quality"]
    with reading(archive), tarfile.open(archive, mode="r:*") as tar:
        members: dict[str, tarfile.TarInfo] = {}
        classes: dict[int, str] = {}
        files_by_class: dict[int, list[str]] = {}
        for info in tar.getmembers():
            name = check_member(info.name, archive)
            if not info.isfile() or len(name.parts) < 2 or name.suffix.lower() != ".jpg":
                continue
            m = CLASS_DIR.match(name.parts[-2])
            if m is None:
                continue
            label = int(m.group(1)) - 1
            classes[label] = m.group(2)
            files_by_class.setdefault(label, []).append(str(name))
            members[str(name)] = info
        if sorted(classes) != list(range(NUM_CLASSES)):
            raise DfgError(f"{archive} has {len(classes)} class folders NNN.name, expected {NUM_CLASSES} "
                           "(001 ... 257.clutter); is it the official archive?")
        rows = draw_split(files_by_class, cfg["train_per_class"], cfg["test_per_class"], cfg["seed"])
        index: dict[str, list[tuple[str, int]]] = {}
        with JpegWriter(size, quality) as writer:
            for split, pairs in rows.items():
                index[split] = []
                for member, label in pairs:
                    rel = PurePosixPath("images", f"{label + 1:03d}", PurePosixPath(member).stem + ".jpg")
                    writer.submit(read_member(tar, members[member]), f"{archive}:{member}", out_dir / rel)
                    index[split].append((str(rel), label))
    names = [classes[i] for i in range(NUM_CLASSES)]
    write_index(out_dir, spec, names, index, extra={"image_size": size, "split": dict(cfg)})


SPEC = register(DatasetSpec(
    name="caltech256", num_classes=NUM_CLASSES, classes=(), files=FILES,
    mirror_dirs=("caltech256", "caltech-256"), image_size=256, channels=3,
    native_format="tar of JPEG folders NNN.name/NNN_k.jpg, 257 classes incl. clutter, >= 80 images each",
    prepare_fn=prepare, download_mb=1183, homepage="https://data.caltech.edu/records/nyy15-4j048",
))
