"""The quality benchmark's oracle: the shipped :mod:`autoscaler.sim.oracle`, one implementation.

``simulate --output json`` reports the same oracle for a single run (``oracleGpuHours``); the
method is described in ``autoscaler/sim/oracle.py`` and ``docs/simulator.md``. This module keeps
the benchmark's keyword-style :func:`calibrate` and re-exports the rest.
"""

from __future__ import annotations

from autoscaler.sim import oracle as _oracle
from autoscaler.sim.oracle import (
    Calibration,
    Capacity,
    CapacityCache,
    Lengths,
    OraclePlan,
    gpu_seconds,
    plan,
    replicas_needed,
)
from autoscaler.sim.profiles import HardwareProfile
from autoscaler.sim.run import SloTargets

__all__ = [
    "Calibration",
    "Capacity",
    "CapacityCache",
    "Lengths",
    "OraclePlan",
    "calibrate",
    "gpu_seconds",
    "plan",
    "replicas_needed",
]


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
    """Per-replica SLO capacity at the length spec ``lengths`` (see ``autoscaler.sim.oracle``)."""
    settings = Calibration(replicas, duration, tolerated, lo, hi, steps)
    return _oracle.calibrate(profile, slo, lengths, settings, seed=seed)
