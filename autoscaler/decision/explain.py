"""Human-readable rendering of a decision's explanation.

:func:`autoscaler.decision.core.decide` records the full arithmetic of a tick in
``Decision.explanation`` (a JSON-ready dict: per-metric inputs, ratios, tolerance band and
proposals; the combination; the stabilization window; each rate policy's limit; the min/max
clamp; the capacity credited to starting pods), as an :class:`Explanation` that builds that dict
on first read. :func:`render_text` turns it into the block that ``nim-autoscaler explain``,
dry-run and replay print. Pure formatting, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Final, Generic, TypeVar

from autoscaler.decision.fleet import fleet_lines
from autoscaler.decision.types import Decision

_MAX_PODS_SHOWN = 8
_T = TypeVar("_T")


class Explanation(Mapping[str, Any], Generic[_T]):
    """A decision's explanation record, built on first read.

    ``decide`` keeps the values the arithmetic was done with (``source``) and a pure function
    that turns them into the JSON-ready dict; nothing is formatted unless someone reads it. On
    first access the dict is built once and every later read uses it. It reads like that dict:
    ``[...]``, ``get``, ``in``, iteration, ``len``, ``keys/items/values``, ``dict(...)`` (then
    ``json.dumps``) and ``==`` with dicts or other explanations; ``repr`` shows the dict and
    pickling/copying gives the plain dict. The inputs it is built from are immutable by contract
    (:mod:`autoscaler.decision.types`), so reading it later gives what ``decide`` saw.
    """

    __slots__ = ("_data", "_pending")

    def __init__(self, build: Callable[[_T], dict[str, Any]], source: _T) -> None:
        """Keep ``build`` and its argument; nothing is computed yet."""
        self._pending: tuple[Callable[[_T], dict[str, Any]], _T] | None = (build, source)
        self._data: dict[str, Any] = {}

    def _dict(self) -> dict[str, Any]:
        pending = self._pending
        if pending is None:
            return self._data
        # Pure: two threads racing here build equal dicts and either may be kept.
        data = pending[0](pending[1])
        self._data = data
        self._pending = None
        return data

    def __getitem__(self, key: str) -> Any:
        if self._pending is None:
            return self._data[key]
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __contains__(self, key: object) -> bool:
        return key in self._dict()

    def get(self, key: str, default: Any = None) -> Any:
        """As ``dict.get``."""
        return self._dict().get(key, default)

    def keys(self) -> KeysView[str]:
        """As ``dict.keys``."""
        return self._dict().keys()

    def items(self) -> ItemsView[str, Any]:
        """As ``dict.items``."""
        return self._dict().items()

    def values(self) -> ValuesView[Any]:
        """As ``dict.values``."""
        return self._dict().values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Explanation):
            return self._dict() == other._dict()
        if isinstance(other, dict):
            return self._dict() == other
        if isinstance(other, Mapping):
            return self._dict() == dict(other.items())
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] # a dict is not hashable either

    def __repr__(self) -> str:
        return repr(self._dict())

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (self._dict(),)


class _LazyMark:
    """The type of :data:`LAZY` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LAZY"


LAZY: Final = _LazyMark()
"""Marks a text of an explanation detail that is formatted only when the explanation is read.

The tuple ``(LAZY, template, *args)`` stands for ``template.format(*args)``, which is what the
equivalent f-string gives (both call ``format(arg, spec)``): the hot path keeps a tuple of the
numbers (a fraction of the cost of formatting floats) and :func:`resolve_text` formats it when
the explanation is built. An argument may itself be such a tuple (formatted as its text).
"""


def _is_lazy(value: object) -> bool:
    return type(value) is tuple and len(value) > 1 and value[0] is LAZY


def lazy_str(value: tuple[Any, ...]) -> str:
    """The text a ``(LAZY, template, *args)`` tuple stands for."""
    args = [lazy_str(arg) if _is_lazy(arg) else arg for arg in value[2:]]
    return str(value[1]).format(*args)


def resolve_text(detail: Mapping[str, Any]) -> dict[str, Any]:
    """``detail`` with every ``(LAZY, template, *args)`` value formatted (same keys and order)."""
    return {key: lazy_str(value) if _is_lazy(value) else value for key, value in detail.items()}


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _age(observation: Mapping[str, Any]) -> str:
    """The sample age: ``12.5s``, or ``<60s`` when only a bound is known."""
    age = observation.get("sampleAge")
    below = observation.get("sampleAgeBelow")
    if age is None and below is not None:
        return f"<{_num(below)}s"
    return f"{_num(age)}s"


