"""A real Prometheus server for tests: temp config and data, 127.0.0.1, free port, 1 s scrapes.

Never skipped: if the ``prometheus`` binary is missing, :func:`require_prometheus` fails the test
with an explicit message (``make prometheus`` installs the Debian package).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml


def require_prometheus() -> str:
    """The path of the ``prometheus`` binary; fails the calling test if there is none."""
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if path is None:
        pytest.fail(
            "the 'prometheus' binary is not on PATH: integration tests need a real Prometheus "
            "server (install it with `make prometheus`, i.e. apt-get install prometheus)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape target: ``host:port`` with the labels Prometheus attaches to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    """Target labels, typically ``namespace`` and ``pod`` (as Kubernetes SD relabelling does)."""
    honor_labels: bool = False
    """Keep the exposition's own ``namespace``/``pod`` labels (a fleet/federation exporter)."""


class PrometheusServer:
    """A ``prometheus`` process with its own config file and TSDB directory.

    Args:
        workdir: Directory for ``prometheus.yml`` and the TSDB (kept across restarts).
        scrape_interval: Global scrape interval (and timeout), e.g. ``"1s"``.
        evaluation_interval: Global rule evaluation interval (rule groups may set their own).
    """

    def __init__(
        self, workdir: Path, scrape_interval: str = "1s", evaluation_interval: str = "15s"
    ) -> None:
        self.binary = require_prometheus()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.data_path = workdir / "data"
        self.log_path = workdir / "prometheus.log"
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.port = free_port()
        self.targets: list[ScrapeTarget] = []
        self.rule_files: list[Path] = []
        """Rule files loaded (set before :meth:`start`, or change and :meth:`reconfigure`)."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._process is not None and self._process.poll() is None

    def _write_config(self) -> None:
        groups: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for target in self.targets:
            groups[target.honor_labels].append(
                {"targets": [target.address], "labels": dict(target.labels)}
            )
        scrape_configs = []
        for honor, static in groups.items():
            if not static:
                continue
            scrape_configs.append(
                {
                    "job_name": "fleet" if honor else "pods",
                    "honor_labels": honor,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": static,
                }
            )
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": scrape_configs,
        }
        if self.rule_files:
            config["rule_files"] = [str(path) for path in self.rule_files]
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        tmp.replace(self.config_path)

    def start(self, targets: Sequence[ScrapeTarget] | None = None, timeout: float = 30.0) -> None:
        """Start (or restart on the same port and data) and wait until ready."""
        if targets is not None:
            self.targets = list(targets)
        if self.running:
            return
        self._write_config()
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_path}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.wait_ready(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout)
        self._process = None

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:  # noqa: S310 - fixed http URL on 127.0.0.1
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until ``/-/ready`` answers 200; fails with the server log otherwise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._process is not None and self._process.poll() is not None:
                pytest.fail(f"prometheus exited early:\n{self.log_tail()}", pytrace=False)
            try:
                status, _ = self._get("/-/ready", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"prometheus not ready after {timeout}s:\n{self.log_tail()}", pytrace=False)

    def reconfigure(self, targets: Sequence[ScrapeTarget], timeout: float = 10.0) -> None:
        """Replace the targets and reload the configuration (``POST /-/reload``)."""
        self.targets = list(targets)
        self._write_config()
        request = urllib.request.Request(self.url + "/-/reload", method="POST")  # noqa: S310 - fixed http URL on 127.0.0.1
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
            assert response.status == 200

    def active_targets(self) -> list[dict[str, Any]]:
        """``/api/v1/targets`` active targets."""
        status, body = self._get("/api/v1/targets?state=active")
        assert status == 200, body
        return list(json.loads(body)["data"]["activeTargets"])

    def wait_targets_up(self, count: int | None = None, timeout: float = 30.0) -> None:
        """Wait until every configured target (or ``count`` of them) has been scraped as up."""
        want = len(self.targets) if count is None else count
        end = time.monotonic() + timeout
        health: list[str] = []
        while time.monotonic() < end:
            health = [t.get("health", "") for t in self.active_targets()]
            if sum(1 for h in health if h == "up") >= want:
                return
            time.sleep(0.2)
        pytest.fail(f"targets not up after {timeout}s: {health}\n{self.log_tail()}", pytrace=False)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Run an instant query directly (for comparisons in tests); asserts success."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        status, body = self._get("/api/v1/query?" + urllib.parse.urlencode(params))
        assert status == 200, body[:500]
        return list(json.loads(body)["data"]["result"])

    def wait_for(self, promql: str, predicate: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Poll a query until ``predicate(result)`` is true; fails after ``timeout``."""
        end = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < end:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(0.25)
        pytest.fail(f"condition on {promql!r} not met after {timeout}s: {result}", pytrace=False)
