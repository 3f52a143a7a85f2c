"""Two targets behind emulated pods, a real Prometheus (through a proxy) and the in-process
controller, with data faults the test switches on and off.

``llama`` has ``onMetricFailure: hold``; ``mistral`` has ``fallback`` to 4 replicas after 2
failed ticks. Each target's demand is spread over its Ready pods (KV cache ``demand / pods``);
:attr:`PromWorld.mode` replaces the exported values: ``nan``, ``negative``, ``huge`` (1e308),
``empty`` (no series at all), ``partial`` (half of llama's pods export nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoscaler.decision.types import ConditionType, Decision
from autoscaler.policy.models import MetricKind
from autoscaler.settings import Settings
from tests.e2e.harness import (
    NAMESPACE,
    Syncing,
    controller_settings,
    policy_yaml,
    ready_pods,
    wait_until,
)
from tests.fakekube.server import write_kubeconfig
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.reliability.chaos import ChaosKube

POLICIES = {
    "llama": policy_yaml("llama", scale_down_window=0, on_metric_failure="{action: hold}"),
    "mistral": policy_yaml(
        "mistral",
        scale_down_window=0,
        on_metric_failure="{action: fallback, replicas: 4, afterFailures: 2}",
    ),
}

VALUES = {"nan": float("nan"), "negative": -0.5, "huge": 1e308}


class PromWorld(Syncing):
    """Fake cluster + exporter kept in step; demand and data faults set by the test."""

    period = 0.1

    def __init__(self, fake: ChaosKube, fleet: FleetExporter, tmp_path: Path) -> None:
        self.fake = fake
        self.fleet = fleet
        self.tmp_path = tmp_path
        self.demand = {"llama": 2.0, "mistral": 1.0}
        self.mode = "ok"
        self.decisions: list[Decision] = []
        policies = tmp_path / "policies"
        policies.mkdir(exist_ok=True)
        for name, text in POLICIES.items():
            (policies / f"{name}.yaml").write_text(text)
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)

    def settings(self, prometheus_url: str, **overrides: Any) -> Settings:
        return controller_settings(
            prometheus_url,
            self.tmp_path / "policies",
            self.kubeconfig,
            **{"prometheus_timeout": 1.0, **overrides},
        )

    def replicas(self, name: str) -> int:
        deployment = self.fake.get("deployments", NAMESPACE, name)
        assert deployment is not None
        return int(deployment["spec"]["replicas"])

    def ready_pods(self, name: str) -> list[str]:
        return ready_pods(self.fake, app=name)

    def sync(self) -> None:
        """Advance pods; export each Ready pod's share of its target's demand (or the fault)."""
        self.fake.step()
        exported: set[str] = set()
        for name, demand in self.demand.items():
            ready = self.ready_pods(name)
            share = min(1.0, demand / len(ready)) if ready else 0.0
            for index, pod in enumerate(ready):
                if self.mode == "empty" or (
                    self.mode == "partial" and name == "llama" and index % 2 == 1
                ):
                    continue
                value = VALUES.get(self.mode, share)
                self.fleet.add(FleetPod(NAMESPACE, pod, gauges={MetricKind.KV_CACHE: value}))
                exported.add(pod)
        for namespace, pod in list(self.fleet.pods):
            if pod not in exported:
                self.fleet.remove(namespace, pod)

    def of(self, name: str, since: int = 0) -> list[Decision]:
        """Decisions of one policy (from index ``since`` of all decisions)."""
        return [d for d in self.decisions[since:] if d.policy == f"{NAMESPACE}/{name}"]


def active(decision: Decision) -> bool | None:
    """The ScalingActive condition's status (None when absent)."""
    condition = decision.condition(ConditionType.SCALING_ACTIVE)
    return None if condition is None else condition.status


def fallen_back(decision: Decision) -> bool | None:
    """The Fallback condition's status (None when absent)."""
    condition = decision.condition(ConditionType.FALLBACK)
    return None if condition is None else condition.status


def has_value(decision: Decision) -> bool:
    """True when the decision's kvCache metric gave a usable value."""
    return decision.metric_values.get("kvCache") is not None


async def fault_phase(
    world: PromWorld,
    registry: Any,
    start: Any,
    stop: Any,
    *,
    llama_after: int | None = 4,
) -> None:
    """Fault on: llama holds (no write, no value, ScalingActive=False), mistral falls back to 4.

    Fault off: on the first tick with a value again, mistral decides 2 and llama is active.
    """
    mark = len(world.decisions)
    llama_writes = len(world.fake.scale_writes("llama"))
    assert world.replicas("mistral") == 2
    await start()
    # Decisions reach ``on_decision`` just after the write: wait for both.
    await wait_until(
        lambda: (
            world.replicas("mistral") == 4
            and any(fallen_back(d) for d in world.of("mistral", mark))
        ),
        20,
        "mistral's fallback to 4",
    )
    await wait_until(
        lambda: sum(1 for d in world.of("llama", mark) if not has_value(d)) >= 2,
        10,
        "llama decisions without a value",
    )
    value = registry.get_sample_value(
        "nim_autoscaler_metric_value",
        {"policy": "llama", "namespace": NAMESPACE, "metric": "kvCache"},
    )
    assert value is None, value  # absent while there is no signal
    for decision in world.of("llama", mark):
        if has_value(decision):
            continue
        assert active(decision) is False, decision
        condition = decision.condition(ConditionType.SCALING_ACTIVE)
        assert condition is not None
        assert condition.reason
        assert decision.desired_replicas == decision.current_replicas, decision  # hold
    fallback = [d for d in world.of("mistral", mark) if not has_value(d)]
    assert any(d.desired_replicas == 4 and fallen_back(d) for d in fallback), fallback
    assert not fallen_back(fallback[0]), fallback[0]  # only after 2 failed ticks
    assert all(d.desired_replicas in {2, 4} for d in fallback), fallback
    assert len(world.fake.scale_writes("llama")) == llama_writes  # no llama write at all

    recovered = len(world.decisions)
    await stop()
    await wait_until(
        lambda: (
            world.replicas("mistral") == 2
            and any(has_value(d) for d in world.of("mistral", recovered))
        ),
        20,
        "mistral's recovery to 2",
    )
    # Recovery on the first good tick: a normal decision from the data (no fallback), even if
    # it keeps up to 4 while the fallback's new pods do not report yet (missing-pod rule).
    first = next(d for d in world.of("mistral", recovered) if has_value(d))
    assert active(first) is True, first
    assert fallen_back(first) is False, first
    assert 2 <= first.desired_replicas <= 4, first
    await wait_until(
        lambda: any(has_value(d) for d in world.of("llama", recovered)), 10, "llama's value"
    )
    first = next(d for d in world.of("llama", recovered) if has_value(d))
    assert active(first) is True, first
    if llama_after is not None:
        assert first.desired_replicas == llama_after, first
