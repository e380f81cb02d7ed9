"""Obtaining official files: verify, look in local mirrors, else download; all-or-nothing per file.

Order for each file of a dataset (or of a weights entry):
1. already in the output folder and verified -> kept;
2. found verified under `<mirror>/<dir>/<name>` for a mirror root in params `fetch.mirrors` and a folder
   name of the spec -> copied (atomically) into the output folder;
3. downloaded from each official URL in turn into a temporary file next to the destination, renamed onto
   the official name only once verified: a checksum, or for a file without one (CINIC-10) its size when
   known and an archive readable to its end. On a terminal a tqdm bar shows the transfer; without one
   (Snakemake's log files) a line every PROGRESS_EVERY_S gives the size so far, the share and the rate.

What real servers do, and what happens then (`fetch.retries`, `fetch.timeout_s`):
- stall (no byte for timeout_s) or drop the connection mid-transfer: the bytes received stay in the
  temporary file and the next attempt asks for the rest (`Range: bytes=N-`); a 206 whose Content-Range
  starts at N is appended, a 200 restarts from zero. An attempt that grew the file beyond its largest size
  so far is progress, not a failure: we give up after `retries` attempts in a row without progress, or
  after MAX_RESUMES resumed attempts (a server that trickles forever), and then delete the partial file.
- answer 200 with an HTML page (Content-Type text/html, or a body that starts like one) or with nothing:
  rejected before a byte is written, and retried. A checksum mismatch is retried from zero likewise.
- no network: a DNS failure, a refused connection or an unreachable network/host gives the host up at
  once. A timeout before any answer is retried; when every attempt on a URL got none, its host counts as
  unreachable for the remaining files too, so a network that silently drops packets costs about
  retries x timeout_s once, not once per file. The files left are named in one message, with the folders
  where they may be placed.

Why not pooch (1.9.0's source read for this): its HTTPDownloader restarts every attempt from byte zero and
accepts any 2xx answer as the file, it checks one hash of the file as served (Debian's recompressed
Fashion-MNIST needs the decompressed content's MD5, CINIC-10 a structural check), and its blanket retry of
every requests error hides the DNS/refused distinction our fast offline failure rests on. We would keep
all of this loop around it, so it stays ours, on the standard library's urllib (no new dependency; it
honours http_proxy/no_proxy as requests does); MD5s are checked with torchvision's `check_integrity`.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from dfg import DfgError
from dfg.data.registry import DatasetSpec, RemoteFile
from dfg.utils.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

MANIFEST = "fetched.json"  # written last by `dfg fetch`: the single output Snakemake can depend on
CHUNK = 1 << 20
PROGRESS_EVERY_S = 60.0  # without a terminal (Snakemake's log files) a progress line this often
USER_AGENT = "dfg-fetch/0.1 (+python urllib)"  # some servers refuse urllib's default agent
BACKOFF_S = 1.0  # wait before the k-th retry in a row without progress is k * BACKOFF_S
MAX_RESUMES = 100  # resumed attempts per URL: bounds a server that sends a little, then stalls, forever
SNIFF_BYTES = 64  # start of a body checked for an HTML page
HTML_STARTS = (b"<!doctype html", b"<html")
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)  # gzip.BadGzipFile is an OSError


class NetworkUnavailable(Exception):
    """The file's host cannot be reached now (DNS failure, refused, unreachable, or it never answers)."""


class _BadAnswer(Exception):
    """The server answered, but not with (the rest of) the file: what was received is discarded."""


class _NoAnswer(Exception):
    """No connection, or no response header, within the timeout (a stall mid-transfer is not this)."""


class _GaveUp(Exception):
    """Every attempt on one URL failed; the message says how."""


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


