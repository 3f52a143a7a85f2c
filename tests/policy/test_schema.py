"""The JSON Schema: the committed file matches the model, and the examples validate against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from autoscaler.policy.schema import COMMITTED_SCHEMA_PATH, policy_schema, policy_schema_json
from tests.policy.helpers import POLICIES, REPO, base_doc, changed

SCHEMA_COMMENT = "# yaml-language-server: $schema=./schema/scalingpolicy.schema.json"
EXAMPLES = sorted(POLICIES.glob("*.yaml"))


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(policy_schema())


def test_committed_schema_is_up_to_date() -> None:
    """policies/schema/scalingpolicy.schema.json equals the generated schema (run
    `nim-autoscaler schema -o policies/schema/scalingpolicy.schema.json` after model changes)."""
    committed = (REPO / COMMITTED_SCHEMA_PATH).read_text(encoding="utf-8")
    assert policy_schema_json() == committed


def test_schema_is_valid_draft_2020_12() -> None:
    """The generated schema is itself a valid JSON Schema."""
    jsonschema.Draft202012Validator.check_schema(policy_schema())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_against_schema(path: Path) -> None:
    """Each example policy is valid for the JSON Schema and names it in its first line."""
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_COMMENT
    for document in yaml.safe_load_all(text):
        errors = [error.message for error in validator().iter_errors(document)]
        assert errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("spec.replicas", 3, id="unknown-key"),
        pytest.param("kind", "Deployment", id="wrong-kind"),
        pytest.param("spec.metrics.0", {}, id="empty-metric-entry"),
        pytest.param("spec.metrics.0.kvCache.target.averageValue", "lots", id="bad-quantity"),
        pytest.param("spec.algorithm", "magic", id="bad-enum"),
    ],
)
def test_schema_rejects_bad_documents(path: str, value: Any) -> None:
    """The schema catches shape errors an editor should underline."""
    document = json.loads(json.dumps(changed(base_doc(), path, value)))
    assert list(validator().iter_errors(document)) != []


def test_schema_accepts_quantity_and_duration_strings() -> None:
    """Strings the model accepts ('100m', '30s') are accepted by the schema too."""
    doc = changed(base_doc(), "spec.metrics.0.kvCache.target.averageValue", "700m")
    doc = changed(doc, "spec.metrics.0.kvCache.maxStaleness", "1m30s")
    assert list(validator().iter_errors(doc)) == []
