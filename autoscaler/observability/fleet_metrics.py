"""The controller's metrics about fleet operations: modes, external rescales, drain marks, budgets.

Registered in the injected ``CollectorRegistry`` beside
:class:`autoscaler.observability.metrics.ControllerMetrics`, updated by the control loop. The
names are a public contract (docs/observability.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from autoscaler.policy.models import PolicyMode, ScalingPolicy

_POLICY = ("policy", "namespace")


class FleetMetrics:
    """Modes in force, external rescales, pod deletion-cost writes, budget use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.mode = Gauge(
            "nim_autoscaler_policy_mode",
            "1 for the mode in force (active, advisory, paused), 0 for the others.",
            [*_POLICY, "mode"],
            registry=registry,
        )
        self.external_rescales = Counter(
            "nim_autoscaler_external_rescales",
            "Changes of the target's spec.replicas that the controller did not make.",
            _POLICY,
            registry=registry,
        )
        self.deletion_cost_writes = Counter(
            "nim_autoscaler_pod_deletion_cost_writes",
            "Pod deletion-cost annotation writes before a scale-down, by result (ok, failed).",
            [*_POLICY, "result"],
            registry=registry,
        )
        self.scaling_limited = Gauge(
            "nim_autoscaler_scaling_limited",
            "1 while a policy is held back (reason BudgetExhausted: by its ScalingBudget).",
            [*_POLICY, "reason"],
            registry=registry,
        )
        self.budget_gpus = Gauge(
            "nim_autoscaler_budget_gpus",
            "GPUs of a ScalingBudget: limit, used (granted replicas) and wanted (desired).",
            ["budget", "kind"],
            registry=registry,
        )

    def set_mode(self, policy: ScalingPolicy, mode: PolicyMode) -> None:
        """Export the mode in force."""
        for each in PolicyMode:
            self.mode.labels(policy.metadata.name, policy.metadata.namespace, each.value).set(
                1.0 if each is mode else 0.0
            )

    def forget(self, policies: Iterable[ScalingPolicy]) -> None:
        """Drop the per-policy gauges of removed policies."""
        for policy in policies:
            name, ns = policy.metadata.name, policy.metadata.namespace
            for each in PolicyMode:
                self.mode.remove(name, ns, each.value)
            self.scaling_limited.remove(name, ns, "BudgetExhausted")
