"""The stability benchmark's swing detector: a collapse at steady load that comes back."""

from __future__ import annotations

from benchmarks.bench_stability import swings


def test_collapse_at_steady_load_that_returns_is_a_swing() -> None:
    replicas = [20, 20, 20, 12, 1, 1, 1, 8, 20, 20, 20, 1, 1, 20]
    rates = [50.0] * len(replicas)
    found = swings(replicas, rates)
    assert [(s["from"], s["to"]) for s in found] == [(20, 1), (20, 1)]
    assert found[0]["backMinute"] == 8


def test_a_drop_the_load_explains_is_not() -> None:
    replicas = [20, 20, 20, 8, 8, 8, 20, 20]
    rates = [50.0, 50.0, 50.0, 15.0, 15.0, 15.0, 50.0, 50.0]
    assert swings(replicas, rates) == []


def test_a_fleet_that_follows_the_load_down_and_up_is_not_swinging() -> None:
    replicas = [23, 23, 23, 23, 7, 7, 15, 21]
    rates = [156.0, 54.0, 40.0, 48.0, 57.0, 58.0, 110.0, 111.0]
    assert swings(replicas, rates) == []


def test_a_drop_that_does_not_come_back_is_not() -> None:
    replicas = [20, 20, 8, 8, 8, 8, 8, 8]
    rates = [50.0] * len(replicas)
    assert swings(replicas, rates) == []


def test_small_fleets_and_small_steps_are_noise() -> None:
    assert swings([3, 3, 1, 1, 3, 3], [10.0] * 6) == []  # below the 4-replica level
    assert swings([5, 5, 3, 3, 5, 5], [10.0] * 6) == []  # not down to half
