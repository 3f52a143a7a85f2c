"""Plain-data inputs and outputs of the decision core.

These types are the contract between the decision core and everything around it: the metric
sources (:mod:`autoscaler.metrics`, :mod:`autoscaler.sim`) produce :data:`MetricObservation` values,
the cluster adapters (:mod:`autoscaler.kube`, :mod:`autoscaler.sim`) produce :class:`PodInfo` and
scale readings, the loop builds an :class:`Observation` per policy and tick, and the core returns a
:class:`Decision` plus a new :class:`History`. All are immutable; all times are seconds since the
Unix epoch (or since the start of a replay/simulation) as floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from autoscaler.decision.queue_state import EMPTY_QUEUE_STATE, QueueState

if TYPE_CHECKING:
    from autoscaler.decision.slo import SloPlan, SloState
    from autoscaler.decision.zero import ZeroState

# --------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------


class PodPhase(StrEnum):
    """Kubernetes pod phase."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the controller knows about one pod of a scale target."""

    name: str
    phase: PodPhase
    ready: bool
    """The pod's Ready condition is True."""
    created_at: float | None = None
    """Creation timestamp."""
    ready_at: float | None = None
    """Last transition time of the Ready condition (when ready: the time it became ready)."""
    scheduled_at: float | None = None
    """When the PodScheduled condition became True (None while unscheduled)."""
    deleting: bool = False
    """A deletionTimestamp is set (terminating)."""
    unschedulable: str | None = None
    """Message of a PodScheduled=False/Unschedulable condition ('Insufficient nvidia.com/gpu')."""
    deletion_cost: int | None = None
    """The ``controller.kubernetes.io/pod-deletion-cost`` annotation (None: absent or invalid)."""
    owner_kind: str | None = None
    """Kind of the pod's controlling owner (``ReplicaSet``, ``StatefulSet``...; None: unknown)."""
    gpus: int | None = None
    """``nvidia.com/gpu`` limits summed over the pod's containers (None: none requested)."""


# --------------------------------------------------------------------------------------------
# Metric observations
# --------------------------------------------------------------------------------------------


class NoSignalReason(StrEnum):
    """Why a metric (or one pod's sample) has no usable value. Never treated as 0."""

    EMPTY = "empty"
    """The query returned no series."""
    NAN = "nan"
    """The value is NaN (e.g. histogram_quantile at zero traffic)."""
    INF = "inf"
    """The value is +Inf or -Inf."""
    STALE = "stale"
    """The newest sample is older than the metric's max staleness."""
    QUERY_ERROR = "query_error"
    """Prometheus answered with an error, or the response could not be read."""
    TIMEOUT = "timeout"
    """The query did not answer in time."""
    POD_GONE = "pod_gone"
    """The series belongs to a pod that no longer exists."""
    INVALID = "invalid"
    """The value is out of its domain (negative, absurdly large, multiple series, ...)."""
    NOT_COLLECTED = "not_collected"
    """The source did not query this metric (e.g. unsupported, or skipped this tick)."""


@dataclass(frozen=True, slots=True)
class NoSignal:
    """No usable value, and why."""

    reason: NoSignalReason
    detail: str = ""


NOT_COLLECTED = NoSignal(NoSignalReason.NOT_COLLECTED, "metric not collected this tick")
"""The observation of a metric the source did not collect this tick (absent from the mapping)."""


@dataclass(frozen=True, slots=True)
class PodSamples:
    """Per-pod values of one metric (Pods / AverageValue style sources).

    Only pods with a usable value appear in ``values``; pods whose series exists but is unusable
    appear in ``rejected`` with the reason. A pod of the target in neither is simply missing.
    """

    values: Mapping[str, float]
    """Pod name -> value, in the metric's unit."""
    timestamp: float
    """Evaluation time of the query (or of the oldest sample used)."""
    oldest_sample: float | None = None
    """Timestamp of the oldest underlying sample, for the sample age in explanations."""
    rejected: Mapping[str, NoSignal] = field(default_factory=dict)
    """Pod name -> why its sample was not used."""
    series: int = 0
    """Number of series the query returned (before filtering)."""
    query: str = ""
    """The PromQL (or a description) that produced it; for explanations."""
    sample_age_below: float | None = None
    """Set instead of ``oldest_sample`` when only a bound is known: every sample used is newer
    than this many seconds (Prometheus lists only the pods with older ones)."""


@dataclass(frozen=True, slots=True)
class TargetSample:
    """One value for the whole scale target (Value style sources, quantiles across pods)."""

    value: float
    timestamp: float
    oldest_sample: float | None = None
    series: int = 1
    pods: int | None = None
    """How many pods contributed, when known."""
    query: str = ""
    """The PromQL (or a description) that produced it; for explanations."""
    sample_age_below: float | None = None
    """As :attr:`PodSamples.sample_age_below`."""


