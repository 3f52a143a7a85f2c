"""Decisions made visible in the cluster: Events on the target and a status annotation.

Implements :class:`autoscaler.controller.ports.Recorder` for Kubernetes.

- **Events** (core/v1, ``involvedObject`` = the scale target) with the HPA's reasons:
  ``SuccessfulRescale`` (Normal) for each scale, and a Warning for each failure:
  ``FailedGetScale``/``FailedUpdateScale``/``FailedRescale`` or, when metrics failed, the reason
  of the decision's ``ScalingActive=False`` condition (``FailedGetPodsMetric``...). They are
  written through :class:`autoscaler.kube.events.EventSink`, which aggregates repeats as the
  client-go event correlator does (one Event per (object, type, reason, message), its ``count``
  patched at most once per ``aggregate_interval``).
- **Status annotation** ``nim-autoscaler.io/status`` on the target object: a JSON record (see
  ``docs/kubernetes.md``) written with a merge PATCH only when its content, ignoring
  ``observedAt``, changed.

Nothing is written for ``DRY_RUN`` or ``NOT_LEADER`` outcomes (only the leader writes, and dry
runs are read-only). API failures are logged, never raised. Neighbours: the control loop calls
:meth:`KubeRecorder.record`; :class:`autoscaler.kube.scale.Discovery` resolves target kinds;
:mod:`autoscaler.commands.status` reads the annotation back.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import structlog

from autoscaler.clock import Clock, SystemClock
from autoscaler.controller.ports import Outcome
from autoscaler.decision.fleet import fleet_events, fleet_status
from autoscaler.decision.record import decision_record
from autoscaler.decision.types import ConditionType, Decision
from autoscaler.errors import TargetNotFound
from autoscaler.kube.client import MERGE_PATCH, KubeApi, KubeApiError
from autoscaler.kube.events import COMPONENT, EventSink, EventSpec, InvolvedObject, rfc3339
from autoscaler.kube.scale import Discovery, ResourceRef
from autoscaler.policy.models import ScalingPolicy

log = structlog.get_logger(__name__)

STATUS_ANNOTATION = "nim-autoscaler.io/status"
"""Annotation on the scale target holding the JSON status record."""

__all__ = [
    "COMPONENT",
    "STATUS_ANNOTATION",
    "EventSpec",
    "KubeRecorder",
    "event_for",
    "rfc3339",
    "status_record",
]


def event_for(decision: Decision, outcome: Outcome, error: str | None) -> EventSpec | None:
    """The Event a decision and its outcome deserve (None: nothing worth an Event).

    Args:
        decision: the decision.
        outcome: what the loop did with it.
        error: the failure's message, for ``FAILED``.
    """
    if outcome is Outcome.SCALED:
        message = f"New size: {decision.desired_replicas}; reason: {decision.reason}"
        return EventSpec("Normal", "SuccessfulRescale", message)
    active = decision.condition(ConditionType.SCALING_ACTIVE)
    able = decision.condition(ConditionType.ABLE_TO_SCALE)
    if outcome is Outcome.FAILED:
        if able is not None and not able.status and able.reason.startswith("Failed"):
            reason = able.reason
        elif active is not None and not active.status and active.reason.startswith("Failed"):
            reason = active.reason
        else:
            reason = "FailedRescale"
        if reason == "FailedRescale":
            message = (
                f"New size: {decision.desired_replicas}; reason: {decision.reason}; "
                f"error: {error or 'unknown error'}"
            )
        else:
            message = error or (able.message if able and not able.status else "") or decision.reason
        return EventSpec("Warning", reason, message)
    for cond in (able, active):
        if cond is not None and not cond.status and cond.reason.startswith("Failed"):
            return EventSpec("Warning", cond.reason, cond.message or decision.reason)
    return None


def values_refresh_due(key: str, written_at: float, now: float, interval: float) -> bool:
    """Whether a record whose metric values alone moved is rewritten now.

    Each record has its own phase in the interval (a stable hash of ``key``) and is rewritten
    once it has crossed one of its phase's boundaries since ``written_at``, and at least half an
    interval after it: once per ``interval`` in steady state, and records first written in the
    same tick (a restart, 1,000 policies) refresh spread over the interval instead of together.
    """
    if interval <= 0:
        return True
    age = now - written_at
    if age >= interval or age < 0:
        return True
    if age < interval / 2:
        return False
    phase = (zlib.crc32(key.encode()) / 2**32) * interval
    return math.floor((now + phase) / interval) != math.floor((written_at + phase) / interval)


VALUES_TOLERANCE = 0.1
"""A metric value is rewritten once it moved by more than this fraction (of the larger of the
written value and the metric's target): the HPA's default tolerance, below which a change of
value changes no decision."""


def values_moved(before: Sequence[Any], after: Sequence[Any]) -> bool:
    """Whether the metrics of a status record moved enough to be rewritten.

    ``before``/``after``: the records' ``metrics`` lists (``name``, ``value``, ``proposal``,
    ``target``), in the same order. True when a metric's proposal changed, a value appeared
    or vanished, or a value moved by more than :data:`VALUES_TOLERANCE` of the larger of its
    written value and its target. A steady fleet's values jitter every tick at the fourth
    digit; rewriting them once a minute made the status the largest part of a steady tick's
    API requests at a thousand policies, for numbers that meant nothing new.
    """
    if len(before) != len(after):
        return True
    for old, new in zip(before, after, strict=True):
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return bool(old != new)
        if old.get("proposal") != new.get("proposal") or old.get("name") != new.get("name"):
            return True
        was, now = old.get("value"), new.get("value")
        if was is None or now is None:
            if (was is None) != (now is None):
                return True
            continue
        target = new.get("target")
        scale = max(abs(was), abs(target) if isinstance(target, int | float) else 0.0)
        if abs(now - was) > VALUES_TOLERANCE * scale:
            return True
    return False


def _number(value: float | None) -> float | None:
    """Four significant digits: enough to read, stable enough not to rewrite every tick."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


