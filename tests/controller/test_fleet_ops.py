"""Fleet operations in the control loop: drain marks, modes and external rescales.

In-memory ports (no network); the Kubernetes wire is covered in tests/e2e/test_fleet_e2e.py.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from autoscaler.controller.loop import ControlLoop
from autoscaler.controller.ports import Outcome
from autoscaler.decision.explain import render_text
from autoscaler.decision.types import ConditionType, PodInfo, PodPhase, PodSamples
from autoscaler.policy.budget import ScalingBudget
from autoscaler.policy.models import ScalingPolicy
from tests.controller.memory import MemoryCluster, MemoryTarget, StaticMetricSource

NOW = 1000.0


def make_policy(
    *, mode: str = "active", kind: str = "Deployment", algorithm: str = "hpa"
) -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "llama", "namespace": "nim"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "llama"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "algorithm": algorithm,
                "mode": mode,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
                "metrics": [
                    {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 8}}}
                ],
            },
        }
    )


class World:
    def __init__(self, policy: ScalingPolicy, running: dict[str, float]) -> None:
        self.policy = policy
        self.cluster = MemoryCluster()
        self.source = StaticMetricSource()
        kind = policy.spec.scale_target_ref.kind
        owner = "StatefulSet" if kind == "StatefulSet" else "ReplicaSet"
        pods = [
            PodInfo(n, PodPhase.RUNNING, ready=True, created_at=0.0, ready_at=1.0, owner_kind=owner)
            for n in running
        ]
        self.target = self.cluster.add(
            "nim", kind, "llama", MemoryTarget(len(pods), selector="app=llama", pods=pods)
        )
        self.set_running(running)
        self.registry = CollectorRegistry()

    def set_running(self, running: dict[str, float]) -> None:
        self.source.set(
            self.policy.key,
            {"runningRequests": PodSamples(values=running, timestamp=NOW, series=len(running))},
        )

    def loop(self, **kwargs: object) -> ControlLoop:
        return ControlLoop(
            policies=lambda: [self.policy],
            metrics=self.source,
            scale=self.cluster,
            pods=self.cluster,
            recorder=self.cluster,
            history_store=self.cluster,
            annotator=self.cluster,
            registry=self.registry,
            **kwargs,  # type: ignore[arg-type]
        )

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


# Four pods with 10 requests in all: desired = ceil(10 / 8) = 2, so two go.
LOAD = {"p0": 6.0, "p1": 0.0, "p2": 3.0, "p3": 1.0}


class TestDrainAware:
    async def test_marks_the_least_busy_pods_then_scales(self) -> None:
        """The two idlest pods get negative costs before /scale drops to 2; the decision says so."""
        world = World(make_policy(), LOAD)
        [result] = await world.loop().tick(NOW)
        assert Outcome.SCALED is result.outcome
        assert world.cluster.cost_writes == [("nim", "p1", -2), ("nim", "p3", -1)]
        assert world.cluster.writes == [("nim", "llama", 2)]
        assert result.decision is not None
        drain = result.decision.explanation["drain"]
        assert [p["pod"] for p in drain["remove"]] == ["p1", "p3"]
        assert drain["written"] == "2 of 2 written"
        text = render_text(result.decision)
        assert "mark p1: set controller.kubernetes.io/pod-deletion-cost=-2" in text
        assert (
            world.metric(
                "nim_autoscaler_pod_deletion_cost_writes_total",
                policy="llama",
                namespace="nim",
                result="ok",
            )
            == 2.0
        )

    async def test_marks_taken_back_when_decided_again_as_a_scale_up(self) -> None:
        """A 409 race leaves the target below the decided count: the decision made again is a
        scale-up, so the marks written for the superseded scale-down are taken back."""
        world = World(make_policy(), LOAD)
        world.target.other_writer = lambda t: setattr(t, "spec_replicas", 1)
        [result] = await world.loop().tick(NOW)
        assert Outcome.SCALED is result.outcome
        assert world.cluster.writes == [("nim", "llama", 2)]  # 1 -> 2 after deciding again
        assert world.cluster.cost_writes == [
            ("nim", "p1", -2),
            ("nim", "p3", -1),
            ("nim", "p1", None),
            ("nim", "p3", None),
        ]
        assert [p.deletion_cost for p in world.target.pods] == [None] * 4
        assert result.decision is not None
        drain = result.decision.explanation["drain"]
        assert "no scale-down any more" in drain["note"]
        assert drain["written"] == "decided again after a conflict, pods re-marked: 2 of 2 written"

    async def test_no_marks_when_disabled(self) -> None:
        """drainAware off: the scale-down happens and no pod is annotated; the decision says so."""
        world = World(make_policy(), LOAD)
        [result] = await world.loop(drain_aware=False).tick(NOW)
        assert world.cluster.cost_writes == []
        assert world.cluster.writes == [("nim", "llama", 2)]
        assert result.decision is not None
        assert "disabled" in result.decision.explanation["drain"]["note"]

    async def test_statefulset_is_never_marked(self) -> None:
        """A StatefulSet removes its highest ordinals: no marks, and the explanation says so."""
        world = World(make_policy(kind="StatefulSet"), LOAD)
        [result] = await world.loop().tick(NOW)
        assert world.cluster.cost_writes == []
        assert result.decision is not None
        assert "highest ordinals" in result.decision.explanation["drain"]["note"]

    async def test_dry_run_plans_but_writes_no_marks(self) -> None:
        """Dry run: the plan is shown, nothing is annotated."""
        world = World(make_policy(), LOAD)
        [result] = await world.loop(dry_run=True).tick(NOW)
        assert world.cluster.cost_writes == []
        assert result.decision is not None
        assert result.decision.explanation["drain"]["written"] == "no: dry run"

    async def test_not_leader_writes_no_marks(self) -> None:
        """A follower marks nothing (it does not decide at all)."""

        class Follower:
            def is_leader(self) -> bool:
                return False

        world = World(make_policy(), LOAD)
        await world.loop(leader=Follower()).tick(NOW)
        assert world.cluster.cost_writes == []

    async def test_pod_deleted_before_marking_still_scales(self) -> None:
        """A victim vanishing before its mark is reported; the others are marked; /scale goes on."""
        world = World(make_policy(), LOAD)
        loop = world.loop()
        original = world.cluster.set_deletion_costs

        async def vanish_first(namespace: str, costs: dict[str, int | None]) -> object:
            world.target.pods = [p for p in world.target.pods if p.name != "p1"]
            return await original(namespace, costs)

        world.cluster.set_deletion_costs = vanish_first  # type: ignore[method-assign,assignment]
        [result] = await loop.tick(NOW)
        assert Outcome.SCALED is result.outcome
        assert world.cluster.cost_writes == [("nim", "p3", -1)]
        assert result.decision is not None
        assert "1 of 2 written" in result.decision.explanation["drain"]["written"]


class TestModes:
    async def test_advisory_decides_records_and_writes_nothing(self) -> None:
        """Advisory: the decision and the marks it would write are recorded; no /scale, no pods."""
        world = World(make_policy(mode="advisory"), LOAD)
        [result] = await world.loop().tick(NOW)
        assert Outcome.ADVISORY is result.outcome
        assert world.cluster.writes == []
        assert world.cluster.cost_writes == []
        assert result.decision is not None
        assert result.decision.desired_replicas == 2
        assert result.decision.explanation["drain"]["written"] == "no: advisory mode"
        assert [r.outcome for r in world.cluster.records] == [Outcome.ADVISORY]
        assert "nim/llama" in world.cluster.saved
        assert (
            world.metric(
                "nim_autoscaler_desired_replicas",
                policy="llama",
                namespace="nim",
                target="Deployment/llama",
            )
            == 2.0
        )
        assert (
            world.metric(
                "nim_autoscaler_policy_mode", policy="llama", namespace="nim", mode="advisory"
            )
            == 1.0
        )

    async def test_paused_skips_deciding_and_keeps_history(self) -> None:
        """Paused: no metric fetch, no decision, no write; the stored history is unchanged."""
        world = World(make_policy(), LOAD)
        loop = world.loop()
        world.set_running({"p0": 40.0, "p1": 40.0, "p2": 40.0, "p3": 40.0})
        await loop.tick(NOW)  # scales up (4 -> 8, rate-limited) and seeds the history
        history = loop.history("nim/llama")
        world.target.annotations["nim-autoscaler.io/mode"] = "paused"
        world.set_running(LOAD)
        fetches = len(world.source.fetches)
        [result] = await loop.tick(NOW + 15)
        assert Outcome.PAUSED is result.outcome
        assert fetches == len(world.source.fetches)
        assert history == loop.history("nim/llama")
        assert world.cluster.writes == [("nim", "llama", 8)]
        assert result.decision is not None
        active = result.decision.condition(ConditionType.SCALING_ACTIVE)
        assert active is not None
        assert (active.reason, active.status) == ("ScalingPaused", False)
        assert result.decision.explanation["mode"]["source"] == "nim-autoscaler.io/mode"

    async def test_annotation_wins_over_spec_and_bad_value_is_ignored(self) -> None:
        """The target's annotation overrides spec.mode; an unknown value falls back with a note."""
        world = World(make_policy(mode="paused"), LOAD)
        world.target.annotations["nim-autoscaler.io/mode"] = "active"
        [result] = await world.loop().tick(NOW)
        assert Outcome.SCALED is result.outcome
        world2 = World(make_policy(mode="advisory"), LOAD)
        world2.target.annotations["nim-autoscaler.io/mode"] = "off"
        [result2] = await world2.loop().tick(NOW)
        assert Outcome.ADVISORY is result2.outcome
        assert result2.decision is not None
        assert "not one of" in result2.decision.explanation["mode"]["warning"]

    async def test_paused_mid_scale_down_writes_nothing_more(self) -> None:
        """Switched to paused while a scale-down waits in its window: it never lands."""
        policy = ScalingPolicy.model_validate(
            {
                **make_policy().model_dump(by_alias=True),
                "spec": {
                    **make_policy().model_dump(by_alias=True, exclude_none=True)["spec"],
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
                },
            }
        )
        world = World(policy, LOAD)
        loop = world.loop()
        world.set_running({"p0": 8.0, "p1": 8.0, "p2": 8.0, "p3": 8.0})
        await loop.tick(NOW)
        world.set_running(LOAD)
        await loop.tick(NOW + 15)  # the window holds 4
        world.target.annotations["nim-autoscaler.io/mode"] = "paused"
        for step in range(2, 8):
            await loop.tick(NOW + 15 * step)
        assert world.cluster.writes == []
        assert world.cluster.cost_writes == []
        del world.target.annotations["nim-autoscaler.io/mode"]
        [result] = await loop.tick(NOW + 15 * 8)
        assert Outcome.SCALED is result.outcome
        assert world.cluster.writes == [("nim", "llama", 2)]