def _metric_lines(record: Mapping[str, Any]) -> list[str]:
    target = record.get("target", {})
    tol = record.get("tolerance", {})
    band = tol.get("band", [None, None])
    obs = record.get("observation", {})
    head = (
        f"  - {record.get('name')} ({record.get('kind')}): target {target.get('type')} "
        f"{_num(target.get('value'))}"
    )
    lines = [head]
    kind = obs.get("type")
    if kind == "podSamples":
        values: Mapping[str, float] = obs.get("values", {})
        shown = ", ".join(f"{k}={_num(v)}" for k, v in list(values.items())[:_MAX_PODS_SHOWN])
        more = len(values) - _MAX_PODS_SHOWN
        if more > 0:
            shown += f", ... (+{more})"
        lines.append(
            f"      samples: {len(values)} pods [{shown}], series {obs.get('series')}, "
            f"age {_age(obs)}"
        )
    elif kind == "targetSample":
        lines.append(
            f"      value {_num(obs.get('value'))}, series {obs.get('series')}, "
            f"pods {_num(obs.get('pods'))}, age {_age(obs)}"
        )
    else:
        lines.append(f"      no signal: {obs.get('reason')} {obs.get('detail', '')}".rstrip())
    arithmetic: Mapping[str, Any] = record.get("arithmetic", {})
    pods = arithmetic.get("pods")
    if isinstance(pods, Mapping):
        lines.append("      pods: " + ", ".join(f"{k} {v}" for k, v in pods.items()))
    lines.append(
        f"      value {_num(record.get('value'))}, ratio {_num(record.get('ratio'))}, "
        f"tolerance band [{_num(band[0])}, {_num(band[1])}]"
    )
    if "rule" in arithmetic:
        lines.append(f"      {arithmetic['rule']}")
    if "guard" in record:
        lines.append(f"      latency guard: {record['guard']}")
    failure = record.get("failure")
    if failure:
        lines.append(f"      INVALID {failure.get('reason')}: {failure.get('message')}")
    else:
        lines.append(f"      proposal: {_num(record.get('proposal'))}")
    return lines


def render_lines(explanation: Mapping[str, Any]) -> list[str]:
    """The explanation as text lines (see :func:`render_text`)."""
    lines = [
        f"policy {explanation.get('policy')} [{explanation.get('algorithm')}] at "
        f"t={_num(explanation.get('time'))}: current {explanation.get('currentReplicas')} "
        f"(status {explanation.get('statusReplicas')}), bounds "
        f"[{explanation.get('minReplicas')}, {explanation.get('maxReplicas')}]"
    ]
    if "firstSight" in explanation:
        lines.append(f"first sight: {explanation['firstSight']}")
    pods = explanation.get("pods")
    if isinstance(pods, Mapping):
        lines.append(
            f"pods: ready {pods.get('ready')}, starting {pods.get('starting')} "
            f"(credited {pods.get('credited')}, stuck {pods.get('stuck')}), unschedulable "
            f"{pods.get('unschedulable')}; capacity {pods.get('capacity')}; start-up estimate "
            f"{_num(pods.get('startupEstimateSeconds'))}s"
        )
    if "precheck" in explanation:
        lines.append(f"pre-check: {explanation['precheck']} (no metrics read)")
    metrics = explanation.get("metrics")
    if metrics:
        lines.append("metrics:")
        for record in metrics:
            lines.extend(_metric_lines(record))
    lines.extend(_slo_lines(explanation))
    combined = explanation.get("combined")
    if isinstance(combined, Mapping):
        lines.append(f"combined: {combined.get('rule')}")
    fallback = explanation.get("fallback")
    if isinstance(fallback, Mapping):
        lines.append(
            f"fallback: {fallback.get('consecutiveFailures')} ticks without a valid metric -> "
            f"{fallback.get('replicas')} replicas"
        )
    stab = explanation.get("stabilization")
    if isinstance(stab, Mapping):
        text = (
            f"stabilization ({stab.get('path')}): input {stab.get('input')}; down window "
            f"{stab.get('downWindowSeconds')}s {_records(stab.get('downWindow'))} -> max "
            f"{_num(stab.get('downBound'))}"
        )
        if "upWindowSeconds" in stab:
            text += (
                f"; up window {stab.get('upWindowSeconds')}s {_records(stab.get('upWindow'))}"
                f" -> min {_num(stab.get('upBound'))}"
            )
        lines.append(f"{text}; chosen {stab.get('value')} ({stab.get('reason')})")
    limits = explanation.get("limits")
    if isinstance(limits, Mapping):
        lines.extend(_limit_lines(limits))
    lines.extend(_zero_lines(explanation))
    lines.append(f"=> desired {explanation.get('desiredReplicas')}: {explanation.get('reason')}")
    lines.extend(fleet_lines(explanation))
    return lines


