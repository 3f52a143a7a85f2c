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

import math
from collections.abc import Mapping
from typing import Any

from autoscaler.decision import llm, slo, zero
from autoscaler.decision.calculator import (
    PodGroups,
    Proposal,
    aggregate,
    external_average_proposal,
    group_pods,
    pods_fast,
    pods_fast_detail,
    pods_proposal,
    to_milli,
    value_proposal,
)
from autoscaler.decision.explain import Explanation, resolve_text
from autoscaler.decision.normalize import (
    MESSAGES,
    convert_with_behavior_rate,
    convert_with_rules,
    legacy_scale_up_limit,
    legacy_window,
    period_start,
    policy_limit,
    scale_down_limit,
    scale_up_limit,
    stabilization_windows,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from autoscaler.decision.resolved import (
    DEFAULT_FLAGS,
    HpaFlags,
    ResolvedMetric,
    ResolvedPolicy,
    resolve,
)
from autoscaler.decision.types import (
    Condition,
    ConditionType,
    Decision,
    DecisionResult,
    History,
    MetricObservation,
    NoSignal,
    NoSignalReason,
    Observation,
    PodSamples,
    Recommendation,
    TargetSample,
)
from autoscaler.policy.models import ScalingPolicy

_NOT_COLLECTED = NoSignal(NoSignalReason.NOT_COLLECTED, "metric not collected this tick")
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
    policy: ScalingPolicy,
    observation: Observation,
    history: History,
    now: float,
    *,
    flags: HpaFlags = DEFAULT_FLAGS,
) -> DecisionResult:
    """Decide the replica count for one policy at one tick.

    Args:
        policy: The scaling policy.
        observation: What was observed this tick (scale, pods, metrics).
        history: State from the previous tick (``History()`` the first time).
        now: Current time, seconds.
        flags: The controller-wide HPA flags (tolerance, downscale stabilization).

    Returns:
        The decision (with conditions and explanation) and the history for the next tick.
    """
    if policy.spec.idle_for is not None:
        # minReplicas 0 with algorithm llm: scale to zero and back (autoscaler.decision.zero).
        return zero.decide(
            policy,
            resolve(policy, flags),
            observation,
            history,
            now,
            usual=lambda floored, past: _decide(floored, observation, past, now, flags),
        )
    return _decide(policy, observation, history, now, flags)


