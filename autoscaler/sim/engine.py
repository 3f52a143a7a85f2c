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

The per-event work is kept small because long replays are millions of requests: observations are
appended to plain lists and folded into the histograms with numpy when they are read (scrapes),
a :class:`BulkSink` receives them in batches instead of one call per event, the step time of a
roofline decode step is cached per batch size, and the common planning paths are inlined.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from heapq import heappop, heappush
from typing import Final, Protocol, cast

import numpy as np
import numpy.typing as npt

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

DONE_COLUMNS = ("rid", "ttft", "tpot", "e2e", "first_token", "preemptions")
"""Columns of the finished-request rows a replica hands to :meth:`BulkSink.finished_many`."""
_DONE_WIDTH: Final = 6
assert len(DONE_COLUMNS) == _DONE_WIDTH

_IDLE: Final = 0
_SINGLE: Final = 1
_DECODE: Final = 2


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
        self.prompt = prompt if prompt > 1 else 1
        self.output = output if output > 1 else 1
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


class BulkSink(Protocol):
    """A sink that takes observations in batches (the fast path of long replays).

    A replica whose sink has these methods buffers its observations and hands them over when it
    is flushed (:meth:`Replica.flush`: on every sync, e.g. each scrape, and at the end of each
    :meth:`~autoscaler.sim.fleet.Fleet.run_until`) instead of calling ``itl`` / ``finished``
    once per event. The batch methods replace ``itl`` / ``finished``, which are then not called.
    """

    def itl_many(
        self, t: npt.NDArray[np.float64], dt: npt.NDArray[np.float64], weight: npt.NDArray[np.int64]
    ) -> None:
        """``weight[i]`` inter-token intervals of ``dt[i]`` seconds ended at ``t[i]``."""
        ...

    def finished_many(self, done: npt.NDArray[np.float64]) -> None:
        """Requests that produced their last token, one row each (in completion order).

        Columns (:data:`DONE_COLUMNS`): request id, TTFT, mean ITL (NaN for one-token outputs),
        E2E, first-token time, preemptions (ids and counts are exact in float64).
        """
        ...


