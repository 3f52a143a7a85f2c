"""Benchmark of the reaction time: a step in load to the ``/scale`` write, end to end.

The world: a real Prometheus scraping an emulated NIM fleet exporter every 5 s (two pods of one
Deployment, ``tests.promserver``), the fake Kubernetes API server in a child process
(:mod:`benchmarks.support.kubeproc`, arrival time of every request), and the real controller
(:func:`autoscaler.app.build_controller`, its :class:`~autoscaler.controller.runner.Runner` at a
5 s interval, leader election off) with one ``algorithm: hpa`` policy on KV-cache usage
(``AverageValue`` 0.5) whose ``behavior`` scales at once (stabilization windows 0, rate limits
of 100 pods per second).

A step sets both pods' KV-cache usage from 0.25 to 1.0 (scale-out 2 -> 4 pods' worth: the
controller writes 4) or back (it writes 1), alternating, so every step causes exactly one write.
The reaction time is the arrival of that ``PUT .../scale`` at the API server minus the instant
the exporter's value changed. It splits into the wait for the next scrape, the wait from that
scrape to the next tick, and the tick's own work up to the write.

The scrape and tick clocks both run every 5 s, so their relative phase would stay fixed for a
whole run (and with it half of the delay): after each write the runner is stopped, and restarted
after a random pause (0-5 s: a uniform phase against the scrape clock); the step comes a random
0.5-5.5 s after the restart (a uniform phase against the tick clock). The runner ticks at once
when it starts: that tick, 0-5 s after the previous step's write and before the next step, is
the further tick that checks the step caused exactly one write.

Next to it, the modelled delay of the usual HPA pipeline for the same step (documented model):
Prometheus scrape 30 s + recording rule evaluation 30 s + prometheus-adapter cache refresh 30 s +
HPA sync 15 s, each a uniform wait: worst case 105 s, median (of the sum) 52.5 s, plus query and
API time.

Goal (issue 8): every reaction under scrape interval + tick interval + 2 s = 12 s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from autoscaler.app import Controller, build_controller
from autoscaler.clock import SystemClock
from autoscaler.controller.runner import Runner
from autoscaler.observability.logging import configure_logging
from autoscaler.policy.models import MetricKind, MetricNames
from autoscaler.settings import Settings
from benchmarks.support import layout, procstat
from benchmarks.support.kubeproc import KubeProcess
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget

RESULTS = Path(__file__).resolve().parent / "results" / "reaction.json"
SCRAPE_INTERVAL = 5.0
TICK_INTERVAL = 5.0
PODS = 2
LOW, HIGH = 0.25, 1.0
"""Per-pod KV-cache usage before and after an up step (target 0.5: desired 1 and 4)."""
WRITE_TIMEOUT = 40.0
HPA_MODEL = {
    "prometheus_scrape_interval": 30.0,
    "recording_rule_interval": 30.0,
    "prometheus_adapter_refresh": 30.0,
    "hpa_sync_period": 15.0,
}
"""The modelled HPA pipeline: each stage waits up to its period (uniformly) for the previous."""

POLICY_BODY = """\
  minReplicas: 1
  maxReplicas: 8
  algorithm: hpa
  metricNames: nim
  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.5}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 100, periodSeconds: 1}]
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 100, periodSeconds: 1}]
"""


class _TimedFleet(FleetExporter):
    """A fleet exporter that records when each scrape rendered it."""

    def __init__(self) -> None:
        super().__init__(MetricNames.NIM, kinds=(MetricKind.KV_CACHE,))
        self.scrape_times: list[float] = []

    def render(self) -> bytes:
        self.scrape_times.append(time.time())
        return super().render()

    def set_kv(self, value: float) -> float:
        """Set every pod's KV-cache usage; returns the instant it took effect."""
        namespace = layout.namespace(0)
        with self._lock:
            for pod in layout.pod_names(0, PODS):
                self.pods[(namespace, pod)] = FleetPod(
                    namespace, pod, gauges={MetricKind.KV_CACHE: value}
                )
            return time.time()


class _Ticks:
    """Starts (and restarts) the controller's runner; records each tick's start and end."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.starts: list[float] = []
        self.ends: list[float] = []
        self._ends_at_start = 0
        self._runner: Runner | None = None
        self._task: asyncio.Task[None] | None = None

    def _before_tick(self) -> None:
        self.starts.append(time.time())
        self.controller.feed.refresh()

    def _after_tick(self, _results: object) -> None:
        self.ends.append(time.time())

    def start(self) -> float:
        """Start the runner (it ticks at once); returns the instant."""
        self._ends_at_start = len(self.ends)
        self._runner = Runner(
            loop=self.controller.loop,
            clock=SystemClock(),
            interval=TICK_INTERVAL,
            before_tick=self._before_tick,
            after_tick=self._after_tick,
        )
        self._task = asyncio.create_task(self._runner.run())
        return time.time()

    async def first_tick_done(self, within: float = 30.0) -> None:
        """Wait until the runner's first tick since :meth:`start` has finished."""
        deadline = time.monotonic() + within
        while len(self.ends) <= self._ends_at_start:
            if time.monotonic() > deadline:
                msg = f"no tick finished within {within} s of the runner's start"
                raise RuntimeError(msg)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._runner is not None and self._task is not None:
            self._runner.stop()
            await asyncio.wait_for(self._task, 30)
        self._runner = self._task = None