def _decide(
    policy: ScalingPolicy,
    observation: Observation,
    history: History,
    now: float,
    flags: HpaFlags,
) -> DecisionResult:
    """:func:`decide`'s usual rules (every policy, and scale-to-zero ones while replicas run)."""
    rp = resolve(policy, flags)
    current = observation.spec_replicas
    first_sight = not history.initialized
    recommendations = history.recommendations
    if first_sight:
        recommendations = (*recommendations, Recommendation(now, current))
    extra: Mapping[str, Any] = history.extra
    known_pods: Mapping[str, float] = history.known_pods
    samples = history.startup_samples
    view: llm.PodView | None = None
    queue_values: Mapping[str, list[float]] = {}
    tail: list[Condition] = []
    if rp.llm:
        learned = samples if rp.startup_learning else ()
        view = llm.classify_pods(observation.pods, now, learned, rp.startup_seconds)
        if rp.startup_learning:
            known_pods, samples = llm.learn_startup(
                observation.pods,
                known_pods,
                samples,
                first_sight=first_sight,
                all_ready=len(view.ready) == len(observation.pods),
            )
        extra, queue_values = llm.queue_state(rp, observation.metrics, view, extra, now)
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
    trace = _Trace(rp, now, observation, history, recommendations, view)
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
            extra,
            history.capacity if sized is None else sized.state,
        )
        return _finish(trace, desired, reason, (first, *tail), {}, {}, next_history)

    # Per-metric proposals.
    if view is None:
        proposals = _hpa_proposals(rp, observation, current, trace)
    else:
        proposals = _llm_proposals(
            rp, observation, view, extra=extra, queue_values=queue_values, now=now, current=current
        )
    trace.proposals = proposals
    if sized is not None and rp.sizes_on_slo:
        assert view is not None
        slo_proposal = _slo_proposal(rp, sized, view, current, now)
        trace.slo_proposal = slo_proposal
        proposals = [*proposals, slo_proposal]
    metric_values = {p.name: p.value for p in proposals}
    metric_proposals = {p.name: p.proposal for p in proposals}

    # Max over metrics, partial-metric rule.
    combined, best_metric, best, counted, invalid, first_invalid = _combine(
        proposals, current, view is not None
    )
    if (
        sized is not None
        and combined is not None
        and sized.floor is not None
        and combined < current
        and combined < sized.floor
        and (sized.estimate.planned is not None or rp.sizes_on_slo or _has_latency(sized))
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
        line = f"No change: {_combine_rule(best_metric, best, counted, invalid, current)}"
        next_history = History(
            True,  # noqa: FBT003 - positional, in field order
            recommendations,
            history.scale_up_events,
            history.scale_down_events,
            failures,
            samples,
            known_pods,
            extra,
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
            down_window = ADAPTIVE_WINDOW_MIN if late else _adaptive_window(view.startup_estimate)
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
        extra,
        history.capacity if sized is None else sized.state,
    )
    return _finish(
        trace, desired, reason, conditions, metric_values, metric_proposals, next_history
    )


def record_rescale(
    policy: ScalingPolicy, history: History, now: float, current: int, desired: int
) -> History:
    """Store a performed rescale, as the HPA does after a successful ``Scales().Update``.

    Without ``behavior`` no event is stored (the legacy path does not use them). Events are kept
    exactly as the HPA's ``storeScaleEvent`` keeps them (outdated slots overwritten, nothing
    dropped), so later period sums match the HPA's. For
    ``algorithm: llm`` a scale-up also makes the tick's queue reading the in-flight reference.

    Args:
        policy: The scaling policy.
        history: The history returned by :func:`decide` for this tick.
        now: Time of the rescale, seconds (the tick's ``now``).
        current: Replicas before.
        desired: Replicas after.

    Returns:
        The history with the event stored.
    """
    if desired == current:
        return history
    rp = resolve(policy)
    extra = history.extra
    if rp.llm and desired > current:
        extra = llm.promote_queue_reference(extra)
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
        extra,
        history.capacity,
        history.zero,
    )


# --------------------------------------------------------------------------------------------
# Per-metric proposals
# --------------------------------------------------------------------------------------------


def _failure_reason(metric: ResolvedMetric, observation: MetricObservation) -> str:
    """HPA condition reason for a metric that failed, by the source type it maps to."""
    if isinstance(observation, PodSamples):
        label = "Object" if metric.target_type == "Value" else "Pods"
    elif isinstance(observation, TargetSample):
        label = "External"
    else:
        label = metric.source_label
    return f"FailedGet{label}Metric"


def hpa_metric_proposal(
    metric: ResolvedMetric,
    observation: MetricObservation,
    obs: Observation,
    *,
    current: int,
    tol_down: float,
    tol_up: float,
    groups: PodGroups | None = None,
) -> Proposal:
    """One metric's proposal with the HPA replica calculator's semantics.

    Args:
        metric: The metric.
        observation: Its observation this tick.
        obs: The whole observation (pods, status replicas).
        current: Current replicas.
        tol_down: Scale-down tolerance.
        tol_up: Scale-up tolerance.
        groups: The pods grouped once for the tick (computed when None).

    Returns:
        The proposal.
    """
    if isinstance(observation, NoSignal):
        message = f"unable to get metric {metric.name}: no signal ({observation.reason.value})"
        if observation.detail:
            message += f": {observation.detail}"
        return Proposal(
            metric.name,
            None,
            failure_reason=_failure_reason(metric, observation),
            failure_message=message,
        )
    if isinstance(observation, PodSamples):
        values = observation.values
        if metric.target_type == "AverageValue":
            proposal, error, detail = pods_proposal(
                values,
                obs.pods,
                metric.target,
                current=current,
                tol_down=tol_down,
                tol_up=tol_up,
                groups=groups,
            )
            detail["semantics"] = "Pods AverageValue"
            value = detail.get("averageMilli")
            return Proposal(
                metric.name,
                proposal,
                value=value / 1000 if value is not None else None,
                ratio=detail.get("ratio"),
                failure_reason=_failure_reason(metric, observation) if proposal is None else "",
                failure_message=f"unable to get metric {metric.name}: {error}" if error else "",
                detail=detail,
            )
        if not values:
            return Proposal(
                metric.name,
                None,
                failure_reason=_failure_reason(metric, observation),
                failure_message=f"unable to get metric {metric.name}: no pod samples",
            )
        total = aggregate(list(values.values()), metric.aggregation)
        semantics = f"Object Value ({metric.aggregation} of {len(values)} pods)"
    else:
        total = observation.value
        if metric.target_type == "AverageValue":
            proposal_ext, detail = external_average_proposal(
                total, obs.status_replicas, metric.target, tol_down, tol_up
            )
            detail["semantics"] = "External AverageValue"
            per_pod = (
                math.ceil(detail["totalMilli"] / obs.status_replicas) / 1000
                if obs.status_replicas
                else None
            )
            return Proposal(
                metric.name, proposal_ext, value=per_pod, ratio=detail["ratio"], detail=detail
            )
        semantics = "Object/External Value"
    proposal, error, detail = value_proposal(
        total,
        obs.pods,
        metric.target,
        current=current,
        tol_down=tol_down,
        tol_up=tol_up,
        groups=groups,
    )
    detail["semantics"] = semantics
    return Proposal(
        metric.name,
        proposal,
        value=total,
        ratio=detail.get("ratio"),
        failure_reason=_failure_reason(metric, observation) if proposal is None else "",
        failure_message=f"unable to get metric {metric.name}: {error}" if error else "",
        detail=detail,
    )


