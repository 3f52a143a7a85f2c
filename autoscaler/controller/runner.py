"""Scheduling of the control loop: a tick every interval until asked to stop.

The :class:`Runner` owns the rhythm (fixed-rate ticks; an overrunning tick is followed at once by
the next), the graceful stop (SIGTERM/SIGINT set an event; the tick in progress finishes, then the
runner returns so the caller can release the lease and close clients), and a per-tick policy
reload hook. It reads time only through the injected :class:`~autoscaler.clock.Clock`, so tests
and the simulator drive it with a virtual clock.

With a ``phase`` (:meth:`autoscaler.metrics.prometheus.PrometheusSource.tick_phase`), the ticks
start just after the recording rule group they read has written its values (:func:`aligned`):
the recorded values are then at their freshest (up to one rule interval fresher than at a random
phase) and the tick's queries do not run while Prometheus evaluates the group.
"""

from __future__ import annotations

import asyncio
import math
import signal
from collections.abc import Callable

import structlog

from autoscaler.clock import Clock
from autoscaler.controller.loop import ControlLoop, TickResult
from autoscaler.metrics.rules import RulePhase

log = structlog.get_logger(__name__)

_SAME_PERIOD = 1e-6
"""Relative tolerance of "the interval is a whole number of rule periods"."""


def locks_on(interval: float, period: float) -> bool:
    """Whether ticks ``interval`` apart can keep one phase of a ``period``: a whole multiple."""
    if period <= 0:
        return False
    periods = round(interval / period)
    return periods >= 1 and abs(periods * period - interval) <= _SAME_PERIOD * interval


def aligned(nominal: float, interval: float, phase: RulePhase | None, now: float) -> float:
    """When the next tick starts: ``nominal``, moved to the nearest time the rules are ready.

    Only when the loop's ``interval`` is a whole number of the group's periods: the ticks then
    stay on that phase, ``interval`` apart, and the first move is by at most half a period.
    Otherwise (or without a phase) the ticks keep their own rhythm. Never earlier than ``now``;
    a tick already due (``nominal`` not after ``now``: the last one overran) is not moved.
    """
    if phase is None or nominal <= now or not locks_on(interval, phase.period):
        return nominal
    at = phase.ready + round((nominal - phase.ready) / phase.period) * phase.period
    if at < now:
        at += math.ceil((now - at) / phase.period) * phase.period
    return at


class Runner:
    """Runs ``loop.tick`` every ``interval`` seconds of ``clock`` until :meth:`stop`."""

    def __init__(
        self,
        *,
        loop: ControlLoop,
        clock: Clock,
        interval: float,
        before_tick: Callable[[], None] | None = None,
        after_tick: Callable[[list[TickResult]], None] | None = None,
        max_ticks: int | None = None,
        phase: Callable[[], RulePhase | None] | None = None,
    ) -> None:
        self._loop = loop
        self._phase = phase
        self._aligned_to: str | None = None
        self._clock = clock
        self._interval = interval
        self._before_tick = before_tick
        self._after_tick = after_tick
        self._max_ticks = max_ticks
        self._stopping = asyncio.Event()
        self.ticks = 0
        """Ticks completed."""

    def stop(self) -> None:
        """Ask the runner to finish the current tick and return."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the runner gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("signal received; finishing the current tick", signal=sig.name)
        self.stop()

    async def run(self) -> None:
        """Tick until stopped (or ``max_ticks`` reached)."""
        next_at = self._clock.now()
        while not self._stopping.is_set():
            if self._before_tick is not None:
                try:
                    self._before_tick()
                except Exception:  # the previous policies stay in force
                    log.exception("before-tick hook failed")
            now = self._clock.now()
            results = await self._loop.tick(now)
            self.ticks += 1
            if self._after_tick is not None:
                self._after_tick(results)
            # Not held through the wait and the next tick: a tick's results (every policy's
            # observation and decision) would otherwise stay alive beside the next one's.
            del results
            if self._max_ticks is not None and self.ticks >= self._max_ticks:
                return
            next_at = self._next(next_at + self._interval)
            delay = next_at - self._clock.now()
            if delay <= 0:
                log.warning("tick overran its interval", overrun_seconds=round(-delay, 3))
                next_at = self._clock.now()
                continue
            await self._wait(delay)

    def _next(self, nominal: float) -> float:
        """The next tick's start (:func:`aligned` to the rules' phase, if there is one)."""
        if self._phase is None:
            return nominal
        try:
            phase = self._phase()
        except Exception:  # the ticks keep their rhythm
            log.exception("rule phase unavailable")
            phase = None
        at = aligned(nominal, self._interval, phase, self._clock.now())
        moved = at - nominal
        if phase is not None and moved and (phase.group != self._aligned_to or abs(moved) >= 1):
            log.info(
                "ticks aligned to a recording rule group",
                group=phase.group,
                period_seconds=phase.period,
                evaluation_seconds=round(phase.duration, 3),
                moved_seconds=round(moved, 3),
            )
        if (
            phase is not None
            and phase.group != self._aligned_to
            and not locks_on(self._interval, phase.period)
        ):
            log.info(
                "ticks keep their own phase: the interval is not a whole number of the "
                "recording rule group's periods",
                group=phase.group,
                period_seconds=phase.period,
                interval_seconds=self._interval,
            )
        self._aligned_to = phase.group if phase is not None else None
        return at

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds of clock time, waking early when stopped."""
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                if not task.done():
                    task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)
