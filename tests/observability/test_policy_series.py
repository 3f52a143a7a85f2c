"""The per-policy series of ``ControllerMetrics`` and ``FleetMetrics``, rendered at scrape time.

The exposition is a public contract (the chart's dashboard and alerts): names, help texts, types,
labels, ``_total`` and ``_created`` of counters, and "absent means no signal".
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from aiohttp import test_utils
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from autoscaler.decision import capacity as cap
from autoscaler.decision.slo import SloPlan, SloState
from autoscaler.decision.types import Decision
from autoscaler.observability.fleet_metrics import FleetMetrics
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.observability.server import HealthChecks, build_app
from autoscaler.policy.models import PolicyMode, ScalingPolicy
from tests.controller.test_loop import World, make_policy


def policy(i: int, max_replicas: int = 20) -> ScalingPolicy:
    """``llama-<i>`` in ``ns-<i>``: an ``llm`` policy with two metrics (one a latency) and SLOs."""
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "autoscaling.nim-autoscaler.io/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": f"llama-{i}", "namespace": f"ns-{i}"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
                "algorithm": "llm",
                "minReplicas": 1,
                "maxReplicas": max_replicas,
                "metrics": [
                    {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
                    {"interTokenLatency": {"target": {"type": "Value", "value": 0.05}}},
                ],
                "slo": {
                    "ttft": {"quantile": 0.95, "target": 0.5},
                    "itl": {"quantile": 0.95, "target": 0.05},
                },
            },
        }
    )


def plan(source: str = "learned") -> SloPlan:
    """A sizing with every figure present."""
    return SloPlan(
        state=SloState(model=cap.CapacityModel(samples=7)),
        estimate=cap.CapacityEstimate(source, 4.0, 4.5, 3.9, 6.0, "note", (900.0, 150.0)),
        arrivals=12.0,
        forecast=13.0,
        peak=15.0,
        waiting=0.0,
        need=3.2,
        floor=None,
        steady="steady",
        latencies=(("ttft", 0.95, 0.5, 0.21), ("itl", 0.95, 0.05, 0.02)),
        trend=None,
        daily=None,
    )


def sparse_plan() -> SloPlan:
    """A sizing short of most figures: no arrivals, no estimate yet, no TTFT signal."""
    full = plan()
    estimate = replace(full.estimate, source="prior", per_replica=None, bad=None, lengths=None)
    return replace(
        full,
        estimate=estimate,
        arrivals=None,
        need=None,
        latencies=(("ttft", 0.95, 0.5, None), ("itl", 0.95, 0.05, 0.02)),
    )


def decision(
    kv: float | None = 0.5,
    itl: float | None = 0.08,
    *,
    reason: str = "steady",
    sizing: SloPlan | None = None,
) -> Decision:
    return Decision(
        policy="ns/llama",
        timestamp=0.0,
        current_replicas=2,
        desired_replicas=3,
        reason=reason,
        metric_values={"kvCache": kv, "interTokenLatency": itl},
        sizing=sizing,
    )


def render(registry: CollectorRegistry) -> str:
    """The ``/metrics`` text with the creation times of counters replaced by ``T``."""
    text = generate_latest(registry).decode()
    return re.sub(r"^(\S+_created(?:\{.*\})?) \S+$", r"\1 T", text, flags=re.MULTILINE)


def samples(registry: CollectorRegistry, **labels: str) -> list[str]:
    """Names of the samples carrying all of ``labels``."""
    return [
        s.name
        for family in registry.collect()
        for s in family.samples
        if labels.items() <= s.labels.items()
    ]


EXPOSITION = Path(__file__).with_name("exposition.txt")
"""The expected text: what the prometheus_client children exposed for the same calls, but for
the order of samples within a family (here: by policy) and the counters of the removed policy
(those children stayed)."""


class TestExposition:
    """The whole ``/metrics`` text for policies with every kind of series."""

    def test_every_family_name_help_type_label_and_value(self) -> None:
        """Every kind of series, as prometheus_client children exposed them (same order of
        families); a removed policy exports nothing, not even its counters."""
        registry = CollectorRegistry()
        controller, fleet = ControllerMetrics(registry), FleetMetrics(registry)
        a, b, gone = policy(1), policy(2), policy(3)
        for each in (a, b, gone):
            fleet.set_mode(each, PolicyMode.ADVISORY if each is b else PolicyMode.ACTIVE)
            controller.observe_decision(each, decision(sizing=plan()))
            controller.error(each, "metrics")
        controller.observe_decision(b, decision(None, 0.01, sizing=sparse_plan()))
        controller.observe_decision(a, decision(2.5, 2.08, reason="kvCache above target"))
        controller.scaled(a, 2, 3)
        controller.scaled(a, 3, 2)
        controller.no_op(b)
        fleet.external_rescale(a)
        fleet.deletion_costs_written(a, 2, 1)
        fleet.set_limited(a, limited=True)
        fleet.set_limited(b, limited=False)
        fleet.budget_gpus.labels("pool", "limit").set(8)
        controller.forget([gone])
        fleet.forget([gone])
        controller.policies_loaded.set(2)
        assert EXPOSITION.read_text() == render(registry)

    def test_counters_expose_their_creation_time(self) -> None:
        """``_created`` is the Unix time of the first count, and stays."""
        registry = CollectorRegistry()
        controller = ControllerMetrics(registry)
        before = time.time()
        controller.error(policy(1), "metrics")
        labels = {"policy": "llama-1", "namespace": "ns-1", "kind": "metrics"}
        created = registry.get_sample_value("nim_autoscaler_errors_created", labels)
        assert created is not None
        assert before <= created <= time.time()
        controller.error(policy(1), "metrics")
        assert created == registry.get_sample_value("nim_autoscaler_errors_created", labels)
        assert registry.get_sample_value("nim_autoscaler_errors_total", labels) == 2.0


class TestNoSignal:
    """A value without signal is absent (never a stale number) and comes back with the signal."""

    def test_metric_values_and_sizing_figures_come_and_go(self) -> None:
        """Metric values, latencies, capacity figures and request lengths follow each decision."""
        registry = CollectorRegistry()
        controller = ControllerMetrics(registry)
        labels = {"policy": "llama-1", "namespace": "ns-1"}

        def value(name: str, **extra: str) -> float | None:
            return registry.get_sample_value(name, labels | extra)

        kv = {"metric": "kvCache"}
        ttft = {"objective": "ttft"}
        estimate = {"figure": "estimate"}
        prompt = {"kind": "prompt"}
        controller.observe_decision(policy(1), decision(0.5, sizing=plan()))
        assert value("nim_autoscaler_metric_value", **kv) == 0.5
        assert value("nim_autoscaler_slo_latency_seconds", **ttft) == 0.21
        assert value("nim_autoscaler_capacity_requests_per_second", **estimate) == 4.0
        assert value("nim_autoscaler_request_length_tokens", **prompt) == 900.0
        controller.observe_decision(policy(1), decision(None, sizing=sparse_plan()))
        assert value("nim_autoscaler_metric_value", **kv) is None
        assert value("nim_autoscaler_metric_target", **kv) == 0.7
        assert value("nim_autoscaler_slo_latency_seconds", **ttft) is None
        assert value("nim_autoscaler_slo_objective_seconds", **ttft) == 0.5
        assert value("nim_autoscaler_capacity_requests_per_second", **estimate) is None
        assert value("nim_autoscaler_request_length_tokens", **prompt) is None
        assert value("nim_autoscaler_capacity_source", source="learned") is None
        assert value("nim_autoscaler_capacity_source", source="prior") == 1.0
        controller.observe_decision(policy(1), decision(0.6, sizing=plan()))
        assert value("nim_autoscaler_metric_value", **kv) == 0.6
        assert value("nim_autoscaler_slo_latency_seconds", **ttft) == 0.21
        assert value("nim_autoscaler_capacity_requests_per_second", **estimate) == 4.0
        assert value("nim_autoscaler_request_length_tokens", **prompt) == 900.0
        assert value("nim_autoscaler_capacity_source", source="prior") is None

    def test_a_decision_without_sizing_keeps_the_last_one(self) -> None:
        """A decision with no sizing (a paused policy) leaves the last sizing exported."""
        registry = CollectorRegistry()
        controller = ControllerMetrics(registry)
        controller.observe_decision(policy(1), decision(sizing=plan()))
        controller.observe_decision(policy(1), decision(sizing=None))
        labels = {"policy": "llama-1", "namespace": "ns-1", "kind": "arrivals"}
        assert registry.get_sample_value("nim_autoscaler_slo_requests_per_second", labels) == 12


class TestForget:
    """A removed policy's series disappear; an edited one's counters go on."""

    def test_forget_removes_every_series_of_the_policy(self) -> None:
        """Gauges, counters and fleet series of the removed policy go; the others' stay."""
        registry = CollectorRegistry()
        controller, fleet = ControllerMetrics(registry), FleetMetrics(registry)
        kept, removed = policy(1), policy(2)
        for each in (kept, removed):
            controller.observe_decision(each, decision(sizing=plan()))
            controller.error(each, "metrics")
            controller.scaled(each, 2, 3)
            controller.no_op(each)
            fleet.set_mode(each, PolicyMode.ACTIVE)
            fleet.set_limited(each, limited=False)
            fleet.external_rescale(each)
            fleet.deletion_costs_written(each, 1, 0)
        exported = samples(registry, policy="llama-1")
        assert len(exported) == len(samples(registry, policy="llama-2")) > 40
        controller.forget([removed])
        fleet.forget([removed])
        assert samples(registry, policy="llama-2") == []
        assert samples(registry, policy="llama-1") == exported
        controller.observe_decision(removed, decision())  # the same policy back
        labels = {"policy": "llama-2", "namespace": "ns-2", "reason": "steady"}
        assert registry.get_sample_value("nim_autoscaler_decisions_total", labels) == 1.0

    def test_forget_version_keeps_counting(self) -> None:
        """An edit drops the old version's series until the new one's first decision; the
        counters carry on with their creation time."""
        registry = CollectorRegistry()
        controller = ControllerMetrics(registry)
        old, new = policy(1), policy(1, max_replicas=30)
        controller.observe_decision(old, decision(sizing=plan()))
        controller.scaled(old, 2, 3)
        labels = {"policy": "llama-1", "namespace": "ns-1"}
        steady = labels | {"reason": "steady"}
        created = registry.get_sample_value("nim_autoscaler_decisions_created", steady)
        controller.forget_version([old])
        assert registry.get_sample_value("nim_autoscaler_max_replicas", labels) is None
        assert registry.get_sample_value("nim_autoscaler_capacity_samples", labels) is None
        assert registry.get_sample_value("nim_autoscaler_decisions_total", steady) == 1.0
        controller.observe_decision(new, decision())
        assert registry.get_sample_value("nim_autoscaler_max_replicas", labels) == 30.0
        assert registry.get_sample_value("nim_autoscaler_decisions_total", steady) == 2.0
        assert registry.get_sample_value("nim_autoscaler_decisions_created", steady) == created
        up = labels | {"direction": "up"}
        assert registry.get_sample_value("nim_autoscaler_scale_total", up) == 1.0

    async def test_the_loop_keeps_counting_across_an_edit(self) -> None:
        """The control loop: an edited policy's bounds change and its decisions keep counting."""
        policy = make_policy()
        world = World(policy)
        registry = CollectorRegistry()
        loop = world.loop(registry=registry)
        labels = {"policy": "llama", "namespace": "nim"}
        for tick in range(2):
            world.set_kv(policy, 0.5, 15.0 * tick)
            await loop.tick(15.0 * tick)
        data = policy.model_dump(mode="json", by_alias=True, exclude_none=True)
        data["spec"]["maxReplicas"] = 12
        world.policies = [ScalingPolicy.model_validate(data)]
        world.set_kv(policy, 0.5, 30.0)
        await loop.tick(30.0)
        assert registry.get_sample_value("nim_autoscaler_max_replicas", labels) == 12.0
        decisions = [
            s.value
            for family in registry.collect()
            for s in family.samples
            if s.name == "nim_autoscaler_decisions_total"
        ]
        assert sum(decisions) == 3.0


