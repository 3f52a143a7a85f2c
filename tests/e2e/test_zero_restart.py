"""The scale-to-zero idle timer survives a restart: it is persisted with the history.

As ``test_restart_history.py``: the real Kubernetes side (``/scale``, pod cache, history
ConfigMap) against the fake API server, metric values set per tick and a virtual ``now`` one
minute apart. A run that restarts the Kubernetes context and the loop in the middle of the idle
stretch (or while at zero) must decide exactly as a run without a restart: to zero after
``idleFor``, back to 1 when requests wait at the gateway.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from autoscaler.controller.loop import ControlLoop
from autoscaler.decision.types import MetricObservation, PodSamples, TargetSample
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
            "minReplicas": 0,
            "maxReplicas": 4,
            "algorithm": "llm",
            "scaleToZero": {"idleFor": "10m"},
            "metrics": [
                {
                    "gatewayQueue": {
                        "pool": "llama",
                        "target": {"type": "AverageValue", "averageValue": 50},
                    }
                }
            ],
        },
    }
)

# Requests waiting at the gateway at each tick (60 s apart): busy, 12 quiet minutes, a request.
QUEUE = [3.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5.0, 0.0]


async def _run(tmp_path: Path, restart_before: set[int]) -> list[int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    async with FakeKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=1, labels={"app": "llama"})
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
        base = time.time()
        try:
            for tick, queue in enumerate(QUEUE):
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
                now = base + 60.0 * tick
                idle = PodSamples(dict.fromkeys(pods, 0.0), timestamp=now, series=len(pods))
                observed: dict[str, MetricObservation] = {
                    "gatewayQueue": TargetSample(queue, now),
                    "__capacity_rate": idle,
                    "__capacity_running": idle,
                    "__capacity_waiting": idle,
                }
                source.set(POLICY.key, observed)
                await context.pods.wait_synced(within=5)
                for _ in range(50):
                    if len(context.pods.pods(NAMESPACE, "app=llama")) == len(pods):
                        break
                    await asyncio.sleep(0.05)
                [result] = await loop.tick(now)
                assert result.decision is not None, result.error
                desired.append(result.decision.desired_replicas)
        finally:
            if context is not None:
                await context.close()
        return desired


@pytest.mark.parametrize("restart_before", [{6}, {12}, {4, 9, 13}], ids=str)
async def test_restart_keeps_the_idle_timer(tmp_path: Path, restart_before: set[int]) -> None:
    """Decisions with restarts (idle timer read back from the ConfigMap) equal a run without."""
    uninterrupted = await _run(tmp_path / "a", set())
    # Idle from the second tick (60 s): 10 minutes later (tick 11) to zero; awake at tick 14.
    assert uninterrupted == [1] * 11 + [0, 0, 0, 1, 1], uninterrupted
    assert await _run(tmp_path / "b", restart_before) == uninterrupted
