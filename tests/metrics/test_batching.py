"""Batching, many series, per-target quantiles vs Prometheus, and custom query templates."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from autoscaler.decision.types import NoSignal, NoSignalReason, PodSamples, TargetSample
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.policy.models import ScalingPolicy
from autoscaler.promql import regex_alternation, string_literal
from tests.metrics.env import (
    ALL_PRESETS,
    FLEET_PODS,
    HOSTILE_PODS,
    WINDOW,
    LlmEnv,
    make_policy,
    pod_infos,
    pods_of,
)
from tests.promserver.proxy import PrometheusProxy

pytestmark = pytest.mark.prometheus

ProxyFactory = Callable[..., PrometheusProxy]
NAMESPACES = ("nim-a", "vllm-b", "legacy-c")


def _custom(name: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "prometheus": {
            "name": name,
            "query": query,
            "target": {"type": "Value", "value": 1},
            **extra,
        }
    }


def _requests(env: LlmEnv, count: int) -> list[MetricRequest]:
    out = []
    for i in range(count):
        namespace = NAMESPACES[i % len(NAMESPACES)]
        policy = make_policy(namespace, ALL_PRESETS, name=f"p-{i}")
        out.append(MetricRequest(policy, pods_of(env, namespace)))
    return out


async def test_queries_per_tick_do_not_grow_with_policies(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """1 policy and 60 policies (3 namespaces, 3 families) cost the same number of requests."""
    proxy = proxy_factory(llm_env.server.url)
    src = PrometheusSource(PrometheusClient(proxy.url))
    at = time.time() - 2
    counts = {}
    for policies in (3, 60):
        requests = _requests(llm_env, policies)
        await src.fetch(requests, at)  # warm the name cache
        proxy.reset()
        result = await src.fetch(requests, at)
        counts[policies] = len(proxy.queries)
        assert all(isinstance(result[r.policy.key]["kvCache"], PodSamples) for r in requests)
    await src.close()
    assert counts[3] == counts[60]
    # Every query is restricted to the namespaces involved (one matcher, or a regex of them).
    assert all('namespace="' in q or 'namespace=~"' in q for q in proxy.queries)
    assert any('namespace=~"legacy-c|vllm-b"' in q for q in proxy.queries)


async def test_custom_queries_run_once_per_policy(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """Custom queries are per policy (templated with the policy's pods)."""
    proxy = proxy_factory(llm_env.server.url)
    src = PrometheusSource(PrometheusClient(proxy.url))
    query = 'sum(num_requests_waiting{namespace="{namespace}",pod=~"{pods}"})'
    requests = [
        MetricRequest(
            make_policy("nim-a", [_custom("waiting", query)], name=f"c-{i}"),
            pod_infos(["a-0", "a-1"] if i % 2 else ["a-2"]),
        )
        for i in range(4)
    ]
    result = await src.fetch(requests, time.time() - 2)
    await src.close()
    custom = [
        q for q in proxy.queries if q.startswith('sum(num_requests_waiting{namespace="nim-a",')
    ]
    assert len(custom) == 4
    values = [result[r.policy.key]["waiting"] for r in requests]
    assert [v.value for v in values if isinstance(v, TargetSample)] == [3.0, 3.0, 3.0, 3.0]


async def test_two_hundred_pods_gauges_rates_and_quantiles(llm_env: LlmEnv) -> None:
    """A 200-pod target: every pod's gauge, its rate, and quantiles equal to Prometheus's."""
    src = PrometheusSource(PrometheusClient(llm_env.server.url))
    pods = pod_infos([f"f-{i:03d}" for i in range(FLEET_PODS)])
    metrics = [
        *ALL_PRESETS[:3],
        # A short window: over 5m the fleet's few seconds of history would be extrapolated.
        {"requestRate": {"window": "6s", "target": {"type": "AverageValue", "averageValue": 5}}},
        *(
            {
                "interTokenLatency": {
                    "name": f"itl{int(q * 1000)}",
                    "quantile": q,
                    "window": WINDOW,
                    "target": {"type": "Value", "value": 0.05},
                }
            }
            for q in (0.05, 0.5, 0.9, 0.95, 0.99, 0.999)
        ),
        {
            "interTokenLatency": {
                "name": "itlMean",
                "statistic": "mean",
                "window": WINDOW,
                "target": {"type": "Value", "value": 0.05},
            }
        },
    ]
    policy = make_policy("fleet", metrics, names="nim")
    at = time.time() - 2
    result = (await src.fetch([MetricRequest(policy, pods)], at))[policy.key]
    await src.close()
    kv = result["kvCache"]
    assert isinstance(kv, PodSamples)
    assert len(kv.values) == FLEET_PODS
    assert kv.values["f-123"] == pytest.approx(0.123)
    rate = result["requestRate"]
    assert isinstance(rate, PodSamples)
    expected_rates = {
        item["metric"]["pod"]: float(item["value"][1])
        for item in llm_env.server.query(
            'sum by (pod) (rate(request_success_total{namespace="fleet"}[6s]))', at
        )
    }
    assert dict(rate.values) == pytest.approx(expected_rates, rel=1e-12)
    # The fleet exporter's counters grow at 1 + i % 5 requests/s (scrape jitter aside).
    for i in (0, 1, 4, 199):
        assert rate.values[f"f-{i:03d}"] == pytest.approx(1.0 + i % 5, rel=0.3)
    for q in (0.05, 0.5, 0.9, 0.95, 0.99, 0.999):
        (expected,) = llm_env.server.query(
            f"histogram_quantile({q}, sum by (le) (rate("
            f'time_per_output_token_seconds_bucket{{namespace="fleet"}}[{WINDOW}])))',
            at,
        )
        sample = result[f"itl{int(q * 1000)}"]
        assert isinstance(sample, TargetSample)
        assert sample.pods == FLEET_PODS
        assert math.isclose(sample.value, float(expected["value"][1]), rel_tol=1e-9)
    (mean,) = llm_env.server.query(
        f'sum(rate(time_per_output_token_seconds_sum{{namespace="fleet"}}[{WINDOW}])) / '
        f'sum(rate(time_per_output_token_seconds_count{{namespace="fleet"}}[{WINDOW}]))',
        at,
    )
    sample = result["itlMean"]
    assert isinstance(sample, TargetSample)
    assert math.isclose(sample.value, float(mean["value"][1]), rel_tol=1e-9)


@pytest.mark.parametrize("subset", [range(0, 200, 7), range(10, 13), range(150, 200)])
async def test_quantile_of_a_pod_subset_matches_prometheus(llm_env: LlmEnv, subset: range) -> None:
    """Only the target's pods are summed: equal to histogram_quantile over those pods."""
    names = [f"f-{i:03d}" for i in subset]
    policy = make_policy(
        "fleet",
        [
            {
                "interTokenLatency": {
                    "quantile": 0.9,
                    "window": WINDOW,
                    "target": {"type": "Value", "value": 0.05},
                }
            }
        ],
        names="nim",
    )
    src = PrometheusSource(PrometheusClient(llm_env.server.url))
    at = time.time() - 2
    sample = (await src.fetch([MetricRequest(policy, pod_infos(names))], at))[policy.key][
        "interTokenLatency"
    ]
    await src.close()
    pods = string_literal(regex_alternation(names))
    result = llm_env.server.query(
        "histogram_quantile(0.9, sum by (le) (rate(time_per_output_token_seconds_bucket"
        f'{{namespace="fleet",pod=~{pods}}}[{WINDOW}])))',
        at,
    )
    expected = float(result[0]["value"][1])
    if math.isnan(expected):
        assert isinstance(sample, NoSignal)
    else:
        assert isinstance(sample, TargetSample)
        assert math.isclose(sample.value, expected, rel_tol=1e-9)


def _hostile_policy(query: str, **extra: Any) -> ScalingPolicy:
    return make_policy("hostile", [_custom("q", query, **extra)])


@pytest.mark.parametrize("index", range(len(HOSTILE_PODS)))
async def test_hostile_pod_names_select_exactly_their_series(llm_env: LlmEnv, index: int) -> None:
    """Quotes, backslashes, newlines, braces, regex metacharacters cannot change the query."""
    hostile = HOSTILE_PODS[index]
    query = 'sum(num_requests_waiting{namespace="{namespace}",pod=~"{pods}"})'
    src = PrometheusSource(PrometheusClient(llm_env.server.url))
    result = await src.fetch(
        [MetricRequest(_hostile_policy(query), pod_infos([hostile]))], time.time() - 2
    )
    sample = result["hostile/p"]["q"]
    assert isinstance(sample, TargetSample), sample
    assert sample.value == 100.0 + index
    # The same pod through a per-pod query, joined by its (hostile) name.
    per_pod = 'num_requests_waiting{namespace="{namespace}",pod=~"{pods}"}'
    policy = _hostile_policy(per_pod, returns="perPod")
    result = await src.fetch([MetricRequest(policy, pod_infos([hostile]))], time.time() - 2)
    await src.close()
    samples = result["hostile/p"]["q"]
    assert isinstance(samples, PodSamples)
    assert dict(samples.values) == {hostile: 100.0 + index}


async def test_hostile_selector_values_are_escaped(llm_env: LlmEnv) -> None:
    """A selector value with quote, braces and regex characters selects only its own series."""
    query = 'sum(num_requests_waiting{namespace="{namespace}",{selector}})'
    src = PrometheusSource(PrometheusClient(llm_env.server.url))
    request = MetricRequest(
        _hostile_policy(query), pod_infos(list(HOSTILE_PODS)), selector='app=we"ird}2|.*'
    )
    sample = (await src.fetch([request], time.time() - 2))["hostile/p"]["q"]
    assert isinstance(sample, TargetSample), sample
    assert sample.value == 102.0
    request = MetricRequest(
        _hostile_policy(query), pod_infos(list(HOSTILE_PODS)), selector='app in (we"ird}0|.*,x)'
    )
    sample = (await src.fetch([request], time.time() - 2))["hostile/p"]["q"]
    await src.close()
    assert isinstance(sample, TargetSample), sample
    assert sample.value == 100.0


async def test_custom_query_result_shapes(llm_env: LlmEnv) -> None:
    """Several series -> INVALID; empty -> EMPTY unless emptyAs; NaN -> NAN.

    (A template with an unknown placeholder never gets here: the policy model rejects it.)
    """
    src = PrometheusSource(PrometheusClient(llm_env.server.url))
    pods = pods_of(llm_env, "nim-a")
    cases = {
        "many": _custom("many", 'num_requests_waiting{namespace="{namespace}"}'),
        "empty": _custom("empty", 'nothing_here{namespace="{namespace}"}'),
        "zero": _custom("zero", 'sum(nothing_here{namespace="{namespace}"})', emptyAs=0),
        "nan": _custom("nan", "vector(0) / vector(0)"),
        "scalar": _custom("scalar", 'scalar(sum(num_requests_waiting{namespace="{namespace}"}))'),
    }
    policy = make_policy("nim-a", list(cases.values()))
    result = (await src.fetch([MetricRequest(policy, pods)], time.time() - 2))[policy.key]
    await src.close()
    many = result["many"]
    assert isinstance(many, NoSignal)
    assert many.reason is NoSignalReason.INVALID
    assert "returned 3 series; wrap it in sum()" in many.detail
    assert isinstance(result["empty"], NoSignal)
    assert result["empty"].reason is NoSignalReason.EMPTY
    zero = result["zero"]
    assert isinstance(zero, TargetSample)
    assert zero.value == 0.0
    assert zero.series == 0
    assert isinstance(result["nan"], NoSignal)
    assert result["nan"].reason is NoSignalReason.NAN
    scalar = result["scalar"]
    assert isinstance(scalar, TargetSample)
    assert scalar.value == 6.0  # 1 + 2 + 3 waiting on nim-a
