"""Fleet operations under faults: the real Kubernetes adapters against :class:`ChaosKube`.

- a pod deleted between its deletion-cost mark and the ``/scale`` write (and flaky pod patches);
- a ``ScalingBudget`` cut while a scale-down waits in its stabilization window;
- a policy switched to ``paused`` (target annotation) in the middle of a scale-down.

Each run steps a virtual clock 15 s per tick and checks what reached the server: the ``/scale``
writes, the pod patches, the history ConfigMap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from autoscaler.controller.loop import ControlLoop, TickResult
from autoscaler.decision.types import ConditionType, PodSamples
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.policy.budget import ScalingBudget
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.fakekube.server import write_kubeconfig
from tests.reliability.chaos import ChaosKube
from tests.reliability.kubeworld import CONTROLLER_NS, NAMESPACE, START, STEP, policy

COST = "controller.kubernetes.io/pod-deletion-cost"


def gpu_budget(max_gpus: int) -> ScalingBudget:
    return ScalingBudget.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingBudget",
            "metadata": {"name": "pool"},
            "spec": {"maxGpus": max_gpus},
        }
    )


class World:
    """One Deployment ``llama`` (1 GPU per pod) with per-pod KV usage set by the test."""

    def __init__(
        self, fake: ChaosKube, context: KubeContext, policies: list[ScalingPolicy]
    ) -> None:
        self.fake = fake
        self.context = context
        self.policies = policies
        self.budgets: list[ScalingBudget] = []
        self.source = StaticMetricSource()
        self.kv: Callable[[list[str]], dict[str, float]] = lambda pods: dict.fromkeys(pods, 0.5)
        self.tick_no = 0
        self.loop = ControlLoop(
            policies=lambda: self.policies,
            metrics=self.source,
            scale=context.scale,
            pods=context.pods,
            recorder=context.recorder,
            history_store=context.history,
            leader=context.leader,
            annotator=context.annotator,
            budgets=lambda: self.budgets,
            log_ticks=False,
        )

    def pods(self) -> list[str]:
        return sorted(
            name
            for (plural, ns, name), obj in self.fake.objects.items()
            if plural == "pods" and ns == NAMESPACE and "deletionTimestamp" not in obj["metadata"]
        )

    def replicas(self) -> int:
        deployment = self.fake.get("deployments", NAMESPACE, "llama")
        assert deployment is not None
        return int(deployment["spec"]["replicas"])

    def set_mode(self, mode: str | None) -> None:
        deployment = self.fake.get("deployments", NAMESPACE, "llama")
        assert deployment is not None
        annotations = deployment["metadata"].setdefault("annotations", {})
        if mode is None:
            annotations.pop("nim-autoscaler.io/mode", None)
        else:
            annotations["nim-autoscaler.io/mode"] = mode
        self.fake.put("deployments", deployment)

    async def tick(self) -> TickResult:
        self.fake.step()
        await self._cache_synced()
        now = START + STEP * self.tick_no
        self.tick_no += 1
        pods = self.pods()
        self.source.set(
            f"{NAMESPACE}/llama",
            {"kvCache": PodSamples(self.kv(pods), timestamp=now, series=len(pods))},
        )
        [result] = await self.loop.tick(now)
        return result

    async def _cache_synced(self) -> None:
        for _ in range(500):
            cached = sorted(p.name for p in self.context.pods.pods(NAMESPACE, "app=llama"))
            if cached == self.pods():
                return
            await asyncio.sleep(0.02)
        pytest.fail("pod cache did not converge")

    def scale_writes(self) -> list[int]:
        return [int(s.body["spec"]["replicas"]) for s in self.fake.scale_writes("llama")]

    def stored_history(self) -> object:
        for (kind, namespace, name), configmap in self.fake.objects.items():
            if kind != "configmaps" or namespace != CONTROLLER_NS:
                continue
            if not name.startswith("nim-autoscaler-history-"):
                continue
            text = (configmap.get("data") or {}).get(f"{NAMESPACE}.llama")
            if text:
                return json.loads(text)
        return None


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with ChaosKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=6, labels={"app": "llama"}, gpus=1)
        fake.enable_reconcile()
        fake.step()
        settings = Settings(
            kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", fake.url),
            leader_election=False,
            leader_election_namespace=CONTROLLER_NS,
            namespaces=[NAMESPACE],
        )
        context = await connect(settings, request_timeout=1.0)
        context.start()
        assert await context.pods.wait_synced(within=10)
        try:
            yield World(fake, context, [policy("llama")])
        finally:
            await context.close()


async def test_pod_deleted_between_marking_and_scaling(world: World) -> None:
    """The first victim vanishes as it is patched and other pod patches fail at random: the
    scale-down still lands one step per tick, the marks reached the pods that remained, and the
    pods left are the busiest."""
    busy = set(world.pods()[:2])  # the two oldest carry the load
    world.kv = lambda pods: {p: (0.9 if p in busy else 0.05) for p in pods}
    await world.tick()  # steady: 6 pods, 1.9 of KV in all -> 4 wanted, held by the window
    victims: list[str] = []

    def delete_first_victim() -> None:
        path = next(p for m, p in reversed(world.fake.requests) if m == "PATCH" and "/pods/" in p)
        victims.append(path.rsplit("/", 1)[1])
        world.fake.delete("pods", NAMESPACE, victims[-1])

    world.fake.inject(r"/pods/[^/]+$", method="PATCH", action=delete_first_victim)
    world.fake.chaos(r"/pods/[^/]+$", rate=0.3, seed=7, kinds=("500",))
    for _ in range(8):
        await world.tick()
    assert world.replicas() == 4
    assert all(
        later < earlier
        for earlier, later in zip([6, *world.scale_writes()], world.scale_writes(), strict=False)
    )
    assert busy <= set(world.pods())
    patches = [s for s in world.fake.log if s.method == "PATCH" and "/pods/" in s.path]
    assert patches
    assert any(s.status == 404 for s in patches)  # the deleted victim, reported not raised


async def test_budget_cut_mid_stabilization(world: World) -> None:
    """Load falls (6 -> 2 wanted, window 45 s); the budget drops to 4 GPUs mid-window: the cap
    applies at once, the window still paces the rest, the history survives in the ConfigMap."""
    world.kv = lambda pods: dict.fromkeys(pods, 0.5)  # 6 x 0.5 = 3.0: steady at 6
    await world.tick()
    world.kv = lambda pods: dict.fromkeys(pods, 0.9 / len(pods))  # 0.9 in all: 2 wanted
    await world.tick()
    assert world.replicas() == 6  # held by the 45 s window
    world.budgets = [gpu_budget(4)]
    capped = await world.tick()
    assert capped.decision is not None
    assert world.replicas() == 4
    assert "held back by budget pool" in capped.decision.reason
    limited = capped.decision.condition(ConditionType.SCALING_LIMITED)
    assert limited is not None
    assert (limited.status, limited.reason) == (True, "BudgetExhausted")
    history = world.stored_history()
    assert history is not None
    for _ in range(8):
        await world.tick()
    assert world.replicas() == 2
    assert world.scale_writes()[0] == 4  # the budget cut came first, in one write
    assert world.scale_writes()[-1] == 2


async def test_paused_mid_scale_down(world: World) -> None:
    """Paused while stepping down 6 -> 2: no /scale write and no pod patch while paused, the
    stored history unchanged; unpaused, the scale-down resumes where it stood."""
    world.kv = lambda pods: dict.fromkeys(pods, 0.5)
    await world.tick()
    world.kv = lambda pods: dict.fromkeys(pods, 0.9 / len(pods))  # 2 wanted
    for _ in range(4):
        await world.tick()  # past the window: one pod per 15 s
    assert 2 < world.replicas() < 6
    at_pause = world.replicas()
    writes = len(world.scale_writes())
    patches = sum(1 for s in world.fake.log if s.method == "PATCH" and "/pods/" in s.path)
    world.set_mode("paused")
    first = await world.tick()
    history = world.stored_history()
    for _ in range(4):
        result = await world.tick()
        assert result.outcome.value == "paused"
    assert first.outcome.value == "paused"
    assert world.replicas() == at_pause
    assert len(world.scale_writes()) == writes
    assert patches == sum(1 for s in world.fake.log if s.method == "PATCH" and "/pods/" in s.path)
    assert world.stored_history() == history
    world.set_mode(None)
    for _ in range(6):
        await world.tick()
    assert world.replicas() == 2
