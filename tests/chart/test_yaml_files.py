"""yamllint on the chart's YAML (templates excluded: they are Go templates, checked by rendering)
and on the tool configs, with the repository's ``.yamllint``; JSON files parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from yamllint import linter
from yamllint.config import YamlLintConfig

from .conftest import CHART_DIR, REPO

YAML_FILES = sorted(
    [
        CHART_DIR / "Chart.yaml",
        CHART_DIR / "values.yaml",
        *(CHART_DIR / "ci").glob("*.yaml"),
        *(CHART_DIR / "crds").glob("*.yaml"),
        REPO / ".hadolint.yaml",
        REPO / ".yamllint",
    ]
)


@pytest.fixture(scope="module")
def config() -> YamlLintConfig:
    """The repository's yamllint configuration."""
    return YamlLintConfig(file=str(REPO / ".yamllint"))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_yamllint_clean(config: YamlLintConfig, path: Path) -> None:
    """No yamllint error or warning."""
    text = path.read_text(encoding="utf-8")
    problems = [
        f"{path}:{p.line}:{p.column} {p.message} ({p.rule})"
        for p in linter.run(text, config, str(path))
    ]
    assert problems == []


def test_yamllint_has_teeth(config: YamlLintConfig) -> None:
    """The configuration does report typical mistakes."""
    problems = list(linter.run("key: yes\nkey: 1\nlong:   value \n", config, "x.yaml"))
    rules = {p.rule for p in problems}
    assert {"truthy", "key-duplicates", "trailing-spaces"} <= rules


def test_templates_are_not_linted_as_yaml(config: YamlLintConfig) -> None:
    """Go templates are excluded (their output is validated after rendering instead)."""
    assert config.is_file_ignored(
        str(CHART_DIR.relative_to(REPO) / "templates" / "deployment.yaml")
    )


@pytest.mark.parametrize("name", ["values.schema.json", "dashboards/nim-autoscaler.json"])
def test_json_files_parse(name: str) -> None:
    """The schema and the dashboard are valid JSON objects."""
    assert isinstance(json.loads((CHART_DIR / name).read_text(encoding="utf-8")), dict)
