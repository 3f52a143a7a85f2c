"""No-signal semantics against a real Prometheus: staleness, outages, timeouts, bad bodies."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from autoscaler.decision.types import NoSignal, NoSignalReason, PodSamples
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import REPORT_AGE, PrometheusSource
from autoscaler.policy.models import MetricKind
from tests.metrics.env import ALL_PRESETS, LlmEnv, make_policy, pod_infos, pods_of
from tests.promserver.exporter import EmulatedPod
from tests.promserver.fixtures import pod_target
from tests.promserver.proxy import PrometheusProxy

pytestmark = pytest.mark.prometheus

ProxyFactory = Callable[..., PrometheusProxy]


@pytest.fixture
async def source(llm_env: LlmEnv) -> AsyncIterator[PrometheusSource]:
    """A source talking straight to the environment's Prometheus."""
    src = PrometheusSource(PrometheusClient(llm_env.server.url, timeout=5.0))
    yield src
    await src.close()


def _all_no_signal(observed: Any, reason: NoSignalReason) -> None:
    for name, sample in observed.items():
        assert isinstance(sample, NoSignal), (name, sample)
        assert sample.reason is reason, (name, sample)


async def test_samples_older_than_max_staleness_are_stale(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """Evaluated 200 s after the last scrape (within the 5 min lookback), gauges are STALE."""
    policy = make_policy("nim-a", ALL_PRESETS[:3])
    at = time.time() + 200
    # Prometheus itself still returns the old value at that time (its 5-minute lookback).
    assert llm_env.server.query('gpu_cache_usage_perc{namespace="nim-a"}', at)
    result = (await source.fetch([MetricRequest(policy, pods_of(llm_env, "nim-a"))], at))[
        policy.key
    ]
    # The policy's own metrics (the capacity signals have their own rules; the completion
    # counter is not in this fleet's data).
    _all_no_signal(
        {k: v for k, v in result.items() if not k.startswith("__")}, NoSignalReason.STALE
    )
    assert "old (max staleness 120s)" in result["kvCache"].detail  # type: ignore[union-attr]


async def test_max_staleness_is_configurable(llm_env: LlmEnv, source: PrometheusSource) -> None:
    """maxStaleness: 10m accepts the same 200 s old samples."""
    policy = make_policy(
        "nim-a",
        [
            {
                "kvCache": {
                    "maxStaleness": "10m",
                    "target": {"type": "AverageValue", "averageValue": 1},
                }
            }
        ],
    )
    result = await source.fetch(
        [MetricRequest(policy, pods_of(llm_env, "nim-a"))], time.time() + 200
    )
    assert isinstance(result[policy.key]["kvCache"], PodSamples)


async def test_sample_age_is_exact_past_the_report_age(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """Samples older than REPORT_AGE come back with their time; newer ones only as a bound."""
    target = {"type": "AverageValue", "averageValue": 1}
    policy = make_policy("nim-a", [{"kvCache": {"maxStaleness": "10m", "target": target}}])
    pods = pods_of(llm_env, "nim-a")
    now = time.time() - 2
    fresh = (await source.fetch([MetricRequest(policy, pods)], now))[policy.key]["kvCache"]
    assert isinstance(fresh, PodSamples)
    assert (fresh.oldest_sample, fresh.sample_age_below) == (None, REPORT_AGE)
    # Evaluated later, every sample is older than the report age: listed with its time. The
    # evaluation time is in the future, so a scrape landing between the reference read and the
    # fetch moves the newest samples: read the reference on both sides, again if they differ.
    at = now + REPORT_AGE + 30
    query = 'min(timestamp(gpu_cache_usage_perc{namespace="nim-a"}))'
    for _ in range(5):
        before = float(llm_env.server.query(query, at)[0]["value"][1])
        old = (await source.fetch([MetricRequest(policy, pods)], at))[policy.key]["kvCache"]
        after = float(llm_env.server.query(query, at)[0]["value"][1])
        if before == after:
            break
    assert before == after, "a scrape landed during every attempt"
    assert isinstance(old, PodSamples)
    assert old.values == fresh.values
    assert old.sample_age_below is None
    assert old.oldest_sample == before


async def test_stopped_exporter_is_missing_or_stale_never_zero(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """A stopped pod's gauges vanish (staleness marker) and its lingering rates are rejected."""
    stopped = llm_env.pods["stale-e/e-1"]
    policy = make_policy("stale-e", ALL_PRESETS, names="nim")
    pods = pods_of(llm_env, "stale-e")
    before = (await source.fetch([MetricRequest(policy, pods)], time.time() - 2))[policy.key]
    assert set(before["kvCache"].values) == {"e-0", "e-1"}  # type: ignore[union-attr]
    stopped.stop()
    llm_env.server.wait_for(
        'num_requests_waiting{namespace="stale-e",pod="e-1"} offset 2s', lambda r: not r
    )
    result = (await source.fetch([MetricRequest(policy, pods)], time.time() - 2))[policy.key]
    kv = result["kvCache"]
    assert isinstance(kv, PodSamples)
    assert kv.values == {"e-0": 0.25}
    assert "e-1" not in kv.rejected  # simply missing: the series is gone
    # The counter's rate over the 5m window still has e-1's old samples: rejected as stale.
    rate = result["requestRate"]
    assert isinstance(rate, PodSamples)
    assert set(rate.values) == {"e-0"}
    assert rate.rejected["e-1"].reason is NoSignalReason.STALE
    # The ITL quantile is computed from e-0 only.
    itl = result["interTokenLatency"]
    assert getattr(itl, "pods", None) == 1


async def test_pods_not_in_the_target_are_ignored_and_missing_pods_absent(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """Series of other pods are ignored; target pods without series are just missing."""
    policy = make_policy("nim-a", ALL_PRESETS[:1])
    result = await source.fetch(
        [MetricRequest(policy, pod_infos(["a-0", "a-9-new"]))], time.time() - 2
    )
    kv = result[policy.key]["kvCache"]
    assert isinstance(kv, PodSamples)
    assert kv.values == {"a-0": 0.2}
    assert kv.rejected == {}
    assert kv.series == 3  # the namespace's series, before joining to the target's pods


async def test_absurd_values_are_invalid(
    llm_env: LlmEnv, source: PrometheusSource, pod_factory: Any, prometheus_factory: Any
) -> None:
    """Negative gauges, KV cache above 1.5 and values above 1e12 are INVALID per pod."""
    pods: list[EmulatedPod] = [pod_factory("absurd", f"x-{i}", "nim") for i in range(4)]
    pods[0].set(MetricKind.KV_CACHE, -0.1)
    pods[1].set(MetricKind.KV_CACHE, 1.7)
    pods[2].set(MetricKind.KV_CACHE, 0.4)
    pods[0].set(MetricKind.QUEUE_DEPTH, 2e12)
    pods[1].set(MetricKind.QUEUE_DEPTH, float("nan"))
    pods[2].set(MetricKind.QUEUE_DEPTH, float("inf"))
    pods[3].set(MetricKind.QUEUE_DEPTH, float("-inf"))
    server = prometheus_factory([pod_target(p) for p in pods])
    server.wait_for(
        'count(gpu_cache_usage_perc{namespace="absurd"} offset 2s)',
        lambda r: bool(r) and r[0]["value"][1] == "4",
    )
    src = PrometheusSource(PrometheusClient(server.url))
    policy = make_policy("absurd", ALL_PRESETS[:2])
    result = (
        await src.fetch([MetricRequest(policy, pod_infos([p.pod for p in pods]))], time.time() - 2)
    )[policy.key]
    await src.close()
    kv = result["kvCache"]
    assert isinstance(kv, PodSamples)
    assert kv.values == {"x-2": 0.4, "x-3": 0.0}
    assert {pod: r.reason for pod, r in kv.rejected.items()} == {
        "x-0": NoSignalReason.INVALID,
        "x-1": NoSignalReason.INVALID,
    }
    queue = result["queueDepth"]
    assert isinstance(queue, NoSignal)
    assert queue.reason in {NoSignalReason.INVALID, NoSignalReason.INF, NoSignalReason.NAN}
    assert "x-0" in queue.detail
    assert "x-3" in queue.detail


async def test_prometheus_down_is_query_error_then_recovers(
    prometheus_factory: Any, pod_factory: Any
) -> None:
    """Prometheus stopped: QUERY_ERROR for every metric (never 0); restarted: values again."""
    pod = pod_factory("outage", "o-0", "nim")
    pod.set(MetricKind.KV_CACHE, 0.42)
    server = prometheus_factory([pod_target(pod)])
    server.wait_for('gpu_cache_usage_perc{namespace="outage"} offset 2s', bool)
    src = PrometheusSource(PrometheusClient(server.url, timeout=2.0, backoff=0.05))
    policy = make_policy("outage", ALL_PRESETS, names="nim")
    request = MetricRequest(policy, pod_infos(["o-0"]))
    server.stop()
    try:
        result = (await src.fetch([request], time.time()))[policy.key]
        _all_no_signal(result, NoSignalReason.QUERY_ERROR)
        assert "cannot reach" in result["kvCache"].detail  # type: ignore[union-attr]
    finally:
        server.start()
    server.wait_for('gpu_cache_usage_perc{namespace="outage"} offset 2s', bool)
    result = (await src.fetch([request], time.time() - 2))[policy.key]
    await src.close()
    assert isinstance(result["kvCache"], PodSamples)
    assert result["kvCache"].values == {"o-0": 0.42}


async def test_slow_prometheus_is_timeout(llm_env: LlmEnv, proxy_factory: ProxyFactory) -> None:
    """A proxy that answers after 2 s with a 0.3 s query timeout: TIMEOUT, and fetch is bounded."""
    proxy = proxy_factory(llm_env.server.url)
    proxy.delay = 2.0
    src = PrometheusSource(PrometheusClient(proxy.url, timeout=0.3), tick_budget=1.0)
    policy = make_policy("nim-a", ALL_PRESETS, names="nim")
    started = time.monotonic()
    result = (await src.fetch([MetricRequest(policy, pods_of(llm_env, "nim-a"))], time.time()))[
        policy.key
    ]
    elapsed = time.monotonic() - started
    await src.close()
    _all_no_signal(result, NoSignalReason.TIMEOUT)
    assert elapsed < 1.9


@pytest.mark.parametrize("mode", ["truncate", "garbage"])
async def test_malformed_body_is_query_error(
    llm_env: LlmEnv, proxy_factory: ProxyFactory, mode: str
) -> None:
    """A truncated or non-JSON answer is QUERY_ERROR, not an empty result and not 0."""
    proxy = proxy_factory(llm_env.server.url)
    proxy.body_mode = mode  # type: ignore[assignment]
    src = PrometheusSource(PrometheusClient(proxy.url, timeout=2.0))
    policy = make_policy("nim-a", ALL_PRESETS, names="nim")
    result = (await src.fetch([MetricRequest(policy, pods_of(llm_env, "nim-a"))], time.time()))[
        policy.key
    ]
    await src.close()
    _all_no_signal(result, NoSignalReason.QUERY_ERROR)
    assert "malformed response" in result["kvCache"].detail  # type: ignore[union-attr]


async def test_query_error_status_is_query_error(llm_env: LlmEnv) -> None:
    """A PromQL error from Prometheus (HTTP 400) is QUERY_ERROR with Prometheus's message."""
    policy = make_policy(
        "nim-a",
        [
            {
                "prometheus": {
                    "name": "broken",
                    "query": 'sum(rate(x{namespace="{namespace}"}))',
                    "target": {"type": "Value", "value": 1},
                }
            }
        ],
    )
    src = PrometheusSource(PrometheusClient(llm_env.server.url))
    result = await src.fetch([MetricRequest(policy, pods_of(llm_env, "nim-a"))], time.time())
    await src.close()
    sample = result[policy.key]["broken"]
    assert isinstance(sample, NoSignal)
    assert sample.reason is NoSignalReason.QUERY_ERROR
    assert "HTTP 400" in sample.detail
