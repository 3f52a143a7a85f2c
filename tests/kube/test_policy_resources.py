"""ScalingPolicy resources through the real client against the fake API server.

The list+watch cache (validation with the controller's model, resume, 410 re-list, a missing CRD)
and the /status writer (written only on change, conflicts retried, status only, Events on the
ScalingPolicy object).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import Condition, ConditionType, Decision
from autoscaler.kube.client import KubeApi
from autoscaler.kube.policies import PolicyResources, resource_path
from autoscaler.kube.policy_status import PolicyStatusWriter, decision_reason
from autoscaler.policy.models import API_VERSION
from autoscaler.policy.sources import ResourceProblem
from autoscaler.policy.status import DecisionReason, ScalingPolicyStatus
from tests.fakekube import FakeKube
from tests.kube.conftest import eventually

PLURAL = "scalingpolicies"


class Clock:
    """A settable clock."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def policy_object(name: str = "llama", namespace: str = "llm", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": 1,
        "maxReplicas": 8,
        "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}],
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


@pytest.fixture
async def watch(api: KubeApi) -> AsyncIterator[PolicyResources]:
    resources = PolicyResources(
        api, ["llm"], watch_timeout=30, backoff_base=0.01, backoff_cap=0.05, missing_retry=0.05
    )
    resources.start()
    yield resources
    await resources.stop()


def keys(resources: PolicyResources) -> list[str]:
    return [r.key for r in resources.resources()]


