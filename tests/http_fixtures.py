"""Local HTTP servers that misbehave like real ones, for the download tests (tests/test_data_fetch.py).

`Origin` serves named files and answers each request to a name with the next `Reply` planned for it
(then with its default reply): the whole file, a part of it followed by a stall or a dropped connection,
an HTML error page, an empty body, corrupted bytes, a Content-Length larger than the file; it honours `Range: bytes=N-` (206 with Content-Range)
unless the reply says not to. `Proxy` is a forwarding HTTP proxy: it re-issues the absolute-URI GET
requests urllib sends to an `http_proxy` and streams the answer back as it arrives. Both record what
they saw, so tests can assert on headers and on the bytes actually served.
"""

from __future__ import annotations

import http.client
import http.server
import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
             b"<body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>\n")
STALL_S = 3.0  # longer than the tests' fetch.timeout_s (1 s); cut short when the server stops


@dataclass(frozen=True)
class Reply:
    """How the origin answers one request."""

    body: str = "file"  # file | corrupt (same length, other bytes) | html | html-untyped | empty
    cut_after: int | None = None  # stop after this many body bytes, although Content-Length says more
    then: str = "drop"  # after the cut: drop (close the connection) | stall (send nothing for STALL_S)
    ranges: bool = True  # honour Range (206); False: answer 200 with the whole file
    extra: int = 0  # announce this many bytes more than the file has (a truncated copy upstream)


@dataclass
class Hit:
    name: str
    range: str | None
    status: int = 0
    sent: int = 0  # body bytes written to the socket


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _start(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[_Server, threading.Thread]:
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return httpd, thread


class Origin:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.plans: dict[str, list[Reply]] = defaultdict(list)
        self.defaults: dict[str, Reply] = {}
        self.hits: list[Hit] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                origin._serve(self)

            def log_message(self, *args) -> None:
                pass

        self._httpd, self._thread = _start(Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def add(self, name: str, data: bytes, *plan: Reply, default: Reply = Reply()) -> str:
        """Serve `data` as `name`: the n-th request gets plan[n], later ones `default`. Returns the URL."""
        self.files[name] = data
        self.plans[name] = list(plan)
        self.defaults[name] = default
        return self.base + name

    def hits_for(self, name: str) -> list[Hit]:
        return [h for h in self.hits if h.name == name]

    def served(self, name: str) -> int:
        return sum(h.sent for h in self.hits_for(name))

    def close(self) -> None:
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _serve(self, req: http.server.BaseHTTPRequestHandler) -> None:
        name = urlsplit(req.path).path.lstrip("/")
        with self._lock:
            hit = Hit(name, req.headers.get("Range"))
            self.hits.append(hit)
            reply = self.plans[name].pop(0) if self.plans.get(name) else self.defaults.get(name, Reply())
        if name not in self.files:
            hit.status = 404
            req.send_error(404)
            return
        data, ctype = self.files[name], "application/octet-stream"
        if reply.body == "corrupt":
            data = bytes(b ^ 0x5A for b in data)
        elif reply.body in ("html", "html-untyped"):
            data, ctype = HTML_PAGE, "text/html; charset=utf-8" if reply.body == "html" else ctype
        elif reply.body == "empty":
            data = b""
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", hit.range or "")
        if m and reply.ranges and reply.body == "file":
            start = int(m.group(1))
            if start >= len(data):
                hit.status = 416
                req.send_error(416)
                return
        hit.status = 206 if start else 200
        req.send_response(hit.status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(data) - start + reply.extra))
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.end_headers()
        body = data[start:] if reply.cut_after is None else data[start:start + reply.cut_after]
        try:
            for i in range(0, len(body), 1 << 16):
                chunk = body[i:i + (1 << 16)]
                # counted before the write: once the client holds every byte, the count is final (counting
                # after it raced with the test's assertion on a loaded machine)
                hit.sent += len(chunk)
                try:
                    req.wfile.write(chunk)
                except OSError:
                    hit.sent -= len(chunk)
                    raise
            if reply.cut_after is not None and reply.then == "stall":
                self.stop.wait(STALL_S)
        except OSError:  # the client went away
            pass
        # returning closes the connection (HTTP/1.0): after a cut, the client sees a short body


class Proxy:
    """A forwarding proxy for http:// URLs, as urllib uses one when http_proxy is set."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []  # (absolute URL, Range header)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self)

            def log_message(self, *args) -> None:
                pass

        self._httpd, self._thread = _start(Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _forward(self, req: http.server.BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)  # absolute URI: http://host:port/path
        self.seen.append((req.path, req.headers.get("Range")))
        headers = {k: req.headers[k] for k in ("Range", "User-Agent") if req.headers.get(k)}
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=STALL_S + 5)
        try:
            conn.request("GET", url.path, headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            req.send_error(502, f"origin unreachable: {e}")
            conn.close()
            return
        try:
            req.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() in ("content-type", "content-length", "content-range"):
                    req.send_header(k, v)
            req.end_headers()
            while chunk := resp.read1(1 << 16):  # pass on what arrives, as it arrives (stalls included)
                req.wfile.write(chunk)
        except (OSError, http.client.HTTPException):  # origin or client went away: drop the connection
            pass
        finally:
            conn.close()
