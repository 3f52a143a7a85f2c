"""The Prometheus metric source: batched PromQL per tick, joined to each policy through its pods.

Implements :class:`~autoscaler.metrics.base.MetricSource` for the control loop
(:mod:`autoscaler.controller`) and ``nim-autoscaler explain``. Neighbours: :mod:`.client` (HTTP,
auth, retries), :mod:`.promql` (escaping, templates), :mod:`.names` (metric-name families),
:mod:`.quantile` (``histogram_quantile`` in Python).

One tick (:meth:`PrometheusSource.fetch`):

1. ``metricNames: auto`` policies need their namespace's family: one probe query
   ``count by (namespace, __name__) ({__name__=~"<every known name>", namespace=~"..."})`` for
   all namespaces whose cached answer is older than ``detect_interval`` (or where a policy's
   own preset found no series, at most every ``redetect_min_interval``).
2. One query per (series, statistic, window) for all policies together, restricted to the
   namespaces involved and grouped ``by (namespace, pod)`` (``by (namespace, pod, le)`` for
   histogram buckets), plus one freshness query per series: for gauges and recorded series the
   exceptions only (the pods whose newest sample is older than ``REPORT_AGE``); for raw
   counters and histograms, whose rates outlive the series, every pod's newest sample time,
   from which the source keeps the old ones and the pods with a value and no current sample
   (:func:`_settle_stamps`). Custom ``prometheus`` queries run once per policy. The number of
   queries does not grow with the number of policies.
3. Each policy takes the series of its own pods (other pods' series are ignored); pods with no
   series are missing. Quantiles sum the bucket rates of the policy's pods: by default
   Prometheus sums them per workload and computes each workload's quantile
   (``target_quantile``), checked at every read to hold exactly the target's pods; a
   target of several workloads (a rollout) reads their histograms and sums them.

Where the chart's recording rules cover a namespace (:mod:`.rules`: detected by a probe every
``rules_probe_interval``, run beside the batches), the rate batches read the recorded per-pod
series instead of evaluating ``rate()``; a recorded series that comes back empty is re-read raw
in the same tick.

No-signal rules (never 0): empty result, NaN, +-Inf, a pod whose newest sample is older than the
metric's max staleness (default ``max(3 x window, 120 s)``) or whose series Prometheus has marked
stale (a stopped exporter: the value may linger in a rate window but the instant selector is
gone), a query error, timeout or malformed body, values out of domain (negative, KV cache > 1.5,
above 1e12), several series for a ``returns: target`` custom query. Only a custom query with
``emptyAs`` turns an empty result into a number.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from typing import Literal

import structlog

from autoscaler.decision.types import (
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodSamples,
    TargetSample,
)
from autoscaler.metrics import names as metric_names
from autoscaler.metrics import rules as recording
from autoscaler.metrics.base import MetricRequest, PolicyMetrics
from autoscaler.metrics.client import PrometheusClient, QueryFailed, Series
from autoscaler.metrics.gateway import gateway_query
from autoscaler.metrics.quantile import parse_le, target_quantile
from autoscaler.metrics.vector import Columns, KeyedRow
from autoscaler.policy.models import (
    GATEWAY_KINDS,
    SIGNAL_PREFIX,
    GatewayMetricSpec,
    LatencyMetricSpec,
    MetricKind,
    MetricNames,
    MetricSpec,
    PrometheusMetricSpec,
    RateMetricSpec,
)
from autoscaler.promql import (
    TemplateError,
    fill_template,
    format_duration,
    namespace_matcher,
    quote_string,
    regex_alternation,
)
from autoscaler.settings import Settings

log = structlog.get_logger(__name__)

MAX_VALUE = 1e12
"""Values above this are absurd for any metric here (INVALID)."""
MAX_KV_CACHE = 1.5
"""KV-cache usage is 0..1; above this the exporter is broken (INVALID)."""
MIN_STALENESS = 120.0
"""Default max staleness is ``max(3 x window, MIN_STALENESS)`` seconds."""
REPORT_AGE = 60.0
"""Freshness batches list the pods whose newest sample is older than this (or than the max
staleness, if lower); newer samples are fresh without their exact age."""

BatchKind = Literal[
    "value",
    "rate",
    "buckets",
    "sum",
    "count",
    "fresh",
    "stamps",
    "target_quantile",
    "target_buckets",
    "presence",
]
PodKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    """One batched query: a statistic of one series, for every namespace that needs it."""

    kind: BatchKind
    name: str
    """Metric name (histograms: the base name; ``fresh``: the exact series name)."""
    aggregation: str = "sum"
    """How several series of one pod combine (``value`` only): ``sum`` or ``max``."""
    window: float | None = None
    recorded: str | None = None
    """Read this recording rule's series instead of evaluating ``rate()`` over the raw ones
    (``fresh``: the timestamps of this recorded series)."""
    older_than: float = 0.0
    """``fresh``, ``stamps``, recorded ``presence``: the pods whose newest sample is older than
    this many seconds are reported with its time."""
    quantile: float | None = None
    """``target_quantile``: the quantile Prometheus computes per workload."""
    _hash: int = field(init=False, repr=False, compare=False)
    """The hash, computed once: batches key the dictionaries of a tick, thousands of lookups."""

    def __post_init__(self) -> None:
        fields = (self.kind, self.name, self.aggregation, self.window, self.recorded)
        object.__setattr__(self, "_hash", hash((*fields, self.older_than, self.quantile)))

    def __hash__(self) -> int:
        return self._hash

    def promql(self, namespaces: Iterable[str]) -> str:
        """The PromQL text for these namespaces."""
        ns = namespace_matcher(namespaces)
        w = format_duration(self.window) if self.window is not None else ""
        if self.kind == "target_quantile":
            # The quantile of each workload's histogram, computed by Prometheus: one row per
            # workload instead of one per workload and bucket (a target of one workload, the
            # common case, reads it as it is).
            return f"histogram_quantile({self.quantile!r}, {self._by_workload(ns, w)})"
        if self.kind == "target_buckets":
            # One histogram per workload: the per-pod bucket rates summed in Prometheus.
            summed = self._by_workload(ns, w)
            return f"{summed}{_NAMELESS}" if self._workload_recorded() else summed
        if self.kind == "presence":
            # The pods that have bucket rates (one series per pod: the +Inf bucket), and for
            # recorded series how many copies of it.
            if self.recorded is not None:
                # Per-pod bucket rates (their +Inf bucket) or per-pod ``_count`` rates, one row
                # per series with its sample time: the copies are counted and the same rows
                # tell when the rule last evaluated each pod (one selection, not two).
                return f"timestamp({self.recorded}{{{ns}{self._inf()}}})"
            return f'count by (namespace, pod) (rate({self.name}_bucket{{{ns}, le="+Inf"}}[{w}]))'
        if self.kind == "fresh":
            return self._exceptions(ns)
        if self.kind == "stamps":
            # Every pod's newest sample time: the pods that have values but no current sample
            # are found by difference with the value batches (_settle_stamps).
            return f"max by (namespace, pod) (timestamp({self.name}{{{ns}}}))"
        if self.recorded is not None:
            # Already one series per pod (and le): a plain selector. An aggregation here would
            # cost Prometheus more than the selection itself (measured: 1.9 s against 0.8 s for
            # 140,000 bucket series); a rule deployed twice (two rulers) is reduced to one value
            # per pod here instead (_reduce_batch).
            return f"{self.recorded}{{{ns}}}{_NAMELESS}"
        if self.kind == "value":
            return f"{self.aggregation} by (namespace, pod) ({self.name}{{{ns}}})"
        if self.kind == "rate":
            return f"sum by (namespace, pod) (rate({self.name}{{{ns}}}[{w}]))"
        if self.kind == "buckets":
            return f"sum by (namespace, pod, le) (rate({self.name}_bucket{{{ns}}}[{w}]))"
        if self.kind == "sum":
            return f"sum by (namespace, pod) (rate({self.name}_sum{{{ns}}}[{w}]))"
        return f"sum by (namespace, pod) (rate({self.name}_count{{{ns}}}[{w}]))"

    def _by_workload(self, ns: str, w: str) -> str:
        """The bucket rates summed per workload (and ``le``) for these namespaces."""
        if self.recorded is None:
            return recording.by_workload(f"rate({self.name}_bucket{{{ns}}}[{w}])")
        if self._workload_recorded():
            return f"{self.recorded}{{{ns}}}"  # recorded already summed
        return recording.by_workload(f"{self.recorded}{{{ns}}}")

    def _workload_recorded(self) -> bool:
        """Whether this batch reads the recorded per-workload histograms as they are."""
        return self.recorded is not None and self.recorded.startswith(recording.WORKLOAD_PREFIX)

    def _inf(self) -> str:
        """The matcher that keeps one series per pod of a recorded per-pod bucket series."""
        if self.recorded is not None and self.recorded.startswith(recording.POD_BUCKETS_PREFIX):
            return ', le="+Inf"'
        return ""

    def _exceptions(self, ns: str) -> str:
        """``fresh``: the pods whose newest sample is old (value: its time).

        Only the exceptions come back (none in a healthy fleet), not a timestamp for every pod:
        a pod the answer does not name has a sample newer than ``older_than``. For series whose
        value goes with their sample (a gauge, a recorded series): a series Prometheus has
        marked stale is gone from the value query too. A raw counter or histogram read through
        ``rate()`` outlives its series by up to the window: those are ``stamps`` batches.
        """
        cutoff = f"time() - {self.older_than:g}"
        if self.recorded is not None:
            selector = f"{self.recorded}{{{ns}{self._inf()}}}"
        else:
            selector = f"{self.name}{{{ns}}}"
        return f"max by (namespace, pod) (timestamp({selector})) < {cutoff}"


_NAMELESS = " * 1"
"""Appended to a plain selection of recorded series: the answer's rows then carry no series
name, a third of their bytes (10,000 pods: 0.99 MB against 1.55 MB, decoded that much faster),
at no measurable cost in Prometheus. Values are unchanged (NaN and infinities included), and
one name per selection means no two rows can become one."""


class _Need(Enum):
    """What a summed quantile needs read before it can be assembled."""

    BUCKETS = "buckets"
    """The histograms of the target's workloads (it spans several)."""


