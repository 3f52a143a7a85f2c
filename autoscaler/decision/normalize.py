"""HPA normalisation: stabilization windows, rate limits, min/max clamp, scale-event bookkeeping.

Free functions on plain values, mirroring the HPA controller's ``normalizeDesiredReplicas``
(legacy, no ``behavior``), ``stabilizeRecommendationWithBehaviors``,
``convertDesiredReplicasWithBehaviorRate``, ``calculateScale{Up,Down}Limit...`` and
``storeScaleEvent`` (``pkg/controller/podautoscaler/horizontal.go``), with time as a parameter.
Used by :mod:`autoscaler.decision.core` for both algorithms. Windows and periods are strict: a
record made at ``t0`` is inside a window of ``W`` seconds at ``now`` only if ``now - t0 < W``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter

from autoscaler.decision.resolved import (
    PODS,
    SELECT_DISABLED,
    SELECT_MIN,
    RatePolicy,
    Rules,
)
from autoscaler.decision.types import (
    Recommendation,
    ScaleEvent,
)

SCALE_UP_LIMIT_FACTOR = 2.0
"""Legacy path: at most this factor of the current count per scale-up (``scaleUpLimitFactor``)."""
SCALE_UP_LIMIT_MINIMUM = 4.0
"""Legacy path: the scale-up cap is at least this many replicas (``scaleUpLimitMinimum``)."""

MSG_SCALE_UP_LIMIT = "the desired replica count is increasing faster than the maximum scale rate"
MSG_SCALE_DOWN_LIMIT = "the desired replica count is decreasing faster than the maximum scale rate"
MSG_TOO_MANY = "the desired replica count is more than the maximum replica count"
MSG_TOO_FEW = "the desired replica count is less than the minimum replica count"
MSG_WITHIN = "the desired count is within the acceptable range"
MSG_UP_STABILIZED = (
    "recent recommendations were lower than current one, applying the lowest recent recommendation"
)
MSG_DOWN_STABILIZED = (
    "recent recommendations were higher than current one, applying the highest recent "
    "recommendation"
)
MSG_READY = "recommended size matches current size"
MESSAGES = {
    "ScaleUpLimit": MSG_SCALE_UP_LIMIT,
    "ScaleDownLimit": MSG_SCALE_DOWN_LIMIT,
    "TooManyReplicas": MSG_TOO_MANY,
    "TooFewReplicas": MSG_TOO_FEW,
    "DesiredWithinRange": MSG_WITHIN,
    "ScaleUpStabilized": MSG_UP_STABILIZED,
    "ScaleDownStabilized": MSG_DOWN_STABILIZED,
    "ReadyForNewScale": MSG_READY,
}
"""AbleToScale / ScalingLimited reason -> its message (each reason has exactly one)."""
_REPLICAS = attrgetter("replicas")
_TIMESTAMP = attrgetter("timestamp")


def inside(now: float, t0: float, window: float) -> bool:
    """True if a record made at ``t0`` is inside a window of ``window`` seconds at ``now``."""
    return now - t0 < window


# --------------------------------------------------------------------------------------------
# Stabilization
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stabilized:
    """Result of a stabilization step."""

    replicas: int
    """The stabilized recommendation."""
    recommendations: tuple[Recommendation, ...]
    """The stored recommendations after recording the unstabilized one."""
    reason: str
    """AbleToScale reason if the value differs from the input (else ``ReadyForNewScale``)."""
    message: str
    up_bound: int | None = None
    """Behaviour path: the minimum over the up window (with the new desired)."""
    down_bound: int | None = None
    """The maximum over the down window (with the new desired)."""
    window_up: tuple[Recommendation, ...] = ()
    """Records inside the up window (before recording)."""
    window_down: tuple[Recommendation, ...] = ()
    """Records inside the down window (before recording)."""


def stabilize_legacy(
    recommendations: tuple[Recommendation, ...],
    desired: int,
    now: float,
    window: float,
    *,
    prune: bool = False,
) -> Stabilized:
    """HPA ``stabilizeRecommendation``: the max over the downscale window; store the input.

    Args:
        recommendations: Stored recommendations.
        desired: The prenormalized desired count.
        now: Current time, seconds.
        window: Downscale stabilization window, seconds (300 by default).
        prune: Drop the records outside the window instead of reusing a stale slot (they can
            never count again; decisions are the same, memory stays flat).

    Returns:
        The stabilized count and the new record list (the last stale slot reused, else appended).
    """
    best = desired
    old_index = -1
    in_window: list[Recommendation] = []
    for index, rec in enumerate(recommendations):
        if not inside(now, rec.timestamp, window):
            old_index = index
        else:
            in_window.append(rec)
            best = max(best, rec.replicas)
    new = Recommendation(now, desired)
    if prune:
        stored = (*in_window, new) if inside(now, now, window) else tuple(in_window)
    elif old_index >= 0:
        stored = (*recommendations[:old_index], new, *recommendations[old_index + 1 :])
    else:
        stored = (*recommendations, new)
    if best != desired:
        reason, message = "ScaleDownStabilized", MSG_DOWN_STABILIZED
    else:
        reason, message = "ReadyForNewScale", MSG_READY
    return Stabilized(best, stored, reason, message, down_bound=best, window_down=tuple(in_window))


def stabilize_with_behavior(
    recommendations: tuple[Recommendation, ...],
    current: int,
    desired: int,
    now: float,
    *,
    up_window: float,
    down_window: float,
    prune: bool = False,
) -> Stabilized:
    """HPA ``stabilizeRecommendationWithBehaviors``.

    The up bound is the min of ``desired`` and the records in the up window; the down bound is the
    max of ``desired`` and the records in the down window; the result is ``current`` raised to the
    up bound, then lowered to the down bound. The unstabilized ``desired`` is stored, reusing the
    last slot that is outside both windows, else appended.

    Args:
        recommendations: Stored recommendations.
        current: Current replicas.
        desired: Prenormalized desired replicas.
        now: Current time, seconds.
        up_window: Scale-up stabilization window, seconds.
        down_window: Scale-down stabilization window, seconds.
        prune: Drop the records outside both windows instead of reusing one of their slots
            (they can never count again; decisions are the same, memory stays flat).

    Returns:
        The stabilized value, the new record list, and the AbleToScale reason.
    """
    up_cut = now - up_window
    down_cut = now - down_window
    up_bound = desired
    down_bound = desired
    in_up: list[Recommendation] = []
    in_down: list[Recommendation] = []
    old_index = -1
    for index, rec in enumerate(recommendations):
        stamp = rec.timestamp
        if stamp > up_cut:
            in_up.append(rec)
            if rec.replicas < up_bound:  # noqa: PLR1730 - a comparison beats min() in this loop
                up_bound = rec.replicas
        if stamp > down_cut:
            in_down.append(rec)
            if rec.replicas > down_bound:  # noqa: PLR1730 - a comparison beats max() in this loop
                down_bound = rec.replicas
        elif stamp <= up_cut:
            old_index = index
    result = min(max(current, up_bound), down_bound)
    new = Recommendation(now, desired)
    if prune:
        kept = in_down if down_window >= up_window else in_up
        stored = (*kept, new) if max(up_window, down_window) > 0 else tuple(kept)
    elif old_index >= 0:
        stored = (*recommendations[:old_index], new, *recommendations[old_index + 1 :])
    else:
        stored = (*recommendations, new)
    if result == desired:
        reason, message = "ReadyForNewScale", MSG_READY
    elif desired >= current:
        reason, message = "ScaleUpStabilized", MSG_UP_STABILIZED
    else:
        reason, message = "ScaleDownStabilized", MSG_DOWN_STABILIZED
    return Stabilized(
        result,
        stored,
        reason,
        message,
        up_bound=up_bound,
        down_bound=down_bound,
        window_up=tuple(in_up),
        window_down=tuple(in_down),
    )


def stabilize_pruned(  # noqa: PLR0917 - hot path, called positionally once per tick
    recommendations: tuple[Recommendation, ...],
    current: int,
    desired: int,
    now: float,
    up_window: float,
    down_window: float,
) -> tuple[int, tuple[Recommendation, ...], str]:
    """:func:`stabilize_with_behavior` with ``prune=True``, without the explanation parts.

    Returns:
        ``(stabilized replicas, stored recommendations, AbleToScale reason)``; the explanation
        selects each window's records again, with the same comparisons, when it is read.
    """
    up_cut = now - up_window
    down_cut = now - down_window
    # Rounding is monotonic, so the shorter window's records are a subset of the longer one's.
    if down_window >= up_window:
        kept = [r for r in recommendations if r.timestamp > down_cut]
        down_bound = max(desired, max(map(_REPLICAS, kept), default=desired))
        up_bound = desired
        if kept and max(map(_TIMESTAMP, kept)) > up_cut:  # none with the default 0 s window
            up_bound = min(desired, *(r.replicas for r in kept if r.timestamp > up_cut))
    else:
        kept = [r for r in recommendations if r.timestamp > up_cut]
        up_bound = min(desired, min(map(_REPLICAS, kept), default=desired))
        down_bound = desired
        if kept and max(map(_TIMESTAMP, kept)) > down_cut:
            down_bound = max(desired, *(r.replicas for r in kept if r.timestamp > down_cut))
    result = min(max(current, up_bound), down_bound)
    if max(up_window, down_window) > 0:
        kept.append(Recommendation(now, desired))
    if result == desired:
        reason = "ReadyForNewScale"
    elif desired >= current:
        reason = "ScaleUpStabilized"
    else:
        reason = "ScaleDownStabilized"
    return result, tuple(kept), reason


def stabilize_legacy_pruned(
    recommendations: tuple[Recommendation, ...], desired: int, now: float, window: float
) -> tuple[int, tuple[Recommendation, ...], str]:
    """:func:`stabilize_legacy` with ``prune=True``, without the explanation parts.

    Returns:
        ``(stabilized replicas, stored recommendations, AbleToScale reason)``.
    """
    kept = [r for r in recommendations if now - r.timestamp < window]
    best = max(desired, max(map(_REPLICAS, kept), default=desired))
    if now - now < window:
        kept.append(Recommendation(now, desired))
    return best, tuple(kept), "ScaleDownStabilized" if best != desired else "ReadyForNewScale"


# --------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------


def replicas_change_per_period(period: float, events: tuple[ScaleEvent, ...], now: float) -> int:
    """HPA ``getReplicasChangePerPeriod``: sum of changes of events inside the period (any flag)."""
    total = 0
    for event in events:
        if now - event.timestamp < period:
            total += event.change
    return total


@dataclass(frozen=True, slots=True)
class PolicyLimit:
    """One rate policy's limit, for explanations."""

    policy: RatePolicy
    period_start: int
    """Replicas at the start of the period (current - added + removed)."""
    limit: int


