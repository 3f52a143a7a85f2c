"""The HPA replica calculator: one metric's replica proposal, exactly as Kubernetes computes it.

Mirrors ``pkg/controller/podautoscaler/replica_calculator.go`` for the metric source types a
policy can express: Pods ``AverageValue`` (:func:`pods_proposal`), Object/External ``Value``
(:func:`value_proposal`, also used for per-pod samples aggregated to one value) and External
``AverageValue`` (:func:`external_average_proposal`). Arithmetic is in integer milli-units like
the HPA's ``MilliValue``. Called by :mod:`autoscaler.decision.core` for ``algorithm: hpa``; the
LLM algorithm (:mod:`autoscaler.decision.llm`) reuses :func:`to_milli` and :class:`Proposal`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import mul, sub
from typing import Any

from autoscaler.decision.types import PodInfo, PodPhase

_FAILED = PodPhase.FAILED
_PENDING = PodPhase.PENDING
_RUNNING = PodPhase.RUNNING
# (enum members as module constants: class attribute access on an Enum is ~7x slower)

_MILLI_NOISE = 1e-6
"""Float noise tolerated when scaling to milli-units (0.62 * 1000 = 620.0000000000001 -> 620)."""


def to_milli(value: float) -> int:
    """``resource.Quantity.MilliValue()`` of a float: milli-units rounded up (float noise aside)."""
    return math.ceil(value * 1000.0 - _MILLI_NOISE)


def sum_milli(values: Iterable[float]) -> int:
    """``sum(to_milli(v) for v in values)``, with the per-value arithmetic done in C (``map``)."""
    return sum(map(math.ceil, map(sub, map(mul, values, repeat(1000.0)), repeat(_MILLI_NOISE))))


def within(ratio: float, tol_down: float, tol_up: float) -> bool:
    """HPA ``Tolerances.isWithin``: ``1 - down <= ratio <= 1 + up`` (inclusive; NaN is outside)."""
    return (1.0 - tol_down) <= ratio <= (1.0 + tol_up)


@dataclass(slots=True)
class Proposal:
    """One metric's outcome: a replica proposal, or why there is none."""

    name: str
    proposal: int | None
    """Replicas proposed; None when the metric is invalid this tick."""
    value: float | None = None
    """The value compared with the target (per-pod average or whole-target value)."""
    ratio: float | None = None
    failure_reason: str = ""
    """HPA condition reason when invalid (``FailedGetPodsMetric``, ...)."""
    failure_message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    """JSON-ready explanation of the arithmetic."""
    neutral: bool = False
    """LLM latency guard without traffic: counts neither as valid nor as a failure."""
    guard: str = ""
    """LLM latency guard state: ``up``, ``hold``, ``down`` or ``""`` (not a guard)."""

    @property
    def valid(self) -> bool:
        """True if the metric produced a proposal."""
        return self.proposal is not None


@dataclass(frozen=True, slots=True)
class PodGroups:
    """HPA ``groupPods`` for a non-CPU metric, independent of the samples."""

    countable: tuple[str, ...]
    """Pods whose sample counts (not deleting, not Failed, not Pending)."""
    pending: tuple[str, ...]
    """Pending pods: unready, their samples are dropped."""
    ignored: int
    """Deleting or Failed pods."""
    dropped: tuple[str, ...]
    """Pending, deleting and Failed pods (samples removed)."""
    running_ready: int
    """Pods Running and Ready (HPA ``getReadyPodsCount``, deleting ones included)."""


def group_pods(pods: tuple[PodInfo, ...]) -> PodGroups:
    """Classify the pods (computed once per tick; several metrics share it)."""
    countable = [
        p.name
        for p in pods
        if not p.deleting and p.phase is not _FAILED and p.phase is not _PENDING
    ]
    running_ready = len([p for p in pods if p.phase is _RUNNING and p.ready])
    if len(countable) == len(pods):  # the common case: nothing pending, deleting or failed
        return PodGroups(tuple(countable), (), 0, (), running_ready)
    pending: list[str] = []
    ignored: list[str] = []
    for pod in pods:
        if pod.deleting or pod.phase is _FAILED:
            ignored.append(pod.name)
        elif pod.phase is _PENDING:
            pending.append(pod.name)
    return PodGroups(
        tuple(countable), tuple(pending), len(ignored), (*pending, *ignored), running_ready
    )


def ready_pod_count(pods: tuple[PodInfo, ...]) -> int:
    """HPA ``getReadyPodsCount``: pods that are Running and Ready."""
    return sum(1 for p in pods if p.phase is _RUNNING and p.ready)


