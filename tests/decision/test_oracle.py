"""The package's normalisation steps give what the HPA-literal oracle gives; so does pods_fast.

``tests/decision/oracle.py`` holds each step written as the HPA's code reads (stale slots reused,
every policy's limit kept); the conformance suite pins it to upstream. These tests pin
:mod:`autoscaler.decision.normalize` to the oracle, on the upstream rows and on random inputs:
the same replicas and reasons, and (stabilization) the same records where they can still count.
``calculator.pods_fast`` is pinned to ``pods_proposal`` where it applies.
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
    convert_with_behavior_rate,
    convert_with_rules,
    scale_down_limit,
    scale_up_limit,
    stabilize_legacy,
    stabilize_with_behavior,
)
from autoscaler.decision.resolved import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, RatePolicy, Rules
from autoscaler.decision.types import PodPhase, Recommendation, ScaleEvent

from . import oracle
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


def _pruned(stored: tuple[Recommendation, ...], now: float, longest: float) -> list[Any]:
    """The oracle's stored records that the longer window can still see, in time order."""
    return sorted((r.timestamp, r.replicas) for r in stored if r.timestamp > now - longest)


def _check_stabilize(
    recs: tuple[Recommendation, ...], current: int, desired: int, up: int, down: int
) -> None:
    replicas, stored, reason = stabilize_with_behavior(recs, current, desired, NOW, up, down)
    reference = oracle.stabilize_with_behavior(recs, current, desired, NOW, up, down)
    assert (reference.replicas, reference.reason) == (replicas, reason)
    longest = max(up, down)
    assert _pruned(reference.recommendations, NOW, longest) == _pruned(stored, NOW, longest)
    if longest > 0:
        assert Recommendation(NOW, desired) in stored


@pytest.mark.parametrize(
    ("recs", "current", "desired", "up_window", "down_window"),
    [
        pytest.param(row[1], row[2], row[3], row[6], row[7], id=str(row[0]))
        for row in NORMALIZE_WITH_BEHAVIOR
    ],
)
def test_stabilize_with_behavior_on_upstream_rows(
    recs: tuple[Recommendation, ...], current: int, desired: int, up_window: int, down_window: int
) -> None:
    """Same value and reason as the oracle; the same records the longer window can still see."""
    _check_stabilize(recs, current, desired, up_window, down_window)


@FAST
@given(
    recs=records,
    current=st.integers(0, 40),
    desired=st.integers(0, 40),
    up=windows,
    down=windows,
)
def test_stabilize_with_behavior_random(
    recs: tuple[Recommendation, ...], current: int, desired: int, up: int, down: int
) -> None:
    """Same as the oracle on any records and windows."""
    _check_stabilize(recs, current, desired, up, down)


@FAST
@given(recs=records, desired=st.integers(0, 40), window=windows)
def test_stabilize_legacy_random(
    recs: tuple[Recommendation, ...], desired: int, window: int
) -> None:
    """Same value and reason as the oracle; it keeps only the records inside the window."""
    replicas, stored, reason = stabilize_legacy(recs, desired, NOW, window)
    reference = oracle.stabilize_legacy(recs, desired, NOW, window)
    assert (reference.replicas, reference.reason) == (replicas, reason)
    inside = sorted((r.timestamp, r.replicas) for r in recs if NOW - r.timestamp < window)
    if window > 0:
        inside.append((NOW, desired))
    assert sorted(inside) == sorted((r.timestamp, r.replicas) for r in stored)


@pytest.mark.parametrize(
    ("up_events", "down_events", "lo", "hi", "up", "down", "current", "desired"),
    [pytest.param(*row[1:9], id=str(row[0])) for row in SCALING_WITH_RULES],
)
def test_convert_with_behavior_rate_on_upstream_rows(
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
    """Same count and reason as the oracle."""
    args = (current, desired, lo, hi, up_events, down_events)
    rules_ = (up or DEFAULT_SCALE_UP, down or DEFAULT_SCALE_DOWN, NOW)
    assert oracle.convert_with_behavior_rate(*args, *rules_) == convert_with_behavior_rate(
        *args, *rules_
    )


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
def test_convert_with_behavior_rate_random(
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
    """Same count and reason as the oracle, and each direction's limit, on any rules and events."""
    args = (current, desired, lo, hi, up_events, down_events, up, down, NOW)
    assert oracle.convert_with_behavior_rate(*args) == convert_with_behavior_rate(*args)
    assert oracle.scale_up_limits(current, up_events, down_events, up, NOW)[0] == (
        scale_up_limit(current, up_events, down_events, up, NOW)
    )
    assert oracle.scale_down_limits(current, up_events, down_events, down, NOW)[0] == (
        scale_down_limit(current, up_events, down_events, down, NOW)
    )


@FAST
@given(
    current=st.integers(0, 60),
    desired=st.integers(0, 200),
    lo=st.integers(0, 5),
    hi=st.integers(5, 100),
    factor=st.sampled_from([2.0, 8.0]),
)
def test_convert_with_rules_random(
    current: int, desired: int, lo: int, hi: int, factor: float
) -> None:
    """Same count and reason as the oracle."""
    assert oracle.convert_with_rules(current, desired, lo, hi, factor) == convert_with_rules(
        current, desired, lo, hi, factor
    )


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
