"""The ScalingPolicy CRD: generated from the model, structural, and its CEL rules say what they do.

- drift: the committed file in ``charts/nim-autoscaler/crds/`` equals the generator's output;
- Helm (the real engine) ships it as the chart's CRD, and ``kubernetes-validate`` accepts it;
- structural: every node typed, no ``$ref``/``additionalProperties: false``, ``anyOf`` only as
  int-or-string, defaults valid against their own node (the API server's own preconditions);
- the CEL ``x-kubernetes-validations`` are evaluated with a CEL implementation (cel-python) on
  resources built from the shipped example policies and on broken ones: each broken resource is
  rejected by exactly the rule whose message names the problem, and the controller's own model
  rejects it too (the two never disagree).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import helm_python
import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml

from autoscaler.policy.crd import (
    COMMITTED_CRD_DIR,
    SCALING_POLICY,
    CrdError,
    crd,
    crd_yaml,
    structural_schema,
)
from autoscaler.policy.models import API_VERSION, ScalingPolicy
from autoscaler.policy.status import ScalingPolicyStatus

from .conftest import REPO

CRD_FILE = REPO / COMMITTED_CRD_DIR / SCALING_POLICY.file_name
EXAMPLES = sorted((REPO / "policies").glob("*.yaml"))


def openapi_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crd(SCALING_POLICY)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


# --------------------------------------------------------------------------------------------
# One source of truth
# --------------------------------------------------------------------------------------------


class TestGenerated:
    """The committed CRD is the generator's output and Helm ships it."""

    def test_committed_crd_is_up_to_date(self) -> None:
        """Regenerate with `nim-autoscaler schema --crd -o <file>` after a model change."""
        assert crd_yaml() == CRD_FILE.read_text(encoding="utf-8")

    def test_helm_ships_it_as_the_charts_crd(self, chart: helm_python.Chart) -> None:
        """Helm installs crds/ before the templates (and never templates them)."""
        files = {Path(entry["name"]).name: entry["data"] for entry in chart.crds}
        assert set(files) == {SCALING_POLICY.file_name}
        document = yaml.safe_load(files[SCALING_POLICY.file_name])
        assert document == crd(SCALING_POLICY)

    @pytest.mark.parametrize("version", ["1.30", kubernetes_validate.latest_version()])
    def test_kubernetes_validate_accepts_it(self, version: str) -> None:
        """The CRD object itself is valid apiextensions.k8s.io/v1 (strict: no unknown field)."""
        document = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
        kubernetes_validate.validate(document, version, strict=True)

    def test_names_and_subresources(self) -> None:
        """Group with a dot, the plural, a status subresource, the kubectl get columns."""
        spec = crd(SCALING_POLICY)["spec"]
        assert spec["group"] == API_VERSION.split("/")[0]
        assert "." in spec["group"]
        assert spec["names"]["plural"] == "scalingpolicies"
        assert spec["scope"] == "Namespaced"
        version = spec["versions"][0]
        assert version["subresources"] == {"status": {}}
        columns = [c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c]
        assert columns == ["Target", "Min", "Max", "Current", "Desired", "Reason", "Age"]
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        for column in version["additionalPrinterColumns"]:
            parts = column["jsonPath"].lstrip(".").split(".")
            if parts[0] == "status":
                node = status
                for part in parts[1:]:
                    node = node["properties"][part]
                assert node["type"] in {"integer", "string"}

    def test_descriptions_come_from_the_model(self) -> None:
        """kubectl explain scalingpolicy.spec.behavior reads the model's field docs."""
        behavior = openapi_schema()["properties"]["spec"]["properties"]["behavior"]
        assert behavior["description"].startswith("Scaling behavior")
        scale_down = behavior["properties"]["scaleDown"]
        assert "window 300 s" in scale_down["description"]
        window = scale_down["properties"]["stabilizationWindowSeconds"]
        assert "seconds" in window["description"]
        assert "``" not in CRD_FILE.read_text(encoding="utf-8")


