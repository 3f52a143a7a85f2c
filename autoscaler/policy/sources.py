"""The policies in force: files of the policy directory and ScalingPolicy resources, merged.

Pure: the controller's policy feed (:mod:`autoscaler.app`) gives :func:`merge_sources` what the
directory (:class:`~autoscaler.policy.loader.PolicyDirectory`) and the resource watch
(:mod:`autoscaler.kube.policies`) hold, and gets back the policies to run and the problems to
report.

A file and a resource naming the same ``namespace/name`` is a conflict, and neither silently
wins: **neither runs**. The policy's target is left as it is (no decision, no write: never a
scale-down), the conflict is reported on both sides (the resource's ``status.conditions`` and an
Event; the file's problem in the log and in ``nim_autoscaler_policy_errors``), and it ends when
one of the two is removed or renamed. Holding both is the only rule that does not depend on which
one the controller happened to see first, so a restart or a leader change never changes which
policy scales a workload.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler.errors import PolicyError
from autoscaler.policy.loader import LoadResult
from autoscaler.policy.models import ScalingPolicy


@dataclass(frozen=True, slots=True)
class ResourcePolicy:
    """One ScalingPolicy resource as the watch holds it: the validated policy, or its errors."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    policy: ScalingPolicy | None
    """The validated policy (None when invalid)."""
    errors: tuple[PolicyError, ...] = ()
    """Why it is invalid (field path and message each)."""

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ResourceProblem:
    """A resource that does not run, and why (reported on its status and as an Event)."""

    resource: ResourcePolicy
    reason: str
    """``InvalidPolicy`` or ``ConflictingPolicyFile``."""
    message: str


@dataclass(frozen=True, slots=True)
class MergedPolicies:
    """The outcome of :func:`merge_sources`."""

    policies: tuple[ScalingPolicy, ...] = ()
    """The policies in force: files first (in file order), then resources (by key)."""
    resources: dict[str, ResourcePolicy] = field(default_factory=dict)
    """Key -> resource, for the policies in force that came from a resource."""
    problems: tuple[ResourceProblem, ...] = ()
    """Resources that do not run (invalid, or in conflict with a file)."""
    conflicts: dict[str, str] = field(default_factory=dict)
    """Key -> the file that defines it too (neither runs)."""


def merge_sources(files: LoadResult, resources: Sequence[ResourcePolicy]) -> MergedPolicies:
    """Merge the directory's policies with the resources' (see the module docstring).

    Args:
        files: the directory's load result (policies in force, including last-good versions).
        resources: every ScalingPolicy resource seen, valid or not.
    """
    file_of = {loaded.key: loaded.location.file for loaded in files.policies}
    conflicts: dict[str, str] = {}
    problems: list[ResourceProblem] = []
    in_force: dict[str, ResourcePolicy] = {}
    for resource in sorted(resources, key=lambda r: r.key):
        if resource.key in file_of:
            conflicts[resource.key] = file_of[resource.key]
            problems.append(
                ResourceProblem(
                    resource,
                    "ConflictingPolicyFile",
                    f"policy {resource.key} is also defined by the file "
                    f"{file_of[resource.key]}; neither is applied (the target is left as it is) "
                    "until one of them is removed or renamed",
                )
            )
        elif resource.policy is None:
            problems.append(
                ResourceProblem(
                    resource,
                    "InvalidPolicy",
                    "; ".join(
                        f"{e.location.field}: {e.message}"
                        if e.location is not None and e.location.field
                        else e.message
                        for e in resource.errors
                    )
                    or "invalid policy",
                )
            )
        else:
            in_force[resource.key] = resource
    policies = [loaded.policy for loaded in files.policies if loaded.key not in conflicts]
    policies += [r.policy for r in in_force.values() if r.policy is not None]
    return MergedPolicies(tuple(policies), in_force, tuple(problems), conflicts)
