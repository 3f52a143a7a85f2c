"""Events (with correlation) and the status annotation, against the fake API server."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from autoscaler.clock import VirtualClock
from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import Condition, ConditionType, Decision
from autoscaler.kube.client import KubeApi
from autoscaler.kube.recorder import (
    STATUS_ANNOTATION,
    KubeRecorder,
    _change,
    _without_observed,
    _without_values,
    event_for,
)
from autoscaler.kube.scale import Discovery
from autoscaler.policy.models import ScalingPolicy
from tests.decision.schema import assert_valid
from tests.fakekube import FakeKube

T0 = 1_700_000_000.0


def policy(kind: str = "Deployment", api_version: str = "apps/v1") -> ScalingPolicy:
    """A small policy for target 'llama' in namespace 'llm'."""
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "llama-policy", "namespace": "llm"},
            "spec": {
                "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": "llama"},
                "minReplicas": 1,
                "maxReplicas": 8,
                "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}],
            },
        }
    )


def decision(
    current: int = 2, desired: int = 4, reason: str = "kvCache above target", *conds: Condition
) -> Decision:
    return Decision(
        policy="llm/llama-policy",
        timestamp=T0,
        current_replicas=current,
        desired_replicas=desired,
        reason=reason,
        conditions=conds,
        metric_values={"kvCache": 0.93},
        metric_proposals={"kvCache": desired},
    )


METRIC_FAILED = Condition(
    ConditionType.SCALING_ACTIVE, status=False, reason="FailedGetPodsMetric", message="no series"
)


def _recorder(
    api: KubeApi,
    clock: VirtualClock,
    *,
    aggregate_interval: float = 30.0,
    status_refresh: float = 300.0,
) -> KubeRecorder:
    return KubeRecorder(
        api,
        Discovery(api),
        clock=clock,
        identity="pod-a",
        aggregate_interval=aggregate_interval,
        status_refresh=status_refresh,
    )


def _stored_status(fake: FakeKube) -> dict[str, Any]:
    """The status annotation on the ``llama`` Deployment, decoded."""
    annotations = fake.objects[("deployments", "llm", "llama")]["metadata"]["annotations"]
    status: dict[str, Any] = json.loads(annotations[STATUS_ANNOTATION])
    return status


def _overwrite_status(fake: FakeKube, status: dict[str, Any]) -> None:
    """Another writer replaces the ``llama`` Deployment's status annotation."""
    annotations = fake.objects[("deployments", "llm", "llama")]["metadata"]["annotations"]
    annotations[STATUS_ANNOTATION] = json.dumps(status)


def _events(fake: FakeKube) -> list[dict[str, object]]:
    return [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]


class TestEventChoice:
    def test_scaled_is_successful_rescale(self) -> None:
        """A scale gives a Normal SuccessfulRescale with the HPA message shape."""
        spec = event_for(decision(), Outcome.SCALED, None)
        assert spec is not None
        assert (spec.type, spec.reason, spec.message) == (
            "Normal",
            "SuccessfulRescale",
            "New size: 4; reason: kvCache above target",
        )

    def test_failed_write_is_failed_rescale(self) -> None:
        """A failed write is FailedRescale and carries the error."""
        spec = event_for(decision(), Outcome.FAILED, "conflict")
        assert spec is not None
        assert spec.reason == "FailedRescale"
        assert "error: conflict" in spec.message

    def test_failed_get_scale_from_condition(self) -> None:
        """An AbleToScale=False/FailedGetScale condition names the event."""
        cond = Condition(ConditionType.ABLE_TO_SCALE, status=False, reason="FailedGetScale")
        spec = event_for(decision(2, 2, "hold", cond), Outcome.FAILED, "not found")
        assert spec is not None
        assert (spec.type, spec.reason, spec.message) == ("Warning", "FailedGetScale", "not found")

    def test_metric_failure_without_action(self) -> None:
        """A metric failure warns even when nothing was written."""
        spec = event_for(decision(2, 2, "hold", METRIC_FAILED), Outcome.UNCHANGED, None)
        assert spec is not None
        assert (spec.reason, spec.message) == ("FailedGetPodsMetric", "no series")

    def test_failed_get_scale_without_failed_outcome(self) -> None:
        """AbleToScale=False/FailedGetScale warns whatever the outcome."""
        cond = Condition(
            ConditionType.ABLE_TO_SCALE,
            status=False,
            reason="FailedGetScale",
            message="scale unreadable",
        )
        spec = event_for(decision(2, 2, "hold", cond), Outcome.UNCHANGED, None)
        assert spec is not None
        assert (spec.type, spec.reason, spec.message) == (
            "Warning",
            "FailedGetScale",
            "scale unreadable",
        )

    def test_quiet_unchanged(self) -> None:
        """A healthy unchanged decision emits nothing."""
        assert event_for(decision(2, 2, "within tolerance"), Outcome.UNCHANGED, None) is None


