"""The controller's own Prometheus metrics.

One :class:`ControllerMetrics` per process, registered in an injected ``CollectorRegistry`` (never
the global default), updated by the control loop (:mod:`autoscaler.controller.loop`) and served by
:mod:`autoscaler.observability.server`. The metric names are a public contract: the Helm chart's
dashboard and alert rules use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from autoscaler.decision.slo import SloPlan
from autoscaler.decision.types import Decision
from autoscaler.policy.models import ScalingPolicy

_POLICY = ("policy", "namespace")


@dataclass(slots=True)
class _PolicySeries:
    """The labelled series of one version of a policy, looked up once (not on every tick)."""

    policy: ScalingPolicy
    desired: Gauge
    current: Gauge
    metrics: tuple[tuple[str, float, Gauge, Gauge | None], ...]
    """Per metric: name, threshold, its value series, its SLO-at-risk series (latency only)."""
    decisions: dict[str, Counter] = field(default_factory=dict)
    """Decision counters by reason."""
    exported: set[str] = field(default_factory=set)
    """Metrics whose value series is exported now (the others were removed: no signal)."""


class ControllerMetrics:
    """Gauges, counters and histograms describing what the controller does."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._series: dict[str, _PolicySeries] = {}
        """Per policy key: its labelled series (see :meth:`observe_decision`)."""
        self._sizing: dict[tuple[Gauge, tuple[str, ...]], Gauge] = {}
        """The SLO sizing series exported now: (family, label values) -> the labelled series.
        Looked up once, and a series that is not exported is not removed again on every tick
        (see :meth:`_set_or_remove`)."""
        self.desired_replicas = Gauge(
            "nim_autoscaler_desired_replicas",
            "Replicas the last decision asked for.",
            [*_POLICY, "target"],
            registry=registry,
        )
        self.current_replicas = Gauge(
            "nim_autoscaler_current_replicas",
            "The target's spec.replicas when last observed.",
            [*_POLICY, "target"],
            registry=registry,
        )
        self.metric_value = Gauge(
            "nim_autoscaler_metric_value",
            "Value of each policy metric compared with its target (absent: no signal).",
            [*_POLICY, "metric"],
            registry=registry,
        )
        self.metric_target = Gauge(
            "nim_autoscaler_metric_target",
            "Target of each policy metric.",
            [*_POLICY, "metric"],
            registry=registry,
        )
        self.min_replicas = Gauge(
            "nim_autoscaler_min_replicas", "Policy minReplicas.", _POLICY, registry=registry
        )
        self.max_replicas = Gauge(
            "nim_autoscaler_max_replicas", "Policy maxReplicas.", _POLICY, registry=registry
        )
        self.decisions = Counter(
            "nim_autoscaler_decisions",
            "Decisions made, by one-line reason.",
            [*_POLICY, "reason"],
            registry=registry,
        )
        self.scales = Counter(
            "nim_autoscaler_scale",
            "Scale writes decided, by direction (up, down; no-op: nothing written, the target "
            "already had the count or another writer changed it).",
            [*_POLICY, "direction"],
            registry=registry,
        )
        self.errors = Counter(
            "nim_autoscaler_errors",
            "Errors by kind (scale_read, scale_write, metrics, decision, record, history).",
            [*_POLICY, "kind"],
            registry=registry,
        )
        self.slo_at_risk = Gauge(
            "nim_autoscaler_slo_at_risk",
            "1 when a latency metric is above its target.",
            [*_POLICY, "metric"],
            registry=registry,
        )
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
        self.capacity = Gauge(
            "nim_autoscaler_capacity_requests_per_second",
            "SLO sizing (algorithm llm): requests/s one ready replica carries within the SLO "
            "(estimate: the figure in force; planned: what the sizing provisions for, above the "
            "estimate while it explores; met: highest load per replica seen within the SLO; "
            "violated: lowest load per replica seen violating it). Absent: no figure yet.",
            [*_POLICY, "figure"],
            registry=registry,
        )
        self.capacity_source = Gauge(
            "nim_autoscaler_capacity_source",
            "1 for the source of the capacity figure in force (prior, learned, profile, spec).",
            [*_POLICY, "source"],
            registry=registry,
        )
        self.capacity_samples = Gauge(
            "nim_autoscaler_capacity_samples",
            "Steady windows the capacity model has learned from.",
            _POLICY,
            registry=registry,
        )
        self.slo_load = Gauge(
            "nim_autoscaler_slo_requests_per_second",
            "SLO sizing: arrival rate measured now (arrivals) and provisioned for one start-up "
            "time ahead (forecast: trend and daily shape; peak: with Poisson headroom).",
            [*_POLICY, "kind"],
            registry=registry,
        )
        self.slo_replicas_needed = Gauge(
            "nim_autoscaler_slo_replicas_needed",
            "SLO sizing: replicas the forecast needs (fractional, before rounding up).",
            _POLICY,
            registry=registry,
        )
        self.slo_latency = Gauge(
            "nim_autoscaler_slo_latency_seconds",
            "Measured latency quantile of each SLO objective (ttft, itl); absent: no signal.",
            [*_POLICY, "objective"],
            registry=registry,
        )
        self.slo_objective = Gauge(
            "nim_autoscaler_slo_objective_seconds",
            "Target of each SLO objective (ttft, itl).",
            [*_POLICY, "objective"],
            registry=registry,
        )
        self.request_length = Gauge(
            "nim_autoscaler_request_length_tokens",
            "Mean tokens per request (kind: prompt, output) from the servers' token counters, "
            "as the capacity model uses them (median of recent steady windows); absent: the "
            "servers do not export the counters, or no steady window yet.",
            [*_POLICY, "kind"],
            registry=registry,
        )
        self.prometheus_queries = Counter(
            "nim_autoscaler_prometheus_queries",
            "PromQL queries sent.",
            registry=registry,
        )

    def _policy_series(self, policy: ScalingPolicy) -> _PolicySeries:
        """The policy's series; built (and its static gauges set) when the policy changes."""
        series = self._series.get(policy.key)
        if series is not None and series.policy is policy:
            return series
        ns, name = policy.metadata.namespace, policy.metadata.name
        target = f"{policy.spec.scale_target_ref.kind}/{policy.spec.scale_target_ref.name}"
        self.min_replicas.labels(name, ns).set(policy.spec.min_replicas)
        self.max_replicas.labels(name, ns).set(policy.spec.max_replicas)
        metrics = []
        for metric in policy.spec.metrics:
            threshold = metric.target.threshold
            self.metric_target.labels(name, ns, metric.name).set(threshold)
            slo = self.slo_at_risk.labels(name, ns, metric.name) if metric.is_latency else None
            value = self.metric_value.labels(name, ns, metric.name)
            metrics.append((metric.name, threshold, value, slo))
        series = _PolicySeries(
            policy,
            self.desired_replicas.labels(name, ns, target),
            self.current_replicas.labels(name, ns, target),
            tuple(metrics),
            exported={m.name for m in policy.spec.metrics},
        )
        self._series[policy.key] = series
        return series

    def observe_decision(self, policy: ScalingPolicy, decision: Decision) -> None:
        """Export one decision's numbers."""
        series = self._policy_series(policy)
        series.desired.set(decision.desired_replicas)
        series.current.set(decision.current_replicas)
        counter = series.decisions.get(decision.reason)
        if counter is None:
            ns, name = policy.metadata.namespace, policy.metadata.name
            counter = series.decisions[decision.reason] = self.decisions.labels(
                name, ns, decision.reason
            )
        counter.inc()
        for metric, threshold, child, slo in series.metrics:
            value = decision.metric_values.get(metric)
            if value is None:
                if metric in series.exported:
                    ns, name = policy.metadata.namespace, policy.metadata.name
                    self.metric_value.remove(name, ns, metric)
                    series.exported.discard(metric)
            else:
                if metric not in series.exported:
                    # Removed while there was no signal: the registry holds a new child now.
                    ns, name = policy.metadata.namespace, policy.metadata.name
                    child = self.metric_value.labels(name, ns, metric)
                    series.metrics = tuple(
                        (m, t, child if m == metric else c, s) for m, t, c, s in series.metrics
                    )
                    series.exported.add(metric)
                child.set(value)
            if slo is not None:
                at_risk = value is not None and value > threshold
                slo.set(1.0 if at_risk else 0.0)
        if decision.sizing is not None:
            meta = policy.metadata
            self._observe_sizing(meta.name, meta.namespace, decision.sizing)

    def _observe_sizing(self, name: str, ns: str, sizing: SloPlan) -> None:
        """Export the SLO sizing and the capacity model behind it."""
        estimate = sizing.estimate
        figures = (estimate.per_replica, estimate.planned, estimate.good, estimate.bad)
        for figure, value in zip(_CAPACITY_FIGURES, figures, strict=True):
            self._set_or_remove(self.capacity, (name, ns, figure), value)
        for source in _CAPACITY_SOURCES | {estimate.source}:
            value = 1.0 if source == estimate.source else None
            self._set_or_remove(self.capacity_source, (name, ns, source), value)
        self.capacity_samples.labels(name, ns).set(sizing.state.model.samples)
        loads = (sizing.arrivals, sizing.forecast, sizing.peak)
        for kind, value in zip(_LOAD_KINDS, loads, strict=True):
            self._set_or_remove(self.slo_load, (name, ns, kind), value)
        self._set_or_remove(self.slo_replicas_needed, (name, ns), sizing.need)
        for objective, _, target, measured in sizing.latencies:
            self.slo_objective.labels(name, ns, objective).set(target)
            self._set_or_remove(self.slo_latency, (name, ns, objective), measured)
        lengths = estimate.lengths or (None, None)
        for kind, tokens in zip(_LENGTH_KINDS, lengths, strict=True):
            self._set_or_remove(self.request_length, (name, ns, kind), tokens)

    def error(self, policy: ScalingPolicy, kind: str) -> None:
        """Count one error of ``kind`` for ``policy``."""
        self.errors.labels(policy.metadata.name, policy.metadata.namespace, kind).inc()

    def scaled(self, policy: ScalingPolicy, old: int, new: int) -> None:
        """Count one scale write."""
        direction = "up" if new > old else "down"
        self.scales.labels(policy.metadata.name, policy.metadata.namespace, direction).inc()

    def no_op(self, policy: ScalingPolicy) -> None:
        """Count one decided scale that wrote nothing (see :attr:`scales`)."""
        self.scales.labels(policy.metadata.name, policy.metadata.namespace, "no-op").inc()

    def forget(self, policies: Iterable[ScalingPolicy]) -> None:
        """Drop the per-policy series of policies that were removed."""
        for policy in policies:
            self._series.pop(policy.key, None)
            ns, name = policy.metadata.namespace, policy.metadata.name
            for gauge in (self.min_replicas, self.max_replicas):
                gauge.remove(name, ns)
            target = f"{policy.spec.scale_target_ref.kind}/{policy.spec.scale_target_ref.name}"
            for gauge in (self.desired_replicas, self.current_replicas):
                gauge.remove(name, ns, target)
            for metric in policy.spec.metrics:
                for gauge in (self.metric_value, self.metric_target, self.slo_at_risk):
                    gauge.remove(name, ns, metric.name)
            series: list[tuple[Gauge, tuple[str, ...]]] = [
                (self.capacity_samples, ()),
                (self.slo_replicas_needed, ()),
                *((self.capacity, (figure,)) for figure in _CAPACITY_FIGURES),
                *((self.capacity_source, (source,)) for source in _CAPACITY_SOURCES),
                *((self.slo_load, (kind,)) for kind in _LOAD_KINDS),
                *((self.slo_latency, (objective,)) for objective in _OBJECTIVES),
                *((self.slo_objective, (objective,)) for objective in _OBJECTIVES),
                *((self.request_length, (kind,)) for kind in _LENGTH_KINDS),
            ]
            for gauge, extra in series:
                labels = (name, ns, *extra)
                self._sizing.pop((gauge, labels), None)
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)

    def _set_or_remove(self, gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
        """Set an SLO sizing series, or drop it when there is no value (absent, never a stale 0).

        Only this method and :meth:`forget` add and remove these series, so what it has set
        (:attr:`_sizing`) is what the registry exports.
        """
        key = (gauge, labels)
        if value is None:
            if self._sizing.pop(key, None) is not None:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
            return
        child = self._sizing.get(key)
        if child is None:
            child = self._sizing[key] = gauge.labels(*labels)
        child.set(value)


_CAPACITY_FIGURES = ("estimate", "planned", "met", "violated")
_CAPACITY_SOURCES = frozenset({"prior", "learned", "profile", "spec"})
_LOAD_KINDS = ("arrivals", "forecast", "peak")
_OBJECTIVES = ("ttft", "itl")
_LENGTH_KINDS = ("prompt", "output")
