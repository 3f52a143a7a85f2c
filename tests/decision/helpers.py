"""Builders shared by the decision-core tests: policies, pods and observations."""

from __future__ import annotations

from typing import Any

from autoscaler.decision import core
from autoscaler.decision.resolved import DEFAULT_FLAGS, HpaFlags, resolve
from autoscaler.decision.types import (
    DecisionResult,
    History,
    MetricObservation,
    Observation,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)
from autoscaler.policy.models import ScalingPolicy


def decide(
    policy: ScalingPolicy,
    observation: Observation,
    history: History,
    now: float,
    *,
    flags: HpaFlags = DEFAULT_FLAGS,
) -> DecisionResult:
    """:func:`autoscaler.decision.core.decide` on ``policy`` resolved for this one call."""
    return core.decide(resolve(policy, flags), observation, history, now)


def record_rescale(
    policy: ScalingPolicy, history: History, now: float, current: int, desired: int
) -> History:
    """:func:`autoscaler.decision.core.record_rescale` on ``policy`` resolved for this call."""
    return core.record_rescale(resolve(policy), history, now, current, desired)


def policy(
    metrics: list[dict[str, Any]] | None = None,
    *,
    min_replicas: int = 1,
    max_replicas: int = 10,
    behavior: dict[str, Any] | None = None,
    algorithm: str = "hpa",
    **spec: Any,
) -> ScalingPolicy:
    """A validated policy; ``behavior=None`` means the legacy (no behavior) path."""
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": metrics or [pods_metric("qps", 1.0)],
        "algorithm": algorithm,
    }
    if behavior is not None:
        body["behavior"] = behavior
    body.update(spec)
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "test", "namespace": "ns"},
            "spec": body,
        }
    )


def pods_metric(name: str, average: float) -> dict[str, Any]:
    """A per-pod custom metric with an AverageValue target (HPA Pods metric)."""
    return {
        "prometheus": {
            "name": name,
            "query": "q",
            "returns": "perPod",
            "target": {"type": "AverageValue", "averageValue": average},
        }
    }


def object_metric(name: str, value: float) -> dict[str, Any]:
    """A whole-target metric with a Value target (HPA Object/External Value)."""
    return {
        "prometheus": {
            "name": name,
            "query": "q",
            "returns": "target",
            "target": {"type": "Value", "value": value},
        }
    }


def external_average_metric(name: str, average: float) -> dict[str, Any]:
    """A whole-target metric with an AverageValue target (HPA External AverageValue)."""
    return {
        "prometheus": {
            "name": name,
            "query": "q",
            "returns": "target",
            "target": {"type": "AverageValue", "averageValue": average},
        }
    }


def rules(
    *,
    pods: int = 0,
    pods_period: int = 0,
    percent: int = 0,
    percent_period: int = 0,
    window: int = 0,
    select: str = "Max",
) -> dict[str, Any]:
    """Scaling rules like upstream ``generateScalingRules`` (a 0 value omits that policy)."""
    policies = []
    if pods:
        policies.append({"type": "Pods", "value": pods, "periodSeconds": pods_period})
    if percent:
        policies.append({"type": "Percent", "value": percent, "periodSeconds": percent_period})
    return {"stabilizationWindowSeconds": window, "selectPolicy": select, "policies": policies}


def running_pods(
    count: int,
    *,
    ready: list[bool] | None = None,
    phases: list[PodPhase] | None = None,
    deleting: list[bool] | None = None,
) -> tuple[PodInfo, ...]:
    """Pods ``p0..p{count-1}``, Running and Ready unless told otherwise."""
    return tuple(
        PodInfo(
            name=f"p{i}",
            phase=phases[i] if phases else PodPhase.RUNNING,
            ready=ready[i] if ready else True,
            deleting=deleting[i] if deleting else False,
        )
        for i in range(count)
    )


def samples(*values: float, start: int = 0) -> PodSamples:
    """Per-pod samples for pods ``p{start}``, ``p{start+1}``, ... at time 0."""
    return PodSamples({f"p{start + i}": v for i, v in enumerate(values)}, timestamp=0.0)


def observe(
    current: int,
    pods: tuple[PodInfo, ...],
    metrics: dict[str, MetricObservation],
    status: int | None = None,
) -> Observation:
    """An observation with ``spec.replicas = current``."""
    return Observation(current, current if status is None else status, pods, metrics)


def target(value: float) -> TargetSample:
    """A whole-target sample at time 0."""
    return TargetSample(value, timestamp=0.0)
