"""Pixel operations of the protocol (method.md §4): padding 28 -> 32, ITU-R 601 luma, antialiased resize."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

# ITU-R BT.601 luma in 16-bit fixed point, as PIL's convert("L") computes it (L = R*299/1000 + ...).
LUMA_601 = (19595, 38470, 7471)


def pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad [N, H, W] images symmetrically to [N, size, size, 1] (F-MNIST/EMNIST 28 -> 32: 2 px a side)."""
    n, h, w = x.shape
    top, left = (size - h) // 2, (size - w) // 2
    out = np.zeros((n, size, size, 1), dtype=np.uint8)
    out[:, top:top + h, left:left + w, 0] = x
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] uint8 -> [N, H, W, 1] uint8, bit-identical to PIL's convert('L')."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    y = (r * LUMA_601[0] + g * LUMA_601[1] + b * LUMA_601[2] + 0x8000) >> 16
    return y.astype(np.uint8)[..., None]


def resize_batch(x: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, C] uint8 -> [N, size, size, C], PIL bicubic (antialiased when shrinking)."""
    from PIL import Image

    out = np.empty((len(x), size, size, x.shape[3]), dtype=np.uint8)
    for i, img in enumerate(x):
        im = Image.fromarray(img[..., 0] if x.shape[3] == 1 else img)
        r = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC))
        out[i] = r[..., None] if r.ndim == 2 else r
    return out


def decode_rgb(data: bytes, where: str) -> Image.Image:
    """Decode an encoded image (PNG, JPEG, ...) to RGB; grayscale/CMYK/palette images are converted."""
    from PIL import Image, UnidentifiedImageError

    from dfg import DfgError

    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DfgError(f"{where} is not a readable image ({e}); the archive is corrupt; fetch it again") from None
    return im.convert("RGB")


def save_resized_jpeg(data: bytes, where: str, dest: Path, size: int, quality: int) -> None:
    """Decode, squash-resize to size x size (antialiased), save as JPEG at `dest`."""
    from PIL import Image

    im = decode_rgb(data, where).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        im.save(dest, format="JPEG", quality=quality)
    except OSError as e:  # not the archive's fault: say so, rather than "corrupt archive"
        from dfg import DfgError

        raise DfgError(f"cannot write {dest} ({e}); check free space and permissions") from None


class JpegWriter:
    """save_resized_jpeg on a thread pool (Pillow releases the GIL while decoding, resizing and encoding),
    with a bounded number of images in flight; output bytes do not depend on the thread count.
    Use as a context manager: leaving it waits for every image and re-raises the first error."""

    IN_FLIGHT_PER_WORKER = 4  # queued images per thread: enough to keep threads busy, bounded memory

    def __init__(self, size: int, quality: int, workers: int | None = None) -> None:
        import collections
        import os
        from concurrent.futures import ThreadPoolExecutor

        self.size, self.quality = size, quality
        workers = workers or len(os.sched_getaffinity(0))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jpeg")
        self._pending: collections.deque = collections.deque()
        self._max = workers * self.IN_FLIGHT_PER_WORKER

    def submit(self, data: bytes, where: str, dest: Path) -> None:
        while len(self._pending) >= self._max:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(save_resized_jpeg, data, where, dest, self.size, self.quality))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                while self._pending:
                    self._pending.popleft().result()
        finally:
            for fut in self._pending:
                fut.cancel()
            self._pool.shutdown(wait=True)