def _zero_lines(explanation: Mapping[str, Any]) -> list[str]:
    """Text lines of the ``scaleToZero`` record (:mod:`autoscaler.decision.zero`)."""
    record = explanation.get("scaleToZero")
    if not isinstance(record, Mapping):
        return []
    lines = [f"scale to zero (minReplicas 0, idleFor {record.get('idleForSeconds'):g}s):"]
    for signal in record.get("signals", []):
        value = signal.get("value")
        shown = "no data" if value is None else f"{value:.4g}"
        note = f" ({signal['note']})" if signal.get("note") else ""
        lines.append(f"  {signal.get('role')} {signal.get('name')}: {shown}{note}")
    if record.get("idleSince") is not None:
        lines.append(
            f"  idle since t={record['idleSince']:g} ({record.get('idleSeconds', 0):.0f}s)"
        )
    if record.get("rule"):
        lines.append(f"  {record['rule']}")
    return lines


def _slo_lines(explanation: Mapping[str, Any]) -> list[str]:
    """The SLO sizing (``slo``) and the capacity behind it (``capacity``), when present."""
    lines: list[str] = []
    capacity = explanation.get("capacity")
    if isinstance(capacity, Mapping):
        evidence = capacity.get("evidence") or {}
        lines.append(
            f"capacity ({capacity.get('source')}): "
            f"{_num(capacity.get('perReplicaRequestsPerSecond'))} req/s per ready replica "
            f"within the SLO, planned at {_num(capacity.get('plannedRequestsPerSecond'))}; "
            f"evidence: met up to {_num(evidence.get('metSloUpTo'))}, violated from "
            f"{_num(evidence.get('violatedSloFrom'))}"
        )
        if capacity.get("note"):
            lines.append(f"  {capacity['note']}")
    slo = explanation.get("slo")
    if isinstance(slo, Mapping):
        objectives = ", ".join(
            f"{o.get('name')} p{_num(100 * float(o.get('quantile') or 0))} "
            f"{_num(o.get('measured'))}/{_num(o.get('target'))}s"
            for o in slo.get("objectives") or ()
        )
        lines.append(f"slo: objectives {objectives or 'none measured'}")
        lines.append(
            f"  arrivals {_num(slo.get('arrivalsPerSecond'))}/s, forecast "
            f"{_num(slo.get('forecastPerSecond'))}/s (trend "
            f"{_num(slo.get('trendForecastPerSecond'))}, daily "
            f"{_num(slo.get('dailyForecastPerSecond'))}, recurring bursts "
            f"{_num(slo.get('recurringBurstsPerSecond'))}), peak "
            f"{_num(slo.get('peakPerSecond'))}/s,"
            f" waiting {_num(slo.get('waiting'))} -> {_num(slo.get('replicasNeeded'))} replicas;"
            f" floor {slo.get('floor')}; steady sample: {slo.get('sample')}"
        )
        if slo.get("rule"):
            lines.append(f"  {slo['rule']}")
        if slo.get("failure"):
            lines.append(f"  INVALID: {slo['failure']}")
        else:
            lines.append(f"  proposal: {_num(slo.get('proposal'))}")
        if slo.get("floorApplied"):
            lines.append(f"  {slo['floorApplied']}")
    return lines


def _records(records: Any) -> str:
    if not records:
        return "[]"
    return "[" + ", ".join(f"{r[1]}@-{_num(r[0])}s" for r in records) + "]"


def _limit_lines(limits: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if "legacyScaleUpLimit" in limits:
        lines.append(
            f"scale-up cap (no behavior): max(2 x current, 4) = {limits['legacyScaleUpLimit']}"
        )
    elif limits.get("direction") not in (None, "none"):
        lines.append(
            f"rate limits ({limits.get('direction')}, selectPolicy {limits.get('selectPolicy')}):"
        )
        winner = limits.get("winner")
        for index, pol in enumerate(limits.get("policies", [])):
            mark = " <- chosen" if index == winner else ""
            lines.append(
                f"  - {pol['type']} {pol['value']}/{pol['periodSeconds']}s: period start "
                f"{pol['periodStart']} -> limit {pol['limit']}{mark}"
            )
        lines.append(f"  rate limit {_num(limits.get('rateLimit'))}")
    lines.append(
        f"clamp [{limits.get('minReplicas')}, {limits.get('maxReplicas')}]: "
        f"{limits.get('input')} -> {limits.get('output')} ({limits.get('reason')})"
    )
    return lines


def render_text(decision: Decision) -> str:
    """A readable multi-line block showing the decision's full arithmetic.

    Args:
        decision: A decision returned by :func:`autoscaler.decision.core.decide`.

    Returns:
        The text (no trailing newline).
    """
    lines = render_lines(decision.explanation)
    for cond in decision.conditions:
        lines.append(
            f"condition {cond.type.value}={cond.status} {cond.reason}: {cond.message}".rstrip()
        )
    return "\n".join(lines)
