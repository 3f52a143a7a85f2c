"""The controller's metrics about fleet operations: modes, external rescales, drain marks, budgets.

Registered in the injected ``CollectorRegistry`` beside
:class:`autoscaler.observability.metrics.ControllerMetrics`, updated by the control loop. The
names are a public contract (docs/fleet.md). The per-policy series are kept as one small state
per policy and rendered at scrape time (:mod:`autoscaler.observability.series`); the per-budget
gauges are a plain prometheus_client gauge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric

from autoscaler.observability.series import (
    Collector,
    Count,
    CounterSpec,
    GaugeSpec,
    add,
    state_of,
)
from autoscaler.policy.models import PolicyMode, ScalingPolicy

_POLICY = ("policy", "namespace")

_MODE = GaugeSpec(
    "nim_autoscaler_policy_mode",
    "1 for the mode in force (active, advisory, paused), 0 for the others.",
    (*_POLICY, "mode"),
)
_EXTERNAL_RESCALES = CounterSpec(
    "nim_autoscaler_external_rescales",
    "Changes of the target's spec.replicas that the controller did not make.",
    _POLICY,
)
_DELETION_COST_WRITES = CounterSpec(
    "nim_autoscaler_pod_deletion_cost_writes",
    "Pod deletion-cost annotation writes before a scale-down, by result (ok, failed).",
    (*_POLICY, "result"),
)
_SCALING_LIMITED = GaugeSpec(
    "nim_autoscaler_scaling_limited",
    "1 while a policy is held back (reason BudgetExhausted: by its ScalingBudget).",
    (*_POLICY, "reason"),
)
_MODES = tuple(PolicyMode)


@dataclass(slots=True)
class _FleetState:
    """One policy's fleet series; written by the control loop, read by scrapes."""

    name: str
    namespace: str
    mode: PolicyMode | None = None
    """The mode in force; None (not exported) until the first :meth:`FleetMetrics.set_mode`."""
    limited: bool | None = None
    """Held back by a budget; None (not exported) until the first tick that read the policy."""
    rescales: Count | None = None
    """External rescales seen."""
    deletion_cost_writes: dict[str, Count] = field(default_factory=dict)
    """By result (ok, failed)."""


class FleetMetrics:
    """Modes in force, external rescales, pod deletion-cost writes, budget use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._policies: dict[str, _FleetState] = {}
        """Per policy key: what it exports (see :meth:`_collect`)."""
        registry.register(Collector(self._collect))
        self.budget_gpus = Gauge(
            "nim_autoscaler_budget_gpus",
            "GPUs of a ScalingBudget: limit, used (granted replicas) and wanted (desired).",
            ["budget", "kind"],
            registry=registry,
        )

    def _state(self, policy: ScalingPolicy) -> _FleetState:
        return state_of(self._policies, policy, _FleetState)

    def set_mode(self, policy: ScalingPolicy, mode: PolicyMode) -> None:
        """Export the mode in force."""
        self._state(policy).mode = mode

    def set_limited(self, policy: ScalingPolicy, *, limited: bool) -> None:
        """Export whether a budget holds the policy back this tick."""
        self._state(policy).limited = limited

    def external_rescale(self, policy: ScalingPolicy) -> None:
        """Count one change of the target's ``spec.replicas`` the controller did not make."""
        state = self._state(policy)
        if state.rescales is None:
            state.rescales = Count.new()
        else:
            state.rescales.value += 1.0

    def deletion_costs_written(self, policy: ScalingPolicy, ok: int, failed: int) -> None:
        """Count the pod deletion-cost writes of one scale-down (both series, even at 0)."""
        writes = self._state(policy).deletion_cost_writes
        add(writes, "ok", ok)
        add(writes, "failed", failed)

    def forget(self, policies: Iterable[ScalingPolicy]) -> None:
        """Drop every per-policy series of policies that were removed."""
        for policy in policies:
            self._policies.pop(policy.key, None)

    def _collect(self) -> Iterator[Metric]:
        """Modes, rescales, deletion-cost writes and budget holds of every known policy."""
        mode, limited = _MODE.family(), _SCALING_LIMITED.family()
        rescales, writes = _EXTERNAL_RESCALES.family(), _DELETION_COST_WRITES.family()
        for state in list(self._policies.values()):
            name, ns = state.name, state.namespace
            in_force = state.mode
            if in_force is not None:
                for each in _MODES:
                    mode.add_metric((name, ns, each.value), 1.0 if each is in_force else 0.0)
            count = state.rescales
            if count is not None:
                rescales.add_metric((name, ns), count.value, created=count.created)
            for result, count in list(state.deletion_cost_writes.items()):
                writes.add_metric((name, ns, result), count.value, created=count.created)
            held = state.limited
            if held is not None:
                limited.add_metric((name, ns, "BudgetExhausted"), 1.0 if held else 0.0)
        return iter((mode, rescales, writes, limited))
