"""Lint rules: each fires on a policy with its pitfall, none fires on the examples."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.policy.lint import RULES, lint_policies, lint_policy
from autoscaler.policy.loader import load_path, load_text
from tests.policy.helpers import POLICIES, base_doc, changed, dump


def prom(query: str, target_type: str = "Value", **extra: Any) -> dict[str, Any]:
    key = "value" if target_type == "Value" else "averageValue"
    return {
        "prometheus": {
            "name": "q",
            "query": query,
            "target": {"type": target_type, key: 10},
            **extra,
        }
    }


def lat(kind: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {kind: {"target": target, **extra}}


M0 = "spec.metrics.0"
TARGET_4 = {"type": "AverageValue", "averageValue": 4}
# (rule, [(path, value), ...], expected field of the finding, expected line of the finding)
CASES: list[tuple[str, list[tuple[str, Any]], str]] = [
    ("legacy-api-version", [("apiVersion", "nim-autoscaler/v1alpha1")], "apiVersion"),
    (
        "per-pod-under-value",
        [(M0, prom('sum by (pod) (x{{pod=~"{pods}"}})', returns="perPod"))],
        "spec.metrics[0].prometheus.returns",
    ),
    (
        "target-query-not-aggregated",
        [(M0, prom("vllm:num_requests_waiting"))],
        "spec.metrics[0].prometheus.query",
    ),
    (
        "max-under-average-value",
        [(M0, prom("max(vllm:kv_cache_usage_perc)", "AverageValue"))],
        "spec.metrics[0].prometheus.query",
    ),
    (
        "latency-average-value",
        [(M0, lat("interTokenLatency", {"type": "AverageValue", "averageValue": 0.05}))],
        "spec.metrics[0].interTokenLatency.target.type",
    ),
    (
        "kv-target-range",
        [(f"{M0}.kvCache.target.averageValue", 70)],
        "spec.metrics[0].kvCache.target.averageValue",
    ),
    (
        "scale-down-window-shorter",
        [
            ("spec.behavior.scaleUp.stabilizationWindowSeconds", 120),
            ("spec.behavior.scaleDown.stabilizationWindowSeconds", 60),
        ],
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
    ),
    ("min-replicas-production", [("spec.minReplicas", 1)], "spec.minReplicas"),
    ("tolerance", [("spec.behavior.scaleDown.tolerance", 1)], "spec.behavior.scaleDown.tolerance"),
    (
        "latency-below-first-bucket",
        [(M0, lat("interTokenLatency", {"type": "Value", "value": 0.008}))],
        "spec.metrics[0].interTokenLatency.target.value",
    ),
    (
        "latency-with-hpa",
        [
            ("spec.algorithm", "hpa"),
            ("spec.metrics.1", lat("timeToFirstToken", {"type": "Value", "value": 1})),
        ],
        "spec.metrics[1].timeToFirstToken",
    ),
    (
        "missing-or-vector",
        [(M0, prom("sum(rate(request_success_total[1m]))"))],
        "spec.metrics[0].prometheus.query",
    ),
    (
        "or-vector-without-sum",
        [(M0, prom("rate(request_success_total[1m]) or vector(0)"))],
        "spec.metrics[0].prometheus.query",
    ),
    (
        "fallback-out-of-range",
        [("spec.onMetricFailure", {"action": "fallback", "replicas": 20})],
        "spec.onMetricFailure.replicas",
    ),
    ("no-scaling-range", [("spec.maxReplicas", 2)], "spec.maxReplicas"),
    ("llm-without-slo", [("spec.slo", None)], "spec.algorithm"),
    (
        "saturating-signals-only",
        [("spec.slo", None), ("spec.metrics.1", {"queueDepth": {"target": TARGET_4}})],
        "spec.metrics",
    ),
]


def findings_for(changes: list[tuple[str, Any]], ignore: tuple[str, ...] = ()) -> list[Any]:
    doc = base_doc()
    for path, value in changes:
        doc = changed(doc, path, value)
    result = load_text(dump(doc), "p.yaml")
    assert result.ok, [str(e) for e in result.all_errors()]
    return lint_policy(result.policies[0], ignore)


def test_every_rule_has_a_case() -> None:
    """The table covers every rule."""
    assert sorted(RULES) == sorted(case[0] for case in CASES)


@pytest.mark.parametrize(
    ("rule", "changes", "field"), [pytest.param(*case, id=case[0]) for case in CASES]
)
def test_rule_fires_with_location_and_hint(
    rule: str, changes: list[tuple[str, Any]], field: str
) -> None:
    """The rule's pitfall yields a finding with the rule id, the field, a line and a hint."""
    findings = findings_for(changes)
    matching = [f for f in findings if f.rule == rule]
    assert matching, [f.rule for f in findings]
    assert matching[0].location.field == field
    assert matching[0].location.line is not None
    assert matching[0].hint


