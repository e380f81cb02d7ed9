"""`dfg fetch`: mirrors before downloads, content checksums for recompressed mirrors, verified atomic
downloads that survive real servers (stalls, dropped connections, servers ignoring Range, HTML pages with
status 200, empty answers, corrupt bytes), directly and through an http_proxy, all from local HTTP
servers (tests/http_fixtures.py); clear errors that leave no partial file; a fast offline failure."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import logging
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from dfg import DfgError
from dfg.cli import main as cli_main
from dfg.config import load_params
from dfg.data import download
from dfg.data.download import problem, verify
from dfg.data.prepare import prepare_dataset
from dfg.data.registry import DATASETS, RemoteFile
from http_fixtures import HTML_PAGE, Origin, Proxy, Reply

ROOT = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port: nothing listens -> connection refused at once
UNRESOLVABLE_URL = "http://nonexistent.invalid/"  # .invalid never resolves (RFC 2606)
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
DATA = np.random.default_rng(0).bytes(300_000)  # a file to download
CUT = 100_000  # where the misbehaving replies stop sending
NAME = "train_32x32.mat"  # an SVHN file name: the tests fetch through the svhn spec


@pytest.fixture
def params(tmp_path: Path) -> dict:
    p = load_params(ROOT / "params.yaml", semantic=False)
    p["data"]["root"] = str(tmp_path / "data")
    p["fetch"].update(mirrors=[str(tmp_path / "mirror")], retries=2, timeout_s=2)
    return p


@pytest.fixture
def fast(params: dict, monkeypatch) -> dict:
    """1 s socket timeout, 3 attempts, short back-off: misbehaving servers cost little test time."""
    monkeypatch.setattr(download, "BACKOFF_S", 0.05)
    params["fetch"].update(retries=3, timeout_s=1)
    return params


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.close()


@pytest.fixture(params=["direct", "proxy"])
def route(request, monkeypatch) -> Iterator[Proxy | None]:
    """Requests go straight to the origin, or through a forwarding proxy named by http_proxy (with
    no_proxy cleared, so that 127.0.0.1 really goes through it)."""
    for var in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    if request.param == "direct":
        yield None
        return
    proxy = Proxy()
    monkeypatch.setenv("http_proxy", proxy.url)
    yield proxy
    proxy.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def fetch_one(tmp_path: Path, params: dict, rf: RemoteFile) -> Path:
    """Fetch `rf` alone through the svhn spec into tmp_path/raw; return that folder."""
    raw = tmp_path / "raw"
    DATASETS.get("svhn").with_files([rf]).fetch(raw, params)
    return raw


def requests_seen(origin: Origin, route: Proxy | None, name: str) -> list[tuple[str | None, int]]:
    """(Range header, status) of each request the origin got for `name`; through the proxy, also checks
    that the proxy saw (and forwarded) every one of them, Range header included."""
    hits = origin.hits_for(name)
    if route is not None:
        assert [r for url, r in route.seen if url.endswith("/" + name)] == [h.range for h in hits]
        assert len(hits) > 0
    return [(h.range, h.status) for h in hits]


def cinic_archive() -> bytes:
    """A small CINIC-10.tar.gz in the official layout: {train,valid,test}/<class>/<name>.png, 32x32 RGB."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for split in ("train", "valid", "test"):
            for k, cls in enumerate(DATASETS.get("cinic10").classes):
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(png, format="PNG")
                info = tarfile.TarInfo(f"{split}/{cls}/cifar10-{split}-{k}.png")
                info.size = len(png.getvalue())
                tar.addfile(info, io.BytesIO(png.getvalue()))
    return buf.getvalue()


