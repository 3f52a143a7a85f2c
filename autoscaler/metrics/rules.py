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
from dataclasses import dataclass

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
