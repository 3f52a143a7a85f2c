"""Scale to zero and back end to end: the whole controller, the fake API server, a real
Prometheus scraping the pods and an emulated Gateway API Inference Extension endpoint picker.

A Deployment at 0 replicas stays at 0 while no request waits; when the gateway's flow-control
queue holds requests (``inference_extension_flow_control_queue_size``), the controller scales it
to 1; once the gateway queue, the pods' completions and their requests in flight have read 0 for
``scaleToZero.idleFor``, it goes back to 0.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

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
from tests.promserver.gateway import GatewayExporter, gateway_target, key

POLICY = """\
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: llama, namespace: nim}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llama}
  algorithm: llm
  minReplicas: 0
  maxReplicas: 4
  metricNames: nim
  scaleToZero: {idleFor: 6s}
  metrics:
    - gatewayQueue: {pool: llama, target: {type: AverageValue, averageValue: 10}}
"""


class Cluster(Syncing):
    """The Deployment's ready pods export idle gauges and a flat request counter."""

    def __init__(self, fake: FakeKube, fleet: FleetExporter) -> None:
        self.fake = fake
        self.fleet = fleet

    def replicas(self) -> int:
        deployment = self.fake.get("deployments", NAMESPACE, "llama")
        assert deployment is not None
        return int(deployment["spec"]["replicas"])

    def ready(self) -> list[str]:
        return ready_pods(self.fake)

    def sync(self) -> None:
        self.fake.step()
        live = set(self.ready())
        for namespace, pod in list(self.fleet.pods):
            if pod not in live:
                self.fleet.remove(namespace, pod)
        idle = {
            MetricKind.KV_CACHE: 0.0,
            MetricKind.QUEUE_DEPTH: 0.0,
            MetricKind.RUNNING_REQUESTS: 0.0,
        }
        for pod in live:
            if (NAMESPACE, pod) not in self.fleet.pods:
                self.fleet.add(FleetPod(NAMESPACE, pod, gauges=dict(idle)))


async def test_scales_from_zero_on_gateway_queue_and_back_after_idle_for(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """0 stays 0 while nothing waits; 0 -> 1 when the gateway holds requests; 1 -> 0 after
    idleFor without a request."""
    fleet = fleet_factory("nim")
    gateway = GatewayExporter()
    queue = key(
        "inference_extension_flow_control_queue_size",
        namespace=NAMESPACE,
        inference_pool="llama",
        fairness_id="default",
        priority="0",
    )
    gateway.gauges[queue] = 0.0
    gateway.gauges[key("inference_extension_info", namespace=NAMESPACE, commit="c")] = 1.0
    gateway.start()
    prometheus = prometheus_factory([fleet_target(fleet), gateway_target(gateway)])
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "llama.yaml").write_text(POLICY)
    async with FakeKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=0, labels={"app": "llama"})
        fake.enable_reconcile(schedule_after=0.2, ready_after=0.5)
        cluster = Cluster(fake, fleet)
        cluster.start()
        settings = controller_settings(
            prometheus.url, policies, write_kubeconfig(tmp_path / "kubeconfig", fake.url)
        )
        controller, task = await start_controller(settings)
        try:
            # Nothing waits at the gateway: the target stays at zero (several ticks).
            await asyncio.sleep(4)
            assert cluster.replicas() == 0
            # Requests wait at the gateway: woken to 1 (no capacity known yet).
            gateway.gauges[queue] = 6.0
            await wait_until(lambda: cluster.replicas() == 1, 20, "scale from zero to 1")
            await wait_until(lambda: len(cluster.ready()) == 1, 10, "1 ready pod")
            woke_at = asyncio.get_running_loop().time()
            # The pod took the requests; nothing waits or runs any more.
            gateway.gauges[queue] = 0.0
            await wait_until(lambda: cluster.replicas() == 0, 40, "scale back to zero")
            idle = asyncio.get_running_loop().time() - woke_at
            assert idle >= 6.0  # never before idleFor
        finally:
            await stop_controller(controller, task)
            await cluster.stop()
            gateway.stop()
        scale_writes = [
            p for m, p in fake.requests if m in {"PUT", "PATCH"} and "/scale" in p.split("?")[0]
        ]
        assert len(scale_writes) == 2  # 0 -> 1, 1 -> 0
        status = (
            (fake.get("deployments", NAMESPACE, "llama") or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("nim-autoscaler.io/status", "")
        )
        assert "Scale to zero" in status or "At zero" in status
