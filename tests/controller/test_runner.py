"""The runner's rhythm as it affects memory: a tick's results are not kept beside the next."""

from __future__ import annotations

import gc
import weakref
from typing import cast

from autoscaler.clock import VirtualClock
from autoscaler.controller.loop import ControlLoop, TickResult
from autoscaler.controller.runner import Runner


class _Results(list[TickResult]):
    """A tick's result list that a weak reference can follow (a plain list cannot)."""


class _Loop:
    """Stands in for the control loop: each tick returns a fresh result list and records
    whether the previous tick's list was still alive when it started."""

    def __init__(self) -> None:
        self.previous: weakref.ref[_Results] | None = None
        self.previous_alive: list[bool] = []

    async def tick(self, now: float) -> list[TickResult]:
        if self.previous is not None:
            gc.collect()
            self.previous_alive.append(self.previous() is not None)
        results = _Results()
        self.previous = weakref.ref(results)
        return results


async def test_previous_results_are_released_before_the_next_tick() -> None:
    loop = _Loop()
    seen: list[int] = []
    runner = Runner(
        loop=cast("ControlLoop", loop),
        clock=VirtualClock(1000.0),
        interval=15.0,
        after_tick=lambda results: seen.append(len(results)),
        max_ticks=4,
    )

    await runner.run()

    assert runner.ticks == 4
    assert seen == [0, 0, 0, 0]  # the hook still gets every tick's results
    assert loop.previous_alive == [False, False, False]
