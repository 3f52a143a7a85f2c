"""Preset values and metric names against a real Prometheus (all three name families, auto)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from autoscaler.decision.types import NoSignal, NoSignalReason, PodSamples, TargetSample
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.names import metric_name
from autoscaler.metrics.prometheus import REPORT_AGE, PrometheusSource
from autoscaler.policy.models import MetricKind, MetricNames
from tests.metrics.env import (
    ALL_PRESETS,
    FAMILY,
    GAUGES,
    WINDOW,
    LlmEnv,
    make_policy,
    pod_infos,
    pods_of,
)
from tests.promserver.exporter import EmulatedPod
from tests.promserver.fixtures import pod_target

pytestmark = pytest.mark.prometheus

GAUGE_INDEX = {"kvCache": 0, "queueDepth": 1, "runningRequests": 2}


@pytest.fixture
async def source(llm_env: LlmEnv) -> AsyncIterator[PrometheusSource]:
    """A source talking straight to the environment's Prometheus."""
    src = PrometheusSource(PrometheusClient(llm_env.server.url, timeout=5.0))
    yield src
    await src.close()


def _at() -> float:
    """An evaluation time whose scrapes are all ingested."""
    return time.time() - 2.0


@pytest.mark.parametrize("names", ["auto", "explicit"])
@pytest.mark.parametrize("namespace", ["nim-a", "vllm-b", "legacy-c"])
async def test_gauge_presets_read_the_family_the_pods_export(
    llm_env: LlmEnv, source: PrometheusSource, namespace: str, names: str
) -> None:
    """Every gauge preset returns each pod's exact value, with auto-detected or explicit names."""
    family = FAMILY[namespace] if names == "explicit" else "auto"
    policy = make_policy(namespace, ALL_PRESETS, names=family)
    result = await source.fetch([MetricRequest(policy, pods_of(llm_env, namespace))], _at())
    observed = result[policy.key]
    for metric, index in GAUGE_INDEX.items():
        sample = observed[metric]
        assert isinstance(sample, PodSamples), (metric, sample)
        expected = {
            key.split("/")[1]: float(values[index])
            for key, values in GAUGES.items()
            if key.startswith(namespace + "/")
        }
        assert expected == dict(sample.values)
        # Every pod's sample is current: Prometheus lists none as older than the report age.
        assert sample.oldest_sample is None
        assert sample.sample_age_below == REPORT_AGE
        exported = metric_name(MetricKind(metric), MetricNames(FAMILY[namespace]))
        assert exported in sample.query


@pytest.mark.parametrize("namespace", ["nim-a", "vllm-b", "legacy-c"])
async def test_request_rate_and_latencies_match_prometheus(
    llm_env: LlmEnv, source: PrometheusSource, namespace: str
) -> None:
    """requestRate and the token rates per pod and latency quantiles equal Prometheus's own
    PromQL on the same data."""
    policy = make_policy(namespace, ALL_PRESETS)
    at = _at()
    result = (await source.fetch([MetricRequest(policy, pods_of(llm_env, namespace))], at))[
        policy.key
    ]
    family = MetricNames(FAMILY[namespace])
    rate_name = metric_name(MetricKind.REQUEST_RATE, family)
    expected_rates = {
        item["metric"]["pod"]: float(item["value"][1])
        for item in llm_env.server.query(
            f'sum by (pod) (rate({rate_name}{{namespace="{namespace}"}}[{WINDOW}]))', at
        )
    }
    rates = result["requestRate"]
    assert isinstance(rates, PodSamples)
    assert rates.values.keys() == expected_rates.keys()
    for pod, value in rates.values.items():
        assert value > 0
        assert math.isclose(value, expected_rates[pod], rel_tol=1e-12)
    for metric, kind in (
        ("promptTokenRate", MetricKind.PROMPT_TOKEN_RATE),
        ("generationTokenRate", MetricKind.GENERATION_TOKEN_RATE),
    ):
        expected_tokens = {
            item["metric"]["pod"]: float(item["value"][1])
            for item in llm_env.server.query(
                f'sum by (pod) (rate({metric_name(kind, family)}{{namespace="{namespace}"}}'
                f"[{WINDOW}]))",
                at,
            )
        }
        tokens = result[metric]
        assert isinstance(tokens, PodSamples), (metric, tokens)
        assert tokens.values.keys() == expected_rates.keys() == expected_tokens.keys()
        for pod, value in tokens.values.items():
            assert value > expected_rates[pod]  # hundreds of tokens per request
            assert math.isclose(value, expected_tokens[pod], rel_tol=1e-12)
    for metric, kind, q in (
        ("interTokenLatency", MetricKind.INTER_TOKEN_LATENCY, 0.95),
        ("timeToFirstToken", MetricKind.TIME_TO_FIRST_TOKEN, 0.9),
        ("e2eLatency", MetricKind.E2E_LATENCY, 0.5),
    ):
        name = metric_name(kind, family)
        (expected,) = llm_env.server.query(
            f"histogram_quantile({q}, sum by (le) "
            f'(rate({name}_bucket{{namespace="{namespace}"}}[{WINDOW}])))',
            at,
        )
        sample = result[metric]
        assert isinstance(sample, TargetSample), (metric, sample)
        assert sample.pods == len(pods_of(llm_env, namespace))
        assert math.isclose(sample.value, float(expected["value"][1]), rel_tol=1e-9)