def _hpa_proposals(
    rp: ResolvedPolicy, obs: Observation, current: int, trace: _Trace
) -> list[Proposal]:
    """:func:`hpa_metric_proposal` for every metric, with the explanation detail deferred.

    The common cases (Pods ``AverageValue`` with every countable pod sampled, Object/External
    ``Value``) compute only the numbers and leave a recipe in ``trace.details``; the explanation
    turns it into the same detail dict :func:`hpa_metric_proposal` builds. Every other case goes
    through :func:`hpa_metric_proposal` itself.
    """
    groups = group_pods(obs.pods)
    tol_down, tol_up = rp.tolerance_down, rp.tolerance_up
    observed = obs.metrics
    proposals: list[Proposal] = []
    details: list[_Recipe | None] = []
    for metric in rp.metrics:
        observation = observed.get(metric.name, _NOT_COLLECTED)
        if isinstance(observation, PodSamples):
            values = observation.values
            if metric.is_average:
                fast = (
                    pods_fast(values, metric.target_milli, current, tol_down, tol_up, groups)
                    if obs.pods
                    else None
                )
                if fast is not None:
                    proposals.append(Proposal(metric.name, fast[0], fast[3] / 1000, fast[4]))
                    details.append((_PODS_RECIPE, fast, metric.target_milli, groups, ""))
                    continue
            elif current and values:
                total = aggregate(list(values.values()), metric.aggregation)
                value = _value_fast(
                    total, metric.target_milli, current, tol_down, tol_up, groups, obs
                )
                if value is not None:
                    proposals.append(Proposal(metric.name, value[0], total, value[3]))
                    semantics = f"Object Value ({metric.aggregation} of {len(values)} pods)"
                    details.append((_VALUE_RECIPE, value, 0, groups, semantics))
                    continue
        elif isinstance(observation, TargetSample) and not metric.is_average and current:
            total = observation.value
            value = _value_fast(total, metric.target_milli, current, tol_down, tol_up, groups, obs)
            if value is not None:
                proposals.append(Proposal(metric.name, value[0], total, value[3]))
                details.append((_VALUE_RECIPE, value, 0, groups, "Object/External Value"))
                continue
        proposals.append(
            hpa_metric_proposal(
                metric,
                observation,
                obs,
                current=current,
                tol_down=tol_down,
                tol_up=tol_up,
                groups=groups,
            )
        )
        details.append(None)
    trace.details = details
    return proposals


def _value_fast(  # noqa: PLR0917 - private hot path
    total: float,
    target_m: int,
    current: int,
    tol_down: float,
    tol_up: float,
    groups: PodGroups,
    obs: Observation,
) -> tuple[int, int, int, float, int, bool] | None:
    """:func:`value_proposal`'s common cases (current > 0, within tolerance or pods present).

    Returns:
        ``(proposal, valueMilli, targetMilli, ratio, ready pods, within tolerance)`` or None
        for the other cases.
    """
    usage = to_milli(total)
    ratio = usage / target_m
    if (1.0 - tol_down) <= ratio <= (1.0 + tol_up):
        return current, usage, target_m, ratio, 0, True
    if not obs.pods:
        return None
    ready = groups.running_ready
    return math.ceil(ratio * ready), usage, target_m, ratio, ready, False


