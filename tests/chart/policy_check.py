"""Validate policy files exactly as the controller reads them: with the project's loader."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.policy.loader import format_errors, load_text
from autoscaler.policy.models import ScalingPolicy


def validate_policy_files(files: Mapping[str, str]) -> list[ScalingPolicy]:
    """Every policy in ``files`` (file name to YAML text); fails with the loader's messages."""
    policies: list[ScalingPolicy] = []
    for name, text in sorted(files.items()):
        result = load_text(text, name)
        assert result.ok, "\n".join(format_errors(result.errors))
        assert result.policies, f"{name}: no policy document"
        policies.extend(loaded.policy for loaded in result.policies)
    return policies
