"""The replica engine: step arithmetic, chunked prefill, limits, preemption, macro-steps."""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import replace

import pytest

from autoscaler.sim.engine import Replica, Request
from autoscaler.sim.profiles import HardwareProfile, get_profile

A = get_profile("8b-fp8-h100")


class Sink:
    """Collects finished requests and ITL observations."""

    def __init__(self) -> None:
        self.done: list[Request] = []
        self.itl_weight = 0

    def itl(self, t: float, dt: float, weight: int) -> None:
        del t, dt
        self.itl_weight += weight

    def finished(self, request: Request) -> None:
        self.done.append(request)


def drive(profile: HardwareProfile, requests: list[Request]) -> tuple[Replica, Sink]:
    """Feed ``requests`` (sorted by arrival) to one replica and run it dry."""
    sink = Sink()
    replica = Replica(profile, sink)
    boundary: float | None = None
    pending = deque(requests)
    while pending or boundary is not None:
        if pending and (boundary is None or pending[0].arrival <= boundary):
            request = pending.popleft()
            changed = replica.enqueue(request, request.arrival)
            if changed is not None:
                boundary = changed
        else:
            boundary = replica.on_boundary()
    return replica, sink


def reference(profile: HardwareProfile, requests: list[Request]) -> dict[int, tuple[float, float]]:
    """A plain step-by-step loop with the same scheduling rules (no KV pressure).

    Returns rid -> (first token time, finish time).
    """
    arrivals = deque(sorted(((r.arrival, r.rid, r) for r in requests), key=lambda x: x[:2]))
    waiting: deque[Request] = deque()
    running: list[list[object]] = []  # [request, prefilled, generated]
    out: dict[int, tuple[float, float]] = {}
    first: dict[int, float] = {}
    t = 0.0
    while arrivals or waiting or running:
        while arrivals and arrivals[0][0] <= t:
            waiting.append(arrivals.popleft()[2])
        if not waiting and not running:
            t = arrivals[0][0]
            continue
        decoders = [e for e in running if e[1] == e[0].prompt]  # type: ignore[attr-defined]
        budget = profile.max_num_batched_tokens - len(decoders)
        chunks = []
        for entry in running:
            request = entry[0]
            assert isinstance(request, Request)
            if entry[1] < request.prompt and budget > 0:
                chunk = min(budget, request.prompt - entry[1])  # type: ignore[operator]
                chunks.append((entry, chunk))
                budget -= chunk
        while waiting and budget > 0 and len(running) < profile.max_num_seqs:
            request = waiting.popleft()
            entry = [request, 0, 0]
            running.append(entry)
            chunk = min(budget, request.prompt)
            chunks.append((entry, chunk))
            budget -= chunk
        dt = profile.step_time(sum(c for _, c in chunks), len(decoders))
        t += dt
        for entry in decoders:
            entry[2] += 1  # type: ignore[operator]
        for entry, chunk in chunks:
            entry[1] += chunk  # type: ignore[operator]
            request = entry[0]
            assert isinstance(request, Request)
            if entry[1] == request.prompt:
                first[request.rid] = t
                entry[2] = 1
        for entry in list(running):
            request = entry[0]
            assert isinstance(request, Request)
            if entry[1] == request.prompt and entry[2] == request.output:
                running.remove(entry)
                out[request.rid] = (first[request.rid], t)
    return out


class TestStepArithmetic:
    """TTFT and ITL follow from the step-time model."""

    def test_roofline_step_time(self) -> None:
        """t = max(m + k*T, b*T)."""
        assert A.step_time(0, 1) == pytest.approx(A.m + A.k)
        assert A.step_time(8000, 0) == pytest.approx(A.b * 8000)

    def test_single_request(self) -> None:
        """One prefill step, then output-1 identical decode steps."""
        _, sink = drive(A, [Request(0, 1.0, 200, 10)])
        (request,) = sink.done
        prefill = A.step_time(200, 0)
        assert request.first_token == pytest.approx(1.0 + prefill)
        assert request.finish == pytest.approx(1.0 + prefill + 9 * A.step_time(0, 1))
        assert request.tpot == pytest.approx(A.step_time(0, 1))

    def test_chunked_prefill_of_a_long_prompt(self) -> None:
        """A 20,000-token prompt takes three steps of at most 8192 tokens."""
        _, sink = drive(A, [Request(0, 0.0, 20_000, 1)])
        expected = A.step_time(8192, 0) * 2 + A.step_time(20_000 - 2 * 8192, 0)
        assert sink.done[0].ttft == pytest.approx(expected)

    def test_api_overhead_is_added_to_ttft_and_e2e(self) -> None:
        """Profile B adds o = 65 ms to TTFT and E2E but not to the engine times."""
        slow = get_profile("8b-h100-slow")
        _, sink = drive(slow, [Request(0, 0.0, 200, 2)])
        request = sink.done[0]
        assert request.ttft == pytest.approx(slow.step_time(200, 0) + 0.065)
        assert request.e2e == pytest.approx(request.finish + 0.065)


