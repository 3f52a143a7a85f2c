"""The ``ScalingBudget`` document: a GPU limit shared by the policies of some namespaces.

A second document kind in the policy directory, read by :mod:`autoscaler.policy.loader` beside
the policies (same files, same ``apiVersion``, same located errors). The control loop hands the
budgets in force and each tick's decisions to :func:`autoscaler.decision.budget.allocate`, which
grants GPUs by ``spec.priority`` of the policies, then in proportion to unmet need.

```yaml
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1   # or the legacy nim-autoscaler/v1alpha1
kind: ScalingBudget
metadata: {name: h100-pool}
spec:
  maxGpus: 16
  namespaces: [nim-service]     # optional; default: every policy
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from autoscaler.policy.models import (
    API_VERSION,
    API_VERSIONS,
    DnsLabel,
    DnsSubdomain,
    ScalingPolicy,
    _Model,
)

BUDGET_KIND = "ScalingBudget"


class BudgetMetadata(_Model):
    """Identity of the budget (budgets are not namespaced: they may span namespaces)."""

    name: DnsSubdomain
    """Budget name (DNS-1123 subdomain), unique across the policy directory."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Free-form labels; not interpreted."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Free-form annotations; not interpreted."""


class BudgetSpec(_Model):
    """The limit and which policies share it."""

    max_gpus: int = Field(ge=0)
    """GPUs (``nvidia.com/gpu``) the policies in the budget may hold together."""
    namespaces: list[DnsLabel] | None = None
    """Namespaces whose policies share this budget; absent: every policy."""

    @field_validator("namespaces")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            msg = "namespaces: each namespace may be listed once"
            raise ValueError(msg)
        return value

    def covers(self, policy: ScalingPolicy) -> bool:
        """True if ``policy`` belongs to this budget."""
        return self.namespaces is None or policy.metadata.namespace in self.namespaces


class ScalingBudget(_Model):
    """A ``kind: ScalingBudget`` document."""

    api_version: str
    """The same apiVersions as the policies (``autoscaling.nim-autoscaler.io/v1alpha1``, or the
    legacy ``nim-autoscaler/v1alpha1``)."""
    kind: Literal["ScalingBudget"]
    """Always ``ScalingBudget``."""
    metadata: BudgetMetadata
    """Name."""
    spec: BudgetSpec
    """The limit."""

    @field_validator("api_version", mode="before")
    @classmethod
    def _known_api_version(cls, value: object) -> object:
        if value not in API_VERSIONS:
            msg = f"apiVersion must be {API_VERSION!r}, got {value!r}"
            raise ValueError(msg)
        return value

    @property
    def key(self) -> str:
        """The budget's name (its identity in the controller)."""
        return self.metadata.name
