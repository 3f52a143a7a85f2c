"""The chart's recording rules in a real Prometheus: detected, read, equal to the raw queries.

The rules are rendered from the chart (``prometheusRule.recordingRules``) with the real Helm
engine and loaded into a real Prometheus scraping an emulated fleet; the source is the real one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import helm_python
import pytest
import yaml

from autoscaler.decision.types import (
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodSamples,
    TargetSample,
)
from autoscaler.metrics import rules
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import PrometheusSource, _PodKeys, _reduce_batch
from autoscaler.metrics.vector import Columns
from autoscaler.policy.models import MetricKind, MetricNames
from tests.metrics.env import make_policy, pod_infos
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget

pytestmark = pytest.mark.prometheus

CHART = Path(__file__).resolve().parents[2] / "charts" / "nim-autoscaler"
WINDOW = "10s"
PODS = {"rr-a": ("a-0", "a-1", "a-2"), "rr-b": ("b-1-0", "b-2-0")}
"""rr-b's target is mid-rollout: its two pods are of two workloads (``b-1`` and ``b-2``)."""
METRICS: list[dict[str, Any]] = [
    {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}},
    {"requestRate": {"window": WINDOW, "target": {"type": "AverageValue", "averageValue": 3}}},
    {
        "interTokenLatency": {
            "quantile": 0.9,
            "window": WINDOW,
            "target": {"type": "Value", "value": 0.2},
        }
    },
    {
        "interTokenLatency": {
            "name": "itlMean",
            "statistic": "mean",
            "window": WINDOW,
            "target": {"type": "Value", "value": 0.2},
        }
    },
]
RATE = f"namespace_pod:request_success_total:rate{WINDOW}"
BUCKETS = f"namespace_pod_le:time_per_output_token_seconds_bucket:rate{WINDOW}"
WORKLOAD = f"namespace_workload_le:time_per_output_token_seconds_bucket:rate{WINDOW}"
COUNT = f"namespace_pod:time_per_output_token_seconds_count:rate{WINDOW}"


def render_rules(path: Path, **recording: Any) -> None:
    """Write the chart's recording-rule group (interval 1 s, 10 s window) as a rule file."""
    values = {
        "prometheusRule": {
            "enabled": True,
            "recordingRules": {"enabled": True, "interval": "1s", "windows": [WINDOW]} | recording,
        }
    }
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="rel", namespace="nim-system")
    text = next(body for name, body in rendered.items() if name.endswith("prometheusrule.yaml"))
    groups = [g for g in yaml.safe_load(text)["spec"]["groups"] if g["name"].endswith("recording")]
    assert len(groups) == 1
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")


@pytest.fixture(scope="module")
def rules_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A fleet of 5 pods in 2 namespaces, scraped every second, with the chart's rules."""
    fleet = FleetExporter(
        MetricNames.NIM,
        kinds=(MetricKind.KV_CACHE, MetricKind.REQUEST_RATE, MetricKind.INTER_TOKEN_LATENCY),
    )
    for n, (namespace, pods) in enumerate(PODS.items()):
        for j, pod in enumerate(pods):
            fleet.add(
                FleetPod(
                    namespace,
                    pod,
                    gauges={MetricKind.KV_CACHE: 0.1 * (j + 1)},
                    request_rate=1.0 + j + 3 * n,
                    bucket_rates={
                        # Different shapes per pod: a wrong join would change the quantile.
                        MetricKind.INTER_TOKEN_LATENCY: [0.0, 1.0 + j, 4.0, 2.0 * n, 1.0 + j]
                        + [0.0] * 9
                    },
                )
            )
    fleet.start()
    workdir = tmp_path_factory.mktemp("prometheus-rules")
    server = PrometheusServer(workdir, "1s", evaluation_interval="1s")
    server.rule_files = [workdir / "rules.yaml"]
    render_rules(server.rule_files[0])
    try:
        server.start([ScrapeTarget(fleet.address, honor_labels=True)])
        server.wait_targets_up()
        server.wait_for(f"count({COUNT} > 0)", lambda r: r and r[0]["value"][1] == "5")
        # Every window full (rate over a 10 s window of a younger series is underestimated).
        time.sleep(11)
        yield server
    finally:
        server.stop()
        fleet.stop()


def _requests() -> list[MetricRequest]:
    return [
        MetricRequest(make_policy(namespace, METRICS, name=f"p-{namespace}"), pod_infos(pods))
        for namespace, pods in PODS.items()
    ]


def _evaluation_time(server: PrometheusServer) -> float:
    """The timestamp of the newest evaluation of the recording group."""
    result = server.query(f"max(timestamp({RATE}))")
    return float(result[0]["value"][1])


def _value(observation: MetricObservation) -> dict[str, float] | float:
    if isinstance(observation, PodSamples):
        return dict(observation.values)
    assert isinstance(observation, TargetSample), observation
    return observation.value