class TestExternalRescale:
    async def test_reported_and_taken_as_current(self) -> None:
        """Someone sets replicas 4 -> 7: ExternalRescale with both counts; 7 is the current."""
        world = World(make_policy(), {"p0": 8.0, "p1": 8.0, "p2": 8.0, "p3": 8.0})
        loop = world.loop()
        [first] = await loop.tick(NOW)
        assert first.decision is not None
        assert "externalRescale" not in first.decision.explanation
        world.target.spec_replicas = 7
        [second] = await loop.tick(NOW + 15)
        assert second.decision is not None
        assert {k: second.decision.explanation["externalRescale"][k] for k in ("from", "to")} == {
            "from": 4,
            "to": 7,
        }
        assert second.decision.current_replicas == 7
        assert (
            world.metric("nim_autoscaler_external_rescales_total", policy="llama", namespace="nim")
            == 1.0
        )
        assert "external rescale" in render_text(second.decision)

    async def test_own_writes_are_not_external(self) -> None:
        """The controller's own scale write is not reported as an external rescale."""
        world = World(make_policy(), LOAD)
        loop = world.loop()
        await loop.tick(NOW)
        [result] = await loop.tick(NOW + 15)
        assert result.decision is not None
        assert "externalRescale" not in result.decision.explanation


