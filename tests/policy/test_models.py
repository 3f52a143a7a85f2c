"""Every metric preset key is accepted exactly as documented."""

from __future__ import annotations

import pytest

from autoscaler.policy.models import MetricKind, ScalingPolicy


@pytest.mark.parametrize("kind", list(MetricKind), ids=lambda k: k.value)
def test_every_metric_kind_is_its_own_yaml_key(kind: MetricKind) -> None:
    """Each preset key in MetricKind (e.g. e2eLatency) is accepted as written in YAML."""
    inner: dict[str, object] = {"target": {"type": "Value", "value": 1}}
    if kind is MetricKind.PROMETHEUS:
        inner |= {"name": "custom", "query": "sum(up)"}
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
        "maxReplicas": 3,
        "metrics": [{kind.value: inner}],
    }
    policy = ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": "p"},
            "spec": spec,
        }
    )
    assert policy.spec.metrics[0].kind is kind
    dumped = policy.model_dump(by_alias=True, exclude_none=True)
    assert list(dumped["spec"]["metrics"][0]) == [kind.value]