@pytest.fixture(params=[False, True], ids=["workload-sums", "pod-buckets-too"])
def pod_histograms(rules_env: PrometheusServer, request: pytest.FixtureRequest) -> Iterator[bool]:
    """The chart's rules with ``podHistograms`` off (the default) or on."""
    on: bool = request.param
    if on:
        render_rules(rules_env.rule_files[0], podHistograms=True)
        rules_env.reconfigure(rules_env.targets)
        rules_env.wait_for(
            f"count({BUCKETS}{{le='+Inf'}} > 0)", lambda r: r and r[0]["value"][1] == "5"
        )
    try:
        yield on
    finally:
        if on:
            render_rules(rules_env.rule_files[0])
            rules_env.reconfigure(rules_env.targets)
            rules_env.wait_for(f"count({BUCKETS})", lambda r: not r)


async def test_recorded_series_give_the_raw_values(
    rules_env: PrometheusServer, pod_histograms: bool
) -> None:
    """At one evaluation instant the recorded path and the raw path agree on every metric.

    The quantile reads the per-workload histograms either way; with ``podHistograms`` the
    per-pod bucket rates are recorded (and detected) too.
    """
    client = PrometheusClient(rules_env.url)
    recorded = PrometheusSource(client)
    # The reference: raw series, every pod's buckets (no histogram summed in Prometheus).
    raw = PrometheusSource(client, recording_rules=False, aggregate_buckets=False)
    requests = _requests()
    try:
        await recorded.fetch(requests, time.time())  # first tick: raw, and the probe
        assert recorded.last_stats is not None
        assert recorded.last_stats.rules_probe_queries == 1
        assert recorded.last_stats.recorded_batch_queries == 0
        for namespace in PODS:
            assert {RATE, WORKLOAD, COUNT} <= recorded.recorded_series(namespace)
            assert (BUCKETS in recorded.recorded_series(namespace)) == pod_histograms
        at = _evaluation_time(rules_env)
        got = await recorded.fetch(requests, at)
        # rate, the workload histograms, the pods present (their _count rates, whose sample
        # times are the quantile's evaluation check too), sum, count, and the evaluation
        # timestamps of two of them (rate; the mean reads sum and count from one group: one
        # timestamp check).
        assert recorded.last_stats.recorded_batch_queries == 7
        # (and the capacity model's own 1 m latency, raw: no rule for that window)
        assert recorded.last_stats.target_bucket_queries == 2
        assert recorded.last_stats.workload_bucket_queries >= 1  # rr-b's two workloads
        assert recorded.last_stats.per_pod_fallback_queries == 0
        want = await raw.fetch(requests, at)
        assert raw.last_stats is not None
        assert raw.last_stats.recorded_batch_queries == raw.last_stats.rules_probe_queries == 0
        await recorded.fetch(requests, time.time())
        assert recorded.last_stats.rules_probe_queries == 0  # the answer is reused (TTL)
    finally:
        await client.close()
    for request in requests:
        key = request.policy.key
        assert set(got[key]) == set(want[key])
        for metric, observation in got[key].items():
            if metric.startswith("__"):
                continue  # the capacity model's own inputs (1 m windows: not recorded here)
            expected = want[key][metric]
            assert isinstance(observation, PodSamples | TargetSample), (metric, observation)
            if metric != "kvCache":
                assert "namespace_" in observation.query, metric
                assert "namespace_" not in expected.query  # type: ignore[union-attr]
            if metric == "interTokenLatency":
                assert WORKLOAD in observation.query
                assert COUNT in observation.query
                # One workload: Prometheus's quantile of it; two (rr-b): their histograms summed.
                rollout = request.policy.metadata.namespace == "rr-b"
                assert ("histogram_quantile" in observation.query) != rollout
            value, raw_value = _value(observation), _value(expected)
            if isinstance(value, dict):
                assert isinstance(raw_value, dict)
                assert (
                    value.keys() == raw_value.keys() == set(PODS[request.policy.metadata.namespace])
                )
                for pod, number in value.items():
                    assert math.isclose(number, raw_value[pod], rel_tol=1e-9), (metric, pod)
            else:
                assert isinstance(raw_value, float)
                assert math.isclose(value, raw_value, rel_tol=1e-9), metric


async def test_the_source_reads_when_the_rule_group_evaluates(
    rules_env: PrometheusServer,
) -> None:
    """With the probe, the source reads the chart's group from ``/api/v1/rules``: the tick phase
    has the group's interval and is one evaluation's margin after the evaluation whose time the
    recorded samples carry. Without alignment nothing is read."""
    group = yaml.safe_load(rules_env.rule_files[0].read_text(encoding="utf-8"))["groups"][0]
    client = PrometheusClient(rules_env.url)
    source = PrometheusSource(client)
    off = PrometheusSource(client, align_to_rules=False)
    requests = _requests()
    try:
        assert source.tick_phase() is None  # nothing read yet
        await source.fetch(requests, time.time())
        phase = source.tick_phase()
        stamp = _evaluation_time(rules_env)
        sent = client.requests_sent
        await off.fetch(requests, time.time())
        assert off.tick_phase() is None
        off_requests = client.requests_sent - sent
        assert off.last_stats is not None
        assert off_requests == off.last_stats.queries  # no /api/v1/rules request
    finally:
        await client.close()
    assert phase is not None
    assert phase.group == group["name"]
    assert phase.period == 1.0  # the group's interval ("1s")
    assert 0 <= phase.duration < phase.period
    started = phase.ready - (phase.duration * rules.READY_FACTOR + rules.READY_SLACK)
    # Prometheus starts an evaluation at the time its samples carry (a few ms of scheduling).
    offset = (started - stamp) % phase.period
    assert min(offset, phase.period - offset) < 0.1, (started, stamp)