async def test_colon_metric_names_work_bare_in_promql(llm_env: LlmEnv) -> None:
    """vLLM names with ':' are valid PromQL without {__name__=...} (checked on the real server)."""
    result = llm_env.server.query('vllm:kv_cache_usage_perc{namespace="vllm-b",pod="b-0"}')
    assert [float(item["value"][1]) for item in result] == [GAUGES["vllm-b/b-0"][0]]


async def test_auto_detection_caches_per_namespace(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """One probe covers every namespace; the cache holds each namespace's own names."""
    policies = [make_policy(ns, ALL_PRESETS[:1], name=f"p-{ns}") for ns in FAMILY]
    requests = [MetricRequest(p, pods_of(llm_env, p.metadata.namespace)) for p in policies]
    await source.fetch(requests, _at())
    assert source.last_stats is not None
    assert source.last_stats.probe_queries == 1
    assert (source.detected_names("vllm-b") or {}).get("vllm:kv_cache_usage_perc") == 2
    assert "gpu_cache_usage_perc" not in (source.detected_names("vllm-b") or {})
    assert (source.detected_names("legacy-c") or {}).get("vllm:gpu_cache_usage_perc") == 2
    assert (source.detected_names("nim-a") or {}).get("gpu_cache_usage_perc") == 3
    await source.fetch(requests, _at())
    assert source.last_stats.probe_queries == 0


async def test_explicit_family_that_pods_do_not_export_is_empty(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """A policy forcing vLLM names on NIM pods gets EMPTY (no signal), never 0."""
    policy = make_policy("nim-a", ALL_PRESETS[:1], names="vllm")
    result = await source.fetch([MetricRequest(policy, pods_of(llm_env, "nim-a"))], _at())
    sample = result[policy.key]["kvCache"]
    assert isinstance(sample, NoSignal)
    assert sample.reason is NoSignalReason.EMPTY


async def test_zero_traffic_latency_is_nan_not_zero(
    llm_env: LlmEnv, source: PrometheusSource
) -> None:
    """histogram_quantile at zero traffic is NaN in Prometheus and no signal here, not 0 s."""
    policy = make_policy("idle-d", ALL_PRESETS)
    at = _at()
    (prom,) = llm_env.server.query(
        "histogram_quantile(0.95, sum by (le) "
        f'(rate(time_per_output_token_seconds_bucket{{namespace="idle-d"}}[{WINDOW}])))',
        at,
    )
    assert math.isnan(float(prom["value"][1]))
    result = (await source.fetch([MetricRequest(policy, pods_of(llm_env, "idle-d"))], at))[
        policy.key
    ]
    for metric in ("interTokenLatency", "timeToFirstToken", "e2eLatency"):
        sample = result[metric]
        assert isinstance(sample, NoSignal), (metric, sample)
        assert sample.reason is NoSignalReason.NAN
    # The same pod's gauges are fine (0 is a real value for a gauge that says 0).
    assert isinstance(result["queueDepth"], PodSamples)
    assert result["queueDepth"].values == {"d-0": 0.0}


async def test_underscore_escaped_vllm_names_are_detected(prometheus_factory: Any) -> None:
    """A vLLM pod whose client escapes ':' to '_' under OpenMetrics is still found (auto)."""
    pod = EmulatedPod("vllm-om", "om-0", "vllm", negotiate=True)
    pod.start()
    try:
        pod.set(MetricKind.KV_CACHE, 0.33)
        server = prometheus_factory([pod_target(pod)])
        server.wait_for('vllm_kv_cache_usage_perc{namespace="vllm-om"} offset 2s', bool)
        # Prometheus negotiated OpenMetrics: the colon spelling is absent.
        assert not server.query('vllm:kv_cache_usage_perc{namespace="vllm-om"}')
        src = PrometheusSource(PrometheusClient(server.url))
        policy = make_policy("vllm-om", ALL_PRESETS[:1])
        result = await src.fetch([MetricRequest(policy, pod_infos(["om-0"]))], time.time() - 2)
        await src.close()
    finally:
        pod.stop()
    kv = result[policy.key]["kvCache"]
    assert isinstance(kv, PodSamples)
    assert kv.values == {"om-0": 0.33}
    assert "vllm_kv_cache_usage_perc" in kv.query
