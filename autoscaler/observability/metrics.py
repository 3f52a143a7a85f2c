"""The controller's own Prometheus metrics.

One :class:`ControllerMetrics` per process, registered in an injected ``CollectorRegistry`` (never
the global default), updated by the control loop (:mod:`autoscaler.controller.loop`) and served by
:mod:`autoscaler.observability.server`. The metric names are a public contract: the Helm chart's
dashboard and alert rules use them.

Process-wide metrics are plain prometheus_client objects. The per-policy series are kept as one
small state per policy and rendered at scrape time (:mod:`autoscaler.observability.series`): a
value that is None (no signal) is not exported, and a forgotten policy exports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from autoscaler.decision.slo import SloPlan
from autoscaler.decision.types import Decision
from autoscaler.observability.series import (
    Collector,
    Count,
    CounterSpec,
    GaugeSpec,
    add,
    state_of,
)
from autoscaler.policy.models import ScalingPolicy

_POLICY = ("policy", "namespace")

_DESIRED = GaugeSpec(
    "nim_autoscaler_desired_replicas",
    "Replicas the last decision asked for.",
    (*_POLICY, "target"),
)
_CURRENT = GaugeSpec(
    "nim_autoscaler_current_replicas",
    "The target's spec.replicas when last observed.",
    (*_POLICY, "target"),
)
_METRIC_VALUE = GaugeSpec(
    "nim_autoscaler_metric_value",
    "Value of each policy metric compared with its target (absent: no signal).",
    (*_POLICY, "metric"),
)
_METRIC_TARGET = GaugeSpec(
    "nim_autoscaler_metric_target", "Target of each policy metric.", (*_POLICY, "metric")
)
_MIN_REPLICAS = GaugeSpec("nim_autoscaler_min_replicas", "Policy minReplicas.", _POLICY)
_MAX_REPLICAS = GaugeSpec("nim_autoscaler_max_replicas", "Policy maxReplicas.", _POLICY)
_DECISIONS = CounterSpec(
    "nim_autoscaler_decisions", "Decisions made, by one-line reason.", (*_POLICY, "reason")
)
_SCALES = CounterSpec(
    "nim_autoscaler_scale",
    "Scale writes decided, by direction (up, down; no-op: nothing written, the target "
    "already had the count or another writer changed it).",
    (*_POLICY, "direction"),
)
_ERRORS = CounterSpec(
    "nim_autoscaler_errors",
    "Errors by kind (scale_read, scale_write, metrics, decision, record, history).",
    (*_POLICY, "kind"),
)
_SLO_AT_RISK = GaugeSpec(
    "nim_autoscaler_slo_at_risk",
    "1 when a latency metric is above its target.",
    (*_POLICY, "metric"),
)
_CAPACITY = GaugeSpec(
    "nim_autoscaler_capacity_requests_per_second",
    "SLO sizing (algorithm llm): requests/s one ready replica carries within the SLO "
    "(estimate: the figure in force; planned: what the sizing provisions for, above the "
    "estimate while it explores; met: highest load per replica seen within the SLO; "
    "violated: lowest load per replica seen violating it). Absent: no figure yet.",
    (*_POLICY, "figure"),
)
_CAPACITY_SOURCE = GaugeSpec(
    "nim_autoscaler_capacity_source",
    "1 for the source of the capacity figure in force (prior, learned, profile, spec).",
    (*_POLICY, "source"),
)
_CAPACITY_SAMPLES = GaugeSpec(
    "nim_autoscaler_capacity_samples",
    "Steady windows the capacity model has learned from.",
    _POLICY,
)
_SLO_LOAD = GaugeSpec(
    "nim_autoscaler_slo_requests_per_second",
    "SLO sizing: arrival rate measured now (arrivals) and provisioned for one start-up "
    "time ahead (forecast: trend and daily shape; peak: with Poisson headroom).",
    (*_POLICY, "kind"),
)
_SLO_REPLICAS_NEEDED = GaugeSpec(
    "nim_autoscaler_slo_replicas_needed",
    "SLO sizing: replicas the forecast needs (fractional, before rounding up).",
    _POLICY,
)
_SLO_LATENCY = GaugeSpec(
    "nim_autoscaler_slo_latency_seconds",
    "Measured latency quantile of each SLO objective (ttft, itl); absent: no signal.",
    (*_POLICY, "objective"),
)
_SLO_OBJECTIVE = GaugeSpec(
    "nim_autoscaler_slo_objective_seconds",
    "Target of each SLO objective (ttft, itl).",
    (*_POLICY, "objective"),
)
_REQUEST_LENGTH = GaugeSpec(
    "nim_autoscaler_request_length_tokens",
    "Mean tokens per request (kind: prompt, output) from the servers' token counters, "
    "as the capacity model uses them (median of recent steady windows); absent: the "
    "servers do not export the counters, or no steady window yet.",
    (*_POLICY, "kind"),
)

_CAPACITY_FIGURES = ("estimate", "planned", "met", "violated")
_LOAD_KINDS = ("arrivals", "forecast", "peak")
_LENGTH_KINDS = ("prompt", "output")


@dataclass(frozen=True, slots=True)
class _Version:
    """What one version of a policy exports besides its decisions, worked out once per version."""

    policy: ScalingPolicy
    """Its bounds (``spec.min_replicas``, ``spec.max_replicas``) are read at scrape time."""
    target: str
    """The ``target`` label: ``Kind/name`` of the scale target."""
    metrics: tuple[tuple[str, float, bool], ...]
    """Per policy metric: name, threshold, latency metric (it has an SLO-at-risk series)."""

    @classmethod
    def of(cls, policy: ScalingPolicy) -> _Version:
        """The version of ``policy``."""
        ref = policy.spec.scale_target_ref
        metrics = tuple((m.name, m.target.threshold, m.is_latency) for m in policy.spec.metrics)
        return cls(policy, f"{ref.kind}/{ref.name}", metrics)


@dataclass(frozen=True, slots=True)
class _Decided:
    """The numbers of a policy's last decision, replaced whole so a scrape reads one tick."""

    version: _Version
    desired: int
    current: int
    values: Mapping[str, float | None]
    """The decision's own metric values (None: no signal, not exported)."""


