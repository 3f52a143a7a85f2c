"""Merging policy files and ScalingPolicy resources: what runs, what is reported."""

from __future__ import annotations

from autoscaler.errors import Location, PolicyError
from autoscaler.policy.loader import LoadResult, load_text
from autoscaler.policy.sources import ResourcePolicy, merge_sources
from tests.policy.helpers import base_doc, changed, dump


def files(*names: str) -> LoadResult:
    text = "---\n".join(dump(changed(base_doc(), "metadata.name", name)) for name in names)
    result = load_text(text, "/policies/p.yaml")
    assert result.ok
    return result


def resource(name: str, *, valid: bool = True) -> ResourcePolicy:
    policy = None
    errors: tuple[PolicyError, ...] = ()
    if valid:
        policy = load_text(dump(changed(base_doc(), "metadata.name", name))).policies[0].policy
    else:
        errors = (
            PolicyError(
                "must be >= minReplicas (2)",
                Location("ScalingPolicy ns/x", field="spec.maxReplicas"),
            ),
        )
    return ResourcePolicy("ns", name, f"uid-{name}", 1, "7", policy, errors)


class TestMerge:
    """Files and resources side by side."""

    def test_files_and_resources_both_run(self) -> None:
        """Different names: all run; the resource ones are known by origin."""
        merged = merge_sources(files("a"), [resource("b")])
        assert [p.key for p in merged.policies] == ["ns/a", "ns/b"]
        assert set(merged.resources) == {"ns/b"}
        assert merged.problems == ()

    def test_same_name_in_file_and_resource_runs_neither(self) -> None:
        """A conflict holds both and is reported with the file's name."""
        merged = merge_sources(files("a", "c"), [resource("a"), resource("b")])
        assert [p.key for p in merged.policies] == ["ns/c", "ns/b"]
        assert merged.conflicts == {"ns/a": "/policies/p.yaml"}
        (problem,) = merged.problems
        assert problem.reason == "ConflictingPolicyFile"
        assert "/policies/p.yaml" in problem.message
        assert "neither is applied" in problem.message

    def test_invalid_resource_is_reported_with_the_field(self) -> None:
        """An invalid resource does not run; the others do."""
        merged = merge_sources(files("a"), [resource("x", valid=False), resource("b")])
        assert [p.key for p in merged.policies] == ["ns/a", "ns/b"]
        (problem,) = merged.problems
        assert problem.reason == "InvalidPolicy"
        assert problem.message == "spec.maxReplicas: must be >= minReplicas (2)"
