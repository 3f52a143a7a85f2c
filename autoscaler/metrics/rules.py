"""Recording rules the presets can read instead of raw series: names, detection probe, coverage.

The chart's PrometheusRule (``charts/nim-autoscaler/templates/prometheusrule.yaml``, values
``prometheusRule.recordingRules``) can record, for every exported histogram and counter the
presets read and for each configured rate window ``W``, the per-pod rates the batched queries of
:mod:`autoscaler.metrics.prometheus` would otherwise evaluate at every tick:

=====================  ======================================================================
recorded series        expression
=====================  ======================================================================
``namespace_workload_le:<h>_bucket:rate<W>``  the bucket rates summed by namespace,
                                         ``workload`` and ``le`` (:func:`by_workload`)
``namespace_pod:<h>_sum:rate<W>``        ``sum by (namespace, pod) (rate(<h>_sum[W]))``
``namespace_pod:<h>_count:rate<W>``      ``sum by (namespace, pod) (rate(<h>_count[W]))``
``namespace_pod:<c>:rate<W>``            ``sum by (namespace, pod) (rate(<c>[W]))``
``namespace_pod_le:<h>_bucket:rate<W>``  ``sum by (namespace, pod, le) (rate(<h>_bucket[W]))``
                                         (only with ``podHistograms``: the workload sums
                                         are then computed from it)
=====================  ======================================================================

(``level:metric:operations``, the Prometheus naming convention; ``W`` in the shortest
Prometheus form: ``30s``, ``2m``, ``1h``, ``90s``.) Gauges are read raw: recording them would
only add the rule's evaluation lag.

Nothing is configured in the controller: the source asks Prometheus which recorded series exist
(:func:`probe_query`, one query for every namespace and rule, repeated every few minutes) and
uses a recorded series in a namespace only when it covers at least as many pods there as the raw
series it replaces (:func:`covered`), so a rule restricted to some jobs, a rule not yet
evaluated or one removed never hides a pod. Pure functions; the I/O is in
:mod:`autoscaler.metrics.prometheus`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from autoscaler.promql import namespace_matcher, quote_string, regex_alternation

RECORDED_KINDS = frozenset({"rate", "buckets", "sum", "count"})
"""Batch kinds (:class:`autoscaler.metrics.prometheus.Batch`) that can read a recorded series."""

WORKLOAD_LABEL = "workload"
"""The label a pod's histogram is summed by: its name without the last ``-`` segment."""
WORKLOAD_REGEX = "(.+)-[^-]*"
"""RE2, anchored as ``label_replace`` anchors it: the ReplicaSet of a Deployment's pod
(``<deployment>-<template hash>``), the StatefulSet of ``<statefulset>-<ordinal>``."""
WORKLOAD_PREFIX = "namespace_workload_le:"
"""Recorded histograms already summed by workload."""
POD_BUCKETS_PREFIX = "namespace_pod_le:"
"""Recorded per-pod bucket rates (one series per pod and ``le``)."""


@functools.lru_cache(maxsize=1 << 16)
def workload_of(pod: str) -> str:
    """The ``workload`` label ``label_replace`` gives a pod (empty: the regex did not match).

    ``(.+)`` is greedy: everything before the last ``-``, which must not be the first character.
    Asked for every pod several times a tick: memoised (a pod keeps its name; the bound is
    several times the pods of a large fleet).
    """
    cut = pod.rfind("-")
    return pod[:cut] if cut > 0 else ""


def by_workload(expr: str) -> str:
    """``expr`` (series with ``namespace``, ``pod`` and ``le``) summed per workload and ``le``."""
    return (
        f"sum by (namespace, {WORKLOAD_LABEL}, le) (label_replace({expr}, "
        f'"{WORKLOAD_LABEL}", "$1", "pod", "{WORKLOAD_REGEX}"))'
    )


def workload_name(name: str, window: float | None) -> str | None:
    """The recorded per-workload histogram of a histogram and window, or None if none can be."""
    pod_level = recorded_name("buckets", name, window)
    if pod_level is None:
        return None
    return WORKLOAD_PREFIX + pod_level.removeprefix(POD_BUCKETS_PREFIX)


