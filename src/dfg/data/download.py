"""Obtaining official files: verify, look in local mirrors, else download; all-or-nothing per file.

Order for each file of a dataset (or of a weights entry):
1. already in the output folder and verified -> kept;
2. found verified under `<mirror>/<dir>/<name>` for a mirror root in params `fetch.mirrors` and a folder
   name of the spec -> copied (atomically) into the output folder;
3. downloaded from each official URL in turn, `fetch.retries` attempts, `fetch.timeout_s` socket
   timeout, into a temporary file that is verified before it is renamed onto its official name.
The download loop is ours rather than torchvision's `download_url` because it needs a socket timeout,
a temporary file verified before the rename, and tqdm's `disable=None` (a bar on terminals only);
MD5s are checked with torchvision's `check_integrity`. With no network the DNS lookup fails at once and we stop trying further files, so `dfg fetch` ends in
well under a second with one message naming the URLs and the folders where the files may be placed.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

from dfg import DfgError
from dfg.data.registry import DatasetSpec, RemoteFile
from dfg.utils.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

MANIFEST = "fetched.json"  # written last by `dfg fetch`: the single output Snakemake can depend on
CHUNK = 1 << 20
USER_AGENT = "dfg-fetch/0.1 (+python urllib)"  # some servers refuse urllib's default agent
BACKOFF_S = 1.0  # wait before retry k is k * BACKOFF_S


class NetworkUnavailable(Exception):
    """No route to the file's host (DNS failure, refused or unreachable): retrying will not help now."""


def _gunzip_md5(path: Path) -> str | None:
    """MD5 of the decompressed bytes of a gzip file; None when it is not a readable gzip."""
    h = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(CHUNK):
                h.update(block)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


def verify(path: Path, rf: RemoteFile) -> bool:
    """True when `path` matches one of `rf`'s checksums (or `rf` has none and the file exists)."""
    from torchvision.datasets.utils import check_integrity

    if not path.is_file():
        return False
    if not rf.has_checksum:
        return True
    if rf.md5 and check_integrity(str(path), rf.md5):
        return True
    if rf.sha256_prefix and sha256_file(path).startswith(rf.sha256_prefix):
        return True
    return bool(rf.content_md5 and _gunzip_md5(path) == rf.content_md5)


def _expected(rf: RemoteFile) -> str:
    parts = [f"md5 {rf.md5}" if rf.md5 else "", f"decompressed md5 {rf.content_md5}" if rf.content_md5 else "",
             f"sha256 {rf.sha256_prefix}..." if rf.sha256_prefix else ""]
    return " or ".join(p for p in parts if p)


def mirror_candidates(rf: RemoteFile, mirror_dirs: Iterable[str], mirrors: Iterable[str | os.PathLike]) -> list[Path]:
    return [Path(root) / d / rf.name for root in mirrors for d in mirror_dirs]


