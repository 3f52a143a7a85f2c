"""``algorithm: hpa``: each metric's proposal, as the HPA's ``computeReplicasForMetrics``.

:func:`hpa_metric_proposal` maps a metric and its observation to the replica calculator
(:mod:`autoscaler.decision.calculator`): Pods ``AverageValue`` on per-pod samples, Object
``Value`` on an aggregate of them, External ``Value``/``AverageValue`` on one value for the
target, with the HPA's failure reasons (``FailedGetPodsMetric``...). :func:`hpa_proposals` runs
it for every metric of a policy, computing only the numbers in the common cases and leaving a
recipe from which the explanation rebuilds the same detail on first read
(:mod:`autoscaler.decision.trace`).
Pure.
"""

from __future__ import annotations

import math
from typing import Any

from autoscaler.decision.calculator import (
    PodGroups,
    PodsFast,
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
from autoscaler.decision.resolved import ResolvedMetric, ResolvedPolicy
from autoscaler.decision.types import (
    NOT_COLLECTED,
    MetricObservation,
    NoSignal,
    Observation,
    PodSamples,
    TargetSample,
)


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


def hpa_proposals(
    rp: ResolvedPolicy, obs: Observation, current: int
) -> tuple[list[Proposal], list[Recipe | None]]:
    """:func:`hpa_metric_proposal` for every metric, with the explanation detail deferred.

    The common cases (Pods ``AverageValue`` with every countable pod sampled, Object/External
    ``Value``) compute only the numbers and leave a recipe (second list, per metric); the
    explanation turns it into the same detail dict :func:`hpa_metric_proposal` builds. Every other
    case goes through :func:`hpa_metric_proposal` itself (recipe None: the proposal's own detail).
    """
    groups = group_pods(obs.pods)
    tol_down, tol_up = rp.tolerance_down, rp.tolerance_up
    observed = obs.metrics
    proposals: list[Proposal] = []
    details: list[Recipe | None] = []
    for metric in rp.metrics:
        observation = observed.get(metric.name, NOT_COLLECTED)
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
                    details.append((fast, metric.target_milli, groups, ""))
                    continue
            elif current and values:
                total = aggregate(list(values.values()), metric.aggregation)
                value = _value_fast(
                    total, metric.target_milli, current, tol_down, tol_up, groups, obs
                )
                if value is not None:
                    proposals.append(Proposal(metric.name, value[0], total, value[3]))
                    semantics = f"Object Value ({metric.aggregation} of {len(values)} pods)"
                    details.append((value, 0, groups, semantics))
                    continue
        elif isinstance(observation, TargetSample) and not metric.is_average and current:
            total = observation.value
            value = _value_fast(total, metric.target_milli, current, tol_down, tol_up, groups, obs)
            if value is not None:
                proposals.append(Proposal(metric.name, value[0], total, value[3]))
                details.append((value, 0, groups, "Object/External Value"))
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
    return proposals, details


ValueFast = tuple[int, int, int, float, int, bool]
"""``(proposal, valueMilli, targetMilli, ratio, ready pods, within tolerance)``."""


def _value_fast(  # noqa: PLR0917 - private hot path
    total: float,
    target_m: int,
    current: int,
    tol_down: float,
    tol_up: float,
    groups: PodGroups,
    obs: Observation,
) -> ValueFast | None:
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


Recipe = tuple[PodsFast | ValueFast, int, PodGroups, str]
"""How to rebuild a fast-path detail: (the fast path's numbers, targetMilli, pod groups,
semantics); the numbers of :func:`pods_fast` have 7 fields, those of :func:`_value_fast` 6."""


def recipe_detail(recipe: Recipe) -> dict[str, Any]:
    """The detail dict :func:`hpa_metric_proposal` records, from a fast-path recipe."""
    numbers, target_m, groups, semantics = recipe
    if len(numbers) == 7:  # PodsFast (ValueFast has 6 fields)
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