def workload_needs(name: str, window: float | None) -> tuple[RuleNeed, ...]:
    """What a quantile read from recorded per-workload histograms needs (empty: no rule can).

    The histograms summed by workload, and the per-pod ``_count`` rates: one series per pod
    that has bucket rates (a histogram's count is its +Inf bucket), which tell which pods the
    sums hold. The per-pod bucket series are not needed (the chart does not record them by
    default: they cost Prometheus as much as the raw rate they replace).
    """
    workload = workload_name(name, window)
    counts = recorded_name("count", name, window)
    if workload is None or counts is None:
        return ()
    raw = raw_reference("count", name)
    return (RuleNeed(workload, raw), RuleNeed(counts, raw))


_UNITS = (("h", 3600), ("m", 60), ("s", 1))


def window_suffix(seconds: float) -> str | None:
    """The window as recording-rule names write it (``2m``, ``90s``, ``1h``), or None.

    None for a window that is not a whole number of seconds (no rule is shipped for it).
    """
    if not math.isfinite(seconds) or seconds <= 0 or seconds != int(seconds):
        return None
    whole = int(seconds)
    for unit, size in _UNITS:
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return None  # pragma: no cover - the "s" unit always divides


def recorded_name(kind: str, name: str, window: float | None) -> str | None:
    """The recorded series holding a batch's per-pod rates, or None if no rule can record it.

    Args:
        kind: The batch kind (``rate``, ``buckets``, ``sum``, ``count``; others: None).
        name: The exported metric name (histograms: the base name).
        window: The rate window, seconds.
    """
    if kind not in RECORDED_KINDS or window is None:
        return None
    suffix = window_suffix(window)
    if suffix is None:
        return None
    if kind == "buckets":
        return f"{POD_BUCKETS_PREFIX}{name}_bucket:rate{suffix}"
    if kind == "rate":
        return f"namespace_pod:{name}:rate{suffix}"
    return f"namespace_pod:{name}_{kind}:rate{suffix}"


def raw_reference(kind: str, name: str) -> str:
    """The raw series whose pods a recorded series must cover (histograms: ``<name>_count``)."""
    return name if kind == "rate" else f"{name}_count"


@dataclass(frozen=True, slots=True)
class RuleNeed:
    """A recorded series the source would like to read, and the raw series it replaces."""

    recorded: str
    raw: str


def probe_query(needs: Iterable[RuleNeed], namespaces: Iterable[str]) -> str:
    """One query counting, per series name and namespace, the pods that have it.

    Bucket series are counted on their ``le="+Inf"`` bucket only (one series per pod), so the
    probe reads about one series per pod and name, never every bucket.
    """
    names = {n for need in needs for n in (need.recorded, need.raw)}
    pattern = quote_string(regex_alternation(names))
    return (
        "count by (__name__, namespace) (count by (__name__, namespace, pod) "
        f'({{__name__=~"{pattern}", le=~"|\\\\+Inf", {namespace_matcher(namespaces)}}}))'
    )


def covered(
    needs: Iterable[RuleNeed], pods: Mapping[tuple[str, str], int], namespace: str
) -> frozenset[str]:
    """The recorded names usable in a namespace, from the probe's pod counts.

    A recorded series is usable when it covers at least as many pods as its raw series (and the
    raw series has some: where nothing is exported, the raw query gives the clearer "no signal").

    Args:
        needs: The recorded series asked about.
        pods: Pods per (series name, namespace), as :func:`probe_query` answers.
        namespace: The namespace to judge.
    """
    usable = set()
    for need in needs:
        raw = pods.get((need.raw, namespace), 0)
        recorded = pods.get((need.recorded, namespace), 0)
        if need.recorded.startswith(WORKLOAD_PREFIX):
            # Summed by workload: no pod label, so one "pod" wherever it exists. Which pods it
            # covers is checked at every read, against the per-pod recorded series.
            if raw > 0 and recorded > 0:
                usable.add(need.recorded)
        elif raw > 0 and recorded >= raw:
            usable.add(need.recorded)
    return frozenset(usable)


# ---------------------------------------------------------------------------------------------
# When the rules evaluate: the tick's phase
# ---------------------------------------------------------------------------------------------

READY_FACTOR = 1.5
"""A group's output counts as written this many times its evaluation time (the longest of the
last few read, :func:`longest_durations`) after the evaluation started: evaluations vary in
length from one to the next (3.2-4.6 s here for one group, ticks apart), and Prometheus is
still busy for a moment after one. Measured at 1,000 policies, 4 ticks per start: metric fetch
median 0.69 s at 1.25 times the evaluation time, 0.53 s one second later (about 1.5 times),
0.67 and 0.82 s two and three seconds later..."""
READY_SLACK = 0.5
"""...plus this many seconds."""
QUIET_SHARE = 0.75
"""No phase when the group's evaluation (with the margin above) fills more than this share of its
interval: there is no quiet stretch to aim at."""


