"""Quantiles of a scale target's latency from its pods' histogram buckets (pure).

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
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any


def parse_le(value: str) -> float:
    """The upper bound of a bucket from its ``le`` label (``"0.05"``, ``"+Inf"``).

    Raises:
        ValueError: The label is not a number.
    """
    return float(value)


def _floats(values: Any) -> list[float]:
    """A list of floats from a sequence or a numpy array (``tolist``: no numpy import here)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return list(map(float, values))


def histogram_quantile(q: float, upper_bounds: Any, cumulative_counts: Any) -> float:
    """The ``q`` quantile of one cumulative histogram, as PromQL ``histogram_quantile``.

    Plain Python: a histogram has tens of buckets, where numpy's per-call cost is larger than
    the arithmetic (and the controller does not load numpy for it).

    Args:
        q: The quantile (0..1; below 0 gives -Inf and above 1 +Inf, as Prometheus).
        upper_bounds: Bucket upper bounds (``le``), in any order, one of them ``+Inf``
            (a sequence of numbers or a 1-D numpy array).
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
    bounds = _floats(upper_bounds)
    counts = _floats(cumulative_counts)
    if len(bounds) != len(counts):
        msg = "upper_bounds and cumulative_counts must be of equal length"
        raise ValueError(msg)
    if not bounds or any(map(math.isnan, bounds)):
        return math.nan  # a NaN bound sorts last: no +Inf bucket at the top
    pairs = sorted(zip(bounds, counts, strict=True), key=itemgetter(0))
    if pairs[-1][0] != math.inf:
        return math.nan
    # Merge buckets with equal upper bounds (Prometheus coalesceBuckets), in sorted order.
    merged_bounds: list[float] = []
    merged_counts: list[float] = []
    for bound, count in pairs:
        if merged_bounds and merged_bounds[-1] == bound:
            merged_counts[-1] += count
        else:
            merged_bounds.append(bound)
            merged_counts.append(0.0 + count)
    if len(merged_bounds) < 2 or any(map(math.isnan, merged_counts)):
        return math.nan  # a NaN count makes the running maximum, and the total, NaN
    # Monotonic cumulative counts (Prometheus ensureMonotonic): a running maximum.
    highest = -math.inf
    for index, count in enumerate(merged_counts):
        highest = max(highest, count)
        merged_counts[index] = highest
    observations = merged_counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # First bucket (excluding +Inf) whose cumulative count reaches the rank (a NaN rank,
    # 0 x Inf, sorts after every count).
    last = len(merged_bounds) - 1
    b = last if math.isnan(rank) else bisect_left(merged_counts, rank, 0, last)
    if b == last:
        return merged_bounds[-2]
    if b == 0 and merged_bounds[0] <= 0:
        return merged_bounds[0]
    bucket_start = 0.0
    bucket_end = merged_bounds[b]
    count = merged_counts[b]
    if b > 0:
        bucket_start = merged_bounds[b - 1]
        count -= merged_counts[b - 1]
        rank -= merged_counts[b - 1]
    if count == 0:
        return math.nan  # q = 0 with an empty first bucket: 0/0, NaN in Prometheus too
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
    return histogram_quantile(q, list(total), list(total.values()))
