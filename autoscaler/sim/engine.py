"""One simulated inference replica: continuous batching, chunked prefill, KV blocks, preemption.

This is the iteration-level model of serving.md §4 (vLLM V1 / NIM scheduling), made event-driven
so long traces replay quickly. Neighbours: :mod:`autoscaler.sim.profiles` gives the step-time
model and limits; :mod:`autoscaler.sim.fleet` routes requests to replicas, schedules their
boundary events on the global event heap and scrapes their counters for
:mod:`autoscaler.sim.metrics`.

Scheduling, per engine step (as vLLM V1 does it):

* every running request that has finished its prefill decodes one token (``D`` tokens);
* partially prefilled requests continue their prefill, then waiting requests are admitted FIFO
  while ``running < max_num_seqs``, the step's token budget (``max_num_batched_tokens``) has room
  and enough KV blocks are free for the prompt (chunked prefill: the last admitted request may get
  only part of its prompt this step);
* a decoding sequence takes a new KV block every :data:`~autoscaler.sim.profiles.BLOCK_SIZE`
  tokens; when none is free the newest running request is preempted (recompute: its blocks are
  freed and it goes back to the head of the queue, to prefill prompt + generated tokens again).

Speed: the batch only changes at admissions, prefill completions, finishes and preemptions. Between
those, a replica runs ``N`` identical decode steps whose duration is constant, so a whole stretch
is one *macro-step* computed in closed form: the next finish is the top of a heap keyed by the
decode-step counter at which each sequence ends, and KV growth over ``N`` steps is counted exactly
from a 16-slot histogram of the sequences' context lengths modulo the block size. An arrival in the
middle of a macro-step truncates it at the end of the step in progress (steps are atomic).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import deque
from typing import Protocol

from autoscaler.sim.profiles import BLOCK_SIZE, HardwareProfile

# Histogram bucket upper bounds (vLLM V1; the V0/NIM lists are subsets of these, serving.md §2.1).
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip
E2E_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

_IDLE = 0
_SINGLE = 1
_DECODE = 2


class Request:
    """One request's life on a replica; times are simulation seconds."""

    __slots__ = (
        "a",
        "arrival",
        "blocks",
        "e2e",
        "epoch",
        "extra",
        "finish",
        "first_token",
        "order",
        "output",
        "pod",
        "preemptions",
        "prefill_target",
        "prefilled",
        "prompt",
        "rid",
    )

    def __init__(self, rid: int, arrival: float, prompt: int, output: int) -> None:
        self.rid = rid
        self.arrival = arrival
        self.prompt = max(1, prompt)
        self.output = max(1, output)
        self.pod = -1
        self.prefill_target = self.prompt
        self.prefilled = 0
        self.blocks = 0
        self.a = 0
        """Decode offset: context tokens = ``a + decode counter`` while decoding."""
        self.epoch = 0
        """Bumped on preemption; invalidates heap entries of an earlier decode phase."""
        self.order = 0
        """Admission order on its replica (newest is preempted first)."""
        self.extra = 0.0
        """API overhead + front-end queueing added to TTFT and E2E, seconds."""
        self.first_token = math.nan
        self.finish = math.nan
        self.e2e = math.nan
        self.preemptions = 0

    @property
    def ttft(self) -> float:
        """Time to first token as the client sees it, seconds (NaN before the first token)."""
        return self.first_token - self.arrival + self.extra

    @property
    def tpot(self) -> float:
        """Mean inter-token latency of the request, seconds (NaN for one-token outputs)."""
        if self.output <= 1:
            return math.nan
        return (self.finish - self.first_token) / (self.output - 1)


class Sink(Protocol):
    """Receives fleet-wide observations (per-minute accounting in :mod:`autoscaler.sim.run`)."""

    def itl(self, t: float, dt: float, weight: int) -> None:
        """``weight`` inter-token intervals of ``dt`` seconds ended at ``t``."""
        ...

    def finished(self, request: Request) -> None:
        """A request produced its last token."""
        ...


