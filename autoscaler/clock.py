"""Time as an injected dependency.

Only the control loop reads the clock, once per tick, and passes ``now`` (seconds since the Unix
epoch, float) down to the pure decision core. Tests and the simulator use :class:`VirtualClock`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time and a way to wait."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        """Seconds since the Unix epoch, from the system clock."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that only moves when told to (simulation, replay, tests)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            msg = f"cannot move a clock backwards (seconds={seconds})"
            raise ValueError(msg)
        self._now += seconds

    def set(self, now: float) -> None:
        """Jump to ``now`` (must not be in the past)."""
        if now < self._now:
            msg = f"cannot move a clock backwards ({now} < {self._now})"
            raise ValueError(msg)
        self._now = now

    async def sleep(self, seconds: float) -> None:
        """Advance virtual time instead of waiting."""
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
