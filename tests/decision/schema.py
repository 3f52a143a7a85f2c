"""The decision record's JSON Schema (``docs/schema/decision.schema.json``) as a test helper."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schema" / "decision.schema.json"


@functools.cache
def validator() -> Draft202012Validator:
    """A validator of the schema (itself checked against the metaschema once)."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def assert_valid(record: Any) -> None:
    """``record`` follows the schema; otherwise every violation, with its path, fails the test."""
    errors = sorted(validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    messages = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    assert not messages, "\n".join(messages[:20])