class Histogram:
    """A Prometheus histogram's state: per-bucket counts (not cumulative), sum and count."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Observations per bucket; the last is ``(last bound, +Inf)``."""
        self.total = 0.0
        self.count = 0

    def observe(self, value: float, weight: int = 1) -> None:
        """Record ``weight`` observations of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.total += value * weight
        self.count += weight

    def cumulative(self) -> list[int]:
        """Cumulative counts per ``le`` bound, +Inf last (as exposed)."""
        out: list[int] = []
        running = 0
        for c in self.counts:
            running += c
            out.append(running)
        return out


class Replica:
    """The engine of one ready pod."""

    def __init__(self, profile: HardwareProfile, sink: Sink, tag: int = 0) -> None:
        self.profile = profile
        self._sink = sink
        self.tag = tag
        """Caller's identifier (the pod index in :mod:`autoscaler.sim.fleet`)."""
        self.load = 0
        """Outstanding requests (waiting + running), kept current for the balancer."""
        self.waiting: deque[Request] = deque()
        self.running: dict[int, Request] = {}
        """Admitted requests (prefilling or decoding) by admission order."""
        self.prefilling: list[Request] = []
        self._heap: list[tuple[int, int, int, Request]] = []
        self._phase = [0] * BLOCK_SIZE
        self._base = 0
        self._sum_a = 0
        self.decoders = 0
        self.counter = 0
        """Decode steps executed so far."""
        self.prefill_blocks = 0
        self._next_order = 0
        # plan of the work in progress
        self._kind = _IDLE
        self._t0 = 0.0
        self._dt = 0.0
        self._n = 0
        self.t_end = 0.0
        self._chunks: list[tuple[Request, int]] = []
        # exposed counters and histograms
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = 0
        self.preemptions_total = 0
        self.ttft_hist = Histogram(TTFT_BUCKETS)
        self.itl_hist = Histogram(ITL_BUCKETS)
        self.e2e_hist = Histogram(E2E_BUCKETS)
        self.busy_time = 0.0

    # ---- gauges -----------------------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        """Requests on this replica (waiting + running)."""
        return len(self.waiting) + len(self.running)

    @property
    def idle(self) -> bool:
        """No work at all."""
        return not self.waiting and not self.running

    def decoder_blocks(self, counter: int) -> int:
        """KV blocks held by decoding sequences at decode step ``counter``."""
        total = self._base
        phase = self._phase
        for p in range(BLOCK_SIZE):
            if phase[p]:
                total += phase[p] * ((p + counter + BLOCK_SIZE - 1) // BLOCK_SIZE)
        return total

    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (``gpu_cache_usage_perc``)."""
        used = self.prefill_blocks + self.decoder_blocks(self.counter)
        return min(1.0, used / self.profile.kv_blocks)

    # ---- events -----------------------------------------------------------------------------

    def enqueue(self, request: Request, now: float) -> float | None:
        """Queue ``request`` arriving at ``now``.

        Returns:
            The new boundary time if the plan changed (the caller reschedules), else None.
        """
        self.sync(now)
        profile = self.profile
        request.extra = profile.overhead + profile.frontend_per_running * len(self.running)
        self.waiting.append(request)
        self.load += 1
        if self._kind == _IDLE:
            self._t0 = now
            return self._plan()
        if self._kind == _DECODE and len(self.running) < self.profile.max_num_seqs:
            # Truncate the macro-step at the end of the step in progress at ``now``.
            in_progress = int((now - self._t0) / self._dt) + 1
            if in_progress < self._n:
                self._n = in_progress
                self.t_end = self._t0 + in_progress * self._dt
                return self.t_end
        return None

    def sync(self, now: float) -> None:
        """Account the decode steps of the current macro-step that ended by ``now``."""
        if self._kind != _DECODE or now <= self._t0:
            return
        done = min(self._n - 1, int((now - self._t0) / self._dt))
        if done > 0:
            self._run_decode(done)

    def on_boundary(self) -> float | None:
        """Finish the planned work (at ``t_end``) and plan the next; returns its end or None."""
        if self._kind == _DECODE:
            self._run_decode(self._n)
        elif self._kind == _SINGLE:
            self._run_single()
        self._finish_due()
        return self._plan()

    # ---- execution --------------------------------------------------------------------------

    def _run_decode(self, steps: int) -> None:
        dt = self._dt
        d = self.decoders
        self.counter += steps
        self._t0 += steps * dt
        self._n -= steps
        self.busy_time += steps * dt
        weight = steps * d
        self.generation_tokens += weight
        self.itl_hist.observe(dt, weight)
        self._sink.itl(self._t0, dt, weight)

    def _run_single(self) -> None:
        dt = self._dt
        t = self._t0 + dt
        self._t0 = t
        self.busy_time += dt
        d = self.decoders
        if d:
            self.counter += 1
            self.generation_tokens += d
            self.itl_hist.observe(dt, d)
            self._sink.itl(t, dt, d)
        for request, chunk in self._chunks:
            request.prefilled += chunk
            self.prompt_tokens += chunk
            if request.prefilled < request.prefill_target:
                continue
            self.prefilling.remove(request)
            self.prefill_blocks -= request.blocks
            request.blocks = 0
            if math.isnan(request.first_token):
                request.first_token = t
                self.ttft_hist.observe(t - request.arrival + request.extra)
            self.generation_tokens += 1
            generated = request.prefill_target - request.prompt + 1
            remaining = request.output - generated
            if remaining <= 0:
                self._complete(request, t)
            else:
                self._join_decode(request, request.prefill_target + 1, remaining)
        self._chunks = []

    def _join_decode(self, request: Request, context: int, remaining: int) -> None:
        a = context - self.counter
        p = a % BLOCK_SIZE
        request.a = a
        self._phase[p] += 1
        self._base += (a - p) // BLOCK_SIZE
        self._sum_a += a
        self.decoders += 1
        heapq.heappush(self._heap, (self.counter + remaining, request.rid, request.epoch, request))

    def _leave_decode(self, request: Request) -> None:
        a = request.a
        p = a % BLOCK_SIZE
        self._phase[p] -= 1
        self._base -= (a - p) // BLOCK_SIZE
        self._sum_a -= a
        self.decoders -= 1

    def _finish_due(self) -> None:
        heap = self._heap
        t = self._t0
        while heap:
            finish_at, _, epoch, request = heap[0]
            if epoch != request.epoch:
                heapq.heappop(heap)
                continue
            if finish_at > self.counter:
                break
            heapq.heappop(heap)
            self._leave_decode(request)
            self._complete(request, t)

    def _complete(self, request: Request, t: float) -> None:
        del self.running[request.order]
        self.load -= 1
        request.finish = t
        request.e2e = t - request.arrival + request.extra
        self.success += 1
        self.e2e_hist.observe(request.e2e)
        self._sink.finished(request)

    def _preempt_newest(self) -> None:
        order = next(reversed(self.running))
        request = self.running.pop(order)
        if request in self.prefilling:
            self.prefilling.remove(request)
            self.prefill_blocks -= request.blocks
            request.blocks = 0
            # Keep the tokens already computed before the preemption (from an earlier phase).
        else:
            context = request.a + self.counter
            self._leave_decode(request)
            request.epoch += 1
            request.prefill_target = context
        request.prefilled = 0
        request.preemptions += 1
        self.preemptions_total += 1
        self.waiting.appendleft(request)

    # ---- planning ---------------------------------------------------------------------------

    def _free_blocks(self, counter: int) -> int:
        return self.profile.kv_blocks - self.prefill_blocks - self.decoder_blocks(counter)

    def _free_lower_bound(self, counter: int) -> int:
        """A cheap lower bound of the free blocks at ``counter`` (O(1)).

        Each sequence holds ``ceil(ctx/16) <= ctx/16 + 1`` blocks, so the decoders hold at most
        ``(sum of contexts)/16 + D``; the exact count (16 terms) is only needed near capacity.
        """
        d = self.decoders
        upper = (self._sum_a + d * counter) // BLOCK_SIZE + d
        return self.profile.kv_blocks - self.prefill_blocks - upper

    def _can_admit(self) -> bool:
        if not self.waiting or len(self.running) >= self.profile.max_num_seqs:
            return False
        if self.decoders >= self.profile.max_num_batched_tokens:
            return False
        head = self.waiting[0]
        need = (head.prefill_target + BLOCK_SIZE) // BLOCK_SIZE
        if need <= self._free_lower_bound(self.counter + 1):
            return True
        return need <= self._free_blocks(self.counter + 1)

    def _plan(self) -> float | None:
        """Choose the next step (or macro-step) from the current state; returns its end."""
        while True:
            if self.prefilling or self._can_admit():
                if self._plan_single():
                    return self.t_end
                continue  # a preemption changed the state; plan again
            if self.decoders:
                if self._plan_decode():
                    return self.t_end
                continue
            if self.waiting and not self.running:
                # Nothing runs and the head still does not fit: it can never run here.
                # Admit it anyway over capacity rather than deadlock (prompt > KV cache).
                self._force_admit()
                continue
            self._kind = _IDLE
            self._n = 0
            self.t_end = self._t0
            return None

    def _force_admit(self) -> None:
        request = self.waiting.popleft()
        request.order = self._next_order
        self._next_order += 1
        self.running[request.order] = request
        self.prefilling.append(request)
        request.blocks = (request.prefill_target + BLOCK_SIZE) // BLOCK_SIZE
        self.prefill_blocks += request.blocks

    def _plan_single(self) -> bool:
        profile = self.profile
        d = self.decoders
        free = self._free_lower_bound(self.counter + 1)
        exact = False
        if free < 0:
            free = self._free_blocks(self.counter + 1)
            exact = True
            if d and free < 0:
                self._preempt_newest()
                return False
        budget = profile.max_num_batched_tokens - d
        chunks: list[tuple[Request, int]] = []
        prefill = 0
        for request in self.prefilling:
            if budget <= 0:
                break
            chunk = min(budget, request.prefill_target - request.prefilled)
            chunks.append((request, chunk))
            budget -= chunk
            prefill += chunk
        while budget > 0 and self.waiting and len(self.running) < profile.max_num_seqs:
            head = self.waiting[0]
            need = (head.prefill_target + BLOCK_SIZE) // BLOCK_SIZE
            if need > free and not exact:
                free = self._free_blocks(self.counter + 1)
                exact = True
            if need > free:
                break
            self.waiting.popleft()
            head.order = self._next_order
            self._next_order += 1
            self.running[head.order] = head
            self.prefilling.append(head)
            head.blocks = need
            self.prefill_blocks += need
            free -= need
            chunk = min(budget, head.prefill_target - head.prefilled)
            chunks.append((head, chunk))
            budget -= chunk
            prefill += chunk
        if not chunks:
            # Prefilling requests exist but the budget is all decode: a decode-only step.
            self._chunks = []
            self._kind = _SINGLE
            self._dt = profile.step_time(0, d, self._sum_a + d * self.counter)
            self.t_end = self._t0 + self._dt
            return True
        self._chunks = chunks
        self._kind = _SINGLE
        self._dt = profile.step_time(prefill, d, self._sum_a + d * self.counter)
        self.t_end = self._t0 + self._dt
        return True

    def _plan_decode(self) -> bool:
        heap = self._heap
        while heap[0][2] != heap[0][3].epoch:
            heapq.heappop(heap)
        n = heap[0][0] - self.counter
        d = self.decoders
        if d * ((n + BLOCK_SIZE - 1) // BLOCK_SIZE) > self._free_lower_bound(self.counter):
            free = self._free_blocks(self.counter)
            now_blocks = self.decoder_blocks(self.counter)
            if self.decoder_blocks(self.counter + n) - now_blocks > free:
                lo, hi = 0, n  # largest feasible step count in [lo, hi)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.decoder_blocks(self.counter + mid) - now_blocks <= free:
                        lo = mid
                    else:
                        hi = mid
                if lo == 0:
                    self._preempt_newest()
                    return False
                n = lo
        self._kind = _DECODE
        self._n = n
        self._dt = self.profile.step_time(0, d, self._sum_a + d * (self.counter + n / 2))
        self.t_end = self._t0 + n * self._dt
        return True