@dataclass(slots=True)
class _BatchResult:
    """A batch's series indexed by (namespace, pod), or the failure."""

    query: str = ""
    values: dict[PodKey, float] = field(default_factory=dict)
    buckets: dict[PodKey, dict[float, float]] = field(default_factory=dict)
    series_per_namespace: Counter[str] = field(default_factory=Counter)
    duplicates: set[PodKey] = field(default_factory=set)
    failure: NoSignal | None = None
    seconds: float = 0.0
    """Wall time of the query (waiting on Prometheus included)."""
    recorded: bool = False
    """The batch read a recording rule's series."""
    histograms: dict[tuple[str, str], dict[float, float]] = field(default_factory=dict)
    """``target_buckets``: upper bound -> summed bucket rate, per (namespace, workload)."""
    quantiles: dict[tuple[str, str], float] = field(default_factory=dict)
    """``target_quantile``: the quantile of each (namespace, workload)'s histogram."""
    bad_groups: set[tuple[str, str]] = field(default_factory=set)
    """``target_buckets``, ``target_quantile``: workloads whose summed histogram is unusable
    as such (an ``le`` that is not a number, two series of one bound, a value out of domain;
    two rows of one workload)."""
    stamps: dict[PodKey, float] = field(default_factory=dict)
    """``stamps``: every pod's newest sample time (``values`` then holds the exceptions
    ``fresh`` batches list, once :func:`_settle_stamps` has run)."""
    present: dict[PodKey, float] = field(default_factory=dict)
    """``presence``: (namespace, pod) -> number of +Inf bucket series (recorded: of copies)."""
    workload_pods: Counter[tuple[str, str]] = field(default_factory=Counter)
    """``presence``: how many pods it lists per (namespace, workload)."""

    def may_list(self, namespace: str) -> bool:
        """Whether this freshness batch (``fresh``, settled ``stamps``, recorded ``presence``)
        may list a stale pod of ``namespace``: False lets its pods skip the lookups. (A
        presence batch counts every row per namespace, its exceptions being ``values``.)"""
        return bool(self.values) and namespace in self.series_per_namespace

    def merged(self, other: _BatchResult) -> _BatchResult:
        """This result and another one of the same batch for other namespaces."""
        if self.failure is not None or other.failure is not None:
            return self if self.failure is not None else other
        return _BatchResult(
            query=f"{self.query} ; {other.query}",
            values={**self.values, **other.values},
            buckets={**self.buckets, **other.buckets},
            series_per_namespace=self.series_per_namespace + other.series_per_namespace,
            duplicates=self.duplicates | other.duplicates,
            seconds=max(self.seconds, other.seconds),
            recorded=self.recorded,
            histograms={**self.histograms, **other.histograms},
            quantiles={**self.quantiles, **other.quantiles},
            bad_groups=self.bad_groups | other.bad_groups,
            stamps={**self.stamps, **other.stamps},
            present={**self.present, **other.present},
            workload_pods=self.workload_pods + other.workload_pods,
        )


class _PodKeys:
    """One (namespace, pod) tuple per pod, shared by every batch's answer (a tick's batches
    hold ~10 rows per pod at once), and what the last answer's pod columns gave.

    The batches of a tick list the same pods in the same order (Prometheus gives an answer's
    series sorted by their labels), and so do the next tick's while the fleet stands: two list
    comparisons (identity first, in C) then stand for keying 10,000 rows again; columns that
    differ in any way are keyed anew. Shared by the worker threads: each reads and replaces the
    memo in one step.
    """

    __slots__ = ("_memo", "shared")

    def __init__(self) -> None:
        self.shared: dict[PodKey, PodKey] = {}
        self._memo: _KeyedColumns | None = None

    def __len__(self) -> int:
        return len(self.shared)

    def keyed(self, namespaces: list[str], pods: list[str]) -> _KeyedColumns:
        """The keys of these columns' rows (the shared tuples) and their counts."""
        memo = self._memo
        if memo is not None and memo.namespaces == namespaces and memo.pods == pods:
            return memo
        pairs = list(zip(namespaces, pods, strict=True))
        keys = list(map(self.shared.setdefault, pairs, pairs))
        memo = self._memo = _KeyedColumns(namespaces, pods, keys, Counter(namespaces))
        return memo


@dataclass(slots=True)
class _KeyedColumns:
    """An answer's (namespace, pod) columns, their rows' keys, and counts (read-only)."""

    namespaces: list[str]
    pods: list[str]
    keys: list[PodKey]
    per_namespace: Counter[str]
    _distinct: bool | None = None
    _workloads: Counter[tuple[str, str]] | None = None

    def distinct(self) -> bool:
        """Whether no pod has two rows (found once, on first use)."""
        if self._distinct is None:
            self._distinct = len(set(self.keys)) == len(self.keys)
        return self._distinct

    def workload_pods(self) -> Counter[tuple[str, str]]:
        """Rows per (namespace, workload) (made once, on first use)."""
        if self._workloads is None:
            workloads = map(recording.workload_of, self.pods)
            self._workloads = Counter(zip(self.namespaces, workloads, strict=True))
        return self._workloads


RULE_DURATIONS_KEPT = 4
"""Evaluation times kept per rule group (one per probe: the last 20 minutes by default)."""


@dataclass(slots=True)
class _NamespaceNames:
    """What the auto-detection probe found in one namespace: series name -> series count."""

    counts: dict[str, int]
    probed_at: float


@dataclass(slots=True)
class _NamespaceRules:
    """What the recording-rule probe found in one namespace."""

    asked: frozenset[recording.RuleNeed]
    usable: frozenset[str]
    """Recorded series names covering every pod of their raw series there."""
    probed_at: float


@dataclass(frozen=True, slots=True)
class _NamespaceState:
    """What the plans of a namespace depend on, besides the policies (see ``fetch``)."""

    names: _NamespaceNames | None
    """The metric names detected there (the object: replaced by each probe)."""
    usable: frozenset[str]
    """The recorded series usable there."""
    shared: bool
    """Pods of different targets share a workload there: no summed histogram."""
    per_pod: frozenset[Batch]
    """Bucket batches whose summed histograms were refused there lately (read per pod)."""


@dataclass(frozen=True, slots=True)
class _Planned:
    """One preset metric of one policy as planned, kept while its namespace's state holds."""

    metric: MetricSpec
    state: _NamespaceState
    outcome: _Plan | NoSignal
    needs: tuple[recording.RuleNeed, ...]
    """The recorded series that would serve it (asked of the rules probe)."""
    batches: tuple[Batch, ...]
    """The plan's batches (none without a plan)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one preset metric of one policy is computed this tick."""

    name: str
    """The resolved exported metric name."""
    value_batches: tuple[Batch, ...]
    fresh: tuple[Batch, ...]
    """The newest-sample timestamps to check: the raw series (scraped), and for recorded
    batches also the recorded series (evaluated)."""
    max_staleness: float
    kind: MetricKind
    metric: str
    """The metric's name in the policy."""
    per_pod: bool
    spec: LatencyMetricSpec | None
    """The latency spec (quantile, statistic), for whole-target latency metrics."""
    needs: tuple[recording.RuleNeed, ...] = ()
    """The recorded series that could replace the raw value batches (empty: none can)."""
    presence: Batch | None = None
    """Set for a quantile read from histograms summed per workload (``target_quantile``): the
    pods that have bucket rates, to check that a target's workloads hold exactly its usable
    pods."""
    workload_buckets: Batch | None = None
    """Set with ``presence``: the workloads' summed histograms themselves (``target_buckets``),
    read only for the namespaces of a target whose pods span several workloads (a Deployment
    mid-rollout): the quantile of their sum."""
    workload_needs: tuple[recording.RuleNeed, ...] = ()
    """The recorded series a summed quantile could read instead (per-workload histograms and
    per-pod ``_count`` rates; empty: none can)."""
    pod_recorded: bool = False
    """The per-pod batches read recorded series (where the per-pod path reads them)."""

    @property
    def batches(self) -> tuple[Batch, ...]:
        """Every batch the plan reads."""
        extra = (self.presence,) if self.presence is not None else ()
        return (*self.value_batches, *self.fresh, *extra)


@dataclass(frozen=True, slots=True)
class FetchStats:
    """What the last :meth:`PrometheusSource.fetch` did (for logs, tests and benchmarks)."""

    queries: int
    """PromQL queries issued (probe + batches + custom)."""
    batch_queries: int
    custom_queries: int
    probe_queries: int
    seconds: float
    slowest_query_seconds: float
    """Wall time of the slowest batched query: fetch time minus this is our own work."""
    recorded_batch_queries: int = 0
    """Batched queries that read recording rules' series (included in ``batch_queries``)."""
    rules_probe_queries: int = 0
    """Recording-rule detection queries (not in ``probe_queries``, the metric-name probe)."""
    fallback_queries: int = 0
    """Raw queries re-run because a recorded series was gone (included in ``batch_queries``)."""
    target_bucket_queries: int = 0
    """Batched queries of the quantiles of bucket rates summed per workload (included in
    ``batch_queries``)."""
    workload_bucket_queries: int = 0
    """Queries of the summed bucket rates themselves, for targets spanning several workloads
    (included in ``batch_queries``)."""
    per_pod_fallback_queries: int = 0
    """Per-pod bucket queries run because a namespace's summed histogram could not stand for a
    target's pods (included in ``batch_queries``)."""


