"""Kubernetes CustomResourceDefinitions generated from the pydantic models.

One source of truth: the CRD's ``openAPIV3Schema`` is derived from the same models as the JSON
Schema of policy files (:mod:`autoscaler.policy.schema`), and a test keeps the committed CRD in
``charts/nim-autoscaler/crds/`` equal to :func:`crd_yaml`. The generator is generic over pydantic
models (:func:`structural_schema`); :data:`SCALING_POLICY` describes the one resource kind.

The API server only accepts a *structural* schema: every node typed, no ``$ref``, no
``additionalProperties: false`` (unknown fields are pruned or, with kubectl's strict field
validation, rejected), ``anyOf`` only as a value validation without types, and OpenAPI v3.0
keywords (``exclusiveMinimum: true`` beside ``minimum``). The conversion:

- ``$ref`` is inlined; ``anyOf: [X, null]`` (an optional field) becomes ``X``;
- ``const`` becomes a one-value ``enum``; string enums get a ``maxLength`` (bounds CEL cost);
- a node's ``x-crd`` hint (:data:`autoscaler.policy.models.CRD_KEY`) is merged over the result:
  quantities become plain numbers, durations int-or-string, the one-key metric entries an object
  of optional kinds with a CEL ``exactly one`` rule, and the cross-field rules become
  ``x-kubernetes-validations`` with messages written for an SRE.

Anything else that cannot be expressed raises :class:`CrdError` naming the schema path, so a new
model field never silently produces a schema the API server would reject.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel

from autoscaler.policy.models import API_GROUP, CRD_KEY, KIND, PolicySpec
from autoscaler.policy.status import ScalingPolicyStatus

COMMITTED_CRD_DIR = "charts/nim-autoscaler/crds"
"""Where the generated CRDs are committed, relative to the repository root (Helm installs the
files of a chart's ``crds/`` directory before its templates)."""

_COPIED = (
    "description",
    "enum",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
)
_DROPPED = frozenset({"title", "examples", "discriminator", "$schema", "$id", "$comment"})


class CrdError(ValueError):
    """A model's JSON Schema has a construct the CRD's structural schema cannot express."""


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry (a column of ``kubectl get``)."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0
    """0: always shown; 1: only with ``-o wide``."""

    def to_json(self) -> dict[str, Any]:
        """The CRD's JSON form."""
        column: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class ResourceKind:
    """What a CRD needs beside the models: names, version, columns."""

    group: str
    version: str
    kind: str
    plural: str
    spec_model: type[BaseModel]
    status_model: type[BaseModel] | None
    description: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    columns: tuple[PrinterColumn, ...] = ()
    extra_rules: Sequence[Mapping[str, str]] = field(default_factory=tuple)
    """CEL rules on the whole object (beside those the models carry)."""

    @property
    def name(self) -> str:
        """The CRD's ``metadata.name``: ``<plural>.<group>``."""
        return f"{self.plural}.{self.group}"

    @property
    def file_name(self) -> str:
        """The committed file's name under :data:`COMMITTED_CRD_DIR`."""
        return f"{self.name}.yaml"


SCALING_POLICY = ResourceKind(
    group=API_GROUP,
    version="v1alpha1",
    kind=KIND,
    plural="scalingpolicies",
    spec_model=PolicySpec,
    status_model=ScalingPolicyStatus,
    description=(
        "ScalingPolicy scales a workload (any kind with a /scale subresource: Deployment, "
        "StatefulSet, NIMService) on LLM serving metrics read from Prometheus, with the "
        "HorizontalPodAutoscaler's semantics and an LLM-aware algorithm. The same document "
        "can be a file in the controller's policy directory."
    ),
    short_names=("nsp",),
    categories=("nim-autoscaler", "autoscaling"),
    columns=(
        PrinterColumn(
            "Target", "string", ".spec.scaleTargetRef.name", "The workload that is scaled."
        ),
        PrinterColumn(
            "Kind", "string", ".spec.scaleTargetRef.kind", "Kind of the workload.", priority=1
        ),
        PrinterColumn("Min", "integer", ".spec.minReplicas", "Lower bound of replicas."),
        PrinterColumn("Max", "integer", ".spec.maxReplicas", "Upper bound of replicas."),
        PrinterColumn("Current", "integer", ".status.currentReplicas", "Replicas of the target."),
        PrinterColumn("Desired", "integer", ".status.desiredReplicas", "Replicas last decided."),
        PrinterColumn("Reason", "string", ".status.lastDecision.reason", "Why the last decision."),
        PrinterColumn("Algorithm", "string", ".spec.algorithm", "hpa or llm.", priority=1),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Age of the policy."),
    ),
)
"""The ScalingPolicy resource."""

RESOURCE_KINDS: tuple[ResourceKind, ...] = (SCALING_POLICY,)
"""Every resource kind the chart installs a CRD for."""


# --------------------------------------------------------------------------------------------
# JSON Schema (pydantic) -> structural OpenAPI v3.0 schema
# --------------------------------------------------------------------------------------------


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural ``openAPIV3Schema`` node of a pydantic model (validation mode, YAML keys).

    Raises:
        CrdError: the model's schema has a construct a CRD cannot express.
    """
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.pop("$defs", {})
    return _convert(schema, definitions, model.__name__, ())


def _resolve(node: Mapping[str, Any], definitions: Mapping[str, Any], path: str) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return dict(node)
    name = str(ref).rsplit("/", 1)[-1]
    if name not in definitions:
        msg = f"{path}: unresolvable $ref {ref!r}"
        raise CrdError(msg)
    merged = dict(definitions[name])
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    merged["$defName"] = name
    return merged


def _convert(
    raw: Mapping[str, Any],
    definitions: Mapping[str, Any],
    path: str,
    stack: tuple[str, ...],
) -> dict[str, Any]:
    node = _resolve(raw, definitions, path)
    def_name = node.pop("$defName", None)
    if def_name is not None:
        if def_name in stack:
            msg = f"{path}: recursive model {def_name} cannot be a structural schema"
            raise CrdError(msg)
        stack = (*stack, def_name)
    hint: dict[str, Any] = dict(node.pop(CRD_KEY, None) or {})
    hint_description = hint.get("description")
    replaces = "type" in hint or "x-kubernetes-int-or-string" in hint
    if "anyOf" in node and not replaces:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            msg = (
                f"{path}: a choice of {len(branches)} types cannot be a structural schema; "
                f"give the field an '{CRD_KEY}' hint"
            )
            raise CrdError(msg)
        inner = _resolve(branches[0], definitions, path)
        outer = {k: v for k, v in node.items() if k not in {"default"} or v is not None}
        node = {**inner, **{k: v for k, v in outer.items() if k != "title"}}
        return _convert(node, definitions, path, stack)
    if replaces:
        node.pop("anyOf", None)
        own = node.get("description")
        node = {k: v for k, v in node.items() if k in {"description", "default"}}
        node.update(
            _convert_keywords(
                {k: v for k, v in hint.items() if k != "anyOf" and not k.startswith("x-")},
                definitions,
                path,
                stack,
            )
        )
        hint = {k: v for k, v in hint.items() if k == "anyOf" or k.startswith("x-")}
        if own and hint_description and own != hint_description:
            node["description"] = f"{own} {hint_description}"
    out = _convert_keywords(node, definitions, path, stack)
    for key, value in hint.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    if "anyOf" in out and "x-kubernetes-int-or-string" in out:
        # The one anyOf a structural schema allows with types: integer | string, types only.
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    default = out.get("default")
    if (
        isinstance(default, float)
        and default.is_integer()
        and (out.get("type") == "integer" or out.get("x-kubernetes-int-or-string"))
    ):
        out["default"] = int(default)  # 60.0 from a float field is the integer 60 here
    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        msg = f"{path}: the node has no type"
        raise CrdError(msg)
    return out


def _convert_keywords(
    node: Mapping[str, Any],
    definitions: Mapping[str, Any],
    path: str,
    stack: tuple[str, ...],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "const" in node:
        out["enum"] = [node["const"]]
    kind = node.get("type")
    if isinstance(kind, list):
        msg = f"{path}: a list of types {kind} cannot be a structural schema"
        raise CrdError(msg)
    if kind is None and "const" in node:
        kind = _json_type(node["const"])
    if kind is None and "enum" in node:
        kinds = {_json_type(v) for v in node["enum"]}
        kind = kinds.pop() if len(kinds) == 1 else None
    if kind is not None:
        out["type"] = kind
    for key in _COPIED:
        if key in node:
            out[key] = node[key]
    if "description" in out:
        # Docstrings are reStructuredText; kubectl explain shows plain text.
        text = str(out["description"]).replace("``", "'")
        out["description"] = re.sub(r"\s*\n\s*", " ", text).strip()
    if node.get("uniqueItems") is True:
        msg = f"{path}: uniqueItems is not allowed in a CRD (use x-kubernetes-list-type: set)"
        raise CrdError(msg)
    if "default" in node and node["default"] is not None:
        out["default"] = node["default"]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[plain] = node[bound]
            out[bound] = True
    for plain in ("minimum", "maximum"):
        if plain in node:
            out[plain] = node[plain]
    if out.get("type") == "string" and "enum" in out and "maxLength" not in out:
        out["maxLength"] = max(len(str(v)) for v in out["enum"])
    if "properties" in node:
        out["properties"] = {
            name: _convert(child, definitions, f"{path}.{name}", stack)
            for name, child in node["properties"].items()
        }
    if node.get("required"):
        out["required"] = list(node["required"])
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = _convert(additional, definitions, f"{path}.*", stack)
    elif additional is True and "properties" not in node:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = _convert(node["items"], definitions, f"{path}[]", stack)
    unknown = (
        set(node)
        - set(_COPIED)
        - _DROPPED
        - {
            "type",
            "const",
            "default",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "uniqueItems",
        }
    )
    if unknown:
        msg = f"{path}: JSON Schema keyword(s) {sorted(unknown)} have no CRD equivalent"
        raise CrdError(msg)
    return out


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------------------------
# The CRD document
# --------------------------------------------------------------------------------------------


def crd(resource: ResourceKind) -> dict[str, Any]:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of ``resource``."""
    properties: dict[str, Any] = {
        "apiVersion": {
            "type": "string",
            "description": "APIVersion: always " + f"{resource.group}/{resource.version}.",
        },
        "kind": {"type": "string", "description": f"Kind: always {resource.kind}."},
        "metadata": {"type": "object"},
        "spec": structural_schema(resource.spec_model),
    }
    if resource.status_model is not None:
        status = structural_schema(resource.status_model)
        status["description"] = (
            "Written by the controller through the /status subresource; read-only for users."
        )
        properties["status"] = status
    root: dict[str, Any] = {
        "type": "object",
        "description": resource.description,
        "required": ["spec"],
        "properties": properties,
    }
    if resource.extra_rules:
        root["x-kubernetes-validations"] = [dict(rule) for rule in resource.extra_rules]
    version: dict[str, Any] = {
        "name": resource.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
    }
    if resource.status_model is not None:
        version["subresources"] = {"status": {}}
    if resource.columns:
        version["additionalPrinterColumns"] = [c.to_json() for c in resource.columns]
    names: dict[str, Any] = {
        "kind": resource.kind,
        "listKind": f"{resource.kind}List",
        "plural": resource.plural,
        "singular": resource.kind.lower(),
    }
    if resource.short_names:
        names["shortNames"] = list(resource.short_names)
    if resource.categories:
        names["categories"] = list(resource.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.name,
            "labels": {"app.kubernetes.io/part-of": "nim-autoscaler"},
        },
        "spec": {
            "group": resource.group,
            "names": names,
            "scope": "Namespaced",
            "versions": [version],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Block-style YAML without anchors (each node written out, as kubectl shows it)."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never write ``&anchor``/``*alias``."""
        return True


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def crd_yaml(resource: ResourceKind = SCALING_POLICY) -> str:
    """The CRD as the YAML text committed under :data:`COMMITTED_CRD_DIR`."""
    header = (
        "# Generated from the policy models by `nim-autoscaler schema --crd`; do not edit.\n"
        "# After a model change: nim-autoscaler schema --crd -o <this file>\n"
    )
    # Narrow wrapping: the deep nesting adds its indentation to the width (yamllint: 100).
    body = yaml.dump(crd(resource), Dumper=_Dumper, sort_keys=False, width=50, allow_unicode=True)
    return header + body