_PODS_RECIPE = 0
_VALUE_RECIPE = 1
_Recipe = tuple[int, tuple[Any, ...], int, PodGroups, str]
"""How to rebuild a fast-path detail: (kind, numbers, targetMilli, pod groups, semantics)."""


def _recipe_detail(recipe: _Recipe) -> dict[str, Any]:
    """The detail dict :func:`hpa_metric_proposal` records, from a fast-path recipe."""
    kind, numbers, target_m, groups, semantics = recipe
    if kind == _PODS_RECIPE:
        detail = pods_fast_detail(numbers, target_m, groups)
        detail["semantics"] = "Pods AverageValue"
        return detail
    proposal, usage, target_milli, ratio, ready, in_band = numbers
    detail = {"valueMilli": usage, "targetMilli": target_milli, "ratio": ratio}
    if in_band:
        detail["rule"] = "within tolerance: keep current"
    else:
        detail["pods"] = {"ready": ready}
        detail["rule"] = f"ceil({ratio:.6g} x {ready} ready pods) = {proposal}"
    detail["semantics"] = semantics
    return detail


def _llm_proposals(
    rp: ResolvedPolicy,
    obs: Observation,
    view: llm.PodView | None,
    *,
    extra: Mapping[str, Any],
    queue_values: Mapping[str, list[float]],
    now: float,
    current: int,
) -> list[Proposal]:
    assert view is not None
    ctx = llm.context(rp, current, view, now, extra, queue_values)
    metrics = rp.metrics
    observed = obs.metrics
    results: list[Proposal | None] = [None] * len(metrics)
    queue_valid = False
    # Queue metrics first: a saturated KV cache leaves the step to a valid queue metric.
    for index in rp.llm_order:
        metric = metrics[index]
        observation = observed.get(metric.name, _NOT_COLLECTED)
        if metric.is_latency:
            results[index] = llm.latency_proposal(metric, observation, ctx)
            continue
        if isinstance(observation, NoSignal):
            message = f"unable to get metric {metric.name}: no signal ({observation.reason.value})"
            if observation.detail:
                message += f": {observation.detail}"
            results[index] = Proposal(
                metric.name,
                None,
                failure_reason=metric.failure_no_signal,
                failure_message=message,
            )
            continue
        if metric.is_queue and metric.is_average:
            proposal = llm.queue_proposal(metric, observation, ctx)
            queue_valid = queue_valid or proposal.proposal is not None  # .valid, inlined
        else:
            proposal = llm.proportional_proposal(metric, observation, ctx, queue_valid=queue_valid)
        results[index] = proposal
    return results  # type: ignore[return-value] # every index was filled


ADAPTIVE_WINDOW_MIN = 60.0
ADAPTIVE_WINDOW_MAX = 600.0


def _adaptive_window(startup: float) -> float:
    """Scale-down window of a policy sized on its SLO: one start-up time (bounded).

    Holding an idle pod longer than a cold start costs more GPU time than starting it again.
    """
    return min(ADAPTIVE_WINDOW_MAX, max(ADAPTIVE_WINDOW_MIN, startup))


def _has_latency(sized: slo.SloPlan) -> bool:
    """Every objective has a latency signal this tick (the capacity model can learn)."""
    return bool(sized.latencies) and all(v is not None for _, _, _, v in sized.latencies)


def _slo_proposal(
    rp: ResolvedPolicy, sized: slo.SloPlan, view: llm.PodView, current: int, now: float
) -> Proposal:
    """The SLO sizing's proposal: the replicas the forecast needs, starting pods credited."""
    detail: dict[str, Any] = {}
    if sized.arrivals is None:
        return Proposal(
            "slo",
            None,
            failure_reason="FailedGetPodsMetric",
            failure_message="unable to size on the SLO: no request-rate signal",
            detail=detail,
        )
    if sized.need is None:
        if sized.arrivals <= 0:
            need_exact = 0.0
        else:
            detail["rule"] = "capacity not known yet (prior): keep current"
            return Proposal("slo", current, sized.arrivals, 1.0, "", "", detail, False, "")  # noqa: FBT003
    else:
        need_exact = sized.need
    need = max(0, math.ceil(need_exact - 1e-9))
    ctx = llm.context(rp, current, view, now, {}, {})
    ratio = need_exact / view.capacity if view.capacity else math.inf
    if need_exact == 0 and view.capacity == 0:
        ratio = 1.0
    proposal = llm.apply_credit(ctx, need, ratio, detail)
    return Proposal("slo", proposal, sized.arrivals, ratio, "", "", detail, False, "")  # noqa: FBT003


