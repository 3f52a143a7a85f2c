"""A policy flattened into the plain values the decision core reads on every tick.

:func:`resolve` turns a :class:`~autoscaler.policy.models.ScalingPolicy` into a
:class:`ResolvedPolicy`: HPA behaviour defaults applied (``pkg/apis/autoscaling/v2/defaults.go``),
metric specs reduced to a few attributes (targets also in milli-units, failure reasons spelled
out), tolerances per direction, the ``llm`` metric order and the ``ValidMetricFound`` conditions.
Whoever loads a policy resolves it once (the control loop when the policy set changes, replay,
``explain``) and passes the :class:`ResolvedPolicy` to :func:`autoscaler.decision.core.decide`, so
the core does no pydantic attribute walks or per-tick string building in its hot path. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from autoscaler.decision.calculator import to_milli
from autoscaler.decision.capacity import Objective
from autoscaler.decision.types import Condition, ConditionType
from autoscaler.policy.models import (
    Algorithm,
    LatencyMetricSpec,
    MetricKind,
    ScalingPolicy,
    ScalingRules,
    TargetType,
)

DEFAULT_TOLERANCE = 0.1
"""``--horizontal-pod-autoscaler-tolerance`` default."""
DEFAULT_DOWNSCALE_WINDOW = 300
"""``--horizontal-pod-autoscaler-downscale-stabilization`` default, seconds."""


@dataclass(frozen=True, slots=True)
class HpaFlags:
    """The two kube-controller-manager flags that change the HPA's decisions.

    A cluster that sets them gets the same decisions from the autoscaler when it is given the
    same values (``AUTOSCALER_HPA_TOLERANCE``, ``AUTOSCALER_HPA_DOWNSCALE_STABILIZATION``).
    """

    tolerance: float = DEFAULT_TOLERANCE
    """``--horizontal-pod-autoscaler-tolerance``: the dead band of both directions, unless the
    policy's ``behavior`` sets that direction's ``tolerance``."""
    downscale_stabilization: int = DEFAULT_DOWNSCALE_WINDOW
    """``--horizontal-pod-autoscaler-downscale-stabilization``, seconds: the window of the legacy
    (no ``behavior``) path, and the scale-down window when ``behavior`` leaves it unset."""


DEFAULT_FLAGS = HpaFlags()
"""The flags' kube-controller-manager defaults (10 %, 300 s)."""

PODS = "Pods"
PERCENT = "Percent"
SELECT_MAX = "Max"
SELECT_MIN = "Min"
SELECT_DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """One rate limit: ``value`` pods or percent per ``period`` seconds."""

    type: str
    """``Pods`` or ``Percent``."""
    value: int
    period: int
    """Seconds."""