def _structure_problem(path: Path, name: str) -> str | None:
    """For a file without checksum: why it cannot be the file, judged by its kind (from `name`).

    A .tar.gz/.tgz is read to its end: every member header is parsed, and gzip checks its CRC and
    length trailer, so a truncated or HTML download fails (CINIC-10's archive takes seconds, once per
    fetch). A .gz is decompressed to its end. Other kinds are only required to be non-empty."""
    if path.stat().st_size == 0:
        return "an empty file"
    try:
        if name.endswith((".tar.gz", ".tgz")):
            with gzip.open(path, "rb") as gz:
                with tarfile.open(fileobj=gz, mode="r|") as tar:
                    members = sum(1 for _ in tar)
                while gz.read(CHUNK):  # the tar's end padding, then gzip's trailer check
                    pass
            if members == 0:
                return "a tar.gz without members"
        elif name.endswith(".gz"):
            with gzip.open(path, "rb") as gz:
                while gz.read(CHUNK):
                    pass
    except ARCHIVE_ERRORS as e:
        return f"not a readable {name.split('.', 1)[-1]} ({e})"
    return None


def problem(path: Path, rf: RemoteFile) -> str | None:
    """Why `path` is not `rf`, or None when it is: its size (when `rf` knows it), then any of its
    checksums; a file without checksum must pass the structural check of its kind instead."""
    from torchvision.datasets.utils import check_integrity

    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if rf.size is not None and size != rf.size:
        return f"{size} bytes, expected {rf.size}"
    if not rf.has_checksum:
        return _structure_problem(path, rf.name)
    if rf.md5 and check_integrity(str(path), rf.md5):
        return None
    if rf.sha256_prefix and sha256_file(path).startswith(rf.sha256_prefix):
        return None
    if rf.content_md5 and _gunzip_md5(path) == rf.content_md5:
        return None
    return f"checksum mismatch: expected {_expected(rf)}"


def verify(path: Path, rf: RemoteFile) -> bool:
    """True when `path` is `rf` (see `problem`)."""
    return problem(path, rf) is None


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
        if why := problem(tmp, rf):
            raise DfgError(f"{src} changed while being copied ({why}); fetch again")


def _is_offline(reason: object) -> bool:
    """DNS failure, connection refused, network or host unreachable: the host cannot be reached now."""
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _open(req: urllib.request.Request, timeout: float) -> http.client.HTTPResponse:
    """One request through a fresh opener: the proxy variables (http_proxy, no_proxy) are read now, not
    frozen at the process's first download as in `urllib.request.urlopen`'s shared opener."""
    return urllib.request.build_opener().open(req, timeout=timeout)