def _scale_writes(kube: KubeProcess, since: int) -> tuple[int, list[float]]:
    count, requests = kube.requests_since(since)
    writes = [
        t
        for t, method, path, _ in requests
        if method in {"PUT", "PATCH"} and path.split("?")[0].endswith("/scale")
    ]
    return count, writes


async def _wait_value(server: PrometheusServer, query: str, want: float, within: float) -> None:
    """Poll an instant query until its first value equals ``want``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(server.query, query)
        if result and abs(float(result[0]["value"][1]) - want) < 1e-9:
            return
        await asyncio.sleep(0.25)
    msg = f"{query} did not reach {want} within {within} s"
    raise RuntimeError(msg)


def _first_after(times: list[float], t: float) -> float | None:
    return next((x for x in times if x >= t), None)


async def _wait_write(kube: KubeProcess, since: int, within: float) -> list[float]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        _, writes = await asyncio.to_thread(_scale_writes, kube, since)
        if writes:
            return writes
        await asyncio.sleep(0.05)
    return []


async def _run(steps: int, prometheus: PrometheusServer, fleet: _TimedFleet, workdir: Path) -> Any:
    rng = random.Random(8)
    policy_dir = layout.write_policies(workdir / "policies", 1, POLICY_BODY)
    with KubeProcess(1, pods=PODS) as kube:
        settings = Settings(
            prometheus_url=prometheus.url,
            policy_dir=policy_dir,
            interval=TICK_INTERVAL,
            kubeconfig=kube.kubeconfig(workdir / "kubeconfig"),
            leader_election=False,
            leader_election_namespace="nim-autoscaler",
            metrics_port=0,
            namespaces=[layout.namespace(0)],
            log_format="json",
            log_level="warning",
        )
        controller = await build_controller(settings)
        await controller.start()
        ticks = _Ticks(controller)
        rows: list[dict[str, Any]] = []
        try:
            if not await controller.kube.pods.wait_synced(within=30.0):
                msg = "pod cache not synced"
                raise RuntimeError(msg)
            level = LOW
            fleet.set_kv(level)
            # Wait until Prometheus has the low value, then let the controller settle on it.
            await _wait_value(prometheus, "max(gpu_cache_usage_perc)", LOW, 30.0)
            ticks.start()
            await _wait_write(kube, 0, 3 * TICK_INTERVAL)  # 2 -> 1 at LOW
            await asyncio.sleep(TICK_INTERVAL)  # and a further tick
            pending: dict[str, Any] | None = None
            for index in range(steps + 1):
                # Re-phase the tick clock against the scrape clock: stop, random pause, restart.
                await ticks.stop()
                await asyncio.sleep(rng.uniform(0.0, TICK_INTERVAL))
                restarted = ticks.start()
                if index < steps:
                    await asyncio.sleep(rng.uniform(0.5, 0.5 + TICK_INTERVAL))
                await ticks.first_tick_done()
                if pending is not None:
                    # The restarted runner's first tick came after the previous step's write:
                    # a second write for that step would show here.
                    _, writes = await asyncio.to_thread(_scale_writes, kube, pending.pop("since"))
                    pending["writes"] = len(writes)
                    pending["further_tick_after_write_seconds"] = round(
                        restarted - pending["t_write"], 3
                    )
                    del pending["t_write"]
                    pending = None
                if index == steps:
                    break
                since, _ = await asyncio.to_thread(_scale_writes, kube, 0)
                level = HIGH if level == LOW else LOW
                t0 = fleet.set_kv(level)
                writes = await _wait_write(kube, since, WRITE_TIMEOUT)
                if not writes:
                    rows.append({"step": index, "direction": _dir(level), "reacted": False})
                    continue
                t_write = writes[0]
                t_scrape = _first_after(fleet.scrape_times, t0)
                t_tick = _first_after(ticks.starts, t_scrape) if t_scrape is not None else None
                pending = {
                    "step": index,
                    "direction": _dir(level),
                    "reacted": True,
                    "reaction_seconds": round(t_write - t0, 3),
                    "wait_for_scrape_seconds": _diff(t_scrape, t0),
                    "wait_for_tick_seconds": _diff(t_tick, t_scrape),
                    "tick_to_write_seconds": _diff(t_write, t_tick),
                    "since": since,
                    "t_write": t_write,
                }
                rows.append(pending)
        finally:
            await ticks.stop()
            await controller.close()
    return rows


def _dir(level: float) -> str:
    return "up" if level == HIGH else "down"


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def _model(scrape: float = HPA_MODEL["prometheus_scrape_interval"]) -> dict[str, float]:
    """The modelled HPA pipeline delay (each stage a uniform wait up to its period)."""
    stages = {**HPA_MODEL, "prometheus_scrape_interval": scrape}
    periods = list(stages.values())
    return {
        **stages,
        "worst_case_seconds": sum(periods),
        "median_seconds": sum(periods) / 2,  # a sum of independent uniforms is symmetric
    }


def summarize(rows: list[dict[str, Any]], scrape_period: float) -> dict[str, Any]:
    """Figures and README rows from the steps' rows."""
    reacted = [row for row in rows if row["reacted"]]
    times = [row["reaction_seconds"] for row in reacted]
    aim = SCRAPE_INTERVAL + TICK_INTERVAL + 2.0
    model, same_scrape = _model(), _model(SCRAPE_INTERVAL)
    median = statistics.median(times) if times else float("nan")
    worst = max(times) if times else float("nan")
    all_reacted = len(reacted) == len(rows)
    one_write = all(row["writes"] == 1 for row in reacted)
    parts = {
        key: round(statistics.median(row[key] for row in reacted if row[key] is not None), 3)
        for key in ("wait_for_scrape_seconds", "wait_for_tick_seconds", "tick_to_write_seconds")
        if any(row[key] is not None for row in reacted)
    }
    return {
        "scrape_interval_seconds": SCRAPE_INTERVAL,
        "tick_interval_seconds": TICK_INTERVAL,
        "scrape_period_observed_seconds": round(scrape_period, 3),
        "steps": len(rows),
        "steps_with_a_write": len(reacted),
        "exactly_one_write_per_step": one_write,
        "reaction_seconds_median": round(median, 3),
        "reaction_seconds_max": round(worst, 3),
        "reaction_seconds_min": round(min(times), 3) if times else None,
        "median_parts_seconds": parts,
        "aim_seconds": aim,
        "controller_model": {
            "median_seconds": (SCRAPE_INTERVAL + TICK_INTERVAL) / 2,
            "worst_case_seconds": SCRAPE_INTERVAL + TICK_INTERVAL,
            "note": "scrape wait + tick wait, each uniform; plus query and API time",
        },
        "hpa_model": model,
        "hpa_model_same_scrape": same_scrape,
        "readme_rows": [
            {
                "benchmark": "reaction",
                "figure": (
                    f"load step -> /scale write, median / max of {len(rows)} steps "
                    f"(scrape {SCRAPE_INTERVAL:g} s, tick {TICK_INTERVAL:g} s)"
                ),
                "value": f"{median:.1f} s / {worst:.1f} s",
                "goal": f"max < {aim:g} s (scrape + tick + 2 s)",
                "met": all_reacted and one_write and worst < aim,
            },
            {
                "benchmark": "reaction",
                "figure": "modelled HPA pipeline (scrape 30 + rule 30 + adapter 30 + sync 15 s)",
                "value": (
                    f"median {model['median_seconds']:.1f} s / "
                    f"worst {model['worst_case_seconds']:.0f} s"
                ),
                "goal": "-",
                "met": None,
            },
            {
                "benchmark": "reaction",
                "figure": f"modelled HPA pipeline with the same {SCRAPE_INTERVAL:g} s scrape",
                "value": (
                    f"median {same_scrape['median_seconds']:.1f} s / "
                    f"worst {same_scrape['worst_case_seconds']:.0f} s"
                ),
                "goal": "-",
                "met": None,
            },
        ],
    }


