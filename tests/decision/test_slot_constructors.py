"""The fast positional constructors build exactly what the dataclasses' own ``__init__`` builds."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from autoscaler.decision.calculator import PodGroups, group_pods
from autoscaler.decision.types import (
    Condition,
    ConditionType,
    Decision,
    DecisionResult,
    History,
    Recommendation,
    ScaleEvent,
    new_decision,
    new_decision_result,
    new_history,
    new_recommendation,
    new_scale_event,
    slot_constructor,
)

from .helpers import running_pods

HISTORY_VALUES: tuple[Any, ...] = (
    True,
    (Recommendation(1.0, 2),),
    (ScaleEvent(2.0, 1),),
    (ScaleEvent(3.0, 2, outdated=True),),
    4,
    (90.0,),
    {"p": 1.0},
    {"k": [1, 2]},
    None,
)
DECISION_VALUES: tuple[Any, ...] = (
    "ns/p",
    5.0,
    2,
    3,
    "qps above target",
    (Condition(ConditionType.ABLE_TO_SCALE, True, "ReadyForNewScale", "m"),),  # noqa: FBT003 - field order
    {"qps": 1.5},
    {"qps": 3},
    {"reason": "x"},
)


@pytest.mark.parametrize(
    ("fast", "cls", "values"),
    [
        pytest.param(new_recommendation, Recommendation, (1.5, 3), id="Recommendation"),
        pytest.param(new_scale_event, ScaleEvent, (1.5, 3, True), id="ScaleEvent"),
        pytest.param(new_history, History, HISTORY_VALUES, id="History"),
        pytest.param(new_decision, Decision, DECISION_VALUES, id="Decision"),
        pytest.param(
            new_decision_result,
            DecisionResult,
            (Decision(*DECISION_VALUES), History(*HISTORY_VALUES)),
            id="DecisionResult",
        ),
    ],
)
def test_same_object_as_the_dataclass(fast: Any, cls: type[Any], values: tuple[Any, ...]) -> None:
    """Equal, same type, every field set, still frozen, and pickles like the dataclass's."""
    built = fast(*values)
    expected = cls(*values)
    assert type(built) is cls
    assert expected == built
    assert repr(expected) == repr(built)
    assert [getattr(built, f.name) for f in dataclasses.fields(cls)] == list(values)
    assert pickle.loads(pickle.dumps(built)) == expected  # noqa: S301 - our own data
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, values[0])


def test_follows_the_fields() -> None:
    """The constructor is generated from the class's fields, so a new field is covered."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int = 0
        label: str = ""

    make = slot_constructor(Point)
    assert Point(1, 2, "a") == make(1, 2, "a")
    with pytest.raises(TypeError):
        make(1, 2)  # every field is required, positionally


def test_other_layouts_get_the_slot_descriptors() -> None:
    """A class whose layout a plain twin cannot share (here a ``__weakref__`` slot) still gets
    a constructor building the same object (through the slots' descriptors)."""

    @dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
    class Tagged:
        x: int
        label: str

    make = slot_constructor(Tagged)
    built = make(1, "a")
    assert type(built) is Tagged
    assert Tagged(1, "a") == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__("x", 2)


def test_pod_groups_built_fast_are_pod_groups() -> None:
    """``group_pods`` returns real, frozen ``PodGroups``."""
    groups = group_pods(running_pods(3))
    assert PodGroups(("p0", "p1", "p2"), (), 0, (), 3) == groups
    with pytest.raises(dataclasses.FrozenInstanceError):
        groups.__setattr__("ignored", 1)