def budget(max_gpus: int, namespaces: list[str] | None = None) -> ScalingBudget:
    spec: dict[str, object] = {"maxGpus": max_gpus}
    if namespaces is not None:
        spec["namespaces"] = namespaces
    return ScalingBudget.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingBudget",
            "metadata": {"name": "h100-pool"},
            "spec": spec,
        }
    )


def gpu_policy(name: str, *, priority: int = 0, window: int = 0) -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": "nim"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 10,
                "algorithm": "hpa",
                "priority": priority,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": window}},
                "metrics": [
                    {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 8}}}
                ],
            },
        }
    )


class Fleet:
    """Two GPU models sharing a budget; 2 GPUs per pod."""

    def __init__(self, *policies: ScalingPolicy, replicas: int = 2) -> None:
        self.policies = list(policies)
        self.budgets: list[ScalingBudget] = []
        self.cluster = MemoryCluster()
        self.source = StaticMetricSource()
        self.registry = CollectorRegistry()
        for policy in policies:
            name = policy.metadata.name
            self.cluster.add(
                "nim", "Deployment", name, MemoryTarget(replicas, selector=f"app={name}")
            )
            self.set_pods(name, replicas)

    def set_pods(self, name: str, count: int) -> None:
        self.cluster.targets[("nim", "Deployment", name)].pods = [
            PodInfo(f"{name}-{i}", PodPhase.RUNNING, ready=True, created_at=0.0, gpus=2)
            for i in range(count)
        ]

    def demand(self, name: str, per_pod: float) -> None:
        pods = self.cluster.targets[("nim", "Deployment", name)].pods
        self.source.set(
            f"nim/{name}",
            {
                "runningRequests": PodSamples(
                    values={p.name: per_pod for p in pods}, timestamp=NOW, series=len(pods)
                )
            },
        )

    def loop(self) -> ControlLoop:
        return ControlLoop(
            policies=lambda: self.policies,
            metrics=self.source,
            scale=self.cluster,
            pods=self.cluster,
            recorder=self.cluster,
            history_store=self.cluster,
            annotator=self.cluster,
            registry=self.registry,
            budgets=lambda: self.budgets,
        )

    def replicas(self, name: str) -> int:
        return self.cluster.targets[("nim", "Deployment", name)].spec_replicas


