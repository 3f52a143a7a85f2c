"""Two controller replicas sharing the policies through shard Leases, on the real Kubernetes side.

Each replica is the control loop on its own Kubernetes context (``/scale``, pod cache, history
ConfigMaps, recorder, :class:`~autoscaler.kube.shards.ShardManager`) built by
:func:`~autoscaler.kube.factory.connect` with ``shards=4``, against one fake API server, with
deterministic metric values and a virtual ``now`` (as ``test_restart_history``). Checked: the
replicas split the shards; every policy is decided by exactly one of them, whose metric fetch
carries only its own namespaces; no target is written by both; when one stops, the other takes
its shards and decides exactly as a single replica would have (the history moved with the
shard). The last test runs the whole controller twice (``build_controller``, real Prometheus).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from autoscaler.controller.loop import ControlLoop, TickResult
from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import PodSamples
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.kube.shards import ShardManager, shard_of_namespace
from autoscaler.metrics.base import MetricRequest, PolicyMetrics
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.e2e.harness import (
    NAMESPACE,
    World,
    kv_policy,
    start_controller,
    stop_controller,
    wait_until,
)
from tests.fakekube.server import FakeKube, write_kubeconfig
from tests.promserver.fixtures import fleet_target

SHARDS = 4
NAMESPACES = [f"team-{i}" for i in range(8)]
LOADS = [0.5, 0.9, 0.9, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1]
"""KV usage per pod at each tick (60 s apart): a surge, then a quiet period under a 180 s
scale-down window and a one-pod-per-2-minutes scale-down rate (both need the history)."""
HANDOVER_AT = 5
"""The tick before which replica ``b`` stops (inside the scale-down window)."""


POLICIES = [kv_policy(ns) for ns in NAMESPACES]


class RecordingSource(StaticMetricSource):
    """The static source, remembering which policies each fetch asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[set[str]] = []

    async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
        self.asked.append({r.policy.key for r in requests})
        return await super().fetch(requests, now)


class Replica:
    """One controller replica: its Kubernetes context and its loop."""

    def __init__(self, context: KubeContext, source: RecordingSource) -> None:
        self.context = context
        self.source = source
        self.loop = ControlLoop(
            policies=lambda: POLICIES,
            metrics=source,
            scale=context.scale,
            pods=context.pods,
            recorder=context.recorder,
            history_store=context.history,
            leader=context.leader,
            log_ticks=False,
        )
        assert isinstance(context.leader, ShardManager)
        self.shards: ShardManager = context.leader
        self.shards.quiesce = self.loop.wait_idle


async def start_replica(fake: FakeKube, tmp_path: Path, identity: str) -> Replica:
    settings = Settings(
        kubeconfig=write_kubeconfig(tmp_path / f"kc-{identity}", fake.url),
        leader_election=True,
        leader_election_namespace="nim-autoscaler",
        leader_election_lease_duration=2.0,
        leader_election_renew_deadline=1.5,
        leader_election_retry_period=0.2,
        shards=SHARDS,
        identity=identity,
    )
    context = await connect(settings)
    context.start()
    assert await context.pods.wait_synced(within=10)
    return Replica(context, RecordingSource())


async def wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.02)


def pods_of(fake: FakeKube, namespace: str) -> list[str]:
    return [name for (plural, ns, name) in fake.objects if plural == "pods" and ns == namespace]


async def settle(fake: FakeKube, replicas: Sequence[Replica], now: float, load: float) -> None:
    """Let the reconciler create/remove pods, set the metrics, and wait for the pod caches."""
    fake.step()
    for policy in POLICIES:
        pods = pods_of(fake, policy.metadata.namespace)
        samples = PodSamples(dict.fromkeys(pods, load), timestamp=now, series=len(pods))
        for replica in replicas:
            replica.source.set(policy.key, {"kvCache": samples})
    for _ in range(100):
        if all(
            len(r.context.pods.pods(p.metadata.namespace, "app=llama"))
            == len(pods_of(fake, p.metadata.namespace))
            for r in replicas
            for p in POLICIES
        ):
            return
        await asyncio.sleep(0.05)
    pytest.fail("pod caches did not catch up")


