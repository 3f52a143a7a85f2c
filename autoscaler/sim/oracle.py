"""The oracle: an offline lower bound (in spirit) on the GPU-hours needed to meet the SLO.

It knows every arrival in advance and the cold start, and provisions minute by minute exactly
what the load needs. ``simulate --output json`` reports it for the run's own trace, profile, SLO
and seed (``oracleGpuHours``, ``gpuHoursOverOracle``); the quality benchmark
(``benchmarks/quality/oracle.py``) uses the same code for every scenario. Computed in three steps:

1. **Per-replica SLO capacity** ``mu`` (requests/s), :func:`calibrate`: a fixed fleet of
   ``replicas`` pods of the profile (no autoscaler) serves Poisson arrivals at the load's own token
   lengths (a length spec, or (prompt, output) pairs resampled from the run's trace) for
   ``duration`` seconds; a geometric bisection finds the largest rate per replica at which at most
   ``tolerated`` of the measured minutes (after a one-minute warm-up) violate the SLO (the
   per-minute test of every run: the SLO quantile of TTFT and ITL under their objectives).
   Pooling over ``replicas`` pods, Poisson arrivals (smoother than replicated traces) and the
   lenient minute test all err towards *more* capacity per replica, i.e. fewer oracle replicas.
2. **Replicas per minute**: ``need[m] = max(1, ceil(rate[m] / mu))``, ``rate[m]`` the arrivals
   of minute ``m`` over its width.
3. **GPU-hours**, :func:`gpu_seconds`: replicas are interchangeable, so the cheapest schedule is
   found level by level: replica ``k`` is Ready during every minute with ``need >= k``; a gap
   between two such intervals is bridged (kept running) when it is shorter than the cold start,
   else the replica is removed and started again ``cold start`` seconds before it is needed
   (loading paid as GPU time). Replicas needed in minute 0 are Ready at t = 0 (as the simulator's
   initial pods). GPU-hours = (Ready time + loading time) x GPUs per pod.

Calibration costs ``steps`` simulator runs; :class:`CapacityCache` keeps the result per
(profile, lengths, SLO, calibration settings, seed) so one process never calibrates twice.
Neighbours: :mod:`autoscaler.sim.run` (the runs), :mod:`autoscaler.sim.load` (the probe loads).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.load import Workload, load_workload
from autoscaler.sim.profiles import HardwareProfile
from autoscaler.sim.run import (
    MINUTE,
    SimulationConfig,
    SimulationResult,
    SloTargets,
    run_simulation,
)

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Lengths:
    """Token lengths of the calibration load.

    Either ``spec``, options appended to the Poisson spec (``lengths=PATH`` or
    ``in=SPEC,out=SPEC``; empty: the simulator's defaults), or ``pairs``, (prompt, output) pairs
    that each probe resamples (the run's own trace).
    """

    spec: str = ""
    pairs: tuple[IntArray, IntArray] | None = None
    key: str = ""
    """Identity for caching and reports (the spec, or a digest of the pairs)."""

    @classmethod
    def of_spec(cls, spec: str) -> Lengths:
        """Lengths given as load-spec options."""
        return cls(spec=spec, key=spec)

    @classmethod
    def of_workload(cls, workload: Workload, until: float | None = None) -> Lengths:
        """The (prompt, output) pairs of the requests of ``workload`` arriving by ``until``."""
        keep = workload.arrivals <= until if until is not None else slice(None)
        prompt = np.ascontiguousarray(workload.prompt[keep], dtype=np.int64)
        output = np.ascontiguousarray(workload.output[keep], dtype=np.int64)
        digest = hashlib.sha256(prompt.tobytes() + b"/" + output.tobytes()).hexdigest()[:16]
        return cls(pairs=(prompt, output), key=f"pairs:{prompt.size}:{digest}")

    def describe(self) -> str:
        """Human-readable origin of the lengths."""
        if self.pairs is not None:
            return f"resampled from the run's {self.pairs[0].size} requests"
        return self.spec or "simulator defaults"


@dataclass(frozen=True, slots=True)
class Capacity:
    """A profile's SLO-compliant throughput per replica at some token lengths."""

    per_replica: float
    """Requests/s one replica serves within the SLO (pooled over ``replicas``)."""
    replicas: int
    """Fleet size of the calibration runs."""
    lengths: str
    """Origin of the calibration load's lengths (:meth:`Lengths.describe`)."""
    probes: tuple[tuple[float, int, int], ...]
    """(rate per replica, violating minutes, measured minutes) of every probe."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """Settings of :func:`calibrate` (the defaults are those of the full quality benchmark)."""

    replicas: int = 8
    """Fleet size of each probe."""
    duration: float = 300.0
    """Simulated seconds per probe."""
    tolerated: float = 0.2
    """Share of measured minutes allowed to violate the SLO."""
    lo: float = 0.2
    """Lower end of the search, requests/s per replica."""
    hi: float = 60.0
    """Upper end of the search, requests/s per replica."""
    steps: int = 9
    """Bisection steps (geometric)."""


def _probe_workload(lengths: Lengths, rate: float, duration: float, seed: int) -> Workload:
    spec = f"synthetic:poisson:rate={rate:.6g},duration={duration:g}"
    if lengths.spec:
        spec += f",{lengths.spec}"
    workload = load_workload(spec, seed=seed)
    if lengths.pairs is None:
        return workload
    prompt, output = lengths.pairs
    if prompt.size == 0:
        return workload
    pick = np.random.default_rng([seed, 11]).integers(0, prompt.size, len(workload))
    return replace(workload, prompt=prompt[pick], output=output[pick])


def _violations(  # noqa: PLR0917 - private; one call site passes the probe in order
    profile: HardwareProfile,
    slo: SloTargets,
    lengths: Lengths,
    rate: float,
    replicas: int,
    duration: float,
    seed: int,
) -> tuple[int, int]:
    workload = _probe_workload(lengths, rate * replicas, duration, seed)
    result = run_simulation(
        SimulationConfig(
            workload=workload,
            profile=profile,
            policy=None,
            seed=seed,
            initial_replicas=replicas,
            slo=slo,
            drain=60.0,
        )
    )
    measured = [r for r in result.rows[1:] if not math.isnan(r.ttft_p)]
    bad = sum(1 for r in measured if r.violates(slo))
    return bad, len(measured)


def calibrate(
    profile: HardwareProfile,
    slo: SloTargets,
    lengths: Lengths | str,
    settings: Calibration | None = None,
    *,
    seed: int = 0,
) -> Capacity:
    """Bisect the largest per-replica rate meeting the SLO (see the module docstring).

    Args:
        profile: hardware profile of the fleet.
        slo: the latency objectives.
        lengths: the calibration load's token lengths (a string is a length spec).
        settings: probe fleet, duration, tolerance and search range (default :class:`Calibration`).
        seed: seed of the probes' arrivals and lengths.

    Returns:
        The capacity and every probe made.
    """
    cal = settings or Calibration()
    source = Lengths.of_spec(lengths) if isinstance(lengths, str) else lengths
    lo, hi = cal.lo, cal.hi
    probes: list[tuple[float, int, int]] = []
    for _ in range(cal.steps):
        mid = math.sqrt(lo * hi)
        bad, total = _violations(profile, slo, source, mid, cal.replicas, cal.duration, seed)
        probes.append((round(mid, 4), bad, total))
        if total and bad <= cal.tolerated * total:
            lo = mid
        else:
            hi = mid
    return Capacity(lo, cal.replicas, source.describe(), tuple(probes))


@dataclass
class CapacityCache:
    """Calibrated capacities of this process, per (profile, lengths, SLO, settings, seed)."""

    _entries: dict[tuple[Any, ...], Capacity] = field(default_factory=dict)
    misses: int = 0
    """Calibrations actually run (the rest were served from the cache)."""

    def capacity(
        self,
        profile: HardwareProfile,
        slo: SloTargets,
        lengths: Lengths,
        settings: Calibration | None = None,
        *,
        seed: int = 0,
    ) -> Capacity:
        """The cached capacity, calibrating on the first request for a key."""
        cal = settings or Calibration()
        key = (profile, lengths.key, slo, cal, seed)
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            found = self._entries[key] = calibrate(profile, slo, lengths, cal, seed=seed)
        return found


def replicas_needed(rates: npt.NDArray[np.float64], per_replica: float) -> IntArray:
    """Fewest replicas per minute: ``max(1, ceil(rate / capacity))``."""
    need = np.ceil(rates / per_replica - 1e-9).astype(np.int64)
    return np.maximum(need, 1)


def gpu_seconds(
    need: IntArray, cold_start: float, minute: float = MINUTE, last: float | None = None
) -> float:
    """Replica-seconds of the cheapest schedule meeting ``need`` (multiply by GPUs per pod).

    Level by level: replica ``k`` is Ready over every minute with ``need >= k``; gaps shorter than
    the cold start are bridged, longer ones cost a fresh start (``cold_start`` seconds of loading)
    on the way back up. Levels present at minute 0 are Ready from the start at no loading cost.
    ``last``: width of the last minute when the run ends inside it (default: a whole minute).
    """
    total = 0.0
    if need.size == 0:
        return total
    widths = np.full(need.size, minute)
    if last is not None:
        widths[-1] = last
    ends_at = np.cumsum(widths)
    starts_at = ends_at - widths
    for level in range(1, int(need.max()) + 1):
        on = need >= level
        starts = np.flatnonzero(on & ~np.concatenate(([False], on[:-1])))
        ends = np.flatnonzero(on & ~np.concatenate((on[1:], [False]))) + 1
        previous_end: float | None = None
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            begin, finish = float(starts_at[start]), float(ends_at[end - 1])
            total += finish - begin
            if previous_end is None:
                if start > 0:
                    total += cold_start
            else:
                total += min(begin - previous_end, cold_start)
            previous_end = finish
    return total


@dataclass(frozen=True, slots=True)
class OraclePlan:
    """The oracle's replicas per minute and its cost."""

    need: tuple[int, ...]
    gpu_hours: float
    scale_events: int
    per_replica: float


def plan(
    rates: npt.NDArray[np.float64],
    per_replica: float,
    cold_start: float,
    gpus: int = 1,
    *,
    last: float | None = None,
) -> OraclePlan:
    """The oracle for per-minute arrival ``rates`` (requests/s) and a capacity per replica."""
    need = replicas_needed(rates, per_replica)
    changes = int(np.count_nonzero(np.diff(need))) if need.size > 1 else 0
    seconds = gpu_seconds(need, cold_start, last=last)
    return OraclePlan(tuple(int(x) for x in need), seconds * gpus / 3600.0, changes, per_replica)


def minute_rates(workload: Workload, duration: float) -> npt.NDArray[np.float64]:
    """Arrivals per second in each minute of the first ``duration`` seconds (by its width)."""
    minutes = max(1, math.ceil(duration / MINUTE))
    arrivals = workload.arrivals[workload.arrivals <= duration]
    index = np.minimum((arrivals // MINUTE).astype(np.int64), minutes - 1)
    counts = np.bincount(index, minlength=minutes)[:minutes].astype(np.float64)
    widths = np.full(minutes, MINUTE)
    widths[-1] = duration - (minutes - 1) * MINUTE
    rates: npt.NDArray[np.float64] = counts / np.maximum(widths, 1e-9)
    return rates


def mean_cold_start(cold: ColdStart) -> float:
    """Expected model-load time of a cold-start distribution, seconds."""
    if cold.kind == "uniform":
        return (cold.a + cold.b) / 2.0
    if cold.kind == "lognormal":
        return cold.a * math.exp(cold.b * cold.b / 2.0)
    return cold.a  # fixed, normal (its mean; the clip at 1 s is negligible)


@dataclass(frozen=True, slots=True)
class RunOracle:
    """The oracle of one simulation run."""

    capacity: Capacity
    plan: OraclePlan
    cold_start: float
    """Cold start it paid (the mean of the run's distribution), seconds."""

    def to_json(self, gpu_hours: float) -> dict[str, Any]:
        """The ``simulate --output json`` fields (``gpu_hours``: the run's own)."""
        oracle_hours = self.plan.gpu_hours
        return {
            "oracleGpuHours": round(oracle_hours, 6),
            "gpuHoursOverOracle": round(gpu_hours / oracle_hours, 4) if oracle_hours else None,
            "oracle": {
                "perReplicaRequestsPerSecond": round(self.capacity.per_replica, 4),
                "calibrationReplicas": self.capacity.replicas,
                "lengths": self.capacity.lengths,
                "coldStartSeconds": round(self.cold_start, 3),
                "peakReplicas": max(self.plan.need),
                "meanReplicas": round(sum(self.plan.need) / len(self.plan.need), 3),
                "scaleEvents": self.plan.scale_events,
                "probes": [
                    {"perReplica": rate, "violatingMinutes": bad, "measuredMinutes": total}
                    for rate, bad, total in self.capacity.probes
                ],
            },
        }


def run_oracle(
    cfg: SimulationConfig,
    cache: CapacityCache | None = None,
    settings: Calibration | None = None,
) -> RunOracle:
    """The oracle for a run's trace (arrivals and lengths), profile, SLO, cold start and seed."""
    duration = float(cfg.duration if cfg.duration is not None else cfg.workload.duration)
    lengths = Lengths.of_workload(cfg.workload, duration)
    store = cache if cache is not None else CapacityCache()
    capacity = store.capacity(cfg.profile, cfg.slo, lengths, settings, seed=cfg.seed)
    cold = mean_cold_start(cfg.cold_start or ColdStart.parse(cfg.profile.cold_start))
    rates = minute_rates(cfg.workload, duration)
    last = duration - (rates.size - 1) * MINUTE
    oracle_plan = plan(rates, capacity.per_replica, cold, cfg.profile.gpus, last=last)
    return RunOracle(capacity, oracle_plan, cold)


def with_oracle(result: SimulationResult, oracle: RunOracle) -> SimulationResult:
    """``result`` with the oracle's fields added to its summary (after ``gpuHours``)."""
    summary: dict[str, Any] = {}
    extra = oracle.to_json(float(result.summary["gpuHours"]))
    for key, value in result.summary.items():
        summary[key] = value
        if key == "gpuHours":
            summary.update(extra)
    summary.update({k: v for k, v in extra.items() if k not in summary})
    return replace(result, summary=summary)
