"""A small world for end-to-end and reliability tests: fake API server + emulated pods + real
Prometheus, and the one policy they scale.

:class:`World` writes the policy (:func:`policy_yaml`), keeps the emulated exporters in step with
the pods the fake API server's reconciler creates (a pod exports metrics only once Ready, as a NIM
container does after loading its model), and spreads a demand figure over the ready pods: each
pod's KV-cache usage is ``demand / ready_pods`` (capped at 1.0), which is how load balances across
replicas behind a Service. :meth:`World.launch` brings the target up. The controller runs in the
test process (:func:`start_controller`) or as a real process
(:class:`tests.reliability.process.ControllerProcess`); both wait with :func:`wait_until`.
:func:`controller_settings` is the settings every such controller starts from, and
:func:`ready_pods` what the emulated exporters follow.

:func:`decide_with_restarts` is the restart harness: the control loop on the real Kubernetes
adapters (``/scale``, pod cache, history ConfigMap, recorder) against the fake API server, with
metric values set per tick and a virtual ``now``, restarting the whole Kubernetes context and
loop before chosen ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from autoscaler.app import Controller, build_controller
from autoscaler.controller.loop import ControlLoop
from autoscaler.decision.types import MetricObservation
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.policy.models import MetricKind, ScalingPolicy
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.fakekube.server import FakeKube, write_kubeconfig
from tests.promserver.exporter import FleetExporter, FleetPod

NAMESPACE = "nim"


def policy_yaml(
    name: str = "llama",
    *,
    scale_down_window: int | None = None,
    on_metric_failure: str | None = None,
) -> str:
    """The policy of Deployment ``nim/<name>``: hpa, KV cache at 0.5 per pod, 1 to 8 replicas.

    Args:
        name: The policy's and its Deployment's name.
        scale_down_window: ``behavior.scaleDown.stabilizationWindowSeconds``; None: no
            ``behavior`` (the legacy path and its 300 s scale-down window).
        on_metric_failure: ``onMetricFailure`` as a YAML flow mapping; None: the default.
    """
    text = f"""\
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 1
  maxReplicas: 8
  algorithm: hpa
  metricNames: nim
  metrics:
    - kvCache: {{target: {{type: AverageValue, averageValue: 0.5}}}}
"""
    if scale_down_window is not None:
        text += f"  behavior:\n    scaleDown: {{stabilizationWindowSeconds: {scale_down_window}}}\n"
    if on_metric_failure is not None:
        text += f"  onMetricFailure: {on_metric_failure}\n"
    return text


POLICY = policy_yaml()
"""The policy without ``behavior``."""


def controller_settings(
    prometheus_url: str, policy_dir: Path, kubeconfig: Path, **overrides: Any
) -> Settings:
    """A test controller's settings: namespace ``nim``, 1 s ticks, no leader election, no
    metrics port; ``overrides`` replace or add fields."""
    values: dict[str, Any] = {
        "prometheus_url": prometheus_url,
        "policy_dir": policy_dir,
        "interval": 1.0,
        "kubeconfig": kubeconfig,
        "leader_election": False,
        "leader_election_namespace": "nim-autoscaler",
        "metrics_port": 0,
        "namespaces": [NAMESPACE],
        "log_level": "warning",
    }
    values.update(overrides)
    return Settings(**values)


def ready_pods(
    fake: FakeKube, namespace: str | None = NAMESPACE, app: str | None = None
) -> list[str]:
    """Names of the Ready pods (in ``namespace``, None: any; with label ``app``, None: any)."""
    return sorted(
        name
        for (plural, ns, name), pod in fake.objects.items()
        if plural == "pods"
        and (namespace is None or ns == namespace)
        and (app is None or (pod["metadata"].get("labels") or {}).get("app") == app)
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in pod["status"].get("conditions", [])
        )
    )


class Syncing:
    """Calls :meth:`sync` every ``period`` seconds in a background task, from start to stop."""

    period = 0.2
    _task: asyncio.Task[None] | None = None

    def sync(self) -> None:
        """One step of the emulated world."""
        raise NotImplementedError

    async def _sync_forever(self) -> None:
        while True:
            self.sync()
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sync_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class World(Syncing):
    """Fake cluster, exporters and the demand that drives them."""

    def __init__(
        self,
        fake: FakeKube,
        fleet: FleetExporter,
        tmp_path: Path,
        *,
        scale_down_window: int | None = None,
    ) -> None:
        self.fake = fake
        self.fleet = fleet
        self.tmp_path = tmp_path
        self.demand = 1.0
        self.policy_dir = tmp_path / "policies"
        self.policy_dir.mkdir(exist_ok=True)
        (self.policy_dir / "llama.yaml").write_text(
            policy_yaml(scale_down_window=scale_down_window)
        )
        self.kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)

    async def launch(
        self,
        *,
        replicas: int = 2,
        demand: float = 1.0,
        schedule_after: float = 0.2,
        ready_after: float = 0.6,
    ) -> None:
        """Create the Deployment, wait for its ``replicas`` pods to be Ready and exporting
        ``demand``, then keep the world stepping in the background (until :meth:`stop`)."""
        self.fake.add_deployment(NAMESPACE, "llama", replicas=replicas, labels={"app": "llama"})
        self.fake.enable_reconcile(schedule_after=schedule_after, ready_after=ready_after)
        self.demand = demand
        await wait_until(
            lambda: (self.sync(), len(self.ready_pods()) == replicas)[1],
            10,
            f"{replicas} ready pods",
        )
        self.start()

    def settings(self, prometheus_url: str, **overrides: Any) -> Settings:
        return controller_settings(prometheus_url, self.policy_dir, self.kubeconfig, **overrides)

    def replicas(self) -> int:
        deployment = self.fake.get("deployments", NAMESPACE, "llama")
        assert deployment is not None
        return int(deployment["spec"]["replicas"])

    def ready_pods(self) -> list[str]:
        return ready_pods(self.fake)

    def scale_writes(self) -> int:
        return sum(
            1
            for method, path in self.fake.requests
            if method in {"PUT", "PATCH"} and path.split("?")[0].endswith("/scale")
        )

    def sync(self) -> None:
        """One kubelet/exporter step: advance pods, export the ready ones' KV usage."""
        self.fake.step()
        ready = self.ready_pods()
        for namespace, pod in list(self.fleet.pods):
            if pod not in ready:
                self.fleet.remove(namespace, pod)
        share = min(1.0, self.demand / len(ready)) if ready else 0.0
        for pod in ready:
            self.fleet.add(FleetPod(NAMESPACE, pod, gauges={MetricKind.KV_CACHE: share}))


