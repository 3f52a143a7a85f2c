# ruff: noqa: E501 - upstream vector tables are kept one row per line, as upstream writes them
"""Conformance: HPA replica-calculator vectors ported from kubernetes/kubernetes.

Source: ``pkg/controller/podautoscaler/replica_calculator_test.go`` (post-1.33, with per-direction
``Tolerances``). Upstream levels are milli-units (``20000`` = 20.0); pods are ``p0..`` in order,
Running and Ready unless the row says otherwise. CPU ``Utilization`` rows whose pods are all ready
are ported as a Pods ``AverageValue`` metric of per-pod utilization percent (same arithmetic when
the readiness rules specific to CPU do not apply); ``TestReplicaCalc*CM*`` rows are direct ports.
"""

from __future__ import annotations

import pytest

from autoscaler.decision.hpa import hpa_metric_proposal
from autoscaler.decision.resolved import resolve
from autoscaler.decision.types import MetricObservation, NoSignal, NoSignalReason, PodPhase

from .helpers import (
    external_average_metric,
    object_metric,
    observe,
    pods_metric,
    policy,
    running_pods,
    samples,
    target,
)

P = PodPhase.PENDING
R = PodPhase.RUNNING
F = PodPhase.FAILED
TOL = (0.1, 0.1)


def propose(
    metric: dict[str, object],
    observation: MetricObservation,
    *,
    current: int,
    pods: int | None = None,
    ready: list[bool] | None = None,
    phases: list[PodPhase] | None = None,
    deleting: list[bool] | None = None,
    status: int | None = None,
    tol: tuple[float, float] = TOL,
) -> int | None:
    """Run one metric through the HPA calculator; ``tol`` is (scale-down, scale-up)."""
    pol = policy([metric], max_replicas=1000)
    count = pods if pods is not None else len(phases or ready or deleting or []) or current
    pod_list = running_pods(count, ready=ready, phases=phases, deleting=deleting)
    obs = observe(current, pod_list, {}, status=status)
    result = hpa_metric_proposal(
        resolve(pol).metrics[0],
        observation,
        obs,
        current=current,
        tol_down=tol[0],
        tol_up=tol[1],
    )
    return result.proposal


def m(*levels: int) -> tuple[float, ...]:
    """Upstream milli levels as values."""
    return tuple(level / 1000 for level in levels)