class PrometheusSource:
    """A :class:`~autoscaler.metrics.base.MetricSource` reading Prometheus.

    Args:
        client: The HTTP client (:class:`~autoscaler.metrics.client.PrometheusClient`).
        tick_budget: Seconds one :meth:`fetch` may take in total (retries stop before it);
            default: twice the client's query timeout.
        detect_interval: Seconds a namespace's auto-detected metric names are reused.
        redetect_min_interval: Minimum seconds between re-probes of a namespace where a
            policy's own preset came back empty (the capacity model's inputs, which a fleet may
            not export at all, wait for ``detect_interval``).
        recording_rules: Read the chart's recording rules where Prometheus has them
            (:mod:`autoscaler.metrics.rules`); False: always evaluate the raw series.
        rules_probe_interval: Seconds a namespace's recording-rule probe answer is reused.
        aggregate_buckets: Read quantiles as one histogram per namespace summed in Prometheus
            where a namespace's bucket series all come from one target's usable pods (checked
            every tick; see :meth:`_assemble_summed`); False: always read per-pod buckets.
        per_pod_retry_interval: Seconds a namespace that needed the per-pod buckets keeps
            reading them before the summed histogram is tried again.
        align_to_rules: With each recording-rule probe, also read when the groups of the rules
            in use evaluate (``/api/v1/rules``), for :meth:`tick_phase`.
    """

    def __init__(
        self,
        client: PrometheusClient,
        *,
        tick_budget: float | None = None,
        detect_interval: float = 300.0,
        redetect_min_interval: float = 30.0,
        recording_rules: bool = True,
        rules_probe_interval: float = 300.0,
        aggregate_buckets: bool = True,
        per_pod_retry_interval: float = 120.0,
        align_to_rules: bool = True,
    ) -> None:
        self.client = client
        self.tick_budget = tick_budget if tick_budget is not None else 2 * client.timeout
        self.detect_interval = detect_interval
        self.redetect_min_interval = redetect_min_interval
        self._names: dict[str, _NamespaceNames] = {}
        self.recording_rules = recording_rules
        self.rules_probe_interval = rules_probe_interval
        self._rules: dict[str, _NamespaceRules] = {}
        self._redetect: set[str] = set()
        self.last_stats: FetchStats | None = None
        self._plans: dict[tuple[int, str, bool, bool, bool], tuple[MetricSpec, _Plan]] = {}
        """(id of a metric spec, resolved name, recorded, summed, workload rule) -> (the spec,
        its plan), from the last fetch."""
        self._planned: dict[tuple[int, str, MetricNames], _Planned] = {}
        """(id of a metric spec, namespace, name family) -> how it was planned, last fetch."""
        self._states: dict[str, _NamespaceState] = {}
        """The namespaces' states the last fetch planned with (kept while equal: an identity
        test per metric then tells a plan still holds)."""
        self.aggregate_buckets = aggregate_buckets
        self.per_pod_retry_interval = per_pod_retry_interval
        self._per_pod: dict[tuple[str, Batch], float] = {}
        """(namespace, per-pod bucket batch) -> when its summed histogram last failed the check."""
        self._pod_keys = _PodKeys()
        """The (namespace, pod) tuples of the answers (see :class:`_PodKeys`)."""
        self.align_to_rules = align_to_rules
        self._rule_groups: tuple[recording.RuleGroup, ...] = ()
        self._rule_groups_failed = False
        self._rule_durations: dict[tuple[str, str], tuple[float, ...]] = {}
        """(file, group) -> its last evaluation times, one per read, oldest first."""
        self._batch_pool: dict[Batch, Batch] = {}
        self._need_pool: dict[recording.RuleNeed, recording.RuleNeed] = {}
        """One object per distinct batch and rule need the plans have held (see
        :meth:`_pooled`): a few per metric name, window and kind in use."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PrometheusSource:
        """A source with a client configured from the settings (tick budget: the interval)."""
        client = PrometheusClient.from_settings(settings)
        return cls(
            client,
            tick_budget=min(settings.interval, 2 * settings.prometheus_timeout),
            align_to_rules=settings.align_to_rules,
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.client.close()

    # ----------------------------------------------------------------------------------------
    # Name resolution
    # ----------------------------------------------------------------------------------------

    def detected_names(self, namespace: str) -> Mapping[str, int] | None:
        """The cached probe answer for a namespace (series name -> count), if any."""
        entry = self._names.get(namespace)
        return dict(entry.counts) if entry else None

    def _needs_probe(self, namespace: str, now: float) -> bool:
        entry = self._names.get(namespace)
        if entry is None:
            return True
        age = now - entry.probed_at
        if age >= self.detect_interval or age < 0:
            return True
        return namespace in self._redetect and age >= self.redetect_min_interval

    def _empty(self, namespace: str, metric: str) -> None:
        """A metric found no series: probe the namespace's names again soon (a renamed metric
        after an upgrade), unless it is one of the capacity model's own inputs. Those are asked
        of every ``algorithm: llm`` policy, and a fleet may never export some of them (token
        counters, TTFT): re-probing every namespace of such a fleet every
        ``redetect_min_interval`` would cost a probe query every other tick forever. They are
        looked for again at the regular ``detect_interval``."""
        if not metric.startswith(SIGNAL_PREFIX):
            self._redetect.add(namespace)

    async def _probe(self, namespaces: set[str], now: float, deadline: float) -> NoSignal | None:
        """Refresh the name cache of these namespaces; the failure, if the probe failed."""
        pattern = regex_alternation(metric_names.all_probe_names())
        query = (
            f'count by (namespace, __name__) ({{__name__=~"{quote_string(pattern)}", '
            f"{namespace_matcher(namespaces)}}})"
        )
        try:
            series = await self.client.query(query, now, deadline)
        except QueryFailed as exc:
            log.warning("metric name detection failed", detail=exc.detail, reason=exc.reason)
            return NoSignal(exc.reason, f"metric-name detection: {exc.detail}")
        counts: dict[str, dict[str, int]] = {ns: {} for ns in namespaces}
        for item in series:
            ns = item.labels.get("namespace")
            name = item.labels.get("__name__")
            if ns in counts and name and math.isfinite(item.value):
                counts[ns][name] = int(item.value)
        for ns, found in counts.items():
            self._names[ns] = _NamespaceNames(found, now)
            self._redetect.discard(ns)
        return None

    def _resolve(self, kind: MetricKind, family: MetricNames, namespace: str) -> str | NoSignal:
        """The exported name of a preset for a policy, or why there is none."""
        if family is not MetricNames.AUTO:
            return metric_names.metric_name(kind, family)
        entry = self._names.get(namespace)
        if entry is None:
            return NoSignal(NoSignalReason.NOT_COLLECTED, "metric names not detected yet")
        best: tuple[int, str] | None = None
        for candidate in metric_names.candidates(kind):
            count = entry.counts.get(candidate.probe_name(kind), 0)
            if count > 0 and (best is None or count > best[0]):
                best = (count, candidate.name)
        if best is None:
            known = ", ".join(sorted({c.name for c in metric_names.candidates(kind)}))
            return NoSignal(
                NoSignalReason.EMPTY,
                f"no pod in namespace {namespace!r} exports {kind.value} under any known name "
                f"({known})",
            )
        return best[1]

    # ----------------------------------------------------------------------------------------
    # Recording rules
    # ----------------------------------------------------------------------------------------

    def recorded_series(self, namespace: str) -> frozenset[str]:
        """The recorded series the source reads in a namespace (from the last probe)."""
        entry = self._rules.get(namespace)
        return entry.usable if entry else frozenset()

    def _rules_need_probe(self, namespace: str, needs: set[recording.RuleNeed], now: float) -> bool:
        entry = self._rules.get(namespace)
        if entry is None or not needs <= entry.asked:
            return True
        age = now - entry.probed_at
        return age >= self.rules_probe_interval or age < 0

    async def _probe_rules(
        self, wanted: Mapping[str, set[recording.RuleNeed]], now: float, deadline: float
    ) -> None:
        """Refresh which recorded series cover which namespaces (answers apply next tick), and
        when their rule groups evaluate (:meth:`tick_phase`)."""
        needs = set().union(*wanted.values())
        query = recording.probe_query(needs, wanted)
        if self.align_to_rules:
            probed, _ = await asyncio.gather(
                self._rules_probe_answer(query, now, deadline), self._read_rule_groups(deadline)
            )
        else:
            probed = await self._rules_probe_answer(query, now, deadline)
        if probed is None:
            for namespace, asked in wanted.items():
                self._rules[namespace] = _NamespaceRules(frozenset(asked), frozenset(), now)
            return
        self._judge_rules(wanted, probed, now)

    async def _rules_probe_answer(
        self, query: str, now: float, deadline: float
    ) -> list[Series] | None:
        """The probe query's series (None: it failed, logged)."""
        try:
            return await self.client.query(query, now, deadline)
        except QueryFailed as exc:
            # Not fatal: the raw series are read until the next probe (after the interval).
            log.warning("recording rule detection failed", detail=exc.detail, reason=exc.reason)
            return None

    def _judge_rules(
        self, wanted: Mapping[str, set[recording.RuleNeed]], series: list[Series], now: float
    ) -> None:
        """Record, per namespace, the recorded series the probe's answer shows usable."""
        pods: dict[tuple[str, str], int] = {}
        for item in series:
            ns = item.labels.get("namespace")
            name = item.labels.get("__name__")
            if ns is not None and name and math.isfinite(item.value):
                pods[(name, ns)] = int(item.value)
        for ns, asked in wanted.items():
            usable = recording.covered(asked, pods, ns)
            previous = self._rules.get(ns)
            if previous is None or previous.usable != usable:
                log.info(
                    "recording rules detected",
                    namespace=ns,
                    recorded=sorted(usable),
                    raw=sorted(n.recorded for n in asked if n.recorded not in usable),
                )
            self._rules[ns] = _NamespaceRules(frozenset(asked), usable, now)

    async def _read_rule_groups(self, deadline: float) -> None:
        """Read when the rule groups evaluate (run beside the probe query)."""
        try:
            groups = await self.client.rule_groups(deadline)
        except QueryFailed as exc:
            # Not fatal: the ticks keep their own phase until a later probe reads them.
            if self._rule_groups or not self._rule_groups_failed:
                log.info(
                    "recording rule timing unavailable; ticks keep their own phase",
                    detail=exc.detail,
                )
            self._rule_groups, self._rule_groups_failed = (), True
        except Exception:  # a bug here must not cost the tick its metrics
            log.exception("reading recording rule timing failed; ticks keep their own phase")
            self._rule_groups, self._rule_groups_failed = (), True
        else:
            self._rule_groups, self._rule_durations = recording.longest_durations(
                groups, self._rule_durations, RULE_DURATIONS_KEPT
            )
            self._rule_groups_failed = False

    def tick_phase(self) -> recording.RulePhase | None:
        """When the recording rules this source reads have just been written (None: no rule in
        use, their timing is unknown, or the group leaves no quiet stretch).

        The runner starts its ticks then (:func:`autoscaler.controller.runner.aligned`): the
        recorded values are at their freshest, and the tick's queries do not compete with the
        group's evaluation inside Prometheus. Asked once per tick: derived each time from the
        last probe's answers (a set union over the namespaces, a pass over the groups).
        """
        if not self._rule_groups:
            return None
        in_use = set().union(*(entry.usable for entry in self._rules.values()))
        return recording.rule_phase(self._rule_groups, in_use)

    # ----------------------------------------------------------------------------------------
    # Planning
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _plan(  # noqa: PLR0917 - the memo key's parts, as the memo calls it
        metric: MetricSpec,
        kind: MetricKind,
        name: str,
        recorded: bool = False,
        summed: bool = False,
        workload_rule: bool = False,
    ) -> _Plan:
        """The batches of a preset metric: raw series, or (``recorded``) the recorded ones.

        ``summed``: a quantile reads the quantile of histograms summed per workload
        (``target_quantile``; ``target_buckets`` for a target of several workloads) and the
        pods present (``presence``) instead of every pod's buckets: summed in Prometheus from
        the per-pod buckets (raw, or recorded per pod), or (``workload_rule``) read from the
        recorded per-workload histograms, with the pods present and their freshness from the
        recorded per-pod ``_count`` rates.
        """
        plan = PrometheusSource._pod_plan(metric, kind, name, recorded)
        plan = replace(plan, pod_recorded=plan.value_batches[0].recorded is not None)
        if len(plan.value_batches) != 1 or plan.value_batches[0].kind != "buckets":
            return plan
        buckets = plan.value_batches[0]
        plan = replace(plan, workload_needs=recording.workload_needs(buckets.name, buckets.window))
        if not summed:
            return plan
        if workload_rule and plan.workload_needs:
            workload, counts = (need.recorded for need in plan.workload_needs)
            # The rule group records the histograms and the _count rates at one instant.
            summed_buckets = replace(buckets, kind="target_buckets", recorded=workload)
            presence = replace(buckets, kind="presence", recorded=counts)
        else:
            summed_buckets = replace(buckets, kind="target_buckets")
            presence = replace(buckets, kind="presence")
        assert plan.spec is not None
        quantile = replace(summed_buckets, kind="target_quantile", quantile=plan.spec.quantile)
        fresh = plan.fresh
        if presence.recorded is not None:
            # The rows of a recorded presence (per-pod _count rates or +Inf buckets) are also
            # its evaluated freshness: the same age cut as the scraped check.
            presence = replace(presence, older_than=plan.fresh[0].older_than)
            fresh = (plan.fresh[0], presence)
        return replace(
            plan,
            value_batches=(quantile,),
            presence=presence,
            fresh=fresh,
            workload_buckets=summed_buckets,
        )

    def _pooled(self, plan: _Plan) -> _Plan:
        """The plan holding the batches and rule needs other plans already hold (equal ones).

        Thousands of policies read the same few batches: with one object each, the dictionaries
        and sets of a tick keyed by them find them by identity, not by comparing every field.
        """
        batches, needs = self._batch_pool, self._need_pool

        def batch(b: Batch) -> Batch:
            return batches.setdefault(b, b)

        def need(n: recording.RuleNeed) -> recording.RuleNeed:
            return needs.setdefault(n, n)

        return replace(
            plan,
            value_batches=tuple(batch(b) for b in plan.value_batches),
            fresh=tuple(batch(b) for b in plan.fresh),
            needs=tuple(need(n) for n in plan.needs),
            presence=batch(plan.presence) if plan.presence is not None else None,
            workload_buckets=(
                batch(plan.workload_buckets) if plan.workload_buckets is not None else None
            ),
            workload_needs=tuple(need(n) for n in plan.workload_needs),
        )

    @staticmethod
    def _pod_plan(metric: MetricSpec, kind: MetricKind, name: str, recorded: bool) -> _Plan:
        """The per-pod batches of a preset metric (raw, or the recorded series)."""
        raw = PrometheusSource._raw_plan(metric, kind, name)
        needs = []
        for batch in raw.value_batches:
            rec = recording.recorded_name(batch.kind, batch.name, batch.window)
            if rec is None:
                return raw
            needs.append(recording.RuleNeed(rec, recording.raw_reference(batch.kind, batch.name)))
        raw = replace(raw, needs=tuple(needs))
        if not recorded:
            return raw
        batches = tuple(
            replace(batch, recorded=need.recorded)
            for batch, need in zip(raw.value_batches, needs, strict=True)
        )
        # One recorded series stands for the pod's batches (one rule group).
        fresh = _scraped_and_evaluated(raw.fresh[0], name, needs[0].recorded)
        return replace(raw, value_batches=batches, fresh=fresh)

    @staticmethod
    def _raw_plan(metric: MetricSpec, kind: MetricKind, name: str) -> _Plan:
        series_kind = metric_names.PRESET_SERIES[kind]
        spec = metric.spec
        window = getattr(spec, "window", None)
        default_staleness = max(3 * window, MIN_STALENESS) if window else MIN_STALENESS
        staleness = spec.max_staleness or default_staleness
        label = spec.name or kind.value
        older_than = min(REPORT_AGE, staleness)
        if series_kind is metric_names.SeriesKind.GAUGE:
            aggregation = "max" if kind is MetricKind.KV_CACHE else "sum"
            batches: tuple[Batch, ...] = (Batch("value", name, aggregation),)
            return _Plan(
                name,
                batches,
                (Batch("fresh", name, older_than=older_than),),
                staleness,
                kind,
                label,
                per_pod=True,
                spec=None,
            )
        if series_kind is metric_names.SeriesKind.COUNTER:
            assert isinstance(spec, RateMetricSpec)
            batches = (Batch("rate", name, window=spec.window),)
            return _Plan(
                name,
                batches,
                # A rate outlives its series by up to the window (so does a recording of it):
                # every pod's sample time, to find the pods with a value and no sample.
                (Batch("stamps", name, older_than=older_than),),
                staleness,
                kind,
                label,
                per_pod=True,
                spec=None,
            )
        assert isinstance(spec, LatencyMetricSpec)
        fresh = (Batch("stamps", f"{name}_count", older_than=older_than),)
        if spec.statistic == "mean":
            batches = (
                Batch("sum", name, window=spec.window),
                Batch("count", name, window=spec.window),
            )
        else:
            batches = (Batch("buckets", name, window=spec.window),)
        return _Plan(name, batches, fresh, staleness, kind, label, per_pod=False, spec=spec)

    # ----------------------------------------------------------------------------------------
    # Fetch
    # ----------------------------------------------------------------------------------------

    async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
        """Observe every metric of every requested policy at time ``now`` (see module doc)."""
        started = time.monotonic()
        deadline = started + self.tick_budget
        probe_queries = 0

        auto_namespaces = {
            req.policy.metadata.namespace
            for req in requests
            if req.policy.spec.metric_names is MetricNames.AUTO
            and any(m.kind is not MetricKind.PROMETHEUS for m in req.policy.spec.fetched_metrics)
        }
        to_probe = {ns for ns in auto_namespaces if self._needs_probe(ns, now)}
        probe_failure: NoSignal | None = None
        if to_probe:
            probe_queries = 1
            probe_failure = await self._probe(to_probe, now, deadline)

        results: dict[str, dict[str, MetricObservation]] = {}
        plans: list[tuple[MetricRequest, MetricSpec, _Plan]] = []
        needed: defaultdict[Batch, set[str]] = defaultdict(set)
        customs: list[tuple[str, MetricRequest, MetricSpec]] = []
        rules_wanted: defaultdict[str, set[recording.RuleNeed]] = defaultdict(set)
        # Many policies share a namespace: resolve each (kind, family, namespace) once per fetch.
        # Plans depend only on the (immutable) metric spec, the resolved name and whether the
        # recorded series are read: kept from the previous fetch for the specs still in use.
        resolved_memo: dict[tuple[MetricKind, MetricNames, str], str | NoSignal] = {}
        previous_plans = self._plans
        plan_memo: dict[tuple[int, str, bool, bool, bool], tuple[MetricSpec, _Plan]] = {}
        self._plans = plan_memo
        self._per_pod = {
            key: since
            for key, since in self._per_pod.items()
            if 0 <= now - since < self.per_pod_retry_interval
        }
        shared = _shared_namespaces(requests) if self.aggregate_buckets else set()

        def planned(
            metric: MetricSpec, name: str, recorded: bool, summed: bool, workload_rule: bool = False
        ) -> _Plan:
            memo_key = (id(metric), name, recorded, summed, workload_rule)
            entry = plan_memo.get(memo_key) or previous_plans.get(memo_key)
            if entry is None or entry[0] is not metric:
                plan = self._plan(metric, metric.kind, name, recorded, summed, workload_rule)
                entry = (metric, self._pooled(plan))
            plan_memo[memo_key] = entry
            return entry[1]

        def plan_metric(
            metric: MetricSpec, family: MetricNames, namespace: str, state: _NamespaceState
        ) -> _Planned:
            """How one preset metric of a policy is read this tick (a plan, or no signal)."""
            kind = metric.kind
            memo_key = (kind, family, namespace)
            resolved = resolved_memo.get(memo_key)
            if resolved is None:
                resolved = resolved_memo[memo_key] = self._resolve(kind, family, namespace)
            if isinstance(resolved, NoSignal):
                if probe_failure is not None and namespace in to_probe:
                    resolved = probe_failure
                return _Planned(metric, state, resolved, (), ())
            plan = planned(metric, resolved, recorded=False, summed=False)
            workload_rule = False
            needs: tuple[recording.RuleNeed, ...] = ()
            if plan.needs and self.recording_rules:
                needs = plan.needs + (plan.workload_needs if self.aggregate_buckets else ())
                usable = state.usable
                if all(need.recorded in usable for need in plan.needs):
                    plan = planned(metric, resolved, recorded=True, summed=False)
                workload_rule = bool(plan.workload_needs) and all(
                    need.recorded in usable for need in plan.workload_needs
                )
            if (
                self.aggregate_buckets
                and plan.value_batches[0].kind == "buckets"
                and not state.shared
                and plan.value_batches[0] not in state.per_pod
            ):
                # The quantile may read the namespace's summed histogram.
                plan = planned(
                    metric, resolved, plan.pod_recorded, summed=True, workload_rule=workload_rule
                )
            return _Planned(metric, state, plan, needs, plan.batches)

        # What a namespace's plans depend on besides the policy: the names detected there, the
        # recorded series usable there, and where summed histograms are not read. A policy's
        # plans are kept from the previous fetch while it is the same.
        per_pod_batches_of: defaultdict[str, set[Batch]] = defaultdict(set)
        for namespace, batch in self._per_pod:
            per_pod_batches_of[namespace].add(batch)
        states: dict[str, _NamespaceState] = {}
        previous_planned, previous_states = self._planned, self._states
        planned_now: dict[tuple[int, str, MetricNames], _Planned] = {}
        self._planned, self._states = planned_now, states
        for req in requests:
            key = req.policy.key
            namespace = req.policy.metadata.namespace
            family = req.policy.spec.metric_names
            observed: dict[str, MetricObservation] = {}
            results[key] = observed
            state = states.get(namespace)
            if state is None:
                state = _NamespaceState(
                    self._names.get(namespace),
                    self.recorded_series(namespace),
                    namespace in shared,
                    frozenset(per_pod_batches_of.get(namespace, ())),
                )
                if state == previous_states.get(namespace):
                    state = previous_states[namespace]
                states[namespace] = state
            # A namespace probed this tick is planned afresh (a failed probe is the answer).
            probed = namespace in to_probe
            for metric in req.policy.spec.fetched_metrics:
                if metric.kind is MetricKind.PROMETHEUS or metric.kind in GATEWAY_KINDS:
                    customs.append((key, req, metric))
                    continue
                memo_key = (id(metric), namespace, family)
                entry = planned_now.get(memo_key) or previous_planned.get(memo_key)
                if (
                    probed
                    or entry is None
                    or entry.state is not state
                    or entry.metric is not metric
                ):
                    entry = plan_metric(metric, family, namespace, state)
                if not probed:
                    planned_now[memo_key] = entry
                if entry.needs:
                    rules_wanted[namespace].update(entry.needs)
                plan = entry.outcome
                if isinstance(plan, NoSignal):
                    if plan.reason is NoSignalReason.EMPTY:
                        self._empty(namespace, metric.name)
                    observed[metric.name] = plan
                    continue
                plans.append((req, metric, plan))
                for batch in entry.batches:
                    needed[batch].add(namespace)

        # Recording-rule detection runs beside the batches (its answer serves the next ticks).
        rules_probe = {
            ns: wanted
            for ns, wanted in rules_wanted.items()
            if self._rules_need_probe(ns, wanted, now)
        }
        side_tasks = [self._probe_rules(rules_probe, now, deadline)] if rules_probe else []
        batch_items = list(needed.items())
        batch_tasks = [self._run_batch(batch, nss, now, deadline) for batch, nss in batch_items]
        custom_tasks = [self._run_custom(req, metric, now, deadline) for _, req, metric in customs]
        gathered = await asyncio.gather(*batch_tasks, *custom_tasks, *side_tasks)
        custom_results = gathered[len(batch_items) : len(batch_items) + len(customs)]
        for (key, _, metric), observation in zip(customs, custom_results, strict=True):
            assert observation is not None
            assert not isinstance(observation, _BatchResult)
            results[key][metric.name] = observation
        batch_results: dict[Batch, _BatchResult] = {}
        for (batch, _), outcome in zip(batch_items, gathered[: len(batch_items)], strict=True):
            assert isinstance(outcome, _BatchResult)
            batch_results[batch] = outcome

        # A recorded series that came back empty where the probe saw it (rule removed or
        # stopped): read the raw series for that namespace now, and probe again next tick.
        lost = {
            ns
            for batch, nss in batch_items
            if batch.recorded is not None
            and batch.kind != "fresh"  # lists exceptions only: usually empty
            and batch_results[batch].failure is None
            for ns in nss
            if batch_results[batch].series_per_namespace[ns] == 0
        }
        fallback_batches: dict[Batch, set[str]] = {}
        if lost:
            log.warning("recorded series missing: reading raw series", namespaces=sorted(lost))
            for ns in lost:
                self._rules.pop(ns, None)
            for index, (req, metric, plan) in enumerate(plans):
                namespace = req.policy.metadata.namespace
                if namespace in lost and plan.value_batches[0].recorded is not None:
                    plan = planned(
                        metric, plan.name, recorded=False, summed=plan.presence is not None
                    )
                    plans[index] = (req, metric, plan)
                    for batch in plan.batches:
                        if namespace not in needed.get(batch, ()):
                            fallback_batches.setdefault(batch, set()).add(namespace)
            fallback_items = list(fallback_batches.items())
            fallen = await asyncio.gather(
                *(self._run_batch(batch, nss, now, deadline) for batch, nss in fallback_items)
            )
            for (batch, _), outcome in zip(fallback_items, fallen, strict=True):
                earlier = batch_results.get(batch)
                batch_results[batch] = outcome if earlier is None else earlier.merged(outcome)
        covered = {batch: set(nss) for batch, nss in needed.items()}
        for batch, nss in fallback_batches.items():
            covered.setdefault(batch, set()).update(nss)

        _settle_stamps(plans, batch_results, now)
        # Summed histograms stand for a target only where the namespace's bucket series all
        # come from that target's usable pods; elsewhere the per-pod buckets are read now.
        observations: list[MetricObservation | None] = []
        per_pod_batches: dict[Batch, set[str]] = {}
        # Two per-pod metrics of one policy read alike (the capacity model's queue depth and
        # the policy's own, say): one observation for both.
        assembled: dict[tuple[object, ...], MetricObservation] = {}
        # Likewise a quantile of the summed histograms (the capacity model's ITL at the policy's
        # own quantile and window): None, too, is an answer (read per pod).
        summed_alike: dict[tuple[object, ...], MetricObservation | _Need | None] = {}
        # The plans whose target spans several workloads: their histograms are read next.
        spanning: list[int] = []

        def per_pod(index: int) -> None:
            """Read this plan's quantile from its target's per-pod buckets instead."""
            req, metric, plan = plans[index]
            namespace = req.policy.metadata.namespace
            plan = planned(metric, plan.name, plan.pod_recorded, summed=False)
            plans[index] = (req, metric, plan)
            self._per_pod[(namespace, plan.value_batches[0])] = now
            for batch in plan.batches:
                if namespace not in covered.get(batch, ()):
                    per_pod_batches.setdefault(batch, set()).add(namespace)

        for index, (req, _, plan) in enumerate(plans):
            if plan.presence is None:
                alike = (
                    req.policy.key,
                    plan.kind,
                    plan.value_batches,
                    plan.fresh,
                    plan.max_staleness,
                )
                observation = assembled.get(alike) if plan.per_pod else None
                if observation is None:
                    observation = assembled[alike] = self._assemble(req, plan, batch_results, now)
                observations.append(observation)
                continue
            spec = plan.spec
            assert spec is not None
            summed_key = (
                req.policy.key,
                plan.kind,
                plan.value_batches,
                plan.presence,
                plan.fresh,
                plan.max_staleness,
                spec.quantile,
                spec.window,
            )
            if summed_key in summed_alike:
                summed_observation = summed_alike[summed_key]
            else:
                summed_observation = self._assemble_summed(req, plan, batch_results, now)
                summed_alike[summed_key] = summed_observation
            if summed_observation is _Need.BUCKETS:
                spanning.append(index)
                observations.append(None)  # assembled once the histograms are read
                continue
            observations.append(summed_observation)
            if summed_observation is None:
                per_pod(index)
        bucket_batches: dict[Batch, set[str]] = {}
        for index in spanning:
            req, _, plan = plans[index]
            assert plan.workload_buckets is not None
            bucket_batches.setdefault(plan.workload_buckets, set()).add(
                req.policy.metadata.namespace
            )
        if bucket_batches:
            bucket_items = list(bucket_batches.items())
            read = await asyncio.gather(
                *(self._run_batch(batch, nss, now, deadline) for batch, nss in bucket_items)
            )
            batch_results.update(
                (batch, outcome) for (batch, _), outcome in zip(bucket_items, read, strict=True)
            )
            for index in spanning:
                req, _, plan = plans[index]
                spanned = self._assemble_summed(req, plan, batch_results, now)
                assert spanned is not _Need.BUCKETS
                observations[index] = spanned
                if spanned is None:
                    per_pod(index)
        if per_pod_batches:
            log.info(
                "summed histograms not usable: reading per-pod buckets",
                namespaces=sorted(set().union(*per_pod_batches.values())),
            )
            per_pod_items = list(per_pod_batches.items())
            fetched = await asyncio.gather(
                *(self._run_batch(batch, nss, now, deadline) for batch, nss in per_pod_items)
            )
            for (batch, _), outcome in zip(per_pod_items, fetched, strict=True):
                earlier = batch_results.get(batch)
                batch_results[batch] = outcome if earlier is None else earlier.merged(outcome)
            _settle_stamps(plans, batch_results, now)

        for (req, _, plan), observation in zip(plans, observations, strict=True):
            if observation is None:
                observation = self._assemble(req, plan, batch_results, now)
            if isinstance(observation, NoSignal) and observation.reason is NoSignalReason.EMPTY:
                self._empty(req.policy.metadata.namespace, plan.metric)
            results[req.policy.key][plan.metric] = observation

        rules_probes = 1 if rules_probe else 0
        self.last_stats = FetchStats(
            queries=probe_queries
            + rules_probes
            + len(batch_items)
            + len(fallback_batches)
            + len(bucket_batches)
            + len(per_pod_batches)
            + len(customs),
            batch_queries=len(batch_items)
            + len(fallback_batches)
            + len(bucket_batches)
            + len(per_pod_batches),
            custom_queries=len(customs),
            probe_queries=probe_queries,
            seconds=time.monotonic() - started,
            slowest_query_seconds=max((r.seconds for r in batch_results.values()), default=0.0),
            recorded_batch_queries=sum(1 for b, _ in batch_items if b.recorded is not None),
            rules_probe_queries=rules_probes,
            fallback_queries=len(fallback_batches),
            target_bucket_queries=sum(
                1 for b in (*needed, *fallback_batches) if b.kind == "target_quantile"
            ),
            workload_bucket_queries=len(bucket_batches),
            per_pod_fallback_queries=len(per_pod_batches),
        )
        log.debug(
            "metrics fetched",
            policies=len(requests),
            queries=self.last_stats.queries,
            seconds=round(self.last_stats.seconds, 4),
        )
        return results

    async def _run_batch(
        self, batch: Batch, namespaces: set[str], now: float, deadline: float
    ) -> _BatchResult:
        query = batch.promql(namespaces)
        keys = _KEYS.get(batch.kind, _POD_KEYS)
        started = time.monotonic()
        if len(self._pod_keys) > POD_KEYS_KEPT:
            self._pod_keys = _PodKeys()  # old pods' keys go with it
        try:
            # Reduced to per-pod values in the worker thread while the body is read.
            result = await self.client.query_keyed(
                query,
                now,
                deadline,
                keys,
                partial(
                    _reduce_batch,
                    batch.kind,
                    query,
                    recorded=batch.recorded is not None,
                    cutoff=now - batch.older_than,
                    pod_keys=self._pod_keys,
                ),
            )
        except QueryFailed as exc:
            log.warning("prometheus query failed", query=query[:200], reason=exc.reason)
            result = _BatchResult(query=query, failure=NoSignal(exc.reason, exc.detail))
        result.seconds = time.monotonic() - started
        result.recorded = batch.recorded is not None
        return result

    @staticmethod
    def _freshness(
        pod_key: PodKey, fresh: Sequence[_BatchResult], now: float, max_staleness: float
    ) -> NoSignal | float | None:
        """Why the pod is stale, or its oldest newest-sample time among the series checked
        when the freshness batches listed it (None: every one is newer than they report)."""
        oldest = None
        for part in fresh:
            stamp = part.values.get(pod_key)
            if stamp is None:
                continue
            if stamp <= 0.0:  # listed as having had samples and having none now
                return NoSignal(
                    NoSignalReason.STALE,
                    "no current sample (series marked stale by Prometheus: exporter stopped "
                    "or pod gone)",
                )
            age = now - stamp
            if age > max_staleness:
                return NoSignal(
                    NoSignalReason.STALE,
                    f"newest sample is {age:.0f}s old (max staleness {max_staleness:.0f}s)",
                )
            if oldest is None or stamp < oldest:
                oldest = stamp
        return oldest

    def _assemble(
        self,
        req: MetricRequest,
        plan: _Plan,
        batches: Mapping[Batch, _BatchResult],
        now: float,
    ) -> MetricObservation:
        namespace = req.policy.metadata.namespace
        fresh = [batches[b] for b in plan.fresh]
        parts = [batches[b] for b in plan.value_batches]
        for part in (*parts, *fresh):
            if part.failure is not None:
                return part.failure
        # The freshness batches list stale pods only: in most namespaces, none to check.
        fresh = [part for part in fresh if part.may_list(namespace)]
        query = " ; ".join(part.query for part in parts)
        pod_names = [pod.name for pod in req.pods]
        series = sum(part.series_per_namespace[namespace] for part in parts)

        if plan.per_pod:
            # Runs for every pod of every per-pod metric of every policy: the lookups are
            # hoisted, and a value in range (the common case) is not checked again.
            duplicates, pod_values = parts[0].duplicates, parts[0].values
            kind, max_staleness, freshness = plan.kind, plan.max_staleness, self._freshness
            highest = MAX_KV_CACHE if kind is MetricKind.KV_CACHE else MAX_VALUE
            values: dict[str, float] = {}
            rejected: dict[str, NoSignal] = {}
            stamps: list[float] = []
            for pod in pod_names:
                pod_key = (namespace, pod)
                if duplicates and pod_key in duplicates:
                    rejected[pod] = NoSignal(NoSignalReason.INVALID, "several series for the pod")
                    continue
                value = pod_values.get(pod_key)
                if value is None:
                    continue  # missing
                problem = None if 0.0 <= value <= highest else _check_value(value, kind)
                if problem is not None:
                    rejected[pod] = problem
                    continue
                if fresh:
                    stamp = freshness(pod_key, fresh, now, max_staleness)
                    if isinstance(stamp, NoSignal):
                        rejected[pod] = stamp
                        continue
                    if stamp is not None:
                        stamps.append(stamp)
                values[pod] = value
            if not values:
                return _no_values(rejected, len(pod_names), plan.name, namespace)
            oldest = min(stamps, default=None)
            return PodSamples(
                values=values,
                timestamp=now,
                oldest_sample=oldest,
                sample_age_below=plan.fresh[0].older_than if oldest is None else None,
                rejected=rejected,
                series=series,
                query=query,
            )

        spec = plan.spec
        assert spec is not None
        rejected = {}
        stamps = []
        used: list[str] = []
        for pod in pod_names:
            pod_key = (namespace, pod)
            present = any(
                pod_key in p.values or pod_key in p.buckets or pod_key in p.duplicates
                for p in parts
            )
            if not present:
                continue
            stamp = self._freshness(pod_key, fresh, now, plan.max_staleness)
            if isinstance(stamp, NoSignal):
                rejected[pod] = stamp
                continue
            if any(pod_key in p.duplicates for p in parts):
                rejected[pod] = NoSignal(NoSignalReason.INVALID, "unusable bucket series")
                continue
            bad = next(
                (
                    _check_value(v, None)
                    for p in parts
                    for v in (*p.buckets.get(pod_key, {}).values(), p.values.get(pod_key, 0.0))
                    if not 0.0 <= v <= MAX_VALUE
                ),
                None,
            )
            if bad is not None:
                rejected[pod] = bad
                continue
            used.append(pod)
            if stamp is not None:
                stamps.append(stamp)
        if not used:
            return _no_values(rejected, len(pod_names), plan.name, namespace)
        if spec.statistic == "mean":
            sums, counts = parts
            total_sum = math.fsum(sums.values.get((namespace, p), math.nan) for p in used)
            total_count = math.fsum(counts.values.get((namespace, p), math.nan) for p in used)
            value = total_sum / total_count if total_count > 0 else math.nan
        else:
            value = target_quantile(
                spec.quantile, (parts[0].buckets.get((namespace, p), {}) for p in used)
            )
        oldest = min(stamps, default=None)
        return _latency_sample(plan, spec, value, now, oldest, series, len(used), query)

    def _assemble_summed(
        self,
        req: MetricRequest,
        plan: _Plan,
        batches: Mapping[Batch, _BatchResult],
        now: float,
    ) -> MetricObservation | _Need | None:
        """A quantile from the summed histograms of the target's workloads, or None.

        The workloads of the target's pods that have bucket rates (``presence``: one +Inf
        series per pod) hold, summed, exactly what the per-pod path sums when every pod with
        bucket rates in those workloads is the target's, fresh, and (recorded series) recorded
        once; otherwise None and the caller reads the per-pod buckets. (A histogram's series
        always include the +Inf bucket, so the pods with a +Inf rate are the pods with bucket
        rates.) A target of one workload reads the quantile Prometheus computed for it; one of
        several workloads (a rollout) the quantile of their summed histograms, which
        ``_Need.BUCKETS`` asks the caller to read first.
        """
        namespace = req.policy.metadata.namespace
        assert plan.presence is not None
        assert plan.workload_buckets is not None
        spec = plan.spec
        assert spec is not None
        part = batches[plan.value_batches[0]]
        presence = batches[plan.presence]
        fresh = [batches[b] for b in plan.fresh]
        for result in fresh:
            if result.failure is not None:
                return result.failure  # as the per-pod path
        fresh = [result for result in fresh if result.may_list(namespace)]
        if part.failure is not None or presence.failure is not None:
            return None  # the per-pod query may still answer
        present = presence.present
        names = {pod.name for pod in req.pods}
        # The target's pods with bucket rates, per workload.
        listed: defaultdict[str, list[PodKey]] = defaultdict(list)
        for name in names:
            if (pod_key := (namespace, name)) in present:
                listed[recording.workload_of(name)].append(pod_key)
        if not listed:
            if any((namespace, recording.workload_of(name)) in part.quantiles for name in names):
                return None  # bucket rates but no +Inf one: the per-pod path judges
            return _no_values({}, len(names), plan.name, namespace)
        used = 0
        oldest: float | None = None
        for workload, pod_keys in listed.items():
            group = (namespace, workload)
            if group not in part.quantiles or group in part.bad_groups:
                return None
            if presence.workload_pods[group] != len(pod_keys):
                return None  # the workload has pods with bucket rates that are not the target's
            for pod_key in pod_keys:
                if presence.recorded and present[pod_key] != 1:
                    return None
                used += 1
                if not fresh:
                    continue  # no stale pod listed in the namespace (the common case)
                stamp = self._freshness(pod_key, fresh, now, plan.max_staleness)
                if isinstance(stamp, NoSignal):
                    return None
                if stamp is not None and (oldest is None or stamp < oldest):
                    oldest = stamp
        if len(listed) == 1:
            value = part.quantiles[namespace, next(iter(listed))]
            query, series = part.query, 1
        else:
            summed = batches.get(plan.workload_buckets)
            if summed is None:
                return _Need.BUCKETS
            if summed.failure is not None:
                return None
            histograms = []
            for workload in listed:
                group = (namespace, workload)
                histogram = summed.histograms.get(group)
                if histogram is None or group in summed.bad_groups:
                    return None
                histograms.append(histogram)
            value = target_quantile(spec.quantile, histograms)
            query = summed.query
            series = sum(len(histogram) for histogram in histograms)
        query = f"{query} ; {presence.query}"
        return _latency_sample(plan, spec, value, now, oldest, series, used, query)

    # ----------------------------------------------------------------------------------------
    # Custom queries
    # ----------------------------------------------------------------------------------------

    async def _run_custom(
        self, req: MetricRequest, metric: MetricSpec, now: float, deadline: float
    ) -> MetricObservation:
        spec = metric.spec
        if isinstance(spec, GatewayMetricSpec):
            gateway = gateway_query(metric.kind, spec, req.policy.metadata.namespace)
            try:
                found = await self.client.query(gateway, now, deadline)
            except QueryFailed as exc:
                log.warning("prometheus query failed", query=gateway[:200], reason=exc.reason)
                return NoSignal(exc.reason, exc.detail)
            return _target_value(found, gateway, now, None)
        assert isinstance(spec, PrometheusMetricSpec)
        pod_names = [pod.name for pod in req.pods]
        try:
            query = fill_template(
                spec.query,
                namespace=req.policy.metadata.namespace,
                pods=pod_names,
                selector=req.selector or req.policy.spec.selector,
            )
        except TemplateError as exc:
            return NoSignal(NoSignalReason.INVALID, f"query template: {exc}")
        try:
            series = await self.client.query(query, now, deadline)
        except QueryFailed as exc:
            log.warning("prometheus query failed", query=query[:200], reason=exc.reason)
            return NoSignal(exc.reason, exc.detail)
        if spec.returns == "target":
            return _custom_target(series, spec, query, now)
        return _custom_per_pod(series, spec, query, now, pod_names)


