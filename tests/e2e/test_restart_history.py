"""A restart changes no decision: the history persisted by the real Kubernetes adapters.

The control loop runs on the real Kubernetes side (``/scale``, pod cache, history ConfigMap,
recorder) against the fake API server, with deterministic metric values and a virtual ``now``.
A run that restarts the whole Kubernetes context and loop between ticks must decide exactly as a
run without a restart, including stabilization windows and rate limits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from autoscaler.controller.loop import ControlLoop
from autoscaler.decision.types import PodSamples
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.e2e.harness import NAMESPACE
from tests.fakekube.server import FakeKube, write_kubeconfig

POLICY = ScalingPolicy.model_validate(
    {
        "apiVersion": "nim-autoscaler/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "llama", "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
            "minReplicas": 1,
            "maxReplicas": 20,
            "algorithm": "hpa",
            "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}],
            "behavior": {
                "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 120}]},
                "scaleDown": {
                    "stabilizationWindowSeconds": 180,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }
)

# KV usage per pod at each tick (60 s apart): a surge, then a long quiet period.
LOADS = [0.5, 0.9, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1]


async def _run(tmp_path: Path, restart_before: set[int]) -> list[int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    async with FakeKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=2, labels={"app": "llama"})
        fake.enable_reconcile()
        fake.step()
        settings = Settings(
            kubeconfig=write_kubeconfig(tmp_path / f"kc-{len(restart_before)}", fake.url),
            leader_election=False,
            leader_election_namespace="nim-autoscaler",
            namespaces=[NAMESPACE],
        )
        source = StaticMetricSource()
        context: KubeContext | None = None
        loop: ControlLoop | None = None
        desired: list[int] = []
        try:
            for tick, load in enumerate(LOADS):
                if context is None or tick in restart_before:
                    if context is not None:
                        await context.close()
                    context = await connect(settings)
                    context.start()
                    assert await context.pods.wait_synced(within=10)
                    loop = ControlLoop(
                        policies=lambda: [POLICY],
                        metrics=source,
                        scale=context.scale,
                        pods=context.pods,
                        recorder=context.recorder,
                        history_store=context.history,
                        leader=context.leader,
                        log_ticks=False,
                    )
                assert loop is not None
                fake.step()
                pods = [
                    name
                    for (plural, ns, name) in fake.objects
                    if plural == "pods" and ns == NAMESPACE
                ]
                now = 1_000_000.0 + 60.0 * tick
                samples = PodSamples(dict.fromkeys(pods, load), timestamp=now, series=len(pods))
                source.set(POLICY.key, {"kvCache": samples})
                # Let the pod cache see the reconciler's changes before deciding.
                await context.pods.wait_synced(within=5)
                for _ in range(50):
                    if len(context.pods.pods(NAMESPACE, "app=llama")) == len(pods):
                        break
                    await _yield()
                [result] = await loop.tick(now)
                assert result.decision is not None, result.error
                desired.append(result.decision.desired_replicas)
        finally:
            if context is not None:
                await context.close()
        return desired


async def _yield() -> None:
    await asyncio.sleep(0.05)


@pytest.mark.parametrize("restart_before", [{3}, {6}, {2, 5, 9}], ids=str)
async def test_restart_changes_no_decision(tmp_path: Path, restart_before: set[int]) -> None:
    """Decisions with restarts (history read back from the ConfigMap) equal an uninterrupted run."""
    uninterrupted = await _run(tmp_path / "a", set())
    assert len(set(uninterrupted)) > 2, uninterrupted  # the scenario scales up and down
    assert await _run(tmp_path / "b", restart_before) == uninterrupted