MetricObservation = PodSamples | TargetSample | NoSignal
"""What a metric source says about one metric of one policy at one tick."""


# --------------------------------------------------------------------------------------------
# Observation (input) and History (state)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the controller observed for one policy at one tick."""

    spec_replicas: int
    """The target's ``spec.replicas`` (the HPA's currentReplicas)."""
    status_replicas: int
    """The target's ``status.replicas``."""
    pods: tuple[PodInfo, ...]
    """Pods selected by the target's selector (any phase)."""
    metrics: Mapping[str, MetricObservation]
    """Metric name (as in the policy) -> observation. A name absent here is NOT_COLLECTED."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A stored (unstabilized) recommendation, as the HPA's ``timestampedRecommendation``."""

    timestamp: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A performed rescale in one direction, as the HPA's ``timestampedScaleEvent``."""

    timestamp: float
    change: int
    """Absolute replica change (> 0)."""
    outdated: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """State carried between ticks for one policy. Goes into ``decide`` and a new one comes out.

    Serialisable (:meth:`to_json` / :meth:`from_json`) so the controller can persist it in the
    cluster and a restart changes no decision. The form is versioned (``v``): 2 keeps the ``llm``
    state in typed ``queue`` and ``capacity`` entries; 1 (still read) kept the queue state in
    a free-form ``extra`` mapping.
    """

    initialized: bool = False
    """False until the first tick has seeded the recommendations (HPA first-sight rule)."""
    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    consecutive_failures: int = 0
    """Ticks in a row on which no metric gave a signal."""
    startup_samples: tuple[float, ...] = ()
    """Observed pod start-up durations (created -> ready), seconds, newest last (bounded)."""
    known_pods: Mapping[str, float] = field(default_factory=dict)
    """Pods seen not ready -> creation time; used to learn start-up durations (bounded)."""
    queue: QueueState = EMPTY_QUEUE_STATE
    """``algorithm: llm``: the queue bookkeeping (readings, growth points, per-pod throughput,
    request-rate trails; typed, versioned)."""
    capacity: SloState | None = None
    """``algorithm: llm``: the capacity model and the SLO sizing's state (typed, versioned)."""
    zero: ZeroState | None = None
    """``minReplicas: 0`` (``algorithm: llm``): the scale-to-zero rule's idle timer."""
    held_back: float = 0.0
    """Set by a durable store on what it writes: repeats of the newest recommendation may
    have followed it for up to this many seconds without being written (0: nothing held
    back). Read by :func:`resumed`; never used by the decision itself."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "v": HISTORY_VERSION,
            "initialized": self.initialized,
            "recommendations": [[r.timestamp, r.replicas] for r in self.recommendations],
            "scaleUpEvents": [[e.timestamp, e.change, e.outdated] for e in self.scale_up_events],
            "scaleDownEvents": [
                [e.timestamp, e.change, e.outdated] for e in self.scale_down_events
            ],
            "consecutiveFailures": self.consecutive_failures,
            "startupSamples": list(self.startup_samples),
            "knownPods": dict(self.known_pods),
            **({} if self.queue == EMPTY_QUEUE_STATE else {"queue": self.queue.to_json()}),
            **({} if self.capacity is None else {"capacity": self.capacity.to_json()}),
            **({} if self.zero is None else {"zero": self.zero.to_json()}),
            **({"heldBack": self.held_back} if self.held_back > 0 else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> History:
        """Rebuild from :meth:`to_json` output (either version); raises ``ValueError`` on
        malformed data."""
        try:
            version = int(data.get("v", 1))
            if version not in {1, HISTORY_VERSION}:
                msg = f"unknown history version {version}"
                raise ValueError(msg)
            return cls(
                initialized=bool(data.get("initialized", False)),
                recommendations=tuple(
                    Recommendation(float(t), int(r)) for t, r in data.get("recommendations", [])
                ),
                scale_up_events=tuple(
                    ScaleEvent(float(t), int(c), bool(o))
                    for t, c, o in data.get("scaleUpEvents", [])
                ),
                scale_down_events=tuple(
                    ScaleEvent(float(t), int(c), bool(o))
                    for t, c, o in data.get("scaleDownEvents", [])
                ),
                consecutive_failures=int(data.get("consecutiveFailures", 0)),
                startup_samples=tuple(float(s) for s in data.get("startupSamples", [])),
                known_pods={str(k): float(v) for k, v in dict(data.get("knownPods", {})).items()},
                queue=_queue_from_json(data, version),
                capacity=_capacity_from_json(data.get("capacity")),
                zero=_zero_from_json(data.get("zero")),
                held_back=max(0.0, float(data.get("heldBack", 0.0))),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            msg = f"malformed decision history: {exc}"
            raise ValueError(msg) from exc


def resumed(history: History, now: float) -> History:
    """A history read back after a restart or failover, with what may not have been written.

    A durable store may write repeats of the newest recommended count only now and then
    (:mod:`autoscaler.kube.history`: a change of count is written at once), and says for how
    long in :attr:`History.held_back`. The repeats a crash lost therefore all equal the newest
    recommendation written and end at most ``held_back`` seconds after it: it is carried to
    that time (or ``now``, if sooner), so it stays in the stabilization windows at least as
    long as in an uninterrupted controller (never a scale-down earlier than without the
    restart; at most ``held_back`` seconds later). Nothing held back: unchanged.
    """
    if history.held_back <= 0:
        return history
    if not history.recommendations:
        return replace(history, held_back=0.0)
    newest = history.recommendations[-1]
    until = min(now, newest.timestamp + history.held_back)
    carried = history.recommendations
    if until > newest.timestamp:
        carried = (*carried, Recommendation(until, newest.replicas))
    return replace(history, recommendations=carried, held_back=0.0)


HISTORY_VERSION = 2
"""Version of :meth:`History.to_json`'s form."""