# --- Pods AverageValue (podMetric) -------------------------------------------------------------
# name, levels (milli), target (milli), current, extra kwargs, expected
PODS_ROWS = [
    ("TestReplicaCalcScaleUpCM", m(20000, 10000, 30000), 15.0, 3, {}, 4),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", m(50000, 10000, 30000), 15.0, 3, {"ready": [True, True, False]}, 6),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", m(50000, 15000, 30000), 15.0, 3, {"ready": [False, True, False]}, 7),
    ("TestReplicaCalcScaleUpCMExternal", m(8600), 4.4, 1, {}, 2),
    ("TestReplicaCalcScaleUpCMExternalNoLabels", m(8600), 4.4, 1, {}, 2),
    ("TestReplicaCalcScaleDownCM", m(12000, 12000, 12000, 12000, 12000), 20.0, 5, {}, 3),
    ("TestReplicaCalcToleranceCM", m(20000, 21000, 21000), 20.0, 3, {}, 3),
    ("TestReplicaCalcConfigurableToleranceCM", m(20000, 21000, 21000), 20.0, 3, {"tol": (0.1, 0.01)}, 4),
    ("TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", m(20000, 19000, 21000), 20.0, 5, {}, 5),
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM", m(10000, 10000), 17.0, 2, {"phases": [R, R, R]}, 2),
    # CPU utilization rows as per-pod percent (requests all 1.0, every pod ready)
    ("TestReplicaCalcScaleUp", (30.0, 50.0, 70.0), 30.0, 3, {}, 5),
    ("TestReplicaCalcScaleDown", (10.0, 30.0, 50.0, 25.0, 25.0), 50.0, 5, {}, 3),
    ("TestReplicaCalcScaleUpIgnoresFailedPods", (50.0, 70.0), 30.0, 2, {"phases": [R, R, F, F], "ready": [True, True, False, False]}, 4),
    ("TestReplicaCalcScaleUpIgnoresDeletionPods", (50.0, 70.0), 30.0, 2, {"deleting": [False, False, True, True], "ready": [True, True, False, False]}, 4),
    ("TestReplicaCalcScaleDownIgnoresFailedPods", (10.0, 30.0, 50.0, 25.0, 25.0), 50.0, 5, {"phases": [R, R, R, R, R, F, F]}, 3),
    ("TestReplicaCalcScaleDownIgnoresDeletionPods", (10.0, 30.0, 50.0, 25.0, 25.0), 50.0, 5, {"deleting": [False] * 5 + [True, True]}, 3),
    ("TestReplicaCalcScaleDownExcludeUnscheduledPods", (10.0,), 50.0, 5, {"phases": [R, P, P, P, P], "ready": [True, False, False, False, False]}, 1),
    ("TestReplicaCalcMissingMetrics", (40.0, 9.5), 100.0, 4, {}, 3),
    ("TestReplicaCalcMissingMetricsNoChangeEq", (100.0,), 100.0, 2, {}, 2),
    ("TestReplicaCalcMissingMetricsNoChangeGt", (190.0,), 100.0, 2, {}, 2),
    ("TestReplicaCalcMissingMetricsNoChangeLt", (60.0,), 100.0, 2, {}, 2),
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurge", (10.0, 10.0), 50.0, 2, {"phases": [R, R, R]}, 2),
    ("TestReplicaCalcConfigurableTolerance/Outside of a 0% tolerance", (101.0, 101.0, 101.0), 100.0, 3, {"tol": (0.0, 0.0)}, 4),
    ("TestReplicaCalcConfigurableTolerance/Within a 200% scale-up tolerance", (190.0, 190.0, 190.0), 100.0, 3, {"tol": (0.1, 2.0)}, 3),
    ("TestReplicaCalcConfigurableTolerance/Outside 8% scale-up tolerance", (109.0, 109.0, 109.0), 100.0, 3, {"tol": (2.0, 0.08)}, 4),
    ("TestReplicaCalcConfigurableTolerance/Within a 36% scale-down tolerance", (65.0, 65.0, 65.0), 100.0, 3, {"tol": (0.36, 0.1)}, 3),
    ("TestReplicaCalcConfigurableTolerance/Outside a 34% scale-down tolerance", (65.0, 65.0, 65.0), 100.0, 3, {"tol": (0.34, 0.1)}, 2),
    ("TestReplicaCalcTolerance", (102.0, 102.0, 102.0), 100.0, 3, {}, 3),
]  # fmt: skip


@pytest.mark.parametrize(
    ("levels", "target_value", "current", "kwargs", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in PODS_ROWS],
)
def test_pods_average_value(
    *,
    levels: tuple[float, ...],
    target_value: float,
    current: int,
    kwargs: dict[str, object],
    expected: int,
) -> None:
    """Pods ``AverageValue``: milli average, tolerance, missing/unready pods, direction guards."""
    got = propose(pods_metric("qps", target_value), samples(*levels), current=current, **kwargs)  # type: ignore[arg-type]
    assert got == expected


def test_superfluous_metrics() -> None:
    """TestReplicaCalcSuperfluousMetrics: samples of pods not in the list still average in."""
    # Upstream (CPU) divides the 6 samples' usage by the 4 pods' requests (587 %, 24 pods). As a
    # Pods metric the average runs over all 6 samples: 2870000 milli // 6 = 478333 -> ratio
    # 4.78333 (target 100), times the 4 pods that have a sample -> ceil(19.13) = 20.
    got = propose(
        pods_metric("qps", 100.0),
        samples(400.0, 950.0, 300.0, 700.0, 320.0, 200.0),
        current=4,
        pods=4,
    )
    assert got == 20


