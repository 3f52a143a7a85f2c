"""Fleet operations around a decision: modes, external rescales and their explanation records.

Pure. The control loop (:mod:`autoscaler.controller.loop`) resolves each policy's mode here
(:func:`resolve_mode`: the target's ``nim-autoscaler.io/mode`` annotation wins over
``spec.mode``), builds the decision-shaped record of a paused policy (:func:`paused_decision`),
and adds the fleet records (``mode``, ``externalRescale``, ``drain`` from
:mod:`autoscaler.decision.drain`, ``budget`` from :mod:`autoscaler.decision.budget`) to the
decision's explanation (:func:`with_records`). :func:`fleet_lines` renders them for
``explain``/dry-run text and :func:`fleet_events` says which Events they deserve (the Kubernetes
recorder emits them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from autoscaler.decision.drain import drain_lines
from autoscaler.decision.types import Condition, ConditionType, Decision
from autoscaler.policy.models import PolicyMode

MODE_ANNOTATION = "nim-autoscaler.io/mode"
"""Annotation on the scale target that overrides the policy's ``spec.mode`` (maintenance)."""


@dataclass(frozen=True, slots=True)
class ModeChoice:
    """The mode in force for one policy this tick, and where it came from."""

    mode: PolicyMode
    source: str
    """``spec.mode`` or the annotation's name."""
    warning: str | None = None
    """Set when the annotation held an unknown value (then ``spec.mode`` is used)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record for the explanation."""
        record: dict[str, Any] = {"mode": self.mode.value, "source": self.source}
        if self.warning is not None:
            record["warning"] = self.warning
        return record


def resolve_mode(spec_mode: PolicyMode, annotations: Mapping[str, str]) -> ModeChoice:
    """The mode in force: the target's annotation if set and valid, else ``spec.mode``."""
    raw = annotations.get(MODE_ANNOTATION)
    if raw is None:
        return ModeChoice(spec_mode, "spec.mode")
    try:
        return ModeChoice(PolicyMode(raw.strip().lower()), MODE_ANNOTATION)
    except ValueError:
        allowed = ", ".join(m.value for m in PolicyMode)
        warning = (
            f"annotation {MODE_ANNOTATION}={raw!r:.40} is not one of {allowed}; "
            f"using spec.mode {spec_mode.value!r}"
        )
        return ModeChoice(spec_mode, "spec.mode", warning)


def paused_decision(policy: str, now: float, replicas: int, choice: ModeChoice) -> Decision:
    """The record of a paused policy's tick: nothing decided, replicas left as they are."""
    message = f"paused by {choice.source}: no decision is made and the history is kept"
    return Decision(
        policy=policy,
        timestamp=now,
        current_replicas=replicas,
        desired_replicas=replicas,
        reason=message,
        conditions=(
            Condition(
                ConditionType.SCALING_ACTIVE, status=False, reason="ScalingPaused", message=message
            ),
        ),
        explanation={
            "policy": policy,
            "time": now,
            "currentReplicas": replicas,
            "desiredReplicas": replicas,
            "reason": message,
            "mode": choice.to_json(),
        },
    )


def with_records(decision: Decision, records: Mapping[str, Any]) -> Decision:
    """The decision with ``records`` added to its explanation (a new Decision; no mutation).

    The merged explanation stays lazy: nothing is built until someone reads it (most ticks of
    most policies are never printed), as ``decide`` keeps its own; the fleet records themselves
    are readable at once (:func:`fleet_records`) for Events and the status annotation.
    """
    if not records:
        return decision
    base: Mapping[str, Any] = decision.explanation
    merged = dict(records)
    if isinstance(base, _Recorded):
        merged = {**base.records, **merged}
        base = base.base
    return replace(decision, explanation=_Recorded(base, merged))


def fleet_records(decision: Decision) -> Mapping[str, Any]:
    """The fleet records of a decision, without building the rest of its explanation."""
    explanation = decision.explanation
    if isinstance(explanation, _Recorded):
        return explanation.records
    # a plain dict is cheap to read; a lazy explanation from ``decide`` has no fleet records
    return explanation if isinstance(explanation, dict) else {}