_POD_KEYS = ("namespace", "pod")
_KEYS: dict[BatchKind, tuple[str, ...]] = {
    "buckets": ("namespace", "pod", "le"),
    "target_buckets": ("namespace", recording.WORKLOAD_LABEL, "le"),
    "target_quantile": ("namespace", recording.WORKLOAD_LABEL),
}


def _scraped_and_evaluated(scraped: Batch, name: str, recorded: str) -> tuple[Batch, Batch]:
    """The freshness batches of a plan reading recorded series: the raw series' (scraped: the
    exporter is alive) and the recorded series' (evaluated: the rule keeps up)."""
    return (scraped, Batch("fresh", name, recorded=recorded, older_than=scraped.older_than))


def _settle_stamps(
    plans: Iterable[tuple[MetricRequest, MetricSpec, _Plan]],
    results: Mapping[Batch, _BatchResult],
    now: float,
) -> None:
    """Turn each ``stamps`` batch's sample times into the exceptions ``fresh`` batches list.

    The pods whose newest sample is older than the batch's ``older_than`` (value: its time),
    and the pods that have a value in a batch read with it but no current sample (value 0: a
    stopped exporter, whose series Prometheus marks stale at once while the rate over the
    window lingers). Cheap set arithmetic; again after more batches are read (idempotent).
    """
    guarded: dict[Batch, set[Batch]] = {}
    # Plans are shared (pooled): ~20 distinct ones among a thousand policies' metrics.
    for plan in {id(plan): plan for _, _, plan in plans}.values():
        for fresh in plan.fresh:
            if fresh.kind == "stamps":
                batches = guarded.setdefault(fresh, set())
                batches.update(plan.value_batches)
                if plan.presence is not None:
                    batches.add(plan.presence)
    for fresh, batches in guarded.items():
        result = results.get(fresh)
        if result is None or result.failure is not None:
            continue
        stamps = result.stamps
        cutoff = now - fresh.older_than
        exceptions = _older(stamps.keys(), stamps.values(), cutoff)
        for batch in batches:
            part = results.get(batch)
            if part is None or part.failure is not None:
                continue
            for keys in (part.values, part.buckets, part.duplicates, part.present):
                exceptions.update({key: 0.0 for key in keys if key not in stamps})
        result.values = exceptions
        result.series_per_namespace = Counter(ns for ns, _ in exceptions)


