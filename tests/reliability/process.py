"""The real controller as a subprocess (``python -m autoscaler run``) against test servers.

The fake API server runs in the test process (so the test's event loop must keep running while
the controller does: every wait here is async), Prometheus is the real binary, and the controller
is configured only through ``AUTOSCALER_*`` variables and ``KUBECONFIG``, as in a pod.
Its JSON log lines (stderr) are kept in a file and can be read back as dicts. The world it
scales (policy, pods, exporters) is :class:`tests.e2e.harness.World`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.fakekube.server import write_kubeconfig


class ControllerProcess:
    """One ``nim-autoscaler run`` process.

    Args:
        workdir: where its kubeconfig and log file go.
        identity: ``AUTOSCALER_IDENTITY``; also the bearer token of its kubeconfig, so the fake
            API server can attribute each request to an instance.
        api_url: the fake API server.
        env: further ``AUTOSCALER_*`` variables.
    """

    def __init__(self, workdir: Path, identity: str, api_url: str, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.identity = identity
        self.kubeconfig = write_kubeconfig(
            workdir / f"kubeconfig-{identity}", api_url, token=identity
        )
        self.env = dict(env)
        self.log_path = workdir / f"controller-{identity}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        """Spawn the process (appending to the same log file on a restart)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AUTOSCALER_") and k != "KUBECONFIG"
        }
        env.update(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "AUTOSCALER_IDENTITY": self.identity,
                "AUTOSCALER_LOG_FORMAT": "json",
                "AUTOSCALER_LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
                **self.env,
            }
        )
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "autoscaler",
                "run",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.proc is not None and self.proc.returncode is None

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the process."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """Wait for the exit code."""
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        """SIGKILL (if running) and reap."""
        if self.running:
            self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                await self.wait(10)

    def text(self) -> str:
        """The raw log (for failure messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines as dicts (other lines, e.g. tracebacks, are skipped)."""
        events = []
        for line in self.text().splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    events.append(item)
        return events


def controller_env(
    policy_dir: Path, prometheus_url: str, *, interval: float = 1.0, **more: str
) -> dict[str, str]:
    """The ``AUTOSCALER_*`` environment of a controller for the ``nim`` namespace."""
    env = {
        "AUTOSCALER_PROMETHEUS_URL": prometheus_url,
        "AUTOSCALER_POLICY_DIR": str(policy_dir),
        "AUTOSCALER_INTERVAL": str(interval),
        "AUTOSCALER_NAMESPACES": "nim",
        "AUTOSCALER_LEADER_ELECTION_NAMESPACE": "nim-autoscaler",
        "AUTOSCALER_METRICS_PORT": "0",
    }
    env.update({f"AUTOSCALER_{key.upper()}": value for key, value in more.items()})
    return env