def _without_values(record: dict[str, Any]) -> dict[str, Any]:
    """The record minus metric values and proposals (what matters beyond the numbers)."""
    metrics = [
        {k: v for k, v in m.items() if k not in {"value", "proposal"}}
        for m in record.get("metrics") or []
        if isinstance(m, dict)
    ]
    return {**record, "metrics": metrics}


def status_record(
    policy: ScalingPolicy,
    decision: Decision,
    outcome: Outcome,
    error: str | None,
    last_scale_time: str | None,
) -> dict[str, Any]:
    """The JSON status record of a target (without ``observedAt``).

    The decision record (``docs/decision-schema.md``) without its explanation, every metric of
    the policy with its target (values to four significant digits), plus the target, its bounds,
    the outcome and the fleet fields.
    """
    record = decision_record(decision, explanation=False, metrics=False)
    record["metrics"] = [
        {
            "name": metric.name,
            "value": _number(decision.metric_values.get(metric.name)),
            "proposal": decision.metric_proposals.get(metric.name),
            "targetType": str(metric.target.type),
            "target": metric.target.threshold,
        }
        for metric in policy.spec.metrics
    ]
    ref = policy.spec.scale_target_ref
    return {
        **record,
        **fleet_status(decision),
        "target": f"{ref.kind}/{ref.name}",
        "minReplicas": policy.spec.min_replicas,
        "maxReplicas": policy.spec.max_replicas,
        "lastScaleTime": last_scale_time,
        "outcome": str(outcome),
        "error": error,
    }


