"""The Event sink: core/v1 Events written with client-go's correlation, for any involved object.

:class:`EventSink` is the one writer of Events. The target recorder
(:mod:`autoscaler.kube.recorder`, Events on the scale target) and the ScalingPolicy status writer
(:mod:`autoscaler.kube.policy_status`, Events on the policy resource) both emit through it.

As the client-go event correlator: a repeat of the same (involved object, type, reason, message)
does not create a new Event; the existing one's ``count``/``lastTimestamp`` is PATCHed, at most
once per ``aggregate_interval`` (repeats in between are counted and carried by the next patch). A
new Event object is created on first sight, or when the old one expired (404 on the patch: the
new one carries the running count and the first timestamp). The correlation cache is an LRU of
``cache_size`` keys. API failures are raised to the caller, which logs them under its own name.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from autoscaler.clock import Clock, SystemClock
from autoscaler.kube.client import MERGE_PATCH, JsonObject, KubeApi, KubeApiError

log = structlog.get_logger(__name__)

COMPONENT = "nim-autoscaler"
"""``source.component`` / ``reportingController`` of the Events."""

MESSAGE_LIMIT = 1024
"""Longest Event message written (longer ones are cut)."""


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC with second precision (``metav1.Time``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class EventSpec:
    """What to emit for one record call."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class InvolvedObject:
    """The object an Event is about (its ``involvedObject``)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None
    """Written when known (``kubectl describe`` matches Events by uid)."""

    def as_json(self) -> JsonObject:
        """The ``involvedObject`` field."""
        out: JsonObject = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
        }
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass(slots=True)
class _Sent:
    """One correlated Event as last written."""

    name: str
    count: int
    first: str
    last_sent: float


class EventSink:
    """Writes Events, aggregating repeats into ``count`` (see the module docstring).

    Args:
        api: the API client.
        clock: time for Event timestamps and the aggregation interval.
        identity: this instance (``reportingInstance`` / ``source.host``).
        aggregate_interval: minimum seconds between writes (create or patch) of one Event key.
        cache_size: correlation keys remembered (least recently used forgotten first).
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        clock: Clock | None = None,
        identity: str = COMPONENT,
        aggregate_interval: float = 30.0,
        cache_size: int = 4096,
    ) -> None:
        self._api = api
        self._clock: Clock = clock or SystemClock()
        self._identity = identity
        self._interval = aggregate_interval
        self._cache_size = cache_size
        self._sent: OrderedDict[tuple[str, ...], _Sent] = OrderedDict()
        self._sequence = 0

    async def emit(self, obj: InvolvedObject, spec: EventSpec, **log_fields: object) -> None:
        """Create the Event, or count a repeat of it (patched at most once per interval).

        Args:
            obj: the object the Event is about.
            spec: its type, reason and message.
            log_fields: fields of this sink's log lines (e.g. ``policy=<key>``).

        Raises:
            KubeApiError: the create or patch failed (the repeat stays counted).
        """
        key = (
            obj.namespace,
            obj.api_version,
            obj.kind,
            obj.name,
            obj.uid or "",
            spec.type,
            spec.reason,
            spec.message,
        )
        now = self._clock.now()
        seen = self._sent.get(key)
        if seen is None:
            self._sent[key] = await self._create(obj, spec, 1, rfc3339(now), now, log_fields)
            while len(self._sent) > self._cache_size:
                self._sent.popitem(last=False)
            return
        self._sent.move_to_end(key)
        seen.count += 1
        if now - seen.last_sent < self._interval:
            log.debug("event_aggregated", **log_fields, reason=spec.reason, count=seen.count)
            return
        try:
            await self._api.request(
                "PATCH",
                f"/api/v1/namespaces/{obj.namespace}/events/{seen.name}",
                body={"count": seen.count, "lastTimestamp": rfc3339(now)},
                content_type=MERGE_PATCH,
            )
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            # The Event expired (Events have a TTL): start a new one carrying the count.
            self._sent[key] = await self._create(obj, spec, seen.count, seen.first, now, log_fields)
            return
        seen.last_sent = now

    async def _create(  # noqa: PLR0917 - the Event's fields, its time and the log's
        self,
        obj: InvolvedObject,
        spec: EventSpec,
        count: int,
        first: str,
        now: float,
        log_fields: dict[str, object],
    ) -> _Sent:
        # As client-go: "<object>.<unix nanoseconds in hex>"; the sequence number keeps names
        # unique when a (virtual) clock gives two events the same instant.
        self._sequence += 1
        name = f"{obj.name}.{int(now * 1e9) + self._sequence:x}"
        body: JsonObject = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": obj.namespace},
            "involvedObject": obj.as_json(),
            "reason": spec.reason,
            "message": spec.message[:MESSAGE_LIMIT],
            "type": spec.type,
            "source": {"component": COMPONENT, "host": self._identity},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._identity,
            "firstTimestamp": first,
            "lastTimestamp": rfc3339(now),
            "count": count,
        }
        created = await self._api.request(
            "POST", f"/api/v1/namespaces/{obj.namespace}/events", body=body
        )
        log.info("event_created", **log_fields, reason=spec.reason, message=spec.message)
        meta = created.get("metadata")
        written = meta.get("name") if isinstance(meta, dict) else None
        return _Sent(str(written or name), count, first, now)