class TestConcurrentScrape:
    """``/metrics`` renders in a worker thread while the control loop updates the state."""

    def test_scraping_while_a_thousand_policies_change_never_raises(self) -> None:
        """Policies decided, counted, forgotten and added back under a scraping thread."""
        registry = CollectorRegistry()
        controller, fleet = ControllerMetrics(registry), FleetMetrics(registry)
        policies = [policy(i) for i in range(1000)]
        failures: list[BaseException] = []
        scrapes = 0
        done = threading.Event()

        def scrape() -> None:
            nonlocal scrapes
            while not done.is_set():
                try:
                    generate_latest(registry)
                except BaseException as exc:
                    failures.append(exc)
                    return
                scrapes += 1

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads as often as possible
        scraper = threading.Thread(target=scrape)
        scraper.start()
        try:
            for round_ in range(4):
                for i, each in enumerate(policies):
                    sizing = plan() if i % 2 else sparse_plan()
                    controller.observe_decision(each, decision(reason=f"r{i % 5 + round_}"))
                    controller.observe_decision(each, decision(sizing=sizing))
                    controller.error(each, f"kind-{round_}")
                    fleet.set_mode(each, PolicyMode.ACTIVE)
                    fleet.deletion_costs_written(each, 1, 0)
                    if i % 3 == round_ % 3:
                        controller.forget([each])
                        fleet.forget([each])
                    elif i % 3 == 1:
                        controller.forget_version([each])
        finally:
            done.set()
            scraper.join()
            sys.setswitchinterval(interval)
        assert failures == []
        assert scrapes > 0


class _ThreadProbe:
    """A collector noting the threads it is collected in."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def collect(self) -> list[Metric]:
        self.threads.append(threading.get_ident())
        return []


async def test_metrics_endpoint_renders_off_the_event_loop() -> None:
    """``/metrics`` answers the per-policy series, rendered in a worker thread."""
    registry = CollectorRegistry()
    ControllerMetrics(registry).observe_decision(policy(1), decision())
    probe = _ThreadProbe()
    registry.register(probe)
    checks = HealthChecks(live=lambda: (True, ""), ready=lambda: (True, ""))
    async with test_utils.TestClient(test_utils.TestServer(build_app(registry, checks))) as client:
        response = await client.get("/metrics")
        body = await response.text()
    assert response.status == 200
    assert 'nim_autoscaler_max_replicas{namespace="ns-1",policy="llama-1"} 20.0' in body
    assert probe.threads
    assert threading.get_ident() not in probe.threads
