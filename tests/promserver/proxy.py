"""An HTTP proxy in front of the real Prometheus for connection tests (127.0.0.1 only).

It forwards ``GET``/``POST`` requests to the upstream server and can:

* require headers (``Authorization``, ``X-Scope-OrgID``, ...) and answer 401 otherwise;
* serve the API under a path prefix (``/prom/api/v1/query``) and strip it;
* count requests (``queries``: the PromQL of each ``/api/v1/query`` call);
* delay answers, fail the next N requests with a status (e.g. 503), or corrupt the body
  (``truncate``: cut the JSON in half; ``garbage``: not JSON at all).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

BodyMode = Literal["pass", "truncate", "garbage"]


class PrometheusProxy:
    """A checking, counting, misbehaving proxy.

    Args:
        upstream: Base URL of the real Prometheus.
        prefix: Path prefix the proxy serves under (``""``: none).
        tls: Serve HTTPS with this server context (certificate loaded).
    """

    def __init__(self, upstream: str, prefix: str = "", tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.tls = tls
        self.prefix = prefix.rstrip("/")
        self.required_headers: dict[str, str] = {}
        self.delay = 0.0
        self.fail_next = 0
        self.fail_status = 503
        self.body_mode: BodyMode = "pass"
        self.unserved: set[str] = set()
        """API paths answered 404, as by a query-only endpoint (e.g. ``/api/v1/rules``)."""
        self.queries: list[str] = []
        self.rejected = 0
        self.seen_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL clients should use (including the prefix)."""
        assert self.port is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.prefix}"

    def reset(self) -> None:
        """Back to a transparent, counting proxy."""
        with self._lock:
            self.required_headers = {}
            self.delay = 0.0
            self.fail_next = 0
            self.body_mode = "pass"
            self.unserved = set()
            self.queries = []
            self.rejected = 0
            self.seen_headers = []

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes | None) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        path = parsed.path
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                self._reply(handler, 404, b"not under prefix")
                return
            path = path[len(self.prefix) :]
        headers = dict(handler.headers.items())
        with self._lock:
            self.seen_headers.append(headers)
            for name, value in self.required_headers.items():
                if handler.headers.get(name) != value:
                    self.rejected += 1
                    self._reply(handler, 401, b'{"status":"error","error":"unauthorized"}')
                    return
            if path == "/api/v1/query":
                params = urllib.parse.parse_qs(parsed.query)
                if body:
                    params.update(urllib.parse.parse_qs(body.decode()))
                self.queries.extend(params.get("query", []))
            if path in self.unserved:
                self._reply(handler, 404, b"404 page not found\n")
                return
            fail = self.fail_next > 0
            if fail:
                self.fail_next -= 1
            delay, mode = self.delay, self.body_mode
        if delay:
            time.sleep(delay)
        if fail:
            self._reply(handler, self.fail_status, b'{"status":"error","error":"injected"}')
            return
        url = self.upstream + path + (f"?{parsed.query}" if parsed.query else "")
        request = urllib.request.Request(url, data=body, method=handler.command)  # noqa: S310 - upstream is the test's own http://127.0.0.1 server
        if body is not None:
            request.add_header("Content-Type", handler.headers.get("Content-Type", ""))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - as above
                status, payload = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        if mode == "truncate":
            payload = payload[: max(1, len(payload) // 2)]
        elif mode == "garbage":
            payload = b"<html>502 Bad Gateway from a load balancer</html>"
        self._reply(handler, status, payload)

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.wfile.write(payload)  # the client may have given up (timeout test)

    def start(self) -> str:
        """Listen on 127.0.0.1 (free port). Returns the client URL."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle(self, self.rfile.read(length))

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def require(self, headers: Mapping[str, str]) -> None:
        """Answer 401 unless every header has exactly this value."""
        with self._lock:
            self.required_headers = dict(headers)
