"""The decision core's entry points: :func:`decide` and :func:`record_rescale`.

One tick for one policy, as the HPA's ``reconcileAutoscaler``: first-sight seeding, pre-checks
(scaling disabled, out of range), per-metric proposals (:mod:`autoscaler.decision.calculator` for
``algorithm: hpa``, :mod:`autoscaler.decision.llm` for ``algorithm: llm``), the max over metrics
with the partial-metric rule, ``onMetricFailure``, then normalisation
(:mod:`autoscaler.decision.normalize`: stabilization, rate limits, min/max) and conditions.
:mod:`autoscaler.decision.explain` receives the arithmetic as a JSON-ready record.

Pure: the policy, observation, history and ``now`` come in; a decision and a new history go out.
Callers: the control loop (:mod:`autoscaler.controller`), the simulator and the replay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from autoscaler.decision import llm
from autoscaler.decision.calculator import (
    PodGroups,
    Proposal,
    aggregate,
    external_average_proposal,
    group_pods,
    pods_proposal,
    value_proposal,
)
from autoscaler.decision.normalize import (
    Limited,
    Stabilized,
    convert_with_behavior_rate,
    convert_with_rules,
    prune_events,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from autoscaler.decision.resolved import ResolvedMetric, ResolvedPolicy, resolve
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


def decide(
    policy: ScalingPolicy, observation: Observation, history: History, now: float
) -> DecisionResult:
    """Decide the replica count for one policy at one tick.

    Args:
        policy: The scaling policy.
        observation: What was observed this tick (scale, pods, metrics).
        history: State from the previous tick (``History()`` the first time).
        now: Current time, seconds.

    Returns:
        The decision (with conditions and explanation) and the history for the next tick.
    """
    rp = resolve(policy)
    current = observation.spec_replicas
    explanation: dict[str, Any] = {
        "policy": rp.key,
        "algorithm": "llm" if rp.llm else "hpa",
        "time": now,
        "currentReplicas": current,
        "statusReplicas": observation.status_replicas,
        "minReplicas": rp.min_replicas,
        "maxReplicas": rp.max_replicas,
    }
    recommendations = history.recommendations
    if not history.initialized:
        recommendations = (*recommendations, Recommendation(now, current))
        explanation["firstSight"] = f"seeded the recommendations with ({now:g}, {current})"
    extra: Mapping[str, Any] = history.extra
    known_pods: Mapping[str, float] = history.known_pods
    samples = history.startup_samples
    view: llm.PodView | None = None
    if rp.llm:
        estimate = llm.startup_estimate(samples, rp.startup_seconds, rp.startup_learning)
        view = llm.classify_pods(observation.pods, now, estimate)
        if rp.startup_learning:
            known_pods, samples = llm.learn_startup(
                observation.pods, known_pods, samples, first_sight=not history.initialized
            )
        extra = llm.queue_state(rp, observation.metrics, view, extra, now)
        explanation["pods"] = view.to_json()
    base = History(
        initialized=True,
        recommendations=recommendations,
        scale_up_events=history.scale_up_events,
        scale_down_events=history.scale_down_events,
        consecutive_failures=history.consecutive_failures,
        startup_samples=samples,
        known_pods=known_pods,
        extra=extra,
    )
    conditions: list[Condition] = []
    if view is not None:
        conditions.append(_capacity_condition(view))

    # Pre-checks (no metrics are read).
    if current == 0 and rp.min_replicas != 0:
        conditions.insert(0, _cond(_SCALING_ACTIVE, "ScalingDisabled", MSG_DISABLED, status=False))
        explanation["precheck"] = MSG_DISABLED
        return _finish(
            rp, now, current, current, MSG_DISABLED, conditions, {}, {}, explanation, base
        )
    if current > rp.max_replicas or current < rp.min_replicas:
        desired = rp.max_replicas if current > rp.max_replicas else rp.min_replicas
        reason = MSG_ABOVE_MAX if current > rp.max_replicas else MSG_BELOW_MIN
        explanation["precheck"] = reason
        conditions.insert(0, _cond(_ABLE_TO_SCALE, "SucceededGetScale", MSG_GOT_SCALE, status=True))
        return _finish(rp, now, current, desired, reason, conditions, {}, {}, explanation, base)

    # Per-metric proposals.
    proposals = (
        _llm_proposals(rp, observation, view, extra=extra, now=now, current=current)
        if view is not None
        else _hpa_proposals(rp, observation, current)
    )
    metric_values = {p.name: p.value for p in proposals}
    metric_proposals = {p.name: p.proposal for p in proposals}
    explanation["metrics"] = [
        _metric_record(m, observation.metrics.get(m.name, _NOT_COLLECTED), p, rp, now)
        for m, p in zip(rp.metrics, proposals, strict=True)
    ]

    # Max over metrics, partial-metric rule.
    combined, best_metric, combine_rule = _combine(proposals, current, view is not None)
    counted = [p for p in proposals if not p.neutral]
    invalid = [p for p in counted if not p.valid]
    all_failed = not counted or len(invalid) == len(counted)
    failures = history.consecutive_failures + 1 if all_failed and invalid else 0
    base = _replace_failures(base, failures)
    explanation["combined"] = {
        "proposal": combined,
        "metric": best_metric,
        "invalidMetrics": [p.name for p in invalid],
        "rule": combine_rule,
    }
    fallback_active = (
        rp.fallback_replicas is not None and all_failed and failures >= rp.fallback_after
    )
    if rp.fallback_replicas is not None:
        fallback_message = (
            f"no valid metric for {failures} consecutive ticks; using fallback replicas "
            f"{rp.fallback_replicas}"
            if fallback_active
            else f"{failures} consecutive ticks without a valid metric, fallback after "
            f"{rp.fallback_after}"
        )
        conditions.append(
            _cond(
                _FALLBACK,
                "MetricsUnavailable" if fallback_active else "MetricsAvailable",
                fallback_message,
                status=fallback_active,
            )
        )
    if fallback_active:
        assert rp.fallback_replicas is not None
        combined = rp.fallback_replicas
        best_metric = "fallback"
        explanation["fallback"] = {
            "consecutiveFailures": failures,
            "replicas": rp.fallback_replicas,
        }
        conditions.insert(
            0,
            _cond(
                _SCALING_ACTIVE,
                invalid[0].failure_reason if invalid else "NoValidMetric",
                "the HPA was unable to compute the replica count: "
                + (invalid[0].failure_message if invalid else "no metric"),
                status=False,
            ),
        )
    elif combined is None:
        first = invalid[0] if invalid else None
        reason = first.failure_reason if first else "NoValidMetric"
        message = (
            f"the HPA was unable to compute the replica count: {first.failure_message}"
            if first
            else "no metric gave a signal (latency guards without traffic)"
        )
        conditions.insert(0, _cond(_SCALING_ACTIVE, reason, message, status=False))
        conditions.insert(0, _cond(_ABLE_TO_SCALE, "SucceededGetScale", MSG_GOT_SCALE, status=True))
        line = f"No change: {combine_rule}"
        return _finish(
            rp, now, current, current, line, conditions, metric_values, metric_proposals,
            explanation, base,
        )  # fmt: skip
    else:
        conditions.insert(
            0,
            _cond(
                _SCALING_ACTIVE,
                "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from {best_metric}",
                status=True,
            ),
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
    if rp.has_behavior:
        stab = stabilize_with_behavior(
            base.recommendations,
            current,
            combined,
            now,
            up_window=rp.up.window,
            down_window=rp.down.window,
            prune=True,
        )
        limited = convert_with_behavior_rate(
            current,
            stab.replicas,
            min_replicas=rp.min_replicas,
            max_replicas=rp.max_replicas,
            up_events=base.scale_up_events,
            down_events=base.scale_down_events,
            up=rp.up,
            down=rp.down,
            now=now,
        )
    else:
        stab = stabilize_legacy(base.recommendations, combined, now, rp.down.window, prune=True)
        limited = convert_with_rules(current, stab.replicas, rp.min_replicas, rp.max_replicas)
    explanation["stabilization"] = _stabilization_record(rp, stab, combined, now)
    explanation["limits"] = _limits_record(rp, limited, stab.replicas, current)
    ability = stab.reason if stab.replicas != combined else "ReadyForNewScale"
    conditions.insert(1, _cond(_ABLE_TO_SCALE, ability, stab.message, status=True))
    conditions.insert(
        2,
        _cond(
            _SCALING_LIMITED,
            limited.reason,
            limited.message,
            status=limited.replicas != stab.replicas,
        ),
    )
    desired = limited.replicas
    if desired == current and combined != current:
        held_by = ability if stab.replicas == current else limited.reason
        reason = f"{reason}; held by {held_by}"
    elif desired != combined:
        reason = f"{reason}; {combined} -> {desired} ({ability}, {limited.reason})"
    new_history = History(
        initialized=True,
        recommendations=stab.recommendations,
        scale_up_events=base.scale_up_events,
        scale_down_events=base.scale_down_events,
        consecutive_failures=base.consecutive_failures,
        startup_samples=base.startup_samples,
        known_pods=base.known_pods,
        extra=base.extra,
    )
    return _finish(
        rp, now, current, desired, reason, conditions, metric_values, metric_proposals,
        explanation, new_history,
    )  # fmt: skip


def record_rescale(
    policy: ScalingPolicy, history: History, now: float, current: int, desired: int
) -> History:
    """Store a performed rescale, as the HPA does after a successful ``Scales().Update``.

    Without ``behavior`` no event is stored (the legacy path does not use them). For
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
        longest = max(rp.up.longest_period, rp.down.longest_period)
        up = prune_events(up, now, longest)
        down = prune_events(down, now, longest)
    return History(
        initialized=history.initialized,
        recommendations=history.recommendations,
        scale_up_events=up,
        scale_down_events=down,
        consecutive_failures=history.consecutive_failures,
        startup_samples=history.startup_samples,
        known_pods=history.known_pods,
        extra=extra,
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


def _hpa_proposals(rp: ResolvedPolicy, obs: Observation, current: int) -> list[Proposal]:
    groups = group_pods(obs.pods)
    return [
        hpa_metric_proposal(
            m,
            obs.metrics.get(m.name, _NOT_COLLECTED),
            obs,
            current=current,
            tol_down=rp.tolerance_down,
            tol_up=rp.tolerance_up,
            groups=groups,
        )
        for m in rp.metrics
    ]


def _llm_proposals(
    rp: ResolvedPolicy,
    obs: Observation,
    view: llm.PodView | None,
    *,
    extra: Mapping[str, Any],
    now: float,
    current: int,
) -> list[Proposal]:
    assert view is not None
    ctx = llm.LlmContext(rp, current, view, now, extra)
    results: dict[str, Proposal] = {}
    queue_valid = False
    # Queue metrics first: a saturated KV cache leaves the step to a valid queue metric.
    ordered = sorted(rp.metrics, key=lambda m: not m.is_queue)
    for metric in ordered:
        observation = obs.metrics.get(metric.name, _NOT_COLLECTED)
        if metric.is_latency:
            results[metric.name] = llm.latency_proposal(metric, observation, ctx)
            continue
        if isinstance(observation, NoSignal):
            message = f"unable to get metric {metric.name}: no signal ({observation.reason.value})"
            if observation.detail:
                message += f": {observation.detail}"
            results[metric.name] = Proposal(
                metric.name,
                None,
                failure_reason=_failure_reason(metric, observation),
                failure_message=message,
            )
            continue
        if metric.is_queue and metric.target_type == "AverageValue":
            proposal = llm.queue_proposal(metric, observation, ctx)
            queue_valid = queue_valid or proposal.valid
        else:
            proposal = llm.proportional_proposal(metric, observation, ctx, queue_valid=queue_valid)
        results[metric.name] = proposal
    return [results[m.name] for m in rp.metrics]


# --------------------------------------------------------------------------------------------
# Combination
# --------------------------------------------------------------------------------------------


def _combine(
    proposals: list[Proposal], current: int, llm_mode: bool
) -> tuple[int | None, str, str]:
    """Max over valid proposals with the HPA partial-metric rule.

    Returns:
        ``(combined or None for 'no change', the winning metric, a description of the rule)``.
    """
    best: int | None = None
    best_name = ""
    invalid = 0
    counted = 0
    down_guards: list[Proposal] = []
    proportional_valid = False
    for p in proposals:
        if p.neutral:
            continue
        counted += 1
        if not p.valid:
            invalid += 1
            continue
        if llm_mode and p.guard == "down":
            down_guards.append(p)
            continue
        if not p.guard:
            proportional_valid = True
        assert p.proposal is not None
        if best is None or p.proposal > best:
            best, best_name = p.proposal, p.name
    if best is None and down_guards and not proportional_valid:
        # Only latency guards, all well below target: step down by one.
        best, best_name = down_guards[0].proposal, down_guards[0].name
    if counted == 0:
        return None, "", "no metric gave a signal"
    if best is None:
        return None, "", "all metrics invalid"
    if invalid and best < current:
        return (
            None,
            "",
            (
                f"{invalid} metric(s) invalid and the valid ones propose {best} < current "
                f"{current}: no scale-down on partial metrics"
            ),
        )
    rule = f"max over valid metrics = {best} ({best_name})"
    if invalid:
        rule += f"; {invalid} invalid metric(s) ignored on scale-up"
    return best, best_name, rule


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
    return _cond(_CAPACITY_PENDING, "NoPodsStarting", "no pod is starting", status=False)


def _cond(kind: ConditionType, reason: str, message: str, *, status: bool) -> Condition:
    return Condition(kind, status, reason, message)


def _replace_failures(history: History, failures: int) -> History:
    if history.consecutive_failures == failures:
        return history
    return History(
        initialized=history.initialized,
        recommendations=history.recommendations,
        scale_up_events=history.scale_up_events,
        scale_down_events=history.scale_down_events,
        consecutive_failures=failures,
        startup_samples=history.startup_samples,
        known_pods=history.known_pods,
        extra=history.extra,
    )


def _metric_record(
    metric: ResolvedMetric,
    observation: MetricObservation,
    proposal: Proposal,
    rp: ResolvedPolicy,
    now: float,
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
    if proposal.detail:
        record["arithmetic"] = proposal.detail
    return record


def _stabilization_record(
    rp: ResolvedPolicy, stab: Stabilized, desired: int, now: float
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": "behavior" if rp.has_behavior else "legacy",
        "input": desired,
        "downWindowSeconds": rp.down.window,
        "downWindow": [[now - r.timestamp, r.replicas] for r in stab.window_down],
        "downBound": stab.down_bound,
        "value": stab.replicas,
        "reason": stab.reason if stab.replicas != desired else "ReadyForNewScale",
    }
    if rp.has_behavior:
        record["upWindowSeconds"] = rp.up.window
        record["upWindow"] = [[now - r.timestamp, r.replicas] for r in stab.window_up]
        record["upBound"] = stab.up_bound
    return record


def _limits_record(
    rp: ResolvedPolicy, limited: Limited, stabilized: int, current: int
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "input": stabilized,
        "minReplicas": rp.min_replicas,
        "maxReplicas": rp.max_replicas,
        "output": limited.replicas,
        "reason": limited.reason,
        "limited": limited.replicas != stabilized,
    }
    if not rp.has_behavior:
        record["legacyScaleUpLimit"] = limited.limit
        return record
    direction = "up" if stabilized > current else "down" if stabilized < current else "none"
    record["direction"] = direction
    if direction == "none":
        return record
    rules = rp.up if direction == "up" else rp.down
    record["selectPolicy"] = rules.select
    record["rateLimit"] = limited.limit
    policies = [
        {
            "type": d.policy.type,
            "value": d.policy.value,
            "periodSeconds": d.policy.period,
            "periodStart": d.period_start,
            "limit": d.limit,
        }
        for d in limited.policy_limits
    ]
    record["policies"] = policies
    if limited.policy_limits:
        raw = [d.limit for d in limited.policy_limits]
        pick_max = (rules.select == "Max") == (direction == "up")
        chosen = max(raw) if pick_max else min(raw)
        record["winner"] = raw.index(chosen)
    return record


def _finish(  # noqa: PLR0917 - private; every call passes the same ten values in order
    rp: ResolvedPolicy,
    now: float,
    current: int,
    desired: int,
    reason: str,
    conditions: list[Condition],
    metric_values: Mapping[str, float | None],
    metric_proposals: Mapping[str, int | None],
    explanation: dict[str, Any],
    history: History,
) -> DecisionResult:
    explanation["desiredReplicas"] = desired
    explanation["reason"] = reason
    decision = Decision(
        policy=rp.key,
        timestamp=now,
        current_replicas=current,
        desired_replicas=desired,
        reason=reason,
        conditions=tuple(conditions),
        metric_values=metric_values,
        metric_proposals=metric_proposals,
        explanation=explanation,
    )
    return DecisionResult(decision, history)
