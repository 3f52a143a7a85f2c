"""The control loop's orchestration, against in-memory ports (no network).

What is checked here is the loop's own contract: one batched metric fetch per tick, writes only
when needed and only by a leader outside dry-run, failure isolation between policies, no
scale-down on missing data, and durable history giving identical decisions across a restart.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence

import pytest
import structlog
import structlog.testing
from prometheus_client import CollectorRegistry

from autoscaler.controller import heap
from autoscaler.controller.loop import ControlLoop, LoopTimeouts
from autoscaler.controller.ports import Outcome
from autoscaler.decision.resolved import HpaFlags
from autoscaler.decision.types import (
    History,
    NoSignal,
    NoSignalReason,
    PodInfo,
    PodPhase,
    PodSamples,
    Recommendation,
)
from autoscaler.errors import ActuationError, Forbidden
from autoscaler.metrics.base import MetricRequest, PolicyMetrics
from autoscaler.policy.models import ScalingPolicy
from tests.controller.memory import MemoryCluster, MemoryTarget, StaticMetricSource


def make_policy(name: str = "llama", *, behavior: dict[str, object] | None = None) -> ScalingPolicy:
    spec: dict[str, object] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": 1,
        "maxReplicas": 10,
        "algorithm": "hpa",
        "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}],
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": "nim"},
            "spec": spec,
        }
    )


def ready_pods(prefix: str, count: int) -> list[PodInfo]:
    return [
        PodInfo(f"{prefix}-{i}", PodPhase.RUNNING, ready=True, created_at=0.0, ready_at=1.0)
        for i in range(count)
    ]


def kv(pods: Sequence[PodInfo], value: float, now: float) -> PodSamples:
    return PodSamples(values={p.name: value for p in pods}, timestamp=now, series=len(pods))


class World:
    """A cluster with one Deployment per policy, and a metric source."""

    def __init__(self, *policies: ScalingPolicy, replicas: int = 3) -> None:
        self.policies = list(policies)
        self.cluster = MemoryCluster()
        self.source = StaticMetricSource()
        for policy in policies:
            name = policy.spec.scale_target_ref.name
            self.cluster.add(
                "nim",
                "Deployment",
                name,
                MemoryTarget(replicas, selector=f"app={name}", pods=ready_pods(name, replicas)),
            )

    def target(self, name: str) -> MemoryTarget:
        return self.cluster.targets[("nim", "Deployment", name)]

    def set_kv(self, policy: ScalingPolicy, value: float, now: float) -> None:
        pods = self.target(policy.spec.scale_target_ref.name).pods
        self.source.set(policy.key, {"kvCache": kv(pods, value, now)})

    def loop(self, **kwargs: object) -> ControlLoop:
        return ControlLoop(
            policies=lambda: self.policies,
            metrics=self.source,
            scale=self.cluster,
            pods=self.cluster,
            recorder=self.cluster,
            history_store=self.cluster,
            **kwargs,  # type: ignore[arg-type]
        )


class Leader:
    def __init__(self, leader: bool) -> None:
        self.leader = leader

    def is_leader(self) -> bool:
        return self.leader


class TestActing:
    async def test_scales_up_and_writes_once(self) -> None:
        """High KV usage scales the target up with exactly one /scale write."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.9, 100.0)
        [result] = await world.loop().tick(100.0)
        assert result.outcome is Outcome.SCALED
        assert result.decision is not None
        # HPA legacy path: ratio 0.9/0.5 = 1.8 -> ceil(1.8*3) = 6, capped at max(2*3, 4) = 6.
        assert result.decision.desired_replicas == 6
        assert world.cluster.writes == [("nim", "llama", 6)]
        assert world.target("llama").spec_replicas == 6

    async def test_no_write_when_unchanged(self) -> None:
        """A metric inside the tolerance band writes nothing."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.52, 100.0)
        [result] = await world.loop().tick(100.0)
        assert result.outcome is Outcome.UNCHANGED
        assert world.cluster.writes == []

    async def test_tick_line_is_info_when_something_happens_debug_when_steady(self) -> None:
        """One ``tick`` line per policy: info for a scale, debug for a confirmed count."""
        steady, busy = make_policy("steady"), make_policy("busy")
        world = World(steady, busy)
        world.set_kv(steady, 0.52, 100.0)
        world.set_kv(busy, 0.9, 100.0)
        saved = structlog.get_config()
        structlog.reset_defaults()  # a level filter configured by an earlier test drops lines
        try:
            with structlog.testing.capture_logs() as logs:
                await world.loop().tick(100.0)
        finally:
            structlog.configure(**saved)
        levels = {e["policy"]: e["log_level"] for e in logs if e["event"] == "tick"}
        assert levels == {"nim/steady": "debug", "nim/busy": "info"}

    async def test_hpa_tolerance_flag_reaches_the_decision(self) -> None:
        """With the controller's tolerance at 2 % (AUTOSCALER_HPA_TOLERANCE) 0.52 scales 3 -> 4."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.52, 100.0)
        [result] = await world.loop(hpa_flags=HpaFlags(tolerance=0.02)).tick(100.0)
        assert result.outcome is Outcome.SCALED
        assert world.cluster.writes == [("nim", "llama", 4)]  # ceil(1.04 x 3)

    async def test_edited_policy_is_resolved_again_and_decides(self) -> None:
        """A policy is resolved when loaded; an edit (a new policy object) takes effect at once."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.9, 100.0)
        loop = world.loop(dry_run=True)
        [first] = await loop.tick(100.0)
        assert first.decision is not None
        assert first.decision.desired_replicas == 6  # ceil(0.9 / 0.5 x 3)
        spec = policy.spec.model_copy(update={"max_replicas": 4})
        capped = policy.model_copy(update={"spec": spec})
        world.policies = [capped]
        [second] = await loop.tick(115.0)
        assert second.decision is not None
        assert second.decision.desired_replicas == 4

    async def test_dry_run_decides_but_never_writes(self) -> None:
        """Dry-run makes the same decision, reports it, and writes nothing anywhere."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.9, 100.0)
        seen = []
        loop = world.loop(dry_run=True, on_decision=seen.append)
        [result] = await loop.tick(100.0)
        assert result.outcome is Outcome.DRY_RUN
        assert [d.desired_replicas for d in seen] == [6]
        assert world.cluster.writes == []
        assert world.cluster.records == []
        assert world.cluster.saved == {}

    async def test_follower_does_not_decide_or_write(self) -> None:
        """Without the lease nothing is decided or written."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.9, 100.0)
        [result] = await world.loop(leader=Leader(leader=False)).tick(100.0)
        assert result.outcome is Outcome.NOT_LEADER
        assert result.decision is None
        assert world.cluster.writes == []
        assert world.source.fetches == []


class TestIsolationAndSafety:
    async def test_one_failing_target_does_not_affect_another(self) -> None:
        """A 403 on one target's /scale leaves the other policy scaling normally."""
        good, bad = make_policy("good"), make_policy("bad")
        world = World(good, bad)
        world.set_kv(good, 0.9, 10.0)
        world.set_kv(bad, 0.9, 10.0)
        world.target("bad").read_error = Forbidden("get deployments/scale in nim")
        registry = CollectorRegistry()
        results = {r.policy: r for r in await world.loop(registry=registry).tick(10.0)}
        assert results["nim/good"].outcome is Outcome.SCALED
        assert results["nim/bad"].outcome is Outcome.FAILED
        assert results["nim/bad"].error is not None
        assert "forbidden" in results["nim/bad"].error
        errors = registry.get_sample_value(
            "nim_autoscaler_errors_total",
            {"policy": "bad", "namespace": "nim", "kind": "scale_read"},
        )
        assert errors == 1.0
        assert world.cluster.writes == [("nim", "good", 6)]

    async def test_failed_write_is_reported_and_not_recorded_as_scaled(self) -> None:
        """A failing /scale write yields FAILED and no scale event in the history."""
        policy = make_policy(behavior={})
        world = World(policy)
        world.set_kv(policy, 0.9, 10.0)
        world.target("llama").write_error = ActuationError("500 from the API server")
        loop = world.loop()
        [result] = await loop.tick(10.0)
        assert result.outcome is Outcome.FAILED
        assert result.error is not None
        assert "FailedRescale" in result.error
        history = loop.history("nim/llama")
        assert history is not None
        assert history.scale_up_events == ()
        assert world.cluster.records[-1].outcome is Outcome.FAILED

    async def test_lost_race_to_the_same_count_is_a_no_op(self) -> None:
        """Another writer set the desired count first: nothing written, no rescale recorded."""
        policy = make_policy(behavior={})
        world = World(policy)
        world.set_kv(policy, 0.9, 10.0)  # 3 pods at 0.9 / 0.5 -> 6
        world.target("llama").other_writer = lambda t: setattr(t, "spec_replicas", 6)
        registry = CollectorRegistry()
        loop = world.loop(registry=registry)
        [result] = await loop.tick(10.0)
        assert result.outcome is Outcome.NO_OP
        assert world.cluster.writes == []
        history = loop.history("nim/llama")
        assert history is not None
        assert history.scale_up_events == ()
        labels = {"policy": "llama", "namespace": "nim"}
        assert (
            registry.get_sample_value("nim_autoscaler_scale_total", labels | {"direction": "no-op"})
            == 1.0
        )
        assert (
            registry.get_sample_value("nim_autoscaler_scale_total", labels | {"direction": "up"})
            is None
        )

    async def test_lost_race_decides_again_from_the_fresh_count(self) -> None:
        """Another writer changed the count: the policy is decided again from it, and the
        rescale recorded is the change actually written."""
        policy = make_policy(behavior={})
        world = World(policy)
        world.set_kv(policy, 0.9, 10.0)
        world.target("llama").other_writer = lambda t: setattr(t, "spec_replicas", 4)
        loop = world.loop()
        [result] = await loop.tick(10.0)
        assert result.outcome is Outcome.SCALED
        assert result.decision is not None
        assert result.decision.current_replicas == 4
        assert world.cluster.writes == [("nim", "llama", 6)]
        history = loop.history("nim/llama")
        assert history is not None
        assert [e.change for e in history.scale_up_events] == [2]

    @pytest.mark.parametrize(
        "failure",
        [
            NoSignal(NoSignalReason.QUERY_ERROR, "connection refused"),
            NoSignal(NoSignalReason.NAN, "NaN"),
            NoSignal(NoSignalReason.STALE, "sample 400 s old"),
        ],
        ids=lambda f: f.reason.value,
    )
    async def test_missing_data_never_scales_down(self, failure: NoSignal) -> None:
        """With no signal the replicas stay where they are, however idle the pods were."""
        policy = make_policy(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        world = World(policy, replicas=5)
        world.source.set(policy.key, {"kvCache": failure})
        loop = world.loop()
        for now in (0.0, 15.0, 30.0, 45.0):
            [result] = await loop.tick(now)
            assert result.decision is not None
            assert result.decision.desired_replicas == 5
        assert world.cluster.writes == []

    async def test_metric_source_exception_is_no_signal(self) -> None:
        """A source that raises is treated as no signal for every policy: hold."""
        policy = make_policy(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        world = World(policy, replicas=4)
        world.source.error = RuntimeError("boom")
        [result] = await world.loop().tick(0.0)
        assert result.decision is not None
        assert result.decision.desired_replicas == 4
        assert world.cluster.writes == []

    async def test_slow_metric_source_times_out_to_no_signal(self) -> None:
        """A fetch past its budget is abandoned; the tick completes and holds."""

        class Slow(StaticMetricSource):
            async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
                await asyncio.sleep(10)
                return await super().fetch(requests, now)

        policy = make_policy(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        world = World(policy, replicas=4)
        world.source = Slow()
        loop = world.loop(timeouts=LoopTimeouts(metrics=0.05))
        [result] = await asyncio.wait_for(loop.tick(0.0), timeout=5)
        assert result.decision is not None
        assert result.decision.desired_replicas == 4


class TestBatchingAndHistory:
    async def test_one_fetch_per_tick_for_all_policies(self) -> None:
        """Metrics of every policy are fetched with a single call per tick."""
        policies = [make_policy(f"m{i}") for i in range(7)]
        world = World(*policies)
        for policy in policies:
            world.set_kv(policy, 0.5, 0.0)
        loop = world.loop()
        await loop.tick(0.0)
        await loop.tick(15.0)
        assert world.source.fetches == [(0.0, 7), (15.0, 7)]

    async def test_restart_with_saved_history_changes_no_decision(self) -> None:
        """Decisions after a restart (new loop, same store) equal an uninterrupted run."""
        policy = make_policy()  # legacy path: 300 s max-recommendation window
        loads = [0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1]

        async def run(restart_at: int | None) -> list[int]:
            world = World(policy, replicas=3)
            loop = world.loop()
            desired = []
            for i, load in enumerate(loads):
                now = 60.0 * i
                if i == restart_at:
                    loop = world.loop()  # a new process: memory is gone, the store remains
                pods = ready_pods("llama", world.target("llama").spec_replicas)
                world.target("llama").pods = pods
                world.set_kv(policy, load, now)
                [result] = await loop.tick(now)
                assert result.decision is not None
                desired.append(result.decision.desired_replicas)
            return desired

        uninterrupted = await run(None)
        assert uninterrupted != [3] * len(loads)  # the scenario does scale
        for restart_at in range(1, len(loads)):
            assert await run(restart_at) == uninterrupted, f"restart before tick {restart_at}"

    async def test_failed_history_load_is_retried_and_never_overwrites(self) -> None:
        """An unreadable history is unknown, not absent: the tick decides from a fresh one
        without saving it, and the next tick loads the saved history."""
        policy = make_policy(behavior={})
        world = World(policy)
        saved = History(
            initialized=True, recommendations=(Recommendation(5.0, 3),), consecutive_failures=2
        )
        world.cluster.saved[policy.key] = saved
        world.cluster.load_error = ActuationError("500 reading the history ConfigMap")
        world.set_kv(policy, 0.5, 10.0)
        loop = world.loop()
        [result] = await loop.tick(10.0)
        assert result.decision is not None
        assert world.cluster.saved[policy.key] == saved  # not overwritten by a fresh history
        assert loop.history(policy.key) is None  # not kept: loaded again next tick
        world.cluster.load_error = None
        await loop.tick(25.0)
        history = loop.history(policy.key)
        assert history is not None
        assert Recommendation(5.0, 3) in history.recommendations

    async def test_removed_policy_is_forgotten(self) -> None:
        """A policy removed from the directory loses its state and its metric series."""
        a, b = make_policy("a"), make_policy("b")
        world = World(a, b)
        world.set_kv(a, 0.5, 0.0)
        world.set_kv(b, 0.5, 0.0)
        registry = CollectorRegistry()
        loop = world.loop(registry=registry)
        await loop.tick(0.0)
        labels = {"policy": "b", "namespace": "nim", "target": "Deployment/b"}
        assert registry.get_sample_value("nim_autoscaler_desired_replicas", labels) == 3.0
        world.policies = [a]
        await loop.tick(15.0)
        assert loop.history("nim/b") is None
        assert registry.get_sample_value("nim_autoscaler_desired_replicas", labels) is None


class TestHeap:
    async def test_manage_heap_freezes_once_after_the_first_tick_with_policies(self) -> None:
        """``manage_heap``: what the first tick with policies leaves alive is frozen, once."""
        policy = make_policy()
        world = World(policy)
        world.policies = []
        gc.unfreeze()  # another test's loop may have frozen this process already
        thresholds = gc.get_threshold()
        gc.set_threshold(700, 10, 10)
        loop = world.loop(manage_heap=True)
        try:
            await loop.tick(0.0)
            assert gc.get_freeze_count() == 0  # nothing built yet
            assert gc.get_threshold()[0] == 700
            world.policies = [policy]
            world.set_kv(policy, 0.5, 15.0)
            await loop.tick(15.0)
            frozen = gc.get_freeze_count()
            assert frozen > 0
            assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)  # with the freeze
            world.set_kv(policy, 0.5, 30.0)
            collections: list[int] = []

            def record(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    collections.append(info["generation"])

            gc.callbacks.append(record)
            try:
                await loop.tick(30.0)
            finally:
                gc.callbacks.remove(record)
            assert gc.get_freeze_count() <= frozen  # some frozen objects were freed since
            # The young collection as the tick starts (no automatic one at this threshold).
            assert collections[:1] == [0]
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)

    async def test_manage_heap_trims_the_c_heap_after_every_tick_with_policies(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The C heap's free pages go back to the system after each tick that did work."""
        trims: list[float] = []
        monkeypatch.setattr(heap, "trim", lambda: trims.append(0.0) is None)
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.5, 0.0)
        gc.unfreeze()
        loop = world.loop(manage_heap=True)
        try:
            for now in (0.0, 15.0, 30.0):
                world.set_kv(policy, 0.5, now)
                await loop.tick(now)
        finally:
            gc.unfreeze()
        assert len(trims) == 3
        await world.loop().tick(45.0)
        assert len(trims) == 3  # not by default

    async def test_the_heap_is_not_frozen_by_default(self) -> None:
        """Without ``manage_heap`` (tests, the simulator) the loop leaves the collector alone."""
        policy = make_policy()
        world = World(policy)
        world.set_kv(policy, 0.5, 0.0)
        gc.unfreeze()
        await world.loop().tick(0.0)
        assert gc.get_freeze_count() == 0