async def test_a_target_short_of_its_workload_reads_pod_buckets(
    rules_env: PrometheusServer,
) -> None:
    """A workload holding a pod that is not the target's: that target's quantile comes from
    its own pods' raw bucket rates (the chart records none per pod by default), equal to the
    raw path's; the other namespace keeps the recorded workload histogram."""
    client = PrometheusClient(rules_env.url)
    source = PrometheusSource(client)
    raw = PrometheusSource(client, recording_rules=False, aggregate_buckets=False)
    # rr-a's target has two of the three pods of workload "a".
    requests = [
        MetricRequest(make_policy("rr-a", METRICS, name="p-rr-a"), pod_infos(["a-0", "a-1"])),
        MetricRequest(make_policy("rr-b", METRICS, name="p-rr-b"), pod_infos(PODS["rr-b"])),
    ]
    try:
        await source.fetch(requests, time.time())  # the probe
        at = _evaluation_time(rules_env)
        got = await source.fetch(requests, at)
        assert source.last_stats is not None
        assert source.last_stats.per_pod_fallback_queries > 0
        want = await raw.fetch(requests, at)
    finally:
        await client.close()
    short = got["rr-a/p-rr-a"]["interTokenLatency"]
    assert isinstance(short, TargetSample)
    assert short.pods == 2
    assert "workload" not in short.query
    assert "rate(time_per_output_token_seconds_bucket" in short.query
    expected = want["rr-a/p-rr-a"]["interTokenLatency"]
    assert isinstance(expected, TargetSample)
    assert math.isclose(short.value, expected.value, rel_tol=1e-9)
    whole = got["rr-b/p-rr-b"]["interTokenLatency"]
    assert isinstance(whole, TargetSample)
    assert WORKLOAD in whole.query
    assert whole.pods == 2


async def test_recorded_pod_buckets_without_workload_sums(rules_env: PrometheusServer) -> None:
    """With per-pod bucket rates recorded and no per-workload record, the quantile sums the
    recorded buckets per workload in Prometheus, the pods and their evaluation time read from the
    recorded ``+Inf`` buckets: the raw path's value, pods and fresh samples."""
    render_rules(rules_env.rule_files[0], podHistograms=True, workloadHistograms=False)
    rules_env.reconfigure(rules_env.targets)
    client = PrometheusClient(rules_env.url)
    recorded = PrometheusSource(client)
    raw = PrometheusSource(client, recording_rules=False, aggregate_buckets=False)
    requests = _requests()
    try:
        rules_env.wait_for(f"count({WORKLOAD})", lambda r: not r)
        rules_env.wait_for(
            f"count({BUCKETS}{{le='+Inf'}} > 0)", lambda r: r and r[0]["value"][1] == "5"
        )
        await recorded.fetch(requests, time.time())  # the probe
        at = _evaluation_time(rules_env)
        got = await recorded.fetch(requests, at)
        assert recorded.last_stats is not None
        assert recorded.last_stats.per_pod_fallback_queries == 0
        want = await raw.fetch(requests, at)
    finally:
        await client.close()
        render_rules(rules_env.rule_files[0])
        rules_env.reconfigure(rules_env.targets)
        rules_env.wait_for(f"count({BUCKETS})", lambda r: not r)
    for request in requests:
        key = request.policy.key
        observation = got[key]["interTokenLatency"]
        expected = want[key]["interTokenLatency"]
        assert isinstance(observation, TargetSample), observation
        assert isinstance(expected, TargetSample), expected
        assert f"label_replace({BUCKETS}" in observation.query
        assert f'timestamp({BUCKETS}{{namespace=~"rr-a|rr-b", le="+Inf"}})' in observation.query
        assert observation.pods == expected.pods == len(PODS[request.policy.metadata.namespace])
        assert observation.sample_age_below is not None  # every pod fresh, both ways
        assert math.isclose(observation.value, expected.value, rel_tol=1e-9)