class TestEvents:
    async def test_event_created_on_target(self, fake: FakeKube, api: KubeApi) -> None:
        """A scale creates one Event whose involvedObject is the target (with its uid)."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        await _recorder(api, clock).record(policy(), decision(), Outcome.SCALED)
        (event,) = _events(fake)
        assert event["reason"] == "SuccessfulRescale"
        assert event["message"] == "New size: 4; reason: kvCache above target"
        assert event["type"] == "Normal"
        assert event["count"] == 1
        involved = event["involvedObject"]
        assert isinstance(involved, dict)
        assert (involved["kind"], involved["name"], involved["namespace"]) == (
            "Deployment",
            "llama",
            "llm",
        )
        assert involved["uid"] == fake.objects[("deployments", "llm", "llama")]["metadata"]["uid"]

    async def test_repeats_are_aggregated_not_flooded(self, fake: FakeKube, api: KubeApi) -> None:
        """Ten identical failures: one Event, patched at most once per interval, count 10."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock, aggregate_interval=30.0)
        failing = decision(2, 2, "hold", METRIC_FAILED)
        for _ in range(10):
            await recorder.record(policy(), failing, Outcome.UNCHANGED)
            clock.advance(10.0)
        events = _events(fake)
        assert len(events) == 1
        posts = [p for m, p in fake.requests if m == "POST" and p.endswith("/events")]
        patches = [p for m, p in fake.requests if m == "PATCH" and "/events/" in p]
        assert len(posts) == 1
        assert len(patches) == 3  # at t+30, t+60, t+90
        assert events[0]["count"] == 10
        assert events[0]["lastTimestamp"] == "2023-11-14T22:14:50Z"  # T0 + 90 s

    async def test_different_message_is_a_new_event(self, fake: FakeKube, api: KubeApi) -> None:
        """A different message is a different correlation key."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock)
        await recorder.record(policy(), decision(2, 4), Outcome.SCALED)
        await recorder.record(policy(), decision(4, 6), Outcome.SCALED)  # same instant
        assert sorted(e["message"] for e in _events(fake)) == [  # type: ignore[type-var]
            "New size: 4; reason: kvCache above target",
            "New size: 6; reason: kvCache above target",
        ]

    async def test_expired_event_is_recreated(self, fake: FakeKube, api: KubeApi) -> None:
        """If the aggregated Event is gone (TTL), a new one carries the running count."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock, aggregate_interval=30.0)
        failing = decision(2, 2, "hold", METRIC_FAILED)
        await recorder.record(policy(), failing, Outcome.UNCHANGED)
        (name,) = [n for (p, _, n) in fake.objects if p == "events"]
        fake.delete("events", "llm", name)
        clock.advance(60)
        await recorder.record(policy(), failing, Outcome.UNCHANGED)
        (event,) = _events(fake)
        assert event["count"] == 2

    async def test_api_errors_do_not_raise(self, fake: FakeKube, api: KubeApi) -> None:
        """Event and annotation writes failing (403/500) are logged, not raised."""
        fake.add_deployment("llm", "llama", replicas=2)
        fake.inject(r"/events$", 403, method="POST", times=None)
        fake.inject(r"/deployments/llama$", 500, method="PATCH", times=None)
        await _recorder(api, VirtualClock(T0)).record(policy(), decision(), Outcome.SCALED)
        assert _events(fake) == []

    async def test_dry_run_and_not_leader_write_nothing(self, fake: FakeKube, api: KubeApi) -> None:
        """Only the leader outside dry-run writes."""
        fake.add_deployment("llm", "llama", replicas=2)
        recorder = _recorder(api, VirtualClock(T0))
        await recorder.record(policy(), decision(), Outcome.DRY_RUN)
        await recorder.record(policy(), decision(), Outcome.NOT_LEADER)
        assert [m for m, _ in fake.requests if m != "GET"] == []