def test_recompressed_mirror_file_is_accepted_by_content_md5(tmp_path, params):
    content = bytes(range(256)) * 40
    official = gzip.compress(content, compresslevel=9, mtime=0)
    debian = gzip.compress(content, compresslevel=1, mtime=12345)  # same data, other container
    assert md5(official) != md5(debian)
    spec = DATASETS.get("fashion-mnist")
    (tmp_path / "mirror" / "fashion-mnist").mkdir(parents=True)
    (tmp_path / "mirror" / "fashion-mnist" / "train-labels-idx1-ubyte.gz").write_bytes(debian)
    rf = RemoteFile("train-labels-idx1-ubyte.gz", (CLOSED_PORT_URL + "x.gz",), md5=md5(official),
                    content_md5=md5(content))
    raw = tmp_path / "raw"
    spec.with_files([rf]).fetch(raw, params)
    assert (raw / rf.name).read_bytes() == debian
    record = json.loads((raw / "fetched.json").read_text())["files"][0]
    assert record["source"].endswith("mirror/fashion-mnist/train-labels-idx1-ubyte.gz")
    assert record["sha256"] == hashlib.sha256(debian).hexdigest()
    # a second fetch keeps the verified file in place
    spec.with_files([rf]).fetch(raw, params)
    assert json.loads((raw / "fetched.json").read_text())["files"][0]["source"] == "present"


def test_download_verified_and_atomic(tmp_path, params, origin, route):
    rf = RemoteFile(NAME, (origin.add(NAME, DATA),), md5=md5(DATA))
    raw = fetch_one(tmp_path, params, rf)
    assert (raw / NAME).read_bytes() == DATA and listing(raw) == ["fetched.json", NAME]
    assert json.loads((raw / "fetched.json").read_text())["files"][0]["source"] == rf.urls[0]
    assert requests_seen(origin, route, NAME) == [(None, 200)]


# --- servers that stall, drop, or ignore Range: resume where possible, never restart needlessly ---


def test_stall_mid_transfer_resumes_with_range(tmp_path, fast, origin, route):
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, Reply(cut_after=CUT, then="stall")),), md5=md5(DATA))
    t0 = time.perf_counter()
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA and listing(raw) == ["fetched.json", NAME]
    assert requests_seen(origin, route, NAME) == [(None, 200), (f"bytes={CUT}-", 206)]
    assert origin.served(NAME) == len(DATA)  # the first CUT bytes were kept, not downloaded twice
    assert time.perf_counter() - t0 < 2.5  # one 1 s timeout, no back-off after progress


def test_dropped_connection_resumes_with_range(tmp_path, fast, origin, route):
    url = origin.add(NAME, DATA, Reply(cut_after=CUT), Reply(cut_after=CUT))  # drops twice, then complete
    rf = RemoteFile(NAME, (url,), md5=md5(DATA))
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA
    assert requests_seen(origin, route, NAME) == [(None, 200), (f"bytes={CUT}-", 206), (f"bytes={2 * CUT}-", 206)]
    assert origin.served(NAME) == len(DATA)


def test_progress_is_not_a_failure_but_is_bounded(tmp_path, fast, origin, route, monkeypatch):
    """Seven dropped connections with retries=3: four sent nothing (failures), three sent some bytes
    (progress, which resets the count), so there are never 3 failures in a row and the download goes on
    to the end; a server that never finishes is given up after MAX_RESUMES resumed attempts."""
    step = len(DATA) // 8
    plan = [Reply(cut_after=0), Reply(cut_after=step)] * 3 + [Reply(cut_after=0)]
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, *plan),), md5=md5(DATA))
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA and len(origin.hits_for(NAME)) == 8
    assert origin.served(NAME) == len(DATA)

    monkeypatch.setattr(download, "MAX_RESUMES", 3)
    other = "test_32x32.mat"
    rf = RemoteFile(other, (origin.add(other, DATA, default=Reply(cut_after=1000)),), md5=md5(DATA))
    with pytest.raises(DfgError, match=r"could not download test_32x32.mat .*gave up after 3 resumed attempts"):
        fetch_one(tmp_path, fast, rf)
    assert len(origin.hits_for(other)) == 4 and listing(tmp_path / "raw") == ["fetched.json", NAME]


def test_server_ignoring_range_restarts_from_zero(tmp_path, fast, origin, route):
    url = origin.add(NAME, DATA, Reply(cut_after=CUT, ranges=False), default=Reply(ranges=False))
    raw = fetch_one(tmp_path, fast, RemoteFile(NAME, (url,), md5=md5(DATA)))
    assert (raw / NAME).read_bytes() == DATA
    assert requests_seen(origin, route, NAME) == [(None, 200), (f"bytes={CUT}-", 200)]
    assert origin.served(NAME) == CUT + len(DATA)