def _shared_namespaces(requests: Iterable[MetricRequest]) -> set[str]:
    """Namespaces where pods of different targets have the same ``workload`` label.

    A histogram summed over such a workload would mix targets: there, the quantiles read the
    per-pod buckets. (Checked again on every read, against the pods that have bucket rates.)
    """
    owners: dict[tuple[str, str], frozenset[str]] = {}
    shared: set[str] = set()
    for req in requests:
        namespace = req.policy.metadata.namespace
        names = frozenset(pod.name for pod in req.pods)
        for workload in {recording.workload_of(pod) for pod in names}:
            if owners.setdefault((namespace, workload), names) != names:
                shared.add(namespace)
    return shared


def _reduce_batch(
    kind: BatchKind,
    query: str,
    rows: Iterable[KeyedRow],
    *,
    recorded: bool = False,
    cutoff: float = -math.inf,
    pod_keys: _PodKeys | None = None,
) -> _BatchResult:
    """A batch's rows indexed by (namespace, pod); series without both labels are ignored.

    ``pod_keys``: the (namespace, pod) tuples of earlier answers, to key the rows by (the
    rows' own, added when new): one tuple per pod for all of a tick's batches, not one per
    batch (at 10,000 pods, 14 batches held 140,000 tuples, ~8 MB, at once).
    An answer read at once (:class:`Columns`) of one row per pod is reduced column by column.

    Two series of one pod make the pod unusable (``duplicates``), except for ``recorded``
    series, which are already one per pod: copies of one rule (e.g. from two rulers) hold the
    same rate, and the larger is kept. A recorded ``presence`` batch's rows are sample times:
    those before ``cutoff`` are its freshness exceptions (``values``, as a ``fresh`` batch
    lists them).
    """
    if isinstance(rows, Columns) and kind in _COLUMN_KINDS:
        keys = pod_keys if pod_keys is not None else _PodKeys()
        keyed = keys.keyed(*rows.labels)
        if keyed.distinct():
            return _reduce_columns(kind, query, rows.values, keyed, recorded, cutoff)
    result = _BatchResult(query=query)
    values = result.values
    duplicates = result.duplicates
    per_namespace: dict[str, int] = {}
    shared = (pod_keys.shared if pod_keys is not None else {}).setdefault
    if kind == "target_buckets":
        _reduce_summed(rows, result, per_namespace)
    elif kind == "target_quantile":
        quantiles = result.quantiles
        for (ns, workload), value in rows:
            if ns is None:
                continue
            per_namespace[ns] = per_namespace.get(ns, 0) + 1
            group = (ns, workload or "")
            if group in quantiles:
                # Two histograms of one workload (a rule recorded twice with different
                # external labels): neither stands for its pods.
                result.bad_groups.add(group)
            quantiles[group] = value
    elif kind == "presence":
        present = result.present
        workload_pods = result.workload_pods
        for (ns, pod), value in rows:
            if ns is None or pod is None:
                continue
            per_namespace[ns] = per_namespace.get(ns, 0) + 1
            pod_key = (ns, pod)
            pod_key = shared(pod_key, pod_key)
            copies = present.get(pod_key)
            if copies is None:
                workload_pods[ns, recording.workload_of(pod)] += 1
                copies = 0.0
            if recorded:
                # One row per recorded series, its value the sample time (Batch.promql). A pod
                # recorded twice is not read from the presence (the copies are counted).
                present[pod_key] = copies + 1.0
                if value < cutoff:
                    values[pod_key] = value
            else:
                present[pod_key] = copies + value
    elif kind == "buckets":
        buckets = result.buckets
        bounds: dict[str | None, float] = {}
        for labels, value in rows:
            ns, pod, le = labels
            if ns is None or pod is None:
                continue
            per_namespace[ns] = per_namespace.get(ns, 0) + 1
            pod_key = (ns, pod)
            pod_key = shared(pod_key, pod_key)
            bound = bounds.get(le)
            if bound is None:
                try:
                    bound = parse_le(le) if le is not None else math.nan
                except ValueError:
                    bound = math.nan
                bounds[le] = bound
            if math.isnan(bound):
                duplicates.add(pod_key)  # unusable bucket: reject the pod
                continue
            per_pod = buckets.get(pod_key)
            if per_pod is None:
                per_pod = buckets[pod_key] = {}
            previous = per_pod.get(bound)
            per_pod[bound] = value if previous is None else max(previous, value)
    else:
        for labels, value in rows:
            ns, pod = labels
            if ns is None or pod is None:
                continue
            per_namespace[ns] = per_namespace.get(ns, 0) + 1
            pod_key = (ns, pod)
            pod_key = shared(pod_key, pod_key)
            if pod_key not in values:
                values[pod_key] = value
            elif recorded:
                values[pod_key] = max(values[pod_key], value)
            else:
                duplicates.add(pod_key)
    if kind == "stamps":
        # Sample times, not values: the exceptions are settled later (_settle_stamps).
        result.stamps, result.values = values, {}
        return result
    result.series_per_namespace.update(per_namespace)
    return result


