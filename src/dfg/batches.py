"""Training and test data for the shared loop (docs/architecture.md, "Batch source").

Small-image data (prepared `format: array`, <= 64 px) is held WHOLE on the run's device as uint8
[N, C, H, W]; a batch is an index gather, then augmentation and normalisation on the device, vectorised
over the batch. No DataLoader iterator per step, no per-image Python (the authors' loop spent ~15 ms a
step on a fresh iterator; method.md §7). 224-px data (`format: files`) goes through a DataLoader with
workers that only decodes JPEGs to uint8; crop/flip/normalise then run on the device like above.

Every draw is a function of (seed, stream, counter): the state of a batch source is a few integers, so
a resumed run draws exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dfg import DfgError
from dfg.runtime import derive_seed

#: Normalisation of every backbone, ImageNet ResNet included (method.md §4: mean 0.5, std 0.5).
NORM_MEAN = 0.5
NORM_STD = 0.5
#: `crop_flip` (method.md §4, STL-10 / CINIC-10): random 32-px crop of the image zero-padded by 4.
CROP_PADDING = 4
#: `resized_crop_flip` (method.md §4, Caltech-256 / Food-101): images stored resized to 256² are
#: cropped at random to the backbone's 224; the test transform is the 256² image itself (no centre crop).
AUGMENTS = ("none", "crop_flip", "resized_crop_flip")


# -- reading prepared data -----------------------------------------------------------------------------
def read_meta(prepared_dir: str | Path) -> dict:
    path = Path(prepared_dir) / "meta.json"
    if not path.exists():
        raise DfgError(f"no prepared data at {prepared_dir} (missing meta.json); run `dfg prepare DATASET` first")
    return json.loads(path.read_text())


def read_arrays(prepared_dir: str | Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 [N, H, W, C], y int64 [N]) of `part` ('train' | 'test').

    Uses dfg.data.prepared.load_arrays when the data layer provides it; this small fallback reads the
    same documented files so the loop does not depend on the data layer's code."""
    try:
        from dfg.data.prepared import load_arrays
    except ImportError:
        load_arrays = None
    if load_arrays is not None:
        x, y = load_arrays(prepared_dir, part)
        return np.asarray(x), np.asarray(y)
    d = Path(prepared_dir)
    try:
        return np.load(d / f"{part}_x.npy", mmap_mode="r"), np.load(d / f"{part}_y.npy")
    except FileNotFoundError as e:
        raise DfgError(f"prepared data at {d} lacks {Path(e.filename).name}; rerun `dfg prepare`") from None