# --------------------------------------------------------------------------------------------
# Combination
# --------------------------------------------------------------------------------------------


def _combine(
    proposals: list[Proposal], current: int, llm_mode: bool
) -> tuple[int | None, str, int | None, int, int, Proposal | None]:
    """Max over valid proposals with the HPA partial-metric rule.

    Returns:
        ``(combined or None for 'no change', the winning metric or "", the best valid
        proposal, metrics counted, metrics invalid, the first invalid one)``;
        :func:`_combine_rule` describes the rule applied.
    """
    best: int | None = None
    best_name = ""
    invalid = 0
    counted = 0
    first_invalid: Proposal | None = None
    down_guard: Proposal | None = None
    proportional_valid = False
    for p in proposals:
        if p.neutral:
            continue
        counted += 1
        proposal = p.proposal
        if proposal is None:
            invalid += 1
            if first_invalid is None:
                first_invalid = p
            continue
        guard = p.guard
        if guard:
            if llm_mode and guard == "down":
                if down_guard is None:
                    down_guard = p
                continue
        else:
            proportional_valid = True
        if best is None or proposal > best:
            best, best_name = proposal, p.name
    if best is None and down_guard is not None and not proportional_valid:
        # Only latency guards, all well below target: step down by one.
        best, best_name = down_guard.proposal, down_guard.name
    if counted == 0 or best is None or (invalid and best < current):
        return None, "", best, counted, invalid, first_invalid
    return best, best_name, best, counted, invalid, first_invalid


def _combine_rule(
    best_name: str, best: int | None, counted: int, invalid: int, current: int
) -> str:
    """The description of the rule :func:`_combine` applied (for explanations and reasons)."""
    if counted == 0:
        return "no metric gave a signal"
    if best is None:
        return "all metrics invalid"
    if invalid and best < current:
        return (
            f"{invalid} metric(s) invalid and the valid ones propose {best} < current "
            f"{current}: no scale-down on partial metrics"
        )
    rule = f"max over valid metrics = {best} ({best_name})"
    if invalid:
        rule += f"; {invalid} invalid metric(s) ignored on scale-up"
    return rule


# --------------------------------------------------------------------------------------------
# Records and conditions
# --------------------------------------------------------------------------------------------


def _capacity_condition(view: llm.PodView) -> Condition:
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


def _metric_record(
    metric: ResolvedMetric,
    observation: MetricObservation,
    proposal: Proposal,
    rp: ResolvedPolicy,
    now: float,
    *,
    detail: dict[str, Any],
) -> dict[str, Any]:
    down, up = rp.tolerance_down, rp.tolerance_up
    record: dict[str, Any] = {
        "name": metric.name,
        "kind": metric.kind,
        "target": {"type": metric.target_type, "value": metric.target},
        "tolerance": {"down": down, "up": up, "band": [1 - down, 1 + up]},
        "value": proposal.value,
        "ratio": proposal.ratio,
        "proposal": proposal.proposal,
        "valid": proposal.proposal is not None,
    }
    if isinstance(observation, PodSamples):
        oldest = observation.oldest_sample
        record["observation"] = {
            "type": "podSamples",
            "values": dict(observation.values),
            "rejected": {k: str(v.reason) for k, v in observation.rejected.items()}
            if observation.rejected
            else {},
            "series": observation.series,
            "sampleAge": now - (oldest if oldest is not None else observation.timestamp),
        }
    elif isinstance(observation, TargetSample):
        oldest = observation.oldest_sample
        record["observation"] = {
            "type": "targetSample",
            "value": observation.value,
            "series": observation.series,
            "pods": observation.pods,
            "sampleAge": now - (oldest if oldest is not None else observation.timestamp),
        }
    else:
        record["observation"] = {
            "type": "noSignal",
            "reason": observation.reason.value,
            "detail": observation.detail,
        }
    if proposal.guard:
        record["guard"] = proposal.guard
    if not proposal.valid and not proposal.neutral:
        record["failure"] = {"reason": proposal.failure_reason, "message": proposal.failure_message}
    if detail:
        record["arithmetic"] = detail
    return record


