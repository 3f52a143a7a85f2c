"""SLO-native sizing of ``algorithm: llm``: the fewest replicas that carry the load within the SLO.

Called by :mod:`autoscaler.decision.core` once per tick for every ``algorithm: llm`` policy. It
reads the capacity signals the controller fetches for such a policy (``SIGNAL_*`` below: the
completion rate, requests waiting and running per pod, and the fleet's TTFT/ITL quantiles) and:

1. **measures arrivals**: completions are not arrivals (they cap at what the pods serve and run
   above the arrivals while a backlog drains), so ``arrivals = completions + growth of the
   requests held`` (waiting + running) over the rate window;
2. **learns capacity** (:mod:`autoscaler.decision.capacity`) from steady ticks only: the same
   ready count for a whole rate window plus a scrape (no pod started or left within it; pods
   still loading take no traffic and do not matter), arrivals that did not change by more than
   ``LOAD_CHANGE_RATIO`` within the window, and no backlog draining;
3. **forecasts** the arrivals one start-up time ahead (the learned start-up estimate): the
   trend of the last ``TREND_SECONDS`` (least squares), and once a whole day has been seen the
   day's shape (``DAY_BINS`` bins of the arrival rate, moving averages), and while the arrivals
   of the last ``ARRIVALS_KEPT_SECONDS`` came in recurring bursts (on/off traffic), their peak;
   the larger of the current rate and the forecasts is provisioned (never scale below what the
   next start-up time needs);
4. **adds headroom** for Poisson peaks over the decision interval:
   ``peak = rate + PEAK_Z x sqrt(rate / interval)``. Requests already waiting add nothing: they
   sit in the queues of the pods they were routed to (the server's scheduler queue), which a new
   replica cannot take over; they count only through the arrivals (the growth of the requests
   held) while they grow;
5. **proposes** ``ceil(peak / planned rate per replica)`` replicas, crediting pods that are
   starting (as every ``llm`` proposal does) — only for a policy with ``spec.slo``;
6. **floors** every ``llm`` policy (with or without ``slo``): the replicas needed to carry the
   arrivals measured now at the planned rate per replica. No signal combination may scale below
   it, which is what keeps a fleet whose KV cache and queue read near zero from collapsing.

Policies without ``spec.slo`` learn against implied objectives: their latency metrics' targets,
else :data:`~autoscaler.decision.resolved.IMPLIED_OBJECTIVES` (loose: the floor only stops a
collapse).
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import Any

from autoscaler.decision import capacity as cap
from autoscaler.decision.types import MetricObservation, PodSamples, TargetSample

SIGNAL_RATE = "__capacity_rate"
SIGNAL_WAITING = "__capacity_waiting"
SIGNAL_RUNNING = "__capacity_running"
SIGNAL_TTFT = "__capacity_ttft"
SIGNAL_ITL = "__capacity_itl"
SIGNAL_PROMPT_TOKENS = "__capacity_prompt_tokens"
SIGNAL_GENERATION_TOKENS = "__capacity_generation_tokens"
SIGNAL_WINDOW = 60.0
"""Rate window of the capacity signals (completions and latency histograms), seconds."""

PRIOR_MAX_STEP = 2.0
"""Before anything is learned, a violation asks for at most this factor of the ready pods."""
LOAD_CHANGE_RATIO = 1.5
"""Arrival estimates within one rate window further apart than this factor: the window mixes two
loads, so its latency cannot be attributed to either (not a sample)."""
SCRAPE_SLACK = 30.0
"""Seconds after a change of the ready count before a tick is steady again (beyond the window)."""
DRAINING_WAITING_PER_POD = 1.0

"""A backlog above this many waiting requests per ready pod that shrinks is 'draining'."""
TREND_SECONDS = 300.0
"""Arrival samples used for the trend, seconds."""
TREND_MIN_POINTS = 4
TREND_Z = 2.0
"""Standard errors taken off the trend's slope (a rise must stand out of the noise)."""
ARRIVALS_KEPT_SECONDS = 600.0
BURST_SHARE = 0.5
"""A point of the arrivals window at or above this share of its peak is part of a burst."""
RECURRING_BURSTS = 2
"""Bursts within the kept window that make their peak the forecast."""
RECURRING_SHARE = 0.75
"""Share of the recurring bursts' peak provisioned between them."""
TREND_MAX_FACTOR = 3.0
"""The trend forecast is capped at this x the current rate (a few noisy points)."""
DAY = 86_400.0
DAY_BINS = 144
"""Bins of the daily shape (10 minutes each)."""
DAY_EWMA = 0.2
"""Weight of a new tick in its bin's moving average."""
DAY_MAX_FACTOR = 2.0
PEAK_Z = 1.645
"""Poisson peak over the decision interval: mean + PEAK_Z standard deviations (95 %)."""
DEFAULT_INTERVAL = 15.0
MAX_INTERVAL = 60.0
"""Requests waiting now should be served within one start-up time plus this many seconds (the
extra pods asked for now serve from then on)."""
MIN_STARTUP_HORIZON = 30.0
LENGTH_SAMPLES = 5
"""Request-length measurements kept (their median is used)."""
LENGTH_MIN_SAMPLES = 3
"""Measurements needed before the request lengths are known."""
RECURRING_STARTUPS = 2.0
"""Pods arriving within this many start-up times of the previous arrival are a recurring burst:
they are held for the whole window (the next burst will need them)."""


