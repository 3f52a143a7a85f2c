"""The ``status`` of a ScalingPolicy resource: what the controller reports, as the HPA does.

Pydantic models (camelCase keys, unknown keys rejected) of the ``status`` subresource the
controller writes (:mod:`autoscaler.kube.policy_status` builds it from a
:class:`~autoscaler.decision.types.Decision`). The CRD's status schema is generated from these
models by :mod:`autoscaler.policy.crd`, so what is written and what the API server accepts cannot
drift apart.

Shape, beside the HPA's ``status``::

    status:
      observedGeneration: 3          # the spec generation the controller acted on
      currentReplicas: 2             # the target's /scale spec.replicas when it decided
      desiredReplicas: 4
      lastScaleTime: "2026-01-01T10:00:00Z"
      conditions: [...]              # AbleToScale, ScalingActive, ScalingLimited, CapacityPending,
                                     # Fallback, and Valid (the controller's own validation)
      lastDecision:                  # machine-readable record of the last decision
        reason: PolicyLimited        # KEP-6107 vocabulary (plus this project's, see DecisionReason)
        metrics: [{name: kvCache, value: 0.82, proposal: 6, ...}]
        stabilization: {...}
        rateLimit: {...}             # the rate limit that won, when one applied
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from autoscaler.policy.models import CRD_KEY, MAX_METRICS, PolicyType, SelectPolicy, TargetType

Timestamp = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
"""RFC 3339 UTC time, as Kubernetes writes ``metav1.Time`` (``2026-01-01T10:00:00Z``)."""


class _StatusModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


class DecisionReason(StrEnum):
    """Why the last decision came out as it did.

    The first five are the vocabulary of the Kubernetes proposal KEP-6107 for the HPA's
    ``status.lastScaleDecision``; the others are this project's additions.
    """

    WITHIN_TOLERANCE = "WithinTolerance"
    """The metrics recommend the current count (every ratio inside the tolerance band)."""
    STABILIZED = "Stabilized"
    """A stabilization window held the count back (``ScaleUp/DownStabilized``)."""
    POLICY_LIMITED = "PolicyLimited"
    """A rate limit of ``behavior`` capped the change (``ScaleUpLimit``/``ScaleDownLimit``)."""
    REPLICA_LIMIT = "ReplicaLimit"
    """The bounds clamped the count (``TooFewReplicas``, ``TooManyReplicas``)."""
    INVALID_METRICS = "InvalidMetrics"
    """No metric gave a usable value: the count is held (never scaled down on missing data)."""
    RECOMMENDED = "Recommended"
    """The metrics' recommendation was applied as it was (no window or limit changed it)."""
    FALLBACK = "Fallback"
    """``onMetricFailure: fallback`` set the count after repeated metric failures."""
    SCALING_DISABLED = "ScalingDisabled"
    """The target is at 0 replicas: scaling is off until someone scales it up (as the HPA)."""
    FAILED = "Failed"
    """No decision could be made (the target's ``/scale`` could not be read, ...)."""


class PolicyCondition(_StatusModel):
    """A condition, as ``metav1.Condition``."""

    type: str = Field(min_length=1, max_length=64)
    """``AbleToScale``, ``ScalingActive``, ``ScalingLimited``, ``CapacityPending``, ``Fallback``
    or ``Valid``."""
    status: Literal["True", "False", "Unknown"]
    """``True``, ``False`` or ``Unknown``."""
    reason: str = Field(min_length=1, max_length=1024)
    """CamelCase reason, as the HPA's (``ScaleUpLimit``, ``ValidMetricFound``, ...)."""
    message: str = Field("", max_length=32768)
    """Human-readable details."""
    last_transition_time: Timestamp
    """When the status last changed."""
    observed_generation: int | None = Field(None, ge=0)
    """The spec generation the condition was set for."""


class MetricDecision(_StatusModel):
    """One metric in the last decision: its value and the replicas it proposed."""

    name: str = Field(max_length=63)
    """The metric's name in the policy."""
    kind: str = Field(max_length=63)
    """``kvCache``, ``interTokenLatency``, ..., or ``prometheus``."""
    target_type: TargetType
    """``Value`` or ``AverageValue``."""
    target: float
    """The target, in the metric's unit."""
    value: float | None = None
    """The value compared with the target (absent: no usable signal)."""
    proposal: int | None = Field(None, ge=0)
    """Replicas this metric proposed (absent: invalid)."""


class StabilizationDecision(_StatusModel):
    """The stabilization step of the last decision."""

    recommendation: int = Field(ge=0)
    """The recommendation of the metrics (before the windows)."""
    replicas: int = Field(ge=0)
    """The count after the windows."""
    scale_up_window_seconds: int | None = Field(None, ge=0)
    """Scale-up window, seconds (absent without ``behavior``)."""
    scale_down_window_seconds: int = Field(ge=0)
    """Scale-down window, seconds."""
    reason: str = Field(max_length=64)
    """``ScaleUpStabilized``, ``ScaleDownStabilized`` or ``ReadyForNewScale``."""


class RateLimitDecision(_StatusModel):
    """The rate limit that decided the bound of the last decision's change."""

    direction: Literal["up", "down"]
    """Direction of the change."""
    select_policy: SelectPolicy | None = None
    """How the limits were combined (``Max``, ``Min``, ``Disabled``)."""
    type: PolicyType | None = None
    """The winning limit's type (absent: the HPA's built-in scale-up cap without behavior)."""
    value: int | None = Field(None, ge=0)
    """The winning limit's value (pods or percent)."""
    period_seconds: int | None = Field(None, ge=0)
    """The winning limit's period, seconds."""
    limit: int = Field(ge=0)
    """The replica bound it allowed."""
    limited: bool
    """True if the bound changed the count."""


class LastDecision(_StatusModel):
    """Machine-readable record of the last decision."""

    time: Timestamp
    """When it was decided."""
    reason: DecisionReason
    """Why: WithinTolerance, Stabilized, PolicyLimited, ReplicaLimit or InvalidMetrics (the
    KEP-6107 vocabulary), or Recommended, Fallback, ScalingDisabled, Failed."""
    message: str = Field("", max_length=4096)
    """The decision's one-line reason, as in the log and Events."""
    current_replicas: int = Field(ge=0)
    """Replicas when it decided."""
    desired_replicas: int = Field(ge=0)
    """Replicas it decided."""
    recommendation: int | None = Field(None, ge=0)
    """The metrics' combined recommendation (before stabilization and limits)."""
    metrics: list[MetricDecision] = Field(default_factory=list, max_length=MAX_METRICS)
    """Each metric's value and proposal."""
    stabilization: StabilizationDecision | None = None
    """The stabilization step."""
    rate_limit: RateLimitDecision | None = None
    """The rate limit step, when the count changed direction."""


class ScalingPolicyStatus(_StatusModel):
    """The ``status`` of a ScalingPolicy resource, written by the controller through ``/status``."""

    observed_generation: int | None = Field(None, ge=0)
    """The ``metadata.generation`` of the spec this status describes."""
    current_replicas: int | None = Field(None, ge=0)
    """Replicas of the target when last decided (its ``/scale`` ``spec.replicas``)."""
    desired_replicas: int | None = Field(None, ge=0)
    """Replicas last decided."""
    last_scale_time: Timestamp | None = None
    """When the controller last changed the target's replicas."""
    conditions: list[PolicyCondition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={
            CRD_KEY: {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
        },
    )
    """Conditions, one per type."""
    last_decision: LastDecision | None = None
    """The last decision, machine-readable."""