def _stabilization_record(  # noqa: PLR0917 - private; the stabilization step's values
    rp: ResolvedPolicy,
    recommendations: tuple[Recommendation, ...],
    desired: int,
    now: float,
    stabilized: int,
    reason: str,
    adaptive_window: float | None = None,
) -> dict[str, Any]:
    """The stabilization step: each window's records and bound (as ``stabilize_*`` has them)."""
    down_window = rp.down.window if adaptive_window is None else adaptive_window
    if rp.has_behavior:
        window_up, window_down, up_bound, down_bound = stabilization_windows(
            recommendations, desired, now, rp.up.window, down_window
        )
    else:
        window_down, down_bound = legacy_window(recommendations, desired, now, rp.down.window)
    record: dict[str, Any] = {
        "path": "behavior" if rp.has_behavior else "legacy",
        "input": desired,
        "downWindowSeconds": down_window,
        "downWindow": [[now - r.timestamp, r.replicas] for r in window_down],
        "downBound": down_bound,
        "value": stabilized,
        "reason": reason,
    }
    if rp.has_behavior:
        record["upWindowSeconds"] = rp.up.window
        record["upWindow"] = [[now - r.timestamp, r.replicas] for r in window_up]
        record["upBound"] = up_bound
    return record


def _limits_record(  # noqa: PLR0917 - private; the limit step's values
    rp: ResolvedPolicy,
    history: History,
    now: float,
    stabilized: int,
    current: int,
    desired: int,
    reason: str,
) -> dict[str, Any]:
    """The rate-limit and clamp step, with each rate policy's limit (as the tick computed it)."""
    record: dict[str, Any] = {
        "input": stabilized,
        "minReplicas": rp.min_replicas,
        "maxReplicas": rp.max_replicas,
        "output": desired,
        "reason": reason,
        "limited": desired != stabilized,
    }
    if not rp.has_behavior:
        record["legacyScaleUpLimit"] = legacy_scale_up_limit(current)
        return record
    direction = "up" if stabilized > current else "down" if stabilized < current else "none"
    record["direction"] = direction
    if direction == "none":
        return record
    up_events, down_events = history.scale_up_events, history.scale_down_events
    scale_up = direction == "up"
    if scale_up:
        rules = rp.up
        limit = max(scale_up_limit(current, up_events, down_events, rules, now), current)
    else:
        rules = rp.down
        limit = min(scale_down_limit(current, up_events, down_events, rules, now), current)
    record["selectPolicy"] = rules.select
    record["rateLimit"] = limit
    policies: list[dict[str, Any]] = []
    raw: list[int] = []
    if rules.select != "Disabled":
        for policy in rules.policies:
            start = period_start(policy, current, up_events, down_events, now)
            raw.append(policy_limit(policy, start, scale_up=scale_up))
            policies.append(
                {
                    "type": policy.type,
                    "value": policy.value,
                    "periodSeconds": policy.period,
                    "periodStart": start,
                    "limit": raw[-1],
                }
            )
    record["policies"] = policies
    if raw:
        pick_max = (rules.select == "Max") == (direction == "up")
        chosen = max(raw) if pick_max else min(raw)
        record["winner"] = raw.index(chosen)
    return record


