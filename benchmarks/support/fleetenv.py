"""The emulated fleet and the Prometheus scraping it, shared by ``bench_controller`` and
``bench_metrics``.

Both benchmarks query the same world: a real Prometheus (``tests.promserver``) scraping one
fleet exporter (in a child process, so its CPU time is not the benchmark's) that emulates
``policies x 10`` NIM pods by label (``namespace``/``pod`` in the exposition, scraped with
``honor_labels: true``, as a federation endpoint would be: no 10,000 HTTP servers), 10 policies
per namespace (:mod:`benchmarks.support.layout` names). Pod ``j`` of every policy serves
``1 + j`` requests/s, has KV-cache usage ``0.05 (j + 1)``, ``j`` waiting requests and a fixed
inter-token-latency histogram.

**Steady state.** Each policy queries a ``rate()`` over a window (2 m; quick runs 30 s). A rate
over a window longer than the series' life is underestimated (Prometheus extrapolates only a
little before the first sample) and evaluates fewer samples than in steady state, so
:meth:`FleetEnvironment.wait_ready` returns only once every pod's series cover a whole window:
``min(rate(request_success_total[W]))`` is at least 0.97 of the slowest pod's true 1 req/s (a
series one scrape short of the window reads at most ``(W - I/2) / W``: 0.92 for 2 m at a 20 s
scrape and for 30 s at 5 s). Nothing is measured before that.

**Sharing.** Filling a 2-minute window takes about 2.5 minutes. ``python -m benchmarks`` calls
:func:`prepare` before it runs the benchmarks that mostly wait (``decision``, ``reaction``), so
the window fills meanwhile, then runs ``controller`` and ``metrics`` on the same, steady
environment (:func:`environment` hands it out) and calls :func:`release` before the CPU-heavy
benchmarks. A benchmark run on its own starts and stops its own environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy.models import MetricKind, MetricNames
from benchmarks.support import layout
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget

WINDOW = "2m"
"""Rate window of the ``requestRate`` and ``interTokenLatency`` metrics (full runs)."""
QUICK_WINDOW = "30s"
"""Quick runs: 6 samples at the 5 s scrape, as many as 2 m at the full run's 20 s scrape."""
STEADY_RATE = 0.97
"""``min(rate(request_success_total[W]))`` at or above this: every window is full."""
RULE_INTERVAL = "15s"
"""Evaluation interval of the recording rules (the chart's default)."""
CHART = Path(__file__).resolve().parents[2] / "charts" / "nim-autoscaler"


def chart_windows(window: str) -> list[str]:
    """The rate windows the chart records by default, plus ``window`` if it is not one.

    The policies' own metrics use ``window``; an ``algorithm: llm`` policy also reads its
    capacity signals over 1 m, which the chart's default windows cover. Rendering ``window``
    alone left those signals on the raw series (a second ``rate()`` over every bucket).
    """
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    defaults = [str(w) for w in values["prometheusRule"]["recordingRules"]["windows"]]
    return defaults if window in defaults else [*defaults, window]


def chart_recording_group(window: str) -> dict[str, Any]:
    """The chart's recording-rule group (default windows and ``window``), rendered by Helm."""
    import helm_python  # a dev dependency, like the benchmarks themselves

    values = {
        "prometheusRule": {
            "enabled": True,
            "recordingRules": {
                "enabled": True,
                "windows": chart_windows(window),
                "interval": RULE_INTERVAL,
            },
        }
    }
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="bench", namespace="nim-system")
    text = next(body for name, body in rendered.items() if name.endswith("prometheusrule.yaml"))
    groups = yaml.safe_load(text)["spec"]["groups"]
    group: dict[str, Any] = next(g for g in groups if g["name"] == "nim-autoscaler.recording")
    return group


def window(quick: bool) -> str:
    """The rate window of the benchmark policies."""
    return QUICK_WINDOW if quick else WINDOW


