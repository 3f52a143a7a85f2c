"""Hypothesis strategies for malformed Kubernetes objects (shared by the tests and the soak)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["", "True", "Running", "2024-05-01T10:00:00Z", "not-a-time", "-1", "3"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)

GOOD_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "llama-1",
        "namespace": "nim",
        "labels": {"app": "llama"},
        "creationTimestamp": "2024-05-01T10:00:00Z",
    },
    "spec": {"containers": [{"name": "llm"}]},
    "status": {
        "phase": "Running",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastTransitionTime": "2024-05-01T10:00:01Z",
            },
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:01:00Z"},
        ],
    },
}

GOOD_SCALE: dict[str, Any] = {
    "kind": "Scale",
    "apiVersion": "autoscaling/v1",
    "metadata": {"name": "llama", "namespace": "nim", "resourceVersion": "1001"},
    "spec": {"replicas": 2},
    "status": {"replicas": 2, "selector": "app=llama"},
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
def mangled(draw: st.DrawFn, good: dict[str, Any]) -> Any:
    """``good`` with 1-4 fields deleted or replaced by any JSON value (or a whole other value)."""
    if draw(st.integers(0, 30)) == 0:
        return draw(JSON_VALUES)
    obj = copy.deepcopy(good)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(obj)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = obj
        for part in path[:-1]:
            parent = parent[part]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return obj
