"""``algorithm: llm``: latency metrics as guards, not as demand.

Above ``target x (1 + tolerance)`` a latency guard asks for one more replica (unless capacity is
on the way); between ``margin x target`` and that it holds (blocks scale-down); below it it allows
a scale-down. No traffic (``NaN`` or empty) is neutral, and so is a time-to-first-token guard
while no queue is above its band (the prompts' prefill, which more replicas do not shorten).
:mod:`autoscaler.decision.combine` applies the guards' states. Pure.
"""

from __future__ import annotations

from typing import Any

from autoscaler.decision.calculator import (
    Proposal,
    aggregate,
)
from autoscaler.decision.credit import (
    LlmContext,
    invalid_proposal,
    ready_values,
    valid_proposal,
)
from autoscaler.decision.explain import LAZY
from autoscaler.decision.queue import queue_within_band
from autoscaler.decision.resolved import ResolvedMetric
from autoscaler.decision.types import (
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodSamples,
)

NO_TRAFFIC = frozenset({NoSignalReason.NAN, NoSignalReason.EMPTY})
"""No-signal reasons of a latency metric that mean 'no traffic' (neutral guard)."""


TTFT_KIND = "timeToFirstToken"


def latency_proposal(
    metric: ResolvedMetric, observation: MetricObservation, ctx: LlmContext
) -> Proposal:
    """A latency guard's proposal: up one step, hold, allow down, or neutral without traffic.

    Args:
        metric: The latency metric.
        observation: Its observation.
        ctx: Tick context.

    Returns:
        The proposal (``guard`` says which state; ``neutral`` when there is no traffic).
    """
    target = metric.target
    margin = ctx.policy.latency_margin
    up_above = target * (1 + ctx.policy.tolerance_up)
    detail: dict[str, Any] = {
        "semantics": "latency guard",
        "upAbove": up_above,
        "downBelow": target * margin,
    }
    if isinstance(observation, NoSignal):
        if observation.reason in NO_TRAFFIC:
            detail["rule"] = "no traffic (no latency sample): neutral"
            return Proposal(metric.name, None, neutral=True, guard="neutral", detail=detail)
        return invalid_proposal(metric, f"{observation.reason.value}: {observation.detail}", detail)
    if isinstance(observation, PodSamples):
        values, _missing = ready_values(observation, ctx.view.ready)
        if not values:
            values = list(observation.values.values())
        if not values:
            detail["rule"] = "no latency sample: neutral"
            return Proposal(metric.name, None, neutral=True, guard="neutral", detail=detail)
        value = aggregate(values, "max" if metric.aggregation == "max" else "avg")
    else:
        value = observation.value
    ratio = value / target
    if metric.kind == TTFT_KIND and value >= target * margin and queue_within_band(ctx):
        detail["rule"] = (
            LAZY,
            "{:.4g} not below {} x target but no queue above its band: requests are not "
            "waiting for capacity, the time to first token is the prompts' prefill, which more "
            "replicas do not shorten: neutral",
            value,
            margin,
        )
        return Proposal(
            metric.name,
            None,
            value=value,
            ratio=ratio,
            neutral=True,
            guard="neutral",
            detail=detail,
        )
    if value > up_above:
        if ctx.view.credited or ctx.view.unschedulable:
            detail["rule"] = (
                LAZY,
                "{:.4g} above {:.4g} but capacity is on the way or unschedulable: hold",
                value,
                up_above,
            )
            return valid_proposal(metric, ctx.current, value, ratio, detail, "hold")
        detail["rule"] = (LAZY, "{:.4g} above {:.4g}: one more replica", value, up_above)
        return valid_proposal(metric, ctx.current + 1, value, ratio, detail, "up")
    if value >= target * margin:
        detail["rule"] = (LAZY, "{:.4g} between margin and target: hold (no scale-down)", value)
        return valid_proposal(metric, ctx.current, value, ratio, detail, "hold")
    detail["rule"] = (LAZY, "{:.4g} below {} x target: scale-down allowed", value, margin)
    return valid_proposal(metric, max(0, ctx.current - 1), value, ratio, detail, "down")
