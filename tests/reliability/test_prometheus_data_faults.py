"""Bad data from Prometheus (real server, emulated pods, controller running in-process).

Phases, one after the other on one running controller: every pod's KV cache NaN, negative,
absurd (1e308), no series at all, then half of one target's pods without series. For each:
no scale-down (``hold`` keeps the count; invalid is never read as 0), ``fallback`` exactly as
the policy says (4 replicas after 2 failed ticks), ``ScalingActive=False`` with a reason,
``nim_autoscaler_metric_value`` absent, and recovery on the first good tick.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from autoscaler.app import build_controller
from tests.e2e.harness import wait_until
from tests.promserver.fixtures import fleet_target
from tests.reliability.chaos import ChaosKube
from tests.reliability.promworld import NAMESPACE, PromWorld, fault_phase, has_value

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


async def test_invalid_values_never_scale_down_and_recover(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """NaN, negative, 1e308, empty: hold / fallback as configured; then partial series."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with ChaosKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=4, labels={"app": "llama"})
        fake.add_deployment(NAMESPACE, "mistral", replicas=2, labels={"app": "mistral"})
        fake.enable_reconcile(schedule_after=0.1, ready_after=0.3)
        world = PromWorld(fake, fleet, tmp_path)
        await wait_until(lambda: (world.sync(), len(world.ready_pods("llama")) == 4)[1], 10, "pods")
        world.start()
        registry = CollectorRegistry()
        controller = await build_controller(
            world.settings(prometheus.url), on_decision=world.decisions.append, registry=registry
        )
        await controller.start()
        task = asyncio.create_task(controller.runner.run())
        try:
            await wait_until(
                lambda: sum(1 for d in world.of("llama") if has_value(d)) >= 2, 20, "good ticks"
            )
            assert world.replicas("llama") == 4
            assert world.replicas("mistral") == 2
            for mode in ("nan", "negative", "huge", "empty"):

                async def start(mode: str = mode) -> None:
                    world.mode = mode

                async def stop() -> None:
                    world.mode = "ok"

                await fault_phase(world, registry, start, stop)

            # Half of llama's pods without series while the load is low: the HPA's missing-pod
            # rule (missing pods counted at the target on a scale-down) gives 3, never the 1
            # that reading them as 0 (or ignoring them) would give.
            world.demand["llama"] = 0.8
            world.mode = "partial"
            await wait_until(lambda: world.replicas("llama") == 3, 15, "llama at 3")
            await asyncio.sleep(2)  # a few more ticks: it stays at 3
            assert world.replicas("llama") == 3
            assert all(d.desired_replicas >= 3 for d in world.of("llama"))
            assert world.replicas("mistral") == 2  # unaffected
        finally:
            controller.runner.stop()
            await asyncio.wait_for(task, 15)
            await controller.close()
            await world.stop()
        writes = [
            (s.replicas_before, s.body["spec"]["replicas"]) for s in fake.scale_writes("llama")
        ]
        assert writes == [(4, 3)], writes
