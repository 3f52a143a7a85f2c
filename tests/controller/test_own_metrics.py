"""The controller's own per-policy series: exported per decision, static ones per policy change."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from autoscaler.decision.types import Decision
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy.models import ScalingPolicy


def _policy(max_replicas: int = 8) -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "llama", "namespace": "llm"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
                "maxReplicas": max_replicas,
                "metrics": [
                    {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
                    {"interTokenLatency": {"target": {"type": "Value", "value": 0.05}}},
                ],
            },
        }
    )


def _decision(kv: float | None, itl: float | None, reason: str = "steady") -> Decision:
    return Decision(
        policy="llm/llama",
        timestamp=0.0,
        current_replicas=2,
        desired_replicas=3,
        reason=reason,
        metric_values={"kvCache": kv, "interTokenLatency": itl},
    )


def _get(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"policy": "llama", "namespace": "llm", **labels})


class TestObserveDecision:
    """``ControllerMetrics.observe_decision`` over several ticks."""

    def test_values_follow_each_decision(self) -> None:
        """A metric without signal has no value series; it comes back with the signal."""
        registry = CollectorRegistry()
        metrics = ControllerMetrics(registry)
        policy = _policy()
        metrics.observe_decision(policy, _decision(0.5, 0.08))
        assert _get(registry, "nim_autoscaler_metric_value", metric="kvCache") == 0.5
        assert _get(registry, "nim_autoscaler_slo_at_risk", metric="interTokenLatency") == 1.0
        metrics.observe_decision(policy, _decision(None, 0.01))
        assert _get(registry, "nim_autoscaler_metric_value", metric="kvCache") is None
        assert _get(registry, "nim_autoscaler_slo_at_risk", metric="interTokenLatency") == 0.0
        metrics.observe_decision(policy, _decision(None, 0.01))
        assert _get(registry, "nim_autoscaler_metric_value", metric="kvCache") is None
        metrics.observe_decision(policy, _decision(0.6, None, reason="other"))
        assert _get(registry, "nim_autoscaler_metric_value", metric="kvCache") == 0.6
        assert _get(registry, "nim_autoscaler_metric_value", metric="interTokenLatency") is None
        assert _get(registry, "nim_autoscaler_slo_at_risk", metric="interTokenLatency") == 0.0
        assert _get(registry, "nim_autoscaler_decisions_total", reason="steady") == 3
        assert _get(registry, "nim_autoscaler_decisions_total", reason="other") == 1
        target = {"target": "Deployment/llama"}
        assert _get(registry, "nim_autoscaler_desired_replicas", **target) == 3

    def test_static_series_follow_policy_changes_and_removal(self) -> None:
        """Bounds and targets are set per policy version; a removed policy leaves no series."""
        registry = CollectorRegistry()
        metrics = ControllerMetrics(registry)
        metrics.observe_decision(_policy(), _decision(0.5, 0.01))
        assert _get(registry, "nim_autoscaler_max_replicas") == 8
        assert _get(registry, "nim_autoscaler_metric_target", metric="kvCache") == 0.7
        changed = _policy(max_replicas=12)
        metrics.observe_decision(changed, _decision(0.5, 0.01))
        assert _get(registry, "nim_autoscaler_max_replicas") == 12
        metrics.forget([changed])
        assert _get(registry, "nim_autoscaler_max_replicas") is None
        assert _get(registry, "nim_autoscaler_metric_value", metric="kvCache") is None
        metrics.observe_decision(changed, _decision(0.4, 0.01))  # the same policy back
        assert _get(registry, "nim_autoscaler_max_replicas") == 12
        assert _get(registry, "nim_autoscaler_metric_value", metric="kvCache") == 0.4
