"""Request load for the simulator: trace readers, synthetic specs, rate scaling, time compression.

A :class:`Workload` is three aligned numpy arrays (arrival time in seconds from 0, prompt tokens,
output tokens) and a description. :func:`load_workload` turns a spec string into one, seeded:

* a file path, format detected from its content (the files in ``shared/traces``):
  Azure LLM inference CSV (``TIMESTAMP,ContextTokens,GeneratedTokens``), Mooncake JSONL
  (``timestamp`` in ms, ``input_length``, ``output_length``), ServeGen aggregate rates
  (``window_start_s,agg_rate_rps``; arrivals are synthesised per window);
  options follow a ``#``: ``PATH#cv=2,in=...,out=...,lengths=PATH,start=S``;
* ``synthetic:KIND:key=value,...`` (grammar in ``docs/simulator.md``): ``poisson``/``constant``,
  ``diurnal``, ``step``, ``spike``, ``onoff``.

Arrivals from rates are a renewal process (Poisson, or Gamma with coefficient of variation ``cv``)
mapped through the cumulative intensity, so rate changes never restart the process. Used by
:mod:`autoscaler.sim.run`; the traces are read from a path, never copied into the repository.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_IN = "lognormal:1020:0.7"
"""Default prompt length spec (median of the Azure conv trace, serving.md / traces README)."""
DEFAULT_OUT = "lognormal:129:0.9"
"""Default output length spec (median of the Azure conv trace)."""
MAX_TOKENS = 131_072


class LoadSpecError(ValueError):
    """A load spec or trace file that cannot be read; the message names the part at fault."""


@dataclass(frozen=True, slots=True)
class Workload:
    """Requests to replay: arrival times (s, sorted, from 0) and token lengths."""

    arrivals: FloatArray
    prompt: IntArray
    output: IntArray
    description: str
    duration: float
    """Length of the load, seconds (at least the last arrival)."""

    def __len__(self) -> int:
        return int(self.arrivals.size)

    def rate_per_window(self, window: float = 60.0) -> FloatArray:
        """Arrival rate (req/s) in consecutive windows of ``window`` seconds."""
        bins = max(1, math.ceil(self.duration / window))
        counts = np.bincount((self.arrivals // window).astype(np.int64), minlength=bins)
        return counts[:bins].astype(np.float64) / window


# --------------------------------------------------------------------------------------------
# Token length distributions
# --------------------------------------------------------------------------------------------

LengthSampler = Callable[[np.random.Generator, int], IntArray]


def parse_length(spec: str) -> LengthSampler:
    """A token length sampler: ``N``, ``exp:MEAN``, ``uniform:A:B`` or ``lognormal:MED:SIGMA``."""
    parts = spec.split(":")
    try:
        if len(parts) == 1:
            fixed = int(parts[0])
            if fixed < 1:
                raise ValueError(spec)
            return lambda rng, n: np.full(n, fixed, dtype=np.int64)
        kind, args = parts[0], [float(x) for x in parts[1:]]
    except ValueError as exc:
        msg = f"bad token length {spec!r}: expected N, exp:MEAN, uniform:A:B or lognormal:MED:SIG"
        raise LoadSpecError(msg) from exc
    if kind == "exp" and len(args) == 1 and args[0] > 0:
        mean = args[0]
        return lambda rng, n: _clip(rng.exponential(mean, n))
    if kind == "uniform" and len(args) == 2 and 1 <= args[0] <= args[1]:
        lo, hi = int(args[0]), int(args[1])
        return lambda rng, n: rng.integers(lo, hi + 1, n).astype(np.int64)
    if kind == "lognormal" and len(args) == 2 and args[0] > 0 and args[1] >= 0:
        median, sigma = args
        return lambda rng, n: _clip(rng.lognormal(math.log(median), sigma, n))
    msg = f"bad token length {spec!r}: expected N, exp:MEAN, uniform:A:B or lognormal:MED:SIG"
    raise LoadSpecError(msg)


def _clip(values: FloatArray) -> IntArray:
    return np.clip(np.rint(values), 1, MAX_TOKENS).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Trace readers
# --------------------------------------------------------------------------------------------


def _parse_azure_time(text: str) -> float:
    # '2023-11-16 18:17:03.9799600': 7 fractional digits, more than strptime's %f takes.
    head, _, frac = text.strip().partition(".")
    base = datetime.strptime(head, "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 - naive, differences only
    return base.timestamp() + (float("0." + frac) if frac else 0.0)


def read_azure(path: Path, limit: int | None = None) -> tuple[FloatArray, IntArray, IntArray]:
    """Azure LLM inference trace: (seconds from the first request, context, generated tokens)."""
    times: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != [
            "TIMESTAMP",
            "ContextTokens",
            "GeneratedTokens",
        ]:
            msg = f"{path}: not an Azure trace (header {header!r})"
            raise LoadSpecError(msg)
        for line, row in enumerate(reader, start=2):
            if limit is not None and len(times) >= limit:
                break
            try:
                times.append(_parse_azure_time(row[0]))
                prompt.append(int(row[1]))
                output.append(int(row[2]))
            except (ValueError, IndexError) as exc:
                msg = f"{path}:{line}: bad row {row!r}: {exc}"
                raise LoadSpecError(msg) from exc
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t = t[order] - (t.min() if t.size else 0.0)
    return t, np.asarray(prompt, np.int64)[order], np.asarray(output, np.int64)[order]


def read_mooncake(path: Path, limit: int | None = None) -> tuple[FloatArray, IntArray, IntArray]:
    """Mooncake JSONL trace: (seconds from the first request, input, output tokens)."""
    times: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    with path.open() as handle:
        for line_no, line in enumerate(handle, start=1):
            if limit is not None and len(times) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                times.append(float(record["timestamp"]) / 1000.0)
                prompt.append(int(record["input_length"]))
                output.append(int(record["output_length"]))
            except (ValueError, KeyError, TypeError) as exc:
                msg = f"{path}:{line_no}: bad Mooncake record: {exc}"
                raise LoadSpecError(msg) from exc
    t = np.asarray(times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t = t[order] - (t.min() if t.size else 0.0)
    return t, np.asarray(prompt, np.int64)[order], np.asarray(output, np.int64)[order]


def read_servegen(path: Path, limit: int | None = None) -> tuple[FloatArray, FloatArray]:
    """ServeGen aggregate rates: (window start seconds, rate req/s) per 10-minute window."""
    starts: list[float] = []
    rates: list[float] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["window_start_s", "agg_rate_rps"]:
            msg = f"{path}: not a ServeGen rate file (header {header!r})"
            raise LoadSpecError(msg)
        for line, row in enumerate(reader, start=2):
            if limit is not None and len(starts) >= limit:
                break
            try:
                starts.append(float(row[0]))
                rates.append(float(row[1]))
            except (ValueError, IndexError) as exc:
                msg = f"{path}:{line}: bad row {row!r}: {exc}"
                raise LoadSpecError(msg) from exc
    return np.asarray(starts, np.float64), np.asarray(rates, np.float64)


def detect_format(path: Path) -> str:
    """``azure``, ``mooncake`` or ``servegen`` from the file's first line."""
    try:
        with path.open() as handle:
            first = handle.readline().strip()
    except OSError as exc:
        msg = f"cannot read trace {path}: {exc}"
        raise LoadSpecError(msg) from exc
    if first.startswith("TIMESTAMP"):
        return "azure"
    if first.startswith("window_start_s"):
        return "servegen"
    if first.startswith("{"):
        return "mooncake"
    msg = f"{path}: unknown trace format (first line {first[:60]!r})"
    raise LoadSpecError(msg)