@dataclass(slots=True)
class _PolicyState:
    """Everything one policy exports; written by the control loop, read by scrapes."""

    name: str
    namespace: str
    decided: _Decided | None = None
    """None until the first decision of the policy's current version: bounds, targets, replicas
    and metric values are then absent."""
    sizing: SloPlan | None = None
    """The last SLO sizing (kept while later decisions have none, e.g. while paused)."""
    decisions: dict[str, Count] = field(default_factory=dict)
    """By reason."""
    scales: dict[str, Count] = field(default_factory=dict)
    """By direction (up, down, no-op)."""
    errors: dict[str, Count] = field(default_factory=dict)
    """By kind."""


class ControllerMetrics:
    """Gauges, counters and histograms describing what the controller does."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._policies: dict[str, _PolicyState] = {}
        """Per policy key: what it exports (rendered by the two collectors registered below)."""
        # Registered in the order the families have always been exposed in.
        registry.register(Collector(self._collect_decisions))
        self.tick_duration = Histogram(
            "nim_autoscaler_tick_duration_seconds",
            "Duration of one control-loop tick.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.last_successful_tick = Gauge(
            "nim_autoscaler_last_successful_tick_timestamp_seconds",
            "Unix time of the last tick that completed without a controller-wide failure.",
            registry=registry,
        )
        self.is_leader = Gauge(
            "nim_autoscaler_is_leader", "1 while this instance may write.", registry=registry
        )
        self.policies_loaded = Gauge(
            "nim_autoscaler_policies_loaded", "Valid policies in force.", registry=registry
        )
        self.policy_errors = Gauge(
            "nim_autoscaler_policy_errors",
            "Policy files with errors (their last good version stays in force).",
            registry=registry,
        )
        registry.register(Collector(self._collect_sizing))
        self.prometheus_queries = Counter(
            "nim_autoscaler_prometheus_queries",
            "PromQL queries sent.",
            registry=registry,
        )

    def _state(self, policy: ScalingPolicy) -> _PolicyState:
        return state_of(self._policies, policy, _PolicyState)

    def observe_decision(self, policy: ScalingPolicy, decision: Decision) -> None:
        """Export one decision's numbers (and the bounds and targets of ``policy``)."""
        state = self._state(policy)
        last = state.decided
        version = last.version if last is not None and last.version.policy is policy else None
        state.decided = _Decided(
            version or _Version.of(policy),
            decision.desired_replicas,
            decision.current_replicas,
            decision.metric_values,
        )
        add(state.decisions, decision.reason)
        if decision.sizing is not None:
            state.sizing = decision.sizing

    def error(self, policy: ScalingPolicy, kind: str) -> None:
        """Count one error of ``kind`` for ``policy``."""
        add(self._state(policy).errors, kind)

    def scaled(self, policy: ScalingPolicy, old: int, new: int) -> None:
        """Count one scale write."""
        add(self._state(policy).scales, "up" if new > old else "down")

    def no_op(self, policy: ScalingPolicy) -> None:
        """Count one decided scale that wrote nothing (see ``nim_autoscaler_scale_total``)."""
        add(self._state(policy).scales, "no-op")

    def forget(self, policies: Iterable[ScalingPolicy]) -> None:
        """Drop every series of policies that were removed (or went to another instance)."""
        for policy in policies:
            self._policies.pop(policy.key, None)

    def forget_version(self, policies: Iterable[ScalingPolicy]) -> None:
        """Drop the series of replaced policy versions until the new version's first decision.

        Bounds, targets, replicas, metric values and the SLO sizing go (their labels may change
        with the policy); the counters go on counting.
        """
        for policy in policies:
            state = self._policies.get(policy.key)
            if state is not None:
                state.decided = None
                state.sizing = None

    def _collect_decisions(self) -> Iterator[Metric]:
        """Replicas, bounds, metric values and targets, and the per-policy counters."""
        desired, current = _DESIRED.family(), _CURRENT.family()
        value, target = _METRIC_VALUE.family(), _METRIC_TARGET.family()
        low, high, at_risk = _MIN_REPLICAS.family(), _MAX_REPLICAS.family(), _SLO_AT_RISK.family()
        decisions, scales, errors = _DECISIONS.family(), _SCALES.family(), _ERRORS.family()
        for state in list(self._policies.values()):
            name, ns = state.name, state.namespace
            decided = state.decided
            if decided is not None:
                version = decided.version
                spec = version.policy.spec
                desired.add_metric((name, ns, version.target), decided.desired)
                current.add_metric((name, ns, version.target), decided.current)
                low.add_metric((name, ns), spec.min_replicas)
                high.add_metric((name, ns), spec.max_replicas)
                for metric, threshold, latency in version.metrics:
                    observed = decided.values.get(metric)
                    if observed is not None:
                        value.add_metric((name, ns, metric), observed)
                    target.add_metric((name, ns, metric), threshold)
                    if latency:
                        risk = observed is not None and observed > threshold
                        at_risk.add_metric((name, ns, metric), 1.0 if risk else 0.0)
            for family, counts in (
                (decisions, state.decisions),
                (scales, state.scales),
                (errors, state.errors),
            ):
                for label, count in list(counts.items()):
                    family.add_metric((name, ns, label), count.value, created=count.created)
        return iter(
            (desired, current, value, target, low, high, decisions, scales, errors, at_risk)
        )

    def _collect_sizing(self) -> Iterator[Metric]:
        """The SLO sizing and the capacity model behind it (``algorithm: llm`` policies)."""
        capacity, source = _CAPACITY.family(), _CAPACITY_SOURCE.family()
        samples, load = _CAPACITY_SAMPLES.family(), _SLO_LOAD.family()
        needed, latency = _SLO_REPLICAS_NEEDED.family(), _SLO_LATENCY.family()
        objective, length = _SLO_OBJECTIVE.family(), _REQUEST_LENGTH.family()
        for state in list(self._policies.values()):
            plan = state.sizing
            if plan is None:
                continue
            name, ns = state.name, state.namespace
            estimate = plan.estimate
            figures = (estimate.per_replica, estimate.planned, estimate.good, estimate.bad)
            _add_present(capacity, name, ns, zip(_CAPACITY_FIGURES, figures, strict=True))
            source.add_metric((name, ns, estimate.source), 1.0)
            samples.add_metric((name, ns), plan.state.model.samples)
            loads = (plan.arrivals, plan.forecast, plan.peak)
            _add_present(load, name, ns, zip(_LOAD_KINDS, loads, strict=True))
            if plan.need is not None:
                needed.add_metric((name, ns), plan.need)
            _add_present(latency, name, ns, ((o, measured) for o, _, _, measured in plan.latencies))
            for each, _, goal, _ in plan.latencies:
                objective.add_metric((name, ns, each), goal)
            lengths = estimate.lengths or (None, None)
            _add_present(length, name, ns, zip(_LENGTH_KINDS, lengths, strict=True))
        return iter((capacity, source, samples, load, needed, latency, objective, length))


def _add_present(
    family: GaugeMetricFamily, name: str, ns: str, values: Iterable[tuple[str, float | None]]
) -> None:
    """Add the series that have a value (absent, never a stale 0, without one)."""
    for label, value in values:
        if value is not None:
            family.add_metric((name, ns, label), value)