def scrape_interval(policies: int) -> str:
    """Rendering 10,000 pods' exposition (25 MB) takes about half a second: scrape less often."""
    return "5s" if policies <= 100 else "20s"


def fleet(policies: int, pods: int = layout.PODS_PER_POLICY) -> FleetExporter:
    """The exporter of ``policies x pods`` pods (not started)."""
    exporter = FleetExporter(
        MetricNames.NIM,
        kinds=(
            MetricKind.KV_CACHE,
            MetricKind.QUEUE_DEPTH,
            MetricKind.REQUEST_RATE,
            MetricKind.INTER_TOKEN_LATENCY,
        ),
    )
    for index in range(policies):
        namespace = layout.namespace(index)
        for j, pod in enumerate(layout.pod_names(index, pods)):
            exporter.add(
                FleetPod(
                    namespace,
                    pod,
                    gauges={MetricKind.KV_CACHE: 0.05 * (j + 1), MetricKind.QUEUE_DEPTH: j},
                    request_rate=1.0 + j,
                    bucket_rates={
                        MetricKind.INTER_TOKEN_LATENCY: [0.0, 2.0, 4.0, 2.0, 1.0, 0.5] + [0.0] * 8
                    },
                )
            )
    return exporter


def _serve_fleet(policies: int, pods: int, conn: Any) -> None:
    """Child process: serve the fleet until told to stop (keeps its CPU off our measurements)."""
    exporter = fleet(policies, pods)
    exporter.start()
    conn.send(exporter.address)
    with contextlib.suppress(EOFError):
        conn.recv()
    exporter.stop()


