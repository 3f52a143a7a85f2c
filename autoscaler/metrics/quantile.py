"""Quantiles of a scale target's latency from its pods' histogram buckets (pure, numpy).

:mod:`autoscaler.metrics.prometheus` fetches, in one batched query, the per-pod bucket rates
``sum by (namespace, pod, le) (rate(<name>_bucket[w]))``; this module sums them over the pods of
one target and computes the quantile exactly as Prometheus's ``histogram_quantile`` does
(``promql/quantile.go``, ``bucketQuantile`` of Prometheus 2.x), so the value equals
``histogram_quantile(q, sum by (le) (rate(<name>_bucket{pod=~"<the target's pods>"}[w])))``:

* buckets sorted by upper bound; buckets with the same bound are merged;
* the highest bucket must be ``+Inf``, otherwise NaN;
* cumulative counts are made monotonic (a lower count after a higher one is raised to it);
* fewer than 2 buckets, or a total count of 0, gives NaN;
* linear interpolation inside the bucket holding the rank; the lowest bucket starts at 0
  (unless its upper bound is <= 0, then that bound is returned);
* a rank that falls in the ``+Inf`` bucket returns the upper bound of the last finite bucket.

NaN is "no signal" for the caller (zero traffic has no latency), never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt


def parse_le(value: str) -> float:
    """The upper bound of a bucket from its ``le`` label (``"0.05"``, ``"+Inf"``).

    Raises:
        ValueError: The label is not a number.
    """
    return float(value)


def histogram_quantile(
    q: float, upper_bounds: npt.ArrayLike, cumulative_counts: npt.ArrayLike
) -> float:
    """The ``q`` quantile of one cumulative histogram, as PromQL ``histogram_quantile``.

    Args:
        q: The quantile (0..1; below 0 gives -Inf and above 1 +Inf, as Prometheus).
        upper_bounds: Bucket upper bounds (``le``), in any order, one of them ``+Inf``.
        cumulative_counts: Cumulative count (or rate) of each bucket, aligned with
            ``upper_bounds``.

    Returns:
        The quantile, or NaN when it is undefined (no ``+Inf`` bucket, fewer than 2 buckets,
        zero total count, NaN ``q``).
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    counts = np.asarray(cumulative_counts, dtype=np.float64)
    if bounds.shape != counts.shape or bounds.ndim != 1:
        msg = "upper_bounds and cumulative_counts must be 1-D and of equal length"
        raise ValueError(msg)
    if bounds.size == 0:
        return math.nan
    order = np.argsort(bounds, kind="stable")
    bounds = bounds[order]
    counts = counts[order]
    if not (math.isinf(bounds[-1]) and bounds[-1] > 0):
        return math.nan
    # Merge buckets with equal upper bounds (Prometheus coalesceBuckets). The bounds are sorted
    # and hold no NaN (it sorts last, and the last one is +Inf), so equal bounds are neighbours:
    # np.unique, several times the cost of the rest, runs only when there are some.
    if bool((bounds[1:] == bounds[:-1]).any()):
        unique_bounds, inverse = np.unique(bounds, return_inverse=True)
        merged = np.zeros(unique_bounds.size, dtype=np.float64)
        for index, count in zip(inverse, counts, strict=True):
            merged[index] += count
        bounds, counts = unique_bounds, merged
    # Monotonic cumulative counts (Prometheus ensureMonotonic): a running maximum.
    counts = np.maximum.accumulate(counts)
    if bounds.size < 2:
        return math.nan
    observations = float(counts[-1])
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    # First bucket (excluding +Inf) whose cumulative count reaches the rank.
    finite = counts[:-1]
    b = int(np.searchsorted(finite, rank, side="left"))
    if b == bounds.size - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    bucket_start = 0.0
    bucket_end = float(bounds[b])
    count = float(counts[b])
    if b > 0:
        bucket_start = float(bounds[b - 1])
        count -= float(counts[b - 1])
        rank -= float(counts[b - 1])
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


def sum_buckets(per_pod: Iterable[Mapping[float, float]]) -> dict[float, float]:
    """Sum per-pod bucket counts (rates) into one histogram, bound by bound.

    Args:
        per_pod: For each pod, upper bound -> cumulative count (or rate).

    Returns:
        Upper bound -> summed count. A bound present on only some pods sums those pods, as
        PromQL ``sum by (le)`` does.
    """
    total: dict[float, float] = {}
    for buckets in per_pod:
        for bound, count in buckets.items():
            total[bound] = total.get(bound, 0.0) + count
    return total


def target_quantile(q: float, per_pod: Iterable[Mapping[float, float]]) -> float:
    """The ``q`` quantile across pods: sum their bucket rates, then :func:`histogram_quantile`."""
    total = sum_buckets(per_pod)
    if not total:
        return math.nan
    bounds = np.fromiter(total.keys(), dtype=np.float64, count=len(total))
    counts = np.fromiter(total.values(), dtype=np.float64, count=len(total))
    return histogram_quantile(q, bounds, counts)