def read_index(prepared_dir: str | Path, part: str) -> tuple[list[Path], np.ndarray]:
    """(image paths, labels) of a `format: files` dataset (train.csv / test.csv: path,label)."""
    try:
        from dfg.data.prepared import load_index
    except ImportError:
        load_index = None
    if load_index is not None:
        paths, y = load_index(prepared_dir, part)
        return [Path(p) for p in paths], np.asarray(y, dtype=np.int64)
    import csv

    d = Path(prepared_dir)
    with open(d / f"{part}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [d / r["path"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int64)


# -- on-device augmentation ----------------------------------------------------------------------------
def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float in [-1, 1] ((x/255 - 0.5) / 0.5)."""
    return (x.float() / 255.0 - NORM_MEAN) / NORM_STD


def random_crop(x: torch.Tensor, size: int, padding: int, gen: torch.Generator) -> torch.Tensor:
    """A random `size`² window per sample of x zero-padded by `padding`, as one gather."""
    b, _, h, w = x.shape
    if padding:
        x = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        h, w = h + 2 * padding, w + 2 * padding
    if h < size or w < size:
        raise DfgError(f"images of {h}x{w} px (padded) cannot be cropped to {size}; check the dataset's image_size")
    oy = torch.randint(0, h - size + 1, (b,), device=x.device, generator=gen)
    ox = torch.randint(0, w - size + 1, (b,), device=x.device, generator=gen)
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, :, None]  # [B, size, 1]
    cols = (ox[:, None] + ar)[:, None, :]  # [B, 1, size]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices around a slice: result is [B, size, size, C].
    return x.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment(x: torch.Tensor, kind: str, out_size: int, gen: torch.Generator) -> torch.Tensor:
    """Training augmentation of a uint8 batch, on its device."""
    if kind == "none":
        return x
    if kind == "crop_flip":
        return random_flip(random_crop(x, out_size, CROP_PADDING, gen), gen)
    if kind == "resized_crop_flip":
        return random_flip(random_crop(x, out_size, 0, gen), gen)
    raise DfgError(f"unknown augmentation {kind!r}; use one of {', '.join(AUGMENTS)}")


# -- index streams ---------------------------------------------------------------------------------
class IndexStream:
    """Which samples each batch holds. Uniform mode: seeded epoch permutations, batches of
    `batch_size` (an epoch's incomplete tail is dropped, as drop_last=True). Weighted mode
    (`set_class_weights`): each batch drawn with replacement, class c with probability ∝ w_c.
    State = counters only; every draw is seeded from (seed, stream, counter)."""

    def __init__(self, labels: torch.Tensor, num_classes: int, batch_size: int, seed: int) -> None:
        self.labels = labels  # on the CPU: index arithmetic is tiny
        self.n = int(labels.numel())
        if self.n == 0:
            raise DfgError("the training split is empty; check the split file and the prepared data")
        self.num_classes = num_classes
        self.batch_size = min(batch_size, self.n)
        self.seed = seed
        self.uniform_batches = 0
        self.weighted_batches = 0
        self.class_weights: torch.Tensor | None = None
        self._per_sample: torch.Tensor | None = None
        self._epoch = -1
        self._perm: torch.Tensor | None = None
        self._gen = torch.Generator()
        counts = torch.bincount(labels, minlength=num_classes).double()
        self._class_counts = counts

    def set_class_weights(self, w: torch.Tensor | None) -> None:
        if w is not None:
            w = torch.as_tensor(w, dtype=torch.float64).cpu()
            if w.shape != (self.num_classes,) or bool((w < 0).any()) or float(w[self._class_counts > 0].sum()) <= 0:
                raise ValueError(f"class weights must be {self.num_classes} non-negative numbers, one > 0 "
                                 "for a class present in the split")
        self.class_weights = w
        # P(sample i) ∝ w_{y_i} / n_{y_i}, so that P(class c) ∝ w_c
        self._per_sample = None if w is None else (w / self._class_counts.clamp(min=1))[self.labels]

    def next(self) -> torch.Tensor:
        if self.class_weights is None:
            per_epoch = self.n // self.batch_size
            epoch, k = divmod(self.uniform_batches, per_epoch)
            if epoch != self._epoch:
                self._gen.manual_seed(derive_seed(self.seed, "epoch", epoch))
                self._perm = torch.randperm(self.n, generator=self._gen)
                self._epoch = epoch
            self.uniform_batches += 1
            return self._perm[k * self.batch_size:(k + 1) * self.batch_size]
        self._gen.manual_seed(derive_seed(self.seed, "weighted", self.weighted_batches))
        self.weighted_batches += 1
        return torch.multinomial(self._per_sample, self.batch_size, replacement=True, generator=self._gen)

    def state_dict(self) -> dict:
        return {"uniform_batches": self.uniform_batches, "weighted_batches": self.weighted_batches,
                "class_weights": self.class_weights}

    def load_state_dict(self, state: dict) -> None:
        self.uniform_batches = int(state["uniform_batches"])
        self.weighted_batches = int(state["weighted_batches"])
        self.set_class_weights(state["class_weights"])
        self._epoch = -1


# -- data sets -------------------------------------------------------------------------------------
class DeviceImages:
    """A whole image set as uint8 [N, C, H, W] on the device, plus labels."""

    def __init__(self, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, device: torch.device) -> None:
        # np.array copies a memory-mapped file into RAM once; the device copy is then the only one used.
        xt = torch.from_numpy(np.array(x)) if not isinstance(x, torch.Tensor) else x
        if xt.dtype != torch.uint8 or xt.ndim != 4:
            raise DfgError(f"prepared images must be uint8 [N, H, W, C]; got {xt.dtype} {tuple(xt.shape)}")
        self.x = xt.permute(0, 3, 1, 2).contiguous().to(device)
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.int64).to(device)
        self.device = device

    def __len__(self) -> int:
        return int(self.y.numel())

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device, non_blocking=True)
        return self.x[idx], self.y[idx]


class FileImages(torch.utils.data.Dataset):
    """224-px data: JPEGs decoded to uint8 [C, H, W] in DataLoader workers (no per-image transforms)."""

    def __init__(self, paths: list[Path], y: np.ndarray, channels: int) -> None:
        self.paths = [str(p) for p in paths]
        self.y = torch.as_tensor(y, dtype=torch.int64)
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # Decoding only (torchvision.io's decoders are deprecated since 0.29); every transform runs
        # later on the device, batched.
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            arr = np.asarray(im.convert("RGB" if self.channels == 3 else "L"))
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), int(self.y[i])


def _loader(dataset: torch.utils.data.Dataset, batch_sampler, num_workers: int, device: torch.device):
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=num_workers, pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


class TrainBatches:
    """`ctx.data.train`: next() -> (x float [B, C, H, W] normalised and augmented, y int64 [B]) on the
    device. Samples are the split's `indices` into `images` (DeviceImages or FileImages)."""

    def __init__(self, images: DeviceImages | FileImages, indices: np.ndarray, num_classes: int,
                 batch_size: int, augment_kind: str, out_size: int, seed: int, device: torch.device,
                 num_workers: int = 0) -> None:
        if augment_kind not in AUGMENTS:
            raise DfgError(f"unknown augmentation {augment_kind!r}; use one of {', '.join(AUGMENTS)}")
        self.images = images
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        labels = (images.y.cpu() if isinstance(images, DeviceImages) else images.y)[self.indices]
        self.labels = labels
        self.stream = IndexStream(labels, num_classes, batch_size, seed)
        self.batch_size = self.stream.batch_size
        self.augment_kind = augment_kind
        self.out_size = out_size
        self.seed = seed
        self.device = device
        self.num_workers = num_workers
        self.batches_drawn = 0
        self.images_drawn = 0
        self._aug_gen = torch.Generator(device=device)
        self._prefetch: Iterator | None = None

    def __len__(self) -> int:
        return int(self.indices.numel())

    # -- drawing -----------------------------------------------------------------------------------
    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.images, DeviceImages):
            x, y = self.images.gather(self.indices[self.stream.next()])
        else:
            x, y = self._next_from_files()
        self._aug_gen.manual_seed(derive_seed(self.seed, "augment", self.batches_drawn))
        self.batches_drawn += 1
        self.images_drawn += int(y.numel())
        return normalise(augment(x, self.augment_kind, self.out_size, self._aug_gen)), y

    def _next_from_files(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Workers decode ahead from a copy of the index stream; the real stream advances in step with
        # what is consumed, so state_dict() is exact whatever the prefetch depth.
        if self._prefetch is None:
            ahead = IndexStream(self.stream.labels, self.stream.num_classes, self.batch_size, self.seed)
            ahead.load_state_dict(self.stream.state_dict())

            def sampler():
                while True:
                    yield self.indices[ahead.next()].tolist()

            self._prefetch = iter(_loader(self.images, sampler(), self.num_workers, self.device))
        self.stream.next()
        x, y = next(self._prefetch)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def set_class_weights(self, w: torch.Tensor | None) -> None:
        """Sample class c with probability ∝ w_c from now on (None = back to uniform epochs)."""
        self.stream.set_class_weights(w)
        self._prefetch = None

    def iterate(self, batch_size: int, augment: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One ordered pass over the whole training split (features for SMOTE, cRT, attention)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, "iterate"))
        for x, y in _ordered(self.images, self.indices, batch_size, self.num_workers, self.device):
            x = augment_fn(x, self.augment_kind if augment else "none", self.out_size, gen)
            yield normalise(x), y

    # -- resume --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"stream": self.stream.state_dict(), "batches_drawn": self.batches_drawn,
                "images_drawn": self.images_drawn}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self.batches_drawn = int(state["batches_drawn"])
        self.images_drawn = int(state["images_drawn"])
        self._prefetch = None


