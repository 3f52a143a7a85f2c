"""Prometheus unreachable, slow or answering garbage (real server behind the test proxy).

Phases on one running controller: answers slower than the query timeout, a truncated JSON body,
an HTML error page instead of JSON, and Prometheus stopped for several ticks while the load
rises, then restarted. For each: ``hold`` keeps the count, ``fallback`` goes to its replicas after
``afterFailures`` ticks, ``ScalingActive=False`` with a reason, no metric value exported, and
the first good tick decides normally again (after the restart: the scale-out the load needs).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from autoscaler.app import build_controller
from tests.e2e.harness import wait_until
from tests.promserver.fixtures import fleet_target
from tests.promserver.prometheus import free_port
from tests.reliability.chaos import ChaosKube
from tests.reliability.promworld import NAMESPACE, PromWorld, fault_phase, has_value

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


async def test_slow_malformed_and_stopped_prometheus(
    tmp_path: Path, prometheus_factory, fleet_factory, proxy_factory
) -> None:
    """Slow, truncated, garbage, stopped: hold / fallback, clear conditions, quick recovery."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    proxy = proxy_factory(prometheus.url)
    async with ChaosKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=4, labels={"app": "llama"})
        fake.add_deployment(NAMESPACE, "mistral", replicas=2, labels={"app": "mistral"})
        fake.enable_reconcile(schedule_after=0.1, ready_after=0.3)
        world = PromWorld(fake, fleet, tmp_path)
        await wait_until(lambda: (world.sync(), len(world.ready_pods("llama")) == 4)[1], 10, "pods")
        world.start()
        registry = CollectorRegistry()
        controller = await build_controller(
            world.settings(proxy.url), on_decision=world.decisions.append, registry=registry
        )
        await controller.start()
        task = asyncio.create_task(controller.runner.run())
        try:
            await wait_until(
                lambda: sum(1 for d in world.of("llama") if has_value(d)) >= 2, 20, "good ticks"
            )

            async def slow() -> None:
                proxy.delay = 2.0  # the query timeout is 1 s

            async def fast() -> None:
                proxy.delay = 0.0

            await fault_phase(world, registry, slow, fast)
            for mode in ("truncate", "garbage"):

                async def corrupt(mode: str = mode) -> None:
                    proxy.body_mode = mode  # type: ignore[assignment]

                async def clean() -> None:
                    proxy.body_mode = "pass"

                await fault_phase(world, registry, corrupt, clean)

            async def outage() -> None:
                await asyncio.to_thread(prometheus.stop)
                world.demand["llama"] = 4.0  # 1.0 per pod while nobody can see it

            async def restart() -> None:
                await asyncio.to_thread(prometheus.start)

            # The first good tick may still read the last pre-outage sample (0.5 per pod, so 4);
            # the scale-out follows as soon as the new load is scraped.
            await fault_phase(world, registry, outage, restart, llama_after=None)
            await wait_until(lambda: world.replicas("llama") == 8, 20, "llama scaled out to 8")
        finally:
            controller.runner.stop()
            await asyncio.wait_for(task, 15)
            await controller.close()
            await world.stop()
        writes = [
            (s.replicas_before, s.body["spec"]["replicas"]) for s in fake.scale_writes("llama")
        ]
        assert writes == [(4, 8)], writes


async def test_unreachable_prometheus_is_counted_as_errors(tmp_path: Path) -> None:
    """Prometheus down: nim_autoscaler_errors_total{kind="metrics"} counts the failed ticks."""
    async with ChaosKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=4, labels={"app": "llama"})
        fake.add_deployment(NAMESPACE, "mistral", replicas=2, labels={"app": "mistral"})
        fake.enable_reconcile()
        fake.step()
        world = PromWorld(fake, fleet=None, tmp_path=tmp_path)  # type: ignore[arg-type]
        registry = CollectorRegistry()
        settings = world.settings(f"http://127.0.0.1:{free_port()}", interval=0.2)
        controller = await build_controller(
            settings, on_decision=world.decisions.append, registry=registry, max_ticks=3
        )
        await controller.start()
        try:
            assert await controller.kube.pods.wait_synced(within=10)
            await asyncio.wait_for(controller.runner.run(), 20)
        finally:
            await controller.close()
        decisions = world.of("llama")
        assert len(decisions) == 3
        assert not any(has_value(d) for d in decisions)
        errors = registry.get_sample_value(
            "nim_autoscaler_errors_total",
            {"policy": "llama", "namespace": NAMESPACE, "kind": "metrics"},
        )
        assert errors == 3