def _request(url: str, offset: int, timeout_s: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return _open(urllib.request.Request(url, headers=headers), timeout_s)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError as e:
        if _is_offline(e.reason):
            raise NetworkUnavailable(f"{url}: {e.reason}") from None
        if isinstance(e.reason, TimeoutError):
            raise _NoAnswer(f"no connection within {timeout_s:g} s") from None
        raise
    except TimeoutError:  # connected, but no response header in time
        raise _NoAnswer(f"no answer within {timeout_s:g} s") from None


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


class _Progress:
    """Log lines for a transfer without a terminal: at most one per PROGRESS_EVERY_S, with the size so far,
    the share of the file when its size is known, and the rate of this attempt."""

    def __init__(self, name: str, total: int | None, offset: int) -> None:
        self.name, self.total, self.offset = name, total, offset
        self.start = self.last = time.monotonic()

    def update(self, size: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        rate = (size - self.offset) / max(now - self.start, 1e-9) / 1e6
        if self.total:
            log.info("%s: %s of %s (%.0f %%) at %.1f MB/s", self.name, _megabytes(size), _megabytes(self.total),
                     100 * size / self.total, rate)
        else:
            log.info("%s: %s so far at %.1f MB/s", self.name, _megabytes(size), rate)


def _receive(resp: http.client.HTTPResponse, tmp: Path, rf: RemoteFile, offset: int) -> None:
    """Write the body of `resp` into `tmp`, which holds `offset` bytes from earlier attempts: appended
    after a 206 that starts there, from zero after a 200. Raises _BadAnswer for what is not the file,
    OSError when the connection closes before the announced length."""
    from tqdm import tqdm

    headers, total = resp.headers, None
    if offset and resp.status == 206:
        m = CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip())
        if not m or int(m.group(1)) != offset:
            raise _BadAnswer(f"asked for bytes {offset}-, got Content-Range {headers.get('Content-Range')!r}")
        total = None if m.group(3) == "*" else int(m.group(3))
    elif resp.status == 200:
        if offset:
            log.info("%s: the server ignores Range requests; downloading it from the start", rf.name)
        offset = 0
    else:
        raise _BadAnswer(f"unexpected answer HTTP {resp.status} {resp.reason}")
    html_expected = rf.name.endswith((".html", ".htm"))
    if headers.get_content_type() == "text/html" and not html_expected:
        raise _BadAnswer("an HTML page (Content-Type text/html), not the file")
    length = (headers.get("Content-Length") or "").strip()
    end = offset + int(length) if length.isdigit() else None
    if end == 0:
        raise _BadAnswer("an empty answer (Content-Length: 0)")
    total = total if total is not None else end  # the file's full size, when the server says
    if rf.size is not None and total is not None and total != rf.size:
        raise _BadAnswer(f"the server announces {total} bytes, expected {rf.size}")
    with open(tmp, "r+b") as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=rf.name,
                                       disable=None) as bar:
        # tqdm draws only on a terminal; in a log file a line every PROGRESS_EVERY_S says how it goes
        progress = None if not bar.disable else _Progress(rf.name, total, offset)
        out.truncate(offset)
        out.seek(offset)
        if offset == 0:
            head = resp.read(SNIFF_BYTES)
            if head.lstrip().lower().startswith(HTML_STARTS) and not html_expected:
                raise _BadAnswer("an HTML page, not the file")
            out.write(head)
            bar.update(len(head))
        while block := resp.read1(CHUNK):  # read1: what has arrived, so a stall loses nothing received
            out.write(block)
            bar.update(len(block))
            if progress is not None:
                progress.update(out.tell())
        size = out.tell()
    if size == 0:
        raise _BadAnswer("an empty answer")
    if total is not None and size != total:  # closed early (or a 206 that stops short): resumable
        raise OSError(f"connection closed after {size} of {total} bytes")


def _from_url(url: str, tmp: Path, rf: RemoteFile, retries: int, timeout_s: float) -> None:
    """Download `rf` from `url` into `tmp` until it verifies (the rules are in the module docstring).

    Raises NetworkUnavailable (the host cannot be reached), HTTPError (a 4xx: not there) or _GaveUp."""
    failures = resumes = best = 0  # best: the largest the partial file has been
    silent = True  # no attempt has had any answer yet
    tmp.write_bytes(b"")  # nothing carries over from another URL
    while True:
        offset = tmp.stat().st_size
        try:
            with _request(url, offset, timeout_s) as resp:
                _receive(resp, tmp, rf, offset)
            why = problem(tmp, rf)
            if why is None:
                return
            raise _BadAnswer(why)
        except _NoAnswer as e:
            why = str(e)
        except urllib.error.HTTPError as e:
            e.close()
            if 400 <= e.code < 500 and e.code not in (408, 416, 429):
                raise
            if e.code == 416:  # our offset is past its end (the file changed?): start over
                tmp.write_bytes(b"")
            why, silent = f"HTTP {e.code} {e.reason}", False
        except _BadAnswer as e:
            tmp.write_bytes(b"")
            why, silent = str(e), False
        except TimeoutError:  # raised in _receive: the transfer stalled
            why, silent = f"stalled (no data for {timeout_s:g} s)", False
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            why, silent = str(getattr(e, "reason", e)) or type(e).__name__, False
        size = tmp.stat().st_size
        if size > best:  # progress: resume at once, and it does not count as a failure
            best, failures, resumes = size, 0, resumes + 1
            if resumes > MAX_RESUMES:
                raise _GaveUp(f"{why}; gave up after {MAX_RESUMES} resumed attempts")
            log.warning("%s from %s: %s after %d bytes; resuming", rf.name, url, why, size)
            continue
        failures += 1
        if failures >= retries:
            if silent:
                raise NetworkUnavailable(f"{url}: {why} ({failures} attempts)")
            raise _GaveUp(why if failures == 1 else f"{why} ({failures} attempts in a row without progress)")
        log.warning("%s from %s: %s; retrying (%d/%d)", rf.name, url, why, failures + 1, retries)
        time.sleep(BACKOFF_S * failures)


