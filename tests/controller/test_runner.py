"""The runner's rhythm: a tick's results are not kept beside the next; the ticks' phase."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import cast

import pytest

from autoscaler.clock import VirtualClock
from autoscaler.controller.loop import ControlLoop, TickResult
from autoscaler.controller.runner import Runner, aligned
from autoscaler.metrics.rules import RulePhase


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


# ---------------------------------------------------------------------------------------------
# The ticks' phase: just after the recording rule group has written its values
# ---------------------------------------------------------------------------------------------


def _phase(period: float = 15.0, ready: float = 1003.5) -> RulePhase:
    return RulePhase(group="nim-autoscaler.recording", period=period, ready=ready, duration=2.0)


class _TimedLoop:
    """Stands in for the control loop: records when each tick starts; a tick takes ``takes``
    seconds of the clock (one entry per tick, the last repeated)."""

    def __init__(self, clock: VirtualClock, takes: list[float]) -> None:
        self.clock = clock
        self.takes = takes
        self.started: list[float] = []

    async def tick(self, now: float) -> list[TickResult]:
        self.started.append(now)
        self.clock.advance(self.takes[min(len(self.started), len(self.takes)) - 1])
        return []


async def _tick_times(
    interval: float,
    phase: Callable[[], RulePhase | None] | None,
    takes: list[float] | None = None,
    ticks: int = 4,
) -> list[float]:
    clock = VirtualClock(1000.0)
    loop = _TimedLoop(clock, takes or [1.0])
    runner = Runner(
        loop=cast("ControlLoop", loop),
        clock=clock,
        interval=interval,
        max_ticks=ticks,
        phase=phase,
    )
    await runner.run()
    return loop.started


class TestAligned:
    @pytest.mark.parametrize(
        "case",
        [
            # nominal, interval, period, ready, now -> expected
            ((1015.0, 15.0, 15.0, 1003.5, 1001.0), 1018.5),  # later, by under half a period
            ((1025.0, 15.0, 15.0, 1003.5, 1001.0), 1018.5),  # earlier
            ((1018.5, 15.0, 15.0, 1003.5, 1005.0), 1018.5),  # already on phase: stays
            ((1030.0, 30.0, 15.0, 1003.5, 1001.0), 1033.5),  # two periods per tick
            ((1030.0, 30.0, 10.0, 1003.5, 1001.0), 1033.5),  # three
            ((1020.0, 20.0, 15.0, 1003.5, 1001.0), 1020.0),  # not a whole number: own rhythm
            ((1010.0, 10.0, 15.0, 1003.5, 1001.0), 1010.0),  # faster than the rules: own rhythm
            ((1015.0, 15.0, 15.0, 1010.0, 1012.0), 1025.0),  # never before now
            ((1015.0, 15.0, 0.0, 1003.5, 1001.0), 1015.0),  # no period
            ((1015.0, 15.0, 15.0, 1003.5, 1016.0), 1015.0),  # already due (an overrun): at once
        ],
    )
    def test_next_tick_time(self, case: tuple[tuple[float, ...], float]) -> None:
        (nominal, interval, period, ready, now), expected = case
        assert aligned(nominal, interval, _phase(period, ready), now) == pytest.approx(expected)

    def test_without_a_phase_the_nominal_time(self) -> None:
        assert aligned(1015.0, 15.0, None, 1001.0) == 1015.0


class TestPhasedRunner:
    async def test_ticks_move_onto_the_phase_and_stay_an_interval_apart(self) -> None:
        started = await _tick_times(15.0, _phase)
        assert started == pytest.approx([1000.0, 1018.5, 1033.5, 1048.5])

    async def test_without_a_phase_the_ticks_keep_their_rhythm(self) -> None:
        assert await _tick_times(15.0, None) == [1000.0, 1015.0, 1030.0, 1045.0]
        assert await _tick_times(15.0, lambda: None) == [1000.0, 1015.0, 1030.0, 1045.0]

    async def test_an_interval_the_rules_do_not_divide_keeps_its_rhythm(self) -> None:
        assert await _tick_times(20.0, _phase) == [1000.0, 1020.0, 1040.0, 1060.0]

    async def test_an_overrun_tick_is_followed_at_once_then_back_on_phase(self) -> None:
        # The second tick takes 20 s: the third starts as it ends, the fourth on the phase.
        started = await _tick_times(15.0, _phase, takes=[1.0, 20.0, 1.0], ticks=5)
        assert started == pytest.approx([1000.0, 1018.5, 1038.5, 1048.5, 1063.5])

    async def test_a_failing_phase_keeps_the_rhythm(self) -> None:
        def broken() -> RulePhase | None:
            raise RuntimeError("no phase")

        assert await _tick_times(15.0, broken) == [1000.0, 1015.0, 1030.0, 1045.0]

    async def test_a_phase_that_shifts_moves_the_ticks_once(self) -> None:
        phases = iter([_phase(ready=1003.5), _phase(ready=1003.5), _phase(ready=1009.0)])
        started = await _tick_times(15.0, lambda: next(phases, _phase(ready=1009.0)), ticks=5)
        assert started == pytest.approx([1000.0, 1018.5, 1033.5, 1054.0, 1069.0])
