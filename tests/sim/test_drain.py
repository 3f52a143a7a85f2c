"""The simulator honours pod-deletion-cost as the ReplicaSet does; interrupted requests counted."""

from __future__ import annotations

from autoscaler.commands.demo import demo_policy
from autoscaler.policy.models import PolicyMode, ScalingPolicy
from autoscaler.sim.cluster import PodState, SimPod, removal_order
from autoscaler.sim.load import load_workload
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, run_simulation

# A burst then a long quiet period: scale-downs happen while long requests are still running.
BURST = (
    "synthetic:step:rates=18/18/18/4/4/4/4/4/4/4,every=60,"
    "in=lognormal:2000:0.5,out=lognormal:1500:0.8"
)


def sim_pod(name: str, state: PodState, *, created: float, cost: int | None = None) -> SimPod:
    pod = SimPod(name, 0, created)
    pod.state = state
    if state is not PodState.PENDING:
        pod.scheduled_at = created + 1
    if state is PodState.READY:
        pod.ready_at = created + 60
    pod.deletion_cost = cost
    return pod


class TestRemovalOrder:
    def test_cost_after_readiness_before_age(self) -> None:
        """Not-ready pods go first whatever their cost; among ready pods the lower cost goes."""
        old_cheap = sim_pod("old-cheap", PodState.READY, created=0.0, cost=-5)
        new_dear = sim_pod("new-dear", PodState.READY, created=100.0)
        loading = sim_pod("loading", PodState.LOADING, created=50.0, cost=1000)
        pending = sim_pod("pending", PodState.PENDING, created=10.0, cost=1000)
        order = removal_order([old_cheap, new_dear, loading, pending])
        assert [p.name for p in order] == ["pending", "loading", "old-cheap", "new-dear"]

    def test_without_costs_newest_ready_first(self) -> None:
        """No annotation anywhere: the ReplicaSet's own order (ready for less time first)."""
        a = sim_pod("a", PodState.READY, created=0.0)
        b = sim_pod("b", PodState.READY, created=100.0)
        assert [p.name for p in removal_order([a, b])] == ["b", "a"]


def run(
    *, drain_aware: bool, grace: float, policy: ScalingPolicy | None = None
) -> dict[str, object]:
    config = SimulationConfig(
        workload=load_workload(BURST, seed=3),
        profile=get_profile("8b-fp8-h100"),
        policy=policy or demo_policy(),
        seed=3,
        balancer="random",
        termination_grace=grace,
        drain_aware=drain_aware,
    )
    return run_simulation(config).to_json()


class TestInterruptedRequests:
    def test_drain_aware_removes_pods_with_less_work(self) -> None:
        """Same run with and without marks: fewer requests sit on the pods that are removed."""
        aware = run(drain_aware=True, grace=0.0)
        blind = run(drain_aware=False, grace=0.0)
        assert aware["scaleEvents"] == blind["scaleEvents"]
        assert isinstance(aware["podDeletionCostWrites"], int)
        assert aware["podDeletionCostWrites"] > 0
        assert blind["podDeletionCostWrites"] == 0
        assert aware["requestsOnRemovedPods"] < blind["requestsOnRemovedPods"]  # type: ignore[operator]
        # grace 0: the server aborts at once, so every request in flight is interrupted
        assert aware["requestsInterrupted"] == aware["requestsOnRemovedPods"]
        assert blind["requestsInterrupted"] == blind["requestsOnRemovedPods"]
        assert aware["settings"]["drainAware"] is True  # type: ignore[index]

    def test_grace_period_lets_requests_finish(self) -> None:
        """With a grace period longer than any request of this load, every request in flight on
        a removed pod finishes: none is interrupted."""
        result = run(drain_aware=False, grace=600.0)
        assert result["requestsOnRemovedPods"] > 0  # type: ignore[operator]
        assert result["requestsInterrupted"] == 0


class TestAdvisory:
    def test_advisory_decides_and_the_fleet_never_changes(self) -> None:
        """An advisory policy reports its decisions; the simulated fleet keeps its size."""
        advisory = demo_policy().model_copy(
            update={"spec": demo_policy().spec.model_copy(update={"mode": PolicyMode.ADVISORY})}
        )
        config = SimulationConfig(
            workload=load_workload(BURST, seed=3),
            profile=get_profile("8b-fp8-h100"),
            policy=advisory,
            seed=3,
        )
        result = run_simulation(config)
        assert result.summary["scaleEvents"] == 0
        assert {row.ready for row in result.rows} == {2}
        assert result.decisions  # it would have scaled
        assert result.settings["mode"] == "advisory"
