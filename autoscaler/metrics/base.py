"""The metric-source contract shared by Prometheus, replay and the simulator.

The control loop calls :meth:`MetricSource.fetch` once per tick with every policy it manages and
the pods currently behind each target; the source answers, per policy key and metric name, with a
:data:`~autoscaler.decision.types.MetricObservation` (per-pod samples, one whole-target sample, or
"no signal" with the reason). A source never turns missing data into 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from autoscaler.decision.types import MetricObservation, PodInfo
from autoscaler.policy.models import ScalingPolicy


@dataclass(frozen=True, slots=True)
class MetricRequest:
    """One policy's metrics to fetch this tick, with the pods behind its target."""

    policy: ScalingPolicy
    pods: tuple[PodInfo, ...]
    """Pods of the target now; samples of other pods are ignored (superfluous)."""
    selector: str | None = None
    """The target's pod label selector (for ``{selector}`` in custom query templates)."""


PolicyMetrics = Mapping[str, Mapping[str, MetricObservation]]
"""Policy key (``namespace/name``) -> metric name -> observation."""


class MetricSource(Protocol):
    """Where metric values come from (Prometheus, a recorded timeline, a simulated fleet)."""

    async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
        """Observe every metric of every requested policy at time ``now``.

        Must not raise for a failing query: the affected metrics get a ``NoSignal`` with the
        reason. It may raise only for programming errors.
        """
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...