@dataclass(frozen=True, slots=True)
class Rules:
    """One direction's scaling rules with HPA defaults applied."""

    window: int
    """Stabilization window, seconds."""
    select: str
    """``Max``, ``Min`` or ``Disabled``."""
    policies: tuple[RatePolicy, ...]
    tolerance: float
    """Fraction (0.1 = 10 %)."""
    longest_period: int = field(init=False)
    """The longest ``periodSeconds`` of the policies (0 if none): ``getLongestPolicyPeriod``."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "longest_period", max((p.period for p in self.policies), default=0)
        )


DEFAULT_SCALE_UP = Rules(
    window=0,
    select=SELECT_MAX,
    policies=(RatePolicy(PODS, 4, 15), RatePolicy(PERCENT, 100, 15)),
    tolerance=DEFAULT_TOLERANCE,
)
"""HPA default scale-up rules (``GenerateHPAScaleUpRules``)."""
DEFAULT_SCALE_DOWN = Rules(
    window=DEFAULT_DOWNSCALE_WINDOW,
    select=SELECT_MAX,
    policies=(RatePolicy(PERCENT, 100, 15),),
    tolerance=DEFAULT_TOLERANCE,
)
"""HPA default scale-down rules (nil window -> the controller flag, 300 s)."""


def merge_rules(user: ScalingRules | None, default: Rules) -> Rules:
    """Apply HPA defaulting to one direction: field by field; a user policy list replaces whole.

    Args:
        user: The direction's rules from the policy, or None.
        default: :data:`DEFAULT_SCALE_UP` or :data:`DEFAULT_SCALE_DOWN`.

    Returns:
        The rules in force.
    """
    if user is None:
        return default
    policies = default.policies
    if user.policies is not None:
        policies = tuple(RatePolicy(p.type.value, p.value, p.period_seconds) for p in user.policies)
    return Rules(
        window=default.window
        if user.stabilization_window_seconds is None
        else user.stabilization_window_seconds,
        select=default.select if user.select_policy is None else user.select_policy.value,
        policies=policies,
        tolerance=default.tolerance if user.tolerance is None else float(user.tolerance),
    )


@dataclass(frozen=True, slots=True)
class ZeroRules:
    """Scale to zero and back (``algorithm: llm``, ``minReplicas: 0``; :mod:`~.zero`)."""

    idle_for: float
    """``scaleToZero.idleFor``: seconds without a request before the target goes to 0."""
    activation: tuple[tuple[str, str], ...]
    """The activation signals (metrics present while no pod runs), in policy order:
    ``(metric name, role)``, role ``arrivals`` (``gatewayRequestRate``) or ``waiting``."""


@dataclass(frozen=True, slots=True)
class ResolvedMetric:
    """The attributes of one metric entry that the core needs."""

    name: str
    kind: str
    """:class:`~autoscaler.policy.models.MetricKind` value."""
    target_type: str
    """``Value`` or ``AverageValue``."""
    target: float
    """The target number in the metric's unit."""
    per_pod: bool
    is_latency: bool
    aggregation: str
    """``avg``, ``sum`` or ``max``."""
    is_queue: bool
    """Queue depth (a stock, not a level)."""
    is_kv: bool
    """KV-cache usage (saturates at 1.0)."""
    window: float = 0.0
    """Rate window of a counter or histogram metric, seconds (0: a gauge or custom query)."""

    target_milli: int = field(init=False, compare=False, repr=False)
    """``target`` in integer milli-units (the calculator's ``to_milli(target)``)."""
    is_average: bool = field(init=False, compare=False, repr=False)
    """``target_type`` is ``AverageValue``."""
    failure_pod_samples: str = field(init=False, compare=False, repr=False)
    """HPA condition reason when per-pod samples fail (``FailedGetPodsMetric`` or ``Object``)."""
    failure_no_signal: str = field(init=False, compare=False, repr=False)
    """HPA condition reason when there is no signal at all (by :attr:`source_label`)."""

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "target_milli", to_milli(self.target))
        setattr_(self, "is_average", self.target_type == TargetType.AVERAGE_VALUE.value)
        pod_label = "Object" if self.target_type == "Value" else "Pods"
        setattr_(self, "failure_pod_samples", f"FailedGet{pod_label}Metric")
        setattr_(self, "failure_no_signal", f"FailedGet{self.source_label}Metric")

    @property
    def source_label(self) -> str:
        """HPA metric source type this entry maps to.

        Per-pod samples with ``AverageValue`` are a Pods metric; per-pod samples aggregated to a
        ``Value`` are an Object metric (as NIM's Service-level metric); whole-target queries are
        External metrics.
        """
        if not self.per_pod:
            return "External"
        return "Object" if self.target_type == TargetType.VALUE.value else "Pods"


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """Everything :func:`autoscaler.decision.core.decide` reads from a policy."""

    key: str
    min_replicas: int
    """The lower bound the usual rules clamp to: ``spec.minReplicas``, except 1 for a policy that
    scales to zero (:attr:`zero`), whose target reaches 0 only through the idle rule."""
    max_replicas: int
    metrics: tuple[ResolvedMetric, ...]
    has_behavior: bool
    """False: the legacy (no ``behavior``) normalisation."""
    up: Rules
    down: Rules
    llm: bool
    """``algorithm: llm``."""
    fallback_replicas: int | None
    """``onMetricFailure: fallback`` replicas, or None for ``hold``."""
    fallback_after: int
    startup_seconds: float
    startup_learning: bool
    latency_margin: float
    kv_saturation: float
    objectives: tuple[Objective, ...] = ()
    """Latency objectives the capacity model learns against (``slo``, implied without it)."""
    sizes_on_slo: bool = False
    """``spec.slo`` has a ttft/itl objective: the SLO sizing proposes (``llm``)."""
    capacity_seed: float | None = None
    """Per-replica capacity from ``spec.capacity`` (requests/s), if given and read."""
    capacity_seed_source: str = "spec"
    """``spec`` (``requestsPerSecond``) or ``profile``."""
    capacity_seed_lengths: tuple[float, float] | None = None
    """Mean (prompt, output) tokens per request the profile was measured at, if it says."""
    adaptive_down_window: bool = False
    """The scale-down window follows the start-up estimate (``slo`` without an explicit
    ``scaleDown.stabilizationWindowSeconds``): holding a pod longer than a cold start costs more
    than starting it again."""
    zero: ZeroRules | None = None
    """``minReplicas: 0`` with ``algorithm: llm``: scale to zero and back (None: never)."""

    tolerance_up: float = field(init=False)
    """Scale-up tolerance (``up.tolerance``)."""
    tolerance_down: float = field(init=False)
    """Scale-down tolerance (``down.tolerance``)."""
    llm_order: tuple[int, ...] = field(init=False, compare=False, repr=False)
    """Indices of :attr:`metrics`, queue metrics first (the order ``algorithm: llm`` uses)."""
    valid_conditions: Mapping[str, Condition] = field(init=False, compare=False, repr=False)
    """Metric name -> its ``ScalingActive=True ValidMetricFound`` condition (built once)."""
    queue_metrics: tuple[ResolvedMetric, ...] = field(init=False, compare=False, repr=False)
    """The queue-depth metrics, in policy order (``algorithm: llm`` keeps state for them)."""
    rate_metric: ResolvedMetric | None = field(init=False, compare=False, repr=False)
    """The first request-rate metric with an ``AverageValue`` target, if any (``llm``)."""

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "tolerance_up", self.up.tolerance)
        setattr_(self, "tolerance_down", self.down.tolerance)
        order = sorted(range(len(self.metrics)), key=lambda i: not self.metrics[i].is_queue)
        setattr_(self, "llm_order", tuple(order))
        setattr_(self, "queue_metrics", tuple(m for m in self.metrics if m.is_queue))
        setattr_(
            self,
            "rate_metric",
            next(
                (
                    m
                    for m in self.metrics
                    if m.kind == MetricKind.REQUEST_RATE.value and m.is_average
                ),
                None,
            ),
        )
        setattr_(
            self,
            "valid_conditions",
            {
                m.name: Condition(
                    ConditionType.SCALING_ACTIVE,
                    True,  # noqa: FBT003 - positional like every Condition
                    "ValidMetricFound",
                    f"the HPA was able to successfully calculate a replica count from {m.name}",
                )
                for m in self.metrics
            },
        )


