"""Hostile names and label values must not alter PromQL (real Prometheus).

Pod names and label values full of quotes, newlines, braces and regex metacharacters are exported
by emulated pods next to decoys they would match if escaping failed (``pod.1`` vs ``podX1``,
``pod|2`` vs ``pod`` and ``2``). Custom query templates are filled with them; Prometheus must parse
every rendered query and select exactly the intended series, both through
:func:`fill_template` and through the real :class:`PrometheusSource`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from autoscaler.decision.types import PodInfo, PodPhase, PodSamples
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.names import metric_name
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.policy.models import MetricKind, MetricNames, ScalingPolicy
from autoscaler.promql import TemplateError, fill_template
from autoscaler.settings import Settings
from tests.promserver.exporter import FleetPod
from tests.promserver.fixtures import fleet_target
from tests.promserver.prometheus import PrometheusServer

pytestmark = pytest.mark.prometheus

KV = metric_name(MetricKind.KV_CACHE, MetricNames.NIM)
NS = "nim"

HOSTILE_PODS = ["pod.1", "pod|2", 'pod"}3', "pod\n4", "pod}5", "pod\\6", "pod.*", "p(o)d+7"]
DECOY_PODS = ["podX1", "pod", "2", "pod-8", "pod\\\\6", "pood7", "p(o)dd7"]
TIERS = {
    "sel-a": "a.b",
    "sel-b": "aXb",
    "sel-c": "c|d",
    "sel-d": "c",
    "sel-e": 'x"} or vector(1) #',
    "sel-f": "e}",
    "sel-g": "d",
    "sel-h": "x",
}
BY_POD = f'sum by (pod) ({KV}{{{{namespace="{{namespace}}", pod=~"{{pods}}"}}}})'
BY_SELECTOR = f'sum by (pod) ({KV}{{{{namespace="{{namespace}}",{{selector}}}}}})'


@pytest.fixture(scope="module")
def prometheus(prometheus_factory, fleet_factory) -> Iterator[PrometheusServer]:
    """Prometheus scraping every hostile pod and decoy (all series present)."""
    fleet = fleet_factory("nim")
    for index, pod in enumerate([*HOSTILE_PODS, *DECOY_PODS]):
        fleet.add(FleetPod(NS, pod, gauges={MetricKind.KV_CACHE: 0.01 * (index + 1)}))
    for pod, tier in TIERS.items():
        fleet.add(FleetPod(NS, pod, gauges={MetricKind.KV_CACHE: 0.5}, extra_labels={"tier": tier}))
    server = prometheus_factory([fleet_target(fleet)])
    total = len(HOSTILE_PODS) + len(DECOY_PODS) + len(TIERS)
    server.wait_for(
        f'count({KV}{{namespace="{NS}"}})',
        lambda r: bool(r) and int(r[0]["value"][1]) == total,
    )
    return server


def selected(prometheus: PrometheusServer, query: str) -> set[str]:
    """The pods a query selects (the query must parse: ``query`` asserts HTTP 200)."""
    return {series["metric"].get("pod", "") for series in prometheus.query(query)}


@pytest.mark.parametrize(
    "pods",
    [HOSTILE_PODS, ["pod.1"], ["pod|2"], ['pod"}3', "pod\n4"], ["pod.*"], ["pod\\6"]],
    ids=["all", "dot", "pipe", "quote-brace-newline", "dot-star", "backslash"],
)
def test_pods_placeholder_selects_exactly_the_pods(
    prometheus: PrometheusServer, pods: list[str]
) -> None:
    """``{pods}`` with hostile names: the query parses and selects those pods, no decoy."""
    query = fill_template(BY_POD, namespace=NS, pods=pods)
    assert selected(prometheus, query) == set(pods)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=a.b", {"sel-a"}),
        ("tier in (a.b, c|d)", {"sel-a", "sel-c"}),
        ('tier=x"} or vector(1) #', {"sel-e"}),
        ("tier=e}", {"sel-f"}),
        ("tier notin (a.b,c|d,aXb,c,d,e}),tier", {"sel-e", "sel-h"}),
        ("tier!=c|d,tier in (c,c|d,d)", {"sel-d", "sel-g"}),
    ],
)
def test_selector_placeholder_selects_exactly_the_matching_pods(
    prometheus: PrometheusServer, selector: str, expected: set[str]
) -> None:
    """``{selector}`` with hostile label values: escaped, parsed, exact selection."""
    query = fill_template(BY_SELECTOR, namespace=NS, pods=[], selector=selector)
    assert selected(prometheus, query) == expected


def test_hostile_namespace_selects_nothing(prometheus: PrometheusServer) -> None:
    """A namespace value that tries to close the matcher stays one (non-existent) value."""
    query = fill_template(BY_POD, namespace='nim"} or vector(1) #', pods=HOSTILE_PODS)
    assert selected(prometheus, query) == set()


def test_unbalanced_selector_is_a_clean_template_error() -> None:
    """A selector that cannot be parsed is refused, not pasted into the query."""
    with pytest.raises(TemplateError):
        fill_template(BY_SELECTOR, namespace=NS, pods=[], selector="tier in (a")


async def test_prometheus_source_reads_exactly_the_hostile_pods(
    prometheus: PrometheusServer,
) -> None:
    """Through the real metric source: per-pod values of exactly the target's pods."""
    policy = ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "hostile", "namespace": NS},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "maxReplicas": 10,
                "metrics": [
                    {
                        "prometheus": {
                            "name": "kv",
                            "query": BY_POD,
                            "returns": "perPod",
                            "target": {"type": "AverageValue", "averageValue": 0.5},
                        }
                    }
                ],
            },
        }
    )
    pods = tuple(PodInfo(name, PodPhase.RUNNING, ready=True) for name in HOSTILE_PODS)
    source = PrometheusSource.from_settings(Settings(prometheus_url=prometheus.url))
    try:
        observed = await source.fetch([MetricRequest(policy, pods)], time.time())
    finally:
        await source.close()
    sample = observed[policy.key]["kv"]
    assert isinstance(sample, PodSamples), sample
    assert set(sample.values) == set(HOSTILE_PODS)
    assert sample.values["pod.1"] == pytest.approx(0.01)