async def test_a_rule_group_behind_its_scrapes_is_not_read(rules_env: PrometheusServer) -> None:
    """Recorded histograms older than the metric's max staleness (the rule group evaluates
    less often than that) are not read: the quantile comes from the fresh raw bucket rates.

    The recorded ``_count`` rates that tell which pods a workload histogram holds carry their
    evaluation time too; a policy tolerating the group's age keeps reading the recording.
    """
    itl = METRICS[2]["interTokenLatency"]
    strict = [{"interTokenLatency": itl | {"maxStaleness": "5s"}}]
    tolerant = [{"interTokenLatency": itl | {"maxStaleness": "2m"}}]
    pods = PODS["rr-b"]
    requests = [
        MetricRequest(make_policy("rr-b", strict, name="strict"), pod_infos(pods)),
        MetricRequest(make_policy("rr-b", tolerant, name="tolerant"), pod_infos(pods)),
    ]
    client = PrometheusClient(rules_env.url)
    source = PrometheusSource(client)
    render_rules(rules_env.rule_files[0], interval="30s")
    rules_env.reconfigure(rules_env.targets)
    try:
        await source.fetch(requests, time.time())  # the probe
        deadline = time.monotonic() + 60
        while time.time() - _evaluation_time(rules_env) < 8:
            assert time.monotonic() < deadline, "the rule group kept evaluating every second"
            await asyncio.sleep(0.5)
        got = await source.fetch(requests, time.time())
    finally:
        await client.close()
        render_rules(rules_env.rule_files[0])
        rules_env.reconfigure(rules_env.targets)
    behind = got["rr-b/strict"]["interTokenLatency"]
    assert isinstance(behind, TargetSample), behind
    assert "namespace_workload" not in behind.query
    assert "rate(time_per_output_token_seconds_bucket" in behind.query
    kept = got["rr-b/tolerant"]["interTokenLatency"]
    assert isinstance(kept, TargetSample), kept
    assert WORKLOAD in kept.query
    assert kept.pods == behind.pods == len(pods)


async def test_inputs_the_fleet_never_exports_are_not_reprobed_every_tick(
    rules_env: PrometheusServer,
) -> None:
    """This fleet exports no token counters, running requests or TTFT: the capacity model's own
    inputs read from those find nothing, and the namespaces' names are not probed again for it
    before the detection interval; a policy's own preset that finds nothing is (a renamed metric
    after an upgrade)."""
    client = PrometheusClient(rules_env.url)
    source = PrometheusSource(client, redetect_min_interval=0.0)
    requests = _requests()
    at = time.time()
    try:
        first = await source.fetch(requests, at)
        assert source.last_stats is not None
        assert source.last_stats.probe_queries == 1
        for request in requests:
            signals = first[request.policy.key]
            for name in ("__capacity_prompt_tokens", "__capacity_running", "__capacity_ttft"):
                missing = signals[name]
                assert isinstance(missing, NoSignal), (name, missing)
                assert missing.reason is NoSignalReason.EMPTY
        await source.fetch(requests, at + 1)
        assert source.last_stats.probe_queries == 0

        namespace, pods = next(iter(PODS.items()))
        queue = {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}}
        own = MetricRequest(make_policy(namespace, [queue], name="own"), pod_infos(pods))
        result = await source.fetch([*requests, own], at + 2)
        assert source.last_stats.probe_queries == 0
        observation = result[own.policy.key]["queueDepth"]
        assert isinstance(observation, NoSignal)
        assert observation.reason is NoSignalReason.EMPTY
        await source.fetch([*requests, own], at + 3)
        assert source.last_stats.probe_queries == 1
    finally:
        await client.close()


async def test_partial_and_removed_rules_fall_back_to_raw(
    rules_env: PrometheusServer, tmp_path: Path
) -> None:
    """A namespace the rules do not cover reads raw series; a removed rule loses no signal."""
    client = PrometheusClient(rules_env.url)
    source = PrometheusSource(client, rules_probe_interval=0.0)
    requests = _requests()

    async def tick() -> dict[str, dict[str, MetricObservation]]:
        result = await source.fetch(requests, time.time())
        for request in requests:
            for metric, observation in result[request.policy.key].items():
                if metric.startswith("__"):
                    continue  # the capacity model's own inputs
                assert isinstance(observation, PodSamples | TargetSample), (metric, observation)
        return result

    def reads_recorded(result: dict[str, dict[str, MetricObservation]], namespace: str) -> bool:
        key = next(r.policy.key for r in requests if r.policy.metadata.namespace == namespace)
        observation = result[key]["requestRate"]
        assert isinstance(observation, PodSamples)
        return RATE in observation.query

    def planned_in(namespace: str) -> dict[Any, Any]:
        """The source's kept plans of a namespace's metrics (the objects)."""
        return {key: entry for key, entry in source._planned.items() if key[1] == namespace}

    try:
        await tick()
        result = await tick()
        assert reads_recorded(result, "rr-a")
        assert reads_recorded(result, "rr-b")
        # Nothing changed: every metric's plan is kept, not made again.
        kept = {ns: planned_in(ns) for ns in PODS}
        await tick()
        for namespace in PODS:
            now_planned = planned_in(namespace)
            assert now_planned.keys() == kept[namespace].keys()
            assert all(now_planned[k] is kept[namespace][k] for k in now_planned)

        # The rules now cover rr-a only: rr-b's recorded series go stale.
        render_rules(rules_env.rule_files[0], selector='namespace="rr-a"')
        rules_env.reconfigure(rules_env.targets)
        rules_env.wait_for(f'count({RATE}{{namespace="rr-b"}})', lambda r: not r)
        result = await tick()  # the probe still said rr-b is covered: raw re-read this tick
        assert source.last_stats is not None
        assert source.last_stats.fallback_queries > 0
        assert not reads_recorded(result, "rr-b")
        await tick()  # probe again
        result = await tick()
        assert reads_recorded(result, "rr-a")
        assert not reads_recorded(result, "rr-b")
        assert source.last_stats.fallback_queries == 0
        # Planned again where the usable recorded series changed, and only there.
        assert all(planned_in("rr-a")[k] is entry for k, entry in kept["rr-a"].items())
        assert not any(planned_in("rr-b")[k] is entry for k, entry in kept["rr-b"].items())

        # No rules at all.
        rules_env.rule_files = []
        rules_env.reconfigure(rules_env.targets)
        rules_env.wait_for(f"count({RATE})", lambda r: not r)
        result = await tick()
        assert not reads_recorded(result, "rr-a")
        assert not reads_recorded(result, "rr-b")
        assert source.tick_phase() is None  # no group records what the policies read
    finally:
        await client.close()