def test_truncated_download_is_retried_then_fails_clean(tmp_path, fast, origin, route):
    """Every answer stops at 1000 of the announced bytes and Range is ignored: the restarts make no
    progress beyond the first attempt, so 1 + retries attempts, then one clear error and no file."""
    url = origin.add(NAME, DATA[:5000], default=Reply(cut_after=1000, ranges=False))
    rf = RemoteFile(NAME, (url,), md5=md5(DATA[:5000]))
    with pytest.raises(DfgError, match=r"could not download train_32x32.mat .*1000 of 5000 bytes.*nothing was kept"):
        fetch_one(tmp_path, fast, rf)
    assert listing(tmp_path / "raw") == []
    assert requests_seen(origin, route, NAME) == [(None, 200)] + [("bytes=1000-", 200)] * 3


def test_file_shorter_than_announced_is_not_resumed_forever(tmp_path, fast, origin, route):
    """The server has 1000 bytes but announces 5000, and answers 416 to `Range: bytes=1000-`: each restart
    gets the same 1000 bytes again, which is no progress (the partial file never grows beyond its largest
    size so far), so the download ends after `retries` attempts in a row without progress."""
    url = origin.add(NAME, DATA[:1000], default=Reply(extra=4000))
    with pytest.raises(DfgError, match=r"from .*: HTTP 416 .*\(3 attempts in a row without progress\)"):
        fetch_one(tmp_path, fast, RemoteFile(NAME, (url,), md5=md5(DATA[:5000])))
    assert requests_seen(origin, route, NAME) == [(None, 200), ("bytes=1000-", 416)] * 2
    assert listing(tmp_path / "raw") == []


# --- answers that are not the file: rejected before they are saved, then retried ---


@pytest.fixture
def renamed(monkeypatch) -> list[tuple[str, bytes]]:
    """(official name, first bytes) of every file renamed into place (atomic_path's os.replace)."""
    seen: list[tuple[str, bytes]] = []
    real_replace = os.replace

    def spy(src, dst) -> None:
        seen.append((Path(dst).name, Path(src).read_bytes()[:32]))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    return seen


@pytest.mark.parametrize("body", ["html", "html-untyped"])
def test_html_page_with_status_200_is_rejected_then_retried(tmp_path, fast, origin, route, renamed, body):
    """No checksum here (as for CINIC-10), so only the HTML check stands between the page and the archive;
    'html-untyped' is served as application/octet-stream and recognised by its first bytes."""
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, Reply(body=body)),))
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA
    assert requests_seen(origin, route, NAME) == [(None, 200), (None, 200)]
    assert [name for name, _ in renamed] == [NAME, "fetched.json"] and renamed[0][1] == DATA[:32]

    other = "test_32x32.mat"
    rf = RemoteFile(other, (origin.add(other, DATA, default=Reply(body=body)),), md5=md5(DATA))
    with pytest.raises(DfgError, match=r"could not download test_32x32.mat .*an HTML page.*nothing was kept"):
        fetch_one(tmp_path, fast, rf)
    assert len(origin.hits_for(other)) == 3 and listing(tmp_path / "raw") == ["fetched.json", NAME]
    assert not any(head.startswith(HTML_PAGE[:15]) for _, head in renamed)


def test_empty_answer_is_rejected_then_retried(tmp_path, fast, origin, route, caplog):
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, Reply(body="empty")),))  # no checksum to catch it
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA
    assert requests_seen(origin, route, NAME) == [(None, 200), (None, 200)]
    assert "an empty answer (Content-Length: 0); retrying (2/3)" in caplog.text  # refused on its headers


def test_wrong_announced_size_is_rejected_before_the_body(tmp_path, fast, origin, route, caplog):
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, Reply(extra=10)),), md5=md5(DATA), size=len(DATA))
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA
    assert requests_seen(origin, route, NAME) == [(None, 200), (None, 200)]
    assert f"the server announces {len(DATA) + 10} bytes, expected {len(DATA)}; retrying" in caplog.text


