"""Benchmark of the Prometheus metric source: queries and fetch time per tick vs policy count.

Starts a real Prometheus (``tests.promserver`` harness) scraping one fleet exporter (in a child
process) that emulates
``policies x 10`` NIM pods by label (``namespace``/``pod`` in the exposition, scraped with
``honor_labels: true``, as a federation endpoint would be: no 10,000 HTTP servers), 10 policies
per namespace. Each policy has four metrics: kvCache, queueDepth, requestRate (2 m window) and
interTokenLatency p95 (2 m window). For 10, 100 and 1,000 policies (``quick``: 10 and 100) it
measures, over several ticks after a warm-up tick (which also runs the name-detection probe),
the PromQL queries per tick and the wall time of :meth:`PrometheusSource.fetch`.

Goals: queries per tick constant in the number of policies; 1,000-policy fetch under 1 s.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from autoscaler.decision.types import PodInfo, PodPhase, PodSamples, TargetSample
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.metrics.promql import namespace_matcher
from autoscaler.policy.models import MetricKind, MetricNames, ScalingPolicy
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget

RESULTS = Path(__file__).resolve().parent / "results" / "metrics.json"
PODS_PER_POLICY = 10
POLICIES_PER_NAMESPACE = 10
TICKS = 5


def _policy(index: int) -> ScalingPolicy:
    namespace = f"bench-{index // POLICIES_PER_NAMESPACE:04d}"
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": f"p-{index:04d}", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 100,
                "metrics": [
                    {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
                    {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}},
                    {
                        "requestRate": {
                            "window": "2m",
                            "target": {"type": "AverageValue", "averageValue": 5},
                        }
                    },
                    {
                        "interTokenLatency": {
                            "quantile": 0.95,
                            "window": "2m",
                            "target": {"type": "Value", "value": 0.05},
                        }
                    },
                ],
            },
        }
    )


def _pods(index: int) -> tuple[PodInfo, ...]:
    return tuple(
        PodInfo(name=f"p{index:04d}-{j}", phase=PodPhase.RUNNING, ready=True)
        for j in range(PODS_PER_POLICY)
    )


def _fleet(policies: int) -> FleetExporter:
    fleet = FleetExporter(
        MetricNames.NIM,
        kinds=(
            MetricKind.KV_CACHE,
            MetricKind.QUEUE_DEPTH,
            MetricKind.REQUEST_RATE,
            MetricKind.INTER_TOKEN_LATENCY,
        ),
    )
    for index in range(policies):
        namespace = _policy(index).metadata.namespace
        for j, pod in enumerate(_pods(index)):
            fleet.add(
                FleetPod(
                    namespace,
                    pod.name,
                    gauges={MetricKind.KV_CACHE: 0.05 * (j + 1), MetricKind.QUEUE_DEPTH: j},
                    request_rate=1.0 + j,
                    bucket_rates={
                        MetricKind.INTER_TOKEN_LATENCY: [0.0, 2.0, 4.0, 2.0, 1.0, 0.5] + [0.0] * 8
                    },
                )
            )
    return fleet


def _serve_fleet(policies: int, conn: Any) -> None:
    """Child process: serve the fleet until told to stop (keeps its CPU off our measurements)."""
    fleet = _fleet(policies)
    fleet.start()
    conn.send(fleet.address)
    conn.recv()
    fleet.stop()


def _wait(server: PrometheusServer, query: str, want: float, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = server.query(query)
        if result and float(result[0]["value"][1]) >= want:
            return
        time.sleep(0.5)
    msg = f"benchmark data not ready: {query} < {want} after {timeout}s"
    raise RuntimeError(msg)


async def _measure(url: str, policies: int) -> dict[str, Any]:
    # Generous limits: the benchmark measures how long the queries take, not where they time out.
    client = PrometheusClient(url, timeout=30.0)
    source = PrometheusSource(client, tick_budget=60.0)
    requests = [MetricRequest(_policy(i), _pods(i)) for i in range(policies)]
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
        f"count(rate(time_per_output_token_seconds_bucket{{{namespace_matcher(namespaces)}}}[2m]))"
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
    sizes = [10, 100] if quick else [10, 100, 1000]
    largest = sizes[-1]
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_fleet, args=(largest, child), daemon=True)
    process.start()
    address = parent.recv()
    workdir = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    # Rendering 10,000 pods' exposition (25 MB) takes about half a second: scrape less often.
    interval = "5s" if largest <= 100 else "20s"
    server = PrometheusServer(workdir, scrape_interval=interval)
    runs: list[dict[str, Any]] = []
    try:
        server.start([ScrapeTarget(address, honor_labels=True)])
        pods = largest * PODS_PER_POLICY
        _wait(server, "count(gpu_cache_usage_perc)", pods, 180)
        # Rates need two samples inside the 2 m window for every pod.
        _wait(
            server,
            "count(rate(time_per_output_token_seconds_count[2m] offset 2s) > 0)",
            pods,
            180,
        )
        for size in sizes:
            runs.append(asyncio.run(_measure(server.url, size)))
    finally:
        server.stop()
        parent.send("stop")
        process.join(10)
        shutil.rmtree(workdir, ignore_errors=True)
    constant = len({run["queries_per_tick"] for run in runs}) == 1
    biggest = runs[-1]
    result: dict[str, Any] = {
        "benchmark": "metrics",
        "quick": quick,
        "scrape_interval": interval,
        "ticks_per_size": TICKS,
        "runs": runs,
        "queries_constant": constant,
        "readme_rows": [
            {
                "benchmark": "metrics",
                "figure": f"PromQL queries per tick, {sizes[0]} -> {largest} policies",
                "value": " -> ".join(str(run["queries_per_tick"]) for run in runs),
                "goal": "constant",
                "met": constant,
            },
            {
                "benchmark": "metrics",
                "figure": f"fetch time per tick, {largest} policies x 10 pods (median)"
                + (" (quick run)" if quick else ""),
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