_COLUMN_KINDS: frozenset[BatchKind] = frozenset(
    {"value", "rate", "sum", "count", "fresh", "stamps", "presence"}
)
"""Kinds whose rows are keyed by (namespace, pod)."""


def _reduce_columns(  # noqa: PLR0917 - _reduce_batch's arguments
    kind: BatchKind,
    query: str,
    values: list[float],
    keyed: _KeyedColumns,
    recorded: bool,
    cutoff: float,
) -> _BatchResult:
    """:func:`_reduce_batch` of one row per pod from whole columns: C loops, no Python step
    per row (but for a recorded presence's stale rows, usually none)."""
    keys = keyed.keys
    result = _BatchResult(query=query)
    if kind == "stamps":
        result.stamps = dict(zip(keys, values, strict=True))  # settled by _settle_stamps
        return result
    result.series_per_namespace = keyed.per_namespace.copy()
    if kind != "presence":
        result.values = dict(zip(keys, values, strict=True))
        return result
    result.workload_pods = keyed.workload_pods().copy()
    if not recorded:
        result.present = dict(zip(keys, values, strict=True))
        return result
    result.present = dict.fromkeys(keys, 1.0)  # one copy each: the keys are distinct
    result.values = _older(keys, values, cutoff)
    return result


def _older(keys: Iterable[PodKey], stamps: Collection[float], cutoff: float) -> dict[PodKey, float]:
    """The keys whose sample time is before ``cutoff``, with it (NaN is never before).

    Usually none: one C loop over the times tells, before any Python step per key.
    """
    if not any(map(cutoff.__gt__, stamps)):
        return {}
    return {key: stamp for key, stamp in zip(keys, stamps, strict=True) if stamp < cutoff}


