"""The dataset registry: one `DatasetSpec` per dataset, registered by the module that reads its format.

A spec names the official files (URLs and checksums), the folder names to look for under each local
mirror, the class names and the prepared shape, and carries the function that converts the raw files.
`dfg fetch` and `dfg prepare` only ever look a dataset up here, so adding a dataset is one module plus
one import line at the bottom of this file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfg.registry import Registry


@dataclass(frozen=True)
class RemoteFile:
    """One official file, kept under its official name in data/raw/<dataset>/.

    A file is accepted when any checksum it has matches:
    - `md5`: MD5 of the file as served (the value torchvision lists, where it has the dataset);
    - `content_md5`: MD5 of the decompressed content of a `.gz` (mirrors such as Debian recompress
      the official files, so the container differs while the data is identical);
    - `sha256_prefix`: leading hex digits of the SHA-256 (PyTorch's weight files carry it in their name).
    `size` (bytes), when known, must match as well. A file with no checksum (CINIC-10 publishes none) is
    accepted, with a warning, only when it passes a structural check of its kind (a .tar.gz must be
    readable to its end: see dfg.data.download).
    """

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    content_md5: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None  # None: not checked

    @property
    def has_checksum(self) -> bool:
        return bool(self.md5 or self.content_md5 or self.sha256_prefix)


PrepareFn = Callable[["DatasetSpec", Path, Path, dict], None]


@dataclass(frozen=True)
class DatasetSpec:
    """What the pipeline knows about a dataset before touching any file of it."""

    name: str
    num_classes: int
    # Class names in label order. Empty where the archive defines them (Caltech-256's folder names,
    # Food-101's meta/classes.txt): `dfg prepare` then reads them and writes them to meta.json.
    classes: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    mirror_dirs: tuple[str, ...]  # folder names looked for under each mirror root (params fetch.mirrors)
    image_size: int  # prepared square side: 32, or prepare.image_size (256) for 224-px data
    channels: int
    native_format: str  # one line: what the official files hold and how
    prepare_fn: PrepareFn
    homepage: str = ""
    #: Approximate size of the official files in MB (10^6 bytes), for planning disk (`dfg plan`); 0 for data
    #: generated or bundled offline. Not a check: `RemoteFile.size` is the one downloads must match.
    download_mb: float = 0.0

    def prepare(self, raw_dir: Path, out_dir: Path, params: dict) -> None:
        """Convert the raw files in `raw_dir` into the prepared format, written into `out_dir` (empty)."""
        self.prepare_fn(self, Path(raw_dir), Path(out_dir), params)

    def fetch(self, raw_dir: Path, params: dict) -> list[Path]:
        """Obtain the raw files into `raw_dir`: local mirrors first, then the official URLs."""
        from dfg.data.download import fetch_files

        return fetch_files(self, Path(raw_dir), params)

    def with_files(self, files: Sequence[RemoteFile]) -> DatasetSpec:
        """A copy with other files (tests point a spec at fabricated files and their checksums)."""
        return dataclasses.replace(self, files=tuple(files))


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.add(spec.name, spec)


# Registration on import: one line per dataset module.
from dfg.data import (  # noqa: F401
    caltech256,
    cifar10,
    cinic10,
    emnist,
    fashion_mnist,
    food101,
    mnist5k,
    sklearn_digits,
    stl10,
    svhn,
    synthdigits,
)
