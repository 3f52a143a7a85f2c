"""The fake Kubernetes API server in a child process, with timestamped requests.

Run as ``python -m benchmarks.support.kubeproc --policies N --pods 10``: it creates one
Deployment per policy (:mod:`benchmarks.support.layout` names, ``replicas`` = pods) and its
Running, Ready pods, listens on 127.0.0.1, prints its URL on one line and serves until SIGTERM
or until its standard input closes. Besides the Kubernetes API it answers
``GET /_bench/requests?since=N``: the requests it served after the first ``N``, each as
``[unix time of arrival, method, path with query, status]`` (these calls are not themselves logged).

:class:`KubeProcess` starts and stops it from the benchmark and reads its request log and its
CPU time. Keeping the fake API server out of the controller's process means the controller's
CPU time and memory are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from benchmarks.support import layout, procstat
from tests.fakekube.server import FakeKube, write_kubeconfig

BENCH_PATH = "/_bench/requests"


class TimedFakeKube(FakeKube):
    """:class:`FakeKube` that also records each request's arrival time (``times``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.times: list[float] = []
        self.statuses: dict[int, int] = {}
        """Request index -> HTTP status of the answer (absent while a watch is open)."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == BENCH_PATH:
            since = int(request.query.get("since", "0"))
            rows = [
                [t, method, path, self.statuses.get(index)]
                for index, (t, (method, path)) in enumerate(
                    zip(self.times[since:], self.requests[since:], strict=True), start=since
                )
            ]
            return web.json_response({"count": len(self.requests), "requests": rows})
        index = len(self.times)
        self.times.append(time.time())
        response = await super()._handle(request)
        self.statuses[index] = response.status
        return response


def populate(fake: FakeKube, policies: int, pods: int) -> None:
    """One Deployment per policy with ``pods`` Running, Ready pods, created an hour ago and
    ready since a minute later (a fleet that has run steadily for longer than any window of a
    decision history, also at the past times ``bench_controller`` replays)."""
    created = time.time() - 3600
    for index in range(policies):
        namespace, name = layout.namespace(index), layout.name(index)
        labels = {"app": name}
        fake.add_deployment(namespace, name, replicas=pods, labels=labels)
        for pod in layout.pod_names(index, pods):
            fake.add_pod(namespace, pod, labels=labels, created=created, ready_since=created + 60)


async def _serve(policies: int, pods: int) -> None:
    fake = TimedFakeKube(history_limit=max(1000, 2 * policies * (pods + 1)))
    populate(fake, policies, pods)
    await fake.start()
    print(fake.url, flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes stdin
    reader.add_done_callback(lambda _: stop.set())
    await stop.wait()
    await fake.stop()


def main() -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.support.kubeproc")
    parser.add_argument("--policies", type=int, required=True)
    parser.add_argument("--pods", type=int, default=layout.PODS_PER_POLICY)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.policies, args.pods))


Request = tuple[float, str, str, int | None]
"""(unix time of arrival, method, path with query, HTTP status or None while still open)."""


def request_log(url: str, since: int = 0) -> tuple[int, list[Request]]:
    """The request log of a :class:`TimedFakeKube` at ``url``.

    Returns the total count and the requests after the first ``since`` (none if ``since`` is
    past the end).
    """
    with urllib.request.urlopen(  # noqa: S310 - fixed http URL on 127.0.0.1
        f"{url}{BENCH_PATH}?since={since}", timeout=30
    ) as response:
        body = json.loads(response.read())
    return int(body["count"]), [(float(t), m, p, c) for t, m, p, c in body["requests"]]


class KubeProcess:
    """Start the fake API server in a child process; read its request log and CPU time."""

    def __init__(self, policies: int, pods: int = layout.PODS_PER_POLICY) -> None:
        self.policies = policies
        self.pods = pods
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None
        return self._process.pid

    def start(self, timeout: float = 300.0) -> str:
        """Start the child and wait for its URL."""
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.support.kubeproc",
                "--policies",
                str(self.policies),
                "--pods",
                str(self.pods),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while not line and time.monotonic() < deadline:
            line = self._process.stdout.readline().strip()
            if self._process.poll() is not None:
                break
        if not line.startswith("http://"):
            self.stop()
            msg = f"fake API server did not start: {line!r}"
            raise RuntimeError(msg)
        self.url = line
        return self.url

    def kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig pointing at the child."""
        return write_kubeconfig(path, self.url)

    def requests_since(self, since: int = 0) -> tuple[int, list[Request]]:
        """(total count, the requests after the first ``since``): see :func:`request_log`."""
        return request_log(self.url, since)

    def cpu_seconds(self) -> float:
        """CPU seconds the child has used so far."""
        return procstat.cpu_seconds(self.pid)

    def stop(self) -> None:
        """Stop the child (close its stdin, then SIGTERM, then SIGKILL)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> KubeProcess:
        """Start on entry."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop on exit."""
        self.stop()


if __name__ == "__main__":
    main()