def wait_for(server: PrometheusServer, query: str, want: float, timeout: float) -> None:
    """Poll an instant query until its first value is at least ``want``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = server.query(query)
        if result and float(result[0]["value"][1]) >= want:
            return
        time.sleep(0.5)
    msg = f"benchmark data not ready: {query} < {want} after {timeout}s"
    raise RuntimeError(msg)


class FleetEnvironment:
    """The fleet exporter (child process) and a Prometheus scraping it.

    Args:
        policies: Policies to emulate.
        window: Rate window the benchmarks query (PromQL duration, e.g. ``"2m"``).
        pods: Pods per policy.
    """

    def __init__(self, policies: int, window: str, pods: int = layout.PODS_PER_POLICY) -> None:
        self.policies = policies
        self.pods = pods
        self.window = window
        # The scrape cost follows the number of pods (10 per policy in the default fleet).
        self.scrape_interval = scrape_interval(policies * pods // layout.PODS_PER_POLICY)
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
        self.server = PrometheusServer(self.workdir / "prometheus", self.scrape_interval)
        self.ready: dict[str, Any] | None = None
        """Set by :meth:`wait_ready`: how long the warm-up took and what it waited for."""
        self.shared = False
        """Started by :func:`prepare` (kept across benchmarks) rather than for one benchmark."""
        self._started = 0.0
        self._conn: Any = None
        self._process: Any = None

    @property
    def url(self) -> str:
        """Prometheus's base URL."""
        return self.server.url

    def start(self) -> None:
        """Start the exporter and Prometheus; returns without waiting for data."""
        self._started = time.monotonic()
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve_fleet, args=(self.policies, self.pods, child), daemon=True
        )
        self._process.start()
        child.close()
        address = self._conn.recv()
        self.server.start([ScrapeTarget(address, honor_labels=True)])

    def wait_ready(self) -> dict[str, Any]:
        """Block until every pod's series cover a whole rate window (the steady state)."""
        if self.ready is not None:
            return self.ready
        pods = self.policies * self.pods
        wait_for(self.server, "count(gpu_cache_usage_perc)", pods, 180)
        wait_for(
            self.server,
            f"count(rate(time_per_output_token_seconds_count[{self.window}] offset 2s) > 0)",
            pods,
            180,
        )
        steady = f"min(rate(request_success_total[{self.window}]))"
        wait_for(self.server, steady, STEADY_RATE, 600)
        now = time.monotonic()
        self.ready = {
            "policies": self.policies,
            "pods": pods,
            "scrape_interval": self.scrape_interval,
            "rate_window": self.window,
            "steady_condition": f"{steady} >= {STEADY_RATE}",
            "seconds_from_start_to_checked_steady": round(now - self._started, 1),
        }
        return self.ready

    def enable_recording_rules(self, timeout: float = 300.0) -> dict[str, Any]:
        """Load the chart's recording rules (this window) and wait until they cover every pod.

        Returns what the wait and the rule group cost (Prometheus's own figures).
        """
        started = time.monotonic()
        path = self.workdir / "recording-rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [chart_recording_group(self.window)]}), "utf-8")
        self.server.rule_files = [path]
        self.server.reconfigure(self.server.targets)
        pods = self.policies * self.pods
        workload = f"namespace_workload_le:time_per_output_token_seconds_bucket:rate{self.window}"
        # One workload per policy (its pods are one Deployment's ReplicaSet).
        wait_for(self.server, f'count({workload}{{le="+Inf"}})', self.policies, timeout)
        for recorded in ("time_per_output_token_seconds_count", "request_success_total"):
            wait_for(
                self.server, f"count(namespace_pod:{recorded}:rate{self.window})", pods, timeout
            )
        return {
            "rule_group_interval": RULE_INTERVAL,
            "seconds_until_every_pod_recorded": round(time.monotonic() - started, 1),
            "rule_group_last_duration_seconds": self.rule_group_duration(),
        }

    def rule_group_duration(self) -> float | None:
        """Seconds Prometheus took for the last evaluation of the recording group, if loaded.

        Read from Prometheus's own ``/metrics`` (it does not scrape itself here).
        """
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:  # noqa: S310 - fixed http URL on 127.0.0.1
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("prometheus_rule_group_last_duration_seconds{") and (
                "nim-autoscaler.recording" in line
            ):
                return round(float(line.rsplit(" ", 1)[1]), 3)
        return None

    def disable_recording_rules(self) -> None:
        """Unload the recording rules (the other benchmarks measure the raw path)."""
        self.server.rule_files = []
        self.server.reconfigure(self.server.targets)

    def stop(self) -> None:
        """Stop Prometheus and the exporter; remove the temporary directory."""
        try:
            self.server.stop()
        finally:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send("stop")
                self._conn.close()
                self._conn = None
            if self._process is not None:
                self._process.join(10)
                if self._process.is_alive():
                    self._process.terminate()
                    self._process.join(5)
                self._process = None
            shutil.rmtree(self.workdir, ignore_errors=True)


_shared: FleetEnvironment | None = None


def prepare(policies: int, window: str) -> None:
    """Start the shared environment now; :func:`environment` will hand it out once steady."""
    global _shared  # noqa: PLW0603 - one environment per runner process
    release()
    env = FleetEnvironment(policies, window)
    try:
        env.start()
    except BaseException:
        env.stop()
        raise
    env.shared = True
    _shared = env


def release() -> None:
    """Stop the shared environment, if any."""
    global _shared  # one environment per runner process
    env, _shared = _shared, None
    if env is not None:
        env.stop()


@contextlib.contextmanager
def environment(
    policies: int, window: str, pods: int = layout.PODS_PER_POLICY
) -> Iterator[FleetEnvironment]:
    """A steady environment: the shared one when it matches, else a private one."""
    shared = _shared
    if shared is not None and (shared.policies, shared.window, shared.pods) == (
        policies,
        window,
        pods,
    ):
        shared.wait_ready()
        yield shared
        return
    env = FleetEnvironment(policies, window, pods)
    try:
        env.start()
        env.wait_ready()
        yield env
    finally:
        env.stop()
