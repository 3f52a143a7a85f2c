"""Scale to zero and back: ``algorithm: llm`` with ``minReplicas: 0``.

Pure. Two steps of :func:`autoscaler.decision.core.decide` for a policy resolved with scale-to-zero
rules (:attr:`~autoscaler.decision.resolved.ResolvedPolicy.zero`: ``algorithm: llm``,
``minReplicas: 0``):

* **At zero** (``spec.replicas`` is 0; :func:`from_zero`, the first step) only the activation
  signals are read: the policy's whole-target metrics
  (:attr:`~autoscaler.policy.models.MetricSpec.is_activation`: the gateway presets,
  ``prometheus`` with ``returns: target``), which exist while no pod runs. When one reads more
  than 0, the target wakes to ``N = ceil((arrivals + waiting / start-up) / per-replica
  capacity)`` replicas (at least 1, at most ``maxReplicas``): the requests held at the gateway are
  served within about one start-up time on top of the arrivals (``gatewayRequestRate``). The
  per-replica capacity is the capacity model's planned requests/s (learned, or the policy's
  ``capacity`` seed, :mod:`autoscaler.decision.capacity`); without one N is 1 and the usual rules
  size the fleet once its pods report. No activation signal this tick: stay at zero.
* **While replicas run** the usual steps run with a floor of 1 replica (the resolved
  ``min_replicas``), then the idle rule (:func:`to_zero`, the last step): the fleet is idle when
  every activation signal and the fleet's own signals (completions per second, requests running and
  waiting on every ready pod) read 0; ``idleSince`` (kept in the history, :class:`ZeroState`) is the
  first tick of the current idle stretch. After ``scaleToZero.idleFor`` of it, the target goes to 0
  at once (the idle time is its stabilization). Any request, and any missing or partial signal, ends
  the stretch: missing data never scales to zero.

``algorithm: hpa`` never comes here: it keeps the HPA's rule (a target at 0 is not scaled).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from autoscaler.decision import capacity as cap
from autoscaler.decision.fleet import with_records
from autoscaler.decision.pods import startup_estimate
from autoscaler.decision.resolved import ResolvedPolicy, ZeroRules
from autoscaler.decision.slo import SIGNAL_RATE, SIGNAL_RUNNING, SIGNAL_WAITING
from autoscaler.decision.types import (
    Condition,
    ConditionType,
    Decision,
    DecisionResult,
    History,
    MetricObservation,
    NoSignal,
    Observation,
    PodSamples,
    Recommendation,
    TargetSample,
)

RECORD = "scaleToZero"
"""Key of the rule's record in the decision's explanation."""


@dataclass(frozen=True, slots=True)
class ZeroState:
    """The scale-to-zero rule's state, persisted in ``History.zero``."""

    idle_since: float | None = None
    """First tick of the current stretch without a request (None: not idle, or unknown)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"idleSince": self.idle_since}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ZeroState:
        """Rebuild from :meth:`to_json` output; raises ``ValueError``/``TypeError`` if malformed."""
        raw = data.get("idleSince")
        if raw is None:
            return cls()
        value = float(raw)
        if not math.isfinite(value):
            msg = f"idleSince is not a finite time: {raw!r}"
            raise ValueError(msg)
        return cls(value)


@dataclass(frozen=True, slots=True)
class Activity:
    """What the tick says about requests: each signal's reading and the verdict."""

    signals: tuple[tuple[str, str, float | None, str], ...]
    """(name, role, value or None, note) per signal read; role ``waiting``, ``arrivals`` or
    ``fleet``."""
    waiting: float
    """Requests waiting at the gateway (sum of the waiting-type activation signals with data)."""
    arrivals: float
    """Requests/s reaching the gateway (sum of ``gatewayRequestRate`` signals with data)."""

    @property
    def active(self) -> bool:
        """Some signal reads a request (> 0)."""
        return any(value is not None and value > 0 for _, _, value, _ in self.signals)

    @property
    def complete(self) -> bool:
        """Every signal has data."""
        return all(value is not None for _, _, value, _ in self.signals)

    def to_json(self) -> list[dict[str, Any]]:
        """The signals, JSON-ready."""
        out: list[dict[str, Any]] = []
        for name, role, value, note in self.signals:
            entry: dict[str, Any] = {"name": name, "role": role, "value": value}
            if note:
                entry["note"] = note
            out.append(entry)
        return out