async def start_controller(settings: Settings) -> tuple[Controller, asyncio.Task[None]]:
    """Build, start and run a controller in a task (as ``run`` does, without signals)."""
    controller = await build_controller(settings)
    await controller.start()
    assert await controller.kube.pods.wait_synced(within=10.0)
    return controller, asyncio.create_task(controller.runner.run())


async def stop_controller(controller: Controller, task: asyncio.Task[None]) -> None:
    """SIGTERM semantics: finish the tick, release the lease, close."""
    controller.runner.stop()
    await asyncio.wait_for(task, timeout=15)
    await controller.close()


async def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` (every 0.1 s) until truthy; fail naming ``what`` after ``timeout``.

    Returns:
        The predicate's first truthy value.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.1)


Observe = Callable[[int, list[str], float], Mapping[str, MetricObservation]]
"""(tick, the target's pod names, now) -> what the policy's metrics report at that tick."""


async def decide_with_restarts(
    tmp_path: Path,
    policy: ScalingPolicy,
    *,
    replicas: int,
    ticks: int,
    observe: Observe,
    restart_before: Collection[int] = (),
    start: float,
    period: float = 60.0,
) -> list[int]:
    """Run ``ticks`` ticks of one policy on the real Kubernetes side of a fake API server.

    The Deployment ``nim/<target>`` (label ``app=<target>``) starts with ``replicas`` and the
    server's reconciler makes its pods. Tick ``i`` happens at ``start + i * period`` (virtual),
    after the pod cache caught up with the pods the reconciler made; before each tick in
    ``restart_before`` the Kubernetes context and the loop are closed and built anew (so only
    what was persisted, e.g. the history ConfigMap, carries over).

    Returns:
        The desired replicas of each tick.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = policy.spec.scale_target_ref.name
    async with FakeKube() as fake:
        fake.add_deployment(NAMESPACE, target, replicas=replicas, labels={"app": target})
        fake.enable_reconcile()
        fake.step()
        settings = Settings(
            kubeconfig=write_kubeconfig(tmp_path / f"kc-{len(restart_before)}", fake.url),
            leader_election=False,
            leader_election_namespace="nim-autoscaler",
            namespaces=[NAMESPACE],
        )
        source = StaticMetricSource()
        context: KubeContext | None = None
        loop: ControlLoop | None = None
        desired: list[int] = []
        try:
            for tick in range(ticks):
                if context is None or tick in restart_before:
                    if context is not None:
                        await context.close()
                    context = await connect(settings)
                    context.start()
                    assert await context.pods.wait_synced(within=10)
                    loop = ControlLoop(
                        policies=lambda: [policy],
                        metrics=source,
                        scale=context.scale,
                        pods=context.pods,
                        recorder=context.recorder,
                        history_store=context.history,
                        leader=context.leader,
                        log_ticks=False,
                    )
                assert loop is not None
                fake.step()
                pods = [
                    name
                    for (plural, ns, name) in fake.objects
                    if plural == "pods" and ns == NAMESPACE
                ]
                now = start + period * tick
                source.set(policy.key, observe(tick, pods, now))
                # Let the pod cache see the reconciler's changes before deciding.
                await context.pods.wait_synced(within=5)
                for _ in range(50):
                    if len(context.pods.pods(NAMESPACE, f"app={target}")) == len(pods):
                        break
                    await asyncio.sleep(0.05)
                [result] = await loop.tick(now)
                assert result.decision is not None, result.error
                desired.append(result.decision.desired_replicas)
        finally:
            if context is not None:
                await context.close()
        return desired


def kv_policy(namespace: str) -> ScalingPolicy:
    """The HPA-algorithm KV-cache policy of the restart and shard tests: scale-up 2 pods and
    scale-down 1 pod per 120 s, a 180 s scale-down window (state that must survive a
    restart or a shard moving)."""
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "llama", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
                "minReplicas": 1,
                "maxReplicas": 20,
                "algorithm": "hpa",
                "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}],
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 120}]},
                    "scaleDown": {
                        "stabilizationWindowSeconds": 180,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                    },
                },
            },
        }
    )
