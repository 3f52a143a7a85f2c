"""Benchmark of the Prometheus metric source: queries and fetch time per tick vs policy count.

A real Prometheus (``tests.promserver`` harness) scrapes one fleet exporter (in a child process)
that emulates ``policies x 10`` NIM pods by label (``namespace``/``pod`` in the exposition,
scraped with ``honor_labels: true``, as a federation endpoint would be: no 10,000 HTTP servers),
10 policies per namespace (:mod:`benchmarks.support.fleetenv`, shared with ``bench_controller``
in a ``python -m benchmarks`` run). Each policy has four metrics: kvCache, queueDepth,
requestRate (2 m window) and interTokenLatency p95 (2 m window); quick runs use 30 s windows
(6 samples at their 5 s scrape, as many as 2 m at the full run's 20 s scrape) so the warm-up is
short. Nothing is measured before every pod's series cover a whole window (the steady state).
For 10, 100 and 1,000 policies (``quick``: 10 and 100) it measures, over several ticks after a
warm-up tick (which also runs the name-detection probe), the PromQL queries per tick and the wall
time of :meth:`PrometheusSource.fetch`, on the raw series (the recording rules' path is
measured by ``bench_controller``).

Goals: queries per tick constant in the number of policies; 1,000-policy fetch under 1 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import structlog

from autoscaler.decision.types import PodInfo, PodPhase, PodSamples, TargetSample
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.observability.logging import configure_logging
from autoscaler.policy.models import ScalingPolicy
from autoscaler.promql import namespace_matcher
from benchmarks.support import fleetenv, layout

RESULTS = Path(__file__).resolve().parent / "results" / "metrics.json"
PODS_PER_POLICY = layout.PODS_PER_POLICY
TICKS = 5


def sizes(quick: bool) -> list[int]:
    """Policy counts measured."""
    return [10, 100] if quick else [10, 100, 1000]


def fleet_policies(quick: bool) -> int:
    """Policies of the emulated fleet this benchmark needs (``python -m benchmarks`` shares it)."""
    return sizes(quick)[-1]


def _policy(index: int, window: str = fleetenv.WINDOW) -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": layout.name(index), "namespace": layout.namespace(index)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 100,
                "metrics": [
                    {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
                    {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}},
                    {
                        "requestRate": {
                            "window": window,
                            "target": {"type": "AverageValue", "averageValue": 5},
                        }
                    },
                    {
                        "interTokenLatency": {
                            "quantile": 0.95,
                            "window": window,
                            "target": {"type": "Value", "value": 0.05},
                        }
                    },
                ],
            },
        }
    )


def _pods(index: int) -> tuple[PodInfo, ...]:
    return tuple(
        PodInfo(name=pod, phase=PodPhase.RUNNING, ready=True)
        for pod in layout.pod_names(index, PODS_PER_POLICY)
    )


async def _measure(url: str, policies: int, window: str) -> dict[str, Any]:
    # Generous limits: the benchmark measures how long the queries take, not where they time out.
    client = PrometheusClient(url, timeout=30.0)
    # The raw series, always: in a ``python -m benchmarks`` run this follows the controller
    # benchmark's run with the chart's recording rules, whose series Prometheus still answers
    # for a while after they are unloaded (measured: 14 queries and 1.1 s per tick, the recorded
    # path, in a full run). bench_controller measures both paths.
    source = PrometheusSource(client, tick_budget=60.0, recording_rules=False)
    requests = [MetricRequest(_policy(i, window), _pods(i)) for i in range(policies)]
    at = time.time() - 2
    await source.fetch(requests, at)  # warm-up: name-detection probe, connections
    seconds: list[float] = []
    slowest: list[float] = []
    queries: list[int] = []
    http: list[int] = []
    valid = 0
    for _ in range(TICKS):
        before = client.requests_sent
        started = time.perf_counter()
        result = await source.fetch(requests, time.time() - 2)
        seconds.append(time.perf_counter() - started)
        assert source.last_stats is not None
        queries.append(source.last_stats.queries)
        slowest.append(source.last_stats.slowest_query_seconds)
        http.append(client.requests_sent - before)
        valid = sum(
            1
            for req in requests
            for obs in result[req.policy.key].values()
            if isinstance(obs, PodSamples | TargetSample)
        )
    # Prometheus's own evaluation cost of the heaviest selector (a one-series answer).
    namespaces = {r.policy.metadata.namespace for r in requests}
    floor_query = (
        f"count(rate(time_per_output_token_seconds_bucket{{{namespace_matcher(namespaces)}}}"
        f"[{window}]))"
    )
    floor: list[float] = []
    for _ in range(3):
        started = time.perf_counter()
        await client.query(floor_query, time.time() - 2)
        floor.append(time.perf_counter() - started)
    await source.close()
    return {
        "policies": policies,
        "pods": policies * PODS_PER_POLICY,
        "namespaces": len({r.policy.metadata.namespace for r in requests}),
        "queries_per_tick": max(queries),
        "http_requests_per_tick": max(http),
        "fetch_seconds_median": round(statistics.median(seconds), 4),
        "fetch_seconds_max": round(max(seconds), 4),
        "slowest_query_seconds_median": round(statistics.median(slowest), 4),
        "own_seconds_median": round(
            statistics.median(s - q for s, q in zip(seconds, slowest, strict=True)), 4
        ),
        "prometheus_floor_seconds_median": round(statistics.median(floor), 4),
        "valid_metrics_last_tick": valid,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "metrics_requested": policies * 4,
    }


def main(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write ``benchmarks/results/metrics.json`` and return the results."""
    measured = sizes(quick)
    largest = measured[-1]
    window = fleetenv.window(quick)
    started = time.monotonic()
    saved_logging = structlog.get_config()
    # The production log level (info, JSON; to /dev/null as in bench_controller): without it the
    # source's per-query debug lines would be rendered to the console and timed with the fetch.
    with (
        Path(os.devnull).open("w", encoding="utf-8") as sink,
        fleetenv.environment(largest, window) as env,
    ):
        ready = {
            **env.wait_ready(),
            "shared": env.shared,
            "seconds_this_benchmark_waited": round(time.monotonic() - started, 1),
        }
        configure_logging("json", "info", stream=sink)
        try:
            runs = [asyncio.run(_measure(env.url, size, window)) for size in measured]
        finally:
            structlog.configure(**saved_logging)
    constant = len({run["queries_per_tick"] for run in runs}) == 1
    biggest = runs[-1]
    result: dict[str, Any] = {
        "benchmark": "metrics",
        "quick": quick,
        "scrape_interval": env.scrape_interval,
        "rate_window": window,
        "logging": "structlog JSON at info, to /dev/null",
        "fleet": ready,
        "ticks_per_size": TICKS,
        "seconds_total": round(time.monotonic() - started, 1),
        "runs": runs,
        "queries_constant": constant,
        "readme_rows": [
            {
                "benchmark": "metrics",
                "figure": f"PromQL queries per tick, {measured[0]} -> {largest} policies",
                "value": " -> ".join(str(run["queries_per_tick"]) for run in runs),
                "goal": "constant",
                "met": constant,
            },
            {
                "benchmark": "metrics",
                "figure": f"fetch time per tick, {largest} policies x 10 pods (median)"
                + (f" (quick run, {window} rate windows)" if quick else ""),
                "value": f"{biggest['fetch_seconds_median']:.3f} s",
                "goal": "< 1 s",
                "met": biggest["fetch_seconds_median"] < 1.0,
            },
        ],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(main(quick=parser.parse_args().quick), indent=2))