def download_verified(rf: RemoteFile, dest: Path, retries: int, timeout_s: float,
                      unreachable: dict[str, str] | None = None) -> str:
    """Download `rf` onto `dest` (verified, atomic); return the URL it came from.

    Hosts in `unreachable` (host -> why; shared by the files of one fetch) are skipped, and hosts found
    unreachable are added. Raises NetworkUnavailable when no URL's host could be reached, DfgError when
    hosts answered but none gave the file; either way nothing is left behind."""
    unreachable = {} if unreachable is None else unreachable
    failed: list[str] = []  # how each URL whose host answered failed
    with atomic_path(dest) as tmp:
        for url in rf.urls:
            host = urlsplit(url).netloc
            if host in unreachable:
                continue
            try:
                log.info("downloading %s from %s", rf.name, url)
                t0 = time.monotonic()
                _from_url(url, tmp, rf, retries, timeout_s)
                log.info("%s: %s downloaded and verified in %.0f s", rf.name, _megabytes(tmp.stat().st_size),
                         time.monotonic() - t0)
                return url  # leaving the block normally renames the verified file onto `dest`
            except NetworkUnavailable as e:
                unreachable[host] = str(e)
            except urllib.error.HTTPError as e:
                failed.append(f"from {url}: HTTP {e.code} {e.reason}")
            except _GaveUp as e:
                failed.append(f"from {url}: {e}")
        hosts = dict.fromkeys(urlsplit(u).netloc for u in rf.urls)
        offline = [unreachable[h] for h in hosts if h in unreachable]  # "url: reason" each
        if not failed:
            raise NetworkUnavailable("; ".join(offline))
        why = "; ".join([*failed, *(f"from {o}" for o in offline)])
        raise DfgError(f"could not download {rf.name} {why}; nothing was kept; fetch again later, or place a "
                       f"verified copy in {dest.parent}")


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
    unreachable: dict[str, str] = {}  # host -> why: a dead host costs its timeouts once per fetch
    for rf in files:
        dest = out_dir / rf.name
        why = problem(dest, rf)
        if why is None:
            records.append({"file": rf.name, "source": "present"})
            continue
        if dest.exists():
            log.warning("%s: %s; replacing it", dest, why)
        found = None
        for cand in mirror_candidates(rf, mirror_dirs, [*mirrors, *extra_mirrors]):
            if cand.is_file():
                if (why := problem(cand, rf)) is None:
                    found = cand
                    break
                log.warning("mirror file %s ignored: %s", cand, why)
        if found is not None:
            log.info("copying %s from mirror %s", rf.name, found)
            copy_verified(found, dest, rf)
            records.append({"file": rf.name, "source": str(found)})
            continue
        try:
            records.append({"file": rf.name, "source": download_verified(rf, dest, retries, timeout_s, unreachable)})
        except NetworkUnavailable as e:
            offline_reason = offline_reason or f"no network: {e}"
            missing.append(rf)
    if missing:
        raise DfgError(_no_network_message(what, missing, out_dir, mirror_dirs, mirrors, offline_reason or "?"))
    for rf in files:
        if not rf.has_checksum:
            log.warning("%s has no published checksum (checked: %s); recorded its sha256 in %s", rf.name,
                        "size and structure" if rf.size is not None else "structure only", MANIFEST)
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
