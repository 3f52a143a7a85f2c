"""The controller's own Prometheus metrics.

One :class:`ControllerMetrics` per process, registered in an injected ``CollectorRegistry`` (never
the global default), updated by the control loop (:mod:`autoscaler.controller.loop`) and served by
:mod:`autoscaler.observability.server`. The metric names are a public contract: the Helm chart's
dashboard and alert rules use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