@dataclass(frozen=True, slots=True)
class RuleGroup:
    """One recording rule group as Prometheus's ``/api/v1/rules`` reports it."""

    name: str
    file: str
    interval: float
    """Seconds between evaluations."""
    last_started: float
    """Start of the last evaluation, seconds since the epoch."""
    duration: float
    """Seconds the last evaluation took."""
    records: frozenset[str]
    """The names of the series its rules record."""


@dataclass(frozen=True, slots=True)
class RulePhase:
    """When the recording rules the source reads have just been written, on a fixed period."""

    group: str
    period: float
    """The group's evaluation interval, seconds."""
    ready: float
    """One time (seconds since the epoch) at which an evaluation's output is complete; every
    ``period`` before and after it is another."""
    duration: float
    """Seconds the group's last evaluation took."""


def parse_rule_groups(answer: object) -> tuple[RuleGroup, ...]:
    """The recording rule groups of a decoded ``/api/v1/rules`` answer.

    Groups never evaluated (Prometheus reports the zero time), without a positive interval or
    without recording rules are left out; so is anything not shaped as the API documents.

    Raises:
        ValueError: The answer is not a successful rules answer at all.
    """
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise ValueError("not a successful rules answer")
    data = answer.get("data")
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ValueError("no data.groups list")
    out = []
    for group in groups:
        parsed = _rule_group(group)
        if parsed is not None:
            out.append(parsed)
    return tuple(out)


def _rule_group(group: object) -> RuleGroup | None:
    if not isinstance(group, dict):
        return None
    interval, duration = group.get("interval"), group.get("evaluationTime")
    rules, started = group.get("rules"), _epoch(group.get("lastEvaluation"))
    if not isinstance(interval, int | float) or not isinstance(duration, int | float):
        return None
    if not isinstance(rules, list) or started is None or not math.isfinite(interval):
        return None
    records = frozenset(
        rule["name"]
        for rule in rules
        if isinstance(rule, dict)
        and rule.get("type") == "recording"
        and isinstance(rule.get("name"), str)
    )
    if interval <= 0 or not records or not math.isfinite(duration) or duration < 0:
        return None
    return RuleGroup(
        name=str(group.get("name", "")),
        file=str(group.get("file", "")),
        interval=float(interval),
        last_started=started,
        duration=float(duration),
        records=records,
    )


def _epoch(text: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as Prometheus writes it; None for the zero
    time (never evaluated) or anything else."""
    if not isinstance(text, str):
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None or stamp.year < 1971:
        return None
    return stamp.timestamp()


def longest_durations(
    groups: Iterable[RuleGroup],
    previous: Mapping[tuple[str, str], tuple[float, ...]],
    keep: int,
) -> tuple[tuple[RuleGroup, ...], dict[tuple[str, str], tuple[float, ...]]]:
    """``groups``, each with the longest of its last ``keep`` evaluation times, and those times.

    One evaluation's duration varies by a third or more from the next, and a probe reads only
    the last one. ``previous``: the times kept by the last call, per (file, group name); a group
    no longer served is forgotten.
    """
    kept: dict[tuple[str, str], tuple[float, ...]] = {}
    longest = []
    for group in groups:
        key = (group.file, group.name)
        times = (*previous.get(key, ()), group.duration)[-keep:]
        kept[key] = times
        longest.append(replace(group, duration=max(times)))
    return tuple(longest), kept


def rule_phase(groups: Iterable[RuleGroup], recorded: Iterable[str]) -> RulePhase | None:
    """The phase to tick at for the recorded series in use, or None.

    The group recording most of ``recorded`` (ties: the longest evaluation, then the name); None
    when no group records any of them or when that group's evaluation, with its margin, leaves
    no quiet stretch in its interval.
    """
    wanted = frozenset(recorded)
    best: tuple[int, float, str] | None = None
    chosen: RuleGroup | None = None
    for group in groups:
        hits = len(group.records & wanted)
        if not hits:
            continue
        rank = (hits, group.duration, group.name)
        if best is None or rank > best:
            best, chosen = rank, group
    if chosen is None:
        return None
    lag = chosen.duration * READY_FACTOR + READY_SLACK
    if lag > chosen.interval * QUIET_SHARE:
        return None
    return RulePhase(
        group=chosen.name,
        period=chosen.interval,
        ready=chosen.last_started + lag,
        duration=chosen.duration,
    )
