"""The history's serialised form: versioned, typed ``llm`` state, older histories still load.

``fixtures/history_v1.json`` is a history of an ``algorithm: llm`` policy (queue depth and request
rate) written in the previous form (``v`` 1, the queue bookkeeping in a free-form ``extra``
mapping), taken from a run of the controller of that time; the decision it leads to next was
recorded with that controller too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autoscaler.decision.queue_state import GrowthPoint, QueueState
from autoscaler.decision.types import History, Observation, PodSamples

from .helpers import decide, policy, running_pods

V1 = Path(__file__).resolve().parent / "fixtures" / "history_v1.json"
QUEUE = {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}}
RATE = {"requestRate": {"window": "1m", "target": {"type": "AverageValue", "averageValue": 5}}}
NOW = 652.005


def _v1() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(V1.read_text(encoding="utf-8"))
    return data


def _next_tick() -> Observation:
    pods = running_pods(11)
    return Observation(
        11,
        11,
        pods,
        {
            "queueDepth": PodSamples({p.name: 8.0 for p in pods}, NOW),
            "requestRate": PodSamples({p.name: 7.0 for p in pods}, NOW),
        },
    )


class TestPreviousFormat:
    def test_loads_into_the_typed_state(self) -> None:
        """Every entry of the old ``extra`` mapping lands in its typed field."""
        history = History.from_json(_v1())
        queue = history.queue
        assert queue.last == {"queueDepth": (637.005, 57.2)}
        assert queue.throughput == {"queueDepth": pytest.approx(2.3093333)}
        assert [(p.ready, p.at) for p in queue.growth["queueDepth"]] == [
            (3, 582.005),
            (6, 617.005),
            (12, 632.005),
            (11, 637.005),
        ]
        reference = queue.references["queueDepth"]
        assert (reference.t, reference.total, reference.rate) == (617.005, 96.0, 3.9)
        assert reference.window_rate is None
        assert queue.candidates["queueDepth"].served == pytest.approx(74.1)
        assert queue.trails["queueDepth"][1] == (632.005, 58.24, 153.4)
        assert history.capacity is not None
        assert history.capacity.ready == 11

    def test_decides_as_the_controller_that_wrote_it(self) -> None:
        """The next tick decides as it did from the old form (trail, throughput, growth used)."""
        pol = policy([QUEUE, RATE], algorithm="llm", behavior={}, max_replicas=40)
        result = decide(pol, _next_tick(), History.from_json(_v1()), NOW)
        assert result.decision.desired_replicas == 16
        assert result.decision.reason == "requestRate above target"
        assert dict(result.decision.metric_proposals) == {"queueDepth": 11, "requestRate": 16}
        reading = result.history.queue.candidates["queueDepth"]
        assert reading.window_rate == pytest.approx(-0.22857142857)  # from the loaded trail
        assert reading.per_pod == pytest.approx(4.5706667)  # a new point beside the loaded ones

    def test_malformed_entries_are_dropped(self) -> None:
        """Entries of the wrong shape (a hand-edited ConfigMap) are ignored, as they were."""
        data = {
            "v": 1,
            "extra": {
                "queueLast": {"q": "x", "ok": [1.0, 2.0]},
                "queueGrowth": {"q": {"3": "fast", "4": 1.5}, "r": 7},
                "queueThroughput": {"q": None, "ok": 2.0},
                "queueTrail": {"q": [[0.0, "x", 1.0], [1.0], "junk", [5.0, 1, 1]]},
                "queueRef": ["not", "a", "mapping"],
            },
        }
        queue = History.from_json(data).queue
        assert queue.last == {"ok": (1.0, 2.0)}
        assert queue.growth == {"q": (GrowthPoint(4, 1.5, None),)}
        assert queue.throughput == {"ok": 2.0}
        assert queue.trails == {"q": ((5.0, 1.0, 1.0),)}
        assert queue.references == {}


class TestCurrentFormat:
    def test_round_trips_and_says_its_version(self) -> None:
        """The typed state is written in its own versioned entry and read back equal."""
        history = History.from_json(_v1())
        data = json.loads(json.dumps(history.to_json()))
        assert data["v"] == 2
        assert "extra" not in data
        assert data["queue"]["v"] == 1
        assert data["queue"]["growth"]["queueDepth"][0] == [
            3,
            pytest.approx(0.00088889, rel=1e-4),
            582.005,
        ]
        assert History.from_json(data) == history

    def test_policy_without_queue_state_writes_none(self) -> None:
        """An ``hpa`` policy's history carries no queue entry."""
        assert "queue" not in History(initialized=True).to_json()
        assert History.from_json(History().to_json()).queue == QueueState()

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            pytest.param({"v": 3}, "unknown history version 3", id="history version"),
            pytest.param({"v": 2, "queue": {"v": 9}}, "unknown queue state version 9", id="queue"),
            pytest.param({"v": 2, "queue": [1]}, "queue state is not a mapping", id="queue type"),
            pytest.param({"v": 1, "extra": [1]}, "extra is not a mapping", id="extra type"),
        ],
    )
    def test_unknown_or_malformed_forms_are_refused(
        self, data: dict[str, Any], message: str
    ) -> None:
        """A form this controller cannot read is an error naming what is wrong."""
        with pytest.raises(ValueError, match=message):
            History.from_json(data)


class TestResumed:
    """A history read back after a restart carries its newest recommendation over what the
    store says it may have held back."""

    def test_newest_count_carried_over_what_was_held_back(self) -> None:
        from autoscaler.decision.types import Recommendation, resumed

        recs = (Recommendation(100.0, 4), Recommendation(130.0, 2))
        history = History(recommendations=recs, held_back=60.0)
        assert resumed(history, 175.0).recommendations == (*recs, Recommendation(175.0, 2))
        # A restart long after: carried only as far as repeats could have gone unwritten.
        late = resumed(history, 1000.0)
        assert late.recommendations == (*recs, Recommendation(190.0, 2))
        assert late.held_back == 0.0

    def test_nothing_held_back_is_unchanged(self) -> None:
        from autoscaler.decision.types import Recommendation, resumed

        complete = History(recommendations=(Recommendation(100.0, 3),))
        assert resumed(complete, 500.0) is complete
        assert resumed(History(held_back=60.0), 50.0) == History()

    def test_held_back_round_trips(self) -> None:
        from autoscaler.decision.types import Recommendation

        history = History(recommendations=(Recommendation(1.0, 2),), held_back=60.0)
        assert History.from_json(history.to_json()) == history
        assert "heldBack" not in History().to_json()  # the usual form is unchanged