class TestStructural:
    """The preconditions the API server checks before it accepts a CRD."""

    def test_every_node_is_typed(self) -> None:
        """Every node has a type, or is the int-or-string special case."""
        for path, node in walk(openapi_schema()):
            assert "type" in node or node.get("x-kubernetes-int-or-string") is True, path

    def test_no_forbidden_constructs(self) -> None:
        """No $ref, no additionalProperties false, no nullable types, anyOf only int-or-string."""
        for path, node in walk(openapi_schema()):
            assert "$ref" not in node, path
            assert node.get("additionalProperties") is not False, path
            assert not ("properties" in node and "additionalProperties" in node), path
            assert not isinstance(node.get("type"), list), path
            if "anyOf" in node:
                assert node.get("x-kubernetes-int-or-string") is True, path
                assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert not {"oneOf", "allOf", "not", "const", "nullable"} & set(node), path
            assert node.get("uniqueItems") is not True, path

    def test_defaults_are_valid_for_their_node(self) -> None:
        """A default the API server would reject makes the whole CRD invalid."""
        for path, node in walk(openapi_schema()):
            if "default" in node:
                errors = list(jsonschema.Draft4Validator(node).iter_errors(node["default"]))
                assert errors == [], path

    def test_lists_and_rule_strings_are_bounded(self) -> None:
        """CEL cost is estimated from maxItems/maxLength: every list is bounded."""
        for path, node in walk(openapi_schema()):
            if node.get("type") == "array":
                assert "maxItems" in node, path
            if node.get("type") == "string" and "enum" in node:
                assert "maxLength" in node, path

    def test_every_cel_rule_compiles(self) -> None:
        """Each rule parses as CEL and carries an SRE-readable message."""
        env = celpy.Environment()
        rules = [
            r for _, n in walk(openapi_schema()) for r in n.get("x-kubernetes-validations", [])
        ]
        assert len(rules) >= 5
        for rule in rules:
            env.compile(rule["rule"])
            assert len(rule["message"]) > 20


# --------------------------------------------------------------------------------------------
# Admission as the API server does it: schema (types, bounds), defaults, then CEL
# --------------------------------------------------------------------------------------------


def _apply_defaults(node: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict):
        out = dict(value)
        for name, child in (node.get("properties") or {}).items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = _apply_defaults(child, out[name])
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_apply_defaults(node["items"], item) for item in value]
    return value


def _cel_failures(node: dict[str, Any], value: Any, path: str) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    env = celpy.Environment()
    for rule in node.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if not bool(result):
            failures.append((path, rule["message"]))
    if isinstance(value, dict):
        for name, child in (node.get("properties") or {}).items():
            if name in value:
                failures += _cel_failures(child, value[name], f"{path}.{name}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            failures += _cel_failures(node["items"], item, f"{path}[{index}]")
    return failures


def admit(resource: dict[str, Any]) -> list[str]:
    """The API server's answer to creating ``resource``: [] or the messages of its rejections."""
    schema = openapi_schema()
    shape = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft4Validator(schema).iter_errors(resource)
    ]
    if shape:
        return shape
    defaulted = _apply_defaults(schema, resource)
    return [f"{path}: {message}" for path, message in _cel_failures(schema, defaulted, "")]


def model_accepts(resource: dict[str, Any]) -> bool:
    """The controller's own validation of the same resource."""
    document = {**resource, "metadata": {"name": "p", "namespace": "ns"}}
    try:
        ScalingPolicy.model_validate(document)
    except pydantic.ValidationError:
        return False
    return True


def resource(**spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}],
    }
    spec.update(spec_changes)
    return {"apiVersion": API_VERSION, "kind": "ScalingPolicy", "metadata": {}, "spec": spec}


