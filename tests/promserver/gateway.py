"""An emulated gateway endpoint picker (Gateway API Inference Extension EPP) ``/metrics``.

Series are given as (name, labels) -> value for gauges, or (name, labels) -> per-second rate for
counters (which grow linearly from the start, so ``rate()`` is exact). The exposition carries its
own ``namespace`` label: scrape it with ``honor_labels`` (:func:`gateway_target`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.promserver.prometheus import ScrapeTarget

Key = tuple[str, tuple[tuple[str, str], ...]]
"""(metric name, sorted label pairs)."""


def key(name: str, **labels: str) -> Key:
    """The key of one series."""
    return name, tuple(sorted(labels.items()))


class GatewayExporter:
    """Serves the gauges and counters set on it (edit :attr:`gauges`/:attr:`counters` freely)."""

    def __init__(self) -> None:
        self.gauges: dict[Key, float] = {}
        self.counters: dict[Key, float] = {}
        """Series -> requests per second since :meth:`start`."""
        self._t0 = time.time()
        self._server: ThreadingHTTPServer | None = None
        self.address = ""

    def render(self) -> bytes:
        elapsed = time.time() - self._t0
        lines: list[str] = []
        for kind, series, scale in (
            ("gauge", dict(self.gauges), 1.0),
            ("counter", dict(self.counters), elapsed),
        ):
            names = sorted({name for name, _ in series})
            for name in names:
                lines.append(f"# TYPE {name} {kind}")
                for (series_name, labels), value in series.items():
                    if series_name == name:
                        lines.append(f"{name}{_labels(labels)} {value * scale!r}")
        lines.append("")
        return "\n".join(lines).encode()

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port); returns ``host:port``."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._t0 = time.time()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        return self.address

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _labels(labels: tuple[tuple[str, str], ...] | Mapping[str, str]) -> str:
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    text = ",".join(f'{k}="{v}"' for k, v in pairs)
    return "{" + text + "}" if text else ""


def gateway_target(exporter: GatewayExporter) -> ScrapeTarget:
    """The scrape target of a gateway exporter (labels from the exposition)."""
    return ScrapeTarget(exporter.address, honor_labels=True)
