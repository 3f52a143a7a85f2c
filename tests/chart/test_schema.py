"""``values.schema.json`` rejects every bad value, and the templates reject bad combinations.

Each schema rule gets a generated bad value (:mod:`tests.chart.schema_cases`) that Helm must
refuse with ``HelmValuesError`` naming the right place; rules the schema cannot express are
``fail`` calls in ``_helpers.tpl``, which must stop both rendering and ``helm lint --strict``.
"""

from __future__ import annotations

import json
from typing import Any

import helm_python
import jsonschema
import pytest

from .conftest import CHART_DIR, NAMESPACE, RELEASE
from .schema_cases import EXAMPLE_ITEMS, POLICY_EXAMPLE, bad_value_cases

SCHEMA: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text("utf-8"))
with helm_python.Chart.load(CHART_DIR) as _chart:
    DEFAULTS: dict[str, Any] = _chart.values
CASES = bad_value_cases(SCHEMA, DEFAULTS)

# Objects left open on purpose: Kubernetes types the API server validates itself (affinity,
# tolerations, EnvVar, NetworkPolicyPeer selectors) and the inside of a policy, which the
# controller validates with its own model (`nim-autoscaler validate`).
OPEN_OBJECTS = {
    "/global",
    "/affinity",
    "/tolerations/items",
    "/extraEnv/items",
    *(
        f"/networkPolicy/{peers}/items/{selector}"
        for peers in ("metricsFrom", "dns/to", "prometheus/to")
        for selector in ("namespaceSelector", "podSelector", "ipBlock")
    ),
    "/policies/additionalProperties/metadata",
    "/policies/additionalProperties/spec",
    "/budgets/additionalProperties/metadata",  # validated by the controller's loader
    "/budgets/additionalProperties/spec",
}


def _render(values: dict[str, Any]) -> dict[str, str]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)


