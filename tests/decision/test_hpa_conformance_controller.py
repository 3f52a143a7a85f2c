"""Conformance: controller-level HPA vectors (``horizontal_test.go``) run through ``decide``.

CPU rows are ported as a Pods metric of per-pod utilization percent (all pods ready, equal
requests), External metrics as whole-target samples. Tests without ``behavior`` use the legacy
path with the product's scale-up factor 2 (upstream raises it to 8; each row notes when that
matters). ``History(initialized=True)`` stands for upstream's explicit empty recommendation list.
"""

from __future__ import annotations

import pytest

from autoscaler.decision.types import (
    ConditionType,
    Decision,
    History,
    NoSignal,
    NoSignalReason,
    Recommendation,
)
from autoscaler.policy.models import ScalingPolicy

from .helpers import (
    decide,
    object_metric,
    observe,
    pods_metric,
    policy,
    record_rescale,
    rules,
    running_pods,
    samples,
)

NOW = 1_000.0
SEEDED = History(initialized=True)
FAILED = NoSignal(NoSignalReason.QUERY_ERROR, "something went wrong")


def reasons(decision: Decision) -> dict[str, tuple[bool, str]]:
    """Condition type -> (status, reason)."""
    return {c.type.value: (c.status, c.reason) for c in decision.conditions}


def test_scale_up_rc_immediately() -> None:
    """TestScaleUpRCImmediately: current 1 < min 2 -> 2 without reading metrics."""
    pol = policy([pods_metric("cpu", 50.0)], min_replicas=2, max_replicas=6)
    result = decide(pol, observe(1, running_pods(1), {}), SEEDED, NOW)
    assert result.decision.desired_replicas == 2
    assert result.decision.reason == "Current number of replicas below Spec.MinReplicas"
    assert result.decision.metric_proposals == {}


def test_scale_down_rc_immediately() -> None:
    """TestScaleDownRCImmediately: current 6 > max 5 -> 5 without reading metrics."""
    pol = policy([pods_metric("cpu", 50.0)], min_replicas=2, max_replicas=5)
    result = decide(pol, observe(6, running_pods(6), {}), SEEDED, NOW)
    assert result.decision.desired_replicas == 5
    assert result.decision.reason == "Current number of replicas above Spec.MaxReplicas"


def test_scaling_disabled_at_zero() -> None:
    """reconcileAutoscaler: spec 0 with min 1 -> ScalingDisabled, desired 0, no change."""
    pol = policy([pods_metric("cpu", 50.0)], min_replicas=1, max_replicas=5)
    result = decide(pol, observe(0, (), {"cpu": samples()}), History(), NOW)
    assert result.decision.desired_replicas == 0
    assert not result.decision.scale
    assert reasons(result.decision)["ScalingActive"] == (False, "ScalingDisabled")
    # first sight still seeds the window with (now, 0)
    assert result.history.recommendations == (Recommendation(NOW, 0),)


def test_scale_up_one_metric_empty() -> None:
    """TestScaleUpOneMetricEmpty: one valid metric scales up (3 -> 4) while another fails."""
    pol = policy(
        [pods_metric("cpu", 30.0), object_metric("qps", 0.1)], min_replicas=2, max_replicas=6
    )
    obs = observe(3, running_pods(3), {"cpu": samples(30.0, 40.0, 50.0), "qps": FAILED})
    # avg 40 / 30 = 1.333 -> ceil(1.333 * 3) = 4; legacy cap max(2*3, 4) = 6 does not bind
    result = decide(pol, obs, SEEDED, NOW)
    assert result.decision.desired_replicas == 4
    assert reasons(result.decision)["ScalingActive"] == (True, "ValidMetricFound")
    assert result.decision.reason == "cpu above target"


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(FAILED, id="TestNoScaleDownOneMetricEmpty"),
        pytest.param(NoSignal(NoSignalReason.INVALID, "bad"), id="TestNoScaleDownOneMetricInvalid"),
    ],
)
def test_no_scale_down_one_metric_invalid(failure: NoSignal) -> None:
    """Some metric invalid and the valid ones propose less than current: no change."""
    pol = policy(
        [pods_metric("cpu", 50.0), object_metric("qps", 1.0)], min_replicas=2, max_replicas=6
    )
    obs = observe(
        5, running_pods(5), {"cpu": samples(10.0, 30.0, 50.0, 25.0, 25.0), "qps": failure}
    )
    # cpu alone: avg 28 / 50 = 0.56 -> ceil(0.56 * 5) = 3 < 5, qps invalid -> hold at 5
    result = decide(pol, obs, SEEDED, NOW)
    assert result.decision.desired_replicas == 5
    conds = reasons(result.decision)
    assert conds["AbleToScale"] == (True, "SucceededGetScale")
    assert conds["ScalingActive"] == (False, "FailedGetExternalMetric")
    assert result.history.recommendations == ()  # nothing stored on an error tick


