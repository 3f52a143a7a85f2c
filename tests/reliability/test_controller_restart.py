"""kill -9 and restart: the real controller process continues where it left off.

The controller runs as ``python -m autoscaler run`` against the fake API server (served by this
test process), a real Prometheus and emulated pods. Load drops, a 20 s scale-down stabilization
window starts, and the controller is SIGKILLed 6 s into it and restarted at once. The restarted
process reads the history ConfigMap back, so the window is honoured where it stands: the
scale-down happens 20 s after the load dropped, not 20 s after the restart (where a restarted
HPA, which keeps its history in memory only, would start a new window). Exactly one write per
intended change, none lost, none repeated.
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
from tests.reliability.kubeworld import history_data
from tests.reliability.process import ControllerProcess, controller_env

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

WINDOW = 20


async def test_sigkill_mid_stabilization_window_is_resumed(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """SIGKILL 6 s into a 20 s scale-down window; the restarted process honours the window."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with ChaosKube() as fake:
        world = World(fake, fleet, tmp_path, scale_down_window=WINDOW)
        await world.launch(replicas=2, demand=1.0)  # 0.5 per pod: at target
        env = controller_env(world.policy_dir, prometheus.url, leader_election="false")
        controller = ControllerProcess(tmp_path, "solo", fake.url, env)
        await controller.start()
        try:
            await wait_until(
                lambda: history_data(fake),
                30,
                "the first tick (history saved)",
            )
            world.demand = 2.0  # 1.0 per pod: twice the target
            await wait_until(lambda: world.replicas() == 4, 20, "scale-out to 4")
            await wait_until(lambda: len(world.ready_pods()) == 4, 10, "4 ready pods")
            await asyncio.sleep(2)  # a few ticks at 4 (the load has spread: 0.5 per pod)

            world.demand = 0.4  # 0.1 per pod: one replica would do, after the window
            dropped = time.time()
            await asyncio.sleep(6)
            assert world.replicas() == 4  # inside the window
            controller.signal(signal.SIGKILL)
            assert await controller.wait(10) == -signal.SIGKILL
            restarted = time.time()
            await controller.start()
            await wait_until(lambda: world.replicas() == 1, 45, "scale-down to 1")
        finally:
            await controller.kill()
            await world.stop()

        changes = [(s.replicas_before, s.body["spec"]["replicas"]) for s in fake.scale_writes()]
        assert changes == [(2, 4), (4, 1)], changes  # none lost, none repeated
        down_at = fake.scale_writes()[-1].at
        # The window is honoured (no early scale-down after the restart): the last high
        # recommendation is at most one tick (1 s) older than the drop ...
        assert down_at >= dropped + WINDOW - 1.5, (down_at - dropped, controller.text()[-3000:])
        # ... and not restarted: a fresh window would end WINDOW s after the restart at least.
        assert down_at < restarted + WINDOW - 1.0, (down_at - restarted, down_at - dropped)
        restored = [e for e in controller.events() if e.get("event") == "history_restored"]
        assert restored, "the restarted process did not read the history back"
        assert controller.starts == 2