def resolve(policy: ScalingPolicy, flags: HpaFlags = DEFAULT_FLAGS) -> ResolvedPolicy:
    """The flattened form of ``policy``, built when the policy is loaded (not per tick).

    Args:
        policy: A validated policy.
        flags: The controller-wide HPA flags (tolerance, downscale stabilization).

    Returns:
        Its :class:`ResolvedPolicy`.
    """
    spec = policy.spec
    metrics = tuple(
        ResolvedMetric(
            name=m.name,
            kind=m.kind.value,
            target_type=m.target.type.value,
            target=m.target.threshold,
            per_pod=m.per_pod,
            is_latency=m.is_latency,
            aggregation=m.aggregation.value,
            is_queue=m.kind is MetricKind.QUEUE_DEPTH,
            is_kv=m.kind is MetricKind.KV_CACHE,
            window=float(getattr(m.spec, "window", 0.0) or 0.0),
        )
        for m in spec.metrics
    )
    behavior = spec.behavior
    tolerance, window = flags.tolerance, flags.downscale_stabilization
    if behavior is None:
        up = Rules(0, SELECT_MAX, (), tolerance)
        down = Rules(window, SELECT_MAX, (), tolerance)
    else:
        up = merge_rules(behavior.scale_up, replace(DEFAULT_SCALE_UP, tolerance=tolerance))
        down = merge_rules(
            behavior.scale_down, replace(DEFAULT_SCALE_DOWN, window=window, tolerance=tolerance)
        )
    failure = spec.on_metric_failure
    sizes = (
        spec.algorithm is Algorithm.LLM
        and spec.slo is not None
        and (spec.slo.ttft is not None or spec.slo.itl is not None)
    )
    if sizes and behavior is None:
        # Sized on an SLO: the HPA's behavior defaults, not its legacy 2x scale-up cap.
        up, down = DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN
    seed = spec.capacity.seed_requests_per_second if spec.capacity is not None else None
    zero = _zero_rules(policy)
    return ResolvedPolicy(
        key=policy.key,
        min_replicas=spec.min_replicas if zero is None else 1,
        max_replicas=spec.max_replicas,
        metrics=metrics,
        has_behavior=behavior is not None or sizes,
        up=up,
        down=down,
        llm=spec.algorithm is Algorithm.LLM,
        fallback_replicas=failure.replicas if failure.action == "fallback" else None,
        fallback_after=failure.after_failures,
        startup_seconds=spec.llm.startup_seconds,
        startup_learning=spec.llm.startup_learning,
        latency_margin=spec.llm.latency_scale_down_margin,
        kv_saturation=spec.llm.kv_saturation,
        objectives=_objectives(policy),
        sizes_on_slo=sizes,
        capacity_seed=seed,
        capacity_seed_lengths=spec.capacity.seed_lengths if spec.capacity is not None else None,
        capacity_seed_source="profile"
        if spec.capacity is not None and spec.capacity.profile is not None
        else "spec",
        adaptive_down_window=sizes
        and (
            behavior is None
            or behavior.scale_down is None
            or behavior.scale_down.stabilization_window_seconds is None
        ),
        zero=zero,
    )


