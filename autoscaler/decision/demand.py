"""``algorithm: llm``: demand per signal for the proportional metrics.

:func:`proportional_proposal` sizes every metric that is neither a queue nor a latency guard:
``demand / target`` pods against the credited capacity (:mod:`autoscaler.decision.credit`), with
the signal's own rules: a saturated KV cache leaves the step to a valid queue metric (or steps up
by the ready count), completions become arrivals with the queue's growth over the rate window,
and a running-request count inflated by a saturated batch holds or steps by at most a doubling
(:mod:`autoscaler.decision.queue` says what the queue shows this tick). Pure.
"""

from __future__ import annotations

import math
from typing import Any

from autoscaler.decision.calculator import (
    Proposal,
    aggregate,
)
from autoscaler.decision.credit import (
    LlmContext,
    apply_credit,
    invalid_proposal,
    ready_values,
    valid_proposal,
)
from autoscaler.decision.explain import LAZY
from autoscaler.decision.queue import (
    REQUEST_RATE_KIND,
    RUNNING_KIND,
    backlog_growth,
    queue_above_band,
    rate_sizes_queue,
)
from autoscaler.decision.resolved import ResolvedMetric
from autoscaler.decision.types import (
    PodSamples,
    TargetSample,
)

RUNNING_INFLATED_RATIO = 2.0
"""Running requests per ready pod above this x target are read as a saturated batch (the count
inflates as every decode step slows): the step is bounded to this factor of the ready pods."""


def proportional_proposal(
    metric: ResolvedMetric,
    observation: PodSamples | TargetSample,
    ctx: LlmContext,
    *,
    queue_valid: bool,
) -> Proposal:
    """A non-latency, non-queue metric's proposal (demand / target vs credited capacity).

    Args:
        metric: The metric.
        observation: Its observation.
        ctx: Tick context.
        queue_valid: A queue metric gave a valid signal this tick (a saturated KV cache then
            leaves the step to the queue).

    Returns:
        The proposal.
    """
    detail: dict[str, Any] = {"semantics": "llm"}
    target = metric.target
    view = ctx.view
    ready = len(view.ready)
    if isinstance(observation, PodSamples) and metric.is_average:
        values, missing = ready_values(observation, view.ready)
        detail["readyWithSample"] = len(values)
        detail["readyMissing"] = missing
        if not values:
            return invalid_proposal(metric, "no sample from any ready pod", detail)
        total = math.fsum(values)
        average = total / len(values)
        raw_ratio = average / target
        if missing:
            # As the HPA: a ready pod without a sample counts as at target on the way down and
            # as idle on the way up, so missing data never drives a scale-down.
            total += missing * target if raw_ratio < 1.0 else 0.0
            detail["missingFilled"] = target if raw_ratio < 1.0 else 0.0
        value = average
        backlog = backlog_growth(ctx) if metric.kind == REQUEST_RATE_KIND else None
        if backlog is not None:
            # Completions cap at what the ready pods serve (and run above the arrivals while a
            # backlog drains): over the rate window, arrivals = completions + queue growth.
            detail["completionsPerSecond"] = total
            detail["backlogGrowthPerSecond"] = backlog
            total = max(0.0, total + backlog)
            detail["arrivalsPerSecond"] = total
        demand_pods = total / target
        saturated = metric.is_kv and average >= ctx.policy.kv_saturation
        detail["saturated"] = saturated
        if saturated and not queue_valid and not view.credited:
            step = max(1, ready)
            proposal = ctx.current + (0 if view.unschedulable else step)
            detail["rule"] = (
                LAZY,
                "KV cache saturated ({:.3g} >= {}): demand unknown-high, step up by the ready "
                "count ({} + {}), bounded by the rate policies",
                average,
                ctx.policy.kv_saturation,
                ctx.current,
                step,
            )
            return valid_proposal(metric, proposal, value, raw_ratio, detail)
        if metric.kind == RUNNING_KIND:
            if queue_valid and queue_above_band(ctx):
                detail["rule"] = (
                    LAZY,
                    "running requests {:.4g}/pod while the queue is above its band: concurrency "
                    "inflates when the pods are saturated (every decode step slows as the batch "
                    "grows), so the queue sizes the step; keep current",
                    average,
                )
                return valid_proposal(metric, ctx.current, average, raw_ratio, detail)
            if raw_ratio > RUNNING_INFLATED_RATIO and rate_sizes_queue(ctx):
                detail["rule"] = (
                    LAZY,
                    "running requests {:.4g}/pod > {:g} x target {:g} (inflated by a saturated "
                    "batch): the request-rate metric sizes the step (arrivals = completions + "
                    "growth of the requests held); keep current",
                    average,
                    RUNNING_INFLATED_RATIO,
                    target,
                )
                return valid_proposal(metric, ctx.current, average, raw_ratio, detail)
            if raw_ratio > RUNNING_INFLATED_RATIO:
                # Far above target the batch itself is slowing down (Little's law with a longer
                # time in batch): the count over-states demand. Step by at most a doubling of the
                # ready pods, starting pods credited, as for a growing queue of unknown throughput.
                need = math.ceil(ready * RUNNING_INFLATED_RATIO - 1e-9)
                detail["demandPods"] = demand_pods
                proposal = apply_credit(ctx, need, need / max(view.capacity, 1), detail)
                detail["rule"] = (
                    LAZY,
                    "running requests {:.4g}/pod > {:g} x target {:g} (inflated by a saturated "
                    "batch): at most a doubling, need {}; {}",
                    average,
                    RUNNING_INFLATED_RATIO,
                    target,
                    need,
                    detail.get("rule", ""),
                )
                return valid_proposal(metric, proposal, value, raw_ratio, detail)
    elif isinstance(observation, PodSamples):
        values, _missing = ready_values(observation, view.ready)
        if not values:
            return invalid_proposal(metric, "no sample from any ready pod", detail)
        value = aggregate(values, metric.aggregation)
        raw_ratio = value / target
        demand_pods = raw_ratio * ready
    elif metric.is_average:
        value = observation.value
        demand_pods = value / target
        raw_ratio = demand_pods / max(view.capacity, 1)
    else:
        value = observation.value
        raw_ratio = value / target
        if ready == 0:
            return invalid_proposal(metric, "no ready pod", detail)
        demand_pods = raw_ratio * ready
    capacity = view.capacity
    ratio = demand_pods / capacity if capacity else math.inf
    need = math.ceil(demand_pods - 1e-9)
    detail["demandPods"] = demand_pods
    proposal = apply_credit(ctx, need, ratio, detail)
    return valid_proposal(metric, proposal, value, ratio, detail)