def _objects(node: dict[str, Any], where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node of type object, with a pointer into the schema (not the values)."""
    found = [(where, node)] if node.get("type") == "object" else []
    for key, child in node.get("properties", {}).items():
        found += _objects(child, f"{where}/{key}" if where else f"/{key}")
    if isinstance(node.get("items"), dict):
        found += _objects(node["items"], f"{where}/items")
    if isinstance(node.get("additionalProperties"), dict):
        found += _objects(node["additionalProperties"], f"{where}/additionalProperties")
    return found


class TestSchemaRules:
    """Every rule of the schema, broken once."""

    def test_cases_cover_every_kind_of_rule(self) -> None:
        """The generator produced cases for all the constraint keywords the schema uses."""
        keywords = {case.id.split(":")[1] for case in CASES}
        assert {
            "type",
            "enum",
            "const",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "pattern",
            "minLength",
            "maxLength",
            "minItems",
            "uniqueItems",
            "minProperties",
            "required",
            "additionalProperties",
            "propertyNames",
            "propertyNames-maxLength",
            "oneOf",
            "if-then",
            "not",
        } == keywords
        assert len(CASES) > 300

    @pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
    def test_bad_value_is_rejected(self, case: Any) -> None:
        """Helm refuses the values and names the rule's location."""
        with pytest.raises(helm_python.HelmValuesError) as info:
            _render(case.values)
        assert case.expect in str(info.value)

    @pytest.mark.parametrize(
        ("values", "where"),
        [
            pytest.param({"replicaCount": 0}, "/replicaCount", id="no-replicas"),
            pytest.param({"metricsPort": 70000}, "/metricsPort", id="port-out-of-range"),
            pytest.param({"interval": "15s"}, "/interval", id="interval-is-seconds-not-text"),
            pytest.param({"logFormat": "xml"}, "/logFormat", id="unknown-log-format"),
            pytest.param(
                {"serviceMonitor": {"interval": "30 seconds"}},
                "/serviceMonitor/interval",
                id="bad-prometheus-duration",
            ),
            pytest.param(
                {"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url", id="url-no-scheme"
            ),
            pytest.param(
                {"prometheus": {"headers": {"X-Scope-OrgID": "a,b"}}},
                "/prometheus/headers/X-Scope-OrgID",
                id="header-value-would-split",
            ),
            pytest.param(
                {"securityContext": {"runAsUser": 0}},
                "/securityContext/runAsUser",
                id="root-user",
            ),
            pytest.param({"targetKinds": []}, "/targetKinds", id="no-target-kinds"),
            pytest.param({"replicas": 2}, "", id="misspelt-top-level-key"),
            pytest.param(
                {"policies": {"p.yaml": {**POLICY_EXAMPLE, "apiVersion": "v1"}}},
                "/policies/p.yaml/apiVersion",
                id="policy-wrong-api-version",
            ),
        ],
    )
    def test_readable_examples(self, values: dict[str, Any], where: str) -> None:
        """A few common mistakes, spelled out; each also fails ``helm lint --strict``."""
        with pytest.raises(helm_python.HelmValuesError) as info:
            _render(values)
        assert f"at '{where}'" in str(info.value)
        report = helm_python.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
        assert report["errors"]

    def test_generator_examples_are_valid(self) -> None:
        """The valid values the generator breaks from do render (so each case breaks one rule)."""
        values: dict[str, Any] = {
            "imagePullSecrets": [EXAMPLE_ITEMS["/imagePullSecrets"]],
            "tolerations": [EXAMPLE_ITEMS["/tolerations"]],
            "extraEnv": [EXAMPLE_ITEMS["/extraEnv"]],
            "watchNamespaces": [EXAMPLE_ITEMS["/watchNamespaces"]],
            "policies": {"example.yaml": POLICY_EXAMPLE},
            "prometheus": {"headers": {"X-Scope-OrgID": "value"}},
            "resources": {"requests": {"ephemeral-storage": "1Gi"}, "limits": {"cpu": "1Gi"}},
            "networkPolicy": {
                "enabled": True,
                "apiServer": {"cidrs": [EXAMPLE_ITEMS["/networkPolicy/apiServer/cidrs"]]},
            },
        }
        assert _render(values)


class TestSchemaShape:
    """The schema itself: closed objects, documented keys, defaults that validate."""

    def test_objects_are_closed(self) -> None:
        """additionalProperties is false (or a schema for map values) except where open."""
        open_objects = {
            where
            for where, node in _objects(SCHEMA)
            if ("additionalProperties" not in node and "properties" not in node)
            or node.get("additionalProperties") is True
            or ("properties" in node and node.get("additionalProperties") is not False)
        }
        assert open_objects == OPEN_OBJECTS

    def test_every_property_is_described(self) -> None:
        """Each value has a description (it becomes the docs table)."""
        missing: list[str] = []

        def visit(node: dict[str, Any], where: str) -> None:
            for key, child in node.get("properties", {}).items():
                path = f"{where}.{key}" if where else key
                if "description" not in child and not where.startswith(("policies", "budgets")):
                    missing.append(path)
                visit(child, path)

        visit(SCHEMA, "")
        assert missing == []

    def test_schema_is_valid_draft_07(self) -> None:
        """The schema itself is valid JSON Schema draft-07 (understood by Helm 3 and Helm 4)."""
        assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
        jsonschema.Draft7Validator.check_schema(SCHEMA)

    def test_defaults_validate(self) -> None:
        """The chart's own values.yaml passes its schema."""
        with helm_python.Chart.load(CHART_DIR) as chart:
            chart.validate_schema({})


class TestTemplateChecks:
    """Combinations the schema cannot express fail the render and strict lint."""

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            pytest.param(
                {"leaderElection": {"leaseDuration": 10, "renewDeadline": 10}},
                "leaseDuration must be greater than leaderElection.renewDeadline",
                id="lease-not-longer-than-renew-deadline",
            ),
            pytest.param(
                {"leaderElection": {"renewDeadline": 2, "retryPeriod": 2}},
                "renewDeadline must be greater than leaderElection.retryPeriod",
                id="renew-deadline-not-longer-than-retry",
            ),
            pytest.param(
                {"watchNamespaces": ["other"], "policies": {"example.yaml": POLICY_EXAMPLE}},
                'namespace "nim-service" is not in watchNamespaces',
                id="policy-outside-watched-namespaces",
            ),
        ],
    )
    def test_bad_combination_fails(self, values: dict[str, Any], message: str) -> None:
        """The render (``helm install``/``template``) fails with the message.

        Helm 4's lint renders in lint mode, where ``fail`` only logs; these two checks compare
        values with each other, which JSON Schema cannot, so they are render-time only.
        """
        with pytest.raises(helm_python.HelmRenderError) as info:
            _render(values)
        assert message in str(info.value)