@dataclass(frozen=True, slots=True)
class SloState:
    """State of the SLO sizing, persisted in the policy's ``History.capacity``."""

    model: cap.CapacityModel = field(default_factory=cap.CapacityModel)
    held: Sequence[float] = ()
    """(time, requests held: waiting + running) over the rate window (arrival estimate), as
    flat pairs (:func:`_points`)."""
    arrivals: Sequence[float] = ()
    """(time, arrival rate) over ``ARRIVALS_KEPT_SECONDS`` (trend), as flat pairs
    (:func:`_points`)."""
    day: Sequence[float] = ()
    """Daily shape: arrival rate per bin of the day (empty until the first tick). An array of
    doubles, replaced (never changed) at each tick: 8 bytes a bin, where a tuple held a float
    object of 24 more for every bin written since the start (all of them after a restart)."""
    first_seen: float | None = None
    ready: int = -1
    """Ready pods at the last tick."""
    steady_since: float = 0.0
    """Time since which the ready count has not changed and no pod was starting."""
    last_tick: float | None = None
    grown_at: float | None = None
    """When the ready count last grew (pods arrived), None before any growth."""
    grown_before: float | None = None
    """When it grew the time before (recurring bursts)."""
    ready_before: int = 0
    """Ready pods before the growth at ``grown_at``."""
    need_since_growth: float = 0.0
    """Most replicas needed (fractional) since ``grown_at``."""
    shrunk_at: float | None = None
    """When the ready count last fell (pods left: the requests they held left the sums)."""
    seed_contradicted: bool = False
    """A violation was seen below the (length-adjusted) profile seed: it is no longer used."""
    lengths: tuple[tuple[float, float], ...] = ()
    """Mean (prompt, output) tokens per request of the latest ``LENGTH_SAMPLES`` steady ticks
    with every objective met (token and completion counters over a whole window of one fleet
    and one load: at a load change or on an overloaded fleet the prompt tokens lead the
    completions and the ratio means nothing); their median is the fleet's request lengths."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``v`` is the format version).

        Version 2 keeps the windows and the daily shape as packed doubles (:func:`_pack`):
        written for a quarter of the policies on every tick, their ~220 floats as JSON numbers
        were most of the cost of saving a history. Version 1 (lists of numbers) is still read.
        """
        return {
            "v": 2,
            "model": self.model.to_json(),
            "held": _pack(self.held),
            "arrivals": _pack(self.arrivals),
            "day": _pack(self.day),
            "firstSeen": self.first_seen,
            "ready": self.ready,
            "steadySince": self.steady_since,
            "lastTick": self.last_tick,
            "grownAt": self.grown_at,
            "grownBefore": self.grown_before,
            "readyBefore": self.ready_before,
            "needSinceGrowth": self.need_since_growth,
            "shrunkAt": self.shrunk_at,
            "lengths": [list(p) for p in self.lengths],
            "seedContradicted": self.seed_contradicted,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SloState:
        """Rebuild from :meth:`to_json` output; raises ``ValueError``/``TypeError`` if malformed."""
        version = int(data.get("v", 1))
        if version not in {1, 2}:
            msg = f"unknown capacity state version {data.get('v')!r}"
            raise ValueError(msg)
        first = data.get("firstSeen")
        last = data.get("lastTick")
        if version == 1:
            bins = data.get("day", ())
            day: Sequence[float] = array("d", (float(v) for v in bins)) if bins else ()
            held = _flat((float(t), float(v)) for t, v in data.get("held", ()))
            arrivals = _flat((float(t), float(v)) for t, v in data.get("arrivals", ()))
        else:
            day = _unpack(data.get("day", ""), "day")
            held = _unpack(data.get("held", ""), "held", pairs=True)
            arrivals = _unpack(data.get("arrivals", ""), "arrivals", pairs=True)
        if day and len(day) != DAY_BINS:
            msg = f"daily shape has {len(day)} bins, expected {DAY_BINS}"
            raise ValueError(msg)
        return cls(
            model=cap.CapacityModel.from_json(dict(data.get("model", {}))),
            held=held,
            arrivals=arrivals,
            day=day,
            first_seen=None if first is None else float(first),
            ready=int(data.get("ready", -1)),
            steady_since=float(data.get("steadySince", 0.0)),
            last_tick=None if last is None else float(last),
            grown_at=_opt(data.get("grownAt")),
            grown_before=_opt(data.get("grownBefore")),
            ready_before=int(data.get("readyBefore", 0)),
            need_since_growth=float(data.get("needSinceGrowth", 0.0)),
            shrunk_at=_opt(data.get("shrunkAt")),
            seed_contradicted=bool(data.get("seedContradicted", False)),
            lengths=tuple(
                pair
                for pair in (cap.lengths_from_json(p) for p in data.get("lengths", ()))
                if pair is not None
            )[-LENGTH_SAMPLES:],
        )


def _points(pairs: Sequence[float]) -> list[tuple[float, float]]:
    """The (time, value) points of a window kept as flat pairs ``[t0, v0, t1, v1, ...]``.

    The state keeps its windows as arrays of doubles (16 bytes a point): a tuple of pairs held
    a tuple and a float object or two for each (~96 bytes; ~4 KB per policy for the 40 arrival
    points of a full window).
    """
    return list(zip(pairs[0::2], pairs[1::2], strict=True))


def _flat(pairs: Iterable[tuple[float, float]]) -> Sequence[float]:
    """(time, value) points as flat pairs (:func:`_points` reads them back); ``()`` if none."""
    values = array("d", chain.from_iterable(pairs))
    return values if values else ()


def _pack(values: Sequence[float]) -> str:
    """Doubles as base64 of their little-endian IEEE 754 bytes (:func:`_unpack` reads them).

    Exact, NaN and infinities included, and encoded in microseconds where JSON numbers took
    about half a microsecond each (their shortest decimal form).
    """
    packed = values if isinstance(values, array) else array("d", values)
    if sys.byteorder != "little":
        packed = array("d", packed)
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _unpack(text: object, what: str, *, pairs: bool = False) -> Sequence[float]:
    """The doubles :func:`_pack` wrote (``()`` if none); ``pairs``: an even count expected.

    Raises:
        ValueError: not base64 of whole doubles (or pairs); TypeError: not a string.
    """
    if not isinstance(text, str):
        msg = f"{what}: expected packed doubles (a string), got {type(text).__name__}"
        raise TypeError(msg)
    raw = base64.b64decode(text, validate=True)  # binascii.Error is a ValueError
    size = 16 if pairs else 8
    if len(raw) % size:
        msg = f"{what}: {len(raw)} bytes are not whole {'pairs of ' if pairs else ''}doubles"
        raise ValueError(msg)
    values = array("d")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values if values else ()


def _opt(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Fleet:
    """The pods as the capacity accounting sees them this tick."""

    ready: tuple[str, ...]
    starting: int
    """Starting pods (credited or suspected stuck)."""
    startup: float
    """Start-up estimate, seconds."""


@dataclass(frozen=True, slots=True)
class SloPlan:
    """One tick's sizing (the ``slo`` and ``capacity`` objects of the explanation)."""

    state: SloState
    estimate: cap.CapacityEstimate
    arrivals: float | None
    """Arrival rate now (requests/s), None without a rate signal."""
    forecast: float | None
    """Provisioned rate: max(now, trend, daily shape) over one start-up time."""
    peak: float | None
    waiting: float
    need: float | None
    """Replicas needed (fractional, before rounding up); None: cannot size."""
    floor: int | None
    """Replicas below which no metric may take the fleet (None: no floor this tick)."""
    steady: str
    """Why this tick was (not) a learning sample."""
    latencies: tuple[tuple[str, float, float, float | None], ...]
    """(objective, quantile, target, measured or None)."""
    trend: float | None
    daily: float | None
    recurring: float | None = None
    """Peak of the recurring bursts of the last ``ARRIVALS_KEPT_SECONDS`` (None: not bursty)."""
    late_pods: bool = False
    """The pods that arrived last were never needed since (the burst that asked for them ended
    before they were ready) and bursts do not recur: release them after a short window."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "arrivalsPerSecond": _r(self.arrivals),
            "forecastPerSecond": _r(self.forecast),
            "trendForecastPerSecond": _r(self.trend),
            "dailyForecastPerSecond": _r(self.daily),
            "recurringBurstsPerSecond": _r(self.recurring),
            "peakPerSecond": _r(self.peak),
            "waiting": _r(self.waiting),
            "replicasNeeded": _r(self.need),
            "floor": self.floor,
            "sample": self.steady,
            "objectives": [
                {"name": n, "quantile": q, "target": t, "measured": _r(v)}
                for n, q, t, v in self.latencies
            ],
            "learned": self.state.model.samples,
            "latePods": self.late_pods,
        }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _total(observation: MetricObservation | None) -> float | None:
    """Sum over pods (or the whole-target value); None without a signal."""
    if isinstance(observation, PodSamples):
        return float(sum(observation.values.values()))
    if isinstance(observation, TargetSample):
        return float(observation.value)
    return None


def _value(observation: MetricObservation | None) -> float | None:
    if isinstance(observation, TargetSample) and math.isfinite(observation.value):
        return float(observation.value)
    return None


def _growth(held: Sequence[tuple[float, float]], now: float, total: float) -> float:
    """Growth rate of the requests held over the rate window (0 without an old enough point)."""
    oldest = None
    for t, value in held:
        if now - t <= SIGNAL_WINDOW + 1e-9:
            oldest = (t, value)
            break
    if oldest is None or now - oldest[0] < 1.0:
        return 0.0
    return (total - oldest[1]) / (now - oldest[0])


def _trend(arrivals: Sequence[tuple[float, float]], now: float, horizon: float) -> float | None:
    """The recent arrival trend projected ``horizon`` seconds ahead (None: too few points).

    Least squares over the last ``TREND_SECONDS``; the slope used is its lower confidence bound
    (slope - TREND_Z standard errors, at least 0), so the noise of a flat load adds nothing and
    only a rise that the points support is provisioned ahead.
    """
    times: list[float] = []
    values: list[float] = []
    for t, v in arrivals:
        if now - t <= TREND_SECONDS:
            times.append(t)
            values.append(v)
    n = len(times)
    if n < TREND_MIN_POINTS:
        return None
    mean_t = sum(times) / n
    mean_v = sum(values) / n
    offsets = [t - mean_t for t in times]
    sxx = sum([d**2 for d in offsets])
    if sxx <= 0:
        return None
    slope = sum([d * (v - mean_v) for d, v in zip(offsets, values, strict=True)]) / sxx
    at_now = mean_v + slope * (now - mean_t)
    residual = sum([(v - (mean_v + slope * d)) ** 2 for d, v in zip(offsets, values, strict=True)])
    error = math.sqrt(residual / (n - 2) / sxx) if n > 2 else math.inf
    rising = max(0.0, slope - TREND_Z * error)
    return max(0.0, at_now + rising * horizon)


def _recurring(arrivals: Sequence[tuple[float, float]], now: float) -> float | None:
    """The highest arrival rate of the kept window when it came in two or more bursts, else None.

    A burst is a run of points at or above ``BURST_SHARE`` of the window's highest rate. On/off
    traffic (batch jobs, agents, code assistants) brings its bursts back within minutes; a fleet
    shrunk in the gap meets the next burst with a few pods, whose queues then hold it for minutes
    (waiting requests stay on the pod they were routed to). So while bursts recur, their peak is
    provisioned; one burst (a spike, a step) is left to the trend.
    """
    points = [v for t, v in arrivals if now - t <= ARRIVALS_KEPT_SECONDS]
    if not points:
        return None
    peak = max(points)
    if peak <= 0:
        return None
    bursts, inside = 0, False
    for value in points:
        high = value >= BURST_SHARE * peak
        if high and not inside:
            bursts += 1
        inside = high
    return RECURRING_SHARE * peak if bursts >= RECURRING_BURSTS else None


def _day_bin(t: float) -> float:
    return (t % DAY) / (DAY / DAY_BINS)


def _day_rate(day: Sequence[float], t: float) -> float:
    """The daily shape at time ``t`` (linear between bin centres)."""
    position = _day_bin(t) - 0.5
    low = math.floor(position)
    share = position - low
    return (1 - share) * day[low % DAY_BINS] + share * day[(low + 1) % DAY_BINS]


def _update_day(day: Sequence[float], now: float, rate: float) -> array[float]:
    """A new shape with the bin of ``now`` moved towards ``rate`` (``day`` is left as it is)."""
    if not day:
        return array("d", (rate,)) * DAY_BINS
    index = int(_day_bin(now)) % DAY_BINS
    bins = array("d", day)
    bins[index] = (1 - DAY_EWMA) * bins[index] + DAY_EWMA * rate
    return bins


def plan(  # noqa: PLR0917 - the tick's inputs, one call site
    state: SloState | None,
    metrics: Mapping[str, MetricObservation],
    fleet: Fleet,
    objectives: tuple[cap.Objective, ...],
    seed: float | None,
    seed_source: str,
    now: float,
    seed_lengths: tuple[float, float] | None = None,
) -> SloPlan:
    """Learn from this tick and size the fleet (see the module docstring).

    Args:
        state: The previous tick's state (None: first tick).
        metrics: The tick's observations (the ``SIGNAL_*`` names are read).
        fleet: Ready and starting pods, start-up estimate.
        objectives: The latency objectives sized for.
        seed: Per-replica capacity from the policy, or None.
        seed_source: ``spec`` or ``profile``.
        now: Current time, seconds.
        seed_lengths: Mean (prompt, output) tokens per request a profile seed was measured at.

    Returns:
        The sizing and the next state.
    """
    state = state or SloState()
    ready = len(fleet.ready)
    served = _total(metrics.get(SIGNAL_RATE))
    waiting = _total(metrics.get(SIGNAL_WAITING))
    running = _total(metrics.get(SIGNAL_RUNNING))
    latencies = tuple(
        (
            o.name,
            o.quantile,
            o.target,
            _value(metrics.get(SIGNAL_TTFT if o.name == "ttft" else SIGNAL_ITL)),
        )
        for o in objectives
    )

    # Steadiness: a changed ready count or a starting pod restarts the clock.
    steady_since = state.steady_since
    if ready != state.ready:
        steady_since = now
    shrunk_at = state.shrunk_at
    if 0 <= ready < state.ready:
        shrunk_at = now
    held_total = None if waiting is None else waiting + (running or 0.0)
    held_before = _points(state.held)
    held = state.held
    if held_total is not None:
        held = _flat(
            [
                *[p for p in held_before if now - p[0] <= SIGNAL_WINDOW + SCRAPE_SLACK],
                (now, held_total),
            ]
        )
    arrivals = None
    growth = _growth(held_before, now, held_total) if held_total is not None else 0.0
    if growth < 0 and shrunk_at is not None and now - shrunk_at < SIGNAL_WINDOW + SCRAPE_SLACK:
        # Pods left within the window: the requests they held left the sum with them, which is
        # not a drain. Counting it would read as fewer arrivals, size a smaller fleet, remove
        # more pods: a collapse. Arrivals are then at least the completions. (Pods that joined
        # take nothing out of the sum: a backlog draining then is a drain, and its completions
        # are not new arrivals.)
        growth = 0.0
    if served is not None:
        arrivals = max(0.0, served + growth)

    # Learning.
    model = state.model
    trail = _points(state.arrivals)
    steady = _steadiness(
        state,
        trail,
        ready,
        now,
        steady_since,
        served,
        waiting,
        growth,
        arrivals,
        latencies,
    )
    length_samples = state.lengths
    prompt_rate = _total(metrics.get(SIGNAL_PROMPT_TOKENS))
    generation_rate = _total(metrics.get(SIGNAL_GENERATION_TOKENS))
    if steady == "steady" and _all_met(latencies):
        measured = _lengths(served, prompt_rate, generation_rate)
        if measured is not None:
            length_samples = (*length_samples, measured)[-LENGTH_SAMPLES:]
    lengths = _median_lengths(length_samples)
    if steady in MET_ONLY_REASONS and served and ready and _all_met(latencies):
        # A met objective is safe evidence even from a mixed window: completions averaged over
        # idle time or a pod that just joined only understate the load that was carried.
        steady = "steady (met)"
    if steady.startswith("steady"):
        assert served is not None
        ratios = tuple((n, v / t) for n, _, t, v in latencies if v is not None)
        load = served / ready
        if max(ratio for _, ratio in ratios) > 1.0 and arrivals is not None:
            # Overloaded: the completions cap at what the pods serve; the load is the arrivals
            # (at most PRIOR_MAX_STEP x the completions: held counts jump when pods change).
            load = max(load, min(arrivals / ready, PRIOR_MAX_STEP * load))
        before = model.good
        model = cap.observe(model, cap.Sample(now, load, ratios, lengths))
        if before is not None and (model.good is None or model.good < before):
            # A capacity drop the evidence shows: the mix changed, so the lengths measured
            # before it are stale; measure them again.
            length_samples, lengths = (), None
    # A seed measured at known request lengths (a profile) while the servers' token counters
    # exist: it applies once the live lengths are measured (divided when they are longer), and
    # not at all once the fleet violated the SLO below it.
    contradicted = state.seed_contradicted
    seed_note = ""
    if seed is not None and seed_lengths is not None and not contradicted:
        factor, _ = cap.length_factor(lengths, seed_lengths)
        if model.bad is not None and model.bad < seed * factor:
            contradicted = True
        elif lengths is None and (prompt_rate is not None or generation_rate is not None):
            seed_note = (
                f"the {seed_source}'s {seed:.4g} req/s per replica was measured at "
                f"{seed_lengths[0]:.0f} in / {seed_lengths[1]:.0f} out tokens: used once the "
                "live request lengths are measured"
            )
    if contradicted and seed is not None and seed_lengths is not None:
        seed_note = f"the {seed_source}'s figure is contradicted by a violation below it"
    usable_seed = None if seed_note else seed
    estimate = cap.estimate(model, now, usable_seed, seed_source, lengths, seed_lengths)
    if seed_note:
        estimate = replace(estimate, note=f"{estimate.note}; {seed_note}")
    draining = (
        bool(ready) and (waiting or 0.0) / max(ready, 1) > DRAINING_WAITING_PER_POD and growth < 0
    )
    ratios_now = [v / t for _, _, t, v in latencies if v is not None]
    violated_now = bool(ratios_now) and max(ratios_now) > 1.0 + cap.VIOLATION_MARGIN
    # Nothing learned yet and the SLO is violated now: the load per replica now is more than a
    # replica carries. Completions cap at what the pods serve (a low figure for an overloaded
    # fleet); the arrivals count at most a doubling of the ready pods (windows mix at a burst).
    # Not while a backlog drains: it explains a violation by itself (it sits on the pods it was
    # routed to), so the load per ready replica says nothing then.
    if violated_now and ready and arrivals and estimate.planned is None and not draining:
        load_now = max((served or 0.0) / ready, arrivals / (PRIOR_MAX_STEP * ready))
        estimate = cap.prior_from_violation(load_now)

    # Forecast over one start-up time.
    horizon = max(MIN_STARTUP_HORIZON, fleet.startup)
    kept_trail = state.arrivals
    day = state.day
    first_seen = state.first_seen if state.first_seen is not None else now
    if arrivals is not None:
        trail = [*[p for p in trail if now - p[0] <= ARRIVALS_KEPT_SECONDS], (now, arrivals)]
        kept_trail = _flat(trail)
        day = _update_day(day, now, arrivals)
    trend = daily = recurring = forecast = peak = need = None
    floor: int | None = None
    planned = estimate.planned
    if arrivals is not None:
        # The first rate window after the policy is first seen fills its windows (a ramp).
        filled = first_seen + SIGNAL_WINDOW
        trend = _trend(tuple([p for p in trail if p[0] >= filled]), now, horizon)
        if trend is not None:
            trend = min(trend, TREND_MAX_FACTOR * arrivals + 1.0)
        if day and now - first_seen >= DAY:
            base = _day_rate(day, now)
            ahead = _day_rate(day, now + horizon)
            if base > 0:
                daily = arrivals * min(DAY_MAX_FACTOR, max(1.0, ahead / base))
        recurring = _recurring(trail, now)
        forecast = max(arrivals, trend or 0.0, daily or 0.0, recurring or 0.0)
        interval = DEFAULT_INTERVAL if state.last_tick is None else now - state.last_tick
        interval = min(MAX_INTERVAL, max(1.0, interval))
        peak = forecast + PEAK_Z * math.sqrt(forecast / interval)
        if planned is not None:
            need = peak / planned
            floor = math.ceil(arrivals / planned - 1e-9)
        elif ready and arrivals > 0:
            # Nothing known: the current load per replica is assumed to be what one carries.
            floor = ready
    # Pods that arrived after the burst that asked for them.
    grown_at, grown_before = state.grown_at, state.grown_before
    ready_before, need_since = state.ready_before, state.need_since_growth
    if state.ready >= 0 and ready > state.ready:
        if grown_at is None or now - grown_at > fleet.startup:
            grown_before, ready_before = grown_at, state.ready
        grown_at, need_since = now, need or 0.0
    else:
        need_since = max(need_since, need or 0.0)
    # Late: most of the pods that arrived are not needed (the need since they arrived fits in the
    # pods there before and at most half of the new ones). Isolated: no earlier growth within
    # RECURRING_STARTUPS start-up times, and the policy was watching long enough to know (a burst
    # early in its life may be one of a series).
    isolated_since = first_seen if grown_before is None else grown_before
    late = (
        grown_at is not None
        and now - grown_at < horizon
        and need_since <= (ready_before + ready) / 2
        and grown_at - isolated_since > RECURRING_STARTUPS * horizon
    )
    next_state = SloState(
        model=model,
        held=held,
        arrivals=kept_trail,
        day=day,
        first_seen=first_seen,
        ready=ready,
        steady_since=steady_since,
        last_tick=now,
        grown_at=grown_at,
        grown_before=grown_before,
        ready_before=ready_before,
        need_since_growth=need_since,
        shrunk_at=shrunk_at,
        lengths=length_samples,
        seed_contradicted=contradicted,
    )
    return SloPlan(
        state=next_state,
        estimate=estimate,
        arrivals=arrivals,
        forecast=forecast,
        peak=peak,
        waiting=waiting or 0.0,
        need=need,
        floor=floor,
        steady=steady,
        latencies=latencies,
        trend=trend,
        daily=daily,
        recurring=recurring,
        late_pods=late,
    )


MET_ONLY_REASONS = frozenset(
    {"pods started or left within the rate window", "load changing within the rate window"}
)
"""Reasons a tick is not a full sample that still let a tick with every objective met count."""


def _median_lengths(
    samples: tuple[tuple[float, float], ...],
) -> tuple[float, float] | None:
    """Per-dimension median of the length samples (None: fewer than ``LENGTH_MIN_SAMPLES``)."""
    if len(samples) < LENGTH_MIN_SAMPLES:
        return None
    prompts = sorted(p for p, _ in samples)
    outputs = sorted(o for _, o in samples)
    middle = len(samples) // 2
    if len(samples) % 2:
        return (prompts[middle], outputs[middle])
    return (
        (prompts[middle - 1] + prompts[middle]) / 2,
        (outputs[middle - 1] + outputs[middle]) / 2,
    )


def _lengths(
    served: float | None, prompt: float | None, generated: float | None
) -> tuple[float, float] | None:
    """Mean (prompt, output) tokens per request over the rate window, from the token and
    completion rates (None without both token counters or completions)."""
    if not served or served <= 0 or prompt is None or generated is None:
        return None
    if prompt <= 0 or generated <= 0:
        return None
    return (prompt / served, generated / served)


def _all_met(latencies: tuple[tuple[str, float, float, float | None], ...]) -> bool:
    return bool(latencies) and all(v is not None and v <= t for _, _, t, v in latencies)


def _steadiness(  # noqa: PLR0917 - one reason per rule
    state: SloState,
    trail: Sequence[tuple[float, float]],
    ready: int,
    now: float,
    steady_since: float,
    served: float | None,
    waiting: float | None,
    growth: float,
    arrivals: float | None,
    latencies: tuple[tuple[str, float, float, float | None], ...],
) -> str:
    """``steady`` when this tick is a learning sample, else why not (``trail``: the arrival
    points kept by the previous tick)."""
    if ready == 0:
        return "no ready pod"
    if state.ready == -1 or state.first_seen is None:
        return "first tick"
    if now - state.first_seen < SIGNAL_WINDOW + SCRAPE_SLACK:
        # Series may be younger than the window (new pods, a new policy): a rate over a window
        # the series only partly covers understates the load, and a fleet sized on that
        # understated figure is too large for as long as it takes to learn better.
        return "the first rate window since the policy appeared"
    if now - steady_since < SIGNAL_WINDOW + SCRAPE_SLACK:
        # A pod that started (or left) within the window: the window mixes two fleets.
        return "pods started or left within the rate window"
    if served is None or served <= 0:
        return "no completions"
    if waiting is None:
        return "no queue signal"
    if any(v is None for _, _, _, v in latencies):
        return "no latency signal"
    if waiting / ready > DRAINING_WAITING_PER_POD and growth < 0:
        return "backlog draining"
    if -growth * SIGNAL_WINDOW > DRAINING_WAITING_PER_POD * ready:
        # A backlog drained within the window: the requests that waited in it (on the pods they
        # were routed to) still set the window's latency quantiles, not this window's load.
        return "backlog drained within the rate window"
    recent = [v for t, v in trail if now - t <= SIGNAL_WINDOW]
    if recent and arrivals is not None:
        low, high = min(*recent, arrivals), max(*recent, arrivals)
        if high > LOAD_CHANGE_RATIO * max(low, 1e-9):
            return "load changing within the rate window"
    return "steady"


def with_model(state: SloState, model: cap.CapacityModel) -> SloState:
    """A copy of ``state`` with another capacity model (tests, seeding)."""
    return replace(state, model=model)
