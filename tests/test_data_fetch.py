"""`dfg fetch`: mirrors before downloads, content checksums for recompressed mirrors, verified atomic
downloads (from a local HTTP server), clear errors that leave no partial file, and a fast offline failure."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
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
from dfg.data.download import verify
from dfg.data.prepare import prepare_dataset
from dfg.data.registry import DATASETS, RemoteFile

ROOT = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "http://127.0.0.1:9/"  # discard port: nothing listens -> connection refused at once


@pytest.fixture
def params(tmp_path: Path) -> dict:
    p = load_params(ROOT / "params.yaml", semantic=False)
    p["data"]["root"] = str(tmp_path / "data")
    p["fetch"].update(mirrors=[str(tmp_path / "mirror")], retries=2, timeout_s=2)
    return p


@pytest.fixture
def server() -> Iterator[tuple[str, dict]]:
    """A local HTTP server: path -> bytes; ('short', path) entries announce more bytes than they send."""
    files: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            if name not in files:
                self.send_error(404)
                return
            data, announced = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(announced))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", files
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


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


def test_download_verified_and_atomic(tmp_path, params, server):
    base, files = server
    data = b"official bytes" * 1000
    files["train_32x32.mat"] = (data, len(data))
    rf = RemoteFile("train_32x32.mat", (base + "train_32x32.mat",), md5=md5(data))
    raw = tmp_path / "raw"
    DATASETS.get("svhn").with_files([rf]).fetch(raw, params)
    assert (raw / rf.name).read_bytes() == data and listing(raw) == ["fetched.json", "train_32x32.mat"]
    assert json.loads((raw / "fetched.json").read_text())["files"][0]["source"] == rf.urls[0]


def test_download_checksum_mismatch_leaves_nothing(tmp_path, params, server):
    base, files = server
    files["train_32x32.mat"] = (b"tampered", 8)
    rf = RemoteFile("train_32x32.mat", (base + "train_32x32.mat",), md5=md5(b"official"))
    raw = tmp_path / "raw"
    with pytest.raises(DfgError, match="checksum mismatch for train_32x32.mat.*nothing was kept"):
        DATASETS.get("svhn").with_files([rf]).fetch(raw, params)
    assert listing(raw) == []


def test_truncated_download_is_retried_then_fails_clean(tmp_path, params, server):
    base, files = server
    data = b"x" * 5000
    files["test_32x32.mat"] = (data[:1000], len(data))  # connection closes early
    params["fetch"]["retries"] = 2
    rf = RemoteFile("test_32x32.mat", (base + "test_32x32.mat",), md5=md5(data))
    raw = tmp_path / "raw"
    with pytest.raises(DfgError, match=r"could not download test_32x32.mat .*1000 of 5000 bytes"):
        DATASETS.get("svhn").with_files([rf]).fetch(raw, params)
    assert listing(raw) == []


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


def test_unverifiable_truncated_archive_fails_at_prepare_without_output(tmp_path, params):
    """CINIC-10 has no published checksum: a truncated archive passes fetch and is caught by prepare."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for k in range(50):
            noise = np.random.default_rng(k).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(noise).save(png, format="PNG")
            payload = png.getvalue()
            info = tarfile.TarInfo(f"train/cat/img{k}.png")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    raw = tmp_path / "data" / "raw" / "cinic10"
    raw.mkdir(parents=True)
    (raw / "CINIC-10.tar.gz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    DATASETS.get("cinic10").fetch(raw, params)  # present, no checksum to fail
    out = tmp_path / "data" / "prepared" / "cinic10"
    with pytest.raises(DfgError, match="CINIC-10.tar.gz is truncated or corrupt"):
        prepare_dataset(DATASETS.get("cinic10"), raw, out, params)
    assert listing(out.parent) == []  # neither the output nor its temporary folder


def test_offline_fails_fast_naming_urls_and_folders(tmp_path, params):
    spec = DATASETS.get("svhn")
    files = [RemoteFile(f.name, (CLOSED_PORT_URL + f.name,), md5=f.md5) for f in spec.files]
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


def test_cli_fetch_offline_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    """Through `dfg fetch`: the real SVHN entry; the official host is swapped for a closed local port."""
    from dfg.data import download

    raw_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw_params["run"]["methods"] = ["original"]
    raw_params["fetch"] = {"mirrors": [str(tmp_path / "mirror")], "retries": 3, "timeout_s": 10}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    (tmp_path / "workflow").symlink_to(ROOT / "workflow")
    real_open = download.urllib.request.urlopen

    def to_closed_port(req, timeout):
        req.full_url = req.full_url.replace("http://ufldl.stanford.edu/housenumbers/", CLOSED_PORT_URL)
        return real_open(req, timeout=timeout)

    monkeypatch.setattr(download.urllib.request, "urlopen", to_closed_port)
    t0 = time.perf_counter()
    rc = cli_main(["--params", str(tmp_path / "params.yaml"), "fetch", "svhn", "--out", str(tmp_path / "raw")])
    assert rc == 2 and time.perf_counter() - t0 < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfg fetch: error: cannot download svhn")
    assert "http://ufldl.stanford.edu/housenumbers/train_32x32.mat" in err[0] and str(tmp_path / "raw") in err[0]


@pytest.mark.parametrize("name", ["synthdigits", "sklearn-digits"])
def test_generated_datasets_fetch_as_a_manifest_only(tmp_path, params, name):
    raw = tmp_path / "raw" / name
    assert DATASETS.get(name).fetch(raw, params) == []
    assert listing(raw) == ["fetched.json"]
    assert json.loads((raw / "fetched.json").read_text())["files"] == []


def test_silent_host_counts_as_offline_after_one_timeout(tmp_path, params):
    import socket

    import torchvision.datasets.utils  # noqa: F401  (imported by verify(); keep its cost out of the timing)

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/test_32x32.mat"
        params["fetch"].update(retries=3, timeout_s=1)
        rf = RemoteFile("test_32x32.mat", (url,), md5=md5(b"data"))
        t0 = time.perf_counter()
        with pytest.raises(DfgError, match=r"no network: .*no answer within 1 s"):
            DATASETS.get("svhn").with_files([rf]).fetch(tmp_path / "raw", params)
        assert time.perf_counter() - t0 < 4  # retrying would take 3 x 1 s + 1 s + 2 s of backoff
    assert listing(tmp_path / "raw") == []