class TestStatusAnnotation:
    async def test_written_with_content(self, fake: FakeKube, api: KubeApi) -> None:
        """The annotation holds policy, replicas, metric vs target, conditions, times."""
        fake.add_deployment("llm", "llama", replicas=2)
        cond = Condition(ConditionType.SCALING_LIMITED, status=False, reason="DesiredWithinRange")
        await _recorder(api, VirtualClock(T0)).record(
            policy(), decision(2, 4, "kvCache above target", cond), Outcome.SCALED
        )
        obj = fake.objects[("deployments", "llm", "llama")]
        status = json.loads(obj["metadata"]["annotations"][STATUS_ANNOTATION])
        assert status["policy"] == "llm/llama-policy"
        assert (status["currentReplicas"], status["desiredReplicas"]) == (2, 4)
        assert status["lastScaleTime"] == "2023-11-14T22:13:20Z"
        assert status["observedAt"] == "2023-11-14T22:13:20Z"
        assert_valid(status)
        assert status["metrics"] == [
            {
                "name": "kvCache",
                "value": 0.93,
                "proposal": 4,
                "targetType": "AverageValue",
                "target": 0.7,
            }
        ]
        assert status["conditions"] == [
            {
                "type": "ScalingLimited",
                "status": "False",
                "reason": "DesiredWithinRange",
                "message": "",
            }
        ]
        assert obj["spec"]["replicas"] == 2  # the annotation patch touches nothing else

    async def test_written_only_on_change(self, fake: FakeKube, api: KubeApi) -> None:
        """Same content at a later time: no write; changed content: one write."""
        fake.add_deployment("llm", "llama", replicas=2)
        recorder = _recorder(api, VirtualClock(T0))
        steady = decision(2, 2, "within tolerance")
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        later = dataclasses.replace(steady, timestamp=T0 + 15)
        await recorder.record(policy(), later, Outcome.UNCHANGED)
        patches = [p for m, p in fake.requests if m == "PATCH" and p.endswith("/llama")]
        assert len(patches) == 1
        await recorder.record(policy(), decision(2, 3, "kvCache above target"), Outcome.SCALED)
        patches = [p for m, p in fake.requests if m == "PATCH" and p.endswith("/llama")]
        assert len(patches) == 2

    async def test_metric_values_alone_refresh_at_most_every_minute(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Only the numbers move (same replicas, reason): rewritten at most once a minute, and
        only once they moved beyond the tolerance (10 %) since written."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock)

        def patches() -> int:
            return sum(1 for m, p in fake.requests if m == "PATCH" and p.endswith("/llama"))

        steady = decision(2, 2, "within tolerance")
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        assert patches() == 1
        for tick in range(1, 4):  # 15 s ticks, the KV value wanders
            clock.advance(15)
            moved = dataclasses.replace(
                steady, timestamp=clock.now(), metric_values={"kvCache": 0.5 + 0.01 * tick}
            )
            await recorder.record(policy(), moved, Outcome.UNCHANGED)
        assert patches() == 1
        clock.advance(20)  # 65 s since the write
        moved = dataclasses.replace(steady, timestamp=clock.now(), metric_values={"kvCache": 0.6})
        await recorder.record(policy(), moved, Outcome.UNCHANGED)
        assert patches() == 2
        for tick in range(40):  # ten minutes of jitter within 10 % of the written 0.6
            clock.advance(15)
            jitter = dataclasses.replace(
                steady, timestamp=clock.now(), metric_values={"kvCache": 0.6 + 0.05 * (tick % 2)}
            )
            await recorder.record(policy(), jitter, Outcome.UNCHANGED)
        assert patches() == 2
        clock.advance(15)
        drift = dataclasses.replace(steady, timestamp=clock.now(), metric_values={"kvCache": 0.67})
        await recorder.record(policy(), drift, Outcome.UNCHANGED)
        assert patches() == 3  # 0.67 is 11.7 % above the written 0.6

    async def test_restart_reads_existing_annotation(self, fake: FakeKube, api: KubeApi) -> None:
        """A new recorder (restart) compares with the annotation on the object: no rewrite."""
        fake.add_deployment("llm", "llama", replicas=2)
        steady = decision(2, 2, "within tolerance")
        await _recorder(api, VirtualClock(T0)).record(policy(), steady, Outcome.UNCHANGED)
        await _recorder(api, VirtualClock(T0 + 30)).record(policy(), steady, Outcome.UNCHANGED)
        patches = [p for m, p in fake.requests if m == "PATCH" and p.endswith("/llama")]
        assert len(patches) == 1

    async def test_foreign_write_is_repaired_after_refresh(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """If another instance overwrote the annotation, it is re-read and fixed after the
        refresh period (and trusted from memory before it)."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock, status_refresh=300.0)
        steady = decision(2, 2, "within tolerance")
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        _overwrite_status(fake, {"policy": "someone else"})
        clock.advance(60)
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        assert _stored_status(fake) == {"policy": "someone else"}
        clock.advance(300)
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        assert _stored_status(fake)["policy"] == "llm/llama-policy"

    async def test_annotation_read_again_after_a_tick_not_led(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """While another instance leads it may write the annotation: the first record after
        leading again reads the object instead of trusting memory."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock, status_refresh=3600.0)
        steady = decision(2, 2, "within tolerance")
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        clock.advance(15)
        await recorder.record(policy(), steady, Outcome.NOT_LEADER)
        _overwrite_status(fake, {"policy": "someone else"})
        clock.advance(15)
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        assert _stored_status(fake)["policy"] == "llm/llama-policy"

    async def test_custom_resource_target(self, fake: FakeKube, api: KubeApi) -> None:
        """The annotation and events work on a NIMService too."""
        fake.add_deployment("llm", "llama", replicas=2, kind="NIMService")
        pol = policy("NIMService", "apps.nvidia.com/v1alpha1")
        await _recorder(api, VirtualClock(T0)).record(pol, decision(), Outcome.SCALED)
        obj = fake.objects[("nimservices", "llm", "llama")]
        assert STATUS_ANNOTATION in obj["metadata"]["annotations"]
        assert len(_events(fake)) == 1


class TestSettled:
    """``settled``: true only when ``record`` would send nothing (the loop then skips it)."""

    async def test_agrees_with_record(self, fake: FakeKube, api: KubeApi) -> None:
        """Over ten minutes of ticks (values wandering, a rescale, a failure, the refresh
        intervals passing), every tick found settled makes no request when recorded anyway,
        and the steady ticks are found settled."""
        fake.add_deployment("llm", "llama", replicas=2)
        clock = VirtualClock(T0)
        recorder = _recorder(api, clock, status_refresh=120.0)
        steady = decision(2, 2, "within tolerance")
        settled_ticks = 0
        for tick in range(40):
            clock.advance(15)
            value = 0.5 + 0.08 * ((tick * 7) % 5) / 4  # moves past the tolerance now and then
            current = dataclasses.replace(
                steady, timestamp=clock.now(), metric_values={"kvCache": value}
            )
            outcome = Outcome.UNCHANGED
            if tick == 12:
                current, outcome = decision(2, 3, "kvCache above target"), Outcome.SCALED
            if tick == 25:
                outcome = Outcome.FAILED
            found = recorder.settled(policy(), current, outcome, "boom" if tick == 25 else None)
            before = len(fake.requests)
            await recorder.record(policy(), current, outcome, "boom" if tick == 25 else None)
            if found:
                settled_ticks += 1
                assert len(fake.requests) == before, f"tick {tick}: settled but record wrote"
        assert settled_ticks >= 20

    async def test_not_settled_without_knowing(self, fake: FakeKube, api: KubeApi) -> None:
        """A recorder that has not read the object or discovery, and the outcomes record()
        handles itself, are never settled."""
        fake.add_deployment("llm", "llama", replicas=2)
        recorder = _recorder(api, VirtualClock(T0))
        steady = decision(2, 2, "within tolerance")
        assert not recorder.settled(policy(), steady, Outcome.UNCHANGED)  # nothing read yet
        await recorder.record(policy(), steady, Outcome.UNCHANGED)
        assert recorder.settled(policy(), steady, Outcome.UNCHANGED)
        assert not recorder.settled(policy(), steady, Outcome.NOT_LEADER)
        assert not recorder.settled(policy(), steady, Outcome.SCALED)  # an Event is due
        changed = decision(2, 3, "kvCache above target")
        assert not recorder.settled(policy(), changed, Outcome.UNCHANGED)  # status changes
        other = policy(kind="StatefulSet")  # a kind discovery has not been asked about
        assert not recorder.settled(other, steady, Outcome.UNCHANGED)


class TestChange:
    """How a status record differs from the one on the object, judged field by field."""

    BASE: dict[str, Any] = {
        "policy": "ns/p",
        "time": 1.0,
        "observedAt": "2026-01-01T00:00:00Z",
        "desiredReplicas": 3,
        "reason": "steady",
        "conditions": [{"type": "AbleToScale", "status": "True"}],
        "metrics": [
            {"name": "kv", "value": 0.5, "proposal": 3, "targetType": "Value", "target": 0.5},
            {"name": "q", "value": None, "proposal": None, "targetType": "Value", "target": 4},
        ],
        "error": None,
    }

    @staticmethod
    def _variants() -> list[dict[str, Any]]:
        base = TestChange.BASE
        metrics = base["metrics"]
        return [
            dict(base),
            {**base, "time": 99.0, "observedAt": "later"},  # observation times only
            {**base, "metrics": [{**metrics[0], "value": 0.51}, metrics[1]]},
            {**base, "metrics": [{**metrics[0], "proposal": 4}, metrics[1]]},
            {**base, "metrics": [{**metrics[0], "target": 0.6}, metrics[1]]},
            {**base, "metrics": [metrics[0]]},
            {**base, "metrics": None},
            {**base, "reason": "other"},
            {**base, "error": "boom"},
            {k: v for k, v in base.items() if k != "error"},  # a field gone
            {**base, "extra": None},  # a field added, even as None
            {k: v for k, v in base.items() if k != "observedAt"},
        ]

    def test_as_comparing_copies_without_times_and_values(self) -> None:
        """Every pair of variants: the same verdict as comparing the records copied without
        their observation times, then without their metrics' values and proposals."""
        for before in self._variants():
            for after in self._variants():
                if after.get("metrics") is None:
                    continue  # a written record always has its metrics
                old_before, old_after = _without_observed(before), _without_observed(after)
                if old_before == old_after:
                    expected = None
                elif _without_values(old_before) == _without_values(old_after):
                    expected = "values"
                else:
                    expected = "more"
                assert _change(before, after) == expected, (before, after)