class TestWatch:
    """List, then watch; the controller's validation on every object."""

    async def test_list_validate_and_follow(self, fake: FakeKube, watch: PolicyResources) -> None:
        """Objects before start are listed; added, modified, deleted ones are followed."""
        fake.put(PLURAL, policy_object("a"))
        fake.put(PLURAL, policy_object("elsewhere", namespace="other"))
        assert await watch.wait_synced(5.0)
        assert keys(watch) == ["llm/a"]
        (first,) = watch.resources()
        assert first.policy is not None
        assert first.policy.spec.max_replicas == 8
        assert first.generation == 1
        fake.put(PLURAL, policy_object("b"))
        await eventually(lambda: keys(watch) == ["llm/a", "llm/b"])
        fake.put(PLURAL, policy_object("a", maxReplicas=12))
        await eventually(
            lambda: (
                (r := watch.get("llm", "a")) is not None
                and r.policy is not None
                and r.policy.spec.max_replicas == 12
            )
        )
        assert watch.get("llm", "a").generation == 2  # type: ignore[union-attr]
        fake.delete(PLURAL, "llm", "b")
        await eventually(lambda: keys(watch) == ["llm/a"])
        assert watch.lists == 1

    async def test_invalid_object_keeps_its_errors_with_field_paths(
        self, fake: FakeKube, watch: PolicyResources
    ) -> None:
        """What the API server let through but the model rejects is kept, with where and why."""
        bad = policy_object("bad", minReplicas=5, maxReplicas=3)
        bad["spec"]["metrics"][0]["kvCache"]["target"] = {"type": "Value", "averageValue": 0.5}
        fake.put(PLURAL, bad)
        fake.put(PLURAL, policy_object("good"))
        assert await watch.wait_synced(5.0)
        invalid = watch.get("llm", "bad")
        assert invalid is not None
        assert invalid.policy is None
        fields = {e.location.field for e in invalid.errors if e.location is not None}
        assert "spec.maxReplicas" in fields
        assert "spec.metrics[0].kvCache.target" in fields
        assert all(str(e).startswith("ScalingPolicy llm/bad") for e in invalid.errors)
        assert watch.get("llm", "good").policy is not None  # type: ignore[union-attr]

    async def test_expired_watch_relists(self, fake: FakeKube, watch: PolicyResources) -> None:
        """A watch cut after history was compacted gets 410 and lists again."""
        assert await watch.wait_synced(5.0)
        fake.compact()
        fake.put(PLURAL, policy_object("a"))
        fake.compact()
        fake.cut_watches()
        await eventually(lambda: keys(watch) == ["llm/a"])
        await eventually(lambda: watch.lists >= 2)

    async def test_missing_crd_is_synced_and_empty_then_recovers(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """404 (CRD not installed): files keep working; the resources appear once it exists."""
        fault = fake.inject(f"/{PLURAL}$", 404, method="GET", times=1)
        fake.put(PLURAL, policy_object("a"))
        resources = PolicyResources(api, ["llm"], missing_retry=0.05, backoff_base=0.01)
        resources.start()
        try:
            assert await resources.wait_synced(5.0)
            await eventually(lambda: fault.hits == 1)
            await eventually(lambda: keys(resources) == ["llm/a"])
            assert resources.available
        finally:
            await resources.stop()


def decision(current: int, desired: int, *, limited: str | None = None) -> Decision:
    conditions = [
        Condition(ConditionType.ABLE_TO_SCALE, True, "SucceededRescale", "ok"),  # noqa: FBT003
        Condition(ConditionType.SCALING_ACTIVE, True, "ValidMetricFound", "ok"),  # noqa: FBT003
    ]
    if limited:
        conditions.append(
            Condition(ConditionType.SCALING_LIMITED, True, limited, "capped")  # noqa: FBT003
        )
    return Decision(
        policy="llm/llama",
        timestamp=1_800_000_000.0,
        current_replicas=current,
        desired_replicas=desired,
        reason="kvCache above target",
        conditions=tuple(conditions),
        metric_values={"kvCache": 0.91},
        metric_proposals={"kvCache": 6},
        explanation={
            "combined": {"proposal": 6},
            "stabilization": {"input": 6, "value": 6, "downWindowSeconds": 300, "reason": "x"},
            "limits": {
                "direction": "up",
                "limited": True,
                "selectPolicy": "Max",
                "winner": 0,
                "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60, "limit": 4}],
                "rateLimit": 4,
            },
        },
    )


class TestStatusWriter:
    """The /status subresource, written like the HPA's."""

    async def _resource(self, fake: FakeKube, api: KubeApi) -> Any:
        fake.put(PLURAL, policy_object())
        resources = PolicyResources(api, ["llm"])
        resources.start()
        assert await resources.wait_synced(5.0)
        await resources.stop()
        found = resources.get("llm", "llama")
        assert found is not None
        assert found.policy is not None
        return found

    async def test_status_written_once_per_change(self, fake: FakeKube, api: KubeApi) -> None:
        """A decision becomes the HPA-like status; an identical one writes nothing."""
        resource = await self._resource(fake, api)
        spec_before = copy.deepcopy(fake.get(PLURAL, "llm", "llama")["spec"])  # type: ignore[index]
        writer = PolicyStatusWriter(api, clock=Clock())
        made = decision(2, 4, limited="ScaleUpLimit")
        await writer.write_decision(resource, resource.policy, made, Outcome.SCALED, None)
        stored = fake.get(PLURAL, "llm", "llama")
        assert stored is not None
        status = stored["status"]
        ScalingPolicyStatus.model_validate(status)  # the CRD's status model accepts it
        assert status["observedGeneration"] == 1
        assert (status["currentReplicas"], status["desiredReplicas"]) == (2, 4)
        assert status["lastScaleTime"] == "2027-01-15T08:00:00Z"
        assert status["lastDecision"]["reason"] == "PolicyLimited"
        assert status["lastDecision"]["rateLimit"]["type"] == "Pods"
        assert status["lastDecision"]["metrics"][0]["proposal"] == 6
        types = [c["type"] for c in status["conditions"]]
        assert types == ["AbleToScale", "ScalingActive", "ScalingLimited", "Valid"]
        assert stored["spec"] == spec_before
        assert stored["metadata"]["generation"] == 1  # a status write is not a spec change
        assert fake.status_writes == 1
        await writer.write_decision(resource, resource.policy, made, Outcome.UNCHANGED, None)
        assert fake.status_writes == 1

    async def test_conflict_is_retried_on_a_fresh_read(self, fake: FakeKube, api: KubeApi) -> None:
        """409: read the object again and write on its resourceVersion."""
        resource = await self._resource(fake, api)
        writer = PolicyStatusWriter(api, clock=Clock())
        await writer.write_decision(
            resource, resource.policy, decision(2, 2), Outcome.UNCHANGED, None
        )
        fake.put(PLURAL, policy_object(maxReplicas=9))  # someone edits the spec meanwhile
        await writer.write_decision(resource, resource.policy, decision(2, 4), Outcome.SCALED, None)
        assert writer.conflicts == 1
        stored = fake.get(PLURAL, "llm", "llama")
        assert stored is not None
        assert stored["status"]["desiredReplicas"] == 4
        assert stored["spec"]["maxReplicas"] == 9

    async def test_values_only_changes_are_throttled(self, fake: FakeKube, api: KubeApi) -> None:
        """A metric value that moved beyond the tolerance alone is rewritten at most every
        values_refresh seconds; one that moved within it is not rewritten at all."""
        resource = await self._resource(fake, api)
        clock = Clock()
        writer = PolicyStatusWriter(api, clock=clock, values_refresh=60.0)
        base = decision(2, 2)  # kvCache 0.91
        await writer.write_decision(resource, resource.policy, base, Outcome.UNCHANGED, None)
        jitter = _with_value(base, 0.95)  # 4 % away: within the 10 % tolerance
        clock.t += 3600
        await writer.write_decision(resource, resource.policy, jitter, Outcome.UNCHANGED, None)
        assert fake.status_writes == 1
        moved = _with_value(base, 0.75)  # 18 % away
        clock.t += 10
        await writer.write_decision(resource, resource.policy, moved, Outcome.UNCHANGED, None)
        assert fake.status_writes == 2  # an hour since the last write: due at once
        back = _with_value(base, 0.91)
        clock.t += 10
        await writer.write_decision(resource, resource.policy, back, Outcome.UNCHANGED, None)
        assert fake.status_writes == 2  # moved again, but 10 s after a write
        clock.t += 60
        await writer.write_decision(resource, resource.policy, back, Outcome.UNCHANGED, None)
        assert fake.status_writes == 3
        stored = fake.get(PLURAL, "llm", "llama")
        assert stored is not None
        assert stored["status"]["lastDecision"]["metrics"][0]["value"] == 0.91

    async def test_status_changed_by_another_writer_is_reread(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """What this instance remembers is trusted only for status_refresh seconds."""
        resource = await self._resource(fake, api)
        clock = Clock()
        writer = PolicyStatusWriter(api, clock=clock, status_refresh=300.0)
        made = decision(2, 2)
        await writer.write_decision(resource, resource.policy, made, Outcome.UNCHANGED, None)
        stored = fake.get(PLURAL, "llm", "llama")
        assert stored is not None
        stored["status"] = {"currentReplicas": 9}  # e.g. a former leader's late write
        fake.put(PLURAL, stored)
        clock.t += 10
        await writer.write_decision(resource, resource.policy, made, Outcome.UNCHANGED, None)
        assert fake.status_writes == 1  # trusted: not read again yet
        clock.t += 300
        await writer.write_decision(resource, resource.policy, made, Outcome.UNCHANGED, None)
        assert fake.status_writes == 2
        assert fake.get(PLURAL, "llm", "llama")["status"]["currentReplicas"] == 2  # type: ignore[index]

    async def test_failed_tick_keeps_the_last_known_counts(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """An unreadable /scale is reported (AbleToScale=False) without inventing 0 replicas."""
        resource = await self._resource(fake, api)
        writer = PolicyStatusWriter(api, clock=Clock())
        await writer.write_decision(
            resource, resource.policy, decision(3, 3), Outcome.UNCHANGED, None
        )
        failed = Decision(
            policy="llm/llama",
            timestamp=1_800_000_060.0,
            current_replicas=0,
            desired_replicas=0,
            reason="FailedGetScale: timed out reading /scale",
            conditions=(
                Condition(ConditionType.ABLE_TO_SCALE, False, "FailedGetScale", "timed out"),  # noqa: FBT003
            ),
        )
        await writer.write_decision(resource, resource.policy, failed, Outcome.FAILED, "timed out")
        status = fake.get(PLURAL, "llm", "llama")["status"]  # type: ignore[index]
        assert (status["currentReplicas"], status["desiredReplicas"]) == (3, 3)
        assert status["lastDecision"]["reason"] == "Failed"
        able = next(c for c in status["conditions"] if c["type"] == "AbleToScale")
        assert (able["status"], able["reason"]) == ("False", "FailedGetScale")
        events = [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]
        assert [e["reason"] for e in events] == ["FailedGetScale"]

    async def test_events_go_to_the_scaling_policy(self, fake: FakeKube, api: KubeApi) -> None:
        """SuccessfulRescale is an Event whose involvedObject is the ScalingPolicy."""
        resource = await self._resource(fake, api)
        writer = PolicyStatusWriter(api, clock=Clock())
        await writer.write_decision(resource, resource.policy, decision(2, 4), Outcome.SCALED, None)
        events = [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]
        assert len(events) == 1
        involved = events[0]["involvedObject"]
        assert (involved["kind"], involved["name"], involved["uid"]) == (
            "ScalingPolicy",
            "llama",
            resource.uid,
        )
        assert events[0]["reason"] == "SuccessfulRescale"

    async def test_problem_status_says_where_and_why(self, fake: FakeKube, api: KubeApi) -> None:
        """An invalid resource gets Valid=False naming the field, and a Warning Event."""
        resource = await self._resource(fake, api)
        writer = PolicyStatusWriter(api, clock=Clock())
        problem = ResourceProblem(resource, "InvalidPolicy", "spec.maxReplicas: must be >= 5")
        await writer.report([problem])
        await writer.report([problem])
        stored = fake.get(PLURAL, "llm", "llama")
        assert stored is not None
        conditions = {c["type"]: c for c in stored["status"]["conditions"]}
        assert conditions["Valid"]["status"] == "False"
        assert conditions["Valid"]["message"] == "spec.maxReplicas: must be >= 5"
        assert conditions["ScalingActive"]["reason"] == "InvalidPolicy"
        assert fake.status_writes == 1
        events = [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]
        assert [e["reason"] for e in events] == ["InvalidPolicy"]

    async def test_status_path_is_the_subresource(self) -> None:
        """Writes go to .../scalingpolicies/NAME/status only."""
        assert resource_path("llm", "x", "status") == (
            "/apis/autoscaling.nim-autoscaler.io/v1alpha1/namespaces/llm/scalingpolicies/x/status"
        )


def _fields(made: Decision) -> dict[str, Any]:
    return {name: getattr(made, name) for name in made.__dataclass_fields__}


def _with_value(made: Decision, value: float) -> Decision:
    return Decision(**{**_fields(made), "metric_values": {"kvCache": value}})


class TestDecisionReason:
    """The KEP-6107 vocabulary from the decision's conditions."""

    @pytest.mark.parametrize(
        ("made", "reason"),
        [
            (decision(2, 4, limited="ScaleUpLimit"), DecisionReason.POLICY_LIMITED),
            (decision(2, 8, limited="TooManyReplicas"), DecisionReason.REPLICA_LIMIT),
            (decision(2, 2), DecisionReason.WITHIN_TOLERANCE),
            (decision(2, 6), DecisionReason.RECOMMENDED),
        ],
        ids=["rate-limited", "clamped", "within-tolerance", "recommended"],
    )
    def test_reasons(self, made: Decision, reason: DecisionReason) -> None:
        assert decision_reason(made, Outcome.SCALED) is reason

    def test_invalid_metrics_and_stabilized(self) -> None:
        invalid = Decision(
            "p",
            0.0,
            3,
            3,
            "no metric",
            (Condition(ConditionType.SCALING_ACTIVE, False, "FailedGetPodsMetric"),),  # noqa: FBT003
        )
        assert decision_reason(invalid, Outcome.UNCHANGED) is DecisionReason.INVALID_METRICS
        held = Decision(
            "p",
            0.0,
            3,
            3,
            "held",
            (Condition(ConditionType.ABLE_TO_SCALE, True, "ScaleDownStabilized"),),  # noqa: FBT003
        )
        assert decision_reason(held, Outcome.UNCHANGED) is DecisionReason.STABILIZED
