"""Loads of the scaling-quality benchmark, scaled to a fleet size through the oracle's capacity.

Every scenario is sized in *replicas of load*: its rate is multiplied so that its mean (or its
levels, for the synthetic ones) equals ``replicas x mu``, where ``mu`` is the per-replica SLO
capacity at the scenario's token lengths (:func:`benchmarks.quality.oracle.calibrate`). The
scaling actually applied is recorded with every result (``rateScale``, ``timeScale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoscaler.sim.load import Workload, load_workload, read_azure, read_servegen

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces"
"""``/work/shared/traces`` next to the repository (never copied into it)."""
CONV = "AzureLLMInferenceTrace_conv_2023.csv"
CODE = "AzureLLMInferenceTrace_code_2023.csv"
SERVEGEN = "servegen_m-large_aggregate_rate_10min.csv"
DAY = 86_400.0
DEFAULT_PROFILE = "8b-fp8-h100"
PROFILE_70B = "70b-fp8-h100-tp2"
RAG_LENGTHS = "in=lognormal:3000:0.6,out=lognormal:60:0.6"
"""Long prompts, short outputs (retrieval-augmented answers): 3x the default prompt median,
half its output. A load test at the default lengths would overstate the capacity ~6x."""
RAG_START = 9 * 3600.0
"""The long-prompt scenario replays the ServeGen day from 09:00 (a slice no other scenario uses)."""
QUICK_DAY_START = 81_600.0
"""Quick mode's ServeGen slice starts at 22:40 of day 1: the steepest rise of the day
(151 -> 415 req/s within 30 minutes in the raw rates)."""


class TracesMissing(FileNotFoundError):
    """The shared trace directory or one of its files is not there."""


def trace(name: str) -> Path:
    """Path of a shared trace; raises :class:`TracesMissing` with a clear message."""
    path = TRACES / name
    if not path.is_file():
        msg = (
            f"trace {name!r} not found in {TRACES}: the quality benchmark replays the public "
            "traces of shared/traces (see shared/traces/README.md); put them there first"
        )
        raise TracesMissing(msg)
    return path


@dataclass(frozen=True, slots=True)
class Scenario:
    """A load, the token lengths of its calibration, and how it is scaled."""

    name: str
    label: str
    lengths: str
    """Length options for the oracle's calibration (same distribution as the load)."""
    replicas: float
    """Mean (recorded traces, day) or level unit (synthetic) of the load, in replicas."""
    duration: float
    """Simulated seconds."""
    plot: bool = False
    """Draw this scenario's PNG."""
    profile: str = DEFAULT_PROFILE
    """Hardware profile of the simulated replicas (its capacity is calibrated like the rest)."""

    def workload(self, per_replica: float, seed: int) -> tuple[Workload, dict[str, float]]:
        """The load at this scenario's size for a per-replica capacity, and its scaling."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class RecordedTrace(Scenario):
    """An Azure trace replayed as recorded, each request kept floor/ceil(x) times (jittered)."""

    file: str = CONV

    def workload(self, per_replica: float, seed: int) -> tuple[Workload, dict[str, float]]:
        """See :class:`Scenario`."""
        times, _, _ = read_azure(trace(self.file))
        mean = times.size / float(times[-1] - times[0])
        scale = self.replicas * per_replica / mean
        wl = load_workload(str(trace(self.file)), seed=seed, rate_scale=scale)
        if wl.duration > self.duration:
            wl = load_workload(
                str(trace(self.file)), seed=seed, rate_scale=scale, duration=self.duration
            )
        return wl, {"rateScale": round(scale, 4), "timeScale": 1.0}


@dataclass(frozen=True, slots=True)
class ServeGenDay(Scenario):
    """The ServeGen m-large daily shape (day 1), Poisson per 10-minute window."""

    start: float = 0.0
    """Seconds into the trace (before time scaling)."""
    time_scale: float = 1.0
    """Play the day this many times faster (1: real time)."""

    def workload(self, per_replica: float, seed: int) -> tuple[Workload, dict[str, float]]:
        """See :class:`Scenario`."""
        starts, rates = read_servegen(trace(SERVEGEN))
        day_mean = float(rates[starts < DAY].mean())
        # Compressing time keeps the requests, so it multiplies the rate by ``time_scale``.
        scale = self.replicas * per_replica / day_mean / self.time_scale
        spec = f"{trace(SERVEGEN)}#start={self.start:g}"
        if self.lengths:
            spec += f",{self.lengths}"
        wl = load_workload(
            spec,
            seed=seed,
            rate_scale=scale,
            time_scale=self.time_scale,
            duration=self.duration,
        )
        return wl, {"rateScale": round(scale, 4), "timeScale": self.time_scale}


@dataclass(frozen=True, slots=True)
class Synthetic(Scenario):
    """A synthetic load; ``spec`` has ``{mu}``-relative levels written as ``R*`` multipliers."""

    kind: str = "step"
    levels: tuple[float, ...] = ()
    """Rates in replicas of load (step: each level; spike: base, peak)."""
    every: float = 600.0
    """Step length (step) or spike start (spike), seconds."""
    width: float = 300.0
    """Spike width, seconds."""

    def workload(self, per_replica: float, seed: int) -> tuple[Workload, dict[str, float]]:
        """See :class:`Scenario`."""
        rates = [level * self.replicas * per_replica for level in self.levels]
        if self.kind == "step":
            spec = (
                f"synthetic:step:rates={'/'.join(f'{r:.4g}' for r in rates)},every={self.every:g}"
            )
        else:
            base, peak = rates
            spec = (
                f"synthetic:spike:base={base:.4g},peak={peak:.4g},at={self.every:g},"
                f"width={self.width:g},duration={self.duration:g}"
            )
        if self.lengths:
            spec += f",{self.lengths}"
        wl = load_workload(spec, seed=seed, duration=self.duration)
        return wl, {"rateScale": 1.0, "timeScale": 1.0}


def scenarios(quick: bool) -> list[Scenario]:
    """The reported scenarios (quick: shorter slices, half the fleet)."""
    conv = f"lengths={trace(CONV)}"
    code = f"lengths={trace(CODE)}"
    size = 5.0 if quick else 10.0
    span = 1200.0 if quick else 3600.0
    step_every = 300.0 if quick else 600.0
    if quick:
        day: Scenario = ServeGenDay(
            "servegen-day",
            "ServeGen m-large, 1-hour slice from 22:40 of day 1 (steepest rise), real time",
            "",
            replicas=4.0,
            duration=3600.0,
            plot=True,
            start=QUICK_DAY_START,
        )
    else:
        day = ServeGenDay(
            "servegen-day",
            "ServeGen m-large day 1 (24 h) compressed 4x into 6 h",
            "",
            replicas=8.0,
            duration=DAY / 4,
            plot=True,
            time_scale=4.0,
        )
    return [
        RecordedTrace(
            "azure-conv",
            f"Azure conv 2023, {'first 20 min' if quick else 'whole trace (58 min)'}",
            conv,
            replicas=size,
            duration=span,
            plot=True,
            file=CONV,
        ),
        RecordedTrace(
            "azure-code",
            f"Azure code 2023 (bursty on/off), {'first 20 min' if quick else 'whole trace'}",
            code,
            replicas=size,
            duration=span,
            plot=True,
            file=CODE,
        ),
        day,
        Synthetic(
            "step",
            "synthetic steps 2/6/10/3 replicas of load (Poisson, conv-like lengths)",
            "",
            replicas=size / 5.0,
            duration=4 * step_every,
            plot=True,
            kind="step",
            levels=(2.0, 6.0, 10.0, 3.0),
            every=step_every,
        ),
        ServeGenDay(
            "long-prompt",
            "long prompts, short outputs (RAG-like, "
            f"{RAG_LENGTHS.replace(',', ' ')}), ServeGen m-large from 09:00, real time, "
            f"{'1 hour' if quick else '3 hours'}",
            RAG_LENGTHS,
            replicas=size,
            duration=3600.0 if quick else 3 * 3600.0,
            plot=True,
            start=RAG_START,
        ),
        RecordedTrace(
            "azure-conv-70b",
            f"Azure conv 2023 on Llama-3.1-70B FP8 (2 x H100, TP2), "
            f"{'first 20 min' if quick else 'whole trace (58 min)'}",
            conv,
            replicas=size,
            duration=span,
            plot=True,
            profile=PROFILE_70B,
            file=CONV,
        ),
        Synthetic(
            "spike",
            "synthetic spike 3 -> 12 replicas of load for 5 min (Poisson, conv-like lengths)",
            "",
            replicas=size / 5.0,
            duration=1200.0 if quick else 1800.0,
            plot=True,
            kind="spike",
            levels=(3.0, 12.0),
            every=300.0 if quick else 600.0,
            width=300.0,
        ),
    ]


def minute_rates(workload: Workload, minutes: int) -> np.ndarray:
    """Arrivals per second in each minute of the run (the oracle's input)."""
    counts = np.bincount((workload.arrivals // 60.0).astype(np.int64), minlength=minutes)
    return counts[:minutes].astype(np.float64) / 60.0