class Histogram:
    """A Prometheus histogram's state: per-bucket counts (not cumulative), sum and count."""

    __slots__ = ("_np_bounds", "bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._np_bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = [0] * (len(bounds) + 1)
        """Observations per bucket; the last is ``(last bound, +Inf)``."""
        self.total = 0.0
        self.count = 0

    def observe(self, value: float, weight: int = 1) -> None:
        """Record ``weight`` observations of ``value``."""
        self.counts[bisect_left(self.bounds, value)] += weight
        self.total += value * weight
        self.count += weight

    def observe_many(
        self, values: npt.ArrayLike, weights: npt.NDArray[np.int64] | None = None
    ) -> None:
        """Record ``weights[i]`` (default 1) observations of ``values[i]``, in one go."""
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return
        index = np.searchsorted(self._np_bounds, v, side="left")  # == bisect_left
        size = len(self.counts)
        if weights is None:
            add = np.bincount(index, minlength=size)
            self.total += float(v.sum())
            self.count += int(v.size)
        else:
            add = np.bincount(index, weights=weights, minlength=size).astype(np.int64)
            self.total += float(v @ weights)
            self.count += int(weights.sum())
        counts = self.counts
        for i, c in enumerate(add.tolist()):
            counts[i] += c

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
        self._bulk: BulkSink | None = (
            cast("BulkSink", sink)
            if callable(getattr(sink, "itl_many", None))
            and callable(getattr(sink, "finished_many", None))
            else None
        )
        self.tag = tag
        """Caller's identifier (the pod index in :mod:`autoscaler.sim.fleet`)."""
        self.slot = -1
        """Caller's bookkeeping (position among the fleet's ready replicas, -1: none)."""
        self.load = 0
        """Outstanding requests (waiting + running), kept current for the balancer."""
        self.version = 0
        """Bumped when the plan changes; invalidates this replica's earlier boundary events."""
        self.draining = False
        """Its pod is terminating: it takes no new requests and goes once idle."""
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
        # profile constants, read on every event
        self._max_seqs = profile.max_num_seqs
        self._max_tokens = profile.max_num_batched_tokens
        self._kv_blocks = profile.kv_blocks
        self._overhead = profile.overhead
        self._frontend = profile.frontend_per_running
        self._m, self._k, self._b = profile.m, profile.k, profile.b
        self._decode_dt: dict[int, float] | None = None if profile.extended else {}
        """Decode-only step time by batch size (roofline: it depends on ``D`` only)."""
        # plan of the work in progress
        self._kind = _IDLE
        self._t0 = 0.0
        self._dt = 0.0
        self._n = 0
        self.t_end = 0.0
        self._chunks: list[tuple[Request, int, bool]] = []
        """(request, prefill tokens, listed in ``prefilling``) of the planned single step."""
        # exposed counters and histograms (observations buffered, see ``flush``)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = 0
        self.preemptions_total = 0
        self._ttft_hist = Histogram(TTFT_BUCKETS)
        self._itl_hist = Histogram(ITL_BUCKETS)
        self._e2e_hist = Histogram(E2E_BUCKETS)
        # (plain lists: appending to them is several times cheaper than to ``array.array``)
        self._itl_t: list[float] = []
        self._itl_dt: list[float] = []
        self._itl_w: list[int] = []
        self._ttft_buf: list[float] = []
        self._done: list[float] = []
        """Finished requests, :data:`DONE_COLUMNS` values flattened."""
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

    # ---- histograms (observations are buffered and folded in when read) ---------------------

    @property
    def ttft_hist(self) -> Histogram:
        """Time-to-first-token histogram (client view, seconds)."""
        self._fold()
        return self._ttft_hist

    @property
    def itl_hist(self) -> Histogram:
        """Inter-token latency histogram: one observation per decoded token after the first."""
        self._fold()
        return self._itl_hist

    @property
    def e2e_hist(self) -> Histogram:
        """End-to-end latency histogram (client view, seconds)."""
        self._fold()
        return self._e2e_hist

    def _fold(self) -> None:
        """Fold the buffered observations into the histograms and hand them to a bulk sink."""
        if self._itl_t:
            t = np.asarray(self._itl_t, dtype=np.float64)
            dt = np.asarray(self._itl_dt, dtype=np.float64)
            w = np.asarray(self._itl_w, dtype=np.int64)
            self._itl_t, self._itl_dt, self._itl_w = [], [], []
            self._itl_hist.observe_many(dt, w)
            if self._bulk is not None:
                self._bulk.itl_many(t, dt, w)
        if self._ttft_buf:
            self._ttft_hist.observe_many(np.asarray(self._ttft_buf, dtype=np.float64))
            self._ttft_buf = []
        if self._done:
            done = np.asarray(self._done, dtype=np.float64).reshape(-1, _DONE_WIDTH)
            self._done = []
            self._e2e_hist.observe_many(done[:, 3])
            if self._bulk is not None:
                self._bulk.finished_many(done)

    def flush(self) -> None:
        """Bring the histograms and a bulk sink up to date (cheap when nothing is buffered)."""
        if self._itl_t or self._ttft_buf or self._done:
            self._fold()

    # ---- events -----------------------------------------------------------------------------

    def enqueue(self, request: Request, now: float) -> float | None:
        """Queue ``request`` arriving at ``now``.

        Returns:
            The new boundary time if the plan changed (the caller reschedules), else None.
        """
        running = self.running
        request.extra = self._overhead + self._frontend * len(running)
        self.waiting.append(request)
        self.load += 1
        kind = self._kind
        if kind == _DECODE:
            if len(running) < self._max_seqs:
                # Truncate the macro-step at the end of the step in progress at ``now``.
                t0 = self._t0
                in_progress = int((now - t0) / self._dt) + 1 if now > t0 else 1
                if in_progress < self._n:
                    self._n = in_progress
                    self.t_end = t_end = t0 + in_progress * self._dt
                    return t_end
            return None
        if kind == _IDLE:
            self._t0 = now
            return self._plan()
        return None

    def sync(self, now: float) -> None:
        """Account the decode steps of the current macro-step that ended by ``now``."""
        if self._kind == _DECODE and now > self._t0:
            done = min(self._n - 1, int((now - self._t0) / self._dt))
            if done > 0:
                self._run_decode(done)
        self.flush()

    def on_boundary(self) -> float | None:
        """Finish the planned work (at ``t_end``) and plan the next; returns its end or None."""
        kind = self._kind
        if kind == _DECODE:
            n = self._n
            dt = self._dt
            weight = n * self.decoders
            t = self.t_end
            self._t0 = t
            self._n = 0
            self.counter += n
            self.busy_time += n * dt
            self.generation_tokens += weight
            self._itl_t.append(t)
            self._itl_dt.append(dt)
            self._itl_w.append(weight)
            if self._bulk is None:
                self._sink.itl(t, dt, weight)
        elif kind == _SINGLE:
            self._run_single()
        heap = self._heap
        if heap and heap[0][0] <= self.counter:
            self._finish_due()
        return self._plan()

    # ---- execution --------------------------------------------------------------------------

    def _run_decode(self, steps: int) -> None:
        dt = self._dt
        weight = steps * self.decoders
        self.counter += steps
        t = self._t0 + steps * dt
        self._t0 = t
        self._n -= steps
        self.busy_time += steps * dt
        self.generation_tokens += weight
        self._itl_t.append(t)
        self._itl_dt.append(dt)
        self._itl_w.append(weight)
        if self._bulk is None:
            self._sink.itl(t, dt, weight)

    def _run_single(self) -> None:
        dt = self._dt
        t = self.t_end
        self._t0 = t
        self.busy_time += dt
        d = self.decoders
        counter = self.counter
        if d:
            counter += 1
            self.counter = counter
            self.generation_tokens += d
            self._itl_t.append(t)
            self._itl_dt.append(dt)
            self._itl_w.append(d)
            if self._bulk is None:
                self._sink.itl(t, dt, d)
        prompt_tokens = 0
        continued = False
        for request, chunk, listed in self._chunks:
            prompt_tokens += chunk
            prefilled = request.prefilled + chunk
            request.prefilled = prefilled
            target = request.prefill_target
            if prefilled < target:
                continue
            if listed:
                continued = True  # drop it from ``prefilling`` below
            self.prefill_blocks -= request.blocks
            request.blocks = 0
            if request.first_token != request.first_token:  # NaN: first prefill completion
                request.first_token = t
                self._ttft_buf.append(t - request.arrival + request.extra)
            self.generation_tokens += 1
            remaining = request.output - (target - request.prompt + 1)
            if remaining <= 0:
                self._complete(request, t)
            else:
                # join the decoders: context tokens = a + decode counter
                a = target + 1 - counter
                p = a % BLOCK_SIZE
                request.a = a
                self._phase[p] += 1
                self._base += (a - p) // BLOCK_SIZE
                self._sum_a += a
                self.decoders += 1
                heappush(self._heap, (counter + remaining, request.rid, request.epoch, request))
        self.prompt_tokens += prompt_tokens
        if continued:
            self.prefilling = [r for r in self.prefilling if r.prefilled < r.prefill_target]
        self._chunks = []

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
        counter = self.counter
        phase = self._phase
        running = self.running
        done = self._done
        while heap:
            finish_at, _, epoch, request = heap[0]
            if epoch != request.epoch:
                heappop(heap)
                continue
            if finish_at > counter:
                break
            heappop(heap)
            # leave the decoders
            a = request.a
            p = a % BLOCK_SIZE
            phase[p] -= 1
            self._base -= (a - p) // BLOCK_SIZE
            self._sum_a -= a
            self.decoders -= 1
            # complete (as ``_complete``)
            del running[request.order]
            self.load -= 1
            request.finish = t
            first = request.first_token
            output = request.output
            request.e2e = e2e = t - request.arrival + request.extra
            self.success += 1
            done.extend(
                (
                    request.rid,
                    first - request.arrival + request.extra,
                    (t - first) / (output - 1) if output > 1 else math.nan,
                    e2e,
                    first,
                    request.preemptions,
                )
            )
            if self._bulk is None:
                self._sink.finished(request)

    def _complete(self, request: Request, t: float) -> None:
        del self.running[request.order]
        self.load -= 1
        request.finish = t
        first = request.first_token
        output = request.output
        request.e2e = e2e = t - request.arrival + request.extra
        self.success += 1
        self._done.extend(
            (
                request.rid,
                first - request.arrival + request.extra,
                (t - first) / (output - 1) if output > 1 else math.nan,
                e2e,
                first,
                request.preemptions,
            )
        )
        if self._bulk is None:
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
        return self._kv_blocks - self.prefill_blocks - self.decoder_blocks(counter)

    def _free_lower_bound(self, counter: int) -> int:
        """A cheap lower bound of the free blocks at ``counter`` (O(1)).

        Each sequence holds ``ceil(ctx/16) <= ctx/16 + 1`` blocks, so the decoders hold at most
        ``(sum of contexts)/16 + D``; the exact count (16 terms) is only needed near capacity.
        """
        d = self.decoders
        upper = (self._sum_a + d * counter) // BLOCK_SIZE + d
        return self._kv_blocks - self.prefill_blocks - upper

    def _plan(self) -> float | None:
        """Choose the next step (or macro-step) from the current state; returns its end."""
        while True:
            waiting = self.waiting
            d = self.decoders
            if self.prefilling or (
                waiting
                and len(self.running) < self._max_seqs
                and d < self._max_tokens
                and self._head_fits()
            ):
                if self._plan_single():
                    return self.t_end
                continue  # a preemption changed the state; plan again
            if d:
                # A decode macro-step up to the next finish (common case inline, KV checks in
                # ``_plan_decode`` when the cheap bound does not clear them).
                heap = self._heap
                top = heap[0]
                while top[2] != top[3].epoch:
                    heappop(heap)
                    top = heap[0]
                counter = self.counter
                n = top[0] - counter
                upper = (self._sum_a + d * counter) // BLOCK_SIZE + d
                if d * ((n + BLOCK_SIZE - 1) // BLOCK_SIZE) > (
                    self._kv_blocks - self.prefill_blocks - upper
                ):
                    if self._plan_decode():
                        return self.t_end
                    continue
                self._kind = _DECODE
                self._n = n
                cache = self._decode_dt
                if cache is None:
                    dt = self.profile.step_time(0, d, self._sum_a + d * (counter + n / 2))
                else:
                    cached = cache.get(d)
                    if cached is None:
                        cached = cache[d] = self.profile.step_time(0, d)
                    dt = cached
                self._dt = dt
                self.t_end = t_end = self._t0 + n * dt
                return t_end
            if waiting and not self.running:
                # Nothing runs and the head still does not fit: it can never run here.
                # Admit it anyway over capacity rather than deadlock (prompt > KV cache).
                self._force_admit()
                continue
            self._kind = _IDLE
            self._n = 0
            self.t_end = self._t0
            return None

    def _head_fits(self) -> bool:
        """The head of the queue has KV blocks for its prompt at the next step."""
        need = (self.waiting[0].prefill_target + BLOCK_SIZE) // BLOCK_SIZE
        d = self.decoders
        counter = self.counter + 1
        upper = (self._sum_a + d * counter) // BLOCK_SIZE + d
        if need <= self._kv_blocks - self.prefill_blocks - upper:
            return True
        return need <= self._free_blocks(counter)

    def _force_admit(self) -> None:
        request = self.waiting.popleft()
        request.order = self._next_order
        self._next_order += 1
        self.running[request.order] = request
        self.prefilling.append(request)
        request.blocks = (request.prefill_target + BLOCK_SIZE) // BLOCK_SIZE
        self.prefill_blocks += request.blocks

    def _plan_single(self) -> bool:
        d = self.decoders
        counter = self.counter + 1
        free = (
            self._kv_blocks
            - self.prefill_blocks
            - ((self._sum_a + d * counter) // BLOCK_SIZE + d)  # upper bound of decoder blocks
        )
        exact = False
        if free < 0:
            free = self._free_blocks(counter)
            exact = True
            if d and free < 0:
                self._preempt_newest()
                return False
        budget = self._max_tokens - d
        chunks: list[tuple[Request, int, bool]] = []
        prefill = 0
        for request in self.prefilling:
            if budget <= 0:
                break
            chunk = min(budget, request.prefill_target - request.prefilled)
            chunks.append((request, chunk, True))
            budget -= chunk
            prefill += chunk
        waiting = self.waiting
        running = self.running
        max_seqs = self._max_seqs
        while budget > 0 and waiting and len(running) < max_seqs:
            head = waiting[0]
            target = head.prefill_target
            need = (target + BLOCK_SIZE) // BLOCK_SIZE
            if need > free and not exact:
                free = self._free_blocks(counter)
                exact = True
            if need > free:
                break
            waiting.popleft()
            order = self._next_order
            head.order = order
            self._next_order = order + 1
            running[order] = head
            head.blocks = need
            self.prefill_blocks += need
            free -= need
            chunk = target - head.prefilled
            if chunk > budget:
                # chunked prefill: the rest in later steps
                self.prefilling.append(head)
                chunks.append((head, budget, True))
                prefill += budget
                break
            chunks.append((head, chunk, False))
            budget -= chunk
            prefill += chunk
        # No chunk: prefilling requests exist but the budget is all decode (a decode-only step).
        self._chunks = chunks
        self._kind = _SINGLE
        if self._decode_dt is None:
            dt = self.profile.step_time(prefill, d, self._sum_a + d * self.counter)
        else:  # roofline, inline: max(m + k*T, b*T)
            tokens = prefill + d
            memory = self._m + self._k * tokens
            compute = self._b * tokens
            dt = memory if memory > compute else compute
        self._dt = dt
        self.t_end = self._t0 + dt
        return True

    def _plan_decode(self) -> bool:
        heap = self._heap
        while heap[0][2] != heap[0][3].epoch:
            heappop(heap)
        counter = self.counter
        n = heap[0][0] - counter
        d = self.decoders
        if d * ((n + BLOCK_SIZE - 1) // BLOCK_SIZE) > self._free_lower_bound(counter):
            free = self._free_blocks(counter)
            now_blocks = self.decoder_blocks(counter)
            if self.decoder_blocks(counter + n) - now_blocks > free:
                lo, hi = 0, n  # largest feasible step count in [lo, hi)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.decoder_blocks(counter + mid) - now_blocks <= free:
                        lo = mid
                    else:
                        hi = mid
                if lo == 0:
                    self._preempt_newest()
                    return False
                n = lo
        self._kind = _DECODE
        self._n = n
        cache = self._decode_dt
        if cache is None:
            dt = self.profile.step_time(0, d, self._sum_a + d * (counter + n / 2))
        else:
            cached = cache.get(d)
            if cached is None:
                cached = cache[d] = self.profile.step_time(0, d)
            dt = cached
        self._dt = dt
        self.t_end = self._t0 + n * dt
        return True


BOUNDARY: Final = 0
"""Event kind of a replica boundary (end of a planned step or macro-step); the fleet's own
event kinds (scrapes, pod scheduling and readiness) are other integers."""


class FleetEvents(Protocol):
    """What :class:`EventLoop` hands back to its fleet (:class:`~autoscaler.sim.fleet.Fleet`)."""

    def on_event(self, kind: int, target: object, version: int) -> None:
        """A fleet event (not a replica boundary) is due at the loop's ``now``."""
        ...

    def on_drained(self, replica: Replica) -> None:
        """A draining replica has finished its last request (at the loop's ``now``)."""
        ...

    def route(self, request: Request) -> Replica | None:
        """Choose the replica of an arrival the loop does not route itself; None: held back."""
        ...

    def on_chunk_end(self) -> None:
        """The arrivals in the loop are used up; load the next chunk (or leave them empty)."""
        ...


class EventLoop:
    """The fleet's event heap and arrival stream: the hot loop of every replay.

    Arrivals come from plain lists (a chunk of the workload, refilled by the fleet); every other
    event is a heap entry ``(time, kind, sequence, target, version)`` processed in that order.
    Replica boundaries (``kind == BOUNDARY``, target a :class:`Replica`) and arrivals under the
    least-outstanding balancer are handled here; the rest goes back to the fleet through
    :class:`FleetEvents`. The ready replicas and their loads are lists shared with the fleet.
    """

    def __init__(self, events: FleetEvents, *, least: bool, chunk: int) -> None:
        self.events = events
        self.least = least
        """Route arrivals to the least outstanding ready replica (ties: the first)."""
        self.chunk = chunk
        """Size of a full arrival chunk (a shorter one is the last)."""
        self.heap: list[tuple[float, int, int, object, int]] = []
        self.seq = 0
        self.now = 0.0
        self.ready: list[Replica] = []
        self.loads: list[int] = []
        """Outstanding requests of each ready replica (``ready`` order)."""
        self.arrivals: list[float] = []
        self.prompts: list[int] = []
        self.outputs: list[int] = []
        self.base = 0
        """Workload index of ``arrivals[0]``."""
        self.next = 0
        """Workload index of the next arrival."""

    def push(self, t: float, kind: int, target: object, version: int) -> None:
        """Schedule an event."""
        self.seq += 1
        heappush(self.heap, (t, kind, self.seq, target, version))

    def run_until(self, t_stop: float) -> None:
        """Process every arrival and event up to and including ``t_stop``."""
        heap = self.heap
        arrivals = self.arrivals
        prompts = self.prompts
        outputs = self.outputs
        base = self.base
        n = len(arrivals)
        i = self.next - base
        least = self.least
        ready = self.ready
        loads = self.loads
        events = self.events
        inf = math.inf
        te = heap[0][0] if heap else inf
        while True:
            if i >= n:
                if n == self.chunk:
                    self.next = base + i
                    events.on_chunk_end()
                    arrivals = self.arrivals
                    prompts = self.prompts
                    outputs = self.outputs
                    base = self.base
                    n = len(arrivals)
                    i = 0
                    continue
                ta = inf
            else:
                ta = arrivals[i]
            if ta <= te:
                if ta > t_stop:
                    break
                request = Request(base + i, ta, prompts[i], outputs[i])
                i += 1
                count = len(ready)
                if count > 1 and least:
                    slot = loads.index(min(loads))
                    replica = ready[slot]
                elif count == 1:
                    slot = 0
                    replica = ready[0]
                else:
                    self.now = ta
                    routed = events.route(request)
                    if routed is None:
                        continue
                    replica = routed
                    slot = replica.slot
                request.pod = replica.tag
                t_end = replica.enqueue(request, ta)
                loads[slot] += 1
                if t_end is not None:
                    version = replica.version + 1
                    replica.version = version
                    self.seq += 1
                    heappush(heap, (t_end, BOUNDARY, self.seq, replica, version))
                    te = heap[0][0]
                continue
            if te > t_stop:
                break
            t, kind, _, target, version = heappop(heap)
            self.now = t
            if kind == BOUNDARY:
                engine = cast("Replica", target)
                if version == engine.version:
                    t_end = engine.on_boundary()
                    if engine.slot >= 0:
                        loads[engine.slot] = engine.load
                    if t_end is not None:
                        self.seq += 1
                        heappush(heap, (t_end, BOUNDARY, self.seq, engine, version))
                    elif engine.draining:
                        events.on_drained(engine)
            else:
                events.on_event(kind, target, version)
            te = heap[0][0] if heap else inf
        self.next = base + i
        self.now = t_stop