class TestMacroSteps:
    """The event-driven replica equals a plain step-by-step loop."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_matches_reference_loop(self, seed: int) -> None:
        """Random arrivals and lengths: identical first-token and finish times."""
        rng = random.Random(seed)
        profile = replace(A, max_num_seqs=8, max_num_batched_tokens=1024)
        t = 0.0
        requests = []
        for rid in range(120):
            t += rng.expovariate(15.0)
            requests.append(Request(rid, t, rng.randint(1, 3000), rng.randint(1, 80)))
        expected = reference(
            profile, [Request(r.rid, r.arrival, r.prompt, r.output) for r in requests]
        )
        _, sink = drive(profile, requests)
        assert len(sink.done) == len(requests)
        for request in sink.done:
            first, finish = expected[request.rid]
            assert request.first_token == pytest.approx(first, rel=1e-9, abs=1e-9)
            assert request.finish == pytest.approx(finish, rel=1e-9, abs=1e-9)

    def test_counts_every_token(self) -> None:
        """Generation tokens and ITL observations add up exactly."""
        requests = [Request(i, i * 0.01, 100 + i, 50 + i) for i in range(30)]
        replica, sink = drive(A, requests)
        assert replica.generation_tokens == sum(r.output for r in requests)
        assert replica.itl_hist.count == sum(r.output - 1 for r in requests)
        assert sink.itl_weight == replica.itl_hist.count
        assert replica.success == 30
        assert replica.idle


class TestLimits:
    """max_num_seqs, KV blocks and preemption."""

    def test_running_never_exceeds_max_num_seqs(self) -> None:
        """With max_num_seqs=3, at most 3 requests run; the rest wait."""
        profile = replace(A, max_num_seqs=3)
        sink = Sink()
        replica = Replica(profile, sink)
        boundary = None
        for i in range(10):
            changed = replica.enqueue(Request(i, 0.0, 100, 100), 0.0)
            boundary = changed if changed is not None else boundary
        seen = 0
        while boundary is not None:
            assert len(replica.running) <= 3
            seen = max(seen, len(replica.running))
            boundary = replica.on_boundary()
        assert seen == 3
        assert len(sink.done) == 10

    def test_preemption_when_kv_runs_out(self) -> None:
        """A tiny KV cache forces recompute preemptions; every request still completes."""
        profile = replace(A, kv_blocks=40)  # 640 tokens
        requests = [Request(i, 0.0, 100, 300) for i in range(3)]
        replica, sink = drive(profile, requests)
        assert replica.preemptions_total > 0
        assert sorted(r.rid for r in sink.done) == [0, 1, 2]
        assert replica.generation_tokens == 900
        assert replica.kv_usage() == 0.0
        assert sum(r.preemptions for r in sink.done) == replica.preemptions_total

    def test_kv_usage_counts_blocks(self) -> None:
        """KV usage = blocks in use / capacity, blocks of 16 tokens."""
        profile = replace(A, kv_blocks=1000)
        sink = Sink()
        replica = Replica(profile, sink)
        boundary = replica.enqueue(Request(0, 0.0, 160, 100), 0.0)
        assert boundary is not None
        boundary = replica.on_boundary()  # prefill done: 161 tokens -> 11 blocks
        assert replica.kv_usage() == pytest.approx(11 / 1000)
        assert math.isfinite(boundary or math.nan)


def test_heap_tie_break_is_deterministic() -> None:
    """Two identical runs give identical finish times (no dependence on object ids)."""
    runs = []
    for _ in range(2):
        requests = [Request(i, 0.0, 50, 20) for i in range(20)]
        _, sink = drive(A, requests)
        runs.append([(r.rid, r.finish) for r in sink.done])
    assert runs[0] == runs[1]
