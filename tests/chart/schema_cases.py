"""Derive one bad value for every rule of ``values.schema.json``.

:func:`bad_value_cases` walks the schema and, for each constraint keyword it meets (``type``,
``enum``, ``const``, ``minimum``, ``pattern``, ``required``, ``additionalProperties: false``, ...),
builds a values override that breaks exactly that rule while the rest stays valid, together with
the JSON pointer Helm must name in its error. A keyword the walker does not know fails the
tests (:data:`KNOWN_KEYWORDS`), so a new kind of rule cannot slip in untested.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Keywords that constrain values (each gets a bad-value case) ...
CONSTRAINTS = {
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
    "oneOf",
    "if",
    "not",
    "allOf",
}
# ... and keywords that only describe or structure the schema.
ANNOTATIONS = {"$schema", "title", "description", "properties", "items", "then"}

POLICY_EXAMPLE: dict[str, Any] = {
    "apiVersion": "nim-autoscaler/v1alpha1",
    "kind": "ScalingPolicy",
    "metadata": {"name": "example", "namespace": "nim-service"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
        "maxReplicas": 3,
        "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}],
    },
}

BUDGET_EXAMPLE: dict[str, Any] = {
    "apiVersion": "nim-autoscaler/v1alpha1",
    "kind": "ScalingBudget",
    "metadata": {"name": "example"},
    "spec": {"maxGpus": 16},
}

# Cross-field rules (if/then, not) cannot be broken mechanically: one hand-written case each,
# keyed by the schema location of the rule ("<pointer>" or "<pointer>/allOf/<n>").
CONDITIONAL_CASES: dict[str, list[tuple[dict[str, Any], str]]] = {
    "/allOf/0": [({"leaderElection": {"enabled": False}}, "at '/leaderElection/enabled'")],
    "/allOf/1": [
        (
            {"replicaCount": 1, "shards": 2, "leaderElection": {"enabled": False}},
            "at '/leaderElection/enabled'",
        )
    ],
    "/allOf/2": [
        (
            {"existingPolicyConfigMap": "mine", "policies": {"example.yaml": POLICY_EXAMPLE}},
            "at '/policies': maxProperties",
        )
    ],
    "/serviceAccount": [({"serviceAccount": {"create": False}}, "at '/serviceAccount/name'")],
    "/prometheus/ca": [
        (
            {"prometheus": {"ca": {"configMap": "a", "secret": "b"}}},
            "at '/prometheus/ca': 'not' failed",
        )
    ],
    "/podDisruptionBudget": [
        ({"podDisruptionBudget": {"minAvailable": 1}}, "at '/podDisruptionBudget': 'not' failed"),
        (
            {"podDisruptionBudget": {"maxUnavailable": ""}},
            "at '/podDisruptionBudget': 'not' failed",
        ),
    ],
    "/networkPolicy": [
        (
            {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": []}}},
            "at '/networkPolicy/apiServer/cidrs': minItems",
        )
    ],
}
KNOWN_KEYWORDS = CONSTRAINTS | ANNOTATIONS

# A valid element for each array whose default is empty, so that an element rule can be broken
# inside an otherwise valid element.
EXAMPLE_ITEMS: dict[str, Any] = {
    "/imagePullSecrets": {"name": "regcred"},
    "/tolerations": {"key": "a", "operator": "Exists"},
    "/extraEnv": {"name": "TZ", "value": "UTC"},
    "/watchNamespaces": "nim-service",
    "/networkPolicy/apiServer/cidrs": "10.0.0.1/32",
}
# A valid key (and value) for each map, used to break a rule on its keys or values.
EXAMPLE_KEYS: dict[str, str] = {
    "/prometheus/headers": "X-Scope-OrgID",
    "/policies": "example.yaml",
}


@dataclass(frozen=True)
class BadValue:
    """A values override that breaks one schema rule."""

    id: str
    """``<json pointer>:<keyword>``, e.g. ``/replicaCount:minimum``."""
    values: dict[str, Any]
    """The override passed to Helm."""
    expect: str
    """A fragment Helm's error message must contain: where (and what) the error is."""