class TestCopies:
    """A rule deployed twice (two rulers: one more label) is one value per pod, not a fault."""

    def test_recorded_copies_are_one_value(self) -> None:
        """Recorded copies keep one value per pod (and bucket); raw duplicates reject the pod."""
        rows = [
            (("ns", "a"), 2.0),
            (("ns", "a"), 2.0),
            (("ns", "b"), 1.0),
        ]
        recorded = _reduce_batch("rate", "q", rows, recorded=True)
        assert recorded.values == {("ns", "a"): 2.0, ("ns", "b"): 1.0}
        assert not recorded.duplicates
        raw = _reduce_batch("rate", "q", rows)
        assert raw.duplicates == {("ns", "a")}
        buckets = [(("ns", "a", "0.1"), 1.0), (("ns", "a", "0.1"), 1.0), (("ns", "a", "+Inf"), 3.0)]
        result = _reduce_batch("buckets", "q", buckets, recorded=True)
        assert result.buckets == {("ns", "a"): {0.1: 1.0, math.inf: 3.0}}

    def test_a_workload_quantile_twice_is_not_read(self) -> None:
        """Two quantiles of one workload (its histogram recorded twice): the group is unusable
        (its targets read per-pod buckets), the other workloads are read."""
        rows = [(("ns", "a-1"), 0.2), (("ns", "a-1"), 0.2), (("ns", "b-1"), 0.3)]
        result = _reduce_batch("target_quantile", "q", rows, recorded=True)
        assert result.bad_groups == {("ns", "a-1")}
        assert result.quantiles[("ns", "b-1")] == 0.3
        assert result.series_per_namespace["ns"] == 3


class TestPodKeys:
    def test_batches_share_one_key_per_pod(self) -> None:
        """Every batch of a fetch keys a pod's rows by the same (namespace, pod) tuple, so a
        tick's ~14 batches hold one tuple per pod, not one per batch; values are unchanged."""
        shared = _PodKeys()
        rate = _reduce_batch("rate", "q", [(("ns", "a"), 2.0)], pod_keys=shared)
        stamps = _reduce_batch("stamps", "q", [(("ns", "a"), 9.0)], pod_keys=shared)
        buckets = _reduce_batch(
            "buckets", "q", [(("ns", "a", "0.1"), 1.0), (("ns", "a", "+Inf"), 3.0)], pod_keys=shared
        )
        (key,) = rate.values
        assert key == ("ns", "a")
        assert rate.values[key] == 2.0
        assert next(iter(stamps.stamps)) is key
        assert next(iter(buckets.buckets)) is key
        assert buckets.buckets[key] == {0.1: 1.0, math.inf: 3.0}
        alone = _reduce_batch("rate", "q", [(("ns", "a"), 2.0)])
        assert alone.values == rate.values
        assert next(iter(alone.values)) is not key

    def test_the_same_columns_are_keyed_once(self) -> None:
        """Answers listing the same pods in the same order (a tick's batches, the next tick's)
        reuse the keys made for the first; other pods or another order are keyed anew."""
        pod_keys = _PodKeys()
        first = pod_keys.keyed(["ns", "ns", "other"], ["a", "b", "c"])
        again = pod_keys.keyed(["ns", "ns", "other"], ["a", "b", "c"])  # equal, other lists
        assert again is first
        assert first.keys == [("ns", "a"), ("ns", "b"), ("other", "c")]
        assert first.per_namespace == {"ns": 2, "other": 1}
        assert first.workload_pods() == {("ns", ""): 2, ("other", ""): 1}
        swapped = pod_keys.keyed(["ns", "ns", "other"], ["b", "a", "c"])
        assert swapped is not first
        assert swapped.keys == [("ns", "b"), ("ns", "a"), ("other", "c")]
        assert swapped.keys[0] is first.keys[1]  # still one tuple per pod
        assert len(pod_keys) == 3
        assert pod_keys.keyed(["ns", "ns"], ["a", "a"]).distinct() is False
        assert pod_keys.keyed(["ns", "ns"], ["a-1", "a-2"]).workload_pods() == {("ns", "a"): 2}


