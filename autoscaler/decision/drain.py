"""Drain-aware scale-down: which pods should go, and the deletion costs that make them go.

Pure. Given a scale-down decision (fewer replicas than pods) and what the controller observed, it
ranks the target's pods by the work they would lose and returns the
``controller.kubernetes.io/pod-deletion-cost`` annotations to write so the ReplicaSet removes the
pods with the least work. The control loop (:mod:`autoscaler.controller.loop`) computes the plan
after :func:`autoscaler.decision.core.decide`, adds it to the decision's explanation, and writes
the marks (only as leader, in ``active`` mode) just before lowering ``/scale``.

How the ReplicaSet controller picks the pods to delete (``ActivePodsWithRanks``): unassigned
before assigned, Pending before Running, not ready before ready, THEN the lower deletion cost,
then pods ready for less time, then the newer. So not-ready pods go first whatever their cost:
the plan never marks them. Among ready pods it ranks by requests in flight (running + waiting,
from the policy's ``runningRequests``/``queueDepth`` samples), then by KV-cache usage (the
tie-breaker, and the whole signal when no request count is collected), the busiest last. Only
the ready pods chosen to go are marked (negative costs, the least busy lowest); a kept pod
carrying a negative cost (an older mark) has it removed so it does not jump the queue. Positive
costs set by others are left alone: they protect a pod further.

StatefulSets remove the highest ordinal whatever the annotation says, and other owners may not
read it: the plan then says so and marks nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.decision.types import MetricObservation, PodInfo, PodPhase, PodSamples
from autoscaler.policy.models import MetricKind, ScalingPolicy

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
"""The annotation the ReplicaSet controller reads (an int32; lower is deleted first)."""

REPLICASET_KINDS = frozenset({"Deployment", "ReplicaSet", "NIMService"})
"""Target kinds whose pods belong to a ReplicaSet (used when pods carry no owner reference)."""

_TERMINAL = frozenset({PodPhase.SUCCEEDED, PodPhase.FAILED})


@dataclass(frozen=True, slots=True)
class PodMark:
    """One annotation write: set (``cost``) or remove (``cost`` None) a pod's deletion cost."""

    pod: str
    cost: int | None
    previous: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class RankedPod:
    """One pod in removal order, with what it would lose."""

    pod: str
    ready: bool
    in_flight: float | None
    """Requests running + waiting (0 when only KV usage is collected); None: unknown."""
    goes: bool
    """Chosen to be removed by this scale-down."""
    reason: str


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """What a scale-down does to the target's pods."""

    applies: bool
    """False when the annotation cannot choose the pods (StatefulSet, other owners, disabled)."""
    note: str
    """One line for the explanation: why these pods, or why the annotation does not apply."""
    load_signal: str | None = None
    """Which per-pod metrics ranked the ready pods (None: none available; readiness only)."""
    ranking: tuple[RankedPod, ...] = ()
    """Every active pod, first removed first."""
    marks: tuple[PodMark, ...] = ()
    """Annotation writes needed now (only the pods whose annotation changes)."""

    @property
    def victims(self) -> tuple[str, ...]:
        """Pods expected to be removed, in order."""
        return tuple(p.pod for p in self.ranking if p.goes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record for the decision's explanation."""
        return {
            "applies": self.applies,
            "note": self.note,
            "loadSignal": self.load_signal,
            "remove": [
                {"pod": p.pod, "inFlight": p.in_flight, "reason": p.reason}
                for p in self.ranking
                if p.goes
            ],
            "keep": [{"pod": p.pod, "inFlight": p.in_flight} for p in self.ranking if not p.goes],
            "marks": [
                {"pod": m.pod, "cost": m.cost, "previous": m.previous, "reason": m.reason}
                for m in self.marks
            ],
        }


def disabled_plan(reason: str) -> DrainPlan:
    """A plan that marks nothing, with the reason (drain-aware scale-down switched off...)."""
    return DrainPlan(applies=False, note=reason)


def plan_drain(
    policy: ScalingPolicy,
    pods: Sequence[PodInfo],
    metrics: Mapping[str, MetricObservation],
    desired: int,
) -> DrainPlan:
    """Rank the target's pods for a scale-down to ``desired`` and the marks that enforce it.

    Args:
        policy: the policy (target kind and which metrics carry per-pod load).
        pods: the target's pods as observed this tick (any phase).
        metrics: this tick's metric observations of the policy, by metric name.
        desired: the replica count being written.

    Returns:
        The plan; ``marks`` is empty when nothing needs writing.
    """
    active = [p for p in pods if not p.deleting and p.phase not in _TERMINAL]
    kind = policy.spec.scale_target_ref.kind
    owners = {p.owner_kind for p in active if p.owner_kind is not None}
    if kind == "StatefulSet" or "StatefulSet" in owners:
        return DrainPlan(
            applies=False,
            note=(
                "StatefulSet: scale-down removes the highest ordinals whatever "
                f"{DELETION_COST} says; no pods marked"
            ),
        )
    foreign = owners - {"ReplicaSet"}
    if foreign:
        return DrainPlan(
            applies=False,
            note=(
                f"pods are owned by {', '.join(sorted(foreign))}, which does not read "
                f"{DELETION_COST}; no pods marked"
            ),
        )
    if not owners and kind not in REPLICASET_KINDS:
        return DrainPlan(
            applies=False,
            note=(
                f"{kind}: its pods carry no ReplicaSet owner, so {DELETION_COST} may not be "
                "honoured; no pods marked"
            ),
        )
    remove = max(0, len(active) - desired)
    load, signal = _pod_load(policy, metrics)
    ranking = _rank(active, load, remove)
    marks = _marks(ranking, active)
    ready_going = [r for r in ranking if r.goes and r.ready]
    if remove == 0:
        note = f"{len(active)} active pods for {desired} replicas: no pod needs removing"
    elif not ready_going:
        note = (
            f"removing {remove} of {len(active)} pods: all are not ready or starting, which "
            "the ReplicaSet removes first; no marks needed"
        )
    else:
        by = signal or "no per-pod load signal (ranked by readiness only)"
        note = (
            f"removing {remove} of {len(active)} pods: not-ready and starting first, then the "
            f"ready pods with the least work ({by}); {len(marks)} annotation(s) to write"
        )
    return DrainPlan(
        applies=True, note=note, load_signal=signal, ranking=tuple(ranking), marks=tuple(marks)
    )


_Load = tuple[float, float]
"""(requests in flight, KV usage): compared in that order."""


def _sum_samples(
    policy: ScalingPolicy, metrics: Mapping[str, MetricObservation], kinds: frozenset[MetricKind]
) -> tuple[dict[str, float], list[str]]:
    """Per-pod sums over one metric of each kind: the policy's own entries first, then the signals
    an SLO policy fetches for its capacity model (the same series under another name)."""
    totals: dict[str, float] = {}
    used: list[str] = []
    seen: set[MetricKind] = set()
    for metric in policy.spec.fetched_metrics:
        if metric.kind not in kinds or metric.kind in seen:
            continue
        observed = metrics.get(metric.name)
        if not isinstance(observed, PodSamples) or not observed.values:
            continue
        seen.add(metric.kind)
        used.append(metric.name)
        for pod, value in observed.values.items():
            totals[pod] = totals.get(pod, 0.0) + value
    return totals, used


_REQUEST_KINDS = frozenset({MetricKind.RUNNING_REQUESTS, MetricKind.QUEUE_DEPTH})
_KV_KINDS = frozenset({MetricKind.KV_CACHE})


def _pod_load(
    policy: ScalingPolicy, metrics: Mapping[str, MetricObservation]
) -> tuple[dict[str, _Load], str | None]:
    """Per-pod work: requests in flight (running + waiting), then KV usage (tie-breaker, and
    the whole signal when no request count is collected)."""
    requests, request_names = _sum_samples(policy, metrics, _REQUEST_KINDS)
    kv, kv_names = _sum_samples(policy, metrics, _KV_KINDS)
    pods = set(requests) if request_names else set(kv)
    load = {pod: (requests.get(pod, 0.0), kv.get(pod, 0.0)) for pod in pods}
    parts = []
    if request_names:
        parts.append(f"requests in flight: {' + '.join(request_names)}")
    if kv_names:
        parts.append(f"KV usage: {' + '.join(kv_names)}")
    return load, "; then ".join(parts) or None


def _rank(active: Sequence[PodInfo], load: Mapping[str, _Load], remove: int) -> list[RankedPod]:
    """Active pods, first removed first: the ReplicaSet's own pre-cost order, then load."""

    def key(pod: PodInfo) -> tuple[int, int, int, int, _Load, float, float]:
        unassigned = 0 if pod.scheduled_at is None and pod.phase is PodPhase.PENDING else 1
        phase = {PodPhase.PENDING: 0, PodPhase.UNKNOWN: 1}.get(pod.phase, 2)
        ready = 1 if pod.ready else 0
        value = load.get(pod.name)
        # A ready pod without a sample has most likely just started (not scraped yet): it goes
        # before the measured ones, newest first, as the ReplicaSet's own order would have it.
        measured = 1 if (pod.ready and value is not None) else 0
        ready_at = pod.ready_at if pod.ready_at is not None else float("inf")
        created = pod.created_at if pod.created_at is not None else float("inf")
        return (unassigned, phase, ready, measured, value or (0.0, 0.0), -ready_at, -created)

    ranked: list[RankedPod] = []
    for index, pod in enumerate(sorted(active, key=key)):
        goes = index < remove
        value = load.get(pod.name)
        if not pod.ready:
            reason = "not ready or starting: the ReplicaSet removes it first"
        elif value is None:
            reason = "ready, no load sample yet (newly started)"
        else:
            reason = f"ready, {value[0]:g} requests in flight, KV usage {value[1]:.3g}"
        ranked.append(
            RankedPod(pod.name, pod.ready, None if value is None else value[0], goes, reason)
        )
    return ranked


def _marks(ranking: Sequence[RankedPod], active: Sequence[PodInfo]) -> list[PodMark]:
    """Annotation writes: the ready pods that go get negative costs; stale negatives cleared."""
    current = {p.name: p.deletion_cost for p in active}
    going = [r for r in ranking if r.goes and r.ready]
    if not going:
        return []
    marks: list[PodMark] = []
    for index, ranked in enumerate(going):
        cost = index - len(going)  # -k .. -1: the least busy lowest
        if current.get(ranked.pod) != cost:
            marks.append(PodMark(ranked.pod, cost, current.get(ranked.pod), ranked.reason))
    for ranked in ranking:
        previous = current.get(ranked.pod)
        if not ranked.goes and ranked.ready and previous is not None and previous < 0:
            marks.append(
                PodMark(ranked.pod, None, previous, "kept: an older negative cost removed")
            )
    return marks


def drain_lines(record: Mapping[str, Any]) -> list[str]:
    """Text lines of a plan's JSON record (for :func:`autoscaler.decision.explain.render_text`)."""
    lines = [f"drain: {record.get('note')}"]
    for pod in record.get("remove") or []:
        lines.append(f"  remove {pod.get('pod')}: {pod.get('reason')}")
    for mark in record.get("marks") or []:
        cost = mark.get("cost")
        what = f"set {DELETION_COST}={cost}" if cost is not None else f"remove {DELETION_COST}"
        lines.append(f"  mark {mark.get('pod')}: {what} (was {mark.get('previous')})")
    if record.get("written") is not None:
        lines.append(f"  written: {record.get('written')}")
    return lines
