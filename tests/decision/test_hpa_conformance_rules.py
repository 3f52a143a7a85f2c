# ruff: noqa: E501 - upstream vector tables are kept one row per line, as upstream writes them
"""Conformance: HPA normalisation vectors ported from kubernetes/kubernetes.

Source: ``pkg/controller/podautoscaler/horizontal_test.go`` (commit 003e8629). Each test id
names the upstream test and row. Events built like upstream ``generateEventsUniformDistribution``
(event ``i`` of ``n`` over ``P`` seconds is ``P - (i+1)*P/n + P/(2n)`` seconds old). Upstream
raises ``scaleUpLimitFactor`` to 8 in ``init()``; legacy rows are run both with that factor (to
match upstream) and with the product factor 2 (recomputed by hand).
"""

from __future__ import annotations

import pytest

from autoscaler.decision.normalize import (
    convert_with_behavior_rate,
    convert_with_rules,
    legacy_scale_up_limit,
    replicas_change_per_period,
    scale_down_limit,
    scale_up_limit,
    stabilize_legacy,
    stabilize_with_behavior,
)
from autoscaler.decision.resolved import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    RatePolicy,
    Rules,
    merge_rules,
)
from autoscaler.decision.types import History, Recommendation, ScaleEvent
from autoscaler.policy.models import ScalingRules

from . import oracle
from .helpers import policy, record_rescale

NOW = 10_000.0


def uniform_events(changes: list[int], period: int) -> tuple[ScaleEvent, ...]:
    """Upstream ``generateEventsUniformDistribution``."""
    seg = period / len(changes)
    return tuple(
        ScaleEvent(NOW - (period - seg * (i + 1) + seg / 2), c) for i, c in enumerate(changes)
    )


def gen(pods: int, pods_period: int, percent: int, percent_period: int, window: int) -> Rules:
    """Upstream ``generateScalingRules`` (selectPolicy Max)."""
    data: dict[str, object] = {"stabilizationWindowSeconds": window, "selectPolicy": "Max"}
    policies = []
    if pods:
        policies.append({"type": "Pods", "value": pods, "periodSeconds": pods_period})
    if percent:
        policies.append({"type": "Percent", "value": percent, "periodSeconds": percent_period})
    data["policies"] = policies
    return merge_rules(ScalingRules.model_validate(data), DEFAULT_SCALE_UP)