@pytest.mark.parametrize(
    ("rule", "changes", "field"), [pytest.param(*case, id=case[0]) for case in CASES]
)
def test_ignored_rule_does_not_fire(rule: str, changes: list[tuple[str, Any]], field: str) -> None:
    """--ignore RULE removes exactly that rule's findings."""
    del field
    assert all(f.rule != rule for f in findings_for(changes, ignore=(rule,)))


def test_base_policy_is_clean() -> None:
    """The table's starting policy has no finding, so each row shows its own rule."""
    assert findings_for([]) == []


def test_examples_lint_clean() -> None:
    """The example policies in policies/ have no lint warning."""
    result = load_path(POLICIES)
    assert result.ok
    assert [str(f) for f in lint_policies(result.policies)] == []


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        pytest.param(
            [(f"{M0}.kvCache.target.averageValue", 0.95)], "tolerance", id="kv-095-unreachable"
        ),
        pytest.param(
            [
                (f"{M0}.kvCache.target.averageValue", 0.9),
                ("spec.behavior.scaleUp.tolerance", 0.2),
            ],
            "tolerance",
            id="kv-09-with-up-tolerance-02",
        ),
        pytest.param(
            [(M0, {"kvCache": {"target": {"type": "Value", "value": 1.5}}})],
            "kv-target-range",
            id="kv-value-avg-above-1",
        ),
    ],
)
def test_threshold_edge_cases_fire(changes: list[tuple[str, Any]], rule: str) -> None:
    """Targets that the tolerance band or the metric's range make unreachable are caught."""
    assert rule in {f.rule for f in findings_for(changes)}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            [(M0, {"kvCache": {"aggregation": "sum", "target": {"type": "Value", "value": 2.4}}})],
            id="kv-sum-above-1-is-fine",
        ),
        pytest.param(
            [(M0, lat("interTokenLatency", {"type": "Value", "value": 0.008}, statistic="mean"))],
            id="itl-mean-below-bucket-is-fine",
        ),
        pytest.param(
            [(M0, prom("sum(rate(x[1m])) or vector(0)"))],
            id="rate-with-or-vector-is-fine",
        ),
        pytest.param(
            [(M0, prom("sum(rate(x[1m]))", emptyAs=0))],
            id="rate-with-empty-as-is-fine",
        ),
        pytest.param(
            [(M0, prom("max(x)", "Value"))],
            id="max-under-value-is-fine",
        ),
    ],
)
def test_near_misses_do_not_fire(changes: list[tuple[str, Any]]) -> None:
    """Correct variants of each pitfall are not flagged."""
    assert [f.rule for f in findings_for(changes)] == []


def test_unknown_ignore_rule_is_an_error() -> None:
    """Ignoring a rule that does not exist is a clear error."""
    with pytest.raises(ValueError, match="unknown lint rule"):
        findings_for([], ignore=("no-such-rule",))
