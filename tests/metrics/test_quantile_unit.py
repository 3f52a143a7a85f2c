"""Pure tests of the histogram_quantile port (Prometheus's bucketQuantile rules)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.metrics.quantile import histogram_quantile, sum_buckets, target_quantile

INF = math.inf


@pytest.mark.parametrize(
    ("q", "bounds", "counts", "expected"),
    [
        pytest.param(0.5, [0.1, 0.2, INF], [10, 20, 20], 0.1, id="rank at a bucket edge"),
        pytest.param(0.25, [0.1, 0.2, INF], [10, 20, 20], 0.05, id="first bucket starts at 0"),
        pytest.param(0.75, [0.1, 0.2, INF], [10, 20, 20], 0.15, id="linear inside a bucket"),
        pytest.param(0.99, [0.1, 0.2, INF], [10, 20, 40], 0.2, id="+Inf bucket: last finite bound"),
        pytest.param(0.5, [-1.0, 0.5, INF], [5, 10, 10], -1.0, id="first bound <= 0 is returned"),
        pytest.param(0.5, [0.1, 0.2, INF], [0, 0, 0], math.nan, id="zero count is NaN"),
        pytest.param(0.5, [INF], [5], math.nan, id="fewer than 2 buckets is NaN"),
        pytest.param(0.5, [0.1, 0.2], [5, 10], math.nan, id="no +Inf bucket is NaN"),
        pytest.param(0.5, [], [], math.nan, id="no bucket is NaN"),
        pytest.param(-0.1, [0.1, INF], [1, 2], -INF, id="q below 0"),
        pytest.param(1.1, [0.1, INF], [1, 2], INF, id="q above 1"),
        pytest.param(math.nan, [0.1, INF], [1, 2], math.nan, id="q NaN"),
        pytest.param(0.5, [INF, 0.2, 0.1], [20, 20, 10], 0.1, id="unsorted input is sorted"),
        pytest.param(
            0.75, [0.1, 0.2, 0.3, INF], [10, 8, 20, 20], 0.25, id="non-monotonic counts fixed"
        ),
        pytest.param(
            0.75, [0.1, 0.1, 0.2, INF], [5, 5, 20, 20], 0.15, id="equal bounds are merged"
        ),
        pytest.param(0.0, [0.1, 0.2, INF], [0, 5, 5], math.nan, id="q 0, empty first bucket"),
        pytest.param(0.5, [0.1, math.nan, INF], [1, 2, 3], math.nan, id="NaN bound"),
        pytest.param(0.5, [0.1, 0.2, INF], [1, math.nan, 3], math.nan, id="NaN count"),
    ],
)
def test_histogram_quantile_cases(
    q: float, bounds: list[float], counts: list[float], expected: float
) -> None:
    """Each rule of Prometheus's histogram_quantile."""
    result = histogram_quantile(q, bounds, counts)
    if math.isnan(expected):
        assert math.isnan(result)
    else:
        assert expected == pytest.approx(result, rel=1e-12)


def test_target_quantile_sums_pods_bound_by_bound() -> None:
    """Per-pod bucket rates are summed before the quantile (not averaged quantiles)."""
    pod_a = {0.1: 10.0, 0.2: 10.0, INF: 10.0}
    pod_b = {0.1: 0.0, 0.2: 30.0, INF: 30.0}
    assert sum_buckets([pod_a, pod_b]) == {0.1: 10.0, 0.2: 40.0, INF: 40.0}
    # rank 0.5*40 = 20 -> second bucket: 0.1 + 0.1 * (20-10)/30
    assert target_quantile(0.5, [pod_a, pod_b]) == pytest.approx(0.1 + 0.1 * 10 / 30)
    assert math.isnan(target_quantile(0.5, []))


def test_length_mismatch_is_a_programming_error() -> None:
    """Bounds and counts of different lengths raise."""
    with pytest.raises(ValueError, match="equal length"):
        histogram_quantile(0.5, [0.1, INF], [1.0])


def test_numpy_arrays_give_the_same_quantile_as_lists() -> None:
    """The simulator passes numpy arrays; the controller, lists: one result."""
    bounds, counts = [0.05, 0.1, 0.2, 0.5, INF], [3.0, 9.0, 12.5, 14.0, 14.0]
    for q in (0.5, 0.9, 0.99):
        expected = histogram_quantile(q, bounds, counts)
        assert histogram_quantile(q, np.array(bounds), np.array(counts)) == expected


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(
    ("q", "bounds", "counts"),
    [
        (0.5, [0.1, 0.2, INF], [10, 20, 20]),
        (0.0, [0.1, 0.2, INF], [0, 5, 5]),
        (-0.1, [0.1, INF], [1, 2]),
        (1.1, [0.1, INF], [1, 2]),
        (math.nan, [0.1, INF], [1, 2]),
        (0.5, [INF], [5]),
        (0.5, [0.1, 0.2], [5, 10]),
        (0.5, [0.1, math.nan, INF], [1, 2, 3]),
        (0.5, [0.1, 0.2, INF], [1, math.nan, 3]),
        (0.75, [0.1, 0.2, 0.3, INF], [10, 8, 20, 20]),
        (0.5, [-1.0, 0.5, INF], [5, 10, 10]),
        (0.99, [0.1, 0.2, INF], [10, 20, 40]),
    ],
)
def test_target_quantile_of_one_histogram_is_histogram_quantile(
    q: float, bounds: list[float], counts: list[float]
) -> None:
    """target_quantile's own path for distinct bounds gives histogram_quantile's result."""
    expected = histogram_quantile(q, bounds, counts)
    assert _same(target_quantile(q, [dict(zip(bounds, counts, strict=True))]), expected)


def test_target_quantile_matches_histogram_quantile_on_random_histograms() -> None:
    """Random pods, bounds (shared and not, unsorted), counts (zeros, non-monotonic) and q."""
    rng = np.random.default_rng(17)
    for _ in range(5_000):
        grid = sorted({float(b) for b in rng.choice([0.01, 0.05, 0.1, 0.5, 1.0, 2.5], 4)})
        pods = []
        for _pod in range(int(rng.integers(1, 4))):
            chosen = [b for b in grid if rng.random() < 0.8] + [INF]
            rng.shuffle(chosen)
            pods.append({b: float(rng.choice([0.0, rng.random() * 10])) for b in chosen})
        q = float(rng.choice([0.0, 0.5, 0.9, 0.95, 0.99, 1.0, rng.random()]))
        total = sum_buckets(pods)
        expected = histogram_quantile(q, list(total), list(total.values()))
        assert _same(target_quantile(q, pods), expected), (q, pods)
