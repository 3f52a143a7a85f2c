"""The canonical apiVersion and the old one: both load, lint names the migration, import emits
the new one."""

from __future__ import annotations

import pytest

from autoscaler.policy.importers import import_text
from autoscaler.policy.lint import lint_policies
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import API_VERSION, LEGACY_API_VERSION
from tests.policy.helpers import FIXTURES, base_doc, changed, dump


class TestApiVersion:
    """``autoscaling.nim-autoscaler.io/v1alpha1`` is canonical; the old name keeps working."""

    def test_canonical_version_has_a_group(self) -> None:
        """The group is the CRD's (it contains a dot, as Kubernetes requires)."""
        assert API_VERSION == "autoscaling.nim-autoscaler.io/v1alpha1"

    @pytest.mark.parametrize("version", [API_VERSION, LEGACY_API_VERSION])
    def test_both_versions_load_to_the_same_spec(self, version: str) -> None:
        """A file with the old apiVersion loads unchanged (same policy apart from the field)."""
        result = load_text(dump(changed(base_doc(), "apiVersion", version)), "p.yaml")
        assert result.ok
        (loaded,) = result.policies
        assert loaded.policy.api_version == version
        reference = load_text(dump(base_doc()), "q.yaml").policies[0].policy
        assert loaded.policy.spec == reference.spec

    def test_old_version_gets_a_lint_warning_with_the_migration(self) -> None:
        """The warning points at the apiVersion line and gives the one-line fix."""
        text = dump(changed(base_doc(), "apiVersion", LEGACY_API_VERSION))
        findings = lint_policies(load_text(text, "old.yaml").policies)
        legacy = [f for f in findings if f.rule == "legacy-api-version"]
        assert len(legacy) == 1
        assert legacy[0].location.line == 1
        assert f"apiVersion: {API_VERSION}" in legacy[0].hint
        new = lint_policies(load_text(dump(base_doc()), "new.yaml").policies)
        assert [f for f in new if f.rule == "legacy-api-version"] == []

    def test_unknown_version_is_rejected_naming_the_canonical_one(self) -> None:
        """Anything else is an error that says what to write."""
        result = load_text(dump(changed(base_doc(), "apiVersion", "nim-autoscaler/v2")), "p.yaml")
        assert not result.ok
        assert API_VERSION in str(result.all_errors()[0])

    def test_import_emits_the_canonical_version(self) -> None:
        """Converted HPAs and NIMServices carry the new apiVersion."""
        for path in sorted(FIXTURES.glob("*.yaml")):
            if "invalid" in path.name:
                continue
            for converted in import_text(path.read_text(), path.name):
                assert converted.document["apiVersion"] == API_VERSION