class _Recorded(Mapping[str, Any]):
    """An explanation plus fleet records; the merged dict is built on first read."""

    __slots__ = ("_merged", "base", "records")

    def __init__(self, base: Mapping[str, Any], records: dict[str, Any]) -> None:
        self.base = base
        self.records = records
        self._merged: dict[str, Any] | None = None

    def _dict(self) -> dict[str, Any]:
        if self._merged is None:
            self._merged = {**dict(self.base), **self.records}
        return self._merged

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._dict())

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return (dict, (self._dict(),))


def with_condition(decision: Decision, condition: Condition) -> Decision:
    """The decision with ``condition`` replacing any of the same type."""
    kept = tuple(c for c in decision.conditions if c.type is not condition.type)
    return replace(decision, conditions=(*kept, condition))


def external_rescale_record(previous: int, observed: int) -> dict[str, Any]:
    """Record of a change of ``spec.replicas`` the controller did not make."""
    return {
        "from": previous,
        "to": observed,
        "message": (
            f"spec.replicas changed from {previous} to {observed} by someone else; "
            f"{observed} is taken as the current count"
        ),
    }


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """An Event a fleet record deserves."""

    type: str
    reason: str
    message: str


def fleet_events(decision: Decision, *, advisory: bool) -> list[FleetEvent]:
    """Events for the fleet records of a decision (beyond the HPA-style rescale Event)."""
    explanation = fleet_records(decision)
    events: list[FleetEvent] = []
    external = explanation.get("externalRescale")
    if isinstance(external, Mapping):
        events.append(
            FleetEvent(
                "Normal",
                "ExternalRescale",
                f"Replicas changed outside the autoscaler: {external.get('from')} -> "
                f"{external.get('to')}; taken as the current count",
            )
        )
    if advisory and decision.scale:
        events.append(
            FleetEvent(
                "Normal",
                "AdvisoryRescale",
                f"Would scale {decision.current_replicas} -> {decision.desired_replicas} "
                f"(advisory mode: nothing written); reason: {decision.reason}",
            )
        )
    limited = decision.condition(ConditionType.SCALING_LIMITED)
    if limited is not None and limited.status and limited.reason == "BudgetExhausted":
        events.append(FleetEvent("Warning", "BudgetExhausted", limited.message))
    return events


def fleet_status(decision: Decision) -> dict[str, Any]:
    """Fleet fields of the target's status record: the mode in force and the budget grants
    (GPUs per replica, granted and desired replicas; ``status`` sums them per budget)."""
    explanation = fleet_records(decision)
    out: dict[str, Any] = {}
    mode = explanation.get("mode")
    if isinstance(mode, Mapping):
        out["mode"] = mode.get("mode")
    budgets = explanation.get("budgets")
    if isinstance(budgets, list):
        out["budgets"] = [
            {
                k: b.get(k)
                for k in ("budget", "maxGpus", "gpusPerReplica", "granted", "desired", "heldBack")
            }
            for b in budgets
            if isinstance(b, Mapping)
        ]
    return out


def fleet_lines(explanation: Mapping[str, Any]) -> list[str]:
    """Text lines of the fleet records of an explanation (mode, external rescale, budget,
    drain), for :func:`autoscaler.decision.explain.render_text`."""
    lines: list[str] = []
    mode = explanation.get("mode")
    if isinstance(mode, Mapping):
        text = f"mode: {mode.get('mode')} (from {mode.get('source')})"
        if mode.get("warning"):
            text += f"; {mode.get('warning')}"
        lines.append(text)
    external = explanation.get("externalRescale")
    if isinstance(external, Mapping):
        lines.append(f"external rescale: {external.get('message')}")
    budget = explanation.get("budget")
    if isinstance(budget, Mapping):
        lines.append(f"budget: {budget.get('note')}")
    drain = explanation.get("drain")
    if isinstance(drain, Mapping):
        lines.extend(drain_lines(drain))
    return lines
