"""scikit-learn's bundled digits: 1 797 real handwritten 8x8 digits, values 0..16, no official split.

Prepared: upscaled to 32x32 (bilinear) and rescaled to 0..255 uint8, 1 channel; a seeded stratified
train/test split from params prepare.sklearn_digits. Nothing to download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfg.data.prepared import write_arrays
from dfg.data.registry import DatasetSpec, register

SIDE = 32
MAX_VALUE = 16  # load_digits: each pixel counts ink in a 4x4 block of the 32x32 original, 0..16


def upscale(images: np.ndarray) -> np.ndarray:
    """[N, 8, 8] values 0..16 -> [N, 32, 32, 1] uint8 0..255."""
    import torch

    t = torch.from_numpy(images.astype(np.float32) / MAX_VALUE)[:, None]
    up = torch.nn.functional.interpolate(t, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def prepare(spec: DatasetSpec, raw_dir: Path, out_dir: Path, params: dict) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    cfg = params["prepare"]["sklearn_digits"]
    digits = load_digits()
    idx = np.arange(len(digits.target))
    tr, te = train_test_split(idx, test_size=cfg["test_fraction"], random_state=cfg["seed"],
                              stratify=digits.target)
    x = upscale(digits.images)
    y = digits.target.astype(np.int64)
    tr, te = np.sort(tr), np.sort(te)
    write_arrays(out_dir, spec, (x[tr], y[tr]), (x[te], y[te]), extra={"split": dict(cfg)})


SPEC = register(DatasetSpec(
    name="sklearn-digits", num_classes=10, classes=tuple("0123456789"), files=(),
    mirror_dirs=(), image_size=SIDE, channels=1,
    native_format="sklearn.datasets.load_digits: 1 797 8x8 images, values 0..16 (bundled, offline)",
    prepare_fn=prepare, homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
))
