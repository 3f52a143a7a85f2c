"""Drain marks, modes and external rescales through the real client and the fake API server.

The whole Kubernetes side is real (``connect``: pod watch cache, ``/scale`` client, pod
annotator, recorder, history store over HTTP); the fake API server's reconciler removes pods in
the ReplicaSet controller's order (deletion cost included) or highest ordinal first for a
StatefulSet. Metrics come from an in-memory source: what is tested is what reaches the cluster.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler.commands.status import status
from autoscaler.controller.loop import ControlLoop
from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import PodSamples
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.fakekube import FakeKube

from .conftest import eventually

NS = "nim"
COST = "controller.kubernetes.io/pod-deletion-cost"


def make_policy(
    kind: str = "Deployment", *, mode: str = "active", down_pods_per_minute: int | None = None
) -> ScalingPolicy:
    api_version = "apps/v1"
    scale_down: dict[str, object] = {"stabilizationWindowSeconds": 0}
    if down_pods_per_minute is not None:
        scale_down["policies"] = [
            {"type": "Pods", "value": down_pods_per_minute, "periodSeconds": 60}
        ]
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
                "behavior": {"scaleDown": scale_down},
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


def race_on_scale_write(fake: FakeKube, replicas: int) -> None:
    """Another writer sets the Deployment to ``replicas`` just before the next ``/scale`` PUT
    (which then meets a real 409: its resourceVersion is stale)."""

    def another_writer() -> None:
        deployment = fake.get("deployments", NS, "llama")
        assert deployment is not None
        deployment["spec"]["replicas"] = replicas
        fake.put("deployments", deployment)

    fake.inject("/deployments/llama/scale$", method="PUT", action=another_writer)


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

    async def test_scale_down_decided_again_after_a_conflict_remarks_the_pods(
        self, fake: FakeKube, kube: KubeContext
    ) -> None:
        """Another writer lowers the count between the marks and the write (409): the decision
        made again marks the pods for the new count, so the idlest pod left goes, not the
        newest."""
        names = await setup(fake, kube, "Deployment")
        policy = make_policy(down_pods_per_minute=1)
        source = StaticMetricSource()
        # The HPA wants 1 replica; the rate limit allows 4 -> 3 (the idlest pod is marked).
        running(source, policy, dict(zip(names, [0.0, 1.0, 2.0, 3.0], strict=True)))
        race_on_scale_write(fake, 2)  # the marked pod goes, then the newest
        [result] = await loop_for(kube, policy, source).tick(100.0)
        assert Outcome.SCALED is result.outcome
        deployment = fake.get("deployments", NS, "llama")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 1  # decided again from 2: one pod a minute
        # Of the two pods left, the idler goes (unmarked, the ReplicaSet takes the newer one).
        assert sorted(pods_of(fake)) == [names[2]]
        assert result.decision is not None
        drain = result.decision.explanation["drain"]
        assert names[1] in [p["pod"] for p in drain["remove"]]
        assert names[2] not in [p["pod"] for p in drain["remove"]]
        assert "decided again" in drain["written"]
        assert result.decision.explanation["mode"]["mode"] == "active"  # fleet records kept

    async def test_marks_of_the_superseded_decision_are_taken_back(
        self, fake: FakeKube, kube: KubeContext
    ) -> None:
        """Another writer raises the count between the marks and the write (409): the decision
        made again removes a newly started pod (no load sample yet), so the mark written for the
        superseded one is taken back (the idle pod does not stay first in line)."""
        names = await setup(fake, kube, "Deployment")
        policy = make_policy(down_pods_per_minute=1)
        source = StaticMetricSource()
        running(source, policy, dict(zip(names, [0.0, 1.0, 4.0, 5.0], strict=True)))
        race_on_scale_write(fake, 6)  # two new pods
        [result] = await loop_for(kube, policy, source).tick(100.0)
        assert Outcome.SCALED is result.outcome
        deployment = fake.get("deployments", NS, "llama")
        assert deployment is not None
        assert deployment["spec"]["replicas"] == 5  # decided again from 6 (one pod a minute)
        pods = pods_of(fake)
        assert set(names) <= set(pods)  # a new pod went, not the marked idle one
        marked = {
            name: (pod["metadata"].get("annotations") or {}).get(COST)  # type: ignore[union-attr]
            for name, pod in pods.items()
        }
        assert set(marked.values()) == {None}, marked
        assert result.decision is not None
        assert "decided again" in result.decision.explanation["drain"]["written"]


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


BUDGET_YAML = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingBudget
metadata: {name: h100-pool}
spec: {maxGpus: 12, namespaces: [nim]}
"""


