"""Every validation rule of the policy model, as a table: bad value -> located message."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.policy.loader import load_text
from tests.policy.helpers import DELETE, base_doc, changed, dump

LAT = {"interTokenLatency": {"target": {"type": "Value", "value": 0.05}}}
PROM = {
    "prometheus": {
        "name": "q",
        "query": 'sum(x{{namespace="{namespace}"}})',
        "target": {"type": "Value", "value": 3},
    }
}
KV = "spec.metrics.0.kvCache"

# (id, dotted path to change, value, expected field path, expected message fragment)
CASES: list[tuple[str, str, Any, str, str]] = [
    ("name-not-dns", "metadata.name", "Bad_Name", "metadata.name", "DNS-1123 subdomain"),
    ("namespace-not-label", "metadata.namespace", "a.b", "metadata.namespace", "DNS-1123 label"),
    ("labels-not-strings", "metadata.labels", {"a": 1}, "metadata.labels.a", "valid string"),
    ("wrong-api-version", "apiVersion", "v1", "apiVersion", "apiVersion must be"),
    ("wrong-kind", "kind", "Policy", "kind", "kind must be 'ScalingPolicy'"),
    ("kind-hpa-hint", "kind", "HorizontalPodAutoscaler", "kind", "nim-autoscaler import"),
    ("missing-spec", "spec", DELETE, "spec", "required field 'spec' is missing"),
    ("unknown-top-key", "status", {}, "status", "unknown field 'status'"),
    ("typo-did-you-mean", "spec.minReplica", 2, "spec.minReplica", "did you mean 'minReplicas'"),
    ("ref-empty-kind", "spec.scaleTargetRef.kind", "", "spec.scaleTargetRef.kind", "at least 1"),
    (
        "ref-missing-name",
        "spec.scaleTargetRef.name",
        DELETE,
        "spec.scaleTargetRef.name",
        "required field 'name'",
    ),
    ("min-negative", "spec.minReplicas", -1, "spec.minReplicas", "greater than or equal to 0"),
    ("min-not-int", "spec.minReplicas", "two", "spec.minReplicas", "valid integer"),
    ("max-zero", "spec.maxReplicas", 0, "spec.maxReplicas", "greater than or equal to 1"),
    ("max-below-min", "spec.maxReplicas", 1, "spec.maxReplicas", "must be >= minReplicas (2)"),
    ("max-missing", "spec.maxReplicas", DELETE, "spec.maxReplicas", "required field"),
    ("metrics-empty", "spec.metrics", [], "spec.metrics", "or at least one metric"),
    ("metrics-missing", "spec.metrics", DELETE, "spec.metrics", "or at least one metric"),
    ("metrics-not-list", "spec.metrics", {"a": 1}, "spec.metrics", "valid list"),
    (
        "metric-two-keys",
        "spec.metrics.0",
        {**LAT, "queueDepth": {"target": {"type": "Value", "value": 1}}},
        "spec.metrics[0]",
        "exactly one key",
    ),
    ("metric-null-body", "spec.metrics.0", {"kvCache": None}, "spec.metrics[0]", "got null"),
    ("metric-unknown-kind", "spec.metrics.0", {"cpu": {}}, "spec.metrics[0].cpu", "unknown"),
    (
        "duplicate-metric-names",
        "spec.metrics.1",
        {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}},
        "spec.metrics",
        "already used by metrics[0]",
    ),
    (
        "target-type",
        f"{KV}.target.type",
        "Avg",
        f"{KV}.target.type".replace(".0.", "[0]."),
        "'Value' or 'AverageValue'",
    ),
    (
        "value-needs-value",
        f"{KV}.target",
        {"type": "Value"},
        "spec.metrics[0].kvCache.target",
        "type Value needs 'value'",
    ),
    (
        "average-takes-average",
        f"{KV}.target",
        {"type": "AverageValue", "averageValue": 1, "value": 1},
        "spec.metrics[0].kvCache.target",
        "takes 'averageValue', not 'value'",
    ),
    (
        "average-negative",
        f"{KV}.target.averageValue",
        -1,
        "spec.metrics[0].kvCache.target.averageValue",
        "must be greater than 0, got -1",
    ),
    (
        "average-bad-quantity",
        f"{KV}.target.averageValue",
        "lots",
        "spec.metrics[0].kvCache.target.averageValue",
        "Kubernetes quantity",
    ),
    (
        "average-infinite",
        f"{KV}.target.averageValue",
        float("inf"),
        "spec.metrics[0].kvCache.target.averageValue",
        "finite",
    ),
    ("aggregation", f"{KV}.aggregation", "median", "spec.metrics[0].kvCache.aggregation", "'avg'"),
    (
        "max-staleness-zero",
        f"{KV}.maxStaleness",
        0,
        "spec.metrics[0].kvCache.maxStaleness",
        "must be positive",
    ),
    ("metric-name-bad", f"{KV}.name", "1abc", "spec.metrics[0].kvCache.name", "valid metric name"),
    (
        "quantile-one",
        "spec.metrics.0",
        {"interTokenLatency": {"quantile": 1.0, "target": {"type": "Value", "value": 0.05}}},
        "spec.metrics[0].interTokenLatency.quantile",
        "less than 1",
    ),
    (
        "window-bad-duration",
        "spec.metrics.0",
        {"interTokenLatency": {"window": "5 parsecs", "target": {"type": "Value", "value": 1}}},
        "spec.metrics[0].interTokenLatency.window",
        "expected a duration",
    ),
    (
        "statistic",
        "spec.metrics.0",
        {"interTokenLatency": {"statistic": "median", "target": {"type": "Value", "value": 1}}},
        "spec.metrics[0].interTokenLatency.statistic",
        "'quantile' or 'mean'",
    ),
    (
        "prometheus-needs-name",
        "spec.metrics.0",
        {"prometheus": {"query": "up", "target": {"type": "Value", "value": 1}}},
        "spec.metrics[0].prometheus.name",
        "required field 'name'",
    ),
    (
        "prometheus-empty-query",
        "spec.metrics.0",
        {"prometheus": {**PROM["prometheus"], "query": ""}},
        "spec.metrics[0].prometheus.query",
        "at least 1 character",
    ),
    (
        "prometheus-returns",
        "spec.metrics.0",
        {"prometheus": {**PROM["prometheus"], "returns": "all"}},
        "spec.metrics[0].prometheus.returns",
        "'target' or 'perPod'",
    ),
    (
        "prometheus-role",
        "spec.metrics.0",
        {"prometheus": {**PROM["prometheus"], "role": "guard"}},
        "spec.metrics[0].prometheus.role",
        "'proportional' or 'latencyGuard'",
    ),
    (
        "rate-policy-type",
        "spec.behavior.scaleUp.policies",
        [{"type": "Nodes", "value": 1, "periodSeconds": 60}],
        "spec.behavior.scaleUp.policies[0].type",
        "'Pods' or 'Percent'",
    ),
    (
        "rate-policy-value-zero",
        "spec.behavior.scaleUp.policies",
        [{"type": "Pods", "value": 0, "periodSeconds": 60}],
        "spec.behavior.scaleUp.policies[0].value",
        "greater than 0",
    ),
    (
        "period-too-long",
        "spec.behavior.scaleDown.policies",
        [{"type": "Pods", "value": 1, "periodSeconds": 1801}],
        "spec.behavior.scaleDown.policies[0].periodSeconds",
        "less than or equal to 1800",
    ),
    (
        "window-too-long",
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
        3601,
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
        "less than or equal to 3600",
    ),
    (
        "select-policy",
        "spec.behavior.scaleUp.selectPolicy",
        "Avg",
        "spec.behavior.scaleUp.selectPolicy",
        "'Max', 'Min' or 'Disabled'",
    ),
    (
        "tolerance-negative",
        "spec.behavior.scaleUp.tolerance",
        -0.1,
        "spec.behavior.scaleUp.tolerance",
        "must be 0 or more",
    ),
    (
        "fallback-needs-replicas",
        "spec.onMetricFailure",
        {"action": "fallback"},
        "spec.onMetricFailure",
        "action fallback needs 'replicas'",
    ),
    (
        "hold-takes-no-replicas",
        "spec.onMetricFailure",
        {"action": "hold", "replicas": 3},
        "spec.onMetricFailure",
        "'replicas' only applies to action fallback",
    ),
    (
        "after-failures-zero",
        "spec.onMetricFailure",
        {"action": "fallback", "replicas": 3, "afterFailures": 0},
        "spec.onMetricFailure.afterFailures",
        "greater than or equal to 1",
    ),
    ("algorithm", "spec.algorithm", "magic", "spec.algorithm", "'hpa' or 'llm'"),
    ("metric-names", "spec.metricNames", "tgi", "spec.metricNames", "'auto'"),
    (
        "slo-target-zero",
        "spec.slo",
        {"itl": {"target": 0}},
        "spec.slo.itl.target",
        "greater than 0",
    ),
    (
        "llm-margin-zero",
        "spec.llm",
        {"latencyScaleDownMargin": 0},
        "spec.llm.latencyScaleDownMargin",
        "greater than 0",
    ),
    (
        "llm-kv-saturation",
        "spec.llm",
        {"kvSaturation": 1.5},
        "spec.llm.kvSaturation",
        "less than or equal to 1",
    ),
    (
        "llm-startup-duration",
        "spec.llm",
        {"startupSeconds": "fast"},
        "spec.llm.startupSeconds",
        "expected a duration",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rule_gives_located_error(path: str, value: Any, field: str, fragment: str) -> None:
    """A bad value yields exactly one error naming the field, with a line and the expectation."""
    doc = base_doc()
    if path == "spec.metrics":
        del doc["spec"]["slo"]  # with an SLO, a policy without metrics is valid
    result = load_text(dump(changed(doc, path, value)), "p.yaml")
    errors = result.all_errors()
    assert [e.location.field for e in errors if e.location] == [field]
    assert fragment in errors[0].message
    assert errors[0].location is not None
    assert errors[0].location.file == "p.yaml"
    assert errors[0].location.line is not None
    assert errors[0].location.line >= 1
    assert result.policies == ()


def test_base_document_is_valid() -> None:
    """The table's starting point validates, so each row tests only its own change."""
    result = load_text(dump(base_doc()), "p.yaml")
    assert result.ok
    assert [p.key for p in result.policies] == ["ns/p"]


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        pytest.param(45, 45.0, id="number"),
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("1m30s", 90.0, id="compound"),
        pytest.param("2h", 7200.0, id="hours"),
        pytest.param("500ms", 0.5, id="millis"),
    ],
)
def test_durations_accept_prometheus_style(raw: object, seconds: float) -> None:
    """Durations take numbers of seconds or Prometheus-style strings."""
    doc = changed(base_doc(), "spec.metrics.0.kvCache.maxStaleness", raw)
    result = load_text(dump(doc), "p.yaml")
    assert result.ok
    assert seconds == result.policies[0].policy.spec.metrics[0].spec.max_staleness


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        pytest.param("100m", 0.1, id="milli"),
        pytest.param("0.75", 0.75, id="decimal-string"),
        pytest.param("2k", 2000.0, id="kilo"),
        pytest.param(3, 3.0, id="int"),
    ],
)
def test_quantities_accept_kubernetes_suffixes(raw: object, number: float) -> None:
    """Targets take numbers or Kubernetes quantities."""
    doc = changed(base_doc(), "spec.metrics.0.kvCache.target.averageValue", raw)
    result = load_text(dump(doc), "p.yaml")
    assert result.ok
    assert number == pytest.approx(result.policies[0].policy.spec.metrics[0].target.threshold)