def world(fake: FakeKube) -> None:
    for namespace in NAMESPACES:
        fake.add_deployment(namespace, "llama", replicas=2, labels={"app": "llama"})
    fake.enable_reconcile()
    fake.step()


def scale_writes(fake: FakeKube) -> dict[str, int]:
    """Writes of each target's ``/scale``, by namespace."""
    counts: dict[str, int] = {}
    for method, path in fake.requests:
        if method in {"PUT", "PATCH"} and path.split("?")[0].endswith("/llama/scale"):
            namespace = path.split("/namespaces/")[1].split("/")[0]
            counts[namespace] = counts.get(namespace, 0) + 1
    return counts


def decided(results: list[TickResult]) -> dict[str, int]:
    return {r.policy: r.decision.desired_replicas for r in results if r.decision is not None}


async def run_single(tmp_path: Path) -> list[dict[str, int]]:
    """The scenario with one replica owning every shard: the reference decisions."""
    async with FakeKube() as fake:
        world(fake)
        replica = await start_replica(fake, tmp_path, "solo")
        try:
            await wait_for(lambda: len(replica.shards.owned()) == SHARDS, 10, "all shards")
            out = []
            for tick, load in enumerate(LOADS):
                now = 1_000_000.0 + 60.0 * tick
                await settle(fake, [replica], now, load)
                out.append(decided(await replica.loop.tick(now)))
            return out
        finally:
            await replica.context.close()


async def test_two_replicas_split_decide_once_and_hand_over_history(tmp_path: Path) -> None:
    """Split, decided once, fetched only owned namespaces, written once; after a handover the
    decisions equal a single replica's, tick for tick."""
    (tmp_path / "single").mkdir()
    reference = await run_single(tmp_path / "single")
    assert len({d[POLICIES[0].key] for d in reference}) > 2, reference  # up and down

    async with FakeKube() as fake:
        world(fake)
        a = await start_replica(fake, tmp_path, "a")
        b = await start_replica(fake, tmp_path, "b")
        live = [a, b]
        try:
            await wait_for(
                lambda: len(a.shards.owned()) == 2 and len(b.shards.owned()) == 2,
                10,
                "an even split",
            )
            assert not a.shards.owned() & b.shards.owned()
            observed: list[dict[str, int]] = []
            for tick, load in enumerate(LOADS):
                now = 1_000_000.0 + 60.0 * tick
                if tick == HANDOVER_AT:
                    b_owned = b.shards.owned()
                    b_keys = [
                        p.key
                        for p in POLICIES
                        if shard_of_namespace(p.metadata.namespace, SHARDS) in b_owned
                    ]
                    assert b_keys, "b owns some policies"
                    b_histories = {key: b.loop.history(key) for key in b_keys}
                    await b.context.close()  # SIGTERM: the loop is idle, Leases released
                    live = [a]
                    await wait_for(lambda: len(a.shards.owned()) == SHARDS, 2.0, "takeover")
                    # What a reads from the history ConfigMaps is what b last held.
                    for policy in POLICIES:
                        if policy.key in b_histories:
                            saved = await a.context.history.load(policy)
                            held = b_histories[policy.key]
                            assert saved is not None
                            assert held is not None
                            assert saved.to_json() == held.to_json()
                await settle(fake, live, now, load)
                writes_before = scale_writes(fake)
                per_replica = [await r.loop.tick(now) for r in live]
                # Every policy decided by exactly one replica; the other says NOT_LEADER.
                merged: dict[str, int] = {}
                for replica, results in zip(live, per_replica, strict=True):
                    mine = decided(results)
                    assert not mine.keys() & merged.keys()
                    merged.update(mine)
                    owned = replica.shards.owned()
                    for result in results:
                        namespace = result.policy.split("/")[0]
                        if shard_of_namespace(namespace, SHARDS) in owned:
                            assert result.outcome is not Outcome.NOT_LEADER
                        else:
                            assert result.outcome is Outcome.NOT_LEADER
                            assert result.decision is None
                    # The batched fetch asked only for this replica's namespaces.
                    assert replica.source.asked[-1] == set(mine)
                assert set(merged) == {p.key for p in POLICIES}
                observed.append(merged)
                # Each target written at most once per tick, by its owner only.
                writes = scale_writes(fake)
                scaled = sum(
                    1 for results in per_replica for r in results if r.outcome is Outcome.SCALED
                )
                assert sum(writes.values()) - sum(writes_before.values()) == scaled
            assert observed == reference
        finally:
            for replica in live:
                await replica.context.close()


