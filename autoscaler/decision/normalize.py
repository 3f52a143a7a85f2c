"""HPA normalisation: stabilization windows, rate limits, min/max clamp, scale-event bookkeeping.

Free functions on plain values, one per step of the HPA controller
(``pkg/controller/podautoscaler/horizontal.go``), with time as a parameter:

* legacy path (no ``behavior``): :func:`stabilize_legacy` (``stabilizeRecommendation``), then
  :func:`convert_with_rules` (``convertDesiredReplicasWithRules``);
* ``behavior`` path: :func:`stabilize_with_behavior` (``stabilizeRecommendationWithBehaviors``),
  then :func:`convert_with_behavior_rate` (``convertDesiredReplicasWithBehaviorRate``) with
  :func:`scale_up_limit` / :func:`scale_down_limit` (``calculateScaleUpLimitWithScalingRules``,
  ``calculateScaleDownLimitWithBehaviors``);
* after a rescale: :func:`store_scale_event` (``storeScaleEvent``).

The explanation of a decision reads the same helpers (:func:`stabilization_windows`,
:func:`legacy_window`, :func:`period_start`, :func:`policy_limit`), so each rule is written once.
Used by :mod:`autoscaler.decision.core` for both algorithms; the HPA-literal versions these are
checked against live in the tests (``tests/decision/oracle.py``).

Windows and periods are strict: a record made at ``t0`` is inside a window of ``W`` seconds at
``now`` only if ``now - t0 < W``. One difference from the HPA, invisible in decisions: a
recommendation older than both windows is dropped instead of having its slot reused (it can
never count again), so the list holds only what the longer window can still see.
"""

from __future__ import annotations

import math
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
_MAX_INT32 = 2**31 - 1
_MIN_INT32 = -(2**31)


def inside(now: float, t0: float, window: float) -> bool:
    """True if a record made at ``t0`` is inside a window of ``window`` seconds at ``now``."""
    return now - t0 < window


# --------------------------------------------------------------------------------------------
# Stabilization
# --------------------------------------------------------------------------------------------


def legacy_window(
    recommendations: tuple[Recommendation, ...], desired: int, now: float, window: float
) -> tuple[list[Recommendation], int]:
    """The records inside the downscale window, and the max of them and ``desired``."""
    records = [r for r in recommendations if inside(now, r.timestamp, window)]
    return records, max(desired, max(map(_REPLICAS, records), default=desired))


def stabilize_legacy(
    recommendations: tuple[Recommendation, ...], desired: int, now: float, window: float
) -> tuple[int, tuple[Recommendation, ...], str]:
    """HPA ``stabilizeRecommendation``: the max over the downscale window; store the input.

    Args:
        recommendations: Stored recommendations.
        desired: The prenormalized desired count.
        now: Current time, seconds.
        window: Downscale stabilization window, seconds (300 by default).

    Returns:
        ``(stabilized replicas, stored recommendations, AbleToScale reason)``.
    """
    records, recommendation = legacy_window(recommendations, desired, now, window)
    if window > 0:  # a record made now can count at a later tick
        records.append(Recommendation(now, desired))
    reason = "ScaleDownStabilized" if recommendation != desired else "ReadyForNewScale"
    return recommendation, tuple(records), reason


def stabilization_windows(
    recommendations: tuple[Recommendation, ...],
    desired: int,
    now: float,
    up_window: float,
    down_window: float,
) -> tuple[list[Recommendation], list[Recommendation], int, int]:
    """The records inside each window, and the up and down bounds they give.

    As the HPA: a record counts in a window when its timestamp is after ``now - window``; the up
    bound is the min of ``desired`` and the up window's records, the down bound the max of
    ``desired`` and the down window's records.

    Returns:
        ``(up window records, down window records, up bound, down bound)``.
    """
    up_cutoff = now - up_window
    down_cutoff = now - down_window
    up_records = [r for r in recommendations if r.timestamp > up_cutoff]
    down_records = [r for r in recommendations if r.timestamp > down_cutoff]
    up_recommendation = min(desired, min(map(_REPLICAS, up_records), default=desired))
    down_recommendation = max(desired, max(map(_REPLICAS, down_records), default=desired))
    return up_records, down_records, up_recommendation, down_recommendation


