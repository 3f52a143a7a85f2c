"""Scheduling of the control loop: a tick every interval until asked to stop.

The :class:`Runner` owns the rhythm (fixed-rate ticks; an overrunning tick is followed at once by
the next), the graceful stop (SIGTERM/SIGINT set an event; the tick in progress finishes, then the
runner returns so the caller can release the lease and close clients), and a per-tick policy
reload hook. It reads time only through the injected :class:`~autoscaler.clock.Clock`, so tests
and the simulator drive it with a virtual clock.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog

from autoscaler.clock import Clock
from autoscaler.controller.loop import ControlLoop, TickResult

log = structlog.get_logger(__name__)


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
    ) -> None:
        self._loop = loop
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
            next_at += self._interval
            delay = next_at - self._clock.now()
            if delay <= 0:
                log.warning("tick overran its interval", overrun_seconds=round(-delay, 3))
                next_at = self._clock.now()
                continue
            await self._wait(delay)

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
