"""The oracle: an offline lower bound on the GPU-hours needed to meet the SLO.

It knows the future load and the cold start. Computed the same way for every scenario:

1. **Per-replica SLO capacity** ``mu`` (requests/s): a fixed fleet of ``replicas`` pods of the
   scenario's profile (no autoscaler) serves Poisson arrivals with the scenario's own token
   lengths (resampled from its trace, or its synthetic length specs) for ``duration`` seconds; a
   bisection finds the largest rate per replica at which at most ``tolerated`` of the measured
   minutes (after a one-minute warm-up) violate the SLO (the same per-minute test as the
   contenders: p95 TTFT and p95 ITL under their objectives). Pooling over ``replicas`` pods and
   the lenient minute test both err towards *more* capacity per replica, i.e. fewer oracle
   replicas: the oracle stays a lower bound in spirit.
2. **Replicas per minute**: ``need[m] = max(1, ceil(rate[m] / mu))`` with ``rate[m]`` the
   scenario's arrivals in minute ``m``.
3. **GPU-hours**: replicas are interchangeable, so the cheapest schedule is found level by level:
   replica ``k`` must be Ready during every minute with ``need >= k``; a gap between two such
   intervals is bridged (kept running) when it is shorter than the cold start, else the replica is
   removed and started again ``cold start`` seconds before it is needed (loading time paid as
   GPU time). Replicas needed in minute 0 are Ready at t = 0 (as the simulator's initial pods).
   GPU-hours = (Ready time + loading time) x GPUs per pod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoscaler.sim.load import load_workload
from autoscaler.sim.profiles import HardwareProfile
from autoscaler.sim.run import SimulationConfig, SloTargets, run_simulation

MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class Capacity:
    """A profile's SLO-compliant throughput per replica at some token lengths."""

    per_replica: float
    """Requests/s one replica serves within the SLO (pooled over ``replicas``)."""
    replicas: int
    """Fleet size of the calibration runs."""
    lengths: str
    """Length options of the calibration load (``lengths=TRACE`` or ``in=...,out=...``)."""
    probes: tuple[tuple[float, int, int], ...]
    """(rate per replica, violating minutes, measured minutes) of every probe."""


def _violations(  # noqa: PLR0917 - private; one call site passes the probe in order
    profile: HardwareProfile,
    slo: SloTargets,
    lengths: str,
    rate: float,
    replicas: int,
    duration: float,
    seed: int,
) -> tuple[int, int]:
    spec = f"synthetic:poisson:rate={rate * replicas:.6g},duration={duration:g}"
    if lengths:
        spec += f",{lengths}"
    workload = load_workload(spec, seed=seed)
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
    lengths: str,
    *,
    replicas: int = 8,
    duration: float = 300.0,
    tolerated: float = 0.2,
    seed: int = 0,
    lo: float = 0.2,
    hi: float = 60.0,
    steps: int = 9,
) -> Capacity:
    """Bisect the largest per-replica rate meeting the SLO (see the module docstring).

    Args:
        profile: hardware profile of the scenario.
        slo: the scenario's latency objectives.
        lengths: length options appended to the Poisson spec (``lengths=PATH`` or
            ``in=SPEC,out=SPEC``; empty: the simulator's defaults).
        replicas: fleet size of each probe.
        duration: simulated seconds per probe.
        tolerated: share of measured minutes allowed to violate the SLO.
        seed: seed of the probes' arrivals and lengths.
        lo: lower end of the search, requests/s per replica.
        hi: upper end of the search, requests/s per replica.
        steps: bisection steps (geometric).

    Returns:
        The capacity and every probe made.
    """
    probes: list[tuple[float, int, int]] = []
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        bad, total = _violations(profile, slo, lengths, mid, replicas, duration, seed)
        probes.append((round(mid, 4), bad, total))
        if total and bad <= tolerated * total:
            lo = mid
        else:
            hi = mid
    return Capacity(lo, replicas, lengths, tuple(probes))


def replicas_needed(rates: npt.NDArray[np.float64], per_replica: float) -> npt.NDArray[np.int64]:
    """Fewest replicas per minute: ``max(1, ceil(rate / capacity))``."""
    need = np.ceil(rates / per_replica - 1e-9).astype(np.int64)
    return np.maximum(need, 1)


def gpu_seconds(need: npt.NDArray[np.int64], cold_start: float, minute: float = MINUTE) -> float:
    """GPU-seconds of the cheapest schedule meeting ``need`` (one GPU per replica).

    Level by level: replica ``k`` is Ready over every minute with ``need >= k``; gaps shorter than
    the cold start are bridged, longer ones cost a fresh start (``cold_start`` seconds of loading)
    on the way back up. Levels present at minute 0 are Ready from the start at no loading cost.
    """
    total = 0.0
    if need.size == 0:
        return total
    for level in range(1, int(need.max()) + 1):
        on = need >= level
        starts = np.flatnonzero(on & ~np.concatenate(([False], on[:-1])))
        ends = np.flatnonzero(on & ~np.concatenate((on[1:], [False]))) + 1
        previous_end: int | None = None
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            total += (end - start) * minute
            if previous_end is None:
                if start > 0:
                    total += cold_start
            else:
                gap = (start - previous_end) * minute
                total += min(gap, cold_start)
            previous_end = end
    return total


@dataclass(frozen=True, slots=True)
class OraclePlan:
    """The oracle's replicas per minute and its cost."""

    need: tuple[int, ...]
    gpu_hours: float
    scale_events: int
    per_replica: float


def plan(
    rates: npt.NDArray[np.float64], per_replica: float, cold_start: float, gpus: int = 1
) -> OraclePlan:
    """The oracle for per-minute arrival ``rates`` (requests/s) and a capacity per replica."""
    need = replicas_needed(rates, per_replica)
    changes = int(np.count_nonzero(np.diff(need))) if need.size > 1 else 0
    seconds = gpu_seconds(need, cold_start)
    return OraclePlan(tuple(int(x) for x in need), seconds * gpus / 3600.0, changes, per_replica)
