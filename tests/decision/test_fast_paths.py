"""The hot-path variants give exactly what the step-by-step functions give.

``decide`` uses ``normalize.stabilize_pruned``, ``normalize.rate_limit``,
``normalize.clamp_legacy`` and ``calculator.pods_fast``; the conformance suite pins the full
functions to upstream. These tests pin the variants to the full functions: on the upstream rows
and on random inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.decision.calculator import (
    group_pods,
    pods_fast,
    pods_fast_detail,
    pods_proposal,
    to_milli,
)
from autoscaler.decision.normalize import (
    clamp_legacy,
    convert_with_behavior_rate,
    convert_with_rules,
    rate_limit,
    stabilize_legacy,
    stabilize_legacy_pruned,
    stabilize_pruned,
    stabilize_with_behavior,
)
from autoscaler.decision.resolved import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, RatePolicy, Rules
from autoscaler.decision.types import PodPhase, Recommendation, ScaleEvent

from .helpers import running_pods
from .test_hpa_conformance_rules import NORMALIZE_WITH_BEHAVIOR, NOW, SCALING_WITH_RULES

FAST = settings(max_examples=300, deadline=None)

records = st.lists(
    st.builds(
        Recommendation,
        st.floats(NOW - 700, NOW + 30, allow_nan=False).map(lambda t: round(t, 1)),
        st.integers(0, 40),
    ),
    max_size=25,
).map(tuple)
events = st.lists(
    st.builds(
        ScaleEvent,
        st.floats(NOW - 400, NOW, allow_nan=False).map(lambda t: round(t, 1)),
        st.integers(1, 20),
        st.booleans(),
    ),
    max_size=5,
).map(tuple)
windows = st.sampled_from([0, 15, 60, 300, 600])
rate_policies = st.lists(
    st.builds(
        RatePolicy,
        st.sampled_from(["Pods", "Percent"]),
        st.integers(1, 300),
        st.sampled_from([15, 60, 120, 300]),
    ),
    max_size=3,
).map(tuple)
rules = st.builds(
    Rules, windows, st.sampled_from(["Max", "Min", "Disabled"]), rate_policies, st.just(0.1)
)


def _stabilize_full(recs: Any, current: int, desired: int, up: int, down: int) -> tuple[Any, ...]:
    full = stabilize_with_behavior(
        recs, current, desired, NOW, up_window=up, down_window=down, prune=True
    )
    return full.replicas, full.recommendations, full.reason


@pytest.mark.parametrize(
    ("recs", "current", "desired", "up_window", "down_window"),
    [
        pytest.param(row[1], row[2], row[3], row[6], row[7], id=str(row[0]))
        for row in NORMALIZE_WITH_BEHAVIOR
    ],
)
def test_stabilize_pruned_on_upstream_rows(
    recs: tuple[Recommendation, ...], current: int, desired: int, up_window: int, down_window: int
) -> None:
    """Same value, stored records and reason as the full function with pruning."""
    fast = stabilize_pruned(recs, current, desired, NOW, up_window, down_window)
    assert _stabilize_full(recs, current, desired, up_window, down_window) == fast


@FAST
@given(
    recs=records,
    current=st.integers(0, 40),
    desired=st.integers(0, 40),
    up=windows,
    down=windows,
)
def test_stabilize_pruned_random(
    recs: tuple[Recommendation, ...], current: int, desired: int, up: int, down: int
) -> None:
    """Same result as ``stabilize_with_behavior(prune=True)`` on any records and windows."""
    assert _stabilize_full(recs, current, desired, up, down) == stabilize_pruned(
        recs, current, desired, NOW, up, down
    )


@FAST
@given(recs=records, desired=st.integers(0, 40), window=windows)
def test_stabilize_legacy_pruned_random(
    recs: tuple[Recommendation, ...], desired: int, window: int
) -> None:
    """Same result as ``stabilize_legacy(prune=True)``."""
    full = stabilize_legacy(recs, desired, NOW, window, prune=True)
    fast = stabilize_legacy_pruned(recs, desired, NOW, window)
    assert (full.replicas, full.recommendations, full.reason) == fast


@pytest.mark.parametrize(
    ("up_events", "down_events", "lo", "hi", "up", "down", "current", "desired"),
    [pytest.param(*row[1:9], id=str(row[0])) for row in SCALING_WITH_RULES],
)
def test_rate_limit_on_upstream_rows(
    *,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    lo: int,
    hi: int,
    up: Rules | None,
    down: Rules | None,
    current: int,
    desired: int,
) -> None:
    """Same count and reason as ``convert_with_behavior_rate``."""
    up_rules, down_rules = up or DEFAULT_SCALE_UP, down or DEFAULT_SCALE_DOWN
    full = convert_with_behavior_rate(
        current,
        desired,
        min_replicas=lo,
        max_replicas=hi,
        up_events=up_events,
        down_events=down_events,
        up=up_rules,
        down=down_rules,
        now=NOW,
    )
    fast = rate_limit(current, desired, lo, hi, up_events, down_events, up_rules, down_rules, NOW)
    assert (full.replicas, full.reason) == fast


@FAST
@given(
    current=st.integers(0, 60),
    desired=st.integers(0, 120),
    lo=st.integers(0, 5),
    hi=st.integers(5, 100),
    up_events=events,
    down_events=events,
    up=rules,
    down=rules,
)
def test_rate_limit_random(
    *,
    current: int,
    desired: int,
    lo: int,
    hi: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    up: Rules,
    down: Rules,
) -> None:
    """Same count and reason as ``convert_with_behavior_rate`` on any rules and events."""
    full = convert_with_behavior_rate(
        current,
        desired,
        min_replicas=lo,
        max_replicas=hi,
        up_events=up_events,
        down_events=down_events,
        up=up,
        down=down,
        now=NOW,
    )
    fast = rate_limit(current, desired, lo, hi, up_events, down_events, up, down, NOW)
    assert (full.replicas, full.reason) == fast


@FAST
@given(
    current=st.integers(0, 60),
    desired=st.integers(0, 200),
    lo=st.integers(0, 5),
    hi=st.integers(5, 100),
)
def test_clamp_legacy_random(current: int, desired: int, lo: int, hi: int) -> None:
    """Same count and reason as ``convert_with_rules`` (product factor 2)."""
    full = convert_with_rules(current, desired, lo, hi)
    assert (full.replicas, full.reason) == clamp_legacy(current, desired, lo, hi)


@FAST
@given(
    values=st.lists(st.floats(0.0, 50.0, allow_nan=False), min_size=1, max_size=12),
    target=st.sampled_from([0.5, 0.62, 1.0, 3.3, 10.0]),
    current=st.integers(1, 20),
    tol=st.sampled_from([0.0, 0.1, 0.2]),
    extra=st.booleans(),
    phases=st.lists(st.sampled_from(list(PodPhase)), min_size=12, max_size=12),
    plain=st.booleans(),
)
def test_pods_fast_random(
    *,
    values: list[float],
    target: float,
    current: int,
    tol: float,
    extra: bool,
    phases: list[PodPhase],
    plain: bool,
) -> None:
    """Where ``pods_fast`` applies, proposal and detail are ``pods_proposal``'s."""
    count = len(values)
    pods = running_pods(count, phases=None if plain else phases[:count])
    samples = {f"p{i}": v for i, v in enumerate(values)}
    if extra:
        samples["ghost"] = values[0]
    groups = group_pods(pods)
    full = pods_proposal(samples, pods, target, current=current, tol_down=tol, tol_up=tol)
    fast = pods_fast(samples, to_milli(target), current, tol, tol, groups)
    if plain:
        assert fast is not None
    if fast is not None:
        assert full == (fast[0], "", pods_fast_detail(fast, to_milli(target), groups))