# name, up events, down events, min, max, up rules, down rules, current, desired, expected, cond
U = uniform_events
SCALING_WITH_RULES = [
    ("prenormalized desired replicas within range", (), (), 3, 8, None, None, 5, 7, 7, "DesiredWithinRange"),
    ("prenormalized desired replicas < minReplicas", (), (), 2, 8, None, None, 3, 1, 2, "TooFewReplicas"),
    ("prenormalized desired replicas within range when minReplicas is 0", (), (), 0, 10, None, None, 1, 0, 0, "DesiredWithinRange"),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", (), (), 1, 10, None, None, 20, 1000, 10, "TooManyReplicas"),
    ("desired replica count is more than the maximum replica count", (), (), 100, 150, None, None, 100, 1000, 150, "TooManyReplicas"),
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", (), (), 1, 2000, gen(0, 0, 1, 60, 0), None, 3, 1000, 4, "ScaleUpLimit"),
    ("scaleUp with default behavior", (), (), 1, 1000, None, None, 10, 50, 20, "ScaleUpLimit"),
    ("scaleUp with pods policy larger than percent policy", (), (), 1, 1000, gen(100, 60, 100, 60, 0), None, 10, 500, 110, "ScaleUpLimit"),
    ("scaleUp with percent policy larger than pods policy", (), (), 1, 1000, gen(2, 60, 100, 60, 0), None, 10, 500, 20, "ScaleUpLimit"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy", (), (), 1, 1000, gen(100, 60, 0, 0, 0), None, 10, 50, 50, "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy", (), (), 1, 1000, gen(10000, 60, 0, 0, 0), None, 10, 50, 50, "DesiredWithinRange"),
    ("scaleUp with pod policy limitation", (), (), 1, 1000, gen(30, 60, 0, 0, 0), None, 10, 50, 40, "ScaleUpLimit"),
    ("scaleUp with percent policy limitation", (), (), 1, 1000, gen(0, 0, 200, 60, 0), None, 10, 50, 30, "ScaleUpLimit"),
    ("scaleDown with percent policy larger than pod policy", (), (), 1, 1000, None, gen(20, 60, 1, 60, 300), 100, 2, 80, "ScaleDownLimit"),
    ("scaleDown with pod policy larger than percent policy", (), (), 1, 1000, None, gen(2, 60, 1, 60, 300), 100, 2, 98, "ScaleDownLimit"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy", (), (), 1, 1000, None, gen(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy", (), (), 1, 1000, None, gen(100, 60, 0, 0, 300), 10, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy", (), (), 5, 1000, None, gen(0, 0, 100, 60, 300), 10, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation", (), (), 1, 1000, None, gen(5, 60, 0, 0, 300), 10, 2, 5, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation", (), (), 1, 1000, None, gen(0, 0, 50, 60, 300), 10, 5, 5, "DesiredWithinRange"),
    ("scaleUp with spec MaxReplicas limitation with large pod policy and events", U([1, 5, 9], 120), (), 1, 200, gen(300, 60, 0, 0, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with spec MaxReplicas limitation with large percent policy and events", U([1, 5, 9], 120), (), 1, 200, gen(0, 0, 10000, 60, 0), None, 100, 500, 200, "TooManyReplicas"),
    ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events", U([1, 5, 9], 120), (), 1, 1000, gen(5, 120, 0, 0, 0), None, 100, 500, 100, "ScaleUpLimit"),
    ("scaleUp with pod policy and previous scale up events", U([1, 5, 9], 120), (), 1, 1000, gen(150, 120, 0, 0, 0), None, 100, 500, 235, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up events", U([1, 5, 9], 120), (), 1, 1000, gen(0, 0, 200, 120, 0), None, 100, 500, 255, "ScaleUpLimit"),
    ("scaleUp with percent policy and previous scale up and down events", U([4], 120), U([2], 120), 1, 1000, gen(0, 0, 300, 300, 0), None, 6, 24, 16, "ScaleUpLimit"),
    ("scaleDown with default policy and previous events", (), U([1, 5, 9], 120), 1, 1000, None, None, 10, 5, 5, "DesiredWithinRange"),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", (), U([1, 5, 9], 120), 1, 1000, None, gen(115, 120, 0, 0, 300), 100, 0, 1, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", (), U([1, 5, 9], 120), 5, 1000, None, gen(130, 120, 0, 0, 300), 100, 0, 5, "TooFewReplicas"),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", (), U([1, 5, 9], 120), 5, 1000, None, gen(0, 0, 100, 120, 300), 100, 2, 5, "TooFewReplicas"),
    ("scaleDown with pod policy limitation and previous events", (), U([1, 5, 9], 120), 1, 1000, None, gen(5, 120, 0, 0, 300), 100, 2, 100, "ScaleDownLimit"),
    ("scaleDown with percent policy limitation and previous events", (), U([2, 4, 6], 120), 1, 1000, None, gen(0, 0, 50, 120, 300), 100, 0, 56, "ScaleDownLimit"),
    ("scaleDown with percent policy and previous scale up and down events", U([2], 120), U([4], 120), 1, 1000, None, gen(0, 0, 50, 180, 0), 10, 1, 6, "ScaleDownLimit"),
    ("scaleDown with previous events preventing further scale down", (), U([10, 10, 10], 120), 1, 1000, None, gen(0, 0, 10, 120, 300), 100, 0, 100, "ScaleDownLimit"),
    ("scaleDown with with previous events still allowing more scale down", (), U([10, 10, 10], 120), 1, 1000, None, gen(0, 0, 1000, 120, 300), 10, 5, 5, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for up", U([8, 12, 9, 11], 120), (), 1, 1000, gen(1000, 60, 0, 0, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for up", U([8, 12, 9, 11], 120), (), 1, 1000, gen(1000, 120, 100, 60, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for up", U([8, 12, 9, 11], 120), (), 1, 1000, gen(1000, 30, 100, 60, 0), None, 100, 200, 200, "DesiredWithinRange"),
    ("check 'outdated' flag for events for one behavior for down", (), U([8, 12, 9, 11], 120), 1, 1000, None, gen(1000, 60, 0, 0, 300), 100, 5, 5, "DesiredWithinRange"),
    ("check that events were not marked 'outdated' for two different policies in the behavior for down", (), U([8, 12, 9, 11], 120), 1, 1000, None, gen(1000, 120, 100, 60, 300), 100, 5, 5, "DesiredWithinRange"),
    ("check that events were marked 'outdated' for two different policies in the behavior for down", (), U([8, 12, 9, 11], 120), 1, 1000, None, gen(1000, 30, 100, 60, 300), 100, 5, 5, "DesiredWithinRange"),
]  # fmt: skip


@pytest.mark.parametrize(
    (
        "up_events",
        "down_events",
        "lo",
        "hi",
        "up",
        "down",
        "current",
        "desired",
        "expected",
        "cond",
    ),
    [pytest.param(*row[1:], id=f"TestScalingWithRules/{row[0]}") for row in SCALING_WITH_RULES],
)
def test_scaling_with_rules(
    *,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    lo: int,
    hi: int,
    up: Rules | None,
    down: Rules | None,
    current: int,
    desired: int,
    expected: int,
    cond: str,
) -> None:
    """Rate limits and min/max clamp match ``convertDesiredReplicasWithBehaviorRate``."""
    up_rules, down_rules = up or DEFAULT_SCALE_UP, down or DEFAULT_SCALE_DOWN
    result = convert_with_behavior_rate(
        current, desired, lo, hi, up_events, down_events, up_rules, down_rules, NOW
    )
    assert (expected, cond) == result


def rec(replicas: int, age: float) -> Recommendation:
    """A recommendation ``age`` seconds old."""
    return Recommendation(NOW - age, replicas)


# name, recs, current, desired, expected, expected stored (None: not checked), up win, down win
NORMALIZE_WITH_BEHAVIOR = [
    ("empty recommendations for scaling down", (), 100, 5, 5, [5], 0, 0),
    ("simple scale down stabilization", (rec(4, 120), rec(5, 60)), 100, 3, 5, [4, 5, 3], 0, 180),
    ("simple scale up stabilization", (rec(4, 120), rec(5, 60)), 1, 7, 4, [4, 5, 7], 300, 0),
    ("no scale down stabilization", (rec(1, 120), rec(2, 60)), 100, 3, 3, [1, 2, 3], 300, 0),
    ("no scale up stabilization", (rec(4, 120), rec(5, 60)), 1, 3, 3, [4, 5, 3], 0, 300),
    ("no scale down stabilization, reuse recommendation element", (rec(10, 600), rec(9, 540)), 100, 3, 3, [10, 3], 0, 0),
    ("no scale up stabilization, reuse recommendation element", (rec(10, 600), rec(9, 540)), 1, 100, 100, [10, 100], 0, 0),
    ("scale down stabilization, reuse one of obsolete recommendation element", (rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)), 100, 3, 5, [10, 4, 5, 3], 0, 180),
    ("scale up stabilization, reuse one of obsolete recommendation element", (rec(10, 6000), rec(6, 60), rec(5, 120), rec(9, 180)), 1, 100, 5, [100, 6, 5, 9], 300, 0),
    ("scale up and down stabilization, do not scale up when prenormalized rec goes down", (rec(2, 6000), rec(3, 180)), 2, 1, 2, None, 300, 300),
    ("scale up and down stabilization, do not scale down when prenormalized rec goes up", (rec(2, 6000), rec(1, 180)), 2, 3, 2, None, 300, 300),
]  # fmt: skip


@pytest.mark.parametrize(
    ("recs", "current", "desired", "expected", "stored", "up_window", "down_window"),
    [
        pytest.param(*row[1:], id=f"TestNormalizeDesiredReplicasWithBehavior/{row[0]}")
        for row in NORMALIZE_WITH_BEHAVIOR
    ],
)
def test_normalize_with_behavior(
    *,
    recs: tuple[Recommendation, ...],
    current: int,
    desired: int,
    expected: int,
    stored: list[int] | None,
    up_window: int,
    down_window: int,
) -> None:
    """Stabilization windows (the package) and slot reuse (the oracle) match upstream."""
    replicas, _, _ = stabilize_with_behavior(recs, current, desired, NOW, up_window, down_window)
    assert expected == replicas
    reference = oracle.stabilize_with_behavior(recs, current, desired, NOW, up_window, down_window)
    assert expected == reference.replicas
    if stored is not None:
        assert stored == [r.replicas for r in reference.recommendations]
        assert all(r.timestamp <= NOW for r in reference.recommendations)


# name, recs, desired, expected, log length (5-minute window)
NORMALIZE_LEGACY = [
    ("empty log", (), 5, 5, 1),
    ("stabilize", (rec(4, 120), rec(5, 60)), 3, 5, 3),
    ("no stabilize", (rec(1, 120), rec(2, 60)), 3, 3, 3),
    ("no stabilize - old recommendations", (rec(10, 600), rec(9, 540)), 3, 3, 2),
    ("stabilize - old recommendations", (rec(10, 600), rec(4, 60), rec(5, 120), rec(9, 540)), 3, 5, 4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("recs", "desired", "expected", "length"),
    [
        pytest.param(*row[1:], id=f"TestNormalizeDesiredReplicas/{row[0]}")
        for row in NORMALIZE_LEGACY
    ],
)
def test_normalize_legacy(
    recs: tuple[Recommendation, ...], desired: int, expected: int, length: int
) -> None:
    """The legacy 5-minute max window (the package) and its log bookkeeping (the oracle)."""
    assert expected == stabilize_legacy(recs, desired, NOW, 300)[0]
    reference = oracle.stabilize_legacy(recs, desired, NOW, 300)
    assert (expected, length) == (reference.replicas, len(reference.recommendations))


# current, desired, min, max, expected (factor 8 as upstream), expected (factor 2), condition
CONVERT_WITH_RULES = [
    ("prenormalized desired replicas within range", 5, 7, 3, 8, 7, 7, "DesiredWithinRange"),
    ("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2, 2, "TooFewReplicas"),
    ("prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, 0, "DesiredWithinRange"),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10, 10, "TooManyReplicas"),
    # calculateScaleUpLimit(3): int(max(8*3, 4)) = 24 upstream; int(max(2*3, 4)) = 6 in the product
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas", 3, 1000, 1, 2000, 24, 6, "ScaleUpLimit"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "desired", "lo", "hi", "expected8", "expected2", "cond"),
    [
        pytest.param(*row[1:], id=f"TestConvertDesiredReplicasWithRules/{row[0]}")
        for row in CONVERT_WITH_RULES
    ],
)
def test_convert_with_rules(
    *, current: int, desired: int, lo: int, hi: int, expected8: int, expected2: int, cond: str
) -> None:
    """Legacy clamps (``convertDesiredReplicasWithRules``), upstream factor 8 and product 2."""
    assert (expected8, cond) == convert_with_rules(current, desired, lo, hi, factor=8.0)
    assert (expected2, cond) == convert_with_rules(current, desired, lo, hi)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(0, 4, id="calculateScaleUpLimit/minimum 4"),
        pytest.param(1, 4, id="calculateScaleUpLimit/1 -> 4"),
        pytest.param(3, 6, id="calculateScaleUpLimit/3 -> 6"),
        pytest.param(10, 20, id="calculateScaleUpLimit/10 -> 20"),
    ],
)
def test_legacy_scale_up_limit(current: int, expected: int) -> None:
    """``int(max(2 x current, 4))``."""
    assert expected == legacy_scale_up_limit(current)


MIN_RULES = Rules(
    window=300,
    select="Min",
    policies=(RatePolicy("Pods", 2, 60), RatePolicy("Percent", 50, 60)),
    tolerance=0.1,
)


def test_calculate_scale_up_limit_with_scaling_rules() -> None:
    """TestCalculateScaleUpLimitWithScalingRules: current 1, Min of Pods 2 and 50 % -> 2."""
    limit = scale_up_limit(1, (), (), MIN_RULES, NOW)
    # Pods: 1 + 2 = 3; Percent: ceil(1 * 1.5) = 2; Min -> 2
    assert limit == 2


def test_calculate_scale_down_limit_with_behaviors() -> None:
    """TestCalculateScaleDownLimitWithBehaviors: current 5, Min of Pods 2 and 50 % -> 3."""
    limit = scale_down_limit(5, (), (), MIN_RULES, NOW)
    # Pods: 5 - 2 = 3; Percent: int(5 * 0.5) = 2; Min change for scale-down -> max -> 3
    assert limit == 3


def ev(change: int, age: float, outdated: bool = False) -> ScaleEvent:
    """A scale event ``age`` seconds old."""
    return ScaleEvent(NOW - age, change, outdated)


# name, previous events, rules (None: no behavior), expected new (change, outdated), change in 60 s
STORE_SCALE_EVENTS = [
    ("empty entries with default behavior", (), None, [], 0),
    ("empty entries with two-policy-behavior", (), gen(10, 60, 100, 60, 0), [(5, False)], 0),
    ("one outdated entry to be kept untouched without behavior", (ev(7, 61),), None, [(7, False)], 0),
    ("one outdated entry to be replaced with behavior", (ev(7, 61),), gen(10, 60, 100, 60, 0), [(5, False)], 0),
    ("one actual entry to be not touched with behavior", (ev(7, 58),), gen(10, 60, 100, 60, 0), [(7, False), (5, False)], 7),
    ("two entries, one of them to be replaced", (ev(7, 61), ev(6, 59)), gen(10, 60, 0, 0, 0), [(5, False), (6, False)], 6),
    ("replace one entry, use policies with different periods", (ev(8, 29), ev(6, 59), ev(7, 61), ev(9, 61)), gen(10, 60, 100, 30, 0), [(8, False), (6, False), (7, True), (5, False)], 14),
    ("two entries, both actual", (ev(7, 58), ev(6, 59)), gen(10, 120, 100, 30, 0), [(7, False), (6, False), (5, False)], 13),
]  # fmt: skip


def _behavior_rules(rules_: Rules) -> dict[str, object]:
    """The policy YAML form of one direction's rules."""
    return {
        "stabilizationWindowSeconds": rules_.window,
        "selectPolicy": rules_.select,
        "policies": [
            {"type": p.type, "value": p.value, "periodSeconds": p.period} for p in rules_.policies
        ],
    }


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize(
    ("previous", "rules_", "expected", "change_60"),
    [pytest.param(*row[1:], id=f"TestStoreScaleEvents/{row[0]}") for row in STORE_SCALE_EVENTS],
)
def test_store_scale_events(
    *,
    direction: str,
    previous: tuple[ScaleEvent, ...],
    rules_: Rules | None,
    expected: list[tuple[int, bool]],
    change_60: int,
) -> None:
    """``storeScaleEvent`` through ``record_rescale``: that direction's list only, its own rules."""
    assert change_60 == replicas_change_per_period(60, previous, NOW)
    key = "scaleUp" if direction == "up" else "scaleDown"
    behavior = None if rules_ is None else {key: _behavior_rules(rules_)}
    pol = policy(max_replicas=100, behavior=behavior)
    if direction == "up":
        history = History(initialized=True, scale_up_events=previous)
        after = record_rescale(pol, history, NOW, 10, 15)
        stored, other = after.scale_up_events, after.scale_down_events
    else:
        history = History(initialized=True, scale_down_events=previous)
        after = record_rescale(pol, history, NOW, 15, 10)
        stored, other = after.scale_down_events, after.scale_up_events
    assert expected == [(e.change, e.outdated) for e in stored]
    assert other == ()


def test_generate_scale_up_rules_defaults() -> None:
    """TestGenerateScaleUpRules: nil rules -> window 0, Max, Pods 4/15 s and Percent 100/15 s."""
    assert merge_rules(None, DEFAULT_SCALE_UP) == DEFAULT_SCALE_UP
    assert DEFAULT_SCALE_UP.window == 0
    assert DEFAULT_SCALE_UP.select == "Max"
    assert (RatePolicy("Pods", 4, 15), RatePolicy("Percent", 100, 15)) == (
        DEFAULT_SCALE_UP.policies
    )


def test_generate_scale_down_rules_defaults() -> None:
    """TestGenerateScaleDownRules: nil rules -> window 300 (flag), Max, Percent 100/15 s."""
    assert DEFAULT_SCALE_DOWN.window == 300
    assert DEFAULT_SCALE_DOWN.select == "Max"
    assert (RatePolicy("Percent", 100, 15),) == DEFAULT_SCALE_DOWN.policies


def test_generate_rules_user_policies_replace_defaults() -> None:
    """TestGenerateScaleUpRules: a user policy list replaces the defaults, other fields default."""
    user = ScalingRules.model_validate(
        {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}
    )
    merged = merge_rules(user, DEFAULT_SCALE_UP)
    assert (RatePolicy("Pods", 1, 60),) == merged.policies
    assert (merged.window, merged.select) == (0, "Max")


def test_generate_rules_user_window_keeps_default_policies() -> None:
    """TestGenerateScaleDownRules: a user window alone keeps the default policies."""
    user = ScalingRules.model_validate({"stabilizationWindowSeconds": 120, "selectPolicy": "Min"})
    merged = merge_rules(user, DEFAULT_SCALE_DOWN)
    assert (merged.window, merged.select) == (120, "Min")
    assert DEFAULT_SCALE_DOWN.policies == merged.policies
