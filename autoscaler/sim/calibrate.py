"""Closed-loop (fixed concurrency) driver of one replica, for profile calibration.

Benchmarks such as NIM's ``genai-perf`` tables keep ``c`` requests in flight: each client sends
its next request as soon as the previous response ends. :func:`closed_loop` reproduces that
against one :class:`~autoscaler.sim.engine.Replica` so a
:class:`~autoscaler.sim.profiles.HardwareProfile` can be compared with its reference points
(``tests/sim/test_calibration.py``, ``docs/simulator.md``).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

from autoscaler.sim.engine import Replica, Request
from autoscaler.sim.profiles import HardwareProfile


@dataclass(frozen=True, slots=True)
class ClosedLoopResult:
    """Steady-state figures of a closed-loop run (after the warm-up)."""

    concurrency: int
    requests: int
    """Requests finished in the measured interval."""
    output_tokens_per_s: float
    requests_per_s: float
    ttft_mean: float
    """Mean TTFT as the client sees it, seconds."""
    itl_mean: float
    """Mean inter-token latency (per request ``(finish - first token)/(output - 1)``), seconds."""
    e2e_mean: float


class _Collect:
    def __init__(self) -> None:
        self.done: list[Request] = []

    def itl(self, t: float, dt: float, weight: int) -> None:
        del t, dt, weight

    def finished(self, request: Request) -> None:
        self.done.append(request)


def closed_loop(
    profile: HardwareProfile,
    concurrency: int,
    *,
    prompt: int = 200,
    output: int = 200,
    duration: float = 60.0,
    warmup: float = 10.0,
    jitter: float = 0.02,
    seed: int = 0,
) -> ClosedLoopResult:
    """Run ``concurrency`` clients against one replica for ``warmup + duration`` seconds.

    Client ``i`` starts at ``i * stagger / concurrency`` (deterministic), so the clients are
    spread over about one request lifetime rather than arriving as one wave; a client sends again
    when its response ends (engine finish plus the profile's API overhead and front-end delay)
    plus a seeded uniform client/network jitter in ``[0, jitter)`` seconds. Without the jitter,
    fixed-length requests admitted in the same step finish in the same step and the clients stay
    locked in waves forever, which real benchmark clients are not.
    """
    rng = random.Random(seed)
    stagger = 1.0
    sink = _Collect()
    replica = Replica(profile, sink)
    clients: list[tuple[float, int]] = [(i * stagger / concurrency, i) for i in range(concurrency)]
    heapq.heapify(clients)
    end = warmup + duration
    boundary: float | None = None
    rid = 0
    seen = 0
    while True:
        t_client = clients[0][0] if clients else math.inf
        t_boundary = boundary if boundary is not None else math.inf
        if min(t_client, t_boundary) > end:
            break
        if t_client <= t_boundary:
            t, client = heapq.heappop(clients)
            request = Request(rid, t, prompt, output)
            request.pod = client
            rid += 1
            changed = replica.enqueue(request, t)
            if changed is not None:
                boundary = changed
        else:
            boundary = replica.on_boundary()
            for request in sink.done[seen:]:
                heapq.heappush(
                    clients,
                    (request.finish + request.extra + rng.random() * jitter, request.pod),
                )
            seen = len(sink.done)
    measured = [r for r in sink.done if warmup <= r.finish + r.extra <= end]
    n = len(measured)
    if n == 0:
        return ClosedLoopResult(concurrency, 0, 0.0, 0.0, math.nan, math.nan, math.nan)
    tokens = sum(r.output for r in measured)
    return ClosedLoopResult(
        concurrency=concurrency,
        requests=n,
        output_tokens_per_s=tokens / duration,
        requests_per_s=n / duration,
        ttft_mean=sum(r.ttft for r in measured) / n,
        itl_mean=sum(r.tpot for r in measured if r.output > 1) / n,
        e2e_mean=sum(r.e2e for r in measured) / n,
    )
