"""Property tests of the decision core (hypothesis): bounds, fixed point, monotonicity, safety
on missing data, and restart equivalence through the persisted history."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.decision.types import History, NoSignal, NoSignalReason, Observation
from autoscaler.policy.models import ScalingPolicy

from .helpers import (
    decide,
    object_metric,
    observe,
    pods_metric,
    policy,
    record_rescale,
    running_pods,
    samples,
    target,
)

FAST = settings(max_examples=60, deadline=None)
BEHAVIORS: list[dict[str, Any] | None] = [
    None,
    {},
    {"scaleDown": {"stabilizationWindowSeconds": 60}},
    {
        "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}],
        },
    },
]


def two_metric_policy(behavior: dict[str, Any] | None, algorithm: str = "hpa") -> ScalingPolicy:
    """Per-pod qps (AverageValue 10) plus a whole-target rate (Value 50)."""
    return policy(
        [pods_metric("qps", 10.0), object_metric("rate", 50.0)],
        min_replicas=1,
        max_replicas=20,
        behavior=behavior,
        algorithm=algorithm,
    )


def tick(current: int, values: list[float], rate: float | None) -> Observation:
    """An observation with ``current`` running pods (values cycle over them)."""
    metrics: dict[str, Any] = {
        "qps": samples(*[values[i % len(values)] for i in range(current)]),
        "rate": target(rate) if rate is not None else NoSignal(NoSignalReason.NAN),
    }
    return observe(current, running_pods(current), metrics)


behaviors = st.sampled_from(BEHAVIORS)
algorithms = st.sampled_from(["hpa", "llm"])
loads = st.lists(st.floats(0.0, 60.0, allow_nan=False), min_size=1, max_size=6)


@FAST
@given(
    behavior=behaviors,
    algorithm=algorithms,
    current=st.integers(0, 30),
    values=loads,
    rate=st.none() | st.floats(0.0, 500.0),
)
def test_result_within_bounds(
    behavior: dict[str, Any] | None,
    algorithm: str,
    current: int,
    values: list[float],
    rate: float | None,
) -> None:
    """Desired is within [min, max], except scaling disabled at 0 (desired 0, no change)."""
    pol = two_metric_policy(behavior, algorithm)
    decision = decide(pol, tick(current, values, rate), History(), 0.0).decision
    if current == 0:
        assert decision.desired_replicas == 0
    else:
        assert 1 <= decision.desired_replicas <= 20


@FAST
@given(behavior=behaviors, algorithm=algorithms, current=st.integers(1, 20))
def test_metric_at_target_changes_nothing(
    behavior: dict[str, Any] | None, algorithm: str, current: int
) -> None:
    """Every metric exactly at its target: desired = current (both algorithms)."""
    pol = two_metric_policy(behavior, algorithm)
    obs = tick(current, [10.0], 50.0)
    decision = decide(pol, obs, History(initialized=True), 100.0).decision
    assert decision.desired_replicas == current


@FAST
@given(
    behavior=behaviors,
    current=st.integers(1, 20),
    values=loads,
    bump=st.floats(0.0, 40.0),
    index=st.integers(0, 19),
)
def test_monotonic_in_load(
    behavior: dict[str, Any] | None, current: int, values: list[float], bump: float, index: int
) -> None:
    """More load on one pod never gives fewer replicas (same history)."""
    pol = two_metric_policy(behavior)
    base = [values[i % len(values)] for i in range(current)]
    more = list(base)
    more[index % current] += bump
    history = History(initialized=True)
    low = decide(pol, tick(current, base, 50.0), history, 10.0).decision.desired_replicas
    high = decide(pol, tick(current, more, 50.0), history, 10.0).decision.desired_replicas
    assert high >= low


@FAST
@given(
    behavior=behaviors,
    algorithm=algorithms,
    current=st.integers(1, 20),
    values=loads,
)
def test_missing_metric_never_scales_down(
    behavior: dict[str, Any] | None, algorithm: str, current: int, values: list[float]
) -> None:
    """With one metric failing (query error), the count never goes below current."""
    pol = two_metric_policy(behavior, algorithm)
    obs = tick(current, values, None)
    failing = Observation(
        obs.spec_replicas,
        obs.status_replicas,
        obs.pods,
        {"qps": obs.metrics["qps"], "rate": NoSignal(NoSignalReason.QUERY_ERROR, "down")},
    )
    decision = decide(pol, failing, History(), 0.0).decision
    assert decision.desired_replicas >= current


@settings(max_examples=25, deadline=None)
@given(
    behavior=behaviors,
    algorithm=algorithms,
    script=st.lists(
        st.tuples(loads, st.none() | st.floats(0.0, 400.0), st.integers(5, 40)),
        min_size=2,
        max_size=12,
    ),
)
def test_restart_with_saved_history_changes_nothing(
    behavior: dict[str, Any] | None,
    algorithm: str,
    script: list[tuple[list[float], float | None, int]],
) -> None:
    """A restart between every tick (history through JSON) gives the same decisions."""
    pol = two_metric_policy(behavior, algorithm)

    def run(restart: bool) -> list[int]:
        history = History()
        current, now, out = 3, 0.0, []
        for values, rate, step in script:
            now += step
            if restart:
                history = History.from_json(json.loads(json.dumps(history.to_json())))
            result = decide(pol, tick(current, values, rate), history, now)
            desired = result.decision.desired_replicas
            history = record_rescale(pol, result.history, now, current, desired)
            out.append(desired)
            current = desired
        return out

    assert run(restart=False) == run(restart=True)


def test_history_stays_bounded_over_a_long_run() -> None:
    """A day of 15 s ticks with oscillating load keeps the history small."""
    pol = two_metric_policy({})
    history, current = History(), 3
    for i in range(5760):
        now = i * 15.0
        load = 25.0 if (i // 40) % 2 else 4.0
        result = decide(pol, tick(current, [load], 50.0), history, now)
        desired = result.decision.desired_replicas
        history = record_rescale(pol, result.history, now, current, desired)
        current = desired
    # down window 300 s / 15 s ticks -> at most 21 records; events within 15 s periods
    assert len(history.recommendations) <= 21
    assert len(history.scale_up_events) + len(history.scale_down_events) <= 4