def stabilize_with_behavior(  # noqa: PLR0917 - the HPA's own arguments, in its order
    recommendations: tuple[Recommendation, ...],
    current: int,
    desired: int,
    now: float,
    up_window: float,
    down_window: float,
) -> tuple[int, tuple[Recommendation, ...], str]:
    """HPA ``stabilizeRecommendationWithBehaviors``.

    The result is ``current`` raised to the up bound, then lowered to the down bound
    (:func:`stabilization_windows`). The unstabilized ``desired`` is stored.

    Args:
        recommendations: Stored recommendations.
        current: Current replicas.
        desired: Prenormalized desired replicas.
        now: Current time, seconds.
        up_window: Scale-up stabilization window, seconds.
        down_window: Scale-down stabilization window, seconds.

    Returns:
        ``(stabilized replicas, stored recommendations, AbleToScale reason)``.
    """
    up_records, down_records, up_recommendation, down_recommendation = stabilization_windows(
        recommendations, desired, now, up_window, down_window
    )
    recommendation = current
    recommendation = max(recommendation, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    # The longer window's records include the shorter one's; older ones can never count again.
    stored = down_records if down_window >= up_window else up_records
    if up_window > 0 or down_window > 0:  # a record made now can count at a later tick
        stored.append(Recommendation(now, desired))
    if recommendation == desired:
        reason = "ReadyForNewScale"
    elif desired >= current:
        reason = "ScaleUpStabilized"
    else:
        reason = "ScaleDownStabilized"
    return recommendation, tuple(stored), reason


# --------------------------------------------------------------------------------------------
# Rate limits
# --------------------------------------------------------------------------------------------


def replicas_change_per_period(period: float, events: tuple[ScaleEvent, ...], now: float) -> int:
    """HPA ``getReplicasChangePerPeriod``: sum of changes of events inside the period (any flag)."""
    total = 0
    for event in events:
        if inside(now, event.timestamp, period):
            total += event.change
    return total


def period_start(
    policy: RatePolicy,
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    now: float,
) -> int:
    """Replicas at the start of the policy's period: current - added + removed in the period."""
    added = replicas_change_per_period(policy.period, up_events, now)
    removed = replicas_change_per_period(policy.period, down_events, now)
    return current - added + removed


def policy_limit(policy: RatePolicy, start: int, *, scale_up: bool) -> int:
    """One rate policy's limit from the period start.

    Up: ``Pods -> start + value``, ``Percent -> ceil(start x (1 + value/100))``; down:
    ``Pods -> start - value``, ``Percent -> int(start x (1 - value/100))`` (truncated, as
    ``int32(float)``).
    """
    if scale_up:
        if policy.type == PODS:
            return start + policy.value
        return math.ceil(start * (1 + policy.value / 100))
    if policy.type == PODS:
        return start - policy.value
    return int(start * (1 - policy.value / 100))


def scale_up_limit(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> int:
    """HPA ``calculateScaleUpLimitWithScalingRules``: ``Max`` or ``Min`` of the policies' limits.

    Returns:
        The limit; ``current`` when the direction is disabled.
    """
    if rules.select == SELECT_DISABLED:
        return current
    limits = [
        policy_limit(p, period_start(p, current, up_events, down_events, now), scale_up=True)
        for p in rules.policies
    ]
    if rules.select == SELECT_MIN:
        return min(limits, default=_MAX_INT32)
    return max(limits, default=_MIN_INT32)


def scale_down_limit(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now: float,
) -> int:
    """HPA ``calculateScaleDownLimitWithBehaviors``: ``Max`` takes the lowest, ``Min`` the highest.

    Returns:
        The limit; ``current`` when the direction is disabled.
    """
    if rules.select == SELECT_DISABLED:
        return current
    limits = [
        policy_limit(p, period_start(p, current, up_events, down_events, now), scale_up=False)
        for p in rules.policies
    ]
    if rules.select == SELECT_MIN:
        return max(limits, default=_MIN_INT32)
    return min(limits, default=_MAX_INT32)


def convert_with_behavior_rate(  # noqa: PLR0917 - the HPA's own arguments, in its order
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
        ``(limited replicas, ScalingLimited reason)``.
    """
    if desired > current:
        scale_up_limit_ = max(scale_up_limit(current, up_events, down_events, up, now), current)
        if max_replicas > scale_up_limit_:
            maximum_allowed, reason = scale_up_limit_, "ScaleUpLimit"
        else:
            maximum_allowed, reason = max_replicas, "TooManyReplicas"
        if desired > maximum_allowed:
            return maximum_allowed, reason
    elif desired < current:
        scale_down_limit_ = min(
            scale_down_limit(current, up_events, down_events, down, now), current
        )
        if min_replicas < scale_down_limit_:
            minimum_allowed, reason = scale_down_limit_, "ScaleDownLimit"
        else:
            minimum_allowed, reason = min_replicas, "TooFewReplicas"
        if desired < minimum_allowed:
            return minimum_allowed, reason
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
) -> tuple[int, str]:
    """HPA ``convertDesiredReplicasWithRules`` (legacy path, no ``behavior``).

    Args:
        current: Current replicas.
        desired: The stabilized recommendation.
        min_replicas: Policy minimum.
        max_replicas: Policy maximum.
        factor: Scale-up factor (2 in the product).

    Returns:
        ``(clamped replicas, ScalingLimited reason)``.
    """
    scale_up_limit_ = legacy_scale_up_limit(current, factor)
    if max_replicas > scale_up_limit_:
        maximum_allowed, reason = scale_up_limit_, "ScaleUpLimit"
    else:
        maximum_allowed, reason = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > maximum_allowed:
        return maximum_allowed, reason
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
