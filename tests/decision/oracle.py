"""HPA-literal reference versions of the normalisation steps: the oracle for ``normalize.py``.

Each function is written as the HPA controller's own code reads
(``pkg/controller/podautoscaler/horizontal.go``): one loop over the stored records, the last
stale slot reused for the new record, every rate policy's limit kept for inspection. The
package's :mod:`autoscaler.decision.normalize` must give the same replicas and reasons on every
input (``test_oracle.py``); the conformance vectors pin these to upstream's tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.decision.normalize import SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM
from autoscaler.decision.resolved import PODS, SELECT_DISABLED, SELECT_MIN, RatePolicy, Rules
from autoscaler.decision.types import Recommendation, ScaleEvent


@dataclass(frozen=True, slots=True)
class Stabilized:
    """Result of a stabilization step."""

    replicas: int
    recommendations: tuple[Recommendation, ...]
    """The stored records after recording the unstabilized one (stale slot reused)."""
    reason: str


def stabilize_legacy(
    recommendations: tuple[Recommendation, ...], desired: int, now: float, window: float
) -> Stabilized:
    """``stabilizeRecommendation``: the max over the downscale window; reuse the last old slot."""
    best = desired
    old_index = -1
    for index, rec in enumerate(recommendations):
        if not now - rec.timestamp < window:
            old_index = index
        elif rec.replicas > best:
            best = rec.replicas
    new = Recommendation(now, desired)
    if old_index >= 0:
        stored = (*recommendations[:old_index], new, *recommendations[old_index + 1 :])
    else:
        stored = (*recommendations, new)
    reason = "ScaleDownStabilized" if best != desired else "ReadyForNewScale"
    return Stabilized(best, stored, reason)


def stabilize_with_behavior(  # noqa: PLR0917 - the HPA's own arguments
    recommendations: tuple[Recommendation, ...],
    current: int,
    desired: int,
    now: float,
    up_window: float,
    down_window: float,
) -> Stabilized:
    """``stabilizeRecommendationWithBehaviors``: reuse the last slot outside both windows."""
    up_cut = now - up_window
    down_cut = now - down_window
    up_bound = desired
    down_bound = desired
    old_index = -1
    for index, rec in enumerate(recommendations):
        if rec.timestamp > up_cut:
            up_bound = min(up_bound, rec.replicas)
        if rec.timestamp > down_cut:
            down_bound = max(down_bound, rec.replicas)
        if rec.timestamp <= up_cut and rec.timestamp <= down_cut:
            old_index = index
    result = min(max(current, up_bound), down_bound)
    new = Recommendation(now, desired)
    if old_index >= 0:
        stored = (*recommendations[:old_index], new, *recommendations[old_index + 1 :])
    else:
        stored = (*recommendations, new)
    if result == desired:
        reason = "ReadyForNewScale"
    elif desired >= current:
        reason = "ScaleUpStabilized"
    else:
        reason = "ScaleDownStabilized"
    return Stabilized(result, stored, reason)


def _change(period: float, events: tuple[ScaleEvent, ...], now: float) -> int:
    return sum(e.change for e in events if now - e.timestamp < period)


@dataclass(frozen=True, slots=True)
class PolicyLimit:
    """One rate policy's limit."""

    policy: RatePolicy
    period_start: int
    limit: int


def scale_up_limits(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> tuple[int, tuple[PolicyLimit, ...]]:
    """``calculateScaleUpLimitWithScalingRules``, with each policy's own limit."""
    if rules.select == SELECT_DISABLED:
        return current, ()
    use_min = rules.select == SELECT_MIN
    result = 2**31 - 1 if use_min else -(2**31)
    details = []
    for policy in rules.policies:
        start = current - _change(policy.period, up_events, now)
        start += _change(policy.period, down_events, now)
        if policy.type == PODS:
            proposed = start + policy.value
        else:
            proposed = math.ceil(start * (1 + policy.value / 100))
        details.append(PolicyLimit(policy, start, proposed))
        result = min(result, proposed) if use_min else max(result, proposed)
    return result, tuple(details)


def scale_down_limits(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> tuple[int, tuple[PolicyLimit, ...]]:
    """``calculateScaleDownLimitWithBehaviors`` (Percent truncates), with each policy's limit."""
    if rules.select == SELECT_DISABLED:
        return current, ()
    use_min = rules.select == SELECT_MIN
    result = -(2**31) if use_min else 2**31 - 1
    details = []
    for policy in rules.policies:
        start = current - _change(policy.period, up_events, now)
        start += _change(policy.period, down_events, now)
        if policy.type == PODS:
            proposed = start - policy.value
        else:
            proposed = int(start * (1 - policy.value / 100))
        details.append(PolicyLimit(policy, start, proposed))
        result = max(result, proposed) if use_min else min(result, proposed)
    return result, tuple(details)


def convert_with_behavior_rate(  # noqa: PLR0917 - the HPA's own arguments
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    up: Rules,
    down: Rules,
    now: float,
) -> tuple[int, str]:
    """``convertDesiredReplicasWithBehaviorRate``: rate limits, then min/max."""
    if desired > current:
        limit = max(scale_up_limits(current, up_events, down_events, up, now)[0], current)
        if max_replicas > limit:
            allowed, reason = limit, "ScaleUpLimit"
        else:
            allowed, reason = max_replicas, "TooManyReplicas"
        return (allowed, reason) if desired > allowed else (desired, "DesiredWithinRange")
    if desired < current:
        limit = min(scale_down_limits(current, up_events, down_events, down, now)[0], current)
        if min_replicas < limit:
            allowed, reason = limit, "ScaleDownLimit"
        else:
            allowed, reason = min_replicas, "TooFewReplicas"
        return (allowed, reason) if desired < allowed else (desired, "DesiredWithinRange")
    return desired, "DesiredWithinRange"


def convert_with_rules(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    factor: float = SCALE_UP_LIMIT_FACTOR,
) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules`` (legacy path)."""
    cap = int(max(factor * current, SCALE_UP_LIMIT_MINIMUM))
    if max_replicas > cap:
        maximum, reason = cap, "ScaleUpLimit"
    else:
        maximum, reason = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > maximum:
        return maximum, reason
    return desired, "DesiredWithinRange"