@pytest.mark.parametrize(
    ("max_replicas", "expected", "limit_reason"),
    [
        pytest.param(100, 24, "ScaleUpLimit", id="TestUpscaleCap"),
        pytest.param(20, 20, "TooManyReplicas", id="TestUpscaleCapGreaterThanMaxReplicas"),
    ],
)
def test_upscale_cap(max_replicas: int, expected: int, limit_reason: str) -> None:
    """Percent 700 / 60 s: 3 -> ceil(3 * 8) = 24 (or max)."""
    pol = policy(
        [pods_metric("cpu", 10.0)],
        max_replicas=max_replicas,
        behavior={"scaleUp": rules(percent=700, percent_period=60)},
    )
    # 100m of 100m request = 100 %... upstream levels 100, 200, 300 of 0.1 CPU -> 200 % average
    obs = observe(3, running_pods(3), {"cpu": samples(200.0, 200.0, 200.0)})
    result = decide(pol, obs, History(), NOW)
    assert result.decision.desired_replicas == expected
    assert reasons(result.decision)["ScalingLimited"] == (True, limit_reason)


def test_missing_reports() -> None:
    """TestMissingReports: 1 pod at 100 % of a 50 % target, spec 4 -> 2 (legacy, empty log)."""
    pol = policy([pods_metric("cpu", 50.0)], max_replicas=5)
    result = decide(pol, observe(4, running_pods(1), {"cpu": samples(100.0)}), SEEDED, NOW)
    assert result.decision.desired_replicas == 2
    assert result.decision.reason == "All metrics below target"


def test_no_backoff_upscale_cm() -> None:
    """TestNoBackoffUpscaleCM: qps {20, 10, 30} / 15 -> 4 right after a previous scale."""
    pol = policy([pods_metric("qps", 15.0)], max_replicas=5)
    result = decide(pol, observe(3, running_pods(3), {"qps": samples(20, 10, 30)}), SEEDED, NOW)
    assert result.decision.desired_replicas == 4
    assert reasons(result.decision)["AbleToScale"] == (True, "ReadyForNewScale")


def test_no_backoff_upscale_cm_no_backoff_cpu() -> None:
    """TestNoBackoffUpscaleCMNoBackoffCpu: max over cpu (5) and qps (4) -> 5, TooManyReplicas."""
    pol = policy([pods_metric("cpu", 100.0), pods_metric("qps", 15.0)], max_replicas=5)
    obs = observe(
        3, running_pods(3), {"cpu": samples(150.0, 150.0, 150.0), "qps": samples(20, 10, 30)}
    )
    # cpu: 150 % / 100 % -> ceil(1.5 * 3) = 5 (upstream 150m of 100m requests); qps -> 4
    result = decide(pol, obs, SEEDED, NOW)
    assert result.decision.desired_replicas == 5
    assert result.decision.metric_proposals == {"cpu": 5, "qps": 4}


def test_stabilize_downscale() -> None:
    """TestStabilizeDownscale: records {10 @ -10 m, 4 @ -1 m}; metrics want 1 -> hold at 4."""
    pol = policy([pods_metric("cpu", 100.0)], max_replicas=5)
    history = History(
        initialized=True,
        recommendations=(Recommendation(NOW - 600, 10), Recommendation(NOW - 60, 4)),
    )
    obs = observe(4, running_pods(4), {"cpu": samples(5.0, 5.0, 5.0, 5.0)})
    result = decide(pol, obs, history, NOW)
    assert result.decision.desired_replicas == 4
    assert reasons(result.decision)["AbleToScale"] == (True, "ScaleDownStabilized")


def test_stabilize_downscale_initial_size() -> None:
    """TestScaleTimingBehavior 'stabilize downscale initial size': first sight blocks the drop."""
    pol = policy([pods_metric("cpu", 100.0)], max_replicas=5)
    obs = observe(4, running_pods(4), {"cpu": samples(5.0, 5.0, 5.0, 5.0)})
    first = decide(pol, obs, History(), NOW)
    assert first.decision.desired_replicas == 4
    # 300 s later the seed is outside the window (strict), the drop goes through
    later = decide(pol, obs, first.history, NOW + 300)
    assert later.decision.desired_replicas == 1