class KubeRecorder:
    """:class:`~autoscaler.controller.ports.Recorder` with Events and a status annotation.

    Args:
        api: the API client.
        discovery: kind resolution (share the scale client's).
        clock: time for Event timestamps and throttling (injectable for tests).
        identity: this instance (``reportingInstance`` / ``source.host``).
        aggregate_interval: minimum seconds between writes (create or patch) of one Event key.
        cache_size: correlation keys remembered (LRU).
        status_refresh: seconds after which the remembered status annotation is re-read from
            the object instead of trusted (each target at a phase of its own: a restart does
            not re-read them all in one tick). What another instance wrote is re-read anyway:
            the first record after a tick this instance did not lead reads the object.
        values_refresh: when only metric values changed (replicas, outcome, reason and
            conditions did not), the annotation is rewritten once they moved beyond
            :data:`VALUES_TOLERANCE` (:func:`values_moved`), at most once per this many
            seconds, at a phase of its own (:func:`values_refresh_due`).
        events: the Event sink to write through (shared with the ScalingPolicy status writer);
            by default one of its own, built from ``clock``, ``identity``,
            ``aggregate_interval`` and ``cache_size``.
    """

    def __init__(
        self,
        api: KubeApi,
        discovery: Discovery,
        *,
        clock: Clock | None = None,
        identity: str = COMPONENT,
        aggregate_interval: float = 30.0,
        cache_size: int = 4096,
        status_refresh: float = 3600.0,
        values_refresh: float = 60.0,
        events: EventSink | None = None,
    ) -> None:
        self._api = api
        self._discovery = discovery
        self._clock: Clock = clock or SystemClock()
        self._events = events or EventSink(
            api,
            clock=self._clock,
            identity=identity,
            aggregate_interval=aggregate_interval,
            cache_size=cache_size,
        )
        self._status: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        """(namespace, plural, name) -> (when read/written, the record known on the object)."""
        self._status_refresh = status_refresh
        self._values_refresh = values_refresh
        self._uids: dict[tuple[str, str, str], str] = {}

    async def record(
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None = None,
        *,
        emit_event: bool = True,
    ) -> None:
        """Emit an Event (correlated) and update the status annotation if its content changed.

        ``emit_event=False`` updates the annotation only (the Events of a policy given as a
        ScalingPolicy resource go to that resource: :mod:`autoscaler.kube.policy_status`).
        """
        if outcome is Outcome.NOT_LEADER:
            self._forget(policy)  # another instance writes meanwhile: read it when back
            return
        if outcome is Outcome.DRY_RUN:
            return
        ref = policy.spec.scale_target_ref
        try:
            resource = await self._discovery.resolve(ref.api_version, ref.kind)
        except (TargetNotFound, KubeApiError) as exc:
            log.warning("record_discovery_failed", policy=policy.key, error=str(exc))
            return
        await self._update_status(policy, resource, decision, outcome, error)
        spec = event_for(decision, outcome, error) if emit_event else None
        if spec is not None:
            await self._emit(policy, resource, spec)
        for extra in fleet_events(decision, advisory=outcome is Outcome.ADVISORY):
            await self._emit(policy, resource, EventSpec(extra.type, extra.reason, extra.message))

    def settled(
        self, policy: ScalingPolicy, decision: Decision, outcome: Outcome, error: str | None = None
    ) -> bool:
        """Whether :meth:`record` would send nothing now, found without a request.

        True when the status annotation known from the last read or write stands for this
        decision (within its refresh interval) and no Event is due: a steady tick settles most
        policies here, without a task each. False (call :meth:`record`) otherwise, and for the
        not-leader and dry-run outcomes, which :meth:`record` handles without a request.
        """
        if outcome is Outcome.NOT_LEADER or outcome is Outcome.DRY_RUN:
            return False  # record() handles them (forgetting, or nothing) without a request
        ref = policy.spec.scale_target_ref
        resource = self._discovery.cached(ref.api_version, ref.kind)
        if resource is None or event_for(decision, outcome, error) is not None:
            return False
        if fleet_events(decision, advisory=outcome is Outcome.ADVISORY):
            return False
        key = (policy.metadata.namespace, resource.plural, ref.name)
        now = self._clock.now()
        cached = self._status.get(key)
        if cached is None or not self._trusted(policy, cached[0], now):
            return False
        return self._status_write(policy, decision, outcome, error, cached[1], cached, now) is None

    def _trusted(self, policy: ScalingPolicy, since: float, now: float) -> bool:
        """Whether the status remembered for the policy's target since ``since`` (read or
        written) still stands in for the object's (``status_refresh``, at a phase of its own)."""
        return not values_refresh_due(policy.key + "#read", since, now, self._status_refresh)

    def _status_write(  # noqa: PLR0917 - the record's inputs and what is known of the object
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None,
        previous: dict[str, Any] | None,
        cached: tuple[float, dict[str, Any]] | None,
        now: float,
    ) -> dict[str, Any] | None:
        """The status record to write, or None when the one on the object stands."""
        last_scale = previous.get("lastScaleTime") if previous else None
        if outcome is Outcome.SCALED:
            last_scale = rfc3339(decision.timestamp)
        written = status_record(policy, decision, outcome, error, last_scale)
        if previous is not None:
            change = _change(previous, written)
            if change is None:
                return None
            written_at = cached[0] if cached is not None else now
            if change == "values" and (
                not values_moved(previous.get("metrics") or [], written["metrics"])
                or not values_refresh_due(policy.key, written_at, now, self._values_refresh)
            ):
                return None  # only the numbers moved, within tolerance or too soon
        return written

    def _forget(self, policy: ScalingPolicy) -> None:
        """Drop what is remembered of a policy's target annotation (read again next time)."""
        if not self._status:
            return
        ref = policy.spec.scale_target_ref
        namespace = policy.metadata.namespace
        for key in [k for k in self._status if k[0] == namespace and k[2] == ref.name]:
            del self._status[key]

    # -- events ---------------------------------------------------------------------------

    async def _emit(self, policy: ScalingPolicy, resource: ResourceRef, spec: EventSpec) -> None:
        ref = policy.spec.scale_target_ref
        namespace = policy.metadata.namespace
        target = InvolvedObject(
            ref.api_version,
            ref.kind,
            namespace,
            ref.name,
            self._uids.get((namespace, resource.plural, ref.name)),
        )
        try:
            await self._events.emit(target, spec, policy=policy.key)
        except KubeApiError as exc:
            log.warning(
                "event_write_failed",
                policy=policy.key,
                reason=spec.reason,
                status=exc.status,
                error=exc.message,
            )

    # -- status annotation ----------------------------------------------------------------

    async def _update_status(
        self,
        policy: ScalingPolicy,
        resource: ResourceRef,
        decision: Decision,
        outcome: Outcome,
        error: str | None,
    ) -> None:
        ref = policy.spec.scale_target_ref
        namespace = policy.metadata.namespace
        key = (namespace, resource.plural, ref.name)
        path = resource.path(namespace, ref.name)
        try:
            now = self._clock.now()
            cached = self._status.get(key)
            if cached is not None and self._trusted(policy, cached[0], now):
                previous: dict[str, Any] | None = cached[1]
            else:
                previous = await self._read_status(key, path)
                if previous is not None:
                    self._status[key] = (now, _without_observed(previous))
            written = self._status_write(policy, decision, outcome, error, previous, cached, now)
            if written is None:
                return
            text = json.dumps({**written, "observedAt": rfc3339(decision.timestamp)})
            patch = {"metadata": {"annotations": {STATUS_ANNOTATION: text}}}
            await self._api.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
            self._status[key] = (now, _without_observed(written))
            log.debug("status_annotation_written", policy=policy.key)
        except KubeApiError as exc:
            self._status.pop(key, None)
            log.warning(
                "status_annotation_failed",
                policy=policy.key,
                status=exc.status,
                error=exc.message,
                rule=resource.rule("patch", namespace) if exc.status == 403 else None,
            )

    async def _read_status(self, key: tuple[str, str, str], path: str) -> dict[str, Any] | None:
        obj = await self._api.request("GET", path)
        meta = obj.get("metadata") or {}
        if meta.get("uid"):
            self._uids[key] = str(meta["uid"])
        text = (meta.get("annotations") or {}).get(STATUS_ANNOTATION)
        if not text:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


def _change(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> Literal["values", "more"] | None:
    """How ``after`` differs from ``before``, the observation times aside: not at all (None),
    in its metrics' values and proposals only (``values``), or in more (``more``).

    Asked of every policy on every tick: compared field by field, without copying either.
    """
    metrics = False
    for key, value in after.items():
        if key in _OBSERVED:
            continue
        if before.get(key, _ABSENT) != value:
            if key != "metrics":
                return "more"
            metrics = True
    if len(before.keys() - _OBSERVED) != len(after.keys() - _OBSERVED):
        return "more"  # a field only ``before`` has
    if not metrics:
        return None
    same = _without_values({"metrics": before.get("metrics")}) == _without_values(
        {"metrics": after.get("metrics")}
    )
    return "values" if same else "more"


_ABSENT = object()


def _without_observed(record: dict[str, Any]) -> dict[str, Any]:
    """The record minus the times of the observation (what a rewrite would change)."""
    return {k: v for k, v in record.items() if k not in _OBSERVED}


_OBSERVED = frozenset({"observedAt", "time"})
