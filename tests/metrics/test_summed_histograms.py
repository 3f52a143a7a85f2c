"""Quantiles from histograms summed per workload in a real Prometheus, against the per-pod path.

The source sums the bucket rates per ``workload`` (the pod name without its last segment) in
Prometheus and checks, at every read, that a target's workloads hold exactly its usable pods;
where they do not, it reads that namespace's per-pod buckets in the same tick. The reference is
the same source reading every pod's buckets (``aggregate_buckets=False``), at the same instant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from autoscaler.decision.types import MetricObservation, NoSignal, TargetSample
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.names import bucket_bounds
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.metrics.rules import workload_of
from autoscaler.policy.models import MetricKind, MetricNames
from tests.metrics.env import make_policy, pod_infos
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget

pytestmark = pytest.mark.prometheus

WINDOW = "10s"
METRICS: list[dict[str, Any]] = [
    {
        "interTokenLatency": {
            "quantile": 0.9,
            "window": WINDOW,
            "target": {"type": "Value", "value": 0.2},
        }
    },
    {
        "timeToFirstToken": {
            "quantile": 0.5,
            "window": WINDOW,
            "target": {"type": "Value", "value": 1.0},
        }
    },
]
TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    # Several Deployments in one namespace; one of them mid-rollout (two ReplicaSets).
    "multi": {
        "alpha": ("alpha-7c9f-x1", "alpha-7c9f-x2", "alpha-7c9f-x3"),
        "beta": ("beta-5d4e-y1", "beta-5d4e-y2"),
        "gamma": ("gamma-6b5a-z1", "gamma-8f2c-z2"),
    },
    # One model per namespace.
    "solo": {"one": ("one-x1-0", "one-x1-1")},
    # Two targets whose pods share a workload label: per-pod, known from the pod lists.
    "collide": {"web": ("web-1-a", "web-1-b"), "web2": ("web-1-c",)},
    # A pod of the workload that is not (or no longer) the target's: found at the read.
    "stray": {"api": ("api-9-0", "api-9-1")},
}
STRAY_POD = "api-9-2"


@pytest.fixture(scope="module")
def summed_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Every pod above (and the stray one) exporting its own latency histograms."""
    fleet = FleetExporter(
        MetricNames.NIM,
        kinds=(MetricKind.INTER_TOKEN_LATENCY, MetricKind.TIME_TO_FIRST_TOKEN),
    )
    pods = [
        (ns, pod) for ns, targets in TARGETS.items() for names in targets.values() for pod in names
    ]
    pods.append(("stray", STRAY_POD))
    for n, (namespace, pod) in enumerate(pods):
        # Different shapes per pod: a wrong grouping would change the quantiles.
        rates = {}
        for k, kind in enumerate((MetricKind.INTER_TOKEN_LATENCY, MetricKind.TIME_TO_FIRST_TOKEN)):
            size = len(bucket_bounds(kind, MetricNames.NIM)) + 1
            shape = [0.0] * size
            shape[(n + k) % 5] = 1.0 + n
            shape[(n + 3 * k + 3) % 7] += 2.0
            shape[-1] = 0.5 * (n % 3)
            rates[kind] = shape
        fleet.add(FleetPod(namespace, pod, bucket_rates=rates))
    fleet.start()
    workdir = tmp_path_factory.mktemp("prometheus-summed")
    server = PrometheusServer(workdir, "1s")
    try:
        server.start([ScrapeTarget(fleet.address, honor_labels=True)])
        server.wait_targets_up()
        server.wait_for(
            'count(time_per_output_token_seconds_bucket{le="+Inf"})',
            lambda r: bool(r) and r[0]["value"][1] == str(len(pods)),
        )
        time.sleep(12)  # every rate window full
        yield server
    finally:
        server.stop()
        fleet.stop()


def _requests() -> list[MetricRequest]:
    return [
        MetricRequest(make_policy(namespace, METRICS, name=name), pod_infos(pods))
        for namespace, targets in TARGETS.items()
        for name, pods in targets.items()
    ]


def _latencies(
    result: Any, requests: list[MetricRequest]
) -> dict[tuple[str, str], MetricObservation]:
    return {
        (req.policy.key, metric): observation
        for req in requests
        for metric, observation in result[req.policy.key].items()
        if not metric.startswith("__")
    }


async def _fetch_pair(
    server: PrometheusServer, **summed: Any
) -> tuple[PrometheusSource, dict[Any, MetricObservation], dict[Any, MetricObservation]]:
    client = PrometheusClient(server.url)
    source = PrometheusSource(client, **summed)
    reference = PrometheusSource(client, aggregate_buckets=False)
    requests = _requests()
    try:
        await source.fetch(requests, time.time())  # metric-name detection
        await reference.fetch(requests, time.time())
        at = time.time() - 3.0  # scraped samples only: both read the same data
        got = _latencies(await source.fetch(requests, at), requests)
        want = _latencies(await reference.fetch(requests, at), requests)
    finally:
        await client.close()
    return source, got, want


