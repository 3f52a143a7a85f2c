"""The queue bookkeeping ``algorithm: llm`` carries between ticks (``History.queue``).

Typed and versioned; :meth:`QueueState.to_json` is its serialised form (``v`` 1) and
:meth:`QueueState.from_json` reads it back. Histories written before this state was typed kept it
in ``History.extra`` under camelCase keys (``queueLast``, ``queueCandidate``, ``queueRef``,
``queueGrowth``, ``queueGrowthAt``, ``queueThroughput``, ``queueTrail``);
:meth:`QueueState.from_legacy` reads that form, so a controller upgraded in place decides on from
the state it saved.

Written by the queue signal (:mod:`autoscaler.decision.llm`: ``queue_state`` each tick,
``promote_queue_reference`` after a scale-up); read by the queue, request-rate and
running-requests proposals. Plain data: this module imports nothing of the project.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

QUEUE_STATE_VERSION = 1
"""Version of :meth:`QueueState.to_json`'s form."""


@dataclass(frozen=True, slots=True)
class QueueReading:
    """One queue metric's reading at one tick (the tick's candidate; after a scale-up, the
    reference the in-flight scale-up was decided from)."""

    t: float
    """Time of the reading, seconds."""
    total: float
    """Requests queued on the ready pods."""
    rate: float
    """Growth of the queue since the previous reading, requests/s (0 at first sight)."""
    first: bool
    """No previous reading to take a growth from."""
    per_pod: float | None
    """Per-pod throughput learned so far (requests/s of one saturated pod), None: not known."""
    served: float | None
    """Completions/s of the ready pods from the request-rate metric (None: no such sample)."""
    window_rate: float | None
    """Growth of the requests held over the request-rate window, requests/s (None: not known)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "t": self.t,
            "total": self.total,
            "rate": self.rate,
            "first": self.first,
            "perPod": self.per_pod,
            "served": self.served,
            "windowRate": self.window_rate,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueueReading:
        """Rebuild from :meth:`to_json` output (also the legacy candidate form, which has the same
        keys but tolerated missing or non-numeric entries)."""
        t = _opt(data.get("t"))
        return cls(
            t=math.nan if t is None else t,
            total=float(data.get("total", 0.0)),
            rate=float(data.get("rate", 0.0)),
            first=bool(data.get("first", True)),
            per_pod=_opt(data.get("perPod")),
            served=_opt(data.get("served")),
            window_rate=_opt(data.get("windowRate")),
        )


@dataclass(frozen=True, slots=True)
class GrowthPoint:
    """Queue growth measured at one ready count (for the per-pod throughput estimate)."""

    ready: int
    """Ready pods when it was measured."""
    rate: float
    """Queue growth, requests/s."""
    at: float | None
    """When it was measured (None: not recorded, as in some older histories)."""


@dataclass(frozen=True, slots=True)
class QueueState:
    """What the queue signal remembers, per queue metric name."""

    last: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """The last reading's ``(time, total)``."""
    candidates: Mapping[str, QueueReading] = field(default_factory=dict)
    """This tick's readings (only the metrics read this tick)."""
    references: Mapping[str, QueueReading] = field(default_factory=dict)
    """The readings at the last scale-up (the in-flight reference)."""
    growth: Mapping[str, tuple[GrowthPoint, ...]] = field(default_factory=dict)
    """Growth points, one per ready count, oldest first (bounded)."""
    throughput: Mapping[str, float] = field(default_factory=dict)
    """The last per-pod throughput estimated from a valid pair of points."""
    trails: Mapping[str, tuple[tuple[float, float, float], ...]] = field(default_factory=dict)
    """``(time, queued, running or -1)`` over the last request-rate window (policies with a
    request-rate metric), oldest first."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``v`` is the format version)."""
        return {
            "v": QUEUE_STATE_VERSION,
            "last": {k: [t, total] for k, (t, total) in self.last.items()},
            "candidates": {k: r.to_json() for k, r in self.candidates.items()},
            "references": {k: r.to_json() for k, r in self.references.items()},
            "growth": {
                k: [[p.ready, p.rate, p.at] for p in points] for k, points in self.growth.items()
            },
            "throughput": dict(self.throughput),
            "trails": {k: [list(p) for p in points] for k, points in self.trails.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QueueState:
        """Rebuild from :meth:`to_json` output; raises ``ValueError``/``TypeError`` if malformed."""
        version = data.get("v")
        if version != QUEUE_STATE_VERSION:
            msg = f"unknown queue state version {version!r}"
            raise ValueError(msg)
        return cls(
            last={str(k): (float(t), float(v)) for k, (t, v) in data.get("last", {}).items()},
            candidates={
                str(k): QueueReading.from_json(v) for k, v in data.get("candidates", {}).items()
            },
            references={
                str(k): QueueReading.from_json(v) for k, v in data.get("references", {}).items()
            },
            growth={
                str(k): tuple(GrowthPoint(int(r), float(g), _opt(at)) for r, g, at in points)
                for k, points in data.get("growth", {}).items()
            },
            throughput={str(k): float(v) for k, v in data.get("throughput", {}).items()},
            trails={
                str(k): tuple((float(t), float(q), float(r)) for t, q, r in points)
                for k, points in data.get("trails", {}).items()
            },
        )

    @classmethod
    def from_legacy(cls, extra: Mapping[str, Any]) -> QueueState:
        """Read the state from a history written before it was typed (``History.extra``).

        That form was read leniently (entries of the wrong shape were ignored when used), and so
        is it here: such entries are dropped.
        """
        last = {
            str(k): (float(v[0]), float(v[1]))
            for k, v in _items(extra.get("queueLast"))
            if isinstance(v, list | tuple) and len(v) == 2 and _number(v[0]) and _number(v[1])
        }
        growth: dict[str, tuple[GrowthPoint, ...]] = {}
        times = dict(_items(extra.get("queueGrowthAt")))
        for name, points in _items(extra.get("queueGrowth")):
            at = dict(_items(times.get(name)))
            kept = tuple(
                GrowthPoint(int(ready), float(rate), _opt(at.get(ready)))
                for ready, rate in _items(points)
                if _number(rate) and str(ready).isdigit()
            )
            if kept:
                growth[str(name)] = kept
        trails = {
            str(k): tuple(
                (float(p[0]), float(p[1]), float(p[2]))
                for p in v
                if isinstance(p, list | tuple) and len(p) == 3 and all(_number(x) for x in p)
            )
            for k, v in _items(extra.get("queueTrail"))
            if isinstance(v, list | tuple)
        }
        return cls(
            last=last,
            candidates=_readings(extra.get("queueCandidate")),
            references=_readings(extra.get("queueRef")),
            growth=growth,
            throughput={
                str(k): float(v) for k, v in _items(extra.get("queueThroughput")) if _number(v)
            },
            trails=trails,
        )


EMPTY_QUEUE_STATE = QueueState()
"""The state of a policy without queue readings."""


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _opt(value: object) -> float | None:
    return float(value) if _number(value) else None  # type: ignore[arg-type]


def _items(value: object) -> list[tuple[str, Any]]:
    """The entries of a legacy mapping (none when it is not one)."""
    return [(str(k), v) for k, v in value.items()] if isinstance(value, Mapping) else []


def _readings(value: object) -> dict[str, QueueReading]:
    return {k: QueueReading.from_json(v) for k, v in _items(value) if isinstance(v, Mapping)}