class TestColumns:
    """An answer read at once is reduced column by column: the same result as row by row."""

    ROWS: ClassVar[list[tuple[tuple[str, str], float]]] = [
        (("ns-a", "a-0"), 1.5),
        (("ns-b", "b-0"), math.nan),
        (("ns-a", "a-1"), math.inf),
        (("ns-a", "a-2"), 0.0),
        (("ns-b", "b-1"), 7.0),
    ]

    @staticmethod
    def _columns(rows: list[tuple[tuple[str, str], float]]) -> Columns:
        return Columns(
            ([ns for (ns, _), _ in rows], [pod for (_, pod), _ in rows]), [v for _, v in rows]
        )

    @staticmethod
    def _same(one: Any, other: Any) -> None:
        for field in (
            "values",
            "stamps",
            "series_per_namespace",
            "duplicates",
            "present",
            "workload_pods",
        ):
            left, right = getattr(one, field), getattr(other, field)
            assert repr(left) == repr(right), field  # NaN compares unequal; order counts too

    @pytest.mark.parametrize(
        "kind", ["value", "rate", "sum", "count", "fresh", "stamps", "presence"]
    )
    @pytest.mark.parametrize("recorded", [False, True])
    def test_the_same_result_as_row_by_row(self, kind: Any, recorded: bool) -> None:
        shared_rows, shared_columns = _PodKeys(), _PodKeys()
        # A recorded presence's values are sample times: those before the cutoff are listed.
        cutoff = 1.0
        by_rows = _reduce_batch(
            kind, "q", iter(self.ROWS), recorded=recorded, cutoff=cutoff, pod_keys=shared_rows
        )
        by_columns = _reduce_batch(
            kind,
            "q",
            self._columns(self.ROWS),
            recorded=recorded,
            cutoff=cutoff,
            pod_keys=shared_columns,
        )
        self._same(by_columns, by_rows)
        assert shared_columns.shared == shared_rows.shared
        # The keys are the shared tuples (one per pod for all of a tick's batches).
        keys = {"stamps": by_columns.stamps, "presence": by_columns.present}.get(
            kind, by_columns.values
        )
        assert keys
        assert all(shared_columns.shared[key] is key for key in keys)
        if kind == "presence":
            assert by_columns.workload_pods == {("ns-a", "a"): 3, ("ns-b", "b"): 2}
            if recorded:
                assert by_columns.values == {("ns-a", "a-2"): 0.0}  # the one before the cutoff

    @pytest.mark.parametrize("recorded", [False, True])
    def test_a_pod_twice_is_read_row_by_row(self, recorded: bool) -> None:
        """Two series of a pod: kept apart as duplicates (the larger, for recorded copies)."""
        rows = [*self.ROWS, (("ns-a", "a-0"), 9.0)]
        by_rows = _reduce_batch("rate", "q", iter(rows), recorded=recorded)
        by_columns = _reduce_batch("rate", "q", self._columns(rows), recorded=recorded)
        self._same(by_columns, by_rows)
        if recorded:
            assert by_columns.values["ns-a", "a-0"] == 9.0
        else:
            assert by_columns.duplicates == {("ns-a", "a-0")}

    @pytest.mark.parametrize("recorded", [False, True])
    def test_a_pod_twice_in_a_presence(self, recorded: bool) -> None:
        """Copies of a recorded series are counted (the pod is then not read from the
        presence); raw +Inf series are summed. The pod counts once in its workload."""
        rows = [*self.ROWS, (("ns-a", "a-0"), 2.5)]
        by_rows = _reduce_batch("presence", "q", iter(rows), recorded=recorded)
        by_columns = _reduce_batch("presence", "q", self._columns(rows), recorded=recorded)
        self._same(by_columns, by_rows)
        assert by_columns.present["ns-a", "a-0"] == (2.0 if recorded else 4.0)
        assert by_columns.workload_pods["ns-a", "a"] == 3


class TestNames:
    """Recorded series names follow the chart's rules (``level:metric:operations``)."""

    @pytest.mark.parametrize(
        ("kind", "name", "window", "expected"),
        [
            ("buckets", "vllm:ttft", 120.0, "namespace_pod_le:vllm:ttft_bucket:rate2m"),
            ("sum", "itl", 60.0, "namespace_pod:itl_sum:rate1m"),
            ("count", "itl", 90.0, "namespace_pod:itl_count:rate90s"),
            ("rate", "request_success_total", 3600.0, "namespace_pod:request_success_total:rate1h"),
            ("rate", "x", 1.5, None),
            ("value", "x", 60.0, None),
            ("fresh", "x", 60.0, None),
            ("rate", "x", None, None),
        ],
        ids=["buckets", "sum", "count-90s", "rate-1h", "fractional", "gauge", "fresh", "no-window"],
    )
    def test_recorded_name(self, kind: str, name: str, window: float | None, expected: str) -> None:
        """Whole-second windows in their shortest form; gauges and timestamps are never recorded."""
        assert expected == rules.recorded_name(kind, name, window)

    def test_coverage_needs_every_pod(self) -> None:
        """A recorded series counts only where it has at least the raw series' pods."""
        need = rules.RuleNeed("rec", "raw")
        pods = {("raw", "a"): 3, ("rec", "a"): 3, ("raw", "b"): 3, ("rec", "b"): 2, ("rec", "c"): 1}
        assert rules.covered([need], pods, "a") == {"rec"}
        assert rules.covered([need], pods, "b") == frozenset()
        assert rules.covered([need], pods, "c") == frozenset()  # nothing raw: raw query decides