def test_checksum_mismatch_is_retried_from_zero(tmp_path, fast, origin, route):
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, Reply(body="corrupt")),), md5=md5(DATA))
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA
    assert requests_seen(origin, route, NAME) == [(None, 200), (None, 200)]  # a fresh download, no Range


def test_checksum_mismatch_every_time_fails_clean(tmp_path, fast, origin, route):
    rf = RemoteFile(NAME, (origin.add(NAME, DATA, default=Reply(body="corrupt")),), md5=md5(DATA))
    with pytest.raises(DfgError) as err:
        fetch_one(tmp_path, fast, rf)
    msg = str(err.value)
    assert msg.startswith(f"could not download {NAME} from {rf.urls[0]}: checksum mismatch: expected md5 {md5(DATA)}")
    assert "(3 attempts in a row without progress); nothing was kept" in msg and "\n" not in msg
    assert str(tmp_path / "raw") in msg  # where a verified copy may be placed
    assert listing(tmp_path / "raw") == []
    assert requests_seen(origin, route, NAME) == [(None, 200)] * 3


def test_file_missing_at_one_url_comes_from_the_next(tmp_path, fast, origin, route):
    rf = RemoteFile(NAME, (origin.base + "moved/" + NAME, origin.add(NAME, DATA)), md5=md5(DATA))
    raw = fetch_one(tmp_path, fast, rf)
    assert (raw / NAME).read_bytes() == DATA
    assert json.loads((raw / "fetched.json").read_text())["files"][0]["source"] == rf.urls[1]
    assert [(h.name, h.status) for h in origin.hits] == [("moved/" + NAME, 404), (NAME, 200)]


# --- CINIC-10: no published checksum; size (when known) and a tar.gz readable to its end ---


