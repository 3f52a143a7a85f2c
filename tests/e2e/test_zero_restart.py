"""The scale-to-zero idle timer survives a restart: it is persisted with the history.

As ``test_restart_history.py`` (:func:`tests.e2e.harness.decide_with_restarts`): the real
Kubernetes side (``/scale``, pod cache, history ConfigMap) against the fake API server, metric
values set per tick and a virtual ``now`` one minute apart. A run that restarts the Kubernetes
context and the loop in the middle of the idle stretch (or while at zero) must decide exactly as
a run without a restart: to zero after ``idleFor``, back to 1 when requests wait at the gateway.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from autoscaler.decision.types import MetricObservation, PodSamples, TargetSample
from autoscaler.policy.models import ScalingPolicy
from tests.e2e.harness import NAMESPACE, decide_with_restarts

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


def _observe(tick: int, pods: list[str], now: float) -> dict[str, MetricObservation]:
    idle = PodSamples(dict.fromkeys(pods, 0.0), timestamp=now, series=len(pods))
    return {
        "gatewayQueue": TargetSample(QUEUE[tick], now),
        "__capacity_rate": idle,
        "__capacity_running": idle,
        "__capacity_waiting": idle,
    }


async def _run(tmp_path: Path, restart_before: set[int]) -> list[int]:
    return await decide_with_restarts(
        tmp_path,
        POLICY,
        replicas=1,
        ticks=len(QUEUE),
        observe=_observe,
        restart_before=restart_before,
        start=time.time(),
    )


@pytest.mark.parametrize("restart_before", [{6}, {12}, {4, 9, 13}], ids=str)
async def test_restart_keeps_the_idle_timer(tmp_path: Path, restart_before: set[int]) -> None:
    """Decisions with restarts (idle timer read back from the ConfigMap) equal a run without."""
    uninterrupted = await _run(tmp_path / "a", set())
    # Idle from the second tick (60 s): 10 minutes later (tick 11) to zero; awake at tick 14.
    assert uninterrupted == [1] * 11 + [0, 0, 0, 1, 1], uninterrupted
    assert await _run(tmp_path / "b", restart_before) == uninterrupted
