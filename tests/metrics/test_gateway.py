"""The gateway presets against a real Prometheus scraping an emulated GIE endpoint picker.

One Prometheus, one exporter, a namespace per situation: a GIE EPP with a queue and a request
counter, an llm-d EPP exporting both the new and the deprecated queue name, an EPP that is up but
has no series for the model (reads 0), and no EPP at all (no signal, never 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from autoscaler.decision.types import NoSignal, NoSignalReason, TargetSample
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import PrometheusSource
from tests.metrics.env import make_policy
from tests.promserver.gateway import GatewayExporter, gateway_target, key
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget

QUEUE = "inference_extension_flow_control_queue_size"
LLMD_QUEUE = "llm_d_epp_flow_control_queue_size"
REQUESTS = "inference_objective_request_total"
INFO = "inference_extension_info"


@pytest.fixture(scope="module")
def gateway(
    prometheus_factory: Callable[[Sequence[ScrapeTarget]], PrometheusServer],
) -> Iterator[PrometheusServer]:
    exporter = GatewayExporter()
    # GIE: two pools, two priorities of pool "a", a request counter of model "m" at 2.5/s.
    for prio, value in (("0", 3.0), ("-10", 1.0)):
        series = key(QUEUE, namespace="gie", inference_pool="a", priority=prio, model_name="m")
        exporter.gauges[series] = value
    exporter.gauges[key(QUEUE, namespace="gie", inference_pool="b", priority="0")] = 7.0
    exporter.gauges[key(INFO, namespace="gie", commit="c")] = 1.0
    exporter.counters[key(REQUESTS, namespace="gie", model_name="m", target_model_name="m")] = 2.5
    # llm-d: the same queue under the new and the deprecated name.
    exporter.gauges[key(LLMD_QUEUE, namespace="llmd", inference_pool="a")] = 4.0
    exporter.gauges[key(QUEUE, namespace="llmd", inference_pool="a")] = 4.0
    exporter.gauges[key(INFO, namespace="llmd", commit="c")] = 1.0
    # An EPP up with nothing queued or counted for the pool/model yet.
    exporter.gauges[key(INFO, namespace="idle", commit="c")] = 1.0
    exporter.start()
    server = prometheus_factory([gateway_target(exporter)])
    time.sleep(4)  # a few scrapes: the counter's rate (3 s window) needs two samples
    yield server
    exporter.stop()


async def fetch(server: PrometheusServer, namespace: str) -> dict[str, Any]:
    metrics = [
        {"gatewayQueue": {"pool": "a", "target": {"type": "AverageValue", "averageValue": 4}}},
        {
            "gatewayRequestRate": {
                "model": "m",
                "window": "3s",
                "target": {"type": "AverageValue", "averageValue": 2},
            }
        },
    ]
    policy = make_policy(namespace, metrics, names="nim")
    source = PrometheusSource(PrometheusClient(server.url))
    try:
        result = await source.fetch([MetricRequest(policy, ())], time.time() - 1)
    finally:
        await source.close()
    return dict(result[policy.key])


async def test_gie_queue_sums_the_pool_and_the_counter_gives_a_rate(
    gateway: PrometheusServer,
) -> None:
    """The pool's flows summed (not pool b's); the request counter's per-second rate."""
    observed = await fetch(gateway, "gie")
    queue, rate = observed["gatewayQueue"], observed["gatewayRequestRate"]
    assert isinstance(queue, TargetSample)
    assert queue.value == 4.0
    assert isinstance(rate, TargetSample)
    assert rate.value == pytest.approx(2.5, rel=0.15)


async def test_llm_d_name_and_its_deprecated_alias_are_not_counted_twice(
    gateway: PrometheusServer,
) -> None:
    """llm-d exports both names: the first present wins."""
    queue = (await fetch(gateway, "llmd"))["gatewayQueue"]
    assert isinstance(queue, TargetSample)
    assert queue.value == 4.0


async def test_epp_up_without_series_reads_zero(gateway: PrometheusServer) -> None:
    """The EPP is scraped but has no queue or counter for the pool/model: 0 (nothing waits)."""
    observed = await fetch(gateway, "idle")
    for name in ("gatewayQueue", "gatewayRequestRate"):
        sample = observed[name]
        assert isinstance(sample, TargetSample), name
        assert sample.value == 0.0


async def test_no_epp_is_no_signal(gateway: PrometheusServer) -> None:
    """No EPP series at all in the namespace: no signal, never 0."""
    observed = await fetch(gateway, "nowhere")
    for name in ("gatewayQueue", "gatewayRequestRate"):
        sample = observed[name]
        assert isinstance(sample, NoSignal), name
        assert sample.reason is NoSignalReason.EMPTY