class TestBudgets:
    async def test_priority_wins_and_the_other_is_limited(self) -> None:
        """12 GPUs, both want 5 x 2 GPUs: high priority gets 5, the other 1 with BudgetExhausted."""
        fleet = Fleet(gpu_policy("hi", priority=10), gpu_policy("lo"))
        fleet.budgets = [budget(12)]
        fleet.demand("hi", 20.0)  # 40 requests / 8 = 5 replicas
        fleet.demand("lo", 20.0)
        results = {r.policy: r for r in await fleet.loop().tick(NOW)}
        assert (fleet.replicas("hi"), fleet.replicas("lo")) == (5, 1)  # lo yields a replica
        lo = results["nim/lo"].decision
        assert lo is not None
        limited = lo.condition(ConditionType.SCALING_LIMITED)
        assert limited is not None
        assert (limited.status, limited.reason) == (True, "BudgetExhausted")
        assert "held back by budget h100-pool" in lo.reason
        assert (
            fleet.registry.get_sample_value(
                "nim_autoscaler_scaling_limited",
                {"policy": "lo", "namespace": "nim", "reason": "BudgetExhausted"},
            )
            == 1.0
        )
        assert (
            fleet.registry.get_sample_value(
                "nim_autoscaler_budget_gpus", {"budget": "h100-pool", "kind": "limit"}
            )
            == 12.0
        )
        assert "budget h100-pool exhausted" in render_text(lo)

    async def test_namespaces_scope_the_budget(self) -> None:
        """A budget for another namespace does not limit these policies."""
        fleet = Fleet(gpu_policy("a"))
        fleet.budgets = [budget(2, namespaces=["other"])]
        fleet.demand("a", 20.0)
        [result] = await fleet.loop().tick(NOW)
        assert result.outcome is Outcome.SCALED
        assert result.decision is not None
        assert result.decision.condition(ConditionType.SCALING_LIMITED) is None or not (
            result.decision.condition(ConditionType.SCALING_LIMITED).status  # type: ignore[union-attr]
        )

    async def test_budget_change_mid_stabilization(self) -> None:
        """A budget cut while a scale-down waits in its window caps the policy at once; the
        window then still decides the rest, with no state lost."""
        fleet = Fleet(gpu_policy("a", window=60), replicas=6)
        loop = fleet.loop()
        fleet.demand("a", 8.0)  # 48 requests: 6 replicas, steady
        await loop.tick(NOW)
        fleet.demand("a", 2.0)  # 12 requests: 2 replicas wanted, held 60 s by the window
        [held] = await loop.tick(NOW + 15)
        assert held.decision is not None
        assert held.decision.desired_replicas == 6
        fleet.budgets = [budget(8)]  # 4 replicas x 2 GPUs
        [capped] = await loop.tick(NOW + 30)
        assert capped.decision is not None
        assert capped.outcome is Outcome.SCALED
        assert fleet.replicas("a") == 4
        fleet.set_pods("a", 4)
        fleet.demand("a", 3.0)  # 12 requests over 4 pods: still 2 wanted
        await loop.tick(NOW + 45)
        assert fleet.replicas("a") == 4  # the window still holds the 6 recommended at NOW
        await loop.tick(NOW + 61)
        assert fleet.replicas("a") == 2  # the window passed: the recommendations decide

    async def test_decided_again_after_a_conflict_keeps_the_budget(self) -> None:
        """Another writer wins the /scale race (2 -> 6): the decision made again from the fresh
        reading (6 -> 5 on the metrics) is still held to the 4 replicas the budget granted."""
        fleet = Fleet(gpu_policy("a"))
        fleet.budgets = [budget(8)]  # 4 replicas x 2 GPUs
        fleet.demand("a", 20.0)  # 40 requests / 8 = 5 replicas wanted
        target = fleet.cluster.targets[("nim", "Deployment", "a")]
        target.other_writer = lambda t: setattr(t, "spec_replicas", 6)
        [result] = await fleet.loop().tick(NOW)
        assert result.outcome is Outcome.SCALED
        assert fleet.replicas("a") == 4
        assert fleet.cluster.writes == [("nim", "a", 4)]
        assert result.decision is not None
        assert result.decision.current_replicas == 6
        limited = result.decision.condition(ConditionType.SCALING_LIMITED)
        assert limited is not None
        assert (limited.status, limited.reason) == (True, "BudgetExhausted")

    async def test_paused_policy_holds_its_gpus(self) -> None:
        """A paused policy keeps its replicas, and they count against the budget."""
        fleet = Fleet(gpu_policy("paused", priority=100), gpu_policy("a"), replicas=3)
        fleet.cluster.targets[("nim", "Deployment", "paused")].annotations[
            "nim-autoscaler.io/mode"
        ] = "paused"
        fleet.budgets = [budget(10)]  # paused holds 6 GPUs: 'a' may have 2 replicas
        fleet.demand("a", 8.0)  # wants 3
        results = {r.policy: r for r in await fleet.loop().tick(NOW)}
        assert fleet.replicas("paused") == 3
        assert fleet.replicas("a") == 2
        assert results["nim/paused"].outcome is Outcome.PAUSED


