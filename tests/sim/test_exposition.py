"""The Prometheus exposition of the simulated pods, scraped over HTTP and parsed."""

from __future__ import annotations

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.engine import Request
from autoscaler.sim.exposition import ExpositionServer, render
from autoscaler.sim.fleet import Fleet
from autoscaler.sim.load import Workload
from autoscaler.sim.metrics import MetricStore
from autoscaler.sim.profiles import get_profile


class Sink:
    def itl(self, t: float, dt: float, weight: int) -> None:
        del t, dt, weight

    def finished(self, request: Request) -> None:
        del request


def busy_fleet() -> Fleet:
    n = 60
    workload = Workload(
        np.linspace(0.0, 5.0, n), np.full(n, 300, np.int64), np.full(n, 50, np.int64), "t", 5.0
    )
    fleet = Fleet(
        get_profile("8b-fp8-h100"), workload, Sink(), MetricStore(15.0),
        initial_replicas=2, cold_start=ColdStart.parse("60"),
    )  # fmt: skip
    fleet.run_until(10.0)
    return fleet


async def test_scrape_and_parse() -> None:
    """/metrics parses with prometheus_client; counters and histograms add up per pod."""
    fleet = busy_fleet()
    server = ExpositionServer(fleet, port=0, namespace="ns")
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
    finally:
        await server.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    success = {s.labels["pod"]: s.value for s in families["request_success"].samples}
    assert set(success) == {"llm-0000", "llm-0001"}
    assert sum(success.values()) == 60
    ttft = families["time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    counts = [s for s in ttft.samples if s.name.endswith("_count")]
    assert sum(s.value for s in counts) == 60
    inf = [s for s in ttft.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    assert [s.value for s in inf] == [s.value for s in counts]
    les = {s.labels["le"] for s in ttft.samples if s.name.endswith("_bucket")}
    assert len(les) == 17  # the 16 NIM/V0 bounds + Inf
    assert families["gpu_cache_usage_perc"].type == "gauge"
    itl_count = sum(
        s.value for s in families["time_per_output_token_seconds"].samples
        if s.name.endswith("_count")
    )  # fmt: skip
    assert itl_count == 60 * 49


def test_vllm_names() -> None:
    """The vLLM flavour uses vllm: names and V1 buckets."""
    text = render(busy_fleet(), flavor="vllm")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "vllm:kv_cache_usage_perc" in families
    assert "vllm:inter_token_latency_seconds" in families
    les = {
        s.labels["le"]
        for s in families["vllm:time_to_first_token_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert "2560.0" in les


def test_gateway_series() -> None:
    """The gateway's series: requests held while no replica is ready, requests received."""
    n = 20
    workload = Workload(
        np.linspace(0.0, 5.0, n), np.full(n, 300, np.int64), np.full(n, 50, np.int64), "t", 5.0
    )
    fleet = Fleet(
        get_profile("8b-fp8-h100"), workload, Sink(), MetricStore(15.0),
        initial_replicas=0, cold_start=ColdStart.parse("60"),
    )  # fmt: skip
    fleet.run_until(10.0)
    families = {f.name: f for f in text_string_to_metric_families(render(fleet, namespace="ns"))}
    [queue] = families["inference_extension_flow_control_queue_size"].samples
    assert queue.value == n
    assert queue.labels["inference_pool"] == "llm"
    assert queue.labels["namespace"] == "ns"
    [received] = families["inference_objective_request"].samples
    assert received.value == n
    assert "inference_extension_info" in families