class TestAdmission:
    """Good resources pass, each broken one fails with the message that names its problem."""

    @pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
    def test_example_policies_are_admitted_as_resources(self, path: Path) -> None:
        """Every shipped example, applied as a resource, is accepted."""
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert admit(document) == []
            assert model_accepts(document)

    @pytest.mark.parametrize(
        ("spec_changes", "message"),
        [
            pytest.param(
                {"minReplicas": 5, "maxReplicas": 3},
                "maxReplicas must be greater than or equal to minReplicas",
                id="max-below-min",
            ),
            pytest.param(
                {"metrics": [{}]},
                "each metrics entry sets exactly one metric kind",
                id="metric-entry-without-kind",
            ),
            pytest.param(
                {
                    "metrics": [
                        {
                            "kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}},
                            "queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}},
                        }
                    ]
                },
                "each metrics entry sets exactly one metric kind",
                id="metric-entry-with-two-kinds",
            ),
            pytest.param(
                {"metrics": [{"kvCache": {"target": {"type": "Value", "averageValue": 0.7}}}]},
                "a target of type Value takes 'value' (and no 'averageValue')",
                id="value-without-value",
            ),
            pytest.param(
                {
                    "metrics": [
                        {
                            "kvCache": {
                                "target": {"type": "AverageValue", "value": 1, "averageValue": 1}
                            }
                        }
                    ]
                },
                "a target of type AverageValue takes 'averageValue' (and no 'value')",
                id="average-value-with-both",
            ),
            pytest.param(
                {
                    "metrics": [
                        {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
                        {
                            "queueDepth": {
                                "name": "kvCache",
                                "target": {"type": "AverageValue", "averageValue": 4},
                            }
                        },
                    ]
                },
                "metric names must be unique",
                id="duplicate-metric-names",
            ),
            pytest.param(
                {"onMetricFailure": {"action": "fallback"}},
                "onMetricFailure action fallback needs 'replicas'",
                id="fallback-without-replicas",
            ),
            pytest.param(
                {"onMetricFailure": {"replicas": 3}},
                "onMetricFailure 'replicas' only applies to action fallback",
                id="replicas-with-hold",
            ),
        ],
    )
    def test_cross_field_rules(self, spec_changes: dict[str, Any], message: str) -> None:
        """The CEL rule rejects with its message, and the controller's model rejects it too."""
        bad = resource(**spec_changes)
        answer = admit(bad)
        assert len(answer) == 1
        assert message in answer[0]
        assert not model_accepts(bad)

    @pytest.mark.parametrize(
        ("spec_changes", "field"),
        [
            pytest.param({"maxReplicas": 0}, "maxReplicas", id="max-zero"),
            pytest.param({"algorithm": "magic"}, "algorithm", id="unknown-algorithm"),
            pytest.param({"metrics": []}, "metrics", id="no-metrics"),
            pytest.param(
                {
                    "metrics": [
                        {"kvCache": {"target": {"type": "AverageValue", "averageValue": "70%"}}}
                    ]
                },
                "averageValue",
                id="quantity-string",
            ),
            pytest.param(
                {
                    "metrics": [
                        {"requestRate": {"window": "soon", "target": {"type": "Value", "value": 5}}}
                    ]
                },
                "window",
                id="bad-duration",
            ),
        ],
    )
    def test_shape_errors(self, spec_changes: dict[str, Any], field: str) -> None:
        """Types and bounds are the schema's, before any CEL rule runs."""
        answer = admit(resource(**spec_changes))
        assert answer
        assert field in answer[0]

    def test_distinct_names_of_one_kind_are_admitted(self) -> None:
        """Two entries of the same kind with their own names are fine."""
        metrics = [
            {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
            {"kvCache": {"name": "kv2", "target": {"type": "Value", "value": 0.9}}},
        ]
        assert admit(resource(metrics=metrics)) == []
        assert model_accepts(resource(metrics=metrics))

    def test_durations_as_seconds_or_strings(self) -> None:
        """A duration is whole seconds or a duration string, in the resource as in a file."""
        for window in (30, "30s", "1m30s"):
            metric = {"requestRate": {"window": window, "target": {"type": "Value", "value": 5}}}
            good = resource(metrics=[metric])
            assert admit(good) == []
            assert model_accepts(good)

    def test_defaults_match_the_model(self) -> None:
        """The API server fills in the same defaults the controller would assume."""
        schema = openapi_schema()
        defaulted = _apply_defaults(
            schema,
            resource(metrics=[{"interTokenLatency": {"target": {"type": "Value", "value": 0.05}}}]),
        )
        policy = ScalingPolicy.model_validate(
            {**defaulted, "metadata": {"name": "p", "namespace": "ns"}}
        )
        assert defaulted["spec"]["minReplicas"] == 2
        latency = defaulted["spec"]["metrics"][0]["interTokenLatency"]
        assert latency["quantile"] == policy.spec.metrics[0].spec.quantile  # type: ignore[union-attr]
        assert latency["window"] == 60
        assert defaulted["spec"]["algorithm"] == policy.spec.algorithm.value


class TestGenerator:
    """The generator refuses what the API server would refuse, naming the field."""

    def test_a_choice_of_types_without_a_hint_is_an_error(self) -> None:
        """A new union field fails generation (and so the drift test), not the cluster."""

        class Choice(pydantic.BaseModel):
            value: int | str

        with pytest.raises(CrdError, match=r"Choice\.value: a choice of 2 types"):
            structural_schema(Choice)

    def test_optional_fields_and_refs_are_inlined(self) -> None:
        """An optional nested model becomes a typed object, no $ref, no null."""

        class Inner(pydantic.BaseModel):
            count: int = pydantic.Field(3, ge=0)

        class Outer(pydantic.BaseModel):
            inner: Inner | None = None
            tags: list[str] = pydantic.Field(default_factory=list, max_length=4)

        schema = structural_schema(Outer)
        inner = schema["properties"]["inner"]
        assert inner["type"] == "object"
        assert inner["properties"]["count"] == {"type": "integer", "default": 3, "minimum": 0}
        assert schema["properties"]["tags"]["maxItems"] == 4


class TestStatusSchema:
    """What the controller writes to /status is what the CRD's status schema admits."""

    def test_a_full_status_validates(self) -> None:
        """Every status field the model can produce is accepted by the CRD's schema."""
        status = ScalingPolicyStatus.model_validate(
            {
                "observedGeneration": 3,
                "currentReplicas": 2,
                "desiredReplicas": 4,
                "lastScaleTime": "2026-01-01T10:00:00Z",
                "conditions": [
                    {
                        "type": "AbleToScale",
                        "status": "True",
                        "reason": "SucceededRescale",
                        "message": "the controller was able to update the target scale to 4",
                        "lastTransitionTime": "2026-01-01T10:00:00Z",
                        "observedGeneration": 3,
                    }
                ],
                "lastDecision": {
                    "time": "2026-01-01T10:00:00Z",
                    "reason": "PolicyLimited",
                    "message": "kvCache above target",
                    "currentReplicas": 2,
                    "desiredReplicas": 4,
                    "recommendation": 6,
                    "metrics": [
                        {
                            "name": "kvCache",
                            "kind": "kvCache",
                            "targetType": "AverageValue",
                            "target": 0.7,
                            "value": 0.9,
                            "proposal": 6,
                        }
                    ],
                    "stabilization": {
                        "recommendation": 6,
                        "replicas": 6,
                        "scaleUpWindowSeconds": 0,
                        "scaleDownWindowSeconds": 300,
                        "reason": "ReadyForNewScale",
                    },
                    "rateLimit": {
                        "direction": "up",
                        "selectPolicy": "Max",
                        "type": "Pods",
                        "value": 2,
                        "periodSeconds": 60,
                        "limit": 4,
                        "limited": True,
                    },
                },
            }
        )
        body = status.model_dump(by_alias=True, exclude_none=True, mode="json")
        schema = openapi_schema()["properties"]["status"]
        assert list(jsonschema.Draft4Validator(schema).iter_errors(body)) == []