POD_KEYS_KEPT = 200_000
"""Most (namespace, pod) tuples kept between fetches (emptied beyond: old pods' go with it)."""


def _reduce_summed(
    rows: Iterable[KeyedRow], result: _BatchResult, per_namespace: dict[str, int]
) -> None:
    """``target_buckets`` rows into one histogram per (namespace, workload).

    A workload whose histogram cannot stand for its pods' as the per-pod path would read them
    (an ``le`` that is not a number, two series of one bound, a value out of domain) is listed
    in ``result.bad_groups``: its target's buckets are read per pod instead.
    """
    histograms = result.histograms
    bad = result.bad_groups
    bounds: dict[str | None, float] = {}
    for labels, value in rows:
        ns, workload, le = labels
        if ns is None:
            continue
        per_namespace[ns] = per_namespace.get(ns, 0) + 1
        bound = bounds.get(le)
        if bound is None:
            try:
                bound = parse_le(le) if le is not None else math.nan
            except ValueError:
                bound = math.nan
            bounds[le] = bound
        group = (ns, workload or "")
        histogram = histograms.get(group)
        if histogram is None:
            histogram = histograms[group] = {}
        if math.isnan(bound) or bound in histogram or not 0.0 <= value <= MAX_VALUE:
            bad.add(group)
            continue
        histogram[bound] = value


