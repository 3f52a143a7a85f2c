"""Recording rules the presets can read instead of raw series: names, detection probe, coverage.

The chart's PrometheusRule (``charts/nim-autoscaler/templates/prometheusrule.yaml``, values
``prometheusRule.recordingRules``) can record, for every exported histogram and counter the
presets read and for each configured rate window ``W``, the per-pod rates the batched queries of
:mod:`autoscaler.metrics.prometheus` would otherwise evaluate at every tick:

=====================  ======================================================================
recorded series        expression
=====================  ======================================================================
``namespace_pod_le:<h>_bucket:rate<W>``  ``sum by (namespace, pod, le) (rate(<h>_bucket[W]))``
``namespace_pod:<h>_sum:rate<W>``        ``sum by (namespace, pod) (rate(<h>_sum[W]))``
``namespace_pod:<h>_count:rate<W>``      ``sum by (namespace, pod) (rate(<h>_count[W]))``
``namespace_pod:<c>:rate<W>``            ``sum by (namespace, pod) (rate(<c>[W]))``
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

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autoscaler.promql import namespace_matcher, quote_string, regex_alternation

RECORDED_KINDS = frozenset({"rate", "buckets", "sum", "count"})
"""Batch kinds (:class:`autoscaler.metrics.prometheus.Batch`) that can read a recorded series."""

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
        return f"namespace_pod_le:{name}_bucket:rate{suffix}"
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
        if raw > 0 and pods.get((need.recorded, namespace), 0) >= raw:
            usable.add(need.recorded)
    return frozenset(usable)
