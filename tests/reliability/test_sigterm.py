"""SIGTERM during a tick: the process finishes the tick (including its write), releases the Lease
and exits 0.

A proxy in front of Prometheus holds every query for 1.5 s, so a tick is in flight for most of
the interval; SIGTERM is sent the moment a tick's query reaches the proxy, and that tick's
decision (a scale-out) must still be written before the process exits.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from autoscaler.metrics.names import metric_name
from autoscaler.policy.models import MetricKind, MetricNames
from tests.e2e.harness import World, wait_until
from tests.promserver.fixtures import fleet_target
from tests.reliability.chaos import ChaosKube
from tests.reliability.kubeworld import history_data
from tests.reliability.process import ControllerProcess, controller_env

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

KV = metric_name(MetricKind.KV_CACHE, MetricNames.NIM)


async def test_sigterm_mid_tick_finishes_releases_and_exits_zero(
    tmp_path: Path, prometheus_factory, fleet_factory, proxy_factory
) -> None:
    """The in-flight tick completes (its /scale write lands after SIGTERM); Lease released; 0."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    proxy = proxy_factory(prometheus.url)
    async with ChaosKube() as fake:
        world = World(fake, fleet, tmp_path, scale_down_window=0)
        await world.launch(replicas=2, demand=1.0)
        env = controller_env(
            world.policy_dir,
            proxy.url,
            interval=4.0,
            prometheus_timeout="3",
            leader_election="true",
            leader_election_lease_duration="15",
            leader_election_renew_deadline="10",
            leader_election_retry_period="1",
        )
        controller = ControllerProcess(tmp_path, "solo", fake.url, env)
        await controller.start()
        try:
            await wait_until(lambda: fake.lease_holders() == ("solo",), 30, "leadership")
            await wait_until(
                lambda: history_data(fake),
                30,
                "the first tick",
            )
            proxy.fail_next = 10**6  # no tick may act on the new load before the signal
            world.demand = 2.0
            query = f'min({KV}{{namespace="nim"}})'
            await wait_until(
                lambda: (r := prometheus.query(query)) and float(r[0]["value"][1]) >= 0.99,
                20,
                "the new load in Prometheus",
            )
            proxy.fail_next = 0
            proxy.delay = 1.5
            seen = len(proxy.queries)
            await wait_until(lambda: len(proxy.queries) > seen, 15, "a tick's query")
            controller.signal(signal.SIGTERM)
            signalled = time.time()
            code = await controller.wait(20)
        finally:
            await controller.kill()
            await world.stop()

        assert code == 0, controller.text()[-3000:]
        writes = fake.scale_writes()
        assert [(s.replicas_before, s.body["spec"]["replicas"]) for s in writes] == [(2, 4)]
        assert writes[0].at > signalled  # the in-flight tick finished and wrote
        assert fake.lease_holders() == ("",)  # released for an immediate takeover
        events = [e.get("event") for e in controller.events()]
        order = [
            events.index("signal received; finishing the current tick"),
            events.index("scaled"),
            events.index("lease_released"),
            events.index("controller stopped"),
        ]
        assert order == sorted(order), events
