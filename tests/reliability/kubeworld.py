"""Drive the control loop on the real Kubernetes adapters against :class:`ChaosKube`.

Two policies in one namespace: ``llama`` (the target faults are aimed at) and ``mistral`` (a
healthy neighbour). Metrics come from :class:`StaticMetricSource`: each target has a total
demand, spread evenly over its pods (``demand / pods`` KV-cache usage per pod, as a Service
balances load), so the HPA's steady state is ``ceil(demand / 0.5)`` whatever path led there and
a faulty run must end where a clean run ends. Ticks are 15 s apart on a virtual clock; before
each tick the pod cache must show exactly the fake server's pods (so a cache that does not
recover from a fault fails the wait instead of silently deciding on stale pods).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from autoscaler.controller.loop import ControlLoop, TickResult
from autoscaler.decision.types import History, PodSamples
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.kube.history import KubeHistoryStore
from autoscaler.kube.scale import KubeScaleClient
from autoscaler.policy.models import ScaleTargetRef, ScalingPolicy
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.fakekube.server import FakeKube, write_kubeconfig
from tests.reliability.chaos import ChaosKube

NAMESPACE = "nim"
CONTROLLER_NS = "nim-autoscaler"
START = 1_000_000.0
STEP = 15.0


def history_data(fake: FakeKube, namespace: str = CONTROLLER_NS) -> dict[str, str]:
    """Every policy's saved history text, merged from the history shard ConfigMaps."""
    data: dict[str, str] = {}
    for (plural, ns, name), obj in sorted(fake.objects.items()):
        if plural == "configmaps" and ns == namespace and SHARD_NAME.fullmatch(name):
            data.update(obj.get("data") or {})
    return data


SHARD_NAME = re.compile(r"nim-autoscaler-history-\d+")


def policy(name: str) -> ScalingPolicy:
    """An ``algorithm: hpa`` policy on Deployment ``name`` (KV cache, 0.5 per pod)."""
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 12,
                "algorithm": "hpa",
                "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}],
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]},
                    "scaleDown": {
                        "stabilizationWindowSeconds": 45,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
                    },
                },
            },
        }
    )


FAULTY = policy("llama")
HEALTHY = policy("mistral")

# Total demand per tick (KV-cache usage summed over pods): up, hold, down, hold.
DEMAND = {
    "llama": [1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5],
    "mistral": [1.0, 2.5, 2.5, 2.5, 2.5, 2.5, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8],
}
TICKS = len(DEMAND["llama"])

Hook = Callable[[ChaosKube], None]


@dataclass
class RunResult:
    """What a run produced, per policy name."""

    results: dict[str, list[TickResult]] = field(default_factory=dict)
    final_replicas: dict[str, int] = field(default_factory=dict)
    stored_history: dict[str, History | None] = field(default_factory=dict)
    loop_history: dict[str, History | None] = field(default_factory=dict)
    fake: ChaosKube | None = None
    registry: CollectorRegistry | None = None
    pod_lists: int = 0

    def desired(self, name: str) -> list[int | None]:
        """Desired replicas per tick (None: no decision that tick)."""
        return [r.decision.desired_replicas if r.decision else None for r in self.results[name]]

    def log_of(self, name: str) -> list[Any]:
        """Every request the fake saw for a target's ``/scale``."""
        assert self.fake is not None
        return [s for s in self.fake.log if s.path.endswith(f"/deployments/{name}/scale")]

    def outcomes(self, name: str) -> list[str]:
        """Outcome per tick."""
        return [r.outcome.value for r in self.results[name]]


def _pods_of(fake: ChaosKube, name: str) -> list[str]:
    return sorted(
        pod
        for (plural, ns, pod), obj in fake.objects.items()
        if plural == "pods"
        and ns == NAMESPACE
        and (obj["metadata"].get("labels") or {}).get("app") == name
        and "deletionTimestamp" not in obj["metadata"]
    )


def _targets_match(context: KubeContext, fake: ChaosKube) -> bool:
    """The target cache (once synced) holds the server's spec.replicas of every target."""
    if not context.targets.synced("apps/v1", "Deployment"):
        return True  # not watched yet: the loop reads /scale
    for name in DEMAND:
        ref = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name=name)
        reading = context.targets.lookup(NAMESPACE, ref)
        obj = fake.objects.get(("deployments", NAMESPACE, name))
        server = int(obj["spec"]["replicas"]) if obj is not None else None
        if (reading.spec_replicas if reading is not None else None) != server:
            return False
    return True


