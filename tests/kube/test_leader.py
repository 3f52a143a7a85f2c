"""Leader election on a Lease, against the fake API server."""

from __future__ import annotations

import asyncio

import pytest

from autoscaler.clock import VirtualClock
from autoscaler.kube.client import KubeApi
from autoscaler.kube.leader import LeaderElector, micro_time
from tests.fakekube import FakeKube
from tests.kube.conftest import eventually

NS = "nim-system"
LEASE = "nim-autoscaler"

# Short durations keep the real-time tests fast: lease 1 s, renew deadline 0.6 s, retry 0.2 s.
FAST = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.2}


def _elector(api: KubeApi, identity: str, **kwargs: object) -> LeaderElector:
    options = {**FAST, **kwargs}
    return LeaderElector(api, NS, LEASE, identity, **options)  # type: ignore[arg-type]


def _lease(fake: FakeKube) -> dict[str, object]:
    lease = fake.get("leases", NS, LEASE)
    assert lease is not None
    spec = lease["spec"]
    assert isinstance(spec, dict)
    return spec


class TestDeterministic:
    """One attempt at a time on a virtual clock."""

    async def test_creates_lease_and_leads(self, fake: FakeKube, api: KubeApi) -> None:
        """No Lease: the first attempt creates it and leads."""
        clock = VirtualClock(1_700_000_000.0)
        elector = LeaderElector(api, NS, LEASE, "a", clock=clock)
        assert not elector.is_leader()
        assert await elector.step()
        assert elector.is_leader()
        spec = _lease(fake)
        assert spec["holderIdentity"] == "a"
        assert spec["leaseDurationSeconds"] == 15
        assert spec["leaseTransitions"] == 0
        assert spec["renewTime"] == micro_time(1_700_000_000.0)

    async def test_expiry_uses_local_observation_not_remote_timestamps(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A renewTime far in the past (skewed clock) is not expired until seen unchanged."""
        fake.put(
            "leases",
            {
                "metadata": {"name": LEASE, "namespace": NS},
                "spec": {
                    "holderIdentity": "other",
                    "leaseDurationSeconds": 15,
                    "renewTime": "2001-01-01T00:00:00.000000Z",
                    "acquireTime": "2001-01-01T00:00:00.000000Z",
                    "leaseTransitions": 3,
                },
            },
        )
        clock = VirtualClock(1_700_000_000.0)
        elector = LeaderElector(api, NS, LEASE, "a", clock=clock)
        assert not await elector.step()  # first sight: the record just "changed"
        clock.advance(14.0)
        assert not await elector.step()  # 14 s unchanged < 15 s
        clock.advance(1.0)
        assert await elector.step()  # 15 s unchanged: expired, taken over
        spec = _lease(fake)
        assert spec["holderIdentity"] == "a"
        assert spec["leaseTransitions"] == 4

    async def test_renewing_holder_is_never_taken_over(self, fake: FakeKube, api: KubeApi) -> None:
        """While the holder keeps renewing, a candidate never acquires."""
        clock = VirtualClock(1_700_000_000.0)
        leader = LeaderElector(api, NS, LEASE, "a", clock=clock)
        candidate = LeaderElector(api, NS, LEASE, "b", clock=clock)
        assert await leader.step()
        for _ in range(20):
            clock.advance(2.0)
            assert await leader.step()
            assert not await candidate.step()
        assert leader.is_leader()
        assert not candidate.is_leader()

    async def test_renew_failure_loses_leadership_after_deadline(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Failing renewals: still leader before the renew deadline, not after."""
        clock = VirtualClock(1_700_000_000.0)
        elector = LeaderElector(api, NS, LEASE, "a", clock=clock)
        assert await elector.step()
        fake.inject(r"/leases/", 500, times=None)
        clock.advance(4.0)
        assert not await elector.step()
        assert elector.is_leader()
        clock.advance(6.0)  # 10 s since the last renewal
        assert not elector.is_leader()  # immediately, even before another attempt
        assert not await elector.step()
        assert not elector.is_leader()

    async def test_conflict_means_someone_else_won(self, fake: FakeKube, api: KubeApi) -> None:
        """A 409 on the update is a lost round, not an error."""
        clock = VirtualClock(1_700_000_000.0)
        elector = LeaderElector(api, NS, LEASE, "a", clock=clock)
        assert await elector.step()
        fake.inject(r"/leases/", 409, method="PUT", times=1)
        clock.advance(2.0)
        assert not await elector.step()
        assert elector.is_leader()  # still within the renew deadline

    def test_invalid_durations_rejected(self, api: KubeApi) -> None:
        """renew deadline must be below the lease duration."""
        with pytest.raises(ValueError, match="renew_deadline"):
            LeaderElector(api, NS, LEASE, "a", lease_duration=5, renew_deadline=5)


class TestRobustness:
    async def test_corrupt_lease_does_not_kill_the_elector(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """An unreadable Lease is logged and retried; once repaired, election proceeds."""
        fake.put(
            "leases",
            {
                "metadata": {"name": LEASE, "namespace": NS},
                "spec": {"holderIdentity": "x", "leaseDurationSeconds": "soon"},
            },
        )
        elector = _elector(api, "a")
        elector.start()
        try:
            await eventually(
                lambda: (
                    fake.requests.count(
                        ("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}")
                    )
                    >= 2
                )
            )
            assert not elector.is_leader()
            fake.delete("leases", NS, LEASE)
            await eventually(elector.is_leader, timeout=3.0)
        finally:
            await elector.stop()


class TestTwoElectors:
    """Real time, short durations."""

    async def test_exactly_one_leader_and_takeover(self, fake: FakeKube, api: KubeApi) -> None:
        """One leader; when it stops renewing (crash), the other takes over within 2 lease
        durations; never two leaders at once."""
        a, b = _elector(api, "a"), _elector(api, "b")
        overlap: list[float] = []
        loop = asyncio.get_running_loop()
        sampling = True

        async def sample() -> None:
            while sampling:
                if a.is_leader() and b.is_leader():
                    overlap.append(loop.time())
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        task_a = asyncio.create_task(a.run())
        await eventually(a.is_leader, timeout=3.0)
        task_b = asyncio.create_task(b.run())
        await asyncio.sleep(0.6)  # b observes a renewing
        assert a.is_leader()
        assert not b.is_leader()

        task_a.cancel()  # crash: no release, no more renewals
        crashed_at = loop.time()
        await asyncio.gather(task_a, return_exceptions=True)
        await eventually(b.is_leader, timeout=2.5)
        assert loop.time() - crashed_at <= 2 * FAST["lease_duration"] + 0.3
        assert not a.is_leader()
        assert _lease(fake)["holderIdentity"] == "b"
        assert _lease(fake)["leaseTransitions"] == 1

        await b.stop()
        task_b.cancel()
        await asyncio.gather(task_b, return_exceptions=True)
        sampling = False
        await sampler
        assert overlap == []

    async def test_release_on_stop_gives_immediate_takeover(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """stop() clears the holder: is_leader is False at once and the other leads quickly."""
        a = _elector(api, "a", lease_duration=10.0, renew_deadline=5.0, retry_period=0.2)
        b = _elector(api, "b", lease_duration=10.0, renew_deadline=5.0, retry_period=0.2)
        a.start()
        await eventually(a.is_leader, timeout=3.0)
        b.start()
        await asyncio.sleep(0.4)
        assert not b.is_leader()
        stopping = asyncio.create_task(a.stop())
        await asyncio.sleep(0)
        assert not a.is_leader()
        await stopping
        assert _lease(fake)["holderIdentity"] in {"", "b"}
        loop = asyncio.get_running_loop()
        released_at = loop.time()
        await eventually(b.is_leader, timeout=2.0)
        assert loop.time() - released_at < 1.0  # far sooner than the 10 s lease
        await b.stop()
        assert _lease(fake)["holderIdentity"] == ""
