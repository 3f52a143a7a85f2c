"""Every JSON output of a decision follows ``docs/schema/decision.schema.json``.

The decisions are those of the seeded random scenarios of :mod:`tests.decision.test_snapshot`
(both algorithms, pre-checks, failures, fallback, every limit), plus fleet records; each is
written as a dry-run line, an ``explain --output json`` document, a ``replay --output json`` row
and a status annotation record, and each of those is validated. The commands and the recorder
themselves are checked end to end in ``test_replay.py``, ``tests/metrics/test_explain_command.py``
and ``tests/kube/test_recorder.py``.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

import pytest

from autoscaler.commands.explain import decision_to_json
from autoscaler.commands.printer import DecisionPrinter
from autoscaler.commands.replay import ReplayRow
from autoscaler.controller.ports import Outcome
from autoscaler.decision.fleet import with_records
from autoscaler.decision.record import SCHEMA_ID, decision_record
from autoscaler.decision.types import Decision, History, Observation
from autoscaler.kube.recorder import status_record
from autoscaler.policy.models import ScalingPolicy

from .helpers import decide, record_rescale
from .schema import assert_valid, validator
from .test_snapshot import random_observation, random_policy

SEEDS = range(24)


def scenario(seed: int) -> Iterator[tuple[ScalingPolicy, Decision, Observation]]:
    """The decisions of one random scenario (as the snapshot runs them, rescales recorded)."""
    rng = random.Random(seed)
    pol = random_policy(rng, "hpa" if seed % 2 == 0 else "llm")
    history = History()
    current = rng.randint(0, 8)
    now = round(1000.0 * rng.random(), 3)
    for _ in range(12):
        observation = random_observation(rng, pol, current, now)
        result = decide(pol, observation, history, now)
        yield pol, result.decision, observation
        history = result.history
        desired = result.decision.desired_replicas
        if desired != current:
            history = record_rescale(pol, history, now, current, desired)
            current = desired
        now += rng.choice([15.0, 30.0, 301.0])


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The schema file is itself valid and carries the id the code names."""
    assert validator().schema["$id"] == SCHEMA_ID


@pytest.mark.parametrize("seed", SEEDS)
def test_every_output_of_every_decision_validates(seed: int) -> None:
    """Dry-run line, explain document, replay row and status record of each decision."""
    for pol, decision, observation in scenario(seed):
        out = io.StringIO()
        DecisionPrinter(out, "json")(decision)
        line = json.loads(out.getvalue())
        assert_valid(line)
        assert line == json.loads(json.dumps(decision_record(decision)))
        assert_valid(json.loads(json.dumps(decision_to_json(decision, observation))))
        row = json.loads(json.dumps(ReplayRow(decision.timestamp, decision).to_json()))
        assert_valid(row)
        assert (row["desiredReplicas"], row["reason"]) == (
            decision.desired_replicas,
            decision.reason,
        )
        status = status_record(pol, decision, Outcome.SCALED, None, "2026-01-01T00:00:00Z")
        assert_valid({**json.loads(json.dumps(status)), "observedAt": "2026-01-01T00:00:00Z"})


def test_fleet_records_validate() -> None:
    """A decision carrying mode and budget records validates in every output."""
    pol, decision, observation = next(scenario(1))
    marked = with_records(
        decision,
        {
            "mode": {"mode": "advisory", "source": "annotation"},
            "budgets": [
                {
                    "budget": "gpus",
                    "maxGpus": 16,
                    "gpusPerReplica": 2,
                    "granted": 3,
                    "desired": 4,
                    "heldBack": True,
                }
            ],
        },
    )
    status = status_record(pol, marked, Outcome.ADVISORY, None, None)
    assert status["mode"] == "advisory"
    assert_valid(json.loads(json.dumps(status)))
    assert_valid(json.loads(json.dumps(decision_to_json(marked, observation))))


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param({"desiredReplicas": -1}, "desiredReplicas", id="negative desired"),
        pytest.param({"unknownKey": 1}, "<root>", id="unknown key"),
        pytest.param(
            {"conditions": [{"type": "AbleToScale", "status": True, "reason": "x", "message": ""}]},
            "conditions/0/status",
            id="boolean condition status",
        ),
    ],
)
def test_schema_rejects_what_it_does_not_describe(change: dict[str, object], path: str) -> None:
    """The schema is strict enough to catch a drifted output."""
    _, decision, _ = next(scenario(0))
    record = {**json.loads(json.dumps(decision_record(decision))), **change}
    with pytest.raises(AssertionError, match=path):
        assert_valid(record)