class TestExplainRecords:
    def test_explain_shows_mode_and_the_drain_plan_without_writing(self) -> None:
        """`explain` adds the mode (annotation wins) and, for a scale-down, the pods to mark."""
        from autoscaler.commands.explain import with_fleet_records
        from autoscaler.decision.types import History, Observation
        from tests.decision.helpers import decide

        policy = make_policy()
        pods = tuple(
            PodInfo(n, PodPhase.RUNNING, ready=True, created_at=0.0, owner_kind="ReplicaSet")
            for n in LOAD
        )
        metrics = {"runningRequests": PodSamples(values=LOAD, timestamp=NOW, series=4)}
        observation = Observation(4, 4, pods, metrics)
        decision = decide(policy, observation, History(), NOW).decision
        shown = with_fleet_records(
            policy, decision, observation, {"nim-autoscaler.io/mode": "advisory"}
        )
        assert shown.explanation["mode"] == {"mode": "advisory", "source": "nim-autoscaler.io/mode"}
        assert [p["pod"] for p in shown.explanation["drain"]["remove"]] == ["p1", "p3"]
        text = render_text(shown)
        assert "mode: advisory (from nim-autoscaler.io/mode)" in text
        assert "written: no: explain writes nothing" in text


class TestLazyExplanation:
    def test_fleet_records_do_not_build_the_explanation(self) -> None:
        """Events and the status record read the fleet records; the arithmetic stays unbuilt
        until someone reads the explanation (most ticks are never printed)."""
        from autoscaler.decision.explain import Explanation
        from autoscaler.decision.fleet import fleet_events, fleet_status, with_records
        from autoscaler.decision.types import History, Observation
        from tests.decision.helpers import decide

        policy = make_policy()
        pods = tuple(PodInfo(n, PodPhase.RUNNING, ready=True) for n in LOAD)
        metrics = {"runningRequests": PodSamples(values=LOAD, timestamp=NOW, series=4)}
        decision = decide(policy, Observation(4, 4, pods, metrics), History(), NOW).decision
        base = decision.explanation
        assert isinstance(base, Explanation)
        marked = with_records(decision, {"mode": {"mode": "active", "source": "spec.mode"}})
        marked = with_records(marked, {"externalRescale": {"from": 3, "to": 4, "message": "m"}})
        assert fleet_status(marked) == {"mode": "active"}
        assert [e.reason for e in fleet_events(marked, advisory=False)] == ["ExternalRescale"]
        assert base._pending is not None  # the laziness is what is tested
        assert marked.explanation["reason"] == base["reason"]
        assert marked.explanation["mode"]["mode"] == "active"
        assert marked.explanation["externalRescale"]["to"] == 4
