"""``algorithm: llm``: capacity on the way, the tick's shared context and proposal builders.

A metric's need is ``ceil(demand / target)`` pods, compared with ``ready + credited`` pods;
:func:`apply_credit` turns it into ``current + need - capacity``, so successive ticks of one cold
start do not stack scale-ups for the same demand, and pods that cannot be scheduled are not asked
for again. :class:`LlmContext` carries what every metric of a policy reads in one tick (the pod
view from :mod:`autoscaler.decision.pods`, the queue state from :mod:`autoscaler.decision.queue`).
Used by the demand, queue, latency and SLO proposals. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.decision.calculator import (
    Proposal,
)
from autoscaler.decision.explain import LAZY
from autoscaler.decision.pods import PodView
from autoscaler.decision.queue_state import QueueReading, QueueState
from autoscaler.decision.resolved import ResolvedMetric, ResolvedPolicy
from autoscaler.decision.types import (
    PodSamples,
)


@dataclass(frozen=True, slots=True)
class LlmContext:
    """Per-tick inputs shared by all metrics of a policy."""

    policy: ResolvedPolicy
    current: int
    view: PodView
    now: float
    queue: QueueState
    """The queue state after this tick's readings (:func:`queue_state`)."""
    candidates: Mapping[str, QueueReading]
    """This tick's queue readings (``queue.candidates``)."""
    queue_values: Mapping[str, list[float]]
    """Queue metric -> its ready pods' samples, as :func:`queue_state` read them (only metrics
    with a sample from every ready pod)."""


def context(  # noqa: PLR0917 - the tick's values, in LlmContext's order
    policy: ResolvedPolicy,
    current: int,
    view: PodView,
    now: float,
    queue: QueueState,
    queue_values: Mapping[str, list[float]],
) -> LlmContext:
    """The tick's :class:`LlmContext` (``queue`` and ``queue_values``: from :func:`queue_state`)."""
    return LlmContext(policy, current, view, now, queue, queue.candidates, queue_values)


def apply_credit(ctx: LlmContext, need: int, ratio: float, detail: dict[str, Any]) -> int:
    """Turn a metric's need (pods) into a proposal, crediting starting pods.

    ``ratio`` is demand over the capacity's target; within tolerance -> current.
    """
    view = ctx.view
    capacity = view.capacity
    current = ctx.current
    tol_down, tol_up = ctx.policy.tolerance_down, ctx.policy.tolerance_up
    detail["need"] = need
    detail["capacity"] = capacity
    if (1.0 - tol_down) <= ratio <= (1.0 + tol_up):  # calculator.within, inlined
        detail["rule"] = (
            LAZY,
            "demand/capacity {:.4g} within [{:.4g}, {:.4g}]: keep current",
            ratio,
            1 - tol_down,
            1 + tol_up,
        )
        return current
    unschedulable = len(view.unschedulable)
    if need > capacity and unschedulable:
        # Unschedulable pods are not capacity, but they are already asked for: the same demand
        # does not ask again (more pods would not schedule either); more demand still does.
        proposal = max(current, current + need - capacity - unschedulable)
        detail["rule"] = (
            LAZY,
            "need {1} > capacity {2}, {3} pod(s) unschedulable and already asked for: "
            "max(current {0}, {0} + {1} - {2} - {3}) = {4}",
            current,
            need,
            capacity,
            unschedulable,
            proposal,
        )
        return proposal
    if need < capacity and view.credited:
        detail["rule"] = (
            LAZY,
            "need {} < capacity {} while pods start: keep current",
            need,
            capacity,
        )
        return current
    proposal = max(0, current + need - capacity)
    detail["rule"] = (
        LAZY,
        "current {} + need {} - capacity {} (ready {} + credited {}) = {}",
        current,
        need,
        capacity,
        len(view.ready),
        len(view.credited),
        proposal,
    )
    return proposal


def ready_values(samples: PodSamples, ready: tuple[str, ...]) -> tuple[list[float], int]:
    """Values of ready pods and the count of ready pods without a sample."""
    values = [value for value in map(samples.values.get, ready) if value is not None]
    return values, len(ready) - len(values)


def valid_proposal(  # noqa: PLR0917 - mirrors Proposal's field order
    metric: ResolvedMetric,
    replicas: int,
    value: float,
    ratio: float,
    detail: dict[str, Any],
    guard: str = "",
) -> Proposal:
    """A valid proposal, its fields passed positionally (a class call with keywords builds a dict,
    which costs more than the rest of the construction)."""
    return Proposal(metric.name, replicas, value, ratio, "", "", detail, False, guard)  # noqa: FBT003


def invalid_proposal(metric: ResolvedMetric, message: str, detail: dict[str, Any]) -> Proposal:
    return Proposal(
        metric.name,
        None,
        failure_reason=f"FailedGet{metric.source_label}Metric",
        failure_message=message,
        detail=detail,
    )