# --- Object / External Value ------------------------------------------------------------------
# name, value (milli), target (milli), current, extra kwargs, expected
VALUE_ROWS = [
    ("TestReplicaCalcScaleUpCMObject", 20000, 15000, 3, {}, 4),
    ("TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods", 50000, 10000, 3, {"ready": [False, True, False]}, 5),
    ("TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", 8600, 4400, 3, {"ready": [False, True, False]}, 2),
    ("TestReplicaCalcScaleDownCMObject", 12000, 20000, 5, {}, 3),
    ("TestReplicaCalcScaleDownCMExternal", 8600, 14334, 5, {}, 3),
    ("TestReplicaCalcToleranceCMObject", 20666, 20000, 3, {}, 3),
    ("TestReplicaCalcToleranceCMExternal", 8600, 8888, 3, {}, 3),
    ("TestReplicaCalcConfigurableToleranceCMObject", 20666, 20000, 3, {"tol": (0.1, 0.01)}, 4),
    ("TestReplicaCalcConfigurableToleranceCMExternal", 8900, 8800, 3, {"tol": (0.1, 0.01)}, 4),
    # currentReplicas 0 (scale-from-zero path): ceil(ratio), tolerance ignored
    ("getUsageRatioReplicaCount/current 0", 20500, 10000, 0, {"pods": 0}, 3),
    ("getUsageRatioReplicaCount/current 0 within tolerance", 10500, 10000, 0, {"pods": 0}, 2),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "target_value", "current", "kwargs", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in VALUE_ROWS],
)
def test_object_value(
    *, value: int, target_value: int, current: int, kwargs: dict[str, object], expected: int
) -> None:
    """Object/External ``Value``: ``ceil(value/target x readyPods)`` (Running and Ready)."""
    got = propose(
        object_metric("qps", target_value / 1000), target(value / 1000), current=current, **kwargs
    )  # type: ignore[arg-type]
    assert got == expected


# name, total (milli), per-pod target (milli), status replicas, extra kwargs, expected
PER_POD_ROWS = [
    ("TestReplicaCalcScaleUpCMPerPodObject", 20000, 5000, 3, {}, 4),
    ("TestReplicaCalcScaleUpPerPodCMExternal", 8600, 2150, 3, {}, 4),
    ("TestReplicaCalcScaleDownPerPodCMObject", 6000, 2000, 5, {}, 3),
    ("TestReplicaCalcScaleDownPerPodCMExternal", 8600, 2867, 5, {}, 3),
    ("TestReplicaCalcTolerancePerPodCMObject", 20166, 5000, 4, {}, 4),
    ("TestReplicaCalcTolerancePerPodCMExternal", 8600, 2900, 3, {}, 3),
    ("TestReplicaCalcConfigurableTolerancePerPodCMObject", 20208, 5000, 4, {"tol": (0.1, 0.01)}, 5),
    ("TestReplicaCalcConfigurableTolerancePerPodCMExternal", 8600, 2800, 3, {"tol": (0.1, 0.01)}, 4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("total", "target_value", "status", "kwargs", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in PER_POD_ROWS],
)
def test_external_average_value(
    *, total: int, target_value: int, status: int, kwargs: dict[str, object], expected: int
) -> None:
    """External/Object ``AverageValue``: ratio against ``statusReplicas``; else ceil(total/t)."""
    got = propose(
        external_average_metric("qps", target_value / 1000),
        target(total / 1000),
        current=status,
        status=status,
        **kwargs,  # type: ignore[arg-type]
    )
    assert got == expected


def test_no_samples_is_invalid() -> None:
    """No sample from any countable pod: the metric is invalid (``FailedGetPodsMetric``)."""
    pol = policy([pods_metric("qps", 10.0)])
    obs = observe(3, running_pods(3, phases=[P, P, P], ready=[False] * 3), {})
    result = hpa_metric_proposal(
        resolve(pol).metrics[0], samples(50.0, 50.0, 50.0), obs, current=3, tol_down=0.1, tol_up=0.1
    )
    assert result.proposal is None
    assert result.failure_reason == "FailedGetPodsMetric"


def test_no_signal_is_invalid_with_source_reason() -> None:
    """No signal: a per-pod Value metric is ``FailedGetObjectMetric``, a whole-target one External."""
    per_pod_value = {
        "prometheus": {
            "name": "a",
            "query": "q",
            "returns": "perPod",
            "target": {"type": "Value", "value": 1.0},
        }
    }
    pol = policy([per_pod_value, external_average_metric("b", 1.0)])
    rp = resolve(pol)
    obs = observe(3, running_pods(3), {})
    gone = NoSignal(NoSignalReason.QUERY_ERROR, "boom")
    first = hpa_metric_proposal(rp.metrics[0], gone, obs, current=3, tol_down=0.1, tol_up=0.1)
    second = hpa_metric_proposal(rp.metrics[1], gone, obs, current=3, tol_down=0.1, tol_up=0.1)
    assert (first.failure_reason, second.failure_reason) == (
        "FailedGetObjectMetric",
        "FailedGetExternalMetric",
    )
    assert "boom" in first.failure_message
