"""Every metric preset key is accepted exactly as documented."""

from __future__ import annotations

import pytest

from autoscaler.policy.models import GATEWAY_KINDS, MetricKind, ScalingPolicy


@pytest.mark.parametrize("kind", list(MetricKind), ids=lambda k: k.value)
def test_every_metric_kind_is_its_own_yaml_key(kind: MetricKind) -> None:
    """Each preset key in MetricKind (e.g. e2eLatency) is accepted as written in YAML."""
    inner: dict[str, object] = {"target": {"type": "Value", "value": 1}}
    if kind is MetricKind.PROMETHEUS:
        inner |= {"name": "custom", "query": "sum(up)"}
    if kind in GATEWAY_KINDS:
        inner |= {"model": "llama"}
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


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('sum(x{ns="{nope}"})', "unknown placeholder {nope}"),
        ("sum(x{ {namespace} })", "must be inside a double-quoted string"),
    ],
    ids=["unknown-placeholder", "unquoted-namespace"],
)
def test_custom_query_template_errors_are_validation_errors(query: str, message: str) -> None:
    """A custom query template that cannot be filled safely is rejected when the policy loads."""
    from autoscaler.policy.loader import load_text

    text = f"""\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {{name: p, namespace: ns}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: x}}
  maxReplicas: 3
  metrics:
    - prometheus:
        name: custom
        query: '{query}'
        target: {{type: Value, value: 1}}
"""
    result = load_text(text, "p.yaml")
    [error] = result.all_errors()
    assert message in str(error)
    assert "p.yaml:10:" in str(error)
    assert "spec.metrics[0].prometheus.query" in str(error)
