"""Simulated pods: scheduling, cold start, readiness, drain, GPU limit, and the cluster ports."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.decision.types import PodPhase
from autoscaler.errors import TargetNotFound
from autoscaler.policy.models import ScaleTargetRef
from autoscaler.sim.cluster import ColdStart, ColdStartSpecError, PodState, SimPod, removal_order
from autoscaler.sim.engine import Request
from autoscaler.sim.fleet import Fleet, SimPodSource, SimScaleClient
from autoscaler.sim.load import Workload
from autoscaler.sim.metrics import MetricStore
from autoscaler.sim.profiles import get_profile

A = get_profile("8b-fp8-h100")
REF = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name="llm")


class Sink:
    def __init__(self) -> None:
        self.done: list[Request] = []

    def itl(self, t: float, dt: float, weight: int) -> None:
        del t, dt, weight

    def finished(self, request: Request) -> None:
        self.done.append(request)


def workload(times: list[float], prompt: int = 200, output: int = 200) -> Workload:
    n = len(times)
    return Workload(
        np.asarray(times, np.float64),
        np.full(n, prompt, np.int64),
        np.full(n, output, np.int64),
        "test",
        max(times, default=0.0),
    )


def fleet(times: list[float], **kwargs: object) -> tuple[Fleet, Sink]:
    sink = Sink()
    options: dict[str, object] = {"cold_start": ColdStart.parse("90"), "initial_replicas": 1}
    options.update(kwargs)
    return Fleet(A, workload(times), sink, MetricStore(15.0), **options), sink  # type: ignore[arg-type]


class TestColdStartSpec:
    """Cold-start distributions."""

    def test_fixed_uniform_lognormal(self) -> None:
        """Each spec samples in its range, seeded."""
        rng = np.random.default_rng(1)
        assert ColdStart.parse("90").sample(rng) == 90.0
        uniform = [ColdStart.parse("uniform:60:120").sample(rng) for _ in range(500)]
        assert min(uniform) >= 60
        assert max(uniform) <= 120
        lognormal = ColdStart.parse("lognormal:median=90,sigma=0.2")
        values = [lognormal.sample(rng) for _ in range(4000)]
        assert np.median(values) == pytest.approx(90, rel=0.03)
        assert ColdStart.parse("lognormal:90:0.2") == replace(lognormal, spec="lognormal:90:0.2")

    @pytest.mark.parametrize("spec", ["", "-5", "uniform:9:1", "gamma:1:2", "lognormal:x"])
    def test_bad_specs(self, spec: str) -> None:
        """Bad specs raise ColdStartSpecError."""
        with pytest.raises(ColdStartSpecError):
            ColdStart.parse(spec)


class TestLifecycle:
    """Pending -> loading -> ready; drain on scale-down."""

    def test_scale_up_takes_scheduling_plus_cold_start(self) -> None:
        """A new pod is Pending 2 s, loads 90 s, then Ready at t0 + 92 s."""
        sim, _ = fleet([])
        sim.run_until(10.0)
        sim.set_replicas(2)
        new = sim.pods[1]
        assert new.state is PodState.PENDING
        assert new.info().phase is PodPhase.PENDING
        sim.run_until(12.5)
        assert new.state is PodState.LOADING
        assert new.info().phase is PodPhase.RUNNING
        assert not new.info().ready
        sim.run_until(101.9)
        assert new.state is PodState.LOADING
        sim.run_until(102.1)
        assert new.state is PodState.READY
        info = new.info()
        assert (info.created_at, info.scheduled_at, info.ready_at) == (10.0, 12.0, 102.0)
        assert sim.counts() == (2, 0, 0)

    def test_drain_finishes_running_requests(self) -> None:
        """A terminating pod takes no new requests, finishes its own, then disappears."""
        sim, sink = fleet([0.0, 0.1, 0.2, 5.0], initial_replicas=2)
        sim.run_until(0.3)
        busy = [p for p in sim.pods if p.replica is not None and not p.replica.idle]
        assert len(busy) == 2
        sim.set_replicas(1)
        victim = next(p for p in sim.pods if p.state is PodState.TERMINATING)
        assert victim.info().deleting
        held = len(victim.replica.running) if victim.replica else 0
        assert held > 0
        sim.run_until(4.0)
        assert victim.state is PodState.GONE
        assert victim.ended_at is not None
        assert victim.ended_at < 4.0
        sim.run_until(10.0)
        assert len(sink.done) == 4
        assert all(r.pod != victim.index for r in sink.done if r.arrival >= 0.3)

    def test_removal_order_is_replicaset_order(self) -> None:
        """Unscheduled first, then loading, then the most recently ready, then oldest."""
        pods = [SimPod(f"p{i}", i, float(i)) for i in range(5)]
        for pod, ready_at in ((pods[0], 10.0), (pods[1], 50.0), (pods[2], 30.0)):
            pod.state, pod.scheduled_at, pod.ready_at = PodState.READY, 1.0, ready_at
        pods[3].state, pods[3].scheduled_at = PodState.LOADING, 5.0
        order = [p.name for p in removal_order(pods)]
        assert order == ["p4", "p3", "p1", "p2", "p0"]

    def test_gpu_limit_leaves_pods_unschedulable(self) -> None:
        """With 2 GPUs, the third pod stays Pending with the scheduler's message until one frees."""
        sim, _ = fleet([], initial_replicas=2, gpu_capacity=2, gpus_per_node=1)
        sim.set_replicas(3)
        stuck = sim.pods[2]
        sim.run_until(200.0)
        assert stuck.state is PodState.PENDING
        assert stuck.info().unschedulable is not None
        assert "Insufficient nvidia.com/gpu" in stuck.info().unschedulable  # type: ignore[operator]
        # Removing the stuck pod first is ReplicaSet order; instead free a GPU by scaling a
        # ready pod away directly.
        sim._terminate(sim.pods[0])
        sim.run_until(300.0)
        assert stuck.state is PodState.READY
        assert stuck.scheduled_at == pytest.approx(202.0)

    def test_gpu_hours_include_loading(self) -> None:
        """Replica-seconds run from scheduling to the end, loading time included."""
        sim, _ = fleet([])
        sim.set_replicas(2)
        sim.run_until(600.0)
        assert sim.replica_seconds(600.0) == pytest.approx(600.0 + 598.0)


