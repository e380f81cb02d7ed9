"""Readers for the official raw formats, shared by the dataset modules.

Archives are read in place (members streamed, never extracted), so no archive member name ever becomes
a path we write: path traversal is impossible by construction, and member names that try it are
rejected anyway. A truncated or corrupt archive surfaces as one DfgError naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import ClassVar

import numpy as np

from dfg import DfgError

# idx format (LeCun's MNIST page): magic = 0x00 0x00 <dtype code> <ndim>, then ndim big-endian uint32 sizes.
IDX_UBYTE = 0x08
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, OSError)


def corrupt(path: Path, detail: object) -> DfgError:
    return DfgError(
        f"{path} is truncated or corrupt ({detail}); delete it and run `dfg fetch` again "
        "(or place a complete copy there)"
    )


def require(raw_dir: Path, *names: str) -> list[Path]:
    paths = [raw_dir / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DfgError(f"{raw_dir} lacks {', '.join(missing)}; run `dfg fetch {raw_dir.name}` first")
    return paths


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """An idx array of unsigned bytes (images: [N, H, W], labels: [N])."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        raise DfgError(f"{where} is not an idx file of unsigned bytes; fetch it again")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=header)
    if body.size != int(np.prod(shape)):
        raise DfgError(f"{where} holds {body.size} bytes for shape {shape}: truncated or corrupt; fetch it again")
    return body.reshape(shape)


def read_gz(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except ARCHIVE_ERRORS as e:
        raise corrupt(path, e) from None


def check_member(name: str, archive: Path) -> PurePosixPath:
    """A member name as a relative path; absolute names or '..' components are refused."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise DfgError(f"{archive} holds an unsafe member name {name!r}; refusing to read it")
    return PurePosixPath(*[part for part in p.parts if part != "."])


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn archive/decompression errors raised inside the block into one clear DfgError."""
    try:
        yield
    except DfgError:
        raise
    except ARCHIVE_ERRORS as e:
        raise corrupt(path, e) from None


def iter_tar(path: Path) -> Iterator[tuple[PurePosixPath, Callable[[], bytes]]]:
    """Stream the regular-file members of a (compressed) tar in archive order, without extracting.

    Yields (member name, read): calling read() returns the member's bytes; errors of a truncated or
    corrupt archive raised there or while advancing become one DfgError naming the archive."""
    with reading(path), tarfile.open(path, mode="r|*") as tar:
        for info in tar:
            if info.isfile():
                yield check_member(info.name, path), functools.partial(_read_checked, path, tar, info)


def _read_checked(path: Path, tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    with reading(path):
        return read_member(tar, info)


def read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    if f is None:
        return b""
    data = f.read()
    if len(data) != info.size:
        raise EOFError(f"member {info.name} ends after {len(data)} of {info.size} bytes")
    return data


def read_zip_member(path: Path, name: str) -> bytes:
    with reading(path), zipfile.ZipFile(path) as zf:
        for n in zf.namelist():
            check_member(n, path)
        try:
            return zf.read(name)
        except KeyError:
            raise DfgError(f"{path} has no member {name}; is it the official file? fetch it again") from None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts, lists, strings, numbers and numpy arrays: a pickle cannot run code here."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_array_pickle(data: bytes, where: str) -> dict:
    """A CIFAR-style batch (Python 2 pickle of a dict of lists and uint8 arrays), safely."""
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DfgError(f"{where} is not a readable CIFAR batch ({e}); fetch the archive again") from None
    if not isinstance(obj, dict):
        raise DfgError(f"{where} does not hold a dict; fetch the archive again")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
