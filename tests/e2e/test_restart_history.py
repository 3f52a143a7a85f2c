"""A restart changes no decision: the history persisted by the real Kubernetes adapters.

The control loop runs on the real Kubernetes side (``/scale``, pod cache, history ConfigMap,
recorder) against the fake API server, with deterministic metric values and a virtual ``now``
(:func:`tests.e2e.harness.decide_with_restarts`).
A run that restarts the whole Kubernetes context and loop between ticks must decide exactly as a
run without a restart, including stabilization windows and rate limits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.decision.types import MetricObservation, PodSamples
from tests.e2e.harness import NAMESPACE, decide_with_restarts, kv_policy

POLICY = kv_policy(NAMESPACE)

# KV usage per pod at each tick (60 s apart): a surge, then a long quiet period.
LOADS = [0.5, 0.9, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1]


def _observe(tick: int, pods: list[str], now: float) -> dict[str, MetricObservation]:
    return {
        "kvCache": PodSamples(dict.fromkeys(pods, LOADS[tick]), timestamp=now, series=len(pods))
    }


async def _run(tmp_path: Path, restart_before: set[int]) -> list[int]:
    return await decide_with_restarts(
        tmp_path,
        POLICY,
        replicas=2,
        ticks=len(LOADS),
        observe=_observe,
        restart_before=restart_before,
        start=1_000_000.0,
    )


@pytest.mark.parametrize("restart_before", [{3}, {6}, {2, 5, 9}], ids=str)
async def test_restart_changes_no_decision(tmp_path: Path, restart_before: set[int]) -> None:
    """Decisions with restarts (history read back from the ConfigMap) equal an uninterrupted run."""
    uninterrupted = await _run(tmp_path / "a", set())
    assert len(set(uninterrupted)) > 2, uninterrupted  # the scenario scales up and down
    assert await _run(tmp_path / "b", restart_before) == uninterrupted