def test_behavior_default_scale_up_limit_through_decide() -> None:
    """TestScalingWithRules 'scaleUp with default behavior' end to end: 10 -> 20."""
    pol = policy([pods_metric("qps", 1.0)], max_replicas=1000, behavior={})
    obs = observe(10, running_pods(10), {"qps": samples(*([5.0] * 10))})
    result = decide(pol, obs, SEEDED, NOW)
    # desired ceil(5 * 10) = 50; Pods 4 -> 14, Percent 100 -> 20; Max -> 20
    assert result.decision.desired_replicas == 20
    assert reasons(result.decision)["ScalingLimited"] == (True, "ScaleUpLimit")
    after = record_rescale(pol, result.history, NOW, 10, 20)
    assert [(e.change, e.outdated) for e in after.scale_up_events] == [(10, False)]


def test_legacy_path_stores_no_events() -> None:
    """storeScaleEvent without behavior stores nothing."""
    pol = policy([pods_metric("qps", 1.0)])
    assert record_rescale(pol, SEEDED, NOW, 2, 4) == SEEDED


def test_legacy_scale_up_cap_product_factor() -> None:
    """Legacy cap with the product factor 2: 3 -> int(max(6, 4)) = 6 (upstream factor 8: 24)."""
    pol = policy([pods_metric("cpu", 10.0)], max_replicas=100)
    obs = observe(3, running_pods(3), {"cpu": samples(200.0, 200.0, 200.0)})
    result = decide(pol, obs, SEEDED, NOW)
    assert result.decision.desired_replicas == 6
    assert reasons(result.decision)["ScalingLimited"] == (True, "ScaleUpLimit")


def test_all_metrics_invalid_is_no_change() -> None:
    """All metrics invalid: desired = current, ScalingActive False with the first reason."""
    pol = policy([pods_metric("cpu", 10.0)])
    result = decide(pol, observe(3, running_pods(3), {}), SEEDED, NOW)
    assert result.decision.desired_replicas == 3
    assert reasons(result.decision)[ConditionType.SCALING_ACTIVE.value] == (
        False,
        "FailedGetPodsMetric",
    )
    assert result.history.consecutive_failures == 1


# Scale-up and scale-down steps (t, replicas before, replicas after) of the recorded case.
_EVENT_STEPS = [
    (120.0, 2, 7),
    (165.0, 7, 9),
    (255.0, 9, 10),
    (455.0, 10, 15),
    (470.0, 15, 16),
    (590.0, 16, 17),
    (665.0, 17, 14),
]


def _event_policy() -> ScalingPolicy:
    """scaleUp Pods 215/60 s (window 60 s); scaleDown Percent 10 %/60 s + Pods 2/300 s, Min."""
    return policy(
        [pods_metric("qps", 10.0)],
        min_replicas=1,
        max_replicas=300,
        behavior={
            "scaleUp": rules(pods=215, pods_period=60, window=60),
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": "Min",
                "policies": [
                    {"type": "Percent", "value": 10, "periodSeconds": 60},
                    {"type": "Pods", "value": 2, "periodSeconds": 300},
                ],
            },
        },
    )


def test_scale_events_kept_as_the_hpa_keeps_them() -> None:
    """storeScaleEvent: events are never dropped; a new one overwrites the last outdated slot.

    After six scale-ups and a scale-down the HPA's scale-up list is ``[+1 @470 (outdated),
    +1 @590]``: each new event went into the last outdated slot. At 725 s the Pods 2/300 s policy
    starts from 14 - 2 + 3 = 15 and limits the scale-down to 13 (Percent gives 12; Min takes the
    larger). Dropping the events older than 300 s changed which slots were overwritten and
    allowed 12.
    """
    pol = _event_policy()
    history = History(initialized=True)
    for t, before, after in _EVENT_STEPS:
        history = record_rescale(pol, history, t, before, after)
    result = decide(
        pol, observe(14, running_pods(14), {"qps": samples(*[3.0] * 14)}), history, 725.0
    )
    limits = result.decision.explanation["limits"]
    assert [p["limit"] for p in limits["policies"]] == [12, 13]
    assert result.decision.desired_replicas == 13
    assert reasons(result.decision)["ScalingLimited"] == (True, "ScaleDownLimit")


def test_scale_event_list_stays_bounded_without_pruning() -> None:
    """Overwriting outdated slots bounds each list by the events inside its longest period."""
    pol = _event_policy()
    history = History(initialized=True)
    replicas = 1
    for step in range(400):
        t = 15.0 * step
        if step % 3 == 2:
            history = record_rescale(pol, history, t, replicas, replicas - 1)
            replicas -= 1
        else:
            history = record_rescale(pol, history, t, replicas, replicas + 1)
            replicas += 1
    # Up: longest period 60 s, an up event at most every 15 s -> at most 4 inside, plus one slot.
    assert len(history.scale_up_events) <= 5
    # Down: longest period 300 s, one down event every 45 s -> at most 7 inside, plus one slot.
    assert len(history.scale_down_events) <= 8