def _zero_rules(policy: ScalingPolicy) -> ZeroRules | None:
    """The scale-to-zero rules of a policy (``spec.idle_for`` set), else None."""
    spec = policy.spec
    if spec.idle_for is None:
        return None
    activation = tuple(
        (m.name, "arrivals" if m.kind is MetricKind.GATEWAY_REQUEST_RATE else "waiting")
        for m in spec.metrics
        if m.is_activation
    )
    return ZeroRules(spec.idle_for, activation)


IMPLIED_OBJECTIVES = (Objective("ttft", 0.95, 2.0), Objective("itl", 0.95, 0.1))
"""Objectives of an ``llm`` policy with neither ``slo`` nor a latency metric (loose: the
capacity floor only stops a collapse)."""


def _objectives(policy: ScalingPolicy) -> tuple[Objective, ...]:
    """The objectives the capacity model learns against (``slo``, else latency metrics)."""
    spec = policy.spec
    if spec.algorithm is not Algorithm.LLM:
        return ()
    found: dict[str, Objective] = {}
    if spec.slo is not None:
        if spec.slo.ttft is not None:
            found["ttft"] = Objective("ttft", spec.slo.ttft.quantile, float(spec.slo.ttft.target))
        if spec.slo.itl is not None:
            found["itl"] = Objective("itl", spec.slo.itl.quantile, float(spec.slo.itl.target))
    if found:
        return tuple(found.values())
    for metric in spec.metrics:
        inner = metric.spec
        if (
            isinstance(inner, LatencyMetricSpec)
            and inner.statistic == "quantile"
            and metric.target.type is TargetType.VALUE
            and metric.target.value is not None
        ):
            name = {
                MetricKind.TIME_TO_FIRST_TOKEN: "ttft",
                MetricKind.INTER_TOKEN_LATENCY: "itl",
            }.get(metric.kind)
            if name is not None and name not in found:
                found[name] = Objective(name, inner.quantile, float(metric.target.value))
    return tuple(found.values()) or IMPLIED_OBJECTIVES