def _latency_sample(  # noqa: PLR0917 - one call shape, two callers in this module
    plan: _Plan,
    spec: LatencyMetricSpec,
    value: float,
    now: float,
    oldest: float | None,
    series: int,
    pods: int,
    query: str,
) -> MetricObservation:
    """A whole-target latency value, or its no-signal (NaN: no traffic; +-Inf).

    ``oldest``: the oldest sample time the freshness batches reported (None: all newer than
    they report)."""
    if math.isnan(value):
        return NoSignal(
            NoSignalReason.NAN,
            f"{plan.kind.value} is NaN over {pods} pod(s): no requests in the "
            f"{format_duration(spec.window)} window (zero traffic has no latency)",
        )
    if math.isinf(value):
        return NoSignal(NoSignalReason.INF, f"{plan.kind.value} is {value}")
    return TargetSample(
        value=value,
        timestamp=now,
        oldest_sample=oldest,
        sample_age_below=plan.fresh[0].older_than if oldest is None else None,
        series=series,
        pods=pods,
        query=query,
    )


def _check_value(value: float, kind: MetricKind | None) -> NoSignal | None:
    """Why a per-pod value is unusable, or None."""
    if 0.0 <= value <= MAX_VALUE and not (kind is MetricKind.KV_CACHE and value > MAX_KV_CACHE):
        return None
    if math.isnan(value):
        return NoSignal(NoSignalReason.NAN, "value is NaN")
    if math.isinf(value):
        return NoSignal(NoSignalReason.INF, f"value is {value}")
    if value < 0:
        return NoSignal(NoSignalReason.INVALID, f"negative value {value:g}")
    if value > MAX_VALUE:
        return NoSignal(NoSignalReason.INVALID, f"absurd value {value:g} (> {MAX_VALUE:g})")
    return NoSignal(
        NoSignalReason.INVALID, f"KV-cache usage {value:g} is above {MAX_KV_CACHE} (0..1)"
    )


def _no_values(rejected: Mapping[str, NoSignal], pods: int, name: str, namespace: str) -> NoSignal:
    """The no-signal of a metric none of whose pods gave a usable value."""
    if not rejected:
        return NoSignal(
            NoSignalReason.EMPTY, f"no {name} series for any of the {pods} pod(s) in {namespace}"
        )
    reasons = Counter(item.reason for item in rejected.values())
    reason = reasons.most_common(1)[0][0]
    detail = "; ".join(f"{pod}: {item.detail}" for pod, item in sorted(rejected.items())[:5])
    more = f" (+{len(rejected) - 5} more)" if len(rejected) > 5 else ""
    return NoSignal(reason, f"no usable {name} value: {detail}{more}")


def _custom_value_problem(value: float) -> NoSignal | None:
    if math.isnan(value):
        return NoSignal(NoSignalReason.NAN, "value is NaN")
    if math.isinf(value):
        return NoSignal(NoSignalReason.INF, f"value is {value}")
    if value < 0:
        return NoSignal(NoSignalReason.INVALID, f"negative value {value:g}")
    if value > MAX_VALUE:
        return NoSignal(NoSignalReason.INVALID, f"absurd value {value:g} (> {MAX_VALUE:g})")
    return None


def _custom_target(
    series: list[Series], spec: PrometheusMetricSpec, query: str, now: float
) -> MetricObservation:
    return _target_value(series, query, now, spec.empty_as)


def _target_value(
    series: list[Series], query: str, now: float, empty_as: float | None
) -> MetricObservation:
    """One whole-target value from a query's series (empty: ``empty_as`` or no signal)."""
    if not series:
        if empty_as is not None:
            return TargetSample(value=empty_as, timestamp=now, series=0, query=query)
        return NoSignal(NoSignalReason.EMPTY, "the query returned no series")
    if len(series) > 1:
        return NoSignal(
            NoSignalReason.INVALID,
            f"returned {len(series)} series; wrap it in sum() (returns: target needs one)",
        )
    problem = _custom_value_problem(series[0].value)
    if problem is not None:
        return problem
    return TargetSample(
        value=series[0].value,
        timestamp=now,
        oldest_sample=series[0].timestamp,
        series=1,
        query=query,
    )


def _custom_per_pod(
    series: list[Series],
    spec: PrometheusMetricSpec,
    query: str,
    now: float,
    pod_names: Sequence[str],
) -> MetricObservation:
    wanted = set(pod_names)
    values: dict[str, float] = {}
    rejected: dict[str, NoSignal] = {}
    seen: set[str] = set()
    for item in series:
        pod = item.labels.get("pod")
        if pod is None or pod not in wanted:
            continue
        if pod in seen:
            values.pop(pod, None)
            rejected[pod] = NoSignal(NoSignalReason.INVALID, "several series for the pod")
            continue
        seen.add(pod)
        problem = _custom_value_problem(item.value)
        if problem is not None:
            rejected[pod] = problem
        else:
            values[pod] = item.value
    if spec.empty_as is not None:
        for pod in pod_names:
            if pod not in seen:
                values[pod] = spec.empty_as
    if not values:
        if not series:
            return NoSignal(NoSignalReason.EMPTY, "the query returned no series")
        if not rejected:
            return NoSignal(
                NoSignalReason.EMPTY,
                f"none of the {len(series)} series has a 'pod' label of the target's pods",
            )
        return _no_values(rejected, len(pod_names), spec.name, "the target")
    return PodSamples(
        values=values,
        timestamp=now,
        rejected=rejected,
        series=len(series),
        query=query,
    )