def _assert_same(got: dict[Any, MetricObservation], want: dict[Any, MetricObservation]) -> None:
    assert got.keys() == want.keys()
    for key, observation in got.items():
        expected = want[key]
        assert isinstance(observation, TargetSample), (key, observation)
        assert isinstance(expected, TargetSample), (key, expected)
        assert math.isclose(observation.value, expected.value, rel_tol=1e-9), key
        assert observation.pods == expected.pods, key
        assert observation.oldest_sample == expected.oldest_sample, key


class TestWorkloadLabel:
    """The label ``label_replace(..., "(.+)-[^-]*")`` gives, computed by the controller."""

    @pytest.mark.parametrize(
        ("pod", "workload"),
        [
            pytest.param("llm-7d9f8-x2v4k", "llm-7d9f8", id="deployment pod: its ReplicaSet"),
            pytest.param("db-0", "db", id="statefulset pod: the StatefulSet"),
            pytest.param("a--b", "a-", id="greedy: up to the last dash"),
            pytest.param("a-", "a", id="empty last segment"),
            pytest.param("-a", "", id="dash first: no match"),
            pytest.param("plain", "", id="no dash: no match, no label"),
        ],
    )
    def test_as_prometheus(self, pod: str, workload: str) -> None:
        """The greedy regex, anchored at both ends, as ``label_replace`` applies it."""
        assert workload == workload_of(pod)

    async def test_prometheus_agrees(self, summed_env: PrometheusServer) -> None:
        """Prometheus's own ``label_replace`` gives every test pod the same workload."""
        result = summed_env.query(
            'label_replace(time_per_output_token_seconds_bucket{le="+Inf"}, '
            '"workload", "$1", "pod", "(.+)-[^-]*")'
        )
        assert len(result) > 10
        for item in result:
            labels = item["metric"]
            assert labels.get("workload", "") == workload_of(labels["pod"]), labels


async def test_summed_equals_per_pod(summed_env: PrometheusServer) -> None:
    """Every target's quantiles equal the per-pod path's, pods and sample ages included."""
    source, got, want = await _fetch_pair(summed_env)
    _assert_same(got, want)
    stats = source.last_stats
    assert stats is not None
    # One summed query per histogram and window (two here, and the capacity model's own), each
    # with one per-pod query for the stray pod's namespace.
    assert stats.target_bucket_queries >= 2
    assert stats.per_pod_fallback_queries == stats.target_bucket_queries
    # The rollout's two ReplicaSets: their histograms, once per histogram and window.
    assert stats.workload_bucket_queries >= 2
    for (policy, _), observation in got.items():
        assert isinstance(observation, TargetSample)
        namespace = policy.split("/")[0]
        summed = "workload" in observation.query
        assert summed == (namespace in {"multi", "solo"}), (policy, observation.query)
        # A target of one workload reads the quantile Prometheus computed; the one mid-rollout
        # the quantile of its two workloads' histograms summed.
        computed = "histogram_quantile" in observation.query
        assert computed == (summed and policy != "multi/gamma"), (policy, observation.query)


async def test_a_namespace_read_per_pod_stays_so_until_the_retry(
    summed_env: PrometheusServer,
) -> None:
    """After a failed check the namespace reads per-pod buckets at once, without re-trying."""
    client = PrometheusClient(summed_env.url)
    sticky = PrometheusSource(client, per_pod_retry_interval=3600.0)
    eager = PrometheusSource(client, per_pod_retry_interval=0.0)
    requests = _requests()
    try:
        for source in (sticky, eager):
            await source.fetch(requests, time.time())
            await source.fetch(requests, time.time())
        assert sticky.last_stats is not None
        assert eager.last_stats is not None
        assert sticky.last_stats.per_pod_fallback_queries == 0
        assert eager.last_stats.per_pod_fallback_queries == eager.last_stats.target_bucket_queries
        assert eager.last_stats.per_pod_fallback_queries >= 2
        result = await sticky.fetch(requests, time.time())
    finally:
        await client.close()
    stray = result["stray/api"]["interTokenLatency"]
    assert isinstance(stray, TargetSample)
    assert stray.pods == 2
    assert "workload" not in stray.query


async def test_the_stray_pod_never_counts(summed_env: PrometheusServer) -> None:
    """The per-pod path ignores pods outside the target; so does the summed path's check."""
    _, got, want = await _fetch_pair(summed_env, per_pod_retry_interval=0.0)
    stray = {key: observation for key, observation in got.items() if key[0] == "stray/api"}
    assert len(stray) == 2
    _assert_same(stray, {key: want[key] for key in stray})
    for observation in stray.values():
        assert isinstance(observation, TargetSample)
        assert observation.pods == 2


async def test_no_bucket_rates_is_empty_as_per_pod(summed_env: PrometheusServer) -> None:
    """A target none of whose pods exports the histogram: the same no-signal on both paths."""
    client = PrometheusClient(summed_env.url)
    requests = [
        MetricRequest(make_policy("multi", METRICS, name="ghost"), pod_infos(["ghost-1-a"]))
    ]
    try:
        got = await PrometheusSource(client).fetch(requests, time.time())
        want = await PrometheusSource(client, aggregate_buckets=False).fetch(requests, time.time())
    finally:
        await client.close()
    for metric in ("interTokenLatency", "timeToFirstToken"):
        observation = got["multi/ghost"][metric]
        assert isinstance(observation, NoSignal)
        assert observation == want["multi/ghost"][metric]