async def test_history_configmaps_have_one_writer(tmp_path: Path) -> None:
    """With shards, each history ConfigMap holds the policies of one shard only."""
    async with FakeKube() as fake:
        world(fake)
        a = await start_replica(fake, tmp_path, "a")
        b = await start_replica(fake, tmp_path, "b")
        try:
            await wait_for(
                lambda: len(a.shards.owned()) == 2 and len(b.shards.owned()) == 2, 10, "split"
            )
            now = 1_000_000.0
            await settle(fake, [a, b], now, 0.9)
            await a.loop.tick(now)
            await b.loop.tick(now)
            maps = {
                name: obj
                for (plural, ns, name), obj in fake.objects.items()
                if plural == "configmaps" and name.startswith("nim-autoscaler-history-")
            }
            assert maps
            stored = set()
            for name, obj in maps.items():
                index = int(name.rsplit("-", 1)[1])
                for key in obj.get("data") or {}:
                    namespace = key.split(".")[0]
                    assert shard_of_namespace(namespace, SHARDS) == index % SHARDS, (name, key)
                    stored.add(namespace)
            assert stored == set(NAMESPACES)
        finally:
            await a.context.close()
            await b.context.close()


async def test_sharded_controllers_one_writes_and_the_other_takes_over(
    tmp_path: Path, prometheus_factory: Any, fleet_factory: Any
) -> None:
    """The whole controller (``build_controller``) with shards=4 on two instances: the owner of
    the target's namespace makes the one write; it stops; the other owns every shard and
    scales from then on."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        harness = World(fake, fleet, tmp_path)
        await harness.launch(replicas=2, demand=1.0, schedule_after=0.2, ready_after=0.8)
        sharding = {
            "leader_election": True,
            "leader_election_lease_duration": 2.0,
            "leader_election_renew_deadline": 1.5,
            "leader_election_retry_period": 0.3,
            "shards": 4,
        }
        instances = {
            name: await start_controller(
                harness.settings(prometheus.url, identity=name, **sharding)
            )
            for name in ("a", "b")
        }

        def manager(name: str) -> ShardManager:
            leader = instances[name][0].kube.leader
            assert isinstance(leader, ShardManager)
            return leader

        try:
            await wait_until(
                lambda: all(len(manager(n).owned()) == 2 for n in instances), 10, "2 + 2 shards"
            )
            owner = next(n for n in instances if manager(n).owns(NAMESPACE))
            other = "b" if owner == "a" else "a"
            harness.demand = 2.0
            await wait_until(lambda: harness.replicas() == 4, 20, "scale-out to 4")
            await asyncio.sleep(2)
            assert harness.scale_writes() == 1
            scaled = {
                name: c.registry.get_sample_value(
                    "nim_autoscaler_scale_total",
                    {"policy": "llama", "namespace": NAMESPACE, "direction": "up"},
                )
                or 0.0
                for name, (c, _) in instances.items()
            }
            assert scaled == {owner: 1.0, other: 0.0}

            await stop_controller(*instances.pop(owner))
            await wait_until(lambda: len(manager(other).owned()) == 4, 3.0, "takeover")
            harness.demand = 3.2  # 0.8 per pod: ceil(1.6 * 4) = 7
            await wait_until(lambda: harness.replicas() == 7, 20, "scale-out to 7 by the other")
            assert harness.scale_writes() == 2
        finally:
            for controller, task in instances.values():
                await stop_controller(controller, task)
            await harness.stop()