def test_cinic10_archive_structural_check(tmp_path, fast, origin):
    archive = cinic_archive()
    path = tmp_path / "CINIC-10.tar.gz"
    rf = RemoteFile("CINIC-10.tar.gz", ("http://unused.invalid/",))
    assert not rf.has_checksum and DATASETS.get("cinic10").files[0].has_checksum is False
    cases = {
        "complete": archive,
        "half": archive[: len(archive) // 2],
        "no gzip trailer": archive[:-8],  # every tar member is there; only the CRC/length trailer is cut
        "html page": HTML_PAGE,
        "empty": b"",
    }
    verdicts = {}
    for case, data in cases.items():
        path.write_bytes(data)
        verdicts[case] = problem(path, rf)
    assert verdicts["complete"] is None
    for case in ("half", "no gzip trailer", "html page"):
        assert (verdicts[case] or "").startswith("not a readable tar.gz"), (case, verdicts[case])
    assert verdicts["empty"] == "an empty file"
    path.write_bytes(archive)
    assert verify(path, dataclasses.replace(rf, size=len(archive)))
    assert problem(path, dataclasses.replace(rf, size=len(archive) + 1)) == (
        f"{len(archive)} bytes, expected {len(archive) + 1}")

    # through `dfg fetch` of the real cinic10 entry (its URL pointed at the local server): a truncated
    # archive with a matching Content-Length (the transfer cannot tell) is refused; the complete one is not
    spec = DATASETS.get("cinic10")
    url = origin.add("CINIC-10.tar.gz", archive)
    half = RemoteFile("CINIC-10.tar.gz", (origin.add("half/CINIC-10.tar.gz", archive[: len(archive) // 2]),))
    raw = tmp_path / "data" / "raw" / "cinic10"
    with pytest.raises(DfgError, match=r"could not download CINIC-10.tar.gz .*not a readable tar.gz"):
        spec.with_files([half]).fetch(raw, fast)
    assert listing(raw) == []
    spec.with_files([dataclasses.replace(spec.files[0], urls=(url,))]).fetch(raw, fast)
    assert (raw / "CINIC-10.tar.gz").read_bytes() == archive
    prepared = tmp_path / "data" / "prepared" / "cinic10"
    prepare_dataset(spec, raw, prepared, fast)  # and it is what prepare reads
    assert json.loads((prepared / "meta.json").read_text())["num_classes"] == 10


def test_truncated_archive_in_mirror_is_rejected(tmp_path, params):
    archive = gzip.compress(b"tar content" * 500)
    folder = tmp_path / "mirror" / "cifar10"
    folder.mkdir(parents=True)
    (folder / "cifar-10-python.tar.gz").write_bytes(archive[: len(archive) // 2])
    rf = RemoteFile("cifar-10-python.tar.gz", (CLOSED_PORT_URL + "cifar-10-python.tar.gz",), md5=md5(archive))
    raw = tmp_path / "raw"
    assert not verify(folder / rf.name, rf)
    with pytest.raises(DfgError, match="cannot download cifar10"):
        DATASETS.get("cifar10").with_files([rf]).fetch(raw, params)
    assert listing(raw) == []


def test_truncated_cinic10_archive_is_refused_by_fetch_and_by_prepare(tmp_path, params):
    """A truncated archive already in the raw folder: fetch does not accept it as present (it would
    download it again; here the host is unreachable), and prepare, given it, fails without output."""
    archive = cinic_archive()
    raw = tmp_path / "data" / "raw" / "cinic10"
    raw.mkdir(parents=True)
    (raw / "CINIC-10.tar.gz").write_bytes(archive[: len(archive) // 2])
    spec = DATASETS.get("cinic10")
    offline = spec.with_files([dataclasses.replace(spec.files[0], urls=(CLOSED_PORT_URL + "CINIC-10.tar.gz",))])
    with pytest.raises(DfgError, match="cannot download cinic10 .*no network"):
        offline.fetch(raw, params)
    assert (raw / "CINIC-10.tar.gz").read_bytes() == archive[: len(archive) // 2]  # left as it was
    out = tmp_path / "data" / "prepared" / "cinic10"
    with pytest.raises(DfgError, match="CINIC-10.tar.gz is truncated or corrupt"):
        prepare_dataset(spec, raw, out, params)
    assert listing(out.parent) == []  # neither the output nor its temporary folder


# --- no network: fail fast, naming the files and where to put them ---


@pytest.mark.parametrize("base", [CLOSED_PORT_URL, UNRESOLVABLE_URL], ids=["refused", "unresolvable"])
def test_offline_fails_fast_naming_urls_and_folders(tmp_path, params, base, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    spec = DATASETS.get("svhn")
    files = [RemoteFile(f.name, (base + f.name,), md5=f.md5) for f in spec.files]
    raw = tmp_path / "data" / "raw" / "svhn"
    t0 = time.perf_counter()
    with pytest.raises(DfgError) as err:
        spec.with_files(files).fetch(raw, params)
    assert time.perf_counter() - t0 < 5
    msg = str(err.value)
    assert "\n" not in msg and "no network" in msg
    for f in files:
        assert f"{f.name} <- {f.urls[0]}" in msg
    assert str(raw) in msg and str(tmp_path / "mirror" / "svhn") in msg
    assert listing(raw) == []


def test_offline_proxy_fails_fast(tmp_path, params, monkeypatch):
    """http_proxy names a proxy that refuses connections: no network, whatever the origin."""
    monkeypatch.setenv("http_proxy", CLOSED_PORT_URL.rstrip("/"))
    for var in ("HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    rf = RemoteFile(NAME, ("http://data.example.org/" + NAME,), md5=md5(DATA))
    t0 = time.perf_counter()
    with pytest.raises(DfgError, match=r"cannot download svhn \(no network: .*Connection refused"):
        fetch_one(tmp_path, params, rf)
    assert time.perf_counter() - t0 < 5 and listing(tmp_path / "raw") == []


def test_cli_fetch_offline_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    """Through `dfg fetch`: the real SVHN entry; the official host is swapped for a closed local port."""
    raw_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw_params["run"]["methods"] = ["original"]
    raw_params["fetch"] = {"mirrors": [str(tmp_path / "mirror")], "retries": 3, "timeout_s": 10}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    (tmp_path / "workflow").symlink_to(ROOT / "workflow")
    real_open = download._open

    def to_closed_port(req, timeout):
        req.full_url = req.full_url.replace("http://ufldl.stanford.edu/housenumbers/", CLOSED_PORT_URL)
        return real_open(req, timeout=timeout)

    monkeypatch.setattr(download, "_open", to_closed_port)
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    rc = cli_main(["--params", str(tmp_path / "params.yaml"), "fetch", "svhn", "--out", str(tmp_path / "raw")])
    assert rc == 2 and time.perf_counter() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfg fetch: error: cannot download svhn")
    assert "http://ufldl.stanford.edu/housenumbers/train_32x32.mat" in err[0] and str(tmp_path / "raw") in err[0]


@pytest.mark.parametrize("name", ["synthdigits", "sklearn-digits", "mnist5k"])
def test_generated_datasets_fetch_as_a_manifest_only(tmp_path, params, name):
    raw = tmp_path / "raw" / name
    assert DATASETS.get(name).fetch(raw, params) == []
    assert listing(raw) == ["fetched.json"]
    assert json.loads((raw / "fetched.json").read_text())["files"] == []


def test_silent_host_is_retried_then_given_up_for_the_remaining_files(tmp_path, fast, monkeypatch):
    """A host that accepts connections and never answers: a timeout before any answer is retried (it
    may be a slow host), but once every attempt got none the host counts as unreachable, and the
    second file on it costs nothing. Both files are named in the no-network message."""
    import torchvision.datasets.utils  # noqa: F401  (imported by verify(); keep its cost out of the timing)

    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    accepted: list[socket.socket] = []
    stop = threading.Event()
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(0.1)

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(silent.accept()[0])
                except TimeoutError:
                    pass

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        files = [RemoteFile(n, (base + n,), md5=md5(DATA)) for n in ("train_32x32.mat", "test_32x32.mat")]
        fast["fetch"]["retries"] = 2
        t0 = time.perf_counter()
        try:
            with pytest.raises(DfgError, match=r"no network: .*no answer within 1 s \(2 attempts\)") as err:
                DATASETS.get("svhn").with_files(files).fetch(tmp_path / "raw", fast)
            elapsed = time.perf_counter() - t0
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()
    assert len(accepted) == 2  # two attempts for the first file, none for the second
    assert 2 <= elapsed < 3.5
    assert all(f"{f.name} <- {f.urls[0]}" in str(err.value) for f in files)
    assert listing(tmp_path / "raw") == []


def test_connect_timeouts_count_as_unreachable(tmp_path, fast, monkeypatch):
    """Packets silently dropped: every connection attempt times out. Retried, then the host is given up."""
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    calls = []

    def no_connection(address, timeout=None, *args, **kwargs):
        calls.append(address)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    files = [RemoteFile(n, ("http://data.example.org/" + n,), md5=md5(DATA))
             for n in ("train_32x32.mat", "test_32x32.mat")]
    with pytest.raises(DfgError, match=r"no network: .*no connection within 1 s \(3 attempts\)"):
        DATASETS.get("svhn").with_files(files).fetch(tmp_path / "raw", fast)
    assert calls == [("data.example.org", 80)] * 3
    assert listing(tmp_path / "raw") == []


# --- acceptance: `dfg fetch fashion-mnist` against a misbehaving server, and with no network ---


def write_params(tmp_path: Path, fetch: dict) -> Path:
    raw_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw_params["run"]["methods"] = ["original"]
    raw_params["fetch"] = fetch
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    (tmp_path / "workflow").symlink_to(ROOT / "workflow")
    return tmp_path / "params.yaml"


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(),
                    reason=f"needs Debian's dataset-fashion-mnist files in {DEBIAN_FMNIST}")
def test_cli_fetch_fashion_mnist_survives_a_stall_and_an_html_page(tmp_path, monkeypatch, origin, route):
    """The four real files (Debian's recompressed copies, verified by the real entry's content MD5s) from
    a local server that stalls the first request of train-images after 2 MB and answers the first request
    of t10k-labels with an HTML page; the mirror folder is empty."""
    spec = DATASETS.get("fashion-mnist")
    stall_at = 2 << 20
    plans = {"train-images-idx3-ubyte.gz": [Reply(cut_after=stall_at, then="stall")],
             "t10k-labels-idx1-ubyte.gz": [Reply(body="html")]}
    served = {f.name: (DEBIAN_FMNIST / f.name).read_bytes() for f in spec.files}
    files = [dataclasses.replace(f, urls=(origin.add(f.name, served[f.name], *plans.get(f.name, [])),))
             for f in spec.files]
    monkeypatch.setitem(DATASETS._items, spec.name, spec.with_files(files))
    (tmp_path / "empty-mirror").mkdir()
    params = write_params(tmp_path, {"mirrors": [str(tmp_path / "empty-mirror")], "retries": 3, "timeout_s": 1})
    raw = tmp_path / "raw"
    t0 = time.perf_counter()
    rc = cli_main(["--params", str(params), "fetch", "fashion-mnist", "--out", str(raw)])
    assert rc == 0 and time.perf_counter() - t0 < 60
    for f in spec.files:  # the real entry's checksums
        assert verify(raw / f.name, f) and (raw / f.name).read_bytes() == served[f.name]
    manifest = json.loads((raw / "fetched.json").read_text())
    assert [r["source"] for r in manifest["files"]] == [f.urls[0] for f in files]
    assert requests_seen(origin, route, "train-images-idx3-ubyte.gz") == [(None, 200), (f"bytes={stall_at}-", 206)]
    assert origin.served("train-images-idx3-ubyte.gz") == len(served["train-images-idx3-ubyte.gz"])
    assert requests_seen(origin, route, "t10k-labels-idx1-ubyte.gz") == [(None, 200), (None, 200)]
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        assert requests_seen(origin, route, name) == [(None, 200)]
    assert listing(raw) == sorted([*served, "fetched.json"])


def test_cli_fetch_fashion_mnist_without_network_fails_fast(tmp_path, monkeypatch, capsys):
    """No network at all (the official host does not resolve), with the default retries and timeout."""
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    spec = DATASETS.get("fashion-mnist")
    files = [dataclasses.replace(f, urls=(UNRESOLVABLE_URL + f.name,)) for f in spec.files]
    monkeypatch.setitem(DATASETS._items, spec.name, spec.with_files(files))
    (tmp_path / "empty-mirror").mkdir()
    params = write_params(tmp_path, {"mirrors": [str(tmp_path / "empty-mirror")], "retries": 3, "timeout_s": 10})
    raw = tmp_path / "raw"
    t0 = time.perf_counter()
    rc = cli_main(["--params", str(params), "fetch", "fashion-mnist", "--out", str(raw)])
    assert rc == 2 and time.perf_counter() - t0 < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfg fetch: error: cannot download fashion-mnist (no network")
    for f in files:
        assert f"{f.name} <- {f.urls[0]}" in err[0]
    assert f"place them in {raw} or {tmp_path / 'empty-mirror' / 'fashion-mnist'}" in err[0]
    assert listing(raw) == []


def test_progress_lines_without_a_terminal(tmp_path, params, origin, monkeypatch, caplog):
    """In a log file (no terminal, so no tqdm bar) the transfer reports its size, share and rate; here a
    line after every block (PROGRESS_EVERY_S = 0), and one line when the file is verified."""
    monkeypatch.setattr(download, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(download, "CHUNK", 64 * 1024)                    # several blocks of the 300 kB file
    rf = RemoteFile(NAME, (origin.add(NAME, DATA),), md5=md5(DATA))
    with caplog.at_level(logging.INFO, logger="dfg.data.download"):
        fetch_one(tmp_path, params, rf)
    lines = [r.getMessage() for r in caplog.records if r.name == "dfg.data.download"]
    assert lines[0] == f"downloading {NAME} from {rf.urls[0]}"
    progress = [m for m in lines if " of 0.3 MB (" in m]
    assert progress and all(m.startswith(f"{NAME}: ") and m.endswith(" MB/s") for m in progress)
    assert progress[-1].startswith(f"{NAME}: 0.3 MB of 0.3 MB (100 %)")
    assert lines[-1].startswith(f"{NAME}: 0.3 MB downloaded and verified in ")
