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
from autoscaler.decision.types import Decision, History, NoSignal, NoSignalReason, Observation
from autoscaler.kube.recorder import status_record
from autoscaler.policy.models import ScalingPolicy

from .helpers import decide, observe, record_rescale, running_pods, target
from .schema import assert_valid, validator
from .test_snapshot import random_observation, random_policy
from .test_zero import GATEWAY_QUEUE, GATEWAY_RATE, KV, fleet, zero_policy

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


def zero_scenario() -> Iterator[tuple[ScalingPolicy, Decision, Observation]]:
    """A scale-to-zero policy through each of its records: at zero with nothing waiting, with a
    signal missing, waking (sized from the capacity seed), a replica starting (held at the wake-up
    size), serving, idle, back to zero."""
    pol = zero_policy(
        [KV, GATEWAY_QUEUE, GATEWAY_RATE],
        idle_for="5m",
        slo={"ttft": {"quantile": 0.95, "target": 2.0}},
        capacity={"requestsPerSecond": 0.5},
    )
    missing = NoSignal(NoSignalReason.EMPTY, "no series")
    idle = {**fleet(), "gatewayRequestRate": target(0)}
    ticks = [
        (0.0, observe(0, (), {"gatewayQueue": target(0), "gatewayRequestRate": target(0)})),
        (15.0, observe(0, (), {"gatewayQueue": missing, "gatewayRequestRate": target(0)})),
        (30.0, observe(0, (), {"gatewayQueue": target(30), "gatewayRequestRate": target(0.6)})),
        (45.0, observe(2, running_pods(2, ready=[False, False]), {"gatewayQueue": target(40)})),
        (60.0, observe(1, running_pods(1), {**fleet(rate=0.4, running=2.0)})),
        (75.0, observe(1, running_pods(1), idle)),
        (400.0, observe(1, running_pods(1), idle)),
    ]
    history = History()
    for now, observation in ticks:
        result = decide(pol, observation, history, now)
        yield pol, result.decision, observation
        history = result.history


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


def test_scale_to_zero_records_validate() -> None:
    """Every output of every decision of a scale-to-zero policy, its ``scaleToZero`` record in
    each of its forms (at zero, waking, held while starting, idle timer, scaled to zero)."""
    seen: set[str] = set()
    for pol, decision, observation in zero_scenario():
        record = json.loads(json.dumps(decision_record(decision)))
        assert_valid(record)
        assert_valid(json.loads(json.dumps(decision_to_json(decision, observation))))
        assert_valid(json.loads(json.dumps(ReplayRow(decision.timestamp, decision).to_json())))
        status = status_record(pol, decision, Outcome.SCALED, None, None)
        assert_valid(json.loads(json.dumps(status)))
        rule = record["explanation"]["scaleToZero"]
        assert record["explanation"]["minReplicas"] == 0
        seen.update(key for key in ("waking", "capacitySource", "idleSince") if key in rule)
        seen.add(decision.reason.split(":")[0])
    assert seen >= {
        "At zero",
        "Scale from zero",
        "capacitySource",
        "waking",
        "idleSince",
        "Scale to zero",
    }


def test_scale_to_zero_record_is_described() -> None:
    """The schema knows the record's fields: a misspelt one is caught."""
    _, decision, _ = next(zero_scenario())
    record = json.loads(json.dumps(decision_record(decision)))
    record["explanation"]["scaleToZero"]["idleFor"] = 300
    with pytest.raises(AssertionError, match="explanation/scaleToZero"):
        assert_valid(record)


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