def scale_up_limits(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> tuple[int, tuple[PolicyLimit, ...]]:
    """HPA ``calculateScaleUpLimitWithScalingRules``.

    Args:
        current: Current replicas.
        up_events: Stored scale-up events.
        down_events: Stored scale-down events.
        rules: Scale-up rules.
        now: Current time, seconds.

    Returns:
        The limit (``current`` when the direction is disabled) and each policy's own limit.
    """
    if rules.select == SELECT_DISABLED:
        return current, ()
    use_min = rules.select == SELECT_MIN
    result = 2**31 - 1 if use_min else -(2**31)
    details: list[PolicyLimit] = []
    for policy in rules.policies:
        added = replicas_change_per_period(policy.period, up_events, now)
        removed = replicas_change_per_period(policy.period, down_events, now)
        start = current - added + removed
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
    """HPA ``calculateScaleDownLimitWithBehaviors`` (Percent truncates, as ``int32(float)``).

    Args:
        current: Current replicas.
        up_events: Stored scale-up events.
        down_events: Stored scale-down events.
        rules: Scale-down rules.
        now: Current time, seconds.

    Returns:
        The limit (``current`` when the direction is disabled) and each policy's own limit.
    """
    if rules.select == SELECT_DISABLED:
        return current, ()
    use_min = rules.select == SELECT_MIN
    result = -(2**31) if use_min else 2**31 - 1
    details: list[PolicyLimit] = []
    for policy in rules.policies:
        added = replicas_change_per_period(policy.period, up_events, now)
        removed = replicas_change_per_period(policy.period, down_events, now)
        start = current - added + removed
        if policy.type == PODS:
            proposed = start - policy.value
        else:
            proposed = int(start * (1 - policy.value / 100))
        details.append(PolicyLimit(policy, start, proposed))
        result = max(result, proposed) if use_min else min(result, proposed)
    return result, tuple(details)


@dataclass(frozen=True, slots=True)
class Limited:
    """Result of a rate-limit / clamp step."""

    replicas: int
    reason: str
    """ScalingLimited reason (``DesiredWithinRange`` when not limited)."""
    message: str
    limit: int | None = None
    """The combined rate limit in the direction of change (None: no change or legacy)."""
    policy_limits: tuple[PolicyLimit, ...] = ()


def convert_with_behavior_rate(
    current: int,
    desired: int,
    *,
    min_replicas: int,
    max_replicas: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    up: Rules,
    down: Rules,
    now: float,
) -> Limited:
    """HPA ``convertDesiredReplicasWithBehaviorRate``: rate limits, then min/max.

    Args:
        current: Current replicas.
        desired: The stabilized recommendation.
        min_replicas: Policy minimum.
        max_replicas: Policy maximum.
        up_events: Stored scale-up events.
        down_events: Stored scale-down events.
        up: Scale-up rules.
        down: Scale-down rules.
        now: Current time, seconds.

    Returns:
        The limited count and the ScalingLimited reason.
    """
    if desired > current:
        limit, details = scale_up_limits(current, up_events, down_events, up, now)
        limit = max(limit, current)
        if max_replicas > limit:
            allowed, reason, message = limit, "ScaleUpLimit", MSG_SCALE_UP_LIMIT
        else:
            allowed, reason, message = max_replicas, "TooManyReplicas", MSG_TOO_MANY
        if desired > allowed:
            return Limited(allowed, reason, message, limit, details)
        return Limited(desired, "DesiredWithinRange", MSG_WITHIN, limit, details)
    if desired < current:
        limit, details = scale_down_limits(current, up_events, down_events, down, now)
        limit = min(limit, current)
        if min_replicas < limit:
            allowed, reason, message = limit, "ScaleDownLimit", MSG_SCALE_DOWN_LIMIT
        else:
            allowed, reason, message = min_replicas, "TooFewReplicas", MSG_TOO_FEW
        if desired < allowed:
            return Limited(allowed, reason, message, limit, details)
        return Limited(desired, "DesiredWithinRange", MSG_WITHIN, limit, details)
    return Limited(desired, "DesiredWithinRange", MSG_WITHIN)


def rate_limit(  # noqa: PLR0917 - private-style hot path; mirrors convert_with_behavior_rate
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
    """:func:`convert_with_behavior_rate` without the per-policy details.

    Returns:
        ``(limited replicas, ScalingLimited reason)``; the explanation takes each policy's
        limit from :func:`scale_up_limits` / :func:`scale_down_limits` when it is read.
    """
    if desired > current:
        if up.select == SELECT_DISABLED:
            limit = current
        else:
            use_min = up.select == SELECT_MIN
            limit = 2**31 - 1 if use_min else -(2**31)
            for policy in up.policies:
                start = current  # replicas at the start of the period
                if up_events:
                    start -= replicas_change_per_period(policy.period, up_events, now)
                if down_events:
                    start += replicas_change_per_period(policy.period, down_events, now)
                if policy.type == PODS:
                    proposed = start + policy.value
                else:
                    proposed = math.ceil(start * (1 + policy.value / 100))
                limit = min(limit, proposed) if use_min else max(limit, proposed)
        limit = max(limit, current)
        if max_replicas > limit:
            return (limit, "ScaleUpLimit") if desired > limit else (desired, "DesiredWithinRange")
        if desired > max_replicas:
            return max_replicas, "TooManyReplicas"
        return desired, "DesiredWithinRange"
    if desired < current:
        if down.select == SELECT_DISABLED:
            limit = current
        else:
            use_min = down.select == SELECT_MIN
            limit = -(2**31) if use_min else 2**31 - 1
            for policy in down.policies:
                start = current  # replicas at the start of the period
                if up_events:
                    start -= replicas_change_per_period(policy.period, up_events, now)
                if down_events:
                    start += replicas_change_per_period(policy.period, down_events, now)
                if policy.type == PODS:
                    proposed = start - policy.value
                else:
                    proposed = int(start * (1 - policy.value / 100))
                limit = max(limit, proposed) if use_min else min(limit, proposed)
        limit = min(limit, current)
        if min_replicas < limit:
            return (limit, "ScaleDownLimit") if desired < limit else (desired, "DesiredWithinRange")
        if desired < min_replicas:
            return min_replicas, "TooFewReplicas"
        return desired, "DesiredWithinRange"
    return desired, "DesiredWithinRange"


def legacy_scale_up_limit(current: int, factor: float = SCALE_UP_LIMIT_FACTOR) -> int:
    """HPA ``calculateScaleUpLimit``: ``int(max(factor * current, 4))``.

    Args:
        current: Current replicas.
        factor: The scale-up factor; the product uses 2 (upstream tests raise it to 8).
    """
    return int(max(factor * current, SCALE_UP_LIMIT_MINIMUM))


def convert_with_rules(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    factor: float = SCALE_UP_LIMIT_FACTOR,
) -> Limited:
    """HPA ``convertDesiredReplicasWithRules`` (legacy path, no ``behavior``).

    Args:
        current: Current replicas.
        desired: The stabilized recommendation.
        min_replicas: Policy minimum.
        max_replicas: Policy maximum.
        factor: Scale-up factor (2 in the product).

    Returns:
        The clamped count and the ScalingLimited reason.
    """
    cap = legacy_scale_up_limit(current, factor)
    if max_replicas > cap:
        maximum, reason, message = cap, "ScaleUpLimit", MSG_SCALE_UP_LIMIT
    else:
        maximum, reason, message = max_replicas, "TooManyReplicas", MSG_TOO_MANY
    if desired < min_replicas:
        return Limited(min_replicas, "TooFewReplicas", MSG_TOO_FEW, cap)
    if desired > maximum:
        return Limited(maximum, reason, message, cap)
    return Limited(desired, "DesiredWithinRange", MSG_WITHIN, cap)


def clamp_legacy(
    current: int, desired: int, min_replicas: int, max_replicas: int
) -> tuple[int, str]:
    """:func:`convert_with_rules` (product factor 2) as ``(replicas, ScalingLimited reason)``."""
    cap = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if max_replicas > cap:
        return (cap, "ScaleUpLimit") if desired > cap else (desired, "DesiredWithinRange")
    if desired > max_replicas:
        return max_replicas, "TooManyReplicas"
    return desired, "DesiredWithinRange"


# --------------------------------------------------------------------------------------------
# Scale events
# --------------------------------------------------------------------------------------------


def store_scale_event(
    events: tuple[ScaleEvent, ...], change: int, longest_period: float, now: float
) -> tuple[ScaleEvent, ...]:
    """HPA ``storeScaleEvent`` for one direction.

    Marks events at least ``longest_period`` old as outdated (sticky), then replaces the last
    outdated event with the new one, or appends it. Nothing is ever dropped: an outdated event
    still counts in the other direction's longer periods until its slot is overwritten, and the
    overwriting keeps the list bounded by the events made inside ``longest_period`` (plus one).

    Args:
        events: That direction's stored events.
        change: Absolute replica change (> 0).
        longest_period: Longest ``periodSeconds`` of that direction's policies.
        now: Current time, seconds.

    Returns:
        The new event list.
    """
    marked = [
        e
        if e.outdated or inside(now, e.timestamp, longest_period)
        else ScaleEvent(e.timestamp, e.change, True)  # noqa: FBT003 - positional
        for e in events
    ]
    old_index = -1
    for index, event in enumerate(marked):
        if event.outdated:
            old_index = index
    new = ScaleEvent(now, change, False)  # noqa: FBT003 - positional
    if old_index >= 0:
        marked[old_index] = new
    else:
        marked.append(new)
    return tuple(marked)