class TestRulePhase:
    """When a group's recorded values are ready, from ``/api/v1/rules``."""

    @staticmethod
    def answer(*groups: dict[str, Any]) -> dict[str, Any]:
        return {"status": "success", "data": {"groups": list(groups)}}

    @staticmethod
    def group(name: str, records: list[str], **fields: Any) -> dict[str, Any]:
        rules_ = [{"name": r, "type": "recording", "query": "x", "health": "ok"} for r in records]
        return {
            "name": name,
            "file": "/etc/prometheus/rules.yaml",
            "interval": 15,
            "evaluationTime": 2.0,
            "lastEvaluation": "2026-12-07T11:25:59.428217307Z",
            "rules": rules_,
        } | fields

    def test_the_group_of_the_recorded_series(self) -> None:
        groups = rules.parse_rule_groups(
            self.answer(
                self.group("other", ["a:b:rate1m"], evaluationTime=9.0),
                self.group("nim", [RATE, COUNT]),
            )
        )
        phase = rules.rule_phase(groups, {RATE, COUNT, "unrecorded"})
        assert phase is not None
        assert phase.group == "nim"
        assert phase.period == 15.0
        started = 1796643959.428217  # 2026-12-07T11:25:59.428217Z
        assert phase.ready == pytest.approx(started + 2.0 * rules.READY_FACTOR + rules.READY_SLACK)

    def test_most_records_then_longest_evaluation_wins(self) -> None:
        groups = rules.parse_rule_groups(
            self.answer(
                self.group("one", [RATE], evaluationTime=5.0),
                self.group("two", [COUNT, WORKLOAD], evaluationTime=1.0),
                self.group("three", [BUCKETS], evaluationTime=3.0),
            )
        )
        assert rules.rule_phase(groups, {RATE, COUNT, WORKLOAD}).group == "two"  # type: ignore[union-attr]
        assert rules.rule_phase(groups, {RATE, BUCKETS}).group == "one"  # type: ignore[union-attr]
        assert rules.rule_phase(groups, {"elsewhere"}) is None
        assert rules.rule_phase(groups, set()) is None

    def test_a_group_busy_most_of_its_interval_gives_no_phase(self) -> None:
        # 7 s x 1.5 + 0.5 s = 11 s, under 3/4 of 15 s: a phase; 7.5 s: 11.75 s, none.
        for seconds, phased in ((7.0, True), (7.5, False)):
            groups = rules.parse_rule_groups(
                self.answer(self.group("nim", [RATE], evaluationTime=seconds))
            )
            assert (rules.rule_phase(groups, {RATE}) is not None) == phased, seconds

    def test_the_longest_recent_evaluation_sets_the_margin(self) -> None:
        """Each read adds the group's last evaluation time; the phase's margin comes from the
        longest of the last ``keep``; a group no longer served is forgotten."""
        kept: dict[tuple[str, str], tuple[float, ...]] = {}
        seen = []
        for seconds in (4.0, 3.0, 5.0, 3.5, 3.2, 3.1):
            answer = self.answer(self.group("nim", [RATE], evaluationTime=seconds))
            groups, kept = rules.longest_durations(rules.parse_rule_groups(answer), kept, 3)
            phase = rules.rule_phase(groups, {RATE})
            assert phase is not None
            seen.append(phase.duration)
        assert seen == [4.0, 4.0, 5.0, 5.0, 5.0, 3.5]
        other = rules.parse_rule_groups(self.answer(self.group("other", [COUNT])))
        groups, kept = rules.longest_durations(other, kept, 3)
        assert set(kept) == {("/etc/prometheus/rules.yaml", "other")}

    @pytest.mark.parametrize(
        "fields",
        [
            {"lastEvaluation": "0001-01-01T00:00:00Z"},  # never evaluated
            {"lastEvaluation": "yesterday"},
            {"lastEvaluation": "2026-12-07T11:25:59"},  # no zone
            {"interval": 0},
            {"interval": "15s"},
            {"evaluationTime": -1},
            {"evaluationTime": None},
            {"rules": [{"name": RATE, "type": "alerting"}]},
            {"rules": "none"},
        ],
        ids=[
            "never-evaluated",
            "bad-time",
            "no-zone",
            "no-interval",
            "text-interval",
            "negative-duration",
            "no-duration",
            "alerts-only",
            "no-rule-list",
        ],
    )
    def test_unusable_groups_are_left_out(self, fields: dict[str, Any]) -> None:
        answer = self.answer(self.group("bad", [RATE], **fields), "not a group")
        assert rules.parse_rule_groups(answer) == ()

    @pytest.mark.parametrize(
        "answer",
        [
            {"status": "error", "error": "unsupported"},
            {"status": "success", "data": {}},
            {"status": "success", "data": []},
            ["groups"],
        ],
        ids=["error", "no-groups", "data-not-object", "not-object"],
    )
    def test_a_malformed_answer_is_refused(self, answer: object) -> None:
        with pytest.raises(ValueError, match=r"rules answer|groups"):
            rules.parse_rule_groups(answer)