class TestPorts:
    """SimScaleClient and SimPodSource."""

    async def test_scale_and_pods(self) -> None:
        """get/set scale drive the fleet; pods lists every pod that still exists."""
        sim, _ = fleet([])
        scale = SimScaleClient(sim, "ns")
        source = SimPodSource(sim, "ns")
        reading = await scale.get_scale("ns", REF)
        assert (reading.spec_replicas, reading.status_replicas) == (1, 1)
        assert reading.selector == "app=llm"
        await scale.set_scale("ns", REF, 3)
        assert (await scale.get_scale("ns", REF)).spec_replicas == 3
        infos = source.pods("ns", "app=llm")
        assert len(infos) == 3
        assert [i.ready for i in infos] == [True, False, False]
        assert source.pods("ns", "app=other") == ()
        assert source.synced()
        assert sim.scale_events == [(0.0, 1, 3)]

    async def test_unknown_target(self) -> None:
        """Another target is not found."""
        sim, _ = fleet([])
        with pytest.raises(TargetNotFound):
            await SimScaleClient(sim, "ns").get_scale("ns", replace_ref("other"))


def replace_ref(name: str) -> ScaleTargetRef:
    return ScaleTargetRef(api_version="apps/v1", kind="Deployment", name=name)


def test_requests_wait_at_the_gateway_without_ready_pods() -> None:
    """With zero replicas, arrivals queue at the gateway and go to the first pod to become ready."""
    sim, sink = fleet([1.0, 2.0], initial_replicas=0)
    sim.run_until(3.0)
    assert sim.queue_and_kv()[0] == 2
    sim.set_replicas(1)
    sim.run_until(100.0)
    assert len(sink.done) == 2
    assert min(r.first_token for r in sink.done) > 95.0


@pytest.mark.parametrize("balancer", ["least", "round-robin", "random"])
def test_balancers_spread_load(balancer: str) -> None:
    """Every balancer uses every ready pod."""
    times = [i * 0.05 for i in range(400)]
    sim, sink = fleet(times, initial_replicas=4, balancer=balancer)
    sim.run_until(60.0)
    used = {r.pod for r in sink.done}
    assert used == {0, 1, 2, 3}
