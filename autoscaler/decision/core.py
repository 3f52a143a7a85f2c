"""The decision core's entry points: :func:`decide` and :func:`record_rescale`.

:func:`decide` reads as the HPA's ``reconcileAutoscaler``, one named step per line:

0. scale to zero (``algorithm: llm``, ``minReplicas: 0``) with the target at 0: only the
   activation signals are read, to wake it or leave it at 0 (:mod:`~autoscaler.decision.zero`);
1. first sight: seed the recommendations with the current count;
2. ``algorithm: llm`` only: classify the pods, learn start-up times, read the queues and plan on
   the SLO (:mod:`~autoscaler.decision.pods`, :mod:`~autoscaler.decision.queue`,
   :mod:`~autoscaler.decision.slo`);
3. pre-checks: scaling disabled at 0 replicas, current count out of range;
4. per-metric proposals (``computeReplicasForMetrics``): :mod:`~autoscaler.decision.hpa` or
   :mod:`~autoscaler.decision.llm`, plus the SLO sizing's;
5. the max over metrics with the partial-metric rule (:mod:`~autoscaler.decision.combine`);
6. the capacity floor (``llm``: never below what carries the measured arrivals);
7. ``onMetricFailure``: count failed ticks, apply the fallback;
8. no valid metric: hold the count;
9. the rescale reason, from the recommendation before normalisation;
10. stabilization (the windows of ``normalizeDesiredReplicasWithBehaviors``);
11. rate limits and the min/max clamp (:mod:`~autoscaler.decision.normalize`);
12. conditions, the reason line and the next history;
13. scale to zero with replicas running (steps 1-12 clamped at 1 replica): the idle timer; after
    ``scaleToZero.idleFor`` without a request the target goes to 0
    (:mod:`~autoscaler.decision.zero`).

The hot path computes numbers only: the policy comes flattened (:mod:`autoscaler.decision.resolved`,
targets already in milli-units, conditions with fixed messages prebuilt), the common calculator
cases skip their detail dicts, stabilization and rate limits return plain values, and the
history is built once; ``algorithm: llm`` keeps its rule texts as ``(LAZY, template, *args)``
tuples (:data:`autoscaler.decision.explain.LAZY`), formatted only when the explanation is read.
What the tick saw is kept in a :class:`~autoscaler.decision.trace.Trace`; the decision's
explanation turns it into the JSON-ready record on first read. ``tests/decision/test_snapshot.py``
pins every decision, condition, explanation and history of seeded random scenarios.

Pure: the policy, observation, history and ``now`` come in; a decision and a new history go out.
Callers: the control loop (:mod:`autoscaler.controller`), the simulator and the replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.decision.calculator import Proposal
from autoscaler.decision.combine import combine, combine_rule
from autoscaler.decision.explain import Explanation
from autoscaler.decision.hpa import hpa_proposals
from autoscaler.decision.llm import (
    ADAPTIVE_WINDOW_MIN,
    LlmTick,
    adaptive_window,
    has_latency,
    llm_proposals,
    observe_fleet,
    slo_sizing_proposal,
)
from autoscaler.decision.normalize import (
    MESSAGES,
    convert_with_behavior_rate,
    convert_with_rules,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from autoscaler.decision.pods import PodView
from autoscaler.decision.queue import promote_queue_reference
from autoscaler.decision.resolved import ResolvedPolicy
from autoscaler.decision.trace import Trace, build_explanation
from autoscaler.decision.types import (
    Condition,
    ConditionType,
    Decision,
    DecisionResult,
    History,
    Observation,
    Recommendation,
)
from autoscaler.decision.zero import from_zero, to_zero

_SCALING_ACTIVE = ConditionType.SCALING_ACTIVE
_ABLE_TO_SCALE = ConditionType.ABLE_TO_SCALE
_SCALING_LIMITED = ConditionType.SCALING_LIMITED
_CAPACITY_PENDING = ConditionType.CAPACITY_PENDING
_FALLBACK = ConditionType.FALLBACK
MSG_DISABLED = "scaling is disabled since the replica count of the target is zero"
MSG_ABOVE_MAX = "Current number of replicas above Spec.MaxReplicas"
MSG_BELOW_MIN = "Current number of replicas below Spec.MinReplicas"
MSG_GOT_SCALE = "the HPA controller was able to get the target's current scale"
# Conditions whose text never changes are built once (Condition is frozen, so sharing is safe).
_COND_DISABLED = Condition(_SCALING_ACTIVE, False, "ScalingDisabled", MSG_DISABLED)  # noqa: FBT003 - Condition's own field order
_COND_GOT_SCALE = Condition(_ABLE_TO_SCALE, True, "SucceededGetScale", MSG_GOT_SCALE)  # noqa: FBT003 - Condition's own field order
_ABLE = {
    reason: Condition(_ABLE_TO_SCALE, True, reason, MESSAGES[reason])  # noqa: FBT003 - field order
    for reason in ("ReadyForNewScale", "ScaleUpStabilized", "ScaleDownStabilized")
}
"""AbleToScale conditions by reason (their messages are fixed)."""
_LIMITED = {
    (reason, status): Condition(_SCALING_LIMITED, status, reason, MESSAGES[reason])
    for reason in (
        "DesiredWithinRange",
        "ScaleUpLimit",
        "ScaleDownLimit",
        "TooManyReplicas",
        "TooFewReplicas",
    )
    for status in (False, True)
}
"""ScalingLimited conditions by (reason, status) (their messages are fixed)."""
_COND_NO_PODS_STARTING = Condition(_CAPACITY_PENDING, False, "NoPodsStarting", "no pod is starting")  # noqa: FBT003 - field order


def decide(
    rp: ResolvedPolicy, observation: Observation, history: History, now: float
) -> DecisionResult:
    """Decide the replica count for one policy at one tick.

    Args:
        rp: The scaling policy, resolved when it was loaded
            (:func:`autoscaler.decision.resolved.resolve`, which also applies the HPA flags).
        observation: What was observed this tick (scale, pods, metrics).
        history: State from the previous tick (``History()`` the first time).
        now: Current time, seconds.

    Returns:
        The decision (with conditions and explanation) and the history for the next tick.
    """
    current = observation.spec_replicas
    if rp.zero is not None and current == 0:
        return from_zero(rp, observation, history, now)
    recommendations = _seed_first_sight(history, current, now)
    fleet = observe_fleet(rp, observation, history, now) if rp.llm else None
    trace = Trace(rp, now, observation, history, recommendations, fleet)
    tail = [] if fleet is None else [_capacity_condition(fleet.view)]

    precheck = _precheck(rp, current)
    if precheck is not None:
        desired, reason, first = precheck
        trace.precheck = reason
        held = _next_history(history, recommendations, history.consecutive_failures, fleet)
        return _finish(trace, desired, reason, (first, *tail), {}, {}, held)

    proposals = _metric_proposals(rp, observation, current, fleet, now, trace)
    metric_values = {p.name: p.value for p in proposals}
    metric_proposals = {p.name: p.proposal for p in proposals}
    combined, best_metric, best, counted, invalid, first_invalid = combine(
        proposals, current, fleet is not None
    )
    combined, best_metric = _capacity_floor(rp, fleet, combined, best_metric, current, trace)
    trace.combine = (combined, best_metric, best, counted, invalid)
    failures, fallback = _metric_failures(rp, history, counted, invalid, tail)
    if fallback:
        combined, best_metric = rp.fallback_replicas, "fallback"
        trace.fallback = failures
    elif combined is None:
        line = f"No change: {combine_rule(best_metric, best, counted, invalid, current)}"
        conditions = (_COND_GOT_SCALE, _cannot_compute(first_invalid, fallback=False), *tail)
        held = _next_history(history, recommendations, failures, fleet)
        return _finish(trace, current, line, conditions, metric_values, metric_proposals, held)
    assert combined is not None
    active = (
        _cannot_compute(first_invalid, fallback=True)
        if fallback
        else _metric_found(rp, best_metric)
    )
    reason = _rescale_reason(combined, current, best_metric, failures if fallback else None)

    trace.normalized = combined
    stabilized, stored, ability = _stabilize(rp, recommendations, current, combined, now, fleet)
    desired, limit_reason = _limit(rp, history, current, stabilized, now)
    trace.steps = (stabilized, ability, limit_reason)
    trace.down_window = None if fleet is None else fleet.down_window
    conditions = (active, _ABLE[ability], _LIMITED[limit_reason, desired != stabilized], *tail)
    reason = _normalized_reason(
        reason, current, combined, stabilized, desired, ability, limit_reason
    )
    following = _next_history(history, stored, failures, fleet)
    return _finish(trace, desired, reason, conditions, metric_values, metric_proposals, following)


# --------------------------------------------------------------------------------------------
# The steps of decide, in order
# --------------------------------------------------------------------------------------------


def _seed_first_sight(history: History, current: int, now: float) -> tuple[Recommendation, ...]:
    """The recommendations going into stabilization: on the first tick, seeded with the current
    count (the HPA's first-sight rule)."""
    if history.initialized:
        return history.recommendations
    return (*history.recommendations, Recommendation(now, current))


def _precheck(rp: ResolvedPolicy, current: int) -> tuple[int, str, Condition] | None:
    """Scaling disabled (0 replicas) or the count out of range: ``(desired, reason, condition)``
    without reading a metric; None to go on."""
    if current == 0 and rp.min_replicas != 0:
        return current, MSG_DISABLED, _COND_DISABLED
    if current > rp.max_replicas:
        return rp.max_replicas, MSG_ABOVE_MAX, _COND_GOT_SCALE
    if current < rp.min_replicas:
        return rp.min_replicas, MSG_BELOW_MIN, _COND_GOT_SCALE
    return None


def _metric_proposals(  # noqa: PLR0917 - private; the tick's values
    rp: ResolvedPolicy,
    observation: Observation,
    current: int,
    fleet: LlmTick | None,
    now: float,
    trace: Trace,
) -> list[Proposal]:
    """Each metric's proposal, as ``computeReplicasForMetrics``; plus the SLO sizing's."""
    if fleet is None:
        proposals, trace.details = hpa_proposals(rp, observation, current)
        trace.proposals = proposals
        return proposals
    proposals = llm_proposals(
        rp,
        observation,
        fleet.view,
        queue=fleet.queue,
        queue_values=fleet.queue_values,
        now=now,
        current=current,
    )
    trace.proposals = proposals
    if rp.sizes_on_slo:
        sizing = slo_sizing_proposal(rp, fleet.sized, fleet.view, current, now)
        trace.slo_proposal = sizing
        proposals = [*proposals, sizing]
    return proposals


def _capacity_floor(  # noqa: PLR0917 - private; the tick's values
    rp: ResolvedPolicy,
    fleet: LlmTick | None,
    combined: int | None,
    best_metric: str,
    current: int,
    trace: Trace,
) -> tuple[int | None, str]:
    """``llm``: a scale-down never goes below the replicas that carry the measured arrivals."""
    if fleet is None or combined is None or combined >= current:
        return combined, best_metric
    sized = fleet.sized
    floor = sized.floor
    if (
        floor is not None
        and combined < floor
        and (sized.estimate.planned is not None or rp.sizes_on_slo or has_latency(sized))
    ):
        floored = min(current, floor)
        trace.floor = (combined, floored)
        return floored, "capacityFloor"
    return combined, best_metric


def _metric_failures(
    rp: ResolvedPolicy, history: History, counted: int, invalid: int, tail: list[Condition]
) -> tuple[int, bool]:
    """``onMetricFailure``: consecutive ticks without a valid metric, and whether the fallback
    is in force (its ``Fallback`` condition goes to ``tail``)."""
    all_failed = not counted or invalid == counted
    failures = history.consecutive_failures + 1 if all_failed and invalid else 0
    replicas = rp.fallback_replicas
    if replicas is None:
        return failures, False
    active = all_failed and failures >= rp.fallback_after
    message = (
        f"no valid metric for {failures} consecutive ticks; using fallback replicas {replicas}"
        if active
        else f"{failures} consecutive ticks without a valid metric, fallback after "
        f"{rp.fallback_after}"
    )
    reason = "MetricsUnavailable" if active else "MetricsAvailable"
    tail.append(_cond(_FALLBACK, reason, message, status=active))
    return failures, active


def _cannot_compute(first_invalid: Proposal | None, *, fallback: bool) -> Condition:
    """``ScalingActive=False``: no replica count could be computed from the metrics."""
    reason = first_invalid.failure_reason if first_invalid else "NoValidMetric"
    if first_invalid:
        message = (
            f"the HPA was unable to compute the replica count: {first_invalid.failure_message}"
        )
    elif fallback:
        message = "the HPA was unable to compute the replica count: no metric"
    else:
        message = "no metric gave a signal (latency guards without traffic)"
    return _cond(_SCALING_ACTIVE, reason, message, status=False)


def _metric_found(rp: ResolvedPolicy, best_metric: str) -> Condition:
    """``ScalingActive=True ValidMetricFound`` for the winning metric."""
    return rp.valid_conditions.get(best_metric) or _cond(
        _SCALING_ACTIVE,
        "ValidMetricFound",
        f"the replica count was calculated from {best_metric}",
        status=True,
    )


def _rescale_reason(combined: int, current: int, best_metric: str, failures: int | None) -> str:
    """The HPA's rescale reason, from the recommendation before normalisation (``failures``:
    the fallback is in force)."""
    if failures is not None:
        return f"Fallback to {combined} replicas: no valid metric for {failures} ticks"
    if combined > current:
        return f"{best_metric} above target"
    if combined < current:
        return "All metrics below target"
    return "All metrics within tolerance"


def _stabilize(  # noqa: PLR0917 - private; the tick's values
    rp: ResolvedPolicy,
    recommendations: tuple[Recommendation, ...],
    current: int,
    combined: int,
    now: float,
    fleet: LlmTick | None,
) -> tuple[int, tuple[Recommendation, ...], str]:
    """The stabilization windows: ``(stabilized, recommendations to store, AbleToScale reason)``.

    A policy sized on its SLO without an explicit scale-down window holds a pod about one start-up
    time (shorter while pods are late to arrive).
    """
    if not rp.has_behavior:
        return stabilize_legacy(recommendations, combined, now, rp.down.window)
    down_window: float = rp.down.window
    if rp.adaptive_down_window and fleet is not None:
        late = fleet.sized.late_pods
        down_window = ADAPTIVE_WINDOW_MIN if late else adaptive_window(fleet.view.startup_estimate)
        fleet.down_window = down_window
    return stabilize_with_behavior(
        recommendations, current, combined, now, rp.up.window, down_window
    )


def _limit(
    rp: ResolvedPolicy, history: History, current: int, stabilized: int, now: float
) -> tuple[int, str]:
    """Rate limits and the min/max clamp: ``(desired, ScalingLimited reason)``."""
    if not rp.has_behavior:
        return convert_with_rules(current, stabilized, rp.min_replicas, rp.max_replicas)
    return convert_with_behavior_rate(
        current,
        stabilized,
        rp.min_replicas,
        rp.max_replicas,
        history.scale_up_events,
        history.scale_down_events,
        rp.up,
        rp.down,
        now,
    )


def _normalized_reason(  # noqa: PLR0917 - private; the tick's values
    reason: str,
    current: int,
    combined: int,
    stabilized: int,
    desired: int,
    ability: str,
    limit_reason: str,
) -> str:
    """The reason line, saying what held the recommendation back or changed it."""
    if desired == current and combined != current:
        held_by = ability if stabilized == current else limit_reason
        return f"{reason}; held by {held_by}"
    if desired != combined:
        return f"{reason}; {combined} -> {desired} ({ability}, {limit_reason})"
    return reason


def _next_history(
    history: History,
    recommendations: tuple[Recommendation, ...],
    failures: int,
    fleet: LlmTick | None,
) -> History:
    """The history for the next tick (scale events are stored by :func:`record_rescale`)."""
    if fleet is None:
        return History(
            True,  # noqa: FBT003 - positional, in field order
            recommendations,
            history.scale_up_events,
            history.scale_down_events,
            failures,
            history.startup_samples,
            history.known_pods,
            history.queue,
            history.capacity,
        )
    return History(
        True,  # noqa: FBT003 - positional, in field order
        recommendations,
        history.scale_up_events,
        history.scale_down_events,
        failures,
        fleet.samples,
        fleet.known_pods,
        fleet.queue,
        fleet.sized.state,
    )


def record_rescale(
    rp: ResolvedPolicy, history: History, now: float, current: int, desired: int
) -> History:
    """Store a performed rescale, as the HPA does after a successful ``Scales().Update``.

    Without ``behavior`` no event is stored (the legacy path does not use them). Events are kept
    exactly as the HPA's ``storeScaleEvent`` keeps them (outdated slots overwritten, nothing
    dropped), so later period sums match the HPA's. For
    ``algorithm: llm`` a scale-up also makes the tick's queue reading the in-flight reference.

    Args:
        rp: The resolved scaling policy.
        history: The history returned by :func:`decide` for this tick.
        now: Time of the rescale, seconds (the tick's ``now``).
        current: Replicas before.
        desired: Replicas after.

    Returns:
        The history with the event stored.
    """
    if desired == current:
        return history
    queue = history.queue
    if rp.llm and desired > current:
        queue = promote_queue_reference(queue)
    up = history.scale_up_events
    down = history.scale_down_events
    if rp.has_behavior:
        if desired > current:
            up = store_scale_event(up, desired - current, rp.up.longest_period, now)
        else:
            down = store_scale_event(down, current - desired, rp.down.longest_period, now)
    return History(
        history.initialized,
        history.recommendations,
        up,
        down,
        history.consecutive_failures,
        history.startup_samples,
        history.known_pods,
        queue,
        history.capacity,
        history.zero,
    )


def _capacity_condition(view: PodView) -> Condition:
    if view.unschedulable:
        name, message = view.unschedulable[0]
        count = len(view.unschedulable)
        return _cond(
            _CAPACITY_PENDING,
            "Unschedulable",
            f"{count} pod(s) cannot be scheduled ({name}: {message})",
            status=False,
        )
    if view.credited:
        return _cond(
            _CAPACITY_PENDING,
            "PodsStarting",
            f"{len(view.credited)} pod(s) starting, credited as capacity "
            f"(start-up estimate {view.startup_estimate:.0f}s)",
            status=True,
        )
    return _COND_NO_PODS_STARTING


def _cond(kind: ConditionType, reason: str, message: str, *, status: bool) -> Condition:
    return Condition(kind, status, reason, message)


def _finish(  # noqa: PLR0917 - private; every call passes the same seven values in order
    trace: Trace,
    desired: int,
    reason: str,
    conditions: tuple[Condition, ...],
    metric_values: Mapping[str, float | None],
    metric_proposals: Mapping[str, int | None],
    history: History,
) -> DecisionResult:
    trace.desired = desired
    trace.reason = reason
    decision = Decision(
        trace.rp.key,
        trace.now,
        trace.observation.spec_replicas,
        desired,
        reason,
        conditions,
        metric_values,
        metric_proposals,
        Explanation(build_explanation, trace),
        trace.sized,
    )
    if trace.rp.zero is not None:
        # The last step of a policy that scales to zero: the idle timer (every path ends here).
        return to_zero(
            trace.rp, trace.observation, trace.history, trace.now, DecisionResult(decision, history)
        )
    return DecisionResult(decision, history)
