"""The ``/status`` of ScalingPolicy resources and the Events attached to them.

:func:`policy_status` turns a :class:`~autoscaler.decision.types.Decision` into the status the
HPA would write (``observedGeneration``, ``currentReplicas``, ``desiredReplicas``,
``lastScaleTime``, ``conditions``) plus ``lastDecision`` (:mod:`autoscaler.policy.status`).
:class:`PolicyStatusWriter` writes it through the ``/status`` subresource only when it changed
(a change of metric values alone once per ``values_refresh`` seconds, spread), with the
object's resourceVersion, re-reading and retrying on 409 Conflict. Events go to the ScalingPolicy
object itself, so ``kubectl describe scalingpolicy X`` tells the story; they are written through
:class:`autoscaler.kube.events.EventSink`, as the target's (repeats aggregated into ``count``).

:class:`ResourceAwareRecorder` is the loop's :class:`~autoscaler.controller.ports.Recorder`: for a
policy that came from a resource it writes that resource's status and Events (and keeps the
target's status annotation); for a file policy it defers to
:class:`~autoscaler.kube.recorder.KubeRecorder` unchanged. :meth:`PolicyStatusWriter.report`
writes the status of resources that do not run (invalid, or in conflict with a file).
Nothing is written in dry-run or by a non-leader (the caller decides).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from autoscaler.clock import Clock, SystemClock
from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import ConditionType, Decision
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.kube.events import COMPONENT, EventSink, EventSpec, InvolvedObject, rfc3339
from autoscaler.kube.policies import resource_path
from autoscaler.kube.recorder import KubeRecorder, event_for, values_moved, values_refresh_due
from autoscaler.policy.crd import SCALING_POLICY
from autoscaler.policy.models import ScalingPolicy
from autoscaler.policy.sources import ResourcePolicy, ResourceProblem
from autoscaler.policy.status import DecisionReason

log = structlog.get_logger(__name__)

CONFLICT_RETRIES = 3
"""Attempts of one status write when the object changed meanwhile (409)."""

_STABILIZED = {"ScaleUpStabilized", "ScaleDownStabilized"}
_RATE_LIMITED = {"ScaleUpLimit", "ScaleDownLimit"}
_CLAMPED = {"TooManyReplicas", "TooFewReplicas"}


def decision_reason(decision: Decision, outcome: Outcome) -> DecisionReason:
    """The KEP-6107 style reason of a decision (see :class:`DecisionReason`)."""
    if outcome is Outcome.FAILED and not decision.explanation:
        return DecisionReason.FAILED
    active = decision.condition(ConditionType.SCALING_ACTIVE)
    fallback = decision.condition(ConditionType.FALLBACK)
    if fallback is not None and fallback.status:
        return DecisionReason.FALLBACK
    if active is not None and not active.status:
        if active.reason == "ScalingDisabled":
            return DecisionReason.SCALING_DISABLED
        return DecisionReason.INVALID_METRICS
    limited = decision.condition(ConditionType.SCALING_LIMITED)
    if limited is not None and limited.status:
        if limited.reason in _RATE_LIMITED:
            return DecisionReason.POLICY_LIMITED
        if limited.reason in _CLAMPED:
            return DecisionReason.REPLICA_LIMIT
    able = decision.condition(ConditionType.ABLE_TO_SCALE)
    if able is not None and able.reason in _STABILIZED:
        return DecisionReason.STABILIZED
    if decision.desired_replicas == decision.current_replicas:
        return DecisionReason.WITHIN_TOLERANCE
    return DecisionReason.RECOMMENDED


def _number(value: object) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def last_decision(policy: ScalingPolicy, decision: Decision, outcome: Outcome) -> dict[str, Any]:
    """The ``status.lastDecision`` record (JSON, camelCase) of a decision."""
    explanation: Mapping[str, Any] = decision.explanation or {}
    record: dict[str, Any] = {
        "time": rfc3339(decision.timestamp),
        "reason": decision_reason(decision, outcome).value,
        "message": decision.reason[:4096],
        "currentReplicas": max(0, decision.current_replicas),
        "desiredReplicas": max(0, decision.desired_replicas),
    }
    combined = explanation.get("combined")
    if isinstance(combined, Mapping) and _int(combined.get("proposal")) is not None:
        record["recommendation"] = combined["proposal"]
    metrics: list[dict[str, Any]] = []
    for metric in policy.spec.metrics:
        entry: dict[str, Any] = {
            "name": metric.name,
            "kind": metric.kind.value,
            "targetType": metric.target.type.value,
            "target": metric.target.threshold,
        }
        value = _number(decision.metric_values.get(metric.name))
        if value is not None:
            entry["value"] = value
        proposal = _int(decision.metric_proposals.get(metric.name))
        if proposal is not None:
            entry["proposal"] = proposal
        metrics.append(entry)
    record["metrics"] = metrics
    stab = explanation.get("stabilization")
    if isinstance(stab, Mapping) and _int(stab.get("input")) is not None:
        stabilization: dict[str, Any] = {
            "recommendation": stab["input"],
            "replicas": _int(stab.get("value")) or 0,
            "scaleDownWindowSeconds": int(stab.get("downWindowSeconds") or 0),
            "reason": str(stab.get("reason") or "ReadyForNewScale")[:64],
        }
        if stab.get("upWindowSeconds") is not None:
            stabilization["scaleUpWindowSeconds"] = int(stab["upWindowSeconds"])
        record["stabilization"] = stabilization
    limits = explanation.get("limits")
    if isinstance(limits, Mapping) and limits.get("direction") in {"up", "down"}:
        rate: dict[str, Any] = {
            "direction": limits["direction"],
            "limited": bool(limits.get("limited")),
        }
        if limits.get("selectPolicy") is not None:
            rate["selectPolicy"] = str(limits["selectPolicy"])
        winner = limits.get("winner")
        policies = limits.get("policies") or []
        if isinstance(winner, int) and 0 <= winner < len(policies):
            chosen = policies[winner]
            rate.update(
                type=str(chosen["type"]),
                value=int(chosen["value"]),
                periodSeconds=int(chosen["periodSeconds"]),
            )
        limit = limits.get("rateLimit", limits.get("legacyScaleUpLimit"))
        if isinstance(limit, int | float) and math.isfinite(limit):
            rate["limit"] = max(0, int(limit))
            record["rateLimit"] = rate
    return record


def _conditions(
    wanted: Sequence[tuple[str, bool, str, str]],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """metav1.Conditions, keeping ``lastTransitionTime`` when a condition's status is unchanged."""
    before = {str(c.get("type")): c for c in previous if isinstance(c, Mapping)}
    out: list[dict[str, Any]] = []
    for kind, status, reason, message in wanted:
        text = "True" if status else "False"
        old = before.get(kind)
        since = (
            str(old["lastTransitionTime"])
            if old is not None and old.get("status") == text and old.get("lastTransitionTime")
            else now
        )
        out.append(
            {
                "type": kind,
                "status": text,
                "reason": reason or "Unknown",
                "message": message[:32768],
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
    return out


def policy_status(  # noqa: PLR0917 - the decision's four facts plus where it goes
    resource: ResourcePolicy,
    policy: ScalingPolicy,
    decision: Decision,
    outcome: Outcome,
    error: str | None,
    previous: Mapping[str, Any],
) -> dict[str, Any]:
    """The full ``status`` after a decision (``previous``: the status on the object)."""
    now = rfc3339(decision.timestamp)
    last_scale = previous.get("lastScaleTime")
    if outcome is Outcome.SCALED:
        last_scale = now
    wanted = [(str(c.type), c.status, c.reason, c.message) for c in decision.conditions]
    if error and not any(kind == str(ConditionType.ABLE_TO_SCALE) for kind, *_ in wanted):
        wanted.insert(0, (str(ConditionType.ABLE_TO_SCALE), False, "FailedRescale", error))
    wanted.append(("Valid", True, "ValidPolicy", "the policy passed the controller's validation"))
    failed = decision_reason(decision, outcome) is DecisionReason.FAILED
    current = decision.current_replicas
    desired = decision.desired_replicas
    if failed and previous.get("currentReplicas") is not None:
        # No reading of the target: the last known counts say more than a made-up 0.
        current = int(previous["currentReplicas"])
        desired = int(previous.get("desiredReplicas", current))
    status: dict[str, Any] = {
        "observedGeneration": resource.generation,
        "currentReplicas": max(0, current),
        "desiredReplicas": max(0, desired),
        "conditions": _conditions(
            wanted, previous.get("conditions") or [], resource.generation, now
        ),
        "lastDecision": last_decision(policy, decision, outcome),
    }
    if failed:
        status["lastDecision"].update(
            currentReplicas=max(0, current), desiredReplicas=max(0, desired)
        )
    if last_scale:
        status["lastScaleTime"] = last_scale
    return status


def problem_status(
    problem: ResourceProblem, previous: Mapping[str, Any], now: float
) -> dict[str, Any]:
    """The ``status`` of a resource that does not run: conditions say where and why."""
    resource = problem.resource
    stamp = rfc3339(now)
    invalid = problem.reason == "InvalidPolicy"
    wanted = [
        (
            str(ConditionType.SCALING_ACTIVE),
            False,
            problem.reason,
            "the policy is not applied: " + problem.message,
        ),
        (
            "Valid",
            not invalid,
            "InvalidSpec" if invalid else "ValidPolicy",
            problem.message if invalid else "the policy passed the controller's validation",
        ),
    ]
    status = {k: v for k, v in previous.items() if k not in {"conditions", "observedGeneration"}}
    status["observedGeneration"] = resource.generation
    status["conditions"] = _conditions(
        wanted, previous.get("conditions") or [], resource.generation, stamp
    )
    return status


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status minus what changes every tick without meaning anything new."""
    out = dict(status)
    decision = out.get("lastDecision")
    if isinstance(decision, Mapping):
        out["lastDecision"] = {k: v for k, v in decision.items() if k != "time"}
    return out


def _without_values(status: Mapping[str, Any]) -> dict[str, Any]:
    out = _comparable(status)
    decision = out.get("lastDecision")
    if isinstance(decision, Mapping):
        metrics = [
            {k: v for k, v in m.items() if k != "value"} for m in decision.get("metrics") or []
        ]
        out["lastDecision"] = {**decision, "metrics": metrics}
    return out


def _metrics(status: Mapping[str, Any]) -> list[Any]:
    decision = status.get("lastDecision")
    metrics = decision.get("metrics") if isinstance(decision, Mapping) else None
    return list(metrics) if isinstance(metrics, list) else []


@dataclass(slots=True)
class _Written:
    status: dict[str, Any]
    at: float
    """When this instance last wrote it (-inf: only read)."""
    resource_version: str
    read_at: float
    """When it was last read or written (trusted for ``status_refresh`` seconds)."""


class PolicyStatusWriter:
    """Writes ScalingPolicy ``/status`` (only on change, conflicts retried) and their Events.

    Args:
        api: the API client.
        clock: time for Event timestamps and the values throttle.
        identity: this instance (``reportingInstance``).
        values_refresh: when only metric values changed, rewrite once they moved beyond the
            tolerance (``recorder.values_moved``), at most once per this many seconds (at a
            phase of its own: ``recorder.values_refresh_due``).
        status_refresh: seconds after which the remembered status is read again from the
            object instead of trusted (each at a phase of its own); what another instance
            wrote is re-read anyway after a tick this instance did not lead.
        aggregate_interval: minimum seconds between writes of one repeated Event.
        cache_size: Events remembered for aggregation (least recently used forgotten first).
        events: the Event sink to write through (shared with the target recorder); by default
            one of its own, built from ``clock``, ``identity``, ``aggregate_interval`` and
            ``cache_size``.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        clock: Clock | None = None,
        identity: str = COMPONENT,
        values_refresh: float = 60.0,
        status_refresh: float = 3600.0,
        aggregate_interval: float = 30.0,
        cache_size: int = 4096,
        events: EventSink | None = None,
    ) -> None:
        self._api = api
        self._clock: Clock = clock or SystemClock()
        self._values_refresh = values_refresh
        self._status_refresh = status_refresh
        self._events = events or EventSink(
            api,
            clock=self._clock,
            identity=identity,
            aggregate_interval=aggregate_interval,
            cache_size=cache_size,
        )
        self._written: dict[str, _Written] = {}
        """uid -> what this instance last wrote (or read) on the object."""
        self.writes = 0
        """Successful status writes (observability and tests)."""
        self.conflicts = 0
        """409 answers seen (each retried)."""

    def forget(self, keep: set[str]) -> None:
        """Drop what is remembered about resources (by uid) that are gone."""
        for uid in [uid for uid in self._written if uid not in keep]:
            del self._written[uid]

    async def write_decision(
        self,
        resource: ResourcePolicy,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None,
    ) -> None:
        """Write the status after a decision, and the decision's Event, on the resource."""
        await self._write(
            resource,
            lambda previous: policy_status(resource, policy, decision, outcome, error, previous),
        )
        spec = event_for(decision, outcome, error)
        if spec is not None:
            await self.event(resource, spec)

    async def report(self, problems: Sequence[ResourceProblem]) -> None:
        """Write the status (and a Warning Event) of each resource that does not run."""
        now = self._clock.now()
        for problem in problems:

            def build(previous: Mapping[str, Any], p: ResourceProblem = problem) -> dict[str, Any]:
                return problem_status(p, previous, now)

            await self._write(problem.resource, build)
            await self.event(
                problem.resource, EventSpec("Warning", problem.reason, problem.message)
            )

    def forget_status(self, resource: ResourcePolicy) -> None:
        """Drop what is remembered of a resource's status: the next write reads it first
        (another instance may write it meanwhile)."""
        self._written.pop(resource.uid, None)

    async def _write(
        self,
        resource: ResourcePolicy,
        build: Callable[[Mapping[str, Any]], dict[str, Any]],
    ) -> None:
        object_path = resource_path(resource.namespace, resource.name)
        path = f"{object_path}/status"  # written through the subresource only
        now = self._clock.now()
        known = self._written.get(resource.uid)
        resource_version = resource.resource_version
        try:
            if known is None or values_refresh_due(
                resource.uid + "#read", known.read_at, now, self._status_refresh
            ):
                current = await self._api.request("GET", object_path)
                previous: Mapping[str, Any] = dict(current.get("status") or {})
                resource_version = str((current.get("metadata") or {}).get("resourceVersion", ""))
                written_at = known.at if known is not None else -math.inf
                known = _Written(dict(previous), written_at, resource_version, now)
                self._written[resource.uid] = known
            status = build(known.status)
            if _comparable(status) == _comparable(known.status):
                return
            if _without_values(status) == _without_values(known.status) and (
                not values_moved(_metrics(known.status), _metrics(status))
                or not values_refresh_due(resource.uid, known.at, now, self._values_refresh)
            ):
                return  # only the numbers moved, within tolerance or too soon
            # The version this instance last read or wrote; if the spec changed since, the PUT
            # gets 409 and is retried on a fresh read.
            resource_version = known.resource_version or resource_version
            for attempt in range(CONFLICT_RETRIES):
                body: JsonObject = {
                    "apiVersion": f"{SCALING_POLICY.group}/{SCALING_POLICY.version}",
                    "kind": SCALING_POLICY.kind,
                    "metadata": {
                        "name": resource.name,
                        "namespace": resource.namespace,
                        "resourceVersion": resource_version,
                    },
                    "status": status,
                }
                try:
                    written = await self._api.request("PUT", path, body=body)
                except KubeApiError as exc:
                    if exc.status != 409 or attempt == CONFLICT_RETRIES - 1:
                        raise
                    self.conflicts += 1
                    current = await self._api.request("GET", object_path)
                    meta = current.get("metadata") or {}
                    if str(meta.get("uid", resource.uid)) != resource.uid:
                        return  # deleted and re-created: the next tick starts afresh
                    resource_version = str(meta.get("resourceVersion", ""))
                    status = build(dict(current.get("status") or {}))
                    continue
                meta = written.get("metadata") or {}
                self._written[resource.uid] = _Written(
                    status, now, str(meta.get("resourceVersion", resource_version)), now
                )
                self.writes += 1
                log.debug("policy_status_written", policy=resource.key)
                return
        except KubeApiError as exc:
            self._written.pop(resource.uid, None)
            log.warning(
                "policy_status_failed",
                policy=resource.key,
                status=exc.status,
                error=exc.message,
                rule=(
                    f"update on {SCALING_POLICY.plural}/status in {SCALING_POLICY.group}"
                    if exc.status == 403
                    else None
                ),
            )

    async def event(self, resource: ResourcePolicy, spec: EventSpec) -> None:
        """An Event on the ScalingPolicy (repeats aggregated into ``count``, as client-go)."""
        involved = InvolvedObject(
            f"{SCALING_POLICY.group}/{SCALING_POLICY.version}",
            SCALING_POLICY.kind,
            resource.namespace,
            resource.name,
            resource.uid,
        )
        try:
            await self._events.emit(involved, spec, policy=resource.key)
        except KubeApiError as exc:
            log.warning(
                "policy_event_failed",
                policy=resource.key,
                reason=spec.reason,
                status=exc.status,
                error=exc.message,
            )


class ResourceAwareRecorder:
    """The loop's recorder: resource policies report on their own object, files as before.

    Args:
        target_recorder: Events and the status annotation on the scale target.
        writer: the ScalingPolicy status and Events writer.
        origin: key -> the resource a policy in force came from (None: a file policy).
    """

    def __init__(
        self,
        target_recorder: KubeRecorder,
        writer: PolicyStatusWriter,
        origin: Callable[[str], ResourcePolicy | None],
    ) -> None:
        self._target = target_recorder
        self._writer = writer
        self._origin = origin

    def settled(
        self, policy: ScalingPolicy, decision: Decision, outcome: Outcome, error: str | None = None
    ) -> bool:
        """As :meth:`KubeRecorder.settled` for a file policy; a ScalingPolicy resource's status
        has its own writer: always :meth:`record`."""
        if self._origin(policy.key) is not None:
            return False
        return self._target.settled(policy, decision, outcome, error)

    async def record(
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None = None,
    ) -> None:
        """Record one decision (nothing for dry-run or not-leader outcomes)."""
        resource = self._origin(policy.key)
        if resource is None:
            await self._target.record(policy, decision, outcome, error)
            return
        if outcome is Outcome.NOT_LEADER:
            self._writer.forget_status(resource)
            await self._target.record(policy, decision, outcome, error)
        if outcome in {Outcome.DRY_RUN, Outcome.NOT_LEADER}:
            return
        # The target keeps its status annotation (read by `nim-autoscaler status`); the Events
        # go to the ScalingPolicy, as the HPA's go to the HorizontalPodAutoscaler.
        await self._target.record(policy, decision, outcome, error, emit_event=False)
        await self._writer.write_decision(resource, policy, decision, outcome, error)