# --------------------------------------------------------------------------------------------
# Arrivals from a rate function
# --------------------------------------------------------------------------------------------


def arrivals_from_rates(
    edges: FloatArray, rates: FloatArray, rng: np.random.Generator, cv: float = 1.0
) -> FloatArray:
    """Arrival times of a renewal process with a piecewise-constant rate.

    Args:
        edges: window boundaries, seconds (``len(rates) + 1`` increasing values).
        rates: rate in each window, requests/second (>= 0).
        rng: the seeded generator.
        cv: coefficient of variation of the inter-arrival times (1: Poisson; > 1: burstier,
            Gamma distributed).
    """
    if cv <= 0:
        msg = f"cv must be > 0, got {cv}"
        raise LoadSpecError(msg)
    widths = np.diff(edges)
    cumulative = np.concatenate(([0.0], np.cumsum(np.maximum(rates, 0.0) * widths)))
    total = float(cumulative[-1])
    if total <= 0:
        return np.empty(0, np.float64)
    shape = 1.0 / (cv * cv)
    points: list[FloatArray] = []
    last = 0.0
    while last < total:
        n = int(total - last + 6.0 * math.sqrt(total - last) * max(cv, 1.0) + 16)
        steps = rng.gamma(shape, 1.0 / shape, n)
        chunk = last + np.cumsum(steps)
        points.append(chunk)
        last = float(chunk[-1])
    unit = np.concatenate(points)
    unit = unit[unit < total]
    return np.interp(unit, cumulative, edges)