def main(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write ``benchmarks/results/reaction.json`` and return the results."""
    steps = 5 if quick else 20
    saved_logging = structlog.get_config()
    configure_logging("json", "warning")
    workdir = Path(tempfile.mkdtemp(prefix="bench-reaction-"))
    fleet = _TimedFleet()
    fleet.set_kv(LOW)
    fleet.start()
    scrape = f"{SCRAPE_INTERVAL:g}s"
    server = PrometheusServer(workdir / "prometheus", scrape_interval=scrape)
    started = time.monotonic()
    load_before = procstat.load_average()
    cpu_before = procstat.cpu_seconds()
    try:
        server.start([ScrapeTarget(fleet.address, honor_labels=True)])
        asyncio.run(_wait_value(server, "count(gpu_cache_usage_perc)", PODS, 60.0))
        rows = asyncio.run(_run(steps, server, fleet, workdir))
    finally:
        server.stop()
        fleet.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        structlog.configure(**saved_logging)
    scrapes = fleet.scrape_times
    scrape_period = statistics.median(b - a for a, b in itertools.pairwise(scrapes))
    result: dict[str, Any] = {
        "benchmark": "reaction",
        "quick": quick,
        **summarize(rows, scrape_period),
        "process_cpu_seconds": round(procstat.cpu_seconds() - cpu_before, 2),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in procstat.load_average()],
        "seconds_total": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(main(quick=parser.parse_args().quick), indent=2))
