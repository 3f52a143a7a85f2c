"""docs/deploy.md stays in sync with the chart: the values table is the generated one, and the
commands and names it quotes exist."""

from __future__ import annotations

import json
import re

from autoscaler.cli import COMMANDS

from .conftest import CHART_DIR
from .values_table import DOCS, current_table, rows, table


def schema_leaf_keys() -> set[str]:
    """Dotted keys of every value the schema describes (objects with properties expanded)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    return {key for key, *_ in rows(schema, {})}


def test_values_table_is_up_to_date() -> None:
    """The table equals the output of the generator (run it after changing the schema)."""
    assert current_table(DOCS.read_text(encoding="utf-8")) == table(), (
        "docs/deploy.md is stale: run .venv/bin/python -m tests.chart.values_table"
    )


def test_values_table_keys_match_the_schema() -> None:
    """Each schema value has a row, and each row is a schema value."""
    documented = set(re.findall(r"^\| `([^`]+)` \|", current_table(DOCS.read_text("utf-8")), re.M))
    assert documented == schema_leaf_keys()


def test_every_default_value_is_documented() -> None:
    """Each key of values.yaml (down to the documented depth) appears in the table."""
    import yaml

    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    keys = schema_leaf_keys()

    def visit(node: dict[str, object], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in keys:
                continue
            assert isinstance(value, dict), f"{path} is not documented"
            visit(value, f"{path}.")

    visit(defaults, "")


def test_quoted_commands_exist() -> None:
    """The nim-autoscaler subcommands the guide tells people to run are real."""
    text = DOCS.read_text(encoding="utf-8")
    quoted = set(re.findall(r"nim-autoscaler (import|validate|explain|run|status)\b", text))
    assert quoted
    assert quoted <= set(COMMANDS)