# --------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------


def _options(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            msg = f"bad option {part!r}: expected key=value"
            raise LoadSpecError(msg)
        out[key.strip()] = value.strip()
    return out


def _float(options: dict[str, str], key: str, default: float | None = None) -> float:
    if key not in options:
        if default is None:
            msg = f"missing option {key}="
            raise LoadSpecError(msg)
        return default
    try:
        return float(options.pop(key))
    except ValueError as exc:
        msg = f"option {key}= must be a number"
        raise LoadSpecError(msg) from exc


def _synthetic_rates(
    kind: str, options: dict[str, str], duration: float | None
) -> tuple[FloatArray, FloatArray, float]:
    """(edges, rates, duration) of a synthetic load kind; consumes its options."""
    if kind in ("poisson", "constant"):
        rate = _float(options, "rate")
        length = _float(options, "duration", duration or 600.0)
        return np.array([0.0, length]), np.array([rate]), length
    if kind == "step":
        raw = options.pop("rates", "")
        every = _float(options, "every", 300.0)
        try:
            levels = [float(x) for x in raw.split("/") if x]
        except ValueError as exc:
            msg = f"step rates= must be numbers separated by '/', got {raw!r}"
            raise LoadSpecError(msg) from exc
        if not levels:
            msg = "step needs rates=R1/R2/..."
            raise LoadSpecError(msg)
        edges = np.arange(len(levels) + 1, dtype=np.float64) * every
        return edges, np.asarray(levels, np.float64), float(edges[-1])
    if kind == "spike":
        base = _float(options, "base")
        peak = _float(options, "peak")
        at = _float(options, "at", 300.0)
        width = _float(options, "width", 60.0)
        length = _float(options, "duration", duration or at + width + 300.0)
        edges = np.array([0.0, at, at + width, max(length, at + width)])
        return edges, np.array([base, peak, base]), float(edges[-1])
    if kind == "onoff":
        rate = _float(options, "rate")
        on = _float(options, "on", 60.0)
        off = _float(options, "off", 120.0)
        length = _float(options, "duration", duration or 1800.0)
        cycles = math.ceil(length / (on + off))
        edges_list = [0.0]
        rates_list: list[float] = []
        for _ in range(cycles):
            edges_list += [edges_list[-1] + on, edges_list[-1] + on + off]
            rates_list += [rate, 0.0]
        return np.asarray(edges_list), np.asarray(rates_list), length
    if kind == "diurnal":
        mean = _float(options, "mean")
        amplitude = _float(options, "amplitude", 0.5)
        period = _float(options, "period", 86_400.0)
        phase = _float(options, "phase", 0.0)
        length = _float(options, "duration", duration or period)
        step = max(1.0, period / 1440.0)
        edges = np.arange(0.0, length + step, step)
        mids = edges[:-1] + step / 2
        rates = mean * (1.0 - amplitude * np.cos(2 * math.pi * (mids - phase) / period))
        return edges, np.maximum(rates, 0.0), length
    msg = f"unknown synthetic load kind {kind!r} (poisson, constant, step, spike, onoff, diurnal)"
    raise LoadSpecError(msg)


def _cut(edges: FloatArray, rates: FloatArray, end: float) -> tuple[FloatArray, FloatArray]:
    """The rate function restricted to ``[0, end)``."""
    inside = int(np.searchsorted(edges, end, side="left"))
    if inside >= edges.size:
        return edges, rates
    inside = max(inside, 1)
    return np.concatenate((edges[:inside], [end])), rates[:inside]


def _scale_recorded(
    times: FloatArray,
    prompt: IntArray,
    output: IntArray,
    rate_scale: float,
    rng: np.random.Generator,
) -> tuple[FloatArray, IntArray, IntArray]:
    """Thin (scale < 1) or replicate (scale > 1) recorded requests; copies are jittered ±0.5 s."""
    if rate_scale == 1.0:
        return times, prompt, output
    whole = math.floor(rate_scale)
    frac = rate_scale - whole
    copies = np.full(times.size, whole, dtype=np.int64) + (rng.random(times.size) < frac)
    index = np.repeat(np.arange(times.size), copies)
    first = np.ones(index.size, dtype=bool)
    first[1:] = index[1:] != index[:-1]
    jitter = np.where(first, 0.0, rng.uniform(-0.5, 0.5, index.size))
    t = np.maximum(times[index] + jitter, 0.0)
    order = np.argsort(t, kind="stable")
    return t[order], prompt[index][order], output[index][order]


def load_workload(
    spec: str,
    *,
    seed: int = 0,
    rate_scale: float = 1.0,
    time_scale: float = 1.0,
    duration: float | None = None,
    limit: int | None = None,
) -> Workload:
    """Build the workload named by ``spec`` (a trace path or ``synthetic:...``), seeded.

    Args:
        spec: ``PATH[#options]`` or ``synthetic:KIND:options``.
        seed: seeds every random choice (same seed, same workload, bit for bit).
        rate_scale: multiply the arrival rate (recorded traces: thin or replicate requests).
        time_scale: play the load this many times faster (durations shrink, rates grow).
        duration: keep only the first ``duration`` seconds (after time scaling).
        limit: read at most this many lines/windows of a trace file (tests).
    """
    if rate_scale <= 0 or time_scale <= 0:
        msg = f"rate_scale and time_scale must be > 0 (got {rate_scale}, {time_scale})"
        raise LoadSpecError(msg)
    rng = np.random.default_rng(seed)
    if spec.startswith("synthetic:"):
        _, _, rest = spec.partition(":")
        kind, _, opts = rest.partition(":")
        options = _options(opts)
        native = duration * time_scale if duration is not None else None
        edges, rates, length = _synthetic_rates(kind, options, native)
        times, prompt, output = _from_rates(edges, rates, options, rng, rate_scale)
        description = f"{spec}"
    else:
        path_text, _, opts = spec.partition("#")
        path = Path(path_text)
        options = _options(opts)
        fmt = detect_format(path)
        if fmt == "servegen":
            starts, window_rates = read_servegen(path, limit)
            start = _float(options, "start", 0.0)
            if starts.size == 0:
                msg = f"{path}: no rate windows"
                raise LoadSpecError(msg)
            width = float(starts[1] - starts[0]) if starts.size > 1 else 600.0
            edges = np.concatenate((starts, [starts[-1] + width])) - start
            keep = edges[1:] > 0
            edges = np.concatenate(([max(edges[0], 0.0)], edges[1:][keep]))
            edges[0] = 0.0
            window_rates = window_rates[keep]
            if duration is not None:
                edges, window_rates = _cut(edges, window_rates, duration * time_scale)
            times, prompt, output = _from_rates(edges, window_rates, options, rng, rate_scale)
            length = float(edges[-1])
        else:
            reader = read_azure if fmt == "azure" else read_mooncake
            times, prompt, output = reader(path, limit)
            times, prompt, output = _scale_recorded(times, prompt, output, rate_scale, rng)
            length = float(times[-1]) if times.size else 0.0
        if options:
            msg = f"unknown option(s) for {fmt} trace: {', '.join(sorted(options))}"
            raise LoadSpecError(msg)
        description = f"{path.name} ({fmt})"
    times = times / time_scale
    length = length / time_scale
    if duration is not None:
        keep = times < duration
        times, prompt, output = times[keep], prompt[keep], output[keep]
        length = duration
    if rate_scale != 1.0:
        description += f", rate x{rate_scale:g}"
    if time_scale != 1.0:
        description += f", time /{time_scale:g}"
    return Workload(times, prompt, output, description, max(length, float(times[-1:].sum())))


def _from_rates(
    edges: FloatArray,
    rates: FloatArray,
    options: dict[str, str],
    rng: np.random.Generator,
    rate_scale: float,
) -> tuple[FloatArray, IntArray, IntArray]:
    cv = _float(options, "cv", 1.0)
    lengths = options.pop("lengths", None)
    in_spec = options.pop("in", DEFAULT_IN)
    out_spec = options.pop("out", DEFAULT_OUT)
    if options:
        msg = f"unknown option(s): {', '.join(sorted(options))}"
        raise LoadSpecError(msg)
    times = arrivals_from_rates(edges, rates * rate_scale, rng, cv)
    n = times.size
    if lengths is not None:
        path = Path(lengths)
        reader = read_azure if detect_format(path) == "azure" else read_mooncake
        _, source_in, source_out = reader(path)
        if source_in.size == 0:
            msg = f"{path}: no requests to sample lengths from"
            raise LoadSpecError(msg)
        pick = rng.integers(0, source_in.size, n)
        return times, source_in[pick], source_out[pick]
    return times, parse_length(in_spec)(rng, n), parse_length(out_spec)(rng, n)