class _Trace:
    """What one ``decide`` call saw and chose, kept to build its explanation on first read."""

    __slots__ = (
        "combine",
        "desired",
        "details",
        "down_window",
        "fallback",
        "floor",
        "history",
        "normalized",
        "now",
        "observation",
        "precheck",
        "proposals",
        "reason",
        "recommendations",
        "rp",
        "sized",
        "slo_proposal",
        "steps",
        "view",
    )

    def __init__(  # noqa: PLR0917 - private; one call site
        self,
        rp: ResolvedPolicy,
        now: float,
        observation: Observation,
        history: History,
        recommendations: tuple[Recommendation, ...],
        view: llm.PodView | None,
    ) -> None:
        self.rp = rp
        self.now = now
        self.observation = observation
        self.history = history
        """The history ``decide`` received."""
        self.recommendations = recommendations
        """The recommendations going into stabilization (first-sight seed included)."""
        self.view = view
        self.precheck = ""
        self.proposals: list[Proposal] | None = None
        self.details: list[_Recipe | None] | None = None
        """Deferred detail recipes of the hpa fast paths (None: the proposal's own detail)."""
        self.combine: tuple[int | None, str, int | None, int, int] | None = None
        self.fallback: int | None = None
        """Consecutive failures when the fallback is in force."""
        self.normalized: int | None = None
        """The recommendation that went into stabilization (None: not reached)."""
        self.steps: tuple[int, str, str] = (0, "", "")
        """(stabilized replicas, AbleToScale reason, ScalingLimited reason)."""
        self.desired = 0
        self.reason = ""
        self.sized: slo.SloPlan | None = None
        """The SLO sizing and capacity model of this tick (``llm``)."""
        self.slo_proposal: Proposal | None = None
        self.floor: tuple[int, int] | None = None
        """(combined before, after) when the capacity floor raised a scale-down."""
        self.down_window: float | None = None
        """The adaptive scale-down window, when it applied."""


def _build_explanation(trace: _Trace) -> dict[str, Any]:
    """The JSON-ready explanation of one decision (see ``docs/decision.md``)."""
    rp, now, obs, history = trace.rp, trace.now, trace.observation, trace.history
    current = obs.spec_replicas
    explanation: dict[str, Any] = {
        "policy": rp.key,
        "algorithm": "llm" if rp.llm else "hpa",
        "time": now,
        "currentReplicas": current,
        "statusReplicas": obs.status_replicas,
        "minReplicas": rp.min_replicas,
        "maxReplicas": rp.max_replicas,
    }
    if not history.initialized:
        explanation["firstSight"] = f"seeded the recommendations with ({now:g}, {current})"
    if trace.view is not None:
        explanation["pods"] = trace.view.to_json()
    if trace.precheck:
        explanation["precheck"] = trace.precheck
    proposals = trace.proposals
    if proposals is not None:
        details = trace.details or [None] * len(proposals)
        explanation["metrics"] = [
            _metric_record(
                m,
                obs.metrics.get(m.name, _NOT_COLLECTED),
                p,
                rp,
                now,
                detail=resolve_text(p.detail) if recipe is None else _recipe_detail(recipe),
            )
            for m, p, recipe in zip(rp.metrics, proposals, details, strict=True)
        ]
    if trace.combine is not None:
        combined, best_metric, best, counted, invalid = trace.combine
        explanation["combined"] = {
            "proposal": combined,
            "metric": best_metric,
            "invalidMetrics": [
                p.name for p in proposals or () if not p.neutral and p.proposal is None
            ],
            "rule": _combine_rule(best_metric, best, counted, invalid, current),
        }
    sized = trace.sized
    if sized is not None:
        explanation["capacity"] = sized.estimate.to_json()
        record = sized.to_json()
        slo_proposal = trace.slo_proposal
        if slo_proposal is not None:
            record["proposal"] = slo_proposal.proposal
            detail = resolve_text(slo_proposal.detail)
            if "rule" in detail:
                record["rule"] = detail["rule"]
            if slo_proposal.failure_message:
                record["failure"] = slo_proposal.failure_message
        if trace.floor is not None:
            before, after = trace.floor
            record["floorApplied"] = (
                f"combined {before} < capacity floor {sized.floor}: scale-down stops at {after}"
            )
        explanation["slo"] = record
    if trace.fallback is not None:
        explanation["fallback"] = {
            "consecutiveFailures": trace.fallback,
            "replicas": rp.fallback_replicas,
        }
    normalized = trace.normalized
    if normalized is not None:
        stabilized, ability, limit_reason = trace.steps
        explanation["stabilization"] = _stabilization_record(
            rp, trace.recommendations, normalized, now, stabilized, ability, trace.down_window
        )
        explanation["limits"] = _limits_record(
            rp, history, now, stabilized, current, trace.desired, limit_reason
        )
    explanation["desiredReplicas"] = trace.desired
    explanation["reason"] = trace.reason
    return explanation


def _finish(  # noqa: PLR0917 - private; every call passes the same seven values in order
    trace: _Trace,
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
        Explanation(_build_explanation, trace),
    )
    return DecisionResult(decision, history)
