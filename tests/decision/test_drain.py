"""Drain-aware scale-down planning: which pods go, and the deletion costs that make them go."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from autoscaler.decision.drain import plan_drain
from autoscaler.decision.types import MetricObservation, PodInfo, PodPhase, PodSamples
from autoscaler.policy.models import ScalingPolicy


def policy(
    kind: str = "Deployment", metrics: list[dict[str, object]] | None = None
) -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "m", "namespace": "nim"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "m"},
                "maxReplicas": 10,
                "algorithm": "hpa",
                "metrics": metrics
                or [
                    {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 8}}},
                    {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}},
                ],
            },
        }
    )


def pod(name: str, *, ready: bool = True, cost: int | None = None, **kw: object) -> PodInfo:
    return PodInfo(
        name,
        PodPhase.RUNNING if kw.pop("running", True) else PodPhase.PENDING,
        ready=ready,
        created_at=float(kw.pop("created", 0.0)),  # type: ignore[arg-type]
        ready_at=1.0 if ready else None,
        scheduled_at=kw.pop("scheduled", 0.5),  # type: ignore[arg-type]
        deletion_cost=cost,
        owner_kind=kw.pop("owner", "ReplicaSet"),  # type: ignore[arg-type]
        deleting=bool(kw.pop("deleting", False)),
    )


def samples(values: Mapping[str, float]) -> PodSamples:
    return PodSamples(values=dict(values), timestamp=0.0, series=len(values))


def load(
    running: Mapping[str, float], waiting: Mapping[str, float]
) -> dict[str, MetricObservation]:
    return {"runningRequests": samples(running), "queueDepth": samples(waiting)}


class TestRanking:
    def test_least_busy_ready_pods_are_marked_lowest(self) -> None:
        """Two of four ready pods go: the two with the fewest requests (running + waiting)."""
        pods = [pod("a"), pod("b"), pod("c"), pod("d")]
        metrics = load({"a": 5, "b": 1, "c": 9, "d": 0}, {"a": 0, "b": 1, "c": 3, "d": 0})
        plan = plan_drain(policy(), pods, metrics, desired=2)
        assert plan.applies
        assert plan.victims == ("d", "b")
        assert {m.pod: m.cost for m in plan.marks} == {"d": -2, "b": -1}
        assert "requests in flight: runningRequests + queueDepth" in plan.note

    def test_not_ready_pods_go_first_and_are_not_marked(self) -> None:
        """The ReplicaSet removes not-ready pods before looking at costs: no mark needed."""
        pods = [pod("a"), pod("b"), pod("new", ready=False, created=50.0)]
        metrics = load({"a": 0, "b": 3}, {})
        plan = plan_drain(policy(), pods, metrics, desired=2)
        assert plan.victims == ("new",)
        assert plan.marks == ()

    def test_unready_then_least_busy(self) -> None:
        """A starting pod and then the least busy ready pod go; only the ready one is marked."""
        pods = [pod("a"), pod("b"), pod("c"), pod("s", ready=False, running=False, scheduled=None)]
        metrics = load({"a": 4, "b": 2, "c": 7}, {})
        plan = plan_drain(policy(), pods, metrics, desired=2)
        assert plan.victims == ("s", "b")
        assert [(m.pod, m.cost) for m in plan.marks] == [("b", -1)]

    def test_marks_written_only_when_they_change(self) -> None:
        """A pod already carrying the right cost is not written again."""
        pods = [pod("a", cost=-1), pod("b")]
        plan = plan_drain(policy(), pods, load({"a": 0, "b": 5}, {}), desired=1)
        assert plan.victims == ("a",)
        assert plan.marks == ()

    def test_stale_negative_cost_on_a_kept_pod_is_removed(self) -> None:
        """A kept pod with an older negative cost would jump the queue: its cost is removed."""
        pods = [pod("a"), pod("b", cost=-3), pod("c")]
        plan = plan_drain(policy(), pods, load({"a": 0, "b": 9, "c": 4}, {}), desired=2)
        assert plan.victims == ("a",)
        assert {m.pod: m.cost for m in plan.marks} == {"a": -1, "b": None}

    def test_positive_costs_of_others_are_left_alone(self) -> None:
        """A positive cost protects a pod further; the plan does not touch it."""
        pods = [pod("a", cost=100), pod("b")]
        plan = plan_drain(policy(), pods, load({"a": 0, "b": 5}, {}), desired=1)
        assert plan.victims == ("a",)
        assert [(m.pod, m.cost) for m in plan.marks] == [("a", -1)]

    def test_terminating_pods_are_not_counted(self) -> None:
        """Pods already terminating are neither victims nor counted among the active pods."""
        pods = [pod("a"), pod("b"), pod("gone", deleting=True)]
        plan = plan_drain(policy(), pods, load({"a": 3, "b": 1}, {}), desired=1)
        assert plan.victims == ("b",)

    def test_kv_cache_is_the_proxy_without_request_counts(self) -> None:
        """With only kvCache fetched, KV usage ranks the ready pods."""
        kv_policy = policy(
            metrics=[{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}]
        )
        pods = [pod("a"), pod("b")]
        plan = plan_drain(kv_policy, pods, {"kvCache": samples({"a": 0.9, "b": 0.1})}, 1)
        assert plan.victims == ("b",)
        assert "KV usage: kvCache" in plan.note
        assert plan.load_signal == "KV usage: kvCache"

    def test_kv_usage_breaks_ties_of_request_counts(self) -> None:
        """Equal requests in flight (no queue anywhere): the pod with less KV in use goes."""
        both = policy(
            metrics=[
                {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}},
                {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}},
            ]
        )
        pods = [pod("a", created=0.0), pod("b", created=10.0)]
        metrics = {
            "queueDepth": samples({"a": 0, "b": 0}),
            "kvCache": samples({"a": 0.1, "b": 0.6}),
        }
        plan = plan_drain(both, pods, metrics, 1)
        assert plan.victims == ("a",)
        assert plan.load_signal == "requests in flight: queueDepth; then KV usage: kvCache"

    def test_unmeasured_ready_pods_go_first(self) -> None:
        """A ready pod without a sample has just started (scrape lag): it goes before the
        measured pods, which hold the traffic, as the ReplicaSet's own order would have it."""
        pods = [pod("a"), pod("b", created=10.0), pod("c", created=20.0)]
        plan = plan_drain(policy(), pods, load({"a": 6}, {}), desired=1)
        assert plan.victims == ("c", "b")

    def test_no_load_metric_ranks_by_readiness_only(self) -> None:
        """Without any per-pod signal the plan says so (and still marks a choice)."""
        pods = [pod("a", created=0.0), pod("b", created=10.0)]
        plan = plan_drain(policy(), pods, {}, desired=1)
        assert plan.load_signal is None
        assert "no per-pod load signal" in plan.note

    def test_nothing_to_remove(self) -> None:
        """Already at or below the desired count: no victims, no marks."""
        plan = plan_drain(policy(), [pod("a")], load({"a": 1}, {}), desired=1)
        assert plan.victims == ()
        assert plan.marks == ()


class TestApplicability:
    @pytest.mark.parametrize(
        ("kind", "owner", "applies", "phrase"),
        [
            pytest.param("StatefulSet", "StatefulSet", False, "highest ordinals", id="statefulset"),
            pytest.param("Deployment", "StatefulSet", False, "highest ordinals", id="sts-pods"),
            pytest.param("LeaderWorkerSet", "LeaderWorkerSet", False, "does not read", id="lws"),
            pytest.param("NIMService", "ReplicaSet", True, "removing", id="nimservice"),
            pytest.param("Deployment", None, True, "removing", id="owner-unknown-deployment"),
            pytest.param("Widget", None, False, "no ReplicaSet owner", id="unknown-kind"),
        ],
    )
    def test_kinds(self, kind: str, owner: str | None, applies: bool, phrase: str) -> None:
        """The annotation is used only where a ReplicaSet removes the pods."""
        pods = [pod("a", owner=owner), pod("b", owner=owner)]
        plan = plan_drain(policy(kind), pods, load({"a": 1, "b": 2}, {}), desired=1)
        assert applies == plan.applies
        assert phrase in plan.note
        if not applies:
            assert plan.marks == ()
