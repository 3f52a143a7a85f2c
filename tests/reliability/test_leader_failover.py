"""Two controller processes with leader election; the leader is SIGKILLed.

Each instance authenticates with its own bearer token (its identity), and the fake API server
records, for every request, the caller and the Lease holder at that moment. So "never two
writers" is checked on the wire: every applied ``/scale`` write comes from the instance holding
the Lease when the write arrived. The follower takes over within two lease durations and then
scales on its own.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.harness import World, wait_until
from tests.promserver.fixtures import fleet_target
from tests.reliability.chaos import ChaosKube
from tests.reliability.process import ControllerProcess, controller_env

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

LEASE = 3.0


async def test_leader_sigkilled_follower_takes_over(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """Leader SIGKILLed: the other takes over within 2 lease durations; one writer at a time."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with ChaosKube() as fake:
        world = World(fake, fleet, tmp_path, scale_down_window=0)
        await world.launch(replicas=2, demand=1.0)
        env = controller_env(
            world.policy_dir,
            prometheus.url,
            leader_election="true",
            leader_election_lease_duration=str(LEASE),
            leader_election_renew_deadline="2",
            leader_election_retry_period="0.5",
        )
        instances = {name: ControllerProcess(tmp_path, name, fake.url, env) for name in "ab"}
        holders: list[tuple[float, tuple[str, ...]]] = []

        async def sample_lease() -> None:
            while True:
                holders.append((time.time(), fake.lease_holders()))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample_lease())
        try:
            for instance in instances.values():
                await instance.start()
            leader = await wait_until(
                lambda: next(iter(h for h in fake.lease_holders() if h), None), 30, "a leader"
            )
            assert leader in instances
            follower = "b" if leader == "a" else "a"
            world.demand = 2.0
            await wait_until(lambda: world.replicas() == 4, 25, "scale-out to 4 by the leader")
            await wait_until(lambda: len(world.ready_pods()) == 4, 10, "4 ready pods")
            await asyncio.sleep(1)

            instances[leader].signal(signal.SIGKILL)
            killed = time.time()
            await instances[leader].wait(10)
            await wait_until(lambda: fake.lease_holders() == (follower,), 4 * LEASE, "takeover")
            took_over = time.time()
            assert took_over - killed < 2 * LEASE, took_over - killed
            world.demand = 2.8  # 0.7 per pod: ceil(1.4 * 4) = 6
            await wait_until(lambda: world.replicas() == 6, 25, "scale-out to 6 by the new leader")
            await asyncio.sleep(1)  # any stray write by either instance would land here
        finally:
            sampler.cancel()
            for instance in instances.values():
                await instance.kill()
            await world.stop()

        writes = fake.scale_writes()
        assert [(s.replicas_before, s.body["spec"]["replicas"]) for s in writes] == [
            (2, 4),
            (4, 6),
        ]
        assert [s.who for s in writes] == [leader, follower]
        # Never two writers: every /scale write (applied or not) came from the Lease holder.
        attempts = [s for s in fake.log if s.path.endswith("/scale") and s.method == "PUT"]
        for seen in attempts:
            assert seen.lease_holders == (seen.who,), seen
        # The Lease never had two holders and the holder changed exactly once (a -> b).
        sequence = [h for _, h in holders if h and h[0]]
        changes = [h for i, h in enumerate(sequence) if i == 0 or h != sequence[i - 1]]
        assert changes == [(leader,), (follower,)], changes
