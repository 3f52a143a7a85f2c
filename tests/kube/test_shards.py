"""Shard ownership across replicas: one Lease per shard, membership Leases, fair shares.

Several :class:`~autoscaler.kube.shards.ShardManager` instances (separate identities, each with
its own real client) against one fake API server, with short lease timings so that expiry and
takeover happen within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from autoscaler.kube.client import KubeApi
from autoscaler.kube.leader import LeaseRecord
from autoscaler.kube.shards import (
    ShardManager,
    member_lease_name,
    shard_lease_name,
    shard_of_namespace,
)
from autoscaler.settings import Settings
from tests.fakekube import FakeKube

NS = "nim-system"
LEASE_DURATION = 1.5
RENEW_DEADLINE = 1.0
RETRY = 0.15


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate()``; return the seconds it took (fail after ``timeout``)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not predicate():
        if loop.time() - started > timeout:
            pytest.fail(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.02)
    return loop.time() - started


class Replicas:
    """Shard managers of several identities, each with its own API client."""

    def __init__(self, settings: Settings, shards: int) -> None:
        self.settings = settings
        self.shards = shards
        self.managers: dict[str, ShardManager] = {}
        self.clients: list[KubeApi] = []
        self.gained: dict[str, list[int]] = {}

    async def add(self, identity: str) -> ShardManager:
        api = await KubeApi.from_settings(self.settings, request_timeout=2.0)
        self.clients.append(api)
        gained = self.gained.setdefault(identity, [])
        manager = ShardManager(
            api,
            NS,
            "nim-autoscaler",
            identity,
            shards=self.shards,
            lease_duration=LEASE_DURATION,
            renew_deadline=RENEW_DEADLINE,
            retry_period=RETRY,
            on_gain=gained.append,
        )
        manager.start()
        self.managers[identity] = manager
        return manager

    def owned(self) -> dict[str, frozenset[int]]:
        return {name: m.owned() for name, m in self.managers.items()}

    def covered(self) -> bool:
        """Every shard owned by exactly one live manager."""
        counts = [0] * self.shards
        for shards in self.owned().values():
            for shard in shards:
                counts[shard] += 1
        return counts == [1] * self.shards

    async def close(self) -> None:
        for manager in self.managers.values():
            with contextlib.suppress(Exception):
                await manager.stop()
        for api in self.clients:
            await api.close()


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[Callable[[int], Replicas]]:
    made: list[Replicas] = []

    def make(shards: int) -> Replicas:
        group = Replicas(settings, shards)
        made.append(group)
        return group

    yield make
    for group in made:
        await group.close()


def test_shard_of_namespace_is_stable_and_spread() -> None:
    """crc32 of the namespace: fixed values, and 1,000 namespaces spread over 4 shards."""
    assert shard_of_namespace("nim", 4) == shard_of_namespace("nim", 4)
    assert shard_of_namespace("default", 1) == 0
    counts = [0] * 4
    for i in range(1000):
        counts[shard_of_namespace(f"team-{i}", 4)] += 1
    assert min(counts) > 200, counts


def test_lease_names() -> None:
    """Shard and membership Lease names are DNS names derived from the base name."""
    assert shard_lease_name("nim-autoscaler", 3) == "nim-autoscaler-shard-3"
    assert member_lease_name("nim-autoscaler", "Pod_A") == "nim-autoscaler-member-pod-a"


async def test_two_replicas_split_the_shards(
    fake: FakeKube, replicas: Callable[[int], Replicas]
) -> None:
    """Two replicas end with half the shards each, disjoint, every shard owned once."""
    group = replicas(8)
    a = await group.add("a")
    b = await group.add("b")
    await wait_for(
        lambda: group.covered() and len(a.owned()) == 4 and len(b.owned()) == 4,
        10,
        "an even split",
    )
    assert a.members == b.members == 2
    # The Leases say the same: each shard Lease held by its owner, one membership Lease each.
    for shard in range(8):
        lease = fake.get("leases", NS, shard_lease_name("nim-autoscaler", shard))
        assert lease is not None
        holder = LeaseRecord.from_lease(lease).holder
        assert shard in group.owned()[holder]
    for identity in ("a", "b"):
        lease = fake.get("leases", NS, member_lease_name("nim-autoscaler", identity))
        assert lease is not None
        assert LeaseRecord.from_lease(lease).holder == identity
    # Stays split: no shard changes hands while both run.
    before = group.owned()
    await asyncio.sleep(1.0)
    assert group.owned() == before


async def test_stop_releases_and_the_other_takes_over_fast(
    fake: FakeKube, replicas: Callable[[int], Replicas]
) -> None:
    """A replica that stops releases its Leases; the other owns every shard well within a
    lease duration."""
    group = replicas(4)
    a = await group.add("a")
    b = await group.add("b")
    await wait_for(lambda: group.covered() and len(a.owned()) == 2, 10, "an even split")
    await b.stop()
    assert not b.owned()  # at once
    del group.managers["b"]
    took = await wait_for(lambda: len(a.owned()) == 4, LEASE_DURATION, "takeover")
    assert took < LEASE_DURATION
    member = fake.get("leases", NS, member_lease_name("nim-autoscaler", "b"))
    assert member is not None
    assert not LeaseRecord.from_lease(member).holder  # released too


async def test_killed_replica_is_taken_over_after_expiry(
    fake: FakeKube, replicas: Callable[[int], Replicas]
) -> None:
    """A replica that dies (no release) loses its shards to the other once its Leases expire,
    and never both own a shard meanwhile."""
    group = replicas(4)
    a = await group.add("a")
    b = await group.add("b")
    await wait_for(lambda: group.covered() and len(a.owned()) == 2, 10, "an even split")
    b_shards = b.owned()
    task = b._task  # the crash: the task dies, nothing is released
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    del group.managers["b"]  # dead: never stopped

    overlap = False

    def both() -> bool:
        nonlocal overlap
        overlap = overlap or bool(a.owned() & b.owned())
        return len(a.owned()) == 4

    took = await wait_for(both, 3 * LEASE_DURATION + 1.0, "takeover after expiry")
    assert not overlap
    # Not before the Leases expired (unchanged for a lease duration since the last renewal,
    # which was at most one round before the crash).
    assert took >= LEASE_DURATION - 2 * RETRY
    assert b_shards <= a.owned()


async def test_a_third_replica_makes_the_others_release_excess(
    fake: FakeKube, replicas: Callable[[int], Replicas]
) -> None:
    """6 shards on 2 replicas (3 each); a third joins: each releases one, highest first."""
    group = replicas(6)
    a = await group.add("a")
    b = await group.add("b")
    await wait_for(lambda: group.covered() and len(a.owned()) == 3, 10, "3 + 3")
    a_before, b_before = a.owned(), b.owned()
    c = await group.add("c")
    await wait_for(
        lambda: group.covered() and all(len(s) == 2 for s in group.owned().values()),
        10,
        "2 + 2 + 2",
    )
    assert a.owned() == a_before - {max(a_before)}
    assert b.owned() == b_before - {max(b_before)}
    assert c.owned() == {max(a_before), max(b_before)}
    assert sorted(group.gained["c"]) == sorted(c.owned())


async def test_quiesce_runs_before_a_release(
    fake: FakeKube, replicas: Callable[[int], Replicas]
) -> None:
    """A shard given up is not owned from then on, and its Lease is released only after the
    quiesce hook returned."""
    group = replicas(2)
    a = await group.add("a")
    await wait_for(lambda: len(a.owned()) == 2, 10, "a owns both")
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def quiesce() -> None:
        entered.set()
        await gate.wait()

    a.quiesce = quiesce
    await group.add("b")
    await asyncio.wait_for(entered.wait(), 10)
    assert len(a.owned()) == 1  # given up at once
    released = shard_lease_name("nim-autoscaler", 1)
    lease = fake.get("leases", NS, released)
    assert lease is not None
    assert LeaseRecord.from_lease(lease).holder == "a"  # but not released yet
    await asyncio.sleep(3 * RETRY)
    assert LeaseRecord.from_lease(fake.get("leases", NS, released) or {}).holder == "a"
    gate.set()
    await wait_for(group.covered, 10, "b takes the released shard")
    assert group.owned()["b"] == {1}


async def test_factory_keeps_one_lease_without_sharding(tmp_path: Path, fake: FakeKube) -> None:
    """shards=1 builds the single-Lease elector (same name as before); shards>1 the manager."""
    from autoscaler.kube.factory import connect
    from autoscaler.kube.leader import LeaderElector
    from tests.fakekube import write_kubeconfig

    kubeconfig = write_kubeconfig(tmp_path / "kc", fake.url)
    base = {"KUBECONFIG": kubeconfig, "leader_election_namespace": NS, "identity": "a"}
    single = await connect(Settings(**base))  # type: ignore[arg-type]
    try:
        assert isinstance(single.leader, LeaderElector)
        assert single.leader.path.endswith("/leases/nim-autoscaler")
    finally:
        await single.close()
    sharded = await connect(Settings(**base, shards=4))  # type: ignore[arg-type]
    try:
        assert isinstance(sharded.leader, ShardManager)
        assert sharded.leader.shards == 4
    finally:
        await sharded.close()


class FakeInThread:
    """The fake API server on an event loop of its own thread (so blocking the test's loop
    does not block the server)."""

    def __enter__(self) -> FakeKube:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = FakeKube()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self.fake

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def test_a_blocked_event_loop_keeps_its_shards(tmp_path: Path) -> None:
    """Built by the factory, the manager renews from its own thread: a replica whose event loop
    is busy for longer than the lease duration (a long, CPU-bound tick) keeps its shards, and
    the other replica never takes them."""
    from autoscaler.kube.factory import connect
    from tests.fakekube import write_kubeconfig

    with FakeInThread() as fake:
        kubeconfig = write_kubeconfig(tmp_path / "kc", fake.url)
        timing = {
            "KUBECONFIG": kubeconfig,
            "leader_election_namespace": NS,
            "leader_election_lease_duration": LEASE_DURATION,
            "leader_election_renew_deadline": RENEW_DEADLINE,
            "leader_election_retry_period": RETRY,
            "shards": 4,
        }
        a = await connect(Settings(**timing, identity="a"))  # type: ignore[arg-type]
        b = await connect(Settings(**timing, identity="b"))  # type: ignore[arg-type]
        try:
            a.start()
            b.start()
            ma, mb = a.leader, b.leader
            assert isinstance(ma, ShardManager)
            assert isinstance(mb, ShardManager)
            await wait_for(lambda: len(ma.owned()) == 2 and len(mb.owned()) == 2, 10, "2 + 2")
            before = ma.owned()
            time.sleep(2 * LEASE_DURATION)  # the point: this event loop is blocked
            assert ma.owned() == before
            assert not mb.owned() & before
            await asyncio.sleep(3 * RETRY)
            assert ma.owned() == before
        finally:
            await a.close()
            await b.close()
        # Both released everything on close.
        for shard in range(4):
            lease = fake.get("leases", NS, shard_lease_name("nim-autoscaler", shard))
            assert lease is not None
            assert not LeaseRecord.from_lease(lease).holder
