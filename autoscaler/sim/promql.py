"""PromQL ``rate`` for the simulated metric source.

Written after Prometheus' ``promql/functions.go`` (``extrapolatedRate``), so simulated rates
have the same window and extrapolation artefacts as the real pipeline. The quantile across pods
reuses :func:`autoscaler.metrics.quantile.histogram_quantile` (the controller's own
implementation of ``histogram_quantile``). Used by :mod:`autoscaler.sim.metrics`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def extrapolated_rate(
    times: FloatArray, values: FloatArray, eval_time: float, window: float
) -> FloatArray | None:
    """``rate(counter[window])`` at ``eval_time`` for one series or several aligned ones.

    Args:
        times: sample timestamps inside ``(eval_time - window, eval_time]``, increasing.
        values: counter values, shape ``(len(times),)`` or ``(len(times), series)``.
        eval_time: evaluation timestamp.
        window: range, seconds.

    Returns:
        Per-second rate(s), or None with fewer than two samples (PromQL returns no series).
    """
    n = times.size
    if n < 2:
        return None
    first = values[0]
    last = values[-1]
    # A counter reset (a drop) restarts from 0: add back the value before each drop.
    diffs = np.diff(values, axis=0)
    increase = last - first + np.where(diffs < 0, values[:-1], 0).sum(axis=0)
    sampled = float(times[-1] - times[0])
    if sampled <= 0:
        return None
    to_start = float(times[0] - (eval_time - window))
    to_end = float(eval_time - times[-1])
    average = sampled / (n - 1)
    threshold = average * 1.1
    if to_start >= threshold:
        to_start = average / 2
    if to_end >= threshold:
        to_end = average / 2
    increase = np.asarray(increase, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_zero = np.where(
            (increase > 0) & (np.asarray(first) >= 0), sampled * (first / increase), np.inf
        )
    start = np.minimum(to_zero, to_start)
    factor = (sampled + start + to_end) / sampled
    return np.asarray(increase * factor / window, dtype=np.float64)
