"""The whole controller against the fake API server, emulated pods and a real Prometheus.

Load rises, the controller scales the Deployment through ``/scale``, the fake API server's
reconciler adds pods, the exporters start reporting them once Ready, the load spreads, and the
replica count settles, with exactly one scale write.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.e2e.harness import NAMESPACE, World, start_controller, stop_controller, wait_until
from tests.fakekube.server import FakeKube
from tests.promserver.fixtures import fleet_target


async def test_load_rise_scales_out_and_settles(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """2 pods at target; demand doubles; one write to 4 replicas; steady once the load spreads."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        world = World(fake, fleet, tmp_path)
        await world.launch(
            replicas=2, demand=1.0, schedule_after=0.3, ready_after=1.5
        )  # 0.5 per pod: exactly the target
        controller, task = await start_controller(world.settings(prometheus.url))
        try:
            await asyncio.sleep(4)  # several ticks at target: nothing to do
            assert world.replicas() == 2
            assert world.scale_writes() == 0

            world.demand = 2.0  # 1.0 per pod: twice the target
            await wait_until(lambda: world.replicas() == 4, 20, "scale-out to 4")
            await wait_until(lambda: len(world.ready_pods()) == 4, 10, "4 ready pods")
            await asyncio.sleep(5)  # the load has spread (0.5 per pod): it must settle
            assert world.replicas() == 4
            assert world.scale_writes() == 1
        finally:
            await stop_controller(controller, task)
            await world.stop()

        # The controller counts the PromQL it sends (a few queries per tick, whatever the load).
        queries = controller.registry.get_sample_value("nim_autoscaler_prometheus_queries_total")
        ticks = controller.runner.ticks
        assert queries is not None
        assert ticks <= queries <= 4 * ticks

        # Visible in the cluster: an Event and the status annotation on the Deployment.
        events = [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]
        assert any(e.get("reason") == "SuccessfulRescale" for e in events), events
        deployment = fake.get("deployments", NAMESPACE, "llama")
        assert deployment is not None
        annotations = deployment["metadata"].get("annotations", {})
        status = json.loads(annotations["nim-autoscaler.io/status"])
        assert status["desiredReplicas"] == 4


async def test_two_instances_exactly_one_writes(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """With leader election, two controllers make exactly one write; the other takes over."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        world = World(fake, fleet, tmp_path)
        await world.launch(replicas=2, demand=1.0, schedule_after=0.2, ready_after=0.8)
        election = {
            "leader_election": True,
            "leader_election_lease_duration": 2.0,
            "leader_election_renew_deadline": 1.5,
            "leader_election_retry_period": 0.3,
        }
        first = await start_controller(world.settings(prometheus.url, identity="a", **election))
        second = await start_controller(world.settings(prometheus.url, identity="b", **election))
        instances = {"a": first, "b": second}
        try:
            await wait_until(
                lambda: sum(c.kube.leader.is_leader() for c, _ in instances.values()) == 1,
                10,
                "one leader",
            )
            world.demand = 2.0
            await wait_until(lambda: world.replicas() == 4, 20, "scale-out to 4")
            await asyncio.sleep(3)
            assert world.scale_writes() == 1
            scaled = {
                name: c.registry.get_sample_value(
                    "nim_autoscaler_scale_total",
                    {"policy": "llama", "namespace": NAMESPACE, "direction": "up"},
                )
                or 0.0
                for name, (c, _) in instances.items()
            }
            assert sorted(scaled.values()) == [0.0, 1.0], scaled

            # The leader stops (SIGTERM: lease released); the other takes over and writes.
            leader = next(n for n, (c, _) in instances.items() if c.kube.leader.is_leader())
            follower = "b" if leader == "a" else "a"
            await stop_controller(*instances.pop(leader))
            follower_controller = instances[follower][0]
            await wait_until(follower_controller.kube.leader.is_leader, 4.0, "takeover")
            world.demand = 3.2  # 0.8 per pod: ceil(1.6 * 4) = 7
            await wait_until(lambda: world.replicas() == 7, 20, "scale-out to 7 by the new leader")
            assert world.scale_writes() == 2
        finally:
            for controller, task in instances.values():
                await stop_controller(controller, task)
            await world.stop()
