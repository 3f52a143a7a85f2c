"""Fleet operations end to end: the whole controller, the fake API server, a real Prometheus.

Drain-aware scale-down (the idlest pods are marked and removed by the ReplicaSet's order), the
``nim-autoscaler.io/mode`` annotation (advisory writes nothing) and a ``ScalingBudget`` in the
policy directory (GPU limits read from the pods), each through ``build_controller`` as ``run``
assembles it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from autoscaler.policy.models import MetricKind
from tests.e2e.harness import (
    NAMESPACE,
    Syncing,
    controller_settings,
    ready_pods,
    start_controller,
    stop_controller,
    wait_until,
)
from tests.fakekube.server import FakeKube, write_kubeconfig
from tests.promserver.exporter import FleetExporter, FleetPod
from tests.promserver.fixtures import fleet_target

POLICY = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: nim}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 1
  maxReplicas: 8
  algorithm: hpa
  metricNames: nim
  priority: {priority}
  behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}
  metrics:
    - runningRequests: {{target: {{type: AverageValue, averageValue: 8}}}}
"""

BUDGET = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingBudget
metadata: {name: h100-pool}
spec: {maxGpus: 8}
"""


class Cluster(Syncing):
    """Deployments whose ready pods export the requests they run (set per pod)."""

    def __init__(self, fake: FakeKube, fleet: FleetExporter, tmp_path: Path) -> None:
        self.fake = fake
        self.fleet = fleet
        self.tmp_path = tmp_path
        self.running: dict[str, float] = {}
        """Pod name -> requests running (pods not listed: ``default``)."""
        self.default = 8.0
        self.policies = tmp_path / "policies"
        self.policies.mkdir(exist_ok=True)
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)

    def policy(self, name: str, priority: int = 0) -> None:
        (self.policies / f"{name}.yaml").write_text(POLICY.format(name=name, priority=priority))

    def settings(self, prometheus_url: str) -> Any:
        return controller_settings(prometheus_url, self.policies, self.kubeconfig)

    def pods(self, app: str) -> dict[str, dict[str, Any]]:
        return {
            name: obj
            for (plural, ns, name), obj in self.fake.objects.items()
            if plural == "pods" and ns == NAMESPACE and obj["metadata"]["labels"].get("app") == app
        }

    def ready(self, app: str) -> list[str]:
        return ready_pods(self.fake, app=app)

    def replicas(self, name: str) -> int:
        deployment = self.fake.get("deployments", NAMESPACE, name)
        assert deployment is not None
        return int(deployment["spec"]["replicas"])

    def sync(self) -> None:
        self.fake.step()
        live = set(ready_pods(self.fake, namespace=None))
        for namespace, pod in list(self.fleet.pods):
            if pod not in live:
                self.fleet.remove(namespace, pod)
        for pod in live:
            value = self.running.get(pod, self.default)
            self.fleet.add(FleetPod(NAMESPACE, pod, gauges={MetricKind.RUNNING_REQUESTS: value}))


async def _boot(cluster: Cluster, names: list[str], replicas: int) -> None:
    await wait_until(
        lambda: (cluster.sync(), all(len(cluster.ready(n)) == replicas for n in names))[1],
        10,
        f"{replicas} ready pods each",
    )
    cluster.start()


async def test_drain_aware_scale_down_removes_the_idlest_pods(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """Load falls on 2 of 4 pods only: those 2 stay, the 2 idle ones are marked and removed."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=4, labels={"app": "llama"})
        fake.enable_reconcile(schedule_after=0.2, ready_after=0.5)
        cluster = Cluster(fake, fleet, tmp_path)
        cluster.policy("llama")
        await _boot(cluster, ["llama"], 4)
        oldest = cluster.ready("llama")  # names sort by creation
        # the two oldest pods go idle: without marks the ReplicaSet would remove the 2 newest
        cluster.running = {oldest[0]: 0.0, oldest[1]: 0.0, oldest[2]: 8.0, oldest[3]: 8.0}
        controller, task = await start_controller(cluster.settings(prometheus.url))
        try:
            await wait_until(lambda: cluster.replicas("llama") == 2, 30, "scale-down to 2")
            await wait_until(lambda: len(cluster.pods("llama")) == 2, 10, "2 pods left")
            assert sorted(cluster.pods("llama")) == oldest[2:]
        finally:
            await stop_controller(controller, task)
            await cluster.stop()
        patches = [p for m, p in fake.requests if m == "PATCH" and "/pods/" in p]
        assert sorted(p.rsplit("/", 1)[1] for p in patches) == oldest[:2]


