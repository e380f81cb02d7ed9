"""Atomic output: every file the project writes goes through a temp file in the same folder + os.replace,
so a killed job never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dfg import DfgError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give outputs the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def save_numpy(path: str | os.PathLike, array) -> None:
    import numpy as np

    # np.save appends ".npy" to a path that lacks it, so write through an open file handle instead.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_torch(path: str | os.PathLike, map_location: Any = "cpu", what: str = "checkpoint",
               fix: str = "replace it with one this tool wrote") -> Any:
    """Load a file of ours: tensors, dicts, lists, numbers and strings only (weights_only=True). A file that
    cannot be read that way (empty, truncated, corrupted, not a PyTorch file, or holding other Python
    objects) is one DfgError naming the file, what is wrong with it and `fix`. torch's own message is not
    passed on: it advises `weights_only=False`, which would let the file run code; this tool never does."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DfgError(f"{what} {path} not found; {fix}") from None
    if size == 0:
        raise DfgError(f"{what} {path} is empty (0 bytes); {fix}")
    # torch.load does not check the archive's CRC-32s: a file damaged inside a tensor would load as wrong
    # weights. Reading it once more to check them costs about a second per GB.
    is_zip = zipfile.is_zipfile(path)
    if not is_zip:
        with open(path, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":  # a zip archive's start without its end (the index comes last)
            raise DfgError(f"{what} {path} is truncated or corrupted (its zip archive has no index at its end; "
                           f"{size:,} bytes); {fix}")
        if head[:1] != b"\x80":  # neither torch's zip format nor its legacy pickle (protocol 2+ starts so)
            raise DfgError(f"{what} {path} is not a PyTorch checkpoint (neither a zip archive nor a pickle); {fix}")
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                damaged = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            damaged = "its index"
        if damaged is not None:
            raise DfgError(f"{what} {path} is corrupted (its entry {damaged} fails its checksum); {fix}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            why = ("holds Python objects other than tensors, numbers, strings and containers; this tool never "
                   "writes such files and will not unpickle one (that could run code)")
        else:
            why = "is not a PyTorch checkpoint (its bytes do not start like one) or is corrupted"
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as e:
        text = str(e).lower()
        why = ("is truncated or corrupted (its archive is incomplete)" if "central directory" in text
               or isinstance(e, EOFError | OSError) else "is corrupted (its archive cannot be read)")
        if "weights_only" in text or "weights only" in text:  # never pass torch's advice on
            why = "cannot be loaded safely"
    raise DfgError(f"{what} {path} {why}; {fix}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