def ratio_proposal(
    ratio: float, pods: int, current: int, tol_down: float, tol_up: float
) -> tuple[int, bool]:
    """The HPA's rule once the usage ratio is known: ``current`` within tolerance, else
    ``ceil(ratio x pods)``.

    Returns:
        ``(proposal, within tolerance)``.
    """
    if (1.0 - tol_down) <= ratio <= (1.0 + tol_up):
        return current, True
    return math.ceil(ratio * pods), False


def _ratio_rule(ratio: float, pods: int, proposal: int, *, in_band: bool) -> str:
    """The explanation of :func:`ratio_proposal`'s result."""
    if in_band:
        return "within tolerance: keep current"
    return f"ceil({ratio:.6g} x {pods} pods) = {proposal}"


def pods_proposal(
    values: Mapping[str, float],
    pods: tuple[PodInfo, ...],
    target: float,
    *,
    current: int,
    tol_down: float,
    tol_up: float,
    groups: PodGroups | None = None,
) -> tuple[int | None, str, dict[str, Any]]:
    """HPA ``calcPlainMetricReplicas`` for a non-CPU per-pod metric (``AverageValue``).

    Deleting and Failed pods are ignored; Pending pods are unready (their sample is dropped);
    other pods without a sample are missing; readiness is not consulted. Samples for pods not in
    ``pods`` stay in the average (as the HPA does).

    Args:
        values: Pod name -> sample.
        pods: The target's pods.
        target: Per-pod target.
        current: Current replicas (``spec.replicas``).
        tol_down: Scale-down tolerance.
        tol_up: Scale-up tolerance.
        groups: ``group_pods(pods)`` when already computed this tick.

    Returns:
        ``(proposal or None, error message, explanation detail)``.
    """
    if not pods:
        return None, "no pods returned by selector while calculating replica count", {}
    target_m = to_milli(target)
    if groups is None:
        groups = group_pods(pods)
    fast = pods_fast(values, target_m, current, tol_down, tol_up, groups)
    if fast is not None:
        return fast[0], "", pods_fast_detail(fast, target_m, groups)
    ceil = math.ceil
    metrics: dict[str, int] = {name: ceil(v * 1000.0 - _MILLI_NOISE) for name, v in values.items()}
    for name in groups.dropped:
        metrics.pop(name, None)
    missing = [name for name in groups.countable if name not in metrics]
    unready = groups.pending
    ready = len(groups.countable) - len(missing)
    detail: dict[str, Any] = {
        "pods": {
            "withMetric": ready,
            "missing": len(missing),
            "unready": len(unready),
            "ignored": groups.ignored,
            "superfluous": len(metrics) - ready,
        },
        "targetMilli": target_m,
    }
    if not metrics:
        return None, "did not receive metrics for targeted pods (pods might be unready)", detail
    total = sum(metrics.values())
    usage = total // len(metrics)
    ratio = usage / target_m
    detail.update({"sumMilli": total, "averageMilli": usage, "ratio": ratio})
    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        proposal, in_band = ratio_proposal(ratio, ready, current, tol_down, tol_up)
        detail["rule"] = _ratio_rule(ratio, ready, proposal, in_band=in_band)
        return proposal, "", detail
    if missing and ratio != 1.0:
        # Scale-down: a missing pod counts as at target; scale-up: as 0. At exactly 1.0 the
        # missing pods stay out of the average (upstream ``else if usageRatio > 1.0``).
        fill = target_m if ratio < 1.0 else 0
        for name in missing:
            metrics[name] = fill
        detail["missingFilledMilli"] = fill
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = 0
        detail["unreadyFilledMilli"] = 0
    new_total = sum(metrics.values())
    new_ratio = (new_total // len(metrics)) / target_m
    detail["adjustedRatio"] = new_ratio
    if (
        within(new_ratio, tol_down, tol_up)
        or (ratio < 1.0 < new_ratio)
        or (ratio > 1.0 > new_ratio)
    ):
        detail["rule"] = "adjusted ratio within tolerance or direction flipped: keep current"
        return current, "", detail
    proposal = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
        detail["rule"] = f"ceil({new_ratio:.6g} x {len(metrics)}) = {proposal} flips: keep current"
        return current, "", detail
    detail["rule"] = f"ceil({new_ratio:.6g} x {len(metrics)} pods) = {proposal}"
    return proposal, "", detail


PodsFast = tuple[int, int, int, int, float, int, bool]
"""``(proposal, sumMilli, samples, averageMilli, ratio, pods with a sample, within tolerance)``."""


def pods_fast(  # noqa: PLR0917 - hot path, called positionally once per metric
    values: Mapping[str, float],
    target_m: int,
    current: int,
    tol_down: float,
    tol_up: float,
    groups: PodGroups,
) -> PodsFast | None:
    """:func:`pods_proposal`'s common case, without building the explanation detail.

    Applies when no pod is pending, deleting or failed and every countable pod has a sample:
    then no sample is dropped or filled in and the HPA rule is ``ceil(ratio x pods)`` (or
    current within tolerance). Returns None for any other case (the caller takes the full path).
    The selector's pods must not be empty (checked by the caller).
    """
    if groups.dropped or not values:
        return None
    countable = groups.countable
    if len(values) < len(countable) or not all(map(values.__contains__, countable)):
        return None
    total = sum_milli(values.values())
    count = len(values)
    usage = total // count
    ratio = usage / target_m
    ready = len(countable)
    proposal, in_band = ratio_proposal(ratio, ready, current, tol_down, tol_up)
    return proposal, total, count, usage, ratio, ready, in_band


def pods_fast_detail(fast: PodsFast, target_m: int, groups: PodGroups) -> dict[str, Any]:
    """The explanation detail :func:`pods_proposal` records for a :func:`pods_fast` result."""
    proposal, total, count, usage, ratio, ready, in_band = fast
    return {
        "pods": {
            "withMetric": ready,
            "missing": 0,
            "unready": len(groups.pending),
            "ignored": groups.ignored,
            "superfluous": count - ready,
        },
        "targetMilli": target_m,
        "sumMilli": total,
        "averageMilli": usage,
        "ratio": ratio,
        "rule": _ratio_rule(ratio, ready, proposal, in_band=in_band),
    }


def value_proposal(
    value: float,
    pods: tuple[PodInfo, ...],
    target: float,
    *,
    current: int,
    tol_down: float,
    tol_up: float,
    groups: PodGroups | None = None,
) -> tuple[int | None, str, dict[str, Any]]:
    """HPA Object/External ``Value``: ``ceil(value/target x readyPods)``; ``ceil(ratio)`` at 0.

    Args:
        value: The whole-target value.
        pods: The target's pods (Running and Ready ones are counted).
        target: Whole-target target.
        current: Current replicas.
        tol_down: Scale-down tolerance.
        tol_up: Scale-up tolerance.
        groups: ``group_pods(pods)`` when already computed this tick.

    Returns:
        ``(proposal or None, error message, explanation detail)``.
    """
    usage = to_milli(value)
    target_m = to_milli(target)
    ratio = usage / target_m
    detail: dict[str, Any] = {"valueMilli": usage, "targetMilli": target_m, "ratio": ratio}
    if current == 0:
        proposal = math.ceil(ratio)
        detail["rule"] = f"current 0: ceil({ratio:.6g}) = {proposal}"
        return proposal, "", detail
    if within(ratio, tol_down, tol_up):
        detail["rule"] = "within tolerance: keep current"
        return current, "", detail
    if not pods:
        return None, "no pods returned by selector while calculating replica count", detail
    ready = groups.running_ready if groups is not None else ready_pod_count(pods)
    proposal = math.ceil(ratio * ready)
    detail["pods"] = {"ready": ready}
    detail["rule"] = f"ceil({ratio:.6g} x {ready} ready pods) = {proposal}"
    return proposal, "", detail


def external_average_proposal(
    total: float,
    status_replicas: int,
    target: float,
    tol_down: float,
    tol_up: float,
) -> tuple[int, dict[str, Any]]:
    """HPA External/Object ``AverageValue``: ratio = total/(target x statusReplicas).

    Within tolerance -> ``statusReplicas``; else ``ceil(total/target)``.

    Args:
        total: Whole-target total.
        status_replicas: The target's ``status.replicas``.
        target: Per-pod target.
        tol_down: Scale-down tolerance.
        tol_up: Scale-up tolerance.

    Returns:
        ``(proposal, explanation detail)``.
    """
    usage = to_milli(total)
    target_m = to_milli(target)
    denominator = target_m * status_replicas
    ratio = usage / denominator if denominator else (math.inf if usage else math.nan)
    detail: dict[str, Any] = {
        "totalMilli": usage,
        "targetMilli": target_m,
        "statusReplicas": status_replicas,
        "ratio": ratio if math.isfinite(ratio) else None,
    }
    if within(ratio, tol_down, tol_up):
        detail["rule"] = "within tolerance: keep statusReplicas"
        return status_replicas, detail
    proposal = math.ceil(usage / target_m)
    detail["rule"] = f"ceil({usage} / {target_m}) = {proposal}"
    return proposal, detail


def aggregate(values: list[float], how: str) -> float:
    """Per-pod values to one value: ``avg``, ``sum`` or ``max`` (``values`` is non-empty)."""
    if how == "sum":
        return math.fsum(values)
    if how == "max":
        return max(values)
    return math.fsum(values) / len(values)
