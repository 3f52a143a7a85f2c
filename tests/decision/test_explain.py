"""The explanation record: the arithmetic shown is consistent with the decision."""

from __future__ import annotations

import json
import math

from autoscaler.decision.explain import render_text
from autoscaler.decision.types import (
    History,
    NoSignal,
    NoSignalReason,
    Observation,
    PodSamples,
    Recommendation,
    ScaleEvent,
    TargetSample,
)

from .helpers import (
    decide,
    object_metric,
    observe,
    pods_metric,
    policy,
    running_pods,
    samples,
    target,
)

NOW = 500.0


def scaled_up() -> tuple[dict[str, object], str, int]:
    """A scale-up limited by a Pods policy, with a stabilization window and past events."""
    pol = policy(
        [pods_metric("qps", 10.0), object_metric("rate", 100.0)],
        max_replicas=50,
        behavior={
            "scaleUp": {
                "stabilizationWindowSeconds": 60,
                "policies": [
                    {"type": "Pods", "value": 2, "periodSeconds": 60},
                    {"type": "Percent", "value": 50, "periodSeconds": 60},
                ],
            }
        },
    )
    history = History(
        initialized=True,
        recommendations=(Recommendation(NOW - 30, 9), Recommendation(NOW - 200, 3)),
        scale_up_events=(ScaleEvent(NOW - 20, 1),),
    )
    obs = observe(
        4, running_pods(4), {"qps": samples(30.0, 25.0, 20.0, 25.0), "rate": target(150.0)}
    )
    result = decide(pol, obs, history, NOW)
    return (
        dict(result.decision.explanation),
        render_text(result.decision),
        result.decision.desired_replicas,
    )


def test_arithmetic_is_consistent() -> None:
    """Per-metric ratio and proposal, window bound and policy limits reproduce the result."""
    exp, _, desired = scaled_up()
    qps, rate = exp["metrics"]  # type: ignore[misc]
    # qps: average 25 / 10 = 2.5 -> ceil(2.5 x 4) = 10
    assert qps["ratio"] == 2.5
    assert qps["proposal"] == math.ceil(qps["ratio"] * 4)
    # rate: 150 / 100 = 1.5 -> ceil(1.5 x 4 ready) = 6
    assert rate["proposal"] == math.ceil(rate["ratio"] * 4) == 6
    combined = exp["combined"]
    assert combined["proposal"] == max(qps["proposal"], rate["proposal"]) == 10  # type: ignore[index]
    stab = exp["stabilization"]
    # up window 60 s holds the record 9 @ -30 s -> min(10, 9) = 9
    assert stab["upWindow"] == [[30.0, 9]]  # type: ignore[index]
    assert stab["upBound"] == min(10, 9) == stab["value"]  # type: ignore[index]
    limits = exp["limits"]
    # period start 4 - 1 = 3: Pods 3 + 2 = 5, Percent ceil(3 x 1.5) = 5 -> Max 5
    assert [p["periodStart"] for p in limits["policies"]] == [3, 3]  # type: ignore[index]
    assert [p["limit"] for p in limits["policies"]] == [5, 5]  # type: ignore[index]
    assert limits["rateLimit"] == 5  # type: ignore[index]
    assert limits["output"] == min(stab["value"], limits["rateLimit"]) == desired  # type: ignore[index]
    assert exp["desiredReplicas"] == desired == 5
    assert exp["reason"].startswith("qps above target")  # type: ignore[union-attr]


def test_explanation_is_json_ready() -> None:
    """The explanation survives json.dumps unchanged."""
    exp, _, _ = scaled_up()
    assert json.loads(json.dumps(exp)) == exp


def test_sample_age_and_series() -> None:
    """Sample age is now - timestamp (oldest sample when given)."""
    exp, _, _ = scaled_up()
    assert exp["metrics"][0]["observation"]["sampleAge"] == NOW  # type: ignore[index]
    assert exp["metrics"][1]["observation"]["series"] == 1  # type: ignore[index]


def test_sample_age_bound_when_only_a_bound_is_known() -> None:
    """A source that knows only that every sample is newer than N s says so, not an age of 0."""
    pol = policy([pods_metric("qps", 10.0), object_metric("rate", 100.0)])
    qps = PodSamples({"p0": 10.0, "p1": 10.0}, timestamp=NOW, sample_age_below=60.0)
    rate = TargetSample(100.0, timestamp=NOW, oldest_sample=NOW - 75.0)
    result = decide(pol, observe(2, running_pods(2), {"qps": qps, "rate": rate}), History(), NOW)
    records = result.decision.explanation["metrics"]
    assert records[0]["observation"]["sampleAge"] is None  # type: ignore[index]
    assert records[0]["observation"]["sampleAgeBelow"] == 60.0  # type: ignore[index]
    assert records[1]["observation"]["sampleAge"] == 75.0  # type: ignore[index]
    assert "sampleAgeBelow" not in records[1]["observation"]  # type: ignore[index]
    text = render_text(result.decision)
    assert "age <60s" in text
    assert "age 75s" in text


def test_render_text_shows_each_step() -> None:
    """The text block names metrics, window, each policy with the chosen one, clamp and reason."""
    _, text, _ = scaled_up()
    assert "qps (prometheus): target AverageValue 10" in text
    assert "up window 60s [9@-30s] -> min 9" in text
    assert "Pods 2/60s: period start 3 -> limit 5 <- chosen" in text
    assert "clamp [1, 50]: 9 -> 5 (ScaleUpLimit)" in text
    assert text.splitlines()[-4].startswith("=> desired 5: qps above target")


def test_no_signal_is_explained() -> None:
    """An invalid metric shows its reason and the partial-metric rule."""
    pol = policy([pods_metric("qps", 10.0), object_metric("rate", 100.0)])
    obs = Observation(
        4,
        4,
        running_pods(4),
        {"qps": samples(1.0, 1.0, 1.0, 1.0), "rate": NoSignal(NoSignalReason.STALE, "old")},
    )
    decision = decide(pol, obs, History(initialized=True), NOW).decision
    text = render_text(decision)
    assert decision.desired_replicas == 4
    assert "no signal: stale old" in text
    assert "no scale-down on partial metrics" in text
    assert "INVALID FailedGetExternalMetric" in text


def test_llm_capacity_credit_is_explained() -> None:
    """llm mode records ready/starting/credited pods and the credit arithmetic."""
    from autoscaler.decision.types import PodInfo, PodPhase, PodSamples

    pol = policy(
        [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}], algorithm="llm"
    )
    pods = (
        PodInfo("a", PodPhase.RUNNING, ready=True, created_at=-900.0, ready_at=-600.0),
        PodInfo("b", PodPhase.RUNNING, ready=False, created_at=-10.0),
    )
    obs = Observation(2, 2, pods, {"kvCache": PodSamples({"a": 0.9}, 0.0)})
    decision = decide(pol, obs, History(initialized=True), 0.0).decision
    exp = decision.explanation
    assert exp["pods"]["credited"] == 1
    assert exp["pods"]["capacity"] == 2
    arithmetic = exp["metrics"][0]["arithmetic"]
    # demand 0.9 / 0.5 = 1.8 -> need 2 = capacity (1 ready + 1 credited) -> keep 2
    assert (arithmetic["need"], arithmetic["capacity"]) == (2, 2)
    assert decision.desired_replicas == 2
    assert "credited 1" in render_text(decision)