async def _cache_matches(context: KubeContext, fake: ChaosKube, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        cached = {
            name: sorted(p.name for p in context.pods.pods(NAMESPACE, f"app={name}"))
            for name in DEMAND
        }
        wanted = {name: _pods_of(fake, name) for name in DEMAND}
        if cached == wanted and _targets_match(context, fake):
            return
        if loop.time() > deadline:
            msg = f"pod cache did not converge in {timeout} s: cache {cached}, server {wanted}"
            raise AssertionError(msg)
        await asyncio.sleep(0.02)


async def run_world(
    tmp_path: Path,
    *,
    setup: Hook | None = None,
    hooks: dict[int, Hook] | None = None,
    extra_ticks: int = 0,
    request_timeout: float = 1.0,
    retry_budget: float | None = None,
    history_max_bytes: int | None = None,
) -> RunResult:
    """Run :data:`TICKS` (+ ``extra_ticks`` at the last demand) ticks; hooks run before a tick."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    hooks = hooks or {}
    out = RunResult(results={name: [] for name in DEMAND})
    async with ChaosKube() as fake:
        out.fake = fake
        for name in DEMAND:
            fake.add_deployment(NAMESPACE, name, replicas=2, labels={"app": name})
        fake.enable_reconcile()
        fake.step()
        settings = Settings(
            kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", fake.url),
            leader_election=False,
            leader_election_namespace=CONTROLLER_NS,
            namespaces=[NAMESPACE],
            # These runs compare the history ConfigMaps with the loop's memory after every
            # tick: write every tick (the save interval has its own tests in tests/kube).
            history_save_interval=0,
        )
        context = await connect(settings, request_timeout=request_timeout)
        if retry_budget is not None:
            # A short retry budget lets faults escape the adapter's retries, so whole ticks
            # fail and the loop (not the adapter) has to catch up on the next tick.
            context.scale = KubeScaleClient(
                context.api,
                discovery=context.scale.discovery,
                retry_budget=retry_budget,
                request_timeout=request_timeout,
            )
        if history_max_bytes is not None:
            context.history = KubeHistoryStore(
                context.api, CONTROLLER_NS, max_bytes=history_max_bytes, save_interval=0
            )
        context.start()
        registry = CollectorRegistry()
        out.registry = registry
        source = StaticMetricSource()
        loop = ControlLoop(
            policies=lambda: [FAULTY, HEALTHY],
            metrics=source,
            scale=context.scale,
            pods=context.pods,
            targets=context.targets,
            recorder=context.recorder,
            history_store=context.history,
            leader=context.leader,
            registry=registry,
            log_ticks=False,
        )
        try:
            assert await context.pods.wait_synced(within=10)
            if setup is not None:
                setup(fake)
            for tick in range(TICKS + extra_ticks):
                if tick in hooks:
                    hooks[tick](fake)
                fake.step()
                await _cache_matches(context, fake)
                now = START + STEP * tick
                for name, series in DEMAND.items():
                    demand = series[min(tick, len(series) - 1)]
                    pods = _pods_of(fake, name)
                    share = demand / len(pods) if pods else 0.0
                    samples = PodSamples(
                        dict.fromkeys(pods, share), timestamp=now, series=len(pods)
                    )
                    source.set(f"{NAMESPACE}/{name}", {"kvCache": samples})
                for result in await loop.tick(now):
                    out.results[result.policy.split("/")[1]].append(result)
            fake.chaos_rules.clear()
            fake.faults.clear()
            for name in DEMAND:
                deployment = fake.get("deployments", NAMESPACE, name)
                out.final_replicas[name] = int(deployment["spec"]["replicas"]) if deployment else -1
                key = f"{NAMESPACE}/{name}"
                out.loop_history[name] = loop.history(key)
            data = history_data(fake)
            for name in DEMAND:
                text = data.get(f"{NAMESPACE}.{name}")
                out.stored_history[name] = History.from_json(json.loads(text)) if text else None
            out.pod_lists = context.pods.lists
        finally:
            await context.close()
    return out


def applied_changes(fake: ChaosKube, name: str) -> Sequence[tuple[int | None, int]]:
    """(replicas before, replicas written) of every applied ``/scale`` write of a target."""
    return [
        (seen.replicas_before, int(seen.body["spec"]["replicas"]))
        for seen in fake.scale_writes(name)
    ]