async def test_advisory_annotation_decides_but_writes_nothing(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """With nim-autoscaler.io/mode=advisory on the Deployment, the scale-down is only recorded."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        deployment = fake.add_deployment(NAMESPACE, "llama", replicas=4, labels={"app": "llama"})
        deployment["metadata"]["annotations"] = {"nim-autoscaler.io/mode": "advisory"}
        fake.put("deployments", deployment)
        fake.enable_reconcile(schedule_after=0.2, ready_after=0.5)
        cluster = Cluster(fake, fleet, tmp_path)
        cluster.policy("llama")
        cluster.default = 2.0  # 8 requests in all: 1 replica would do
        await _boot(cluster, ["llama"], 4)
        controller, task = await start_controller(cluster.settings(prometheus.url))

        def status() -> dict[str, Any]:
            obj = fake.get("deployments", NAMESPACE, "llama")
            assert obj is not None
            text = (obj["metadata"].get("annotations") or {}).get("nim-autoscaler.io/status")
            return json.loads(text) if text else {}

        try:
            await wait_until(lambda: status().get("desiredReplicas") == 1, 30, "advisory status")
            await asyncio.sleep(2)
        finally:
            await stop_controller(controller, task)
            await cluster.stop()
        assert cluster.replicas("llama") == 4
        assert status()["outcome"] == "advisory"
        assert status()["mode"] == "advisory"
        writes = [
            p
            for m, p in fake.requests
            if m in {"PUT", "PATCH"} and ("/scale" in p or "/pods/" in p)
        ]
        assert writes == []
        reasons = {o.get("reason") for (k, _, _), o in fake.objects.items() if k == "events"}
        assert "AdvisoryRescale" in reasons


async def test_budget_in_the_policy_directory_caps_the_lower_priority(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """Two models of 2 GPUs per pod share 8 GPUs: the high priority grows to 3, the other stays
    at 1 with ScalingLimited/BudgetExhausted on its status."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        for name in ("hi", "lo"):
            fake.add_deployment(NAMESPACE, name, replicas=1, labels={"app": name}, gpus=2)
        fake.enable_reconcile(schedule_after=0.2, ready_after=0.5)
        cluster = Cluster(fake, fleet, tmp_path)
        cluster.policy("hi", priority=10)
        cluster.policy("lo")
        (cluster.policies / "budget.yaml").write_text(BUDGET)
        cluster.default = 24.0  # each wants 3 replicas (24 / 8)
        await _boot(cluster, ["hi", "lo"], 1)
        controller, task = await start_controller(cluster.settings(prometheus.url))
        try:
            await wait_until(lambda: cluster.replicas("hi") == 3, 30, "hi scaled to 3")
            await asyncio.sleep(3)
            assert cluster.replicas("lo") == 1
        finally:
            await stop_controller(controller, task)
            await cluster.stop()
        lo = fake.get("deployments", NAMESPACE, "lo")
        assert lo is not None
        record = json.loads(lo["metadata"]["annotations"]["nim-autoscaler.io/status"])
        limited = next(c for c in record["conditions"] if c["type"] == "ScalingLimited")
        assert (limited["status"], limited["reason"]) == ("True", "BudgetExhausted")
        gauge = controller.registry.get_sample_value(
            "nim_autoscaler_budget_gpus", {"budget": "h100-pool", "kind": "granted"}
        )
        assert gauge == 8.0