def activity(rules: ZeroRules, observation: Observation, *, fleet: bool) -> Activity:
    """Read the activation signals (and, with ``fleet``, the fleet's own request signals).

    Args:
        rules: The policy's scale-to-zero rules (its activation metrics are read).
        observation: The tick's observation.
        fleet: Also read completions/s and requests running and waiting on the ready pods.

    Returns:
        The readings; a signal without data (or a pod signal missing a ready pod) has value None.
    """
    signals: list[tuple[str, str, float | None, str]] = []
    waiting = arrivals = 0.0
    metrics = observation.metrics
    for name, role in rules.activation:
        value, note = _target_value(metrics.get(name))
        signals.append((name, role, value, note))
        if value is not None:
            if role == "arrivals":
                arrivals += value
            else:
                waiting += value
    if fleet:
        ready = tuple(p.name for p in observation.pods if p.ready and not p.deleting)
        for name in (SIGNAL_RATE, SIGNAL_RUNNING, SIGNAL_WAITING):
            value, note = _fleet_value(metrics.get(name), ready)
            signals.append((name, "fleet", value, note))
    return Activity(tuple(signals), waiting, arrivals)


def _target_value(observation: MetricObservation | None) -> tuple[float | None, str]:
    if isinstance(observation, TargetSample):
        return observation.value, ""
    if isinstance(observation, PodSamples):
        return math.fsum(observation.values.values()), ""
    if isinstance(observation, NoSignal):
        return None, f"no signal ({observation.reason.value})"
    return None, "not collected"


def _fleet_value(
    observation: MetricObservation | None, ready: tuple[str, ...]
) -> tuple[float | None, str]:
    if not ready:
        return None, "no ready pod"
    if isinstance(observation, PodSamples):
        values = observation.values
        missing = [name for name in ready if name not in values]
        if missing:
            return None, f"no sample from ready pod(s) {', '.join(missing[:3])}"
        return math.fsum(values[name] for name in ready), ""
    return _target_value(observation)


def to_zero(
    rp: ResolvedPolicy,
    observation: Observation,
    history: History,
    now: float,
    usual: DecisionResult,
) -> DecisionResult:
    """The idle rule, after the usual steps decided for a target with replicas (see the module
    docstring).

    Args:
        rp: The resolved policy (:attr:`~ResolvedPolicy.zero` is set).
        observation: The tick's observation (``spec.replicas`` > 0).
        history: The history the tick started from (its idle timer is read).
        now: Current time, seconds.
        usual: What the usual steps decided (floor 1 replica), and their next history.

    Returns:
        The decision (0 after ``idleFor`` without a request) and the next history.
    """
    rules = rp.zero
    assert rules is not None
    idle_for = rules.idle_for
    state = history.zero or ZeroState()
    seen = activity(rules, observation, fleet=True)
    if seen.active or not seen.complete:
        idle_since = None
    else:
        idle_since = state.idle_since if state.idle_since is not None else now
    decision = usual.decision
    record: dict[str, Any] = {
        "minReplicas": 0,
        "idleForSeconds": idle_for,
        "idleSince": idle_since,
        "idleSeconds": None if idle_since is None else now - idle_since,
        "signals": seen.to_json(),
    }
    current = observation.spec_replicas
    waking = not any(p.ready and not p.deleting for p in observation.pods)
    if waking and decision.desired_replicas > current:
        # No replica is ready yet: the requests held at the gateway wait for the cold start,
        # and more replicas would not start sooner. Grow only to what the wake-up sizing asks.
        cap_to, sizing = _size(rp, seen, history, now)
        cap_to = max(current, cap_to)
        if decision.desired_replicas > cap_to:
            record["waking"] = (
                f"no replica ready yet: {decision.desired_replicas} -> {cap_to} ("
                f"{sizing['rule']}); requests held at the gateway wait for the cold start"
            )
            decision = replace(
                decision,
                desired_replicas=cap_to,
                reason=f"{decision.reason}; held at {cap_to} while no replica is ready",
            )
    if idle_since is not None and now - idle_since >= idle_for:
        reason = (
            f"Scale to zero: no request for {now - idle_since:.0f}s (idle since "
            f"t={idle_since:g}) >= idleFor {idle_for:g}s"
        )
        record["rule"] = reason
        decision = replace(
            decision,
            desired_replicas=0,
            reason=reason,
            conditions=_with(
                decision.conditions,
                Condition(ConditionType.SCALING_LIMITED, True, "ScaledToZero", reason),  # noqa: FBT003
            ),
        )
    elif idle_since is not None:
        record["rule"] = (
            f"idle for {now - idle_since:.0f}s of idleFor {idle_for:g}s: keep at least 1 "
            "replica until then"
        )
    elif seen.active:
        record["rule"] = "requests seen this tick: the idle timer is reset"
    else:
        missing = [name for name, _, value, _ in seen.signals if value is None]
        record["rule"] = (
            f"no data from {', '.join(missing)}: the idle timer is reset (missing data never "
            "scales to zero)"
        )
    # The usual steps ran with a floor of 1; the policy's bounds are [0, max].
    decision = with_records(decision, {"minReplicas": 0, RECORD: record})
    next_history = replace(usual.history, zero=ZeroState(idle_since))
    return DecisionResult(decision, next_history)


