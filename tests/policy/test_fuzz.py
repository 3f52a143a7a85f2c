"""Fuzzing the loader: whatever the input, the result is valid policies or located PolicyErrors.

Documents are generated mostly valid-shaped (real keys, plausible values) and then mutated
(values replaced, keys deleted or added, text truncated or corrupted), plus raw random bytes.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.errors import PolicyError
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy

FUZZ_SETTINGS = settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEYS = [
    "apiVersion", "kind", "metadata", "name", "namespace", "spec", "scaleTargetRef",
    "minReplicas", "maxReplicas", "metrics", "kvCache", "queueDepth", "interTokenLatency",
    "prometheus", "query", "returns", "target", "type", "value", "averageValue", "behavior",
    "scaleUp", "scaleDown", "policies", "periodSeconds", "stabilizationWindowSeconds",
    "tolerance", "selectPolicy", "onMetricFailure", "action", "replicas", "algorithm", "llm",
    "quantile", "window", "aggregation", "<<",
]  # fmt: skip

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["30s", "1m30s", "100m", "2k", "Value", "AverageValue", "hpa", "llm", "Pods", "-1", "0"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=3
        ),
    ),
    max_leaves=8,
)

METRICS = st.sampled_from(
    [
        {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
        {"queueDepth": {"target": {"type": "AverageValue", "averageValue": "4"}}},
        {"interTokenLatency": {"quantile": 0.95, "target": {"type": "Value", "value": 0.05}}},
        {"timeToFirstToken": {"window": "2m", "target": {"type": "Value", "value": "1500m"}}},
        {"requestRate": {"target": {"type": "Value", "value": 20}, "aggregation": "sum"}},
        {
            "prometheus": {
                "name": "custom",
                "query": 'sum(x{{namespace="{namespace}"}})',
                "target": {"type": "Value", "value": 3},
            }
        },
    ]
)
GATEWAY_QUEUE = {
    "gatewayQueue": {"pool": "p", "target": {"type": "AverageValue", "averageValue": 2}}
}
BEHAVIORS = st.sampled_from(
    [
        None,
        {},
        {"scaleUp": {"stabilizationWindowSeconds": 0}},
        {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        {"scaleUp": {"tolerance": "50m", "selectPolicy": "Max"}},
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A mostly valid policy document."""
    minimum = draw(st.integers(0, 5))
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
        "minReplicas": minimum,
        "maxReplicas": max(1, minimum + draw(st.integers(0, 20))),
        "metrics": draw(
            st.lists(METRICS, min_size=1, max_size=3, unique_by=lambda m: next(iter(m)))
        ),
    }
    behavior = draw(BEHAVIORS)
    if behavior is not None:
        spec["behavior"] = behavior
    if draw(st.booleans()):
        spec["algorithm"] = draw(st.sampled_from(["hpa", "llm"]))
    if minimum == 0 and spec.get("algorithm", "llm") == "llm":
        # Scale to zero needs an activation signal (a metric present while no pod runs).
        spec["metrics"].append(GATEWAY_QUEUE)
    return {
        "apiVersion": "autoscaling.nim-autoscaler.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": draw(st.sampled_from(["a", "b-1", "x.y"])), "namespace": "ns"},
        "spec": spec,
    }


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, (*prefix, index)))
    return out


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """YAML text of 1-2 documents with 0-3 random mutations, sometimes corrupted as text."""
    docs: list[Any] = [draw(documents()) for _ in range(draw(st.integers(1, 2)))]
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(docs) - 1))
        doc = copy.deepcopy(docs[index])
        paths = _paths(doc)
        if not paths or draw(st.integers(0, 20)) == 0:
            docs[index] = draw(VALUES)
            continue
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        operation = draw(st.sampled_from(["set", "delete", "add"]))
        if operation == "set":
            parent[path[-1]] = draw(VALUES)
        elif operation == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(VALUES)
        docs[index] = doc
    text = yaml.safe_dump_all(docs, sort_keys=False)
    corruption = draw(st.sampled_from(["none", "none", "truncate", "insert", "duplicate-line"]))
    if corruption == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif corruption == "insert":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from([":", "[", "{", "- ", "\t", "&a ", "*a", "\x07", "'"]))
            + text[at:]
        )
    elif corruption == "duplicate-line":
        lines = text.splitlines(keepends=True)
        at = draw(st.integers(0, len(lines) - 1))
        text = "".join([*lines[: at + 1], lines[at], *lines[at + 1 :]])
    return text


def assert_only_policies_or_located_errors(data: str | bytes) -> None:
    """The property: no exception; errors are PolicyErrors located in the file."""
    result = load_text(data, "fuzz.yaml")
    assert all(isinstance(loaded.policy, ScalingPolicy) for loaded in result.policies)
    for error in result.all_errors():
        assert isinstance(error, PolicyError)
        assert error.location is not None
        assert error.location.file == "fuzz.yaml"
        assert error.location.line is not None
        assert error.location.line >= 1
        assert error.location.column is not None
        assert error.location.column >= 1
        assert error.message
    if not result.ok:
        assert result.policies == ()


@FUZZ_SETTINGS
@given(mutated_texts())
def test_mutated_policies(text: str) -> None:
    """Mostly valid documents with random mutations: valid policy or located PolicyError."""
    assert_only_policies_or_located_errors(text)


@FUZZ_SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    """Random bytes: never an exception other than a located PolicyError."""
    assert_only_policies_or_located_errors(data)


@settings(max_examples=300, deadline=None, database=None)
@given(documents())
def test_generated_documents_are_valid(doc: dict[str, Any]) -> None:
    """The generator's unmutated documents are valid, so mutations start from valid input."""
    result = load_text(yaml.safe_dump(doc, sort_keys=False), "fuzz.yaml")
    assert result.ok, [str(e) for e in result.all_errors()]
    assert len(result.policies) == 1
