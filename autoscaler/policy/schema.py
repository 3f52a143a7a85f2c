"""JSON Schema of the policy file, generated from :mod:`autoscaler.policy.models`.

The schema uses the YAML (camelCase) keys. It is printed by ``nim-autoscaler schema``
(:mod:`autoscaler.commands.schema`) and committed as ``policies/schema/scalingpolicy.schema.json``
so editors (``# yaml-language-server: $schema=...``) can complete and check policy files; a test
keeps the committed file equal to :func:`policy_schema_json`. The schema checks shape only: rules
that span fields (``maxReplicas >= minReplicas``, unique metric names) are checked by the model.
The Kubernetes CRD (:mod:`autoscaler.policy.crd`) is generated from the same model.
"""

from __future__ import annotations

import json
from typing import Any

from autoscaler.policy.models import API_VERSION, CRD_KEY, ScalingPolicy

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://nim-autoscaler.dev/schema/scalingpolicy.schema.json"
COMMITTED_SCHEMA_PATH = "policies/schema/scalingpolicy.schema.json"
"""Where the generated schema is committed, relative to the repository root."""


def policy_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one ScalingPolicy YAML document."""
    schema = without_crd_hints(ScalingPolicy.model_json_schema(by_alias=True, mode="validation"))
    header: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": f"ScalingPolicy ({API_VERSION})",
    }
    return {**header, **{k: v for k, v in schema.items() if k != "title"}}


def policy_schema_json() -> str:
    """The schema as stable, indented JSON text ending with a newline."""
    return json.dumps(policy_schema(), indent=2, ensure_ascii=False) + "\n"


def without_crd_hints(node: Any) -> Any:
    """A copy of a JSON Schema without the CRD-only hints (``x-crd`` keys)."""
    if isinstance(node, dict):
        return {k: without_crd_hints(v) for k, v in node.items() if k != CRD_KEY}
    if isinstance(node, list):
        return [without_crd_hints(v) for v in node]
    return node