def _size(
    rp: ResolvedPolicy, seen: Activity, history: History, now: float
) -> tuple[int, dict[str, Any]]:
    """Replicas for the load at the gateway: ``ceil((arrivals + waiting / start-up) / capacity)``
    (1 without a per-replica capacity), within ``[1, maxReplicas]``; and the record."""
    startup = startup_estimate(history.startup_samples, rp.startup_seconds, rp.startup_learning)
    model = history.capacity.model if history.capacity is not None else cap.CapacityModel()
    estimate = cap.estimate(
        model, now, rp.capacity_seed, rp.capacity_seed_source, None, rp.capacity_seed_lengths
    )
    per_replica = estimate.planned
    demand = seen.arrivals + seen.waiting / startup
    if per_replica:
        need = max(1, math.ceil(demand / per_replica - 1e-9))
        arithmetic = (
            f"ceil((arrivals {seen.arrivals:.4g}/s + waiting {seen.waiting:.4g} / start-up "
            f"{startup:.0f}s) / {per_replica:.4g} req/s per replica ({estimate.source})) = "
            f"{need}"
        )
    else:
        need = 1
        arithmetic = "no per-replica capacity known yet: 1 replica"
    desired = min(rp.max_replicas, need)
    if desired < need:
        arithmetic += f"; capped at maxReplicas {rp.max_replicas}"
    record = {
        "startupSeconds": startup,
        "perReplicaRequestsPerSecond": per_replica,
        "capacitySource": estimate.source,
        "rule": arithmetic,
    }
    return desired, record


def _with(conditions: tuple[Condition, ...], condition: Condition) -> tuple[Condition, ...]:
    return (*(c for c in conditions if c.type is not condition.type), condition)


def from_zero(
    rp: ResolvedPolicy, observation: Observation, history: History, now: float
) -> DecisionResult:
    """The target is at zero: wake it when requests wait at the gateway (no other step runs).

    Args:
        rp: The resolved policy (:attr:`~ResolvedPolicy.zero` is set).
        observation: The tick's observation (``spec.replicas`` is 0).
        history: The previous tick's history.
        now: Current time, seconds.

    Returns:
        The decision (0, or the wake-up sizing) and the next history.
    """
    rules = rp.zero
    assert rules is not None
    seen = activity(rules, observation, fleet=False)
    record: dict[str, Any] = {
        "minReplicas": 0,
        "idleForSeconds": rules.idle_for,
        "signals": seen.to_json(),
        "waiting": seen.waiting,
        "arrivalsPerSecond": seen.arrivals,
    }
    recommendations = history.recommendations
    if seen.active:
        desired, sizing = _size(rp, seen, history, now)
        reason = (
            f"Scale from zero: {seen.waiting:.4g} request(s) waiting, {seen.arrivals:.4g}/s "
            f"arriving at the gateway -> {desired}"
        )
        record.update(sizing)
        recommendations = (*recommendations, Recommendation(now, desired))
        active = Condition(
            ConditionType.SCALING_ACTIVE,
            True,  # noqa: FBT003 - Condition's own field order
            "ScaleFromZero",
            f"requests wait at the gateway: waking to {desired} replica(s)",
        )
    elif seen.complete:
        desired = 0
        reason = "At zero: no request waiting at the gateway"
        record["rule"] = "every activation signal reads 0: stay at zero"
        active = Condition(
            ConditionType.SCALING_ACTIVE,
            True,  # noqa: FBT003 - Condition's own field order
            "ScaledToZero",
            "the target is at zero and no request waits",
        )
    else:
        desired = 0
        missing = [name for name, _, value, _ in seen.signals if value is None]
        reason = f"At zero: no data from activation signal(s) {', '.join(missing)}"
        record["rule"] = "an activation signal has no data and none reads a request: stay at zero"
        active = Condition(
            ConditionType.SCALING_ACTIVE,
            False,  # noqa: FBT003 - Condition's own field order
            "FailedGetExternalMetric",
            f"unable to read activation signal(s) {', '.join(missing)}",
        )
    explanation: dict[str, Any] = {
        "policy": rp.key,
        "algorithm": "llm",
        "time": now,
        "currentReplicas": 0,
        "statusReplicas": observation.status_replicas,
        "minReplicas": 0,
        "maxReplicas": rp.max_replicas,
        RECORD: record,
        "desiredReplicas": desired,
        "reason": reason,
    }
    values = {name: value for name, _, value, _ in seen.signals}
    decision = Decision(
        rp.key,
        now,
        0,
        desired,
        reason,
        (
            Condition(
                ConditionType.ABLE_TO_SCALE,
                True,  # noqa: FBT003 - Condition's own field order
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
            active,
        ),
        values,
        {name: desired for name, _, value, _ in seen.signals if value},
        explanation,
    )
    next_history = replace(
        history, initialized=True, recommendations=recommendations, zero=ZeroState()
    )
    return DecisionResult(decision, next_history)