augment_fn = augment  # TrainBatches.iterate has a parameter named `augment`


def _ordered(images: DeviceImages | FileImages, indices: torch.Tensor, batch_size: int, num_workers: int,
             device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """uint8 batches of `images[indices]` in order."""
    if isinstance(images, DeviceImages):
        for start in range(0, int(indices.numel()), batch_size):
            yield images.gather(indices[start:start + batch_size])
        return
    chunks = [indices[s:s + batch_size].tolist() for s in range(0, int(indices.numel()), batch_size)]
    for x, y in _loader(images, chunks, num_workers, device):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


class EvalImages:
    """The test set (or its seeded stratified subset), read in order, normalised, never augmented."""

    def __init__(self, images: DeviceImages | FileImages, indices: np.ndarray, device: torch.device,
                 num_workers: int = 0) -> None:
        self.images = images
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        self.device = device
        self.num_workers = num_workers
        y = images.y.cpu() if isinstance(images, DeviceImages) else images.y
        self.labels = y[self.indices]

    def __len__(self) -> int:
        return int(self.indices.numel())

    def iterate(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in _ordered(self.images, self.indices, batch_size, self.num_workers, self.device):
            yield normalise(x), y


@dataclass
class TaskData:
    """`ctx.data`: the training batch source, the test set and the split's facts."""

    train: TrainBatches
    test: EvalImages
    num_classes: int
    class_counts: torch.Tensor  # training images per class (int64 [K])
    minority_classes: list[int]
    classes: list[str]
    dataset: str
    split: dict = field(default_factory=dict)
    #: the split's validation images (val_indices: held-out training images, test transform), or None
    val: EvalImages | None = None


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified subset of `size` samples (all when size is 0 or larger)."""
    n = len(labels)
    if size <= 0 or size >= n:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(n), train_size=size, stratify=labels, random_state=seed % (1 << 32))
    return np.sort(keep)


def load_images(prepared_dir: str | Path, part: str, meta: dict, device: torch.device) -> DeviceImages | FileImages:
    if meta.get("format", "array") == "array":
        x, y = read_arrays(prepared_dir, part)
        return DeviceImages(x, y, device)
    paths, y = read_index(prepared_dir, part)
    return FileImages(paths, y, int(meta["channels"]))


def check_compatible(meta: dict, in_channels: int, input_size: int, augment_kind: str, where: str) -> None:
    """Fail early, with the fix, when prepared images cannot feed the backbone."""
    if int(meta["channels"]) != in_channels:
        raise DfgError(f"{where}: prepared images have {meta['channels']} channel(s) but the backbone expects "
                       f"{in_channels}; pair the task with a backbone of matching input")
    size = int(meta["image_size"])
    ok = size == input_size or (augment_kind == "crop_flip" and size + 2 * CROP_PADDING >= input_size) or \
        (meta.get("format") == "files" and size >= input_size)
    if not ok:
        raise DfgError(f"{where}: prepared images are {size} px but the backbone takes {input_size} px with "
                       f"augment {augment_kind!r}; re-prepare the dataset at the backbone's size")


def build_task_data(prepared_dir: str | Path, train_indices: np.ndarray, device: torch.device, *,
                    batch_size: int, augment_kind: str, input_size: int, in_channels: int, seed: int,
                    max_test: int = 0, num_workers: int = 0, minority_classes: list[int] | None = None,
                    split: dict | None = None, where: str = "data") -> TaskData:
    """Load a prepared dataset once, on the device when it is array data, and wrap train and test (and the
    split's validation images, when it has `val_indices`)."""
    meta = read_meta(prepared_dir)
    check_compatible(meta, in_channels, input_size, augment_kind, where)
    train_images = load_images(prepared_dir, "train", meta, device)
    test_images = load_images(prepared_dir, "test", meta, device)
    k = int(meta["num_classes"])
    train = TrainBatches(train_images, train_indices, k, batch_size, augment_kind, input_size, seed, device,
                         num_workers)
    test_y = test_images.y.cpu().numpy() if isinstance(test_images, DeviceImages) else test_images.y.numpy()
    test = EvalImages(test_images, stratified_subset(test_y, max_test, derive_seed(seed, "test-subset")),
                      device, num_workers)
    val_indices = np.asarray((split or {}).get("val_indices") or [], dtype=np.int64)
    val = EvalImages(train_images, val_indices, device, num_workers) if len(val_indices) else None
    return TaskData(
        train=train, test=test, num_classes=k,
        class_counts=torch.bincount(train.labels, minlength=k),
        minority_classes=sorted(minority_classes or []),
        classes=list(meta.get("classes", [str(i) for i in range(k)])),
        dataset=str(meta.get("dataset", Path(prepared_dir).name)), split=split or {}, val=val,
    )
