"""The decision core's entry points: :func:`decide` and :func:`record_rescale`.

One tick for one policy, as the HPA's ``reconcileAutoscaler``: first-sight seeding, pre-checks
(scaling disabled, out of range), per-metric proposals (:mod:`autoscaler.decision.calculator` for
``algorithm: hpa``, :mod:`autoscaler.decision.llm` for ``algorithm: llm``), the max over metrics
with the partial-metric rule, ``onMetricFailure``, then normalisation
(:mod:`autoscaler.decision.normalize`: stabilization, rate limits, min/max) and conditions.

The hot path computes numbers only: the policy comes flattened (:mod:`autoscaler.decision.resolved`,
targets already in milli-units, conditions with fixed messages prebuilt), the common calculator
cases skip their detail dicts, stabilization and rate limits return plain values, and the
history is built once; ``algorithm: llm`` keeps its rule texts as ``(LAZY, template, *args)``
tuples (:data:`autoscaler.decision.explain.LAZY`), formatted only when the explanation is read.
What the tick saw is kept in a :class:`_Trace`; the decision's explanation
(:class:`autoscaler.decision.explain.Explanation`) turns it into the JSON-ready record on first
read, with the same :mod:`~autoscaler.decision.normalize` helpers the tick used (window records,
period starts, each rate policy's limit). ``tests/decision/test_snapshot.py`` pins every
decision, condition, explanation and history of seeded random scenarios to what the core decided
before this split.

Pure: the policy, observation, history and ``now`` come in; a decision and a new history go out.
Callers: the control loop (:mod:`autoscaler.controller`), the simulator and the replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.decision import slo
from autoscaler.decision.combine import combine, combine_rule
from autoscaler.decision.explain import Explanation
from autoscaler.decision.hpa import hpa_proposals
from autoscaler.decision.llm import (
    ADAPTIVE_WINDOW_MIN,
    adaptive_window,
    has_latency,
    llm_proposals,
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
from autoscaler.decision.pods import PodView, classify_pods, learn_startup
from autoscaler.decision.queue import promote_queue_reference, queue_state
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
    first_sight = not history.initialized
    recommendations = history.recommendations
    if first_sight:
        recommendations = (*recommendations, Recommendation(now, current))
    queue = history.queue
    known_pods: Mapping[str, float] = history.known_pods
    samples = history.startup_samples
    view: PodView | None = None
    queue_values: Mapping[str, list[float]] = {}
    tail: list[Condition] = []
    if rp.llm:
        learned = samples if rp.startup_learning else ()
        view = classify_pods(observation.pods, now, learned, rp.startup_seconds)
        if rp.startup_learning:
            known_pods, samples = learn_startup(
                observation.pods,
                known_pods,
                samples,
                first_sight=first_sight,
                all_ready=len(view.ready) == len(observation.pods),
            )
        queue, queue_values = queue_state(rp, observation.metrics, view, queue, now)
        tail.append(_capacity_condition(view))
        sized = slo.plan(
            history.capacity,
            observation.metrics,
            slo.Fleet(view.ready, len(view.credited) + len(view.stuck), view.startup_estimate),
            rp.objectives,
            rp.capacity_seed,
            rp.capacity_seed_source,
            now,
        )
    else:
        sized = None
    trace = Trace(rp, now, observation, history, recommendations, view)
    trace.sized = sized

    # Pre-checks (no metrics are read).
    if (current == 0 and rp.min_replicas != 0) or not (
        rp.min_replicas <= current <= rp.max_replicas
    ):
        if current == 0 and rp.min_replicas != 0:
            desired, reason, first = current, MSG_DISABLED, _COND_DISABLED
        elif current > rp.max_replicas:
            desired, reason, first = rp.max_replicas, MSG_ABOVE_MAX, _COND_GOT_SCALE
        else:
            desired, reason, first = rp.min_replicas, MSG_BELOW_MIN, _COND_GOT_SCALE
        trace.precheck = reason
        next_history = History(
            True,  # noqa: FBT003 - positional, in field order
            recommendations,
            history.scale_up_events,
            history.scale_down_events,
            history.consecutive_failures,
            samples,
            known_pods,
            queue,
            history.capacity if sized is None else sized.state,
        )
        return _finish(trace, desired, reason, (first, *tail), {}, {}, next_history)

    # Per-metric proposals.
    if view is None:
        proposals = hpa_proposals(rp, observation, current, trace)
    else:
        proposals = llm_proposals(
            rp, observation, view, queue=queue, queue_values=queue_values, now=now, current=current
        )
    trace.proposals = proposals
    if sized is not None and rp.sizes_on_slo:
        assert view is not None
        slo_proposal = slo_sizing_proposal(rp, sized, view, current, now)
        trace.slo_proposal = slo_proposal
        proposals = [*proposals, slo_proposal]
    metric_values = {p.name: p.value for p in proposals}
    metric_proposals = {p.name: p.proposal for p in proposals}

    # Max over metrics, partial-metric rule.
    combined, best_metric, best, counted, invalid, first_invalid = combine(
        proposals, current, view is not None
    )
    if (
        sized is not None
        and combined is not None
        and sized.floor is not None
        and combined < current
        and combined < sized.floor
        and (sized.estimate.planned is not None or rp.sizes_on_slo or has_latency(sized))
    ):
        # The capacity floor: never below what carries the measured arrivals.
        floored = min(current, sized.floor)
        trace.floor = (combined, floored)
        combined, best_metric = floored, "capacityFloor"
    trace.combine = (combined, best_metric, best, counted, invalid)
    all_failed = not counted or invalid == counted
    failures = history.consecutive_failures + 1 if all_failed and invalid else 0
    fallback_replicas = rp.fallback_replicas
    fallback_active = fallback_replicas is not None and all_failed and failures >= rp.fallback_after
    if fallback_replicas is not None:
        fallback_message = (
            f"no valid metric for {failures} consecutive ticks; using fallback replicas "
            f"{fallback_replicas}"
            if fallback_active
            else f"{failures} consecutive ticks without a valid metric, fallback after "
            f"{rp.fallback_after}"
        )
        tail.append(
            _cond(
                _FALLBACK,
                "MetricsUnavailable" if fallback_active else "MetricsAvailable",
                fallback_message,
                status=fallback_active,
            )
        )
    if fallback_active:
        assert fallback_replicas is not None
        combined = fallback_replicas
        best_metric = "fallback"
        trace.fallback = failures
        active = _cond(
            _SCALING_ACTIVE,
            first_invalid.failure_reason if first_invalid else "NoValidMetric",
            "the HPA was unable to compute the replica count: "
            + (first_invalid.failure_message if first_invalid else "no metric"),
            status=False,
        )
    elif combined is None:
        reason = first_invalid.failure_reason if first_invalid else "NoValidMetric"
        message = (
            f"the HPA was unable to compute the replica count: {first_invalid.failure_message}"
            if first_invalid
            else "no metric gave a signal (latency guards without traffic)"
        )
        conditions = (
            _COND_GOT_SCALE,
            _cond(_SCALING_ACTIVE, reason, message, status=False),
            *tail,
        )
        line = f"No change: {combine_rule(best_metric, best, counted, invalid, current)}"
        next_history = History(
            True,  # noqa: FBT003 - positional, in field order
            recommendations,
            history.scale_up_events,
            history.scale_down_events,
            failures,
            samples,
            known_pods,
            queue,
            history.capacity if sized is None else sized.state,
        )
        return _finish(
            trace, current, line, conditions, metric_values, metric_proposals, next_history
        )
    else:
        active = rp.valid_conditions.get(best_metric) or _cond(
            _SCALING_ACTIVE,
            "ValidMetricFound",
            f"the replica count was calculated from {best_metric}",
            status=True,
        )

    # HPA rescale reason, from the prenormalized recommendation.
    if fallback_active:
        reason = f"Fallback to {combined} replicas: no valid metric for {failures} ticks"
    elif combined > current:
        reason = f"{best_metric} above target"
    elif combined < current:
        reason = "All metrics below target"
    else:
        reason = "All metrics within tolerance"

    # Normalisation.
    trace.normalized = combined
    if rp.has_behavior:
        down_window: float = rp.down.window
        if rp.adaptive_down_window and view is not None:
            late = sized is not None and sized.late_pods
            down_window = ADAPTIVE_WINDOW_MIN if late else adaptive_window(view.startup_estimate)
            trace.down_window = down_window
        stabilized, stored, ability = stabilize_with_behavior(
            recommendations, current, combined, now, rp.up.window, down_window
        )
        desired, limit_reason = convert_with_behavior_rate(
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
    else:
        stabilized, stored, ability = stabilize_legacy(
            recommendations, combined, now, rp.down.window
        )
        desired, limit_reason = convert_with_rules(
            current, stabilized, rp.min_replicas, rp.max_replicas
        )
    trace.steps = (stabilized, ability, limit_reason)
    conditions = (
        active,
        _ABLE[ability],
        _LIMITED[limit_reason, desired != stabilized],
        *tail,
    )
    if desired == current and combined != current:
        held_by = ability if stabilized == current else limit_reason
        reason = f"{reason}; held by {held_by}"
    elif desired != combined:
        reason = f"{reason}; {combined} -> {desired} ({ability}, {limit_reason})"
    next_history = History(
        True,  # noqa: FBT003 - positional, in field order
        stored,
        history.scale_up_events,
        history.scale_down_events,
        failures,
        samples,
        known_pods,
        queue,
        history.capacity if sized is None else sized.state,
    )
    return _finish(
        trace, desired, reason, conditions, metric_values, metric_proposals, next_history
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
    )
    return DecisionResult(decision, history)