def _wrong_type(types: str | list[str]) -> Any:
    allowed = {types} if isinstance(types, str) else set(types)
    for candidate in ("not-a-number", 12, ["x"], True):
        kind = {str: "string", int: "integer", list: "array", bool: "boolean"}[type(candidate)]
        if kind in allowed or (kind == "integer" and "number" in allowed):
            continue
        return candidate
    msg = f"no wrong value for types {types}"
    raise AssertionError(msg)


def _pattern_breaker(pattern: str) -> str:
    for candidate in ("Not Valid!", "-", "x", "1.2.3.4", "a,b=c"):
        if not re.search(pattern, candidate):
            return candidate
    msg = f"no string breaks pattern {pattern}"
    raise AssertionError(msg)


def _set(root: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    """A copy of ``root`` with ``value`` at ``path`` (lists are rebuilt as one-element lists)."""
    if not path:
        assert isinstance(value, dict)
        return value
    result = copy.deepcopy(root)
    node: Any = result
    for step, nxt in zip(path, [*path[1:], None], strict=True):
        if nxt is None:
            node[step] = value
            break
        if isinstance(step, int):
            node = node[step]
            continue
        if step not in node or node[step] is None:
            node[step] = [] if isinstance(nxt, int) else {}
        node = node[step]
    return result


def _get(root: Any, path: list[str | int]) -> Any:
    node = root
    for step in path:
        node = node[step]
    return node


def _pointer(path: list[str | int]) -> str:
    return "".join(f"/{step}" for step in path)


def bad_value_cases(schema: dict[str, Any], defaults: dict[str, Any]) -> list[BadValue]:
    """One case per constraint in ``schema``; ``defaults`` are the chart's values."""
    cases: list[BadValue] = []
    # The instance built so far: starts from the defaults, grows where arrays/maps get examples.
    cases.extend(_walk(schema, [], copy.deepcopy(defaults), {}, defaults))
    ids = [case.id for case in cases]
    assert {c.id.split(":", 1)[0] for c in cases} >= set(CONDITIONAL_CASES), "unused case"
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return cases


def _in_defaults(defaults: dict[str, Any], path: list[str | int]) -> bool:
    """Whether Helm coalesces ``path`` with the chart defaults (only maps are coalesced)."""
    node: Any = defaults
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


def _without(root: dict[str, Any], path: list[str | int], key: str) -> dict[str, Any]:
    """A copy of ``root`` without ``key`` in the mapping at ``path``."""
    result = copy.deepcopy(root)
    parent: Any = _get(result, path)
    del parent[key]
    return result


def _walk(
    node: dict[str, Any],
    path: list[str | int],
    instance: dict[str, Any],
    base: dict[str, Any],
    defaults: dict[str, Any],
) -> Iterator[BadValue]:
    """Cases for ``node`` at ``path``; ``instance`` is a full valid values tree containing it.

    ``base`` is the override that makes ``instance`` valid around ``path`` (for example the
    one-element list an item rule lives in); every case starts from it.
    """
    unknown = set(node) - KNOWN_KEYWORDS
    assert not unknown, f"{_pointer(path)}: no bad-value generator for {sorted(unknown)}"
    pointer = _pointer(path)
    current: Any = _get(instance, path) if path else instance

    def case(keyword: str, value: Any, at: str | None = None) -> BadValue:
        return BadValue(
            f"{pointer or '/'}:{keyword}", _set(base, path, value), f"at '{at or pointer}'"
        )

    if "type" in node and path:
        yield case("type", _wrong_type(node["type"]))
    if "enum" in node:
        yield case("enum", "not-in-enum")
    if "const" in node:
        wrong = "something-else" if isinstance(node["const"], str) else not node["const"]
        yield case("const", wrong)
    if "minimum" in node:
        yield case("minimum", node["minimum"] - 1)
    if "maximum" in node:
        yield case("maximum", node["maximum"] + 1)
    if "exclusiveMinimum" in node:
        yield case("exclusiveMinimum", node["exclusiveMinimum"])
    if "pattern" in node:
        yield case("pattern", _pattern_breaker(node["pattern"]))
    if "minLength" in node:
        yield case("minLength", "")
    if "maxLength" in node:
        yield case("maxLength", "a" * (node["maxLength"] + 1))
    if "minItems" in node:
        yield case("minItems", [])
    if "uniqueItems" in node:
        item = current[0] if current else EXAMPLE_ITEMS[pointer]
        yield case("uniqueItems", [item, item])
    if "minProperties" in node:
        # Maps merge into the defaults: null out every default key to empty the map.
        coalesced = _in_defaults(defaults, path)
        yield case("minProperties", dict.fromkeys(current or {}) if coalesced else {})
    if "oneOf" in node:
        yield case("oneOf", {"not": "any branch"})
    conditionals = [pointer] if "if" in node or "not" in node else []
    conditionals += [f"{pointer}/allOf/{n}" for n in range(len(node.get("allOf", [])))]
    for where in conditionals:
        keyword = "not" if "not" in node and where == pointer else "if-then"
        for number, (values, expect) in enumerate(CONDITIONAL_CASES[where]):
            suffix = f":{number}" if number else ""
            yield BadValue(f"{where}:{keyword}{suffix}", copy.deepcopy(values), expect)
    if node.get("additionalProperties") is False:
        yield case("additionalProperties", {**(current or {}), "unknownKey": 1})
    for key in node.get("required", []):
        if not (isinstance(current, dict) and key in current):
            continue
        if _in_defaults(defaults, [*path, key]):
            # Helm deletes a key whose override is null, leaving it missing after coalescing.
            values = _set(base, [*path, key], None)
        else:
            values = _without(_set(base, path, current), path, key)
        yield BadValue(f"{pointer or '/'}:required:{key}", values, f"at '{pointer}'")
    if "propertyNames" in node:
        sample = current[next(iter(current))] if current else _example_value(node)
        bad_key = _pattern_breaker(node["propertyNames"]["pattern"])
        yield BadValue(
            f"{pointer}:propertyNames",
            _set(base, path, {bad_key: sample}),
            f"invalid propertyName {bad_key!r}",
        )
        if "maxLength" in node["propertyNames"]:
            long_key = "a" * node["propertyNames"]["maxLength"] + ".yaml"
            yield BadValue(
                f"{pointer}:propertyNames-maxLength",
                _set(base, path, {long_key: sample}),
                f"invalid propertyName {long_key!r}",
            )
    for key, child in node.get("properties", {}).items():
        if isinstance(current, dict) and key in current:
            yield from _walk(child, [*path, key], instance, base, defaults)
        elif isinstance(current, dict):
            # Optional and absent by default: give it a valid value first, then break it.
            example = _example_for(child, [*path, key])
            if example is None:
                continue
            grown = _set(instance, [*path, key], example)
            yield from _walk(
                child, [*path, key], grown, _set(base, [*path, key], example), defaults
            )
    items = node.get("items")
    if items is not None:
        element = current[0] if current else EXAMPLE_ITEMS[pointer]
        grown = _set(instance, path, [element])
        yield from _walk(items, [*path, 0], grown, _set(base, path, [element]), defaults)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        if current:
            key = next(iter(current))
            value = current[key]
        else:
            key = EXAMPLE_KEYS.get(pointer, "example")
            value = _example_value(node)
        grown = _set(instance, path, {key: value})
        yield from _walk(extra, [*path, key], grown, _set(base, path, {key: value}), defaults)


def _example_value(node: dict[str, Any]) -> Any:
    """A valid value for the map entries of ``node``."""
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("type") == "string":
        return "value"
    if isinstance(extra, dict) and extra.get("required") == [
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    ]:
        kind = extra.get("properties", {}).get("kind", {}).get("const")
        return copy.deepcopy(BUDGET_EXAMPLE if kind == "ScalingBudget" else POLICY_EXAMPLE)
    msg = f"no example value for {node}"
    raise AssertionError(msg)


def _example_for(node: dict[str, Any], path: list[str | int]) -> Any:
    """A valid value for an optional property absent from the defaults, or None to skip it."""
    pointer = _pointer(path)
    if pointer == "/policies/example.yaml/metadata/namespace":
        return "nim-service"
    if pointer == "/global":
        return None  # Helm's own; free-form by design
    types = node.get("type")
    if "oneOf" in node:
        return "1Gi"  # the only optional oneOf values are resource quantities
    if types == "object":
        return {}
    if types == "string":
        return "nim-service" if "pattern" in node else "text"
    msg = f"{pointer}: optional value without an example"
    raise AssertionError(msg)
