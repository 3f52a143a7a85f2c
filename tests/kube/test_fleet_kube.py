"""Drain marks, modes and external rescales through the real client and the fake API server.

The whole Kubernetes side is real (``connect``: pod watch cache, ``/scale`` client, pod
annotator, recorder, history store over HTTP); the fake API server's reconciler removes pods in
the ReplicaSet controller's order (deletion cost included) or highest ordinal first for a
StatefulSet. Metrics come from an in-memory source: what is tested is what reaches the cluster.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from autoscaler.controller.loop import ControlLoop
from autoscaler.controller.memory import StaticMetricSource
from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import PodSamples
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import Settings
from tests.fakekube import FakeKube

from .conftest import eventually

NS = "nim"
COST = "controller.kubernetes.io/pod-deletion-cost"


def make_policy(kind: str = "Deployment", *, mode: str = "active") -> ScalingPolicy:
    api_version = "apps/v1"
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "llama", "namespace": NS},
            "spec": {
                "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": "llama"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "algorithm": "hpa",
                "mode": mode,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
                "metrics": [
                    {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 8}}}
                ],
            },
        }
    )


@pytest.fixture
async def kube(settings: Settings) -> AsyncIterator[KubeContext]:
    context = await connect(
        settings.model_copy(update={"namespaces": [NS], "leader_election": False})
    )
    context.pods.start()
    yield context
    await context.close()


def pods_of(fake: FakeKube) -> dict[str, dict[str, object]]:
    return {name: obj for (plural, ns, name), obj in fake.objects.items() if plural == "pods"}


def events(fake: FakeKube) -> list[dict[str, object]]:
    return [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]


async def setup(fake: FakeKube, kube: KubeContext, kind: str, replicas: int = 4) -> list[str]:
    fake.add_deployment(NS, "llama", replicas=replicas, kind=kind)
    fake.enable_reconcile()
    assert await kube.pods.wait_synced(within=5.0)
    await eventually(
        lambda: (
            len(kube.pods.pods(NS, "app=llama")) == replicas
            and all(p.ready for p in kube.pods.pods(NS, "app=llama"))
        )
    )
    return sorted(pods_of(fake))


def loop_for(kube: KubeContext, policy: ScalingPolicy, source: StaticMetricSource) -> ControlLoop:
    return ControlLoop(
        policies=lambda: [policy],
        metrics=source,
        scale=kube.scale,
        pods=kube.pods,
        recorder=kube.recorder,
        history_store=kube.history,
        leader=kube.leader,
        annotator=kube.annotator,
    )


def running(source: StaticMetricSource, policy: ScalingPolicy, values: dict[str, float]) -> None:
    source.set(
        policy.key,
        {"runningRequests": PodSamples(values=values, timestamp=0.0, series=len(values))},
    )


def pod_patches(fake: FakeKube) -> list[str]:
    return [path for method, path in fake.requests if method == "PATCH" and "/pods/" in path]


class TestDrainAware:
    async def test_idlest_pods_marked_and_removed_by_the_replicaset_order(
        self, fake: FakeKube, kube: KubeContext
    ) -> None:
        """The two pods with the fewest requests get costs, and exactly they are removed."""
        names = await setup(fake, kube, "Deployment")
        policy = make_policy()
        source = StaticMetricSource()
        # the oldest pods are idle: without marks the ReplicaSet would remove the newest (busiest)
        load = dict(zip(names, [0.0, 1.0, 4.0, 5.0], strict=True))
        running(source, policy, load)
        [result] = await loop_for(kube, policy, source).tick(100.0)
        assert Outcome.SCALED is result.outcome
        assert len(pod_patches(fake)) == 2
        assert sorted(pods_of(fake)) == names[2:]
        assert result.decision is not None
        drain = result.decision.explanation["drain"]
        assert names[:2] == [p["pod"] for p in drain["remove"]]
        assert drain["written"] == "2 of 2 written"

    async def test_statefulset_removes_highest_ordinals_unmarked(
        self, fake: FakeKube, kube: KubeContext
    ) -> None:
        """No pod is patched for a StatefulSet; its highest ordinals go, as the docs say."""
        await setup(fake, kube, "StatefulSet")
        policy = make_policy("StatefulSet")
        source = StaticMetricSource()
        running(source, policy, {"llama-0": 5.0, "llama-1": 4.0, "llama-2": 0.0, "llama-3": 1.0})
        [result] = await loop_for(kube, policy, source).tick(100.0)
        assert Outcome.SCALED is result.outcome
        assert pod_patches(fake) == []
        assert sorted(pods_of(fake)) == ["llama-0", "llama-1"]
        assert result.decision is not None
        assert "highest ordinals" in result.decision.explanation["drain"]["note"]

    async def test_pod_deleted_between_marking_and_scaling(
        self, fake: FakeKube, kube: KubeContext
    ) -> None:
        """A victim deleted before its patch: 404 reported, the other marked, /scale written."""
        names = await setup(fake, kube, "Deployment")
        policy = make_policy()
        source = StaticMetricSource()
        running(source, policy, dict(zip(names, [0.0, 1.0, 4.0, 5.0], strict=True)))
        fake.inject(
            f"/pods/{names[0]}$",
            method="PATCH",
            action=lambda: fake.delete("pods", NS, names[0]),
        )
        [result] = await loop_for(kube, policy, source).tick(100.0)
        assert Outcome.SCALED is result.outcome
        assert result.decision is not None
        written = result.decision.explanation["drain"]["written"]
        assert "1 of 2 written" in written
        assert "not found" in written
        deployment = fake.get("deployments", NS, "llama")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 2
        assert names[1] not in pods_of(fake)


class TestModes:
    async def test_advisory_annotation_records_but_writes_nothing(
        self, fake: FakeKube, kube: KubeContext
    ) -> None:
        """mode annotation advisory: no /scale write, no pod patch; Event and status say so."""
        names = await setup(fake, kube, "Deployment")
        deployment = fake.get("deployments", NS, "llama")
        assert deployment is not None
        deployment["metadata"]["annotations"] = {"nim-autoscaler.io/mode": "advisory"}
        fake.put("deployments", deployment)
        policy = make_policy()
        source = StaticMetricSource()
        running(source, policy, dict(zip(names, [0.0, 1.0, 4.0, 5.0], strict=True)))
        [result] = await loop_for(kube, policy, source).tick(100.0)
        assert Outcome.ADVISORY is result.outcome
        assert pod_patches(fake) == []
        stored = fake.get("deployments", NS, "llama")
        assert stored is not None
        assert stored["spec"]["replicas"] == 4
        status = json.loads(stored["metadata"]["annotations"]["nim-autoscaler.io/status"])
        assert (status["outcome"], status["desiredReplicas"]) == ("advisory", 2)
        reasons = {e.get("reason") for e in events(fake)}
        assert "AdvisoryRescale" in reasons

    async def test_external_rescale_event(self, fake: FakeKube, kube: KubeContext) -> None:
        """Someone scales the Deployment by hand: an ExternalRescale Event with both counts."""
        names = await setup(fake, kube, "Deployment", replicas=2)
        policy = make_policy()
        source = StaticMetricSource()
        running(source, policy, dict.fromkeys(names, 8.0))
        loop = loop_for(kube, policy, source)
        [first] = await loop.tick(100.0)
        assert Outcome.UNCHANGED is first.outcome
        deployment = fake.get("deployments", NS, "llama")
        assert deployment is not None
        deployment["spec"]["replicas"] = 3
        fake.put("deployments", deployment)
        [second] = await loop.tick(115.0)
        assert second.decision is not None
        assert second.decision.current_replicas == 3
        messages = [e.get("message") for e in events(fake) if e.get("reason") == "ExternalRescale"]
        assert messages == [
            "Replicas changed outside the autoscaler: 2 -> 3; taken as the current count"
        ]