def _queue_from_json(data: Mapping[str, Any], version: int) -> QueueState:
    if version == 1:
        extra = data.get("extra", {})
        if not isinstance(extra, Mapping):
            msg = f"extra is not a mapping: {type(extra).__name__}"
            raise TypeError(msg)
        return QueueState.from_legacy(extra) if extra else EMPTY_QUEUE_STATE
    queue = data.get("queue")
    if queue is None:
        return EMPTY_QUEUE_STATE
    if not isinstance(queue, Mapping):
        msg = f"queue state is not a mapping: {type(queue).__name__}"
        raise TypeError(msg)
    return QueueState.from_json(queue)


def _capacity_from_json(data: object) -> SloState | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        msg = f"capacity state is not a mapping: {type(data).__name__}"
        raise TypeError(msg)
    from autoscaler.decision.slo import SloState  # noqa: PLC0415 - slo imports this module

    return SloState.from_json(data)


def _zero_from_json(data: object) -> ZeroState | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        msg = f"scale-to-zero state is not a mapping: {type(data).__name__}"
        raise TypeError(msg)
    from autoscaler.decision.zero import ZeroState  # noqa: PLC0415 - zero imports this module

    return ZeroState.from_json(data)


# --------------------------------------------------------------------------------------------
# Decision (output)
# --------------------------------------------------------------------------------------------


class ConditionType(StrEnum):
    """Status condition types, with the HPA's names."""

    ABLE_TO_SCALE = "AbleToScale"
    SCALING_ACTIVE = "ScalingActive"
    SCALING_LIMITED = "ScalingLimited"
    CAPACITY_PENDING = "CapacityPending"
    """LLM mode: pods are starting (True) or cannot be scheduled (reason ``Unschedulable``)."""
    FALLBACK = "Fallback"
    """``onMetricFailure: fallback`` is in force (True) or not."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A status condition, as Kubernetes ``metav1.Condition`` minus timestamps."""

    type: ConditionType
    status: bool
    reason: str
    """CamelCase reason, e.g. ``ScaleUpLimit``, ``ValidMetricFound``, ``FailedGetPodsMetric``."""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one ``decide`` call for one policy.

    ``desired_replicas`` is what the target's ``spec.replicas`` should become (equal to
    ``current_replicas`` when nothing should change or the decision could not be made).
    ``explanation`` is a JSON-ready dict with the full arithmetic; render it with
    :func:`autoscaler.decision.explain.render_text`.
    """

    policy: str
    """``namespace/name`` of the policy."""
    timestamp: float
    current_replicas: int
    desired_replicas: int
    reason: str
    """One line, HPA style: 'kvCache above target', 'All metrics below target', ..."""
    conditions: tuple[Condition, ...] = ()
    metric_values: Mapping[str, float | None] = field(default_factory=dict)
    """Metric name -> the value compared with the target (None: no signal)."""
    metric_proposals: Mapping[str, int | None] = field(default_factory=dict)
    """Metric name -> replicas it proposed (None: invalid)."""
    explanation: Mapping[str, Any] = field(default_factory=dict)
    """Full arithmetic, JSON-ready. From ``decide`` it is an
    :class:`~autoscaler.decision.explain.Explanation`, built on first read; ``dict(...)`` of it is
    the plain dict to serialise."""
    sizing: SloPlan | None = None
    """The SLO sizing of an ``llm`` policy this tick (capacity, arrivals, forecast, latencies),
    None for other policies; the ``slo`` and ``capacity`` objects of the explanation."""

    @property
    def scale(self) -> bool:
        """True if the target should be rescaled."""
        return self.desired_replicas != self.current_replicas

    def condition(self, kind: ConditionType) -> Condition | None:
        """The condition of that type, if present."""
        for cond in self.conditions:
            if cond.type is kind:
                return cond
        return None


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """What ``decide`` returns: the decision and the history to carry to the next tick."""

    decision: Decision
    history: History