STOP_PODS = ("s-0", "s-1", "s-2")


@pytest.fixture
def stopping_env(tmp_path: Path) -> Iterator[tuple[PrometheusServer, FleetExporter]]:
    """Three pods in one namespace with the chart's rules for the policies' windows and the
    capacity model's (1 m): every rate the policy reads is recorded."""
    fleet = FleetExporter(
        MetricNames.NIM,
        kinds=(MetricKind.KV_CACHE, MetricKind.REQUEST_RATE, MetricKind.INTER_TOKEN_LATENCY),
    )
    for j, pod in enumerate(STOP_PODS):
        fleet.add(
            FleetPod(
                "stop-a",
                pod,
                gauges={MetricKind.KV_CACHE: 0.1 * (j + 1)},
                request_rate=1.0 + j,
                bucket_rates={
                    MetricKind.INTER_TOKEN_LATENCY: [0.0, 1.0 + j, 4.0, 2.0 * j, 1.0] + [0.0] * 9
                },
            )
        )
    fleet.start()
    server = PrometheusServer(tmp_path, "1s", evaluation_interval="1s")
    server.rule_files = [tmp_path / "rules.yaml"]
    render_rules(server.rule_files[0], windows=[WINDOW, "1m"])
    try:
        server.start([ScrapeTarget(fleet.address, honor_labels=True)])
        server.wait_targets_up()
        server.wait_for(f"count({COUNT} > 0)", lambda r: r and r[0]["value"][1] == "3")
        time.sleep(11)  # the 10 s windows full
        yield server, fleet
    finally:
        server.stop()
        fleet.stop()


async def test_a_stopped_pod_is_stale_on_the_recorded_path(
    stopping_env: tuple[PrometheusServer, FleetExporter],
) -> None:
    """A pod whose exporter stopped: its raw series are marked stale at once while its
    recorded rates linger for a window. Reading the recorded series, it is rejected as stale
    (never counted), as on the raw path; its summed histogram is refused and the quantile is
    read from the live pods' own buckets, equal to the raw path's."""
    server, fleet = stopping_env
    client = PrometheusClient(server.url)
    source = PrometheusSource(client)
    raw = PrometheusSource(client, recording_rules=False, aggregate_buckets=False)
    policy = make_policy("stop-a", METRICS, name="p")
    requests = [MetricRequest(policy, pod_infos(STOP_PODS))]
    try:
        await source.fetch(requests, time.time())  # the probe
        healthy = (await source.fetch(requests, time.time()))[policy.key]
        assert source.last_stats is not None
        assert source.last_stats.per_pod_fallback_queries == 0
        for metric in ("requestRate", "interTokenLatency", "itlMean"):
            observation = healthy[metric]
            assert isinstance(observation, PodSamples | TargetSample), (metric, observation)
            assert "namespace_" in observation.query, metric
        rate = healthy["requestRate"]
        assert isinstance(rate, PodSamples)
        assert set(rate.values) == set(STOP_PODS)
        assert rate.rejected == {}

        fleet.remove("stop-a", "s-2")
        # Marked stale at the next scrape; its recorded rates live on for the 10 s window.
        server.wait_for('request_success_total{pod="s-2"}', lambda r: not r)
        lingering = server.query(f'{RATE}{{pod="s-2"}}')
        at = time.time()
        got = (await source.fetch(requests, at))[policy.key]
        fallbacks = source.last_stats.per_pod_fallback_queries
        want = (await raw.fetch(requests, at))[policy.key]
    finally:
        await client.close()
    assert lingering, "the recorded rate was gone before the check: the test proves nothing"
    rate = got["requestRate"]
    assert isinstance(rate, PodSamples)
    assert RATE in rate.query
    assert set(rate.values) == {"s-0", "s-1"}
    assert rate.rejected["s-2"].reason is NoSignalReason.STALE
    kv = got["kvCache"]
    assert isinstance(kv, PodSamples)
    assert set(kv.values) == {"s-0", "s-1"}  # the gauge is simply gone
    mean = got["itlMean"]
    assert isinstance(mean, TargetSample)
    assert mean.pods == 2
    quantile, expected = got["interTokenLatency"], want["interTokenLatency"]
    assert isinstance(quantile, TargetSample)
    assert isinstance(expected, TargetSample)
    assert fallbacks > 0
    assert WORKLOAD not in quantile.query
    assert quantile.pods == expected.pods == 2
    assert math.isclose(quantile.value, expected.value, rel_tol=1e-9)
