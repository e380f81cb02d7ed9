"""The prepared-data format (docs/architecture.md): writers used by the dataset modules, readers used by
everything downstream (splits, training, evaluation).

- `format: array` (<= 64 px): train_x.npy uint8 [N, H, W, C], train_y.npy int64 [N], test_x/test_y.
- `format: files` (224-px data): images/ of JPEGs and train.csv / test.csv with columns path,label.
meta.json describes either and records the sha256 of every array / index file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dfg import DfgError
from dfg.utils.io import atomic_path, sha256_file, write_json, write_text

if TYPE_CHECKING:
    from dfg.data.registry import DatasetSpec

META = "meta.json"
SPLITS = ("train", "test")


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save through a file handle (a path not ending in .npy would get '.npy' appended), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _meta(spec: DatasetSpec, fmt: str, classes: Sequence[str], n_train: int, n_test: int,
          hashed: list[Path], extra: dict | None) -> dict:
    if len(classes) != spec.num_classes:
        raise DfgError(f"{spec.name}: found {len(classes)} classes, expected {spec.num_classes}; "
                       "is the raw archive the official one? fetch it again")
    meta = {
        "dataset": spec.name, "format": fmt, "classes": list(classes), "num_classes": spec.num_classes,
        "image_size": spec.image_size, "channels": spec.channels, "n_train": n_train, "n_test": n_test,
        "sha256": {p.name: sha256_file(p) for p in hashed},
    }
    meta.update(extra or {})
    return meta


def write_arrays(out_dir: Path, spec: DatasetSpec, train: tuple[np.ndarray, np.ndarray],
                 test: tuple[np.ndarray, np.ndarray], classes: Sequence[str] | None = None,
                 extra: dict | None = None) -> dict:
    """Check and write an array dataset (uint8 [N, S, S, C] images, labels in [0, K)); return meta."""
    written = []
    for split, (x, y) in zip(SPLITS, (train, test), strict=True):
        shape = (spec.image_size, spec.image_size, spec.channels)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != shape:
            raise AssertionError(f"{spec.name} {split}: images {x.dtype}{x.shape}, expected uint8 [N, *{shape}]")
        y = np.asarray(y, dtype=np.int64)
        if y.shape != (len(x),) or (len(y) and (y.min() < 0 or y.max() >= spec.num_classes)):
            raise DfgError(f"{spec.name} {split}: {len(y)} labels for {len(x)} images or labels outside "
                           f"[0, {spec.num_classes}); the raw files are not the official ones; fetch them again")
        for name, arr in ((f"{split}_x.npy", np.ascontiguousarray(x)), (f"{split}_y.npy", y)):
            save_array(out_dir / name, arr)
            written.append(out_dir / name)
    meta = _meta(spec, "array", classes or spec.classes, len(train[1]), len(test[1]), written, extra)
    write_json(out_dir / META, meta)
    return meta


def write_index(out_dir: Path, spec: DatasetSpec, classes: Sequence[str],
                rows: dict[str, list[tuple[str, int]]], extra: dict | None = None) -> dict:
    """Write train.csv / test.csv (path relative to `out_dir`, label) for images already under out_dir."""
    written = []
    for split in SPLITS:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "label"])
        w.writerows(rows[split])
        write_text(out_dir / f"{split}.csv", buf.getvalue())
        written.append(out_dir / f"{split}.csv")
    meta = _meta(spec, "files", classes, len(rows["train"]), len(rows["test"]), written, extra)
    write_json(out_dir / META, meta)
    return meta


def load_meta(prepared_dir: str | Path) -> dict:
    path = Path(prepared_dir) / META
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DfgError(f"{path} not found; run `dfg prepare {Path(prepared_dir).name}` first") from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")


def load_arrays(prepared_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, H, W, C] memory-mapped, labels int64 [N]) of an array dataset."""
    _check_split(split)
    d = Path(prepared_dir)
    meta = load_meta(d)
    if meta["format"] != "array":
        raise DfgError(f"{d} holds {meta['format']!r} data; read it with load_index")
    x = np.load(d / f"{split}_x.npy", mmap_mode="r")
    y = np.load(d / f"{split}_y.npy")
    return x, y


def load_index(prepared_dir: str | Path, split: str) -> tuple[list[Path], np.ndarray]:
    """(absolute image paths, labels int64) of a files dataset."""
    _check_split(split)
    d = Path(prepared_dir)
    meta = load_meta(d)
    if meta["format"] != "files":
        raise DfgError(f"{d} holds {meta['format']!r} data; read it with load_arrays")
    with open(d / f"{split}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [d / r["path"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


def load_labels(prepared_dir: str | Path, split: str) -> np.ndarray:
    """The labels of either format (what the split builder needs)."""
    meta = load_meta(prepared_dir)
    if meta["format"] == "array":
        return np.load(Path(prepared_dir) / f"{split}_y.npy")
    return load_index(prepared_dir, split)[1]