def copy_verified(src: Path, dest: Path, rf: RemoteFile) -> None:
    """Copy `src` onto `dest` through a temporary file; the copy is verified before the rename."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        if not verify(tmp, rf):
            raise DfgError(f"{src} changed while being copied ({_expected(rf)} no longer matches); fetch again")


def _is_offline(reason: object) -> bool:
    """DNS failure, connection refused, network/host unreachable, or no answer to the connection within
    fetch.timeout_s: the host cannot be reached now. (Timeouts later, mid-transfer, are retried.)"""
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _download_once(url: str, tmp: Path, timeout_s: float, desc: str) -> None:
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout_s)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as e:
        if _is_offline(e.reason):
            raise NetworkUnavailable(f"{url}: {e.reason}") from None
        raise
    except TimeoutError as e:
        raise NetworkUnavailable(f"{url}: no answer within {timeout_s:g} s ({e})") from None
    with resp, open(tmp, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None) as bar:
            while block := resp.read(CHUNK):
                out.write(block)
                bar.update(len(block))
        if total is not None and out.tell() != total:
            raise OSError(f"connection closed after {out.tell()} of {total} bytes")


def download_verified(rf: RemoteFile, dest: Path, retries: int, timeout_s: float) -> None:
    """Download `rf` onto `dest` (verified, atomic). Raises NetworkUnavailable or DfgError."""
    last: Exception | None = None
    for url in rf.urls:
        for attempt in range(1, retries + 1):
            try:
                with atomic_path(dest) as tmp:
                    log.debug("downloading %s (attempt %d/%d)", url, attempt, retries)
                    _download_once(url, tmp, timeout_s, rf.name)
                    if not verify(tmp, rf):
                        raise DfgError(
                            f"checksum mismatch for {rf.name} downloaded from {url}: expected {_expected(rf)} "
                            "(truncated or corrupt download, or the file changed upstream); nothing was kept; "
                            "fetch again, or place a verified copy in the raw folder"
                        )
                return
            except NetworkUnavailable:
                raise
            except urllib.error.HTTPError as e:
                last = e
                if 400 <= e.code < 500:  # the file is not there: try the next URL
                    break
            except (urllib.error.URLError, OSError) as e:
                last = e
            if attempt < retries:
                log.warning("download of %s failed (%s); retrying (%d/%d)", url, last, attempt + 1, retries)
                time.sleep(BACKOFF_S * attempt)
    raise DfgError(f"could not download {rf.name} from {', '.join(rf.urls)}: {last}")


def _no_network_message(what: str, missing: list[RemoteFile], out_dir: Path, mirror_dirs, mirrors, why: str) -> str:
    urls = "; ".join(f"{rf.name} <- {' or '.join(rf.urls)}" for rf in missing)
    folders = [str(out_dir)] + [str(Path(m) / mirror_dirs[0]) for m in mirrors]
    return (f"cannot download {what} ({why}): {urls}; download these files elsewhere and place them in "
            f"{' or '.join(folders)}, then run the command again")


def fetch_remote_files(
    what: str, files: tuple[RemoteFile, ...], mirror_dirs: tuple[str, ...], out_dir: Path, fetch_params: dict,
    extra_mirrors: tuple[Path, ...] = (),
) -> list[dict]:
    """Obtain every file of `files` into `out_dir`; return one provenance record per file.

    `extra_mirrors` are searched after params fetch.mirrors but not suggested to the user (caches)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mirrors = list(fetch_params.get("mirrors", []))
    retries = int(fetch_params.get("retries", 3))
    timeout_s = float(fetch_params.get("timeout_s", 10))
    records, missing, offline_reason = [], [], None
    for rf in files:
        dest = out_dir / rf.name
        if verify(dest, rf):
            records.append({"file": rf.name, "source": "present"})
            continue
        if dest.exists():
            log.warning("%s exists but does not match %s; replacing it", dest, _expected(rf))
        found = None
        for cand in mirror_candidates(rf, mirror_dirs, [*mirrors, *extra_mirrors]):
            if cand.is_file():
                if verify(cand, rf):
                    found = cand
                    break
                log.warning("mirror file %s does not match %s; ignored", cand, _expected(rf))
        if found is not None:
            log.info("copying %s from mirror %s", rf.name, found)
            copy_verified(found, dest, rf)
            records.append({"file": rf.name, "source": str(found)})
            continue
        if offline_reason is not None:
            missing.append(rf)
            continue
        try:
            download_verified(rf, dest, retries, timeout_s)
            records.append({"file": rf.name, "source": rf.urls[0]})
        except NetworkUnavailable as e:
            offline_reason = f"no network: {e}"
            missing.append(rf)
    if missing:
        raise DfgError(_no_network_message(what, missing, out_dir, mirror_dirs, mirrors, offline_reason or "?"))
    for rf in files:
        if not rf.has_checksum:
            log.warning("%s has no published checksum; recorded its sha256 in %s", rf.name, MANIFEST)
    for rec, rf in zip(records, files, strict=True):
        rec["sha256"] = sha256_file(out_dir / rf.name)
    return records


def fetch_files(spec: DatasetSpec, out_dir: Path, params: dict) -> list[Path]:
    """`dfg fetch` for one dataset: the files, then the manifest (also for datasets with no files)."""
    records = fetch_remote_files(spec.name, spec.files, spec.mirror_dirs, out_dir, params.get("fetch", {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    note = "generated by `dfg prepare`; nothing to download" if not spec.files else "official files, verified"
    write_json(out_dir / MANIFEST, {"dataset": spec.name, "note": note, "files": records})
    return [out_dir / rf.name for rf in spec.files]