def gpu_policy(name: str, priority: int) -> ScalingPolicy:
    policy = make_policy()
    return ScalingPolicy.model_validate(
        {
            **policy.model_dump(by_alias=True, mode="json", exclude_none=True),
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                **policy.model_dump(by_alias=True, mode="json", exclude_none=True)["spec"],
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "priority": priority,
            },
        }
    )


class TestBudgets:
    async def test_gpu_limits_from_pods_cap_the_lower_priority(
        self, fake: FakeKube, kube: KubeContext, settings: Settings, tmp_path: Path
    ) -> None:
        """Pods' nvidia.com/gpu limits are read; the budget holds the low priority back, with an
        Event, the status condition, and `status` showing use against the budget."""
        for name in ("hi", "lo"):
            fake.add_deployment(NS, name, replicas=2, gpus=2, labels={"app": name})
        fake.enable_reconcile()
        assert await kube.pods.wait_synced(within=5.0)
        await eventually(
            lambda: all(
                len(kube.pods.pods(NS, f"app={n}")) == 2
                and all(p.ready and p.gpus == 2 for p in kube.pods.pods(NS, f"app={n}"))
                for n in ("hi", "lo")
            )
        )
        policies = [gpu_policy("hi", 10), gpu_policy("lo", 0)]
        budgets = [b.budget for b in load_text(BUDGET_YAML).budgets]
        source = StaticMetricSource()
        for name in ("hi", "lo"):
            pods = [p.name for p in kube.pods.pods(NS, f"app={name}")]
            running(source, policies[0 if name == "hi" else 1], dict.fromkeys(pods, 16.0))
        loop = ControlLoop(
            policies=lambda: policies,
            metrics=source,
            scale=kube.scale,
            pods=kube.pods,
            recorder=kube.recorder,
            history_store=kube.history,
            leader=kube.leader,
            annotator=kube.annotator,
            budgets=lambda: budgets,
        )
        results = {r.policy: r for r in await loop.tick(100.0)}
        replicas = {n: fake.get("deployments", NS, n)["spec"]["replicas"] for n in ("hi", "lo")}  # type: ignore[index]
        assert replicas == {"hi": 4, "lo": 2}  # 4x2 + 2x2 = 12 GPUs; lo wanted 4
        assert results["nim/lo"].decision is not None
        assert "held back by budget h100-pool" in results["nim/lo"].decision.reason
        warnings = [e for e in events(fake) if e.get("reason") == "BudgetExhausted"]
        assert len(warnings) == 1
        assert warnings[0]["type"] == "Warning"
        lo = fake.get("deployments", NS, "lo")
        assert lo is not None
        record = json.loads(lo["metadata"]["annotations"]["nim-autoscaler.io/status"])
        limited = next(c for c in record["conditions"] if c["type"] == "ScalingLimited")
        assert (limited["status"], limited["reason"]) == ("True", "BudgetExhausted")
        assert record["budgets"][0]["gpusPerReplica"] == 2

        directory = tmp_path / "policies"
        directory.mkdir()
        docs = [p.model_dump(by_alias=True, mode="json", exclude_none=True) for p in policies]
        (directory / "fleet.yaml").write_text(
            "---\n".join(json.dumps(d) + "\n" for d in docs) + "---\n" + BUDGET_YAML
        )
        out = io.StringIO()
        code = await status(
            settings.model_copy(update={"policy_dir": directory}), None, out, io.StringIO()
        )
        assert code == 0
        lines = out.getvalue().splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("BUDGET"))
        budget_line = lines[header + 1]
        assert budget_line.split() == ["h100-pool", "12/12", "2", "nim/lo"]
