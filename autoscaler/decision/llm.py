"""``algorithm: llm``: per-metric proposals that know about GPU cold starts and LLM signals.

Called by :mod:`autoscaler.decision.core` instead of :mod:`autoscaler.decision.calculator` when a
policy says ``algorithm: llm``; everything after the per-metric proposals (partial-metric rule,
stabilization, rate limits, min/max, ``onMetricFailure``) is shared with ``algorithm: hpa``.

What differs from the HPA (see ``docs/decision.md``):

* **Capacity on the way.** Pods that are starting (Pending and scheduled, or Running and not
  Ready; not deleting) are credited as capacity. A metric's need is ``ceil(demand / target)`` pods,
  compared with ``ready + credited`` pods; the proposal is ``current + need - capacity``, so
  successive ticks of one cold start do not stack scale-ups for the same demand. Start-up time is
  learned from pods seen becoming ready (median of the last 20); a starting pod older than twice
  that is suspected stuck and no longer credited. Unschedulable pods are never credited, but they
  are already asked for: the same demand does not ask for more pods (they would not schedule
  either); condition ``CapacityPending`` reports it.
* **KV cache saturates.** When the ready pods' average usage is at or above ``kvSaturation``, the
  usage under-states demand: a valid queue metric then decides the step; without one (and with
  nothing starting) the proposal is ``current + ready`` (a doubling, bounded by the rate
  policies).
* **The queue is a stock.** While pods are saturated, ``growth = arrivals - ready x mu``, where
  ``mu`` (requests/s per saturated pod) is learned from the queue growth at two ready counts
  measured close together in time (growing, or draining while still above the band); the last
  estimate is kept in the history and sizes later surges from their first tick. With ``mu``
  known, a queue above its band is sized on the arrival rate ``growth + ready x mu`` at
  ``PLANNED_UTILISATION`` of ``mu`` (the headroom drains the backlog), starting pods credited,
  never below current. Without it: a queue that is not growing holds; a growing one asks for at
  most a doubling of the ready pods, and while a scale-up is in flight only growth beyond the rate
  seen when it was decided is new demand (a second surge still scales; the first does not stack).
* **Completions are not arrivals.** A request-rate metric counts completed requests, which cap
  at what the ready pods serve and run above the arrivals while a backlog drains. With a queue
  metric in the policy, the requests held (queued, plus running when the policy has a
  running-requests metric) are kept over the rate window, and ``arrivals = completions + their
  growth over the window``; the metric's need is ``ceil(arrivals / target)``, starting pods
  credited. While a request-rate metric has samples it sizes the steps: a queue above its band
  and an inflated running count hold (block scale-down) instead of doubling blind.
* **Running requests inflate under saturation.** Concurrency grows faster than load once the
  batch is saturated (every decode step slows). With a queue above its band the running count
  holds and the queue sizes the step; above ``RUNNING_INFLATED_RATIO`` x its target it asks for at
  most that factor of the ready pods (credited), like a growing queue of unknown throughput.
* **Latency is a guard.** Above ``target x (1 + tolerance)``: propose one more replica (unless
  capacity is already on the way); between ``margin x target`` and that: hold (block scale-down);
  below ``margin x target``: allow scale-down. A latency metric with no traffic (``NaN`` or empty)
  is neutral: it neither forces up nor blocks down. Other no-signal reasons (query error, stale,
  ...) make it invalid, which blocks scale-down like any missing metric. A time-to-first-token
  guard is neutral while the policy's queue metrics are within their band: requests are not
  waiting for capacity, so a high TTFT is the prompts' prefill, which more replicas do not shorten
  (without this, a workload whose TTFT floor sits near the target pins the fleet at its maximum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import repeat
from typing import Any

from autoscaler.decision.calculator import Proposal, aggregate
from autoscaler.decision.explain import LAZY
from autoscaler.decision.queue_state import GrowthPoint, QueueReading, QueueState
from autoscaler.decision.resolved import ResolvedMetric, ResolvedPolicy
from autoscaler.decision.types import (
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)

_RUNNING = PodPhase.RUNNING
_PENDING = PodPhase.PENDING
STARTUP_SAMPLES_KEPT = 20
"""How many observed start-up durations History keeps."""
KNOWN_PODS_KEPT = 1000
"""Upper bound on pods remembered as 'seen not ready'."""
MIN_STARTUP_SAMPLE = 1.0
"""Start-up durations below this (seconds) are not samples (pods ready at creation, clock skew)."""
STUCK_FACTOR = 2.0
"""A starting pod older than this x the start-up estimate is suspected stuck (not credited)."""
NO_TRAFFIC = frozenset({NoSignalReason.NAN, NoSignalReason.EMPTY})
"""No-signal reasons of a latency metric that mean 'no traffic' (neutral guard)."""
TRAIL_SLACK = 30.0
"""Seconds of queue trail kept beyond the request-rate window (the trail turns the window's
completion rate into its arrival rate: arrivals = completions + growth)."""
RUNNING_KIND = "runningRequests"
REQUEST_RATE_KIND = "requestRate"
TTFT_KIND = "timeToFirstToken"
RUNNING_INFLATED_RATIO = 2.0
"""Running requests per ready pod above this x target are read as a saturated batch (the count
inflates as every decode step slows): the step is bounded to this factor of the ready pods."""
POINTS_APART_STARTUPS = 2.0
"""Two queue-growth points give a per-pod throughput only if measured within this many start-up
times (plus ``POINTS_APART_SLACK``) of each other: further apart, the arrival rate has likely
changed between them and the difference no longer isolates ``mu``."""
POINTS_APART_SLACK = 60.0
"""Seconds added to the points' allowed distance (a few ticks)."""
PLANNED_UTILISATION = 0.7
"""The drain sizing plans pods at this share of the per-pod throughput ``mu``: ``mu`` is measured
on saturated pods (full batches, slow steps), well above what a pod serves within latency
objectives (about 0.6-0.8 of it for the 8B profile at the NIM tables' latencies). The headroom
also drains a backlog (30 % of ``mu`` on every pod) without buying pods for a transient stock."""
GROWTH_POINTS_KEPT = 4
"""Queue growth rates kept per ready count (for the per-pod throughput estimate)."""


# --------------------------------------------------------------------------------------------
# Pods and start-up learning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodView:
    """The target's pods, classified for capacity accounting."""

    ready: tuple[str, ...]
    """Running, Ready, not deleting."""
    credited: tuple[str, ...]
    """Starting and credited as capacity on the way."""
    stuck: tuple[str, ...]
    """Starting for longer than ``STUCK_FACTOR`` x the start-up estimate."""
    unschedulable: tuple[tuple[str, str], ...]
    """(pod, scheduler message) of pods that cannot be scheduled."""
    other: int
    """Deleting, Failed, Succeeded or Unknown pods."""
    capacity: int
    """Ready plus credited pods."""
    learned: tuple[float, ...]
    """Learned start-up durations the estimate is the median of (empty: ``default_startup``)."""
    default_startup: float
    """The policy's start-up seconds."""

    @property
    def startup_estimate(self) -> float:
        """The start-up time to assume, seconds (computed when read: few ticks need it)."""
        return startup_estimate(self.learned, self.default_startup, True)  # noqa: FBT003

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "ready": len(self.ready),
            "starting": len(self.credited) + len(self.stuck),
            "credited": len(self.credited),
            "stuck": len(self.stuck),
            "unschedulable": len(self.unschedulable),
            "other": self.other,
            "capacity": self.capacity,
            "startupEstimateSeconds": self.startup_estimate,
        }


def startup_estimate(samples: tuple[float, ...], default: float, learning: bool) -> float:
    """The start-up time to assume: median of learned samples, else the configured default."""
    if learning and samples:
        return float(_median(samples[-STARTUP_SAMPLES_KEPT:]))
    return default


def _median(values: tuple[float, ...]) -> float:
    """``statistics.median`` (same arithmetic): the middle value, or the mean of the two."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def classify_pods(
    pods: tuple[PodInfo, ...], now: float, learned: tuple[float, ...], default: float
) -> PodView:
    """Split pods into ready, credited starting, stuck, unschedulable and others.

    Args:
        pods: The target's pods.
        now: Current time, seconds.
        learned: Learned start-up durations (empty without learning), newest last.
        default: The policy's start-up seconds (the estimate without samples).

    Returns:
        The classification.
    """
    ready = [p.name for p in pods if p.ready and p.phase is _RUNNING and not p.deleting]
    if len(ready) == len(pods):  # the steady state: nothing starting, nothing else
        return PodView(tuple(ready), (), (), (), 0, len(ready), learned, default)
    return _classify_all(pods, now, learned, default)


def _classify_all(
    pods: tuple[PodInfo, ...], now: float, learned: tuple[float, ...], default: float
) -> PodView:
    """:func:`classify_pods` for a fleet with pods that are not all ready."""
    estimate = startup_estimate(learned, default, True)  # noqa: FBT003
    ready: list[str] = []
    credited: list[str] = []
    stuck: list[str] = []
    unschedulable: list[tuple[str, str]] = []
    other = 0
    for pod in pods:
        if pod.deleting or (pod.phase is not _RUNNING and pod.phase is not _PENDING):
            other += 1
        elif pod.phase is _RUNNING and pod.ready:
            ready.append(pod.name)
        elif pod.unschedulable is not None:
            unschedulable.append((pod.name, pod.unschedulable))
        elif pod.created_at is not None and now - pod.created_at > STUCK_FACTOR * estimate:
            stuck.append(pod.name)
        else:
            credited.append(pod.name)
    return PodView(
        tuple(ready),
        tuple(credited),
        tuple(stuck),
        tuple(unschedulable),
        other,
        len(ready) + len(credited),
        learned,
        default,
    )


def learn_startup(
    pods: tuple[PodInfo, ...],
    known: Mapping[str, float],
    samples: tuple[float, ...],
    *,
    first_sight: bool = False,
    all_ready: bool = False,
) -> tuple[dict[str, float], tuple[float, ...]]:
    """Update the start-up learning state from this tick's pods.

    A pod seen not ready (with a creation time) is remembered; when a remembered pod is seen
    Ready with a ``ready_at``, ``ready_at - created_at`` becomes a sample. On the first tick of a
    policy, pods already ready with both timestamps give a sample each (bootstrap).

    Args:
        pods: The target's pods.
        known: Pods seen not ready -> creation time.
        samples: Learned durations, newest last.
        first_sight: The policy's first tick.
        all_ready: Every pod is Running, Ready and not deleting (as :func:`classify_pods` found).

    Returns:
        The new ``known`` mapping (only pods still present) and samples (last 20).
    """
    if not known and not first_sight:
        # No pod remembered: a ready pod gives no sample, the others are remembered.
        if all_ready:
            return {}, tuple(samples[-STARTUP_SAMPLES_KEPT:])
        new_known = {
            pod.name: pod.created_at
            for pod in pods
            if not pod.deleting
            and not (pod.ready and pod.phase is _RUNNING)
            and pod.created_at is not None
            and pod.unschedulable is None
        }
        return _bounded(new_known), tuple(samples[-STARTUP_SAMPLES_KEPT:])
    remembered: dict[str, float] = {}
    new_samples = list(samples)
    for pod in pods:
        if pod.deleting:
            continue
        if pod.ready and pod.phase is _RUNNING:
            created = known.get(pod.name)
            if created is None and first_sight:
                created = pod.created_at
            if created is not None and pod.ready_at is not None:
                duration = pod.ready_at - created
                if duration >= MIN_STARTUP_SAMPLE:
                    new_samples.append(duration)
        elif pod.created_at is not None and pod.unschedulable is None:
            remembered[pod.name] = known.get(pod.name, pod.created_at)
    return _bounded(remembered), tuple(new_samples[-STARTUP_SAMPLES_KEPT:])


def _bounded(known: dict[str, float]) -> dict[str, float]:
    """The newest ``KNOWN_PODS_KEPT`` remembered pods."""
    if len(known) > KNOWN_PODS_KEPT:
        newest = sorted(known.items(), key=lambda item: item[1])[-KNOWN_PODS_KEPT:]
        return dict(newest)
    return known


# --------------------------------------------------------------------------------------------
# Proposals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LlmContext:
    """Per-tick inputs shared by all metrics of a policy."""

    policy: ResolvedPolicy
    current: int
    view: PodView
    now: float
    queue: QueueState
    """The queue state after this tick's readings (:func:`queue_state`)."""
    candidates: Mapping[str, QueueReading]
    """This tick's queue readings (``queue.candidates``)."""
    queue_values: Mapping[str, list[float]]
    """Queue metric -> its ready pods' samples, as :func:`queue_state` read them (only metrics
    with a sample from every ready pod)."""


def context(  # noqa: PLR0917 - the tick's values, in LlmContext's order
    policy: ResolvedPolicy,
    current: int,
    view: PodView,
    now: float,
    queue: QueueState,
    queue_values: Mapping[str, list[float]],
) -> LlmContext:
    """The tick's :class:`LlmContext` (``queue`` and ``queue_values``: from :func:`queue_state`)."""
    return LlmContext(policy, current, view, now, queue, queue.candidates, queue_values)


def apply_credit(ctx: LlmContext, need: int, ratio: float, detail: dict[str, Any]) -> int:
    """Turn a metric's need (pods) into a proposal, crediting starting pods.

    ``ratio`` is demand over the capacity's target; within tolerance -> current.
    """
    view = ctx.view
    capacity = view.capacity
    current = ctx.current
    tol_down, tol_up = ctx.policy.tolerance_down, ctx.policy.tolerance_up
    detail["need"] = need
    detail["capacity"] = capacity
    if (1.0 - tol_down) <= ratio <= (1.0 + tol_up):  # calculator.within, inlined
        detail["rule"] = (
            LAZY,
            "demand/capacity {:.4g} within [{:.4g}, {:.4g}]: keep current",
            ratio,
            1 - tol_down,
            1 + tol_up,
        )
        return current
    unschedulable = len(view.unschedulable)
    if need > capacity and unschedulable:
        # Unschedulable pods are not capacity, but they are already asked for: the same demand
        # does not ask again (more pods would not schedule either); more demand still does.
        proposal = max(current, current + need - capacity - unschedulable)
        detail["rule"] = (
            LAZY,
            "need {1} > capacity {2}, {3} pod(s) unschedulable and already asked for: "
            "max(current {0}, {0} + {1} - {2} - {3}) = {4}",
            current,
            need,
            capacity,
            unschedulable,
            proposal,
        )
        return proposal
    if need < capacity and view.credited:
        detail["rule"] = (
            LAZY,
            "need {} < capacity {} while pods start: keep current",
            need,
            capacity,
        )
        return current
    proposal = max(0, current + need - capacity)
    detail["rule"] = (
        LAZY,
        "current {} + need {} - capacity {} (ready {} + credited {}) = {}",
        current,
        need,
        capacity,
        len(view.ready),
        len(view.credited),
        proposal,
    )
    return proposal


def _ready_values(samples: PodSamples, ready: tuple[str, ...]) -> tuple[list[float], int]:
    """Values of ready pods and the count of ready pods without a sample."""
    values = [value for value in map(samples.values.get, ready) if value is not None]
    return values, len(ready) - len(values)


def _proposal(  # noqa: PLR0917 - mirrors Proposal's field order
    metric: ResolvedMetric,
    replicas: int,
    value: float,
    ratio: float,
    detail: dict[str, Any],
    guard: str = "",
) -> Proposal:
    """A valid proposal, its fields passed positionally (a class call with keywords builds a dict,
    which costs more than the rest of the construction)."""
    return Proposal(metric.name, replicas, value, ratio, "", "", detail, False, guard)  # noqa: FBT003


def _invalid(metric: ResolvedMetric, message: str, detail: dict[str, Any]) -> Proposal:
    return Proposal(
        metric.name,
        None,
        failure_reason=f"FailedGet{metric.source_label}Metric",
        failure_message=message,
        detail=detail,
    )


def _growth(entry: QueueReading | None) -> float | None:
    """This tick's queue growth rate (requests/s) from the reading, None at first sight."""
    if entry is None or entry.first:
        return None
    return entry.rate


def _reference_growth(metric: ResolvedMetric, ctx: LlmContext) -> float | None:
    """Queue growth seen when the in-flight scale-up was decided (None if none in flight)."""
    ref = ctx.queue.references.get(metric.name)
    if ref is None:
        return None
    if ctx.now - ref.t > STUCK_FACTOR * ctx.view.startup_estimate:
        return None
    return ref.rate


def queue_proposal(
    metric: ResolvedMetric, observation: PodSamples | TargetSample, ctx: LlmContext
) -> Proposal:
    """Queue depth (a stock): size on queue per ready pod, step only while the queue grows.

    Below or within the band the HPA-style need ``ceil(queue / target)`` applies (credited).
    Above it: a queue that is not growing is being drained by the capacity in place (hold); a
    growing queue asks for ``ceil(ready x min(ratio, 2))`` pods (at most a doubling per step);
    while a scale-up is in flight only growth beyond the rate seen at that scale-up adds pods.

    Args:
        metric: The queue metric (``AverageValue`` target: waiting requests per pod).
        observation: Per-pod samples or a whole-target total.
        ctx: Tick context.

    Returns:
        The proposal.
    """
    detail: dict[str, Any] = {"semantics": "llm queue (stock)"}
    view = ctx.view
    ready = len(view.ready)
    if isinstance(observation, PodSamples):
        values = ctx.queue_values.get(metric.name)  # read by queue_state, none missing
        missing = 0
        if values is None:
            values, missing = _ready_values(observation, view.ready)
        detail["readyWithSample"] = len(values)
        detail["readyMissing"] = missing
        if not values:
            return _invalid(metric, "no sample from any ready pod", detail)
        total = math.fsum(values)
    else:
        total = observation.value
    if ready == 0:
        return _invalid(metric, "no ready pod to serve the queue", detail)
    target = metric.target
    per_ready = total / ready
    ratio = per_ready / target
    entry = ctx.candidates.get(metric.name)
    growth = _growth(entry)
    detail["queueTotal"] = total
    detail["perReadyPod"] = per_ready
    detail["growthPerSecond"] = growth
    tol_up = ctx.policy.tolerance_up
    current = ctx.current
    if ratio <= 1 + tol_up:
        need = math.ceil(total / target - 1e-9)
        detail["demandPods"] = total / target
        capacity = view.capacity
        cap_ratio = total / (target * capacity) if capacity else math.inf
        proposal = apply_credit(ctx, need, cap_ratio, detail)
        return _proposal(metric, proposal, per_ready, ratio, detail)
    if _rate_sizes_queue(ctx):
        detail["rule"] = (
            LAZY,
            "queue {:.3g}/pod above target: the request-rate metric sizes the step "
            "(arrivals = completions + queue growth); the queue keeps current (no scale-down)",
            per_ready,
        )
        return _proposal(metric, current, per_ready, ratio, detail)
    mu = entry.per_pod if entry is not None else None
    if mu is not None and growth is not None:
        return _drain_proposal(metric, ctx, total, growth, mu, ratio, detail)
    if growth is not None and growth <= 0:
        detail["rule"] = (
            LAZY,
            "queue {:.3g}/pod above target but not growing ({:.3g}/s): "
            "the capacity in place drains it, keep current",
            per_ready,
            growth,
        )
        return _proposal(metric, current, per_ready, ratio, detail)
    reference = _reference_growth(metric, ctx) if view.credited else None
    if view.credited:
        if reference is None or growth is None:
            detail["rule"] = (
                "queue above target while pods start: capacity on the way, keep current"
            )
            return _proposal(metric, current, per_ready, ratio, detail)
        detail["growthAtScaleUp"] = reference
        if growth <= reference * (1 + tol_up) + 1e-9:
            detail["rule"] = (
                LAZY,
                "queue growth {:.3g}/s not above {:.3g}/s seen at the scale-up in flight: "
                "keep current",
                growth,
                reference,
            )
            return _proposal(metric, current, per_ready, ratio, detail)
        # (with a known per-pod throughput the drain sizing above already applied)
        surge = min(1.0, (growth - reference) / reference) if reference > 0 else 1.0
        extra = max(1, math.ceil(view.capacity * surge - 1e-9))
        if view.unschedulable:
            extra = 0
        proposal = current + extra
        detail["rule"] = (
            LAZY,
            "queue growth {:.3g}/s above {:.3g}/s at the scale-up in flight: new demand, +{} = {}",
            growth,
            reference,
            extra,
            proposal,
        )
        return _proposal(metric, proposal, per_ready, ratio, detail)
    # Throughput unknown (a known one took the drain sizing above): at most a doubling.
    need = math.ceil(ready * min(ratio, 2.0) - 1e-9)
    detail["demandPods"] = float(need)
    proposal = apply_credit(ctx, need, need / view.capacity, detail)
    detail["rule"] = (
        LAZY,
        "queue {:.3g}/pod growing: ceil({} ready x min({:.3g}, 2)) = {}; {}",
        per_ready,
        ready,
        ratio,
        need,
        detail.get("rule", ""),
    )
    return _proposal(metric, proposal, per_ready, ratio, detail)


def _drain_proposal(  # noqa: PLR0917 - private; the queue branch's computed inputs
    metric: ResolvedMetric,
    ctx: LlmContext,
    total: float,
    growth: float,
    mu: float,
    ratio: float,
    detail: dict[str, Any],
) -> Proposal:
    """Size a queue above its band from the per-pod throughput ``mu`` and the arrival rate.

    While the ready pods are saturated, ``growth = arrivals - ready x mu``, so the arrival rate
    is ``growth + ready x mu`` whether the queue grows or drains. The pods needed serve it at
    ``PLANNED_UTILISATION`` of ``mu``: ``need = ceil(arrivals / (u x mu))``; that headroom drains
    the backlog. Starting pods are credited (several ticks of one warm-up do not stack); a queue
    above its band never proposes fewer than current.
    """
    view = ctx.view
    ready = len(view.ready)
    capacity = view.capacity
    arrivals = max(0.0, growth + ready * mu)
    demand = arrivals / (PLANNED_UTILISATION * mu)
    need = max(ready, math.ceil(demand - 1e-9))
    detail.update(
        {
            "perPodThroughput": mu,
            "arrivalsPerSecond": arrivals,
            "queueTotal": total,
            "plannedUtilisation": PLANNED_UTILISATION,
            "demandPods": demand,
        }
    )
    if view.unschedulable:
        proposal = apply_credit(ctx, need, need / max(capacity, 1), detail)
    else:
        proposal = ctx.current + need - capacity
        detail["need"] = need
        detail["capacity"] = capacity
        detail["rule"] = (
            LAZY,
            "current {} + need {} - capacity {} (ready {} + credited {}) = {}",
            ctx.current,
            need,
            capacity,
            ready,
            len(view.credited),
            proposal,
        )
    proposal = max(ctx.current, proposal)
    detail["rule"] = (
        LAZY,
        "queue above target: arrivals {:.3g}/s (growth {:.3g} + {} ready x {:.3g}/s) at {:g} x "
        "{:.3g}/s per pod = {:.3g} pods; {}",
        arrivals,
        growth,
        ready,
        mu,
        PLANNED_UTILISATION,
        mu,
        demand,
        detail.get("rule", ""),
    )
    return _proposal(metric, proposal, total / ready, ratio, detail)


def proportional_proposal(
    metric: ResolvedMetric,
    observation: PodSamples | TargetSample,
    ctx: LlmContext,
    *,
    queue_valid: bool,
) -> Proposal:
    """A non-latency, non-queue metric's proposal (demand / target vs credited capacity).

    Args:
        metric: The metric.
        observation: Its observation.
        ctx: Tick context.
        queue_valid: A queue metric gave a valid signal this tick (a saturated KV cache then
            leaves the step to the queue).

    Returns:
        The proposal.
    """
    detail: dict[str, Any] = {"semantics": "llm"}
    target = metric.target
    view = ctx.view
    ready = len(view.ready)
    if isinstance(observation, PodSamples) and metric.is_average:
        values, missing = _ready_values(observation, view.ready)
        detail["readyWithSample"] = len(values)
        detail["readyMissing"] = missing
        if not values:
            return _invalid(metric, "no sample from any ready pod", detail)
        total = math.fsum(values)
        average = total / len(values)
        raw_ratio = average / target
        if missing:
            # As the HPA: a ready pod without a sample counts as at target on the way down and
            # as idle on the way up, so missing data never drives a scale-down.
            total += missing * target if raw_ratio < 1.0 else 0.0
            detail["missingFilled"] = target if raw_ratio < 1.0 else 0.0
        value = average
        backlog = _backlog_growth(ctx) if metric.kind == REQUEST_RATE_KIND else None
        if backlog is not None:
            # Completions cap at what the ready pods serve (and run above the arrivals while a
            # backlog drains): over the rate window, arrivals = completions + queue growth.
            detail["completionsPerSecond"] = total
            detail["backlogGrowthPerSecond"] = backlog
            total = max(0.0, total + backlog)
            detail["arrivalsPerSecond"] = total
        demand_pods = total / target
        saturated = metric.is_kv and average >= ctx.policy.kv_saturation
        detail["saturated"] = saturated
        if saturated and not queue_valid and not view.credited:
            step = max(1, ready)
            proposal = ctx.current + (0 if view.unschedulable else step)
            detail["rule"] = (
                LAZY,
                "KV cache saturated ({:.3g} >= {}): demand unknown-high, step up by the ready "
                "count ({} + {}), bounded by the rate policies",
                average,
                ctx.policy.kv_saturation,
                ctx.current,
                step,
            )
            return _proposal(metric, proposal, value, raw_ratio, detail)
        if metric.kind == RUNNING_KIND:
            if queue_valid and _queue_above_band(ctx):
                detail["rule"] = (
                    LAZY,
                    "running requests {:.4g}/pod while the queue is above its band: concurrency "
                    "inflates when the pods are saturated (every decode step slows as the batch "
                    "grows), so the queue sizes the step; keep current",
                    average,
                )
                return _proposal(metric, ctx.current, average, raw_ratio, detail)
            if raw_ratio > RUNNING_INFLATED_RATIO and _rate_sizes_queue(ctx):
                detail["rule"] = (
                    LAZY,
                    "running requests {:.4g}/pod > {:g} x target {:g} (inflated by a saturated "
                    "batch): the request-rate metric sizes the step (arrivals = completions + "
                    "growth of the requests held); keep current",
                    average,
                    RUNNING_INFLATED_RATIO,
                    target,
                )
                return _proposal(metric, ctx.current, average, raw_ratio, detail)
            if raw_ratio > RUNNING_INFLATED_RATIO:
                # Far above target the batch itself is slowing down (Little's law with a longer
                # time in batch): the count over-states demand. Step by at most a doubling of the
                # ready pods, starting pods credited, as for a growing queue of unknown throughput.
                need = math.ceil(ready * RUNNING_INFLATED_RATIO - 1e-9)
                detail["demandPods"] = demand_pods
                proposal = apply_credit(ctx, need, need / max(view.capacity, 1), detail)
                detail["rule"] = (
                    LAZY,
                    "running requests {:.4g}/pod > {:g} x target {:g} (inflated by a saturated "
                    "batch): at most a doubling, need {}; {}",
                    average,
                    RUNNING_INFLATED_RATIO,
                    target,
                    need,
                    detail.get("rule", ""),
                )
                return _proposal(metric, proposal, value, raw_ratio, detail)
    elif isinstance(observation, PodSamples):
        values, _missing = _ready_values(observation, view.ready)
        if not values:
            return _invalid(metric, "no sample from any ready pod", detail)
        value = aggregate(values, metric.aggregation)
        raw_ratio = value / target
        demand_pods = raw_ratio * ready
    elif metric.is_average:
        value = observation.value
        demand_pods = value / target
        raw_ratio = demand_pods / max(view.capacity, 1)
    else:
        value = observation.value
        raw_ratio = value / target
        if ready == 0:
            return _invalid(metric, "no ready pod", detail)
        demand_pods = raw_ratio * ready
    capacity = view.capacity
    ratio = demand_pods / capacity if capacity else math.inf
    need = math.ceil(demand_pods - 1e-9)
    detail["demandPods"] = demand_pods
    proposal = apply_credit(ctx, need, ratio, detail)
    return _proposal(metric, proposal, value, ratio, detail)


def _backlog_growth(ctx: LlmContext) -> float | None:
    """Queue growth over the request-rate window (requests/s, negative while draining).

    Completions over a window plus the queue's growth over the same window are the window's
    arrivals. The largest over the policy's queue metrics; None until a queue metric has a
    point about a window old.
    """
    candidates = ctx.candidates
    growth: float | None = None
    for metric in ctx.policy.queue_metrics:
        entry = candidates.get(metric.name)
        rate = entry.window_rate if entry is not None else None
        if rate is not None:
            growth = rate if growth is None else max(growth, rate)
    return growth


def _rate_sizes_queue(ctx: LlmContext) -> bool:
    """A request-rate metric with a sample this tick sizes the steps of a queue above its band."""
    return any(entry.served is not None for entry in ctx.candidates.values())


def _queue_within_band(ctx: LlmContext) -> bool:
    """The policy has a queue metric with a sample this tick, and none is above its band."""
    candidates = ctx.candidates
    if not ctx.view.ready:
        return False
    seen = any(m.name in candidates for m in ctx.policy.queue_metrics)
    return seen and not _queue_above_band(ctx)


def _queue_above_band(ctx: LlmContext) -> bool:
    """Some queue metric of the policy is above its band on the ready pods this tick."""
    candidates = ctx.candidates
    ready = len(ctx.view.ready)
    if ready == 0:
        return False
    for metric in ctx.policy.queue_metrics:
        entry = candidates.get(metric.name)
        if entry is not None:
            per_ready = entry.total / ready
            if per_ready > metric.target * (1 + ctx.policy.tolerance_up):
                return True
    return False


def latency_proposal(
    metric: ResolvedMetric, observation: MetricObservation, ctx: LlmContext
) -> Proposal:
    """A latency guard's proposal: up one step, hold, allow down, or neutral without traffic.

    Args:
        metric: The latency metric.
        observation: Its observation.
        ctx: Tick context.

    Returns:
        The proposal (``guard`` says which state; ``neutral`` when there is no traffic).
    """
    target = metric.target
    margin = ctx.policy.latency_margin
    up_above = target * (1 + ctx.policy.tolerance_up)
    detail: dict[str, Any] = {
        "semantics": "latency guard",
        "upAbove": up_above,
        "downBelow": target * margin,
    }
    if isinstance(observation, NoSignal):
        if observation.reason in NO_TRAFFIC:
            detail["rule"] = "no traffic (no latency sample): neutral"
            return Proposal(metric.name, None, neutral=True, guard="neutral", detail=detail)
        return _invalid(metric, f"{observation.reason.value}: {observation.detail}", detail)
    if isinstance(observation, PodSamples):
        values, _missing = _ready_values(observation, ctx.view.ready)
        if not values:
            values = list(observation.values.values())
        if not values:
            detail["rule"] = "no latency sample: neutral"
            return Proposal(metric.name, None, neutral=True, guard="neutral", detail=detail)
        value = aggregate(values, "max" if metric.aggregation == "max" else "avg")
    else:
        value = observation.value
    ratio = value / target
    if metric.kind == TTFT_KIND and value >= target * margin and _queue_within_band(ctx):
        detail["rule"] = (
            LAZY,
            "{:.4g} not below {} x target but no queue above its band: requests are not "
            "waiting for capacity, the time to first token is the prompts' prefill, which more "
            "replicas do not shorten: neutral",
            value,
            margin,
        )
        return Proposal(
            metric.name,
            None,
            value=value,
            ratio=ratio,
            neutral=True,
            guard="neutral",
            detail=detail,
        )
    if value > up_above:
        if ctx.view.credited or ctx.view.unschedulable:
            detail["rule"] = (
                LAZY,
                "{:.4g} above {:.4g} but capacity is on the way or unschedulable: hold",
                value,
                up_above,
            )
            return _proposal(metric, ctx.current, value, ratio, detail, "hold")
        detail["rule"] = (LAZY, "{:.4g} above {:.4g}: one more replica", value, up_above)
        return _proposal(metric, ctx.current + 1, value, ratio, detail, "up")
    if value >= target * margin:
        detail["rule"] = (LAZY, "{:.4g} between margin and target: hold (no scale-down)", value)
        return _proposal(metric, ctx.current, value, ratio, detail, "hold")
    detail["rule"] = (LAZY, "{:.4g} below {} x target: scale-down allowed", value, margin)
    return _proposal(metric, max(0, ctx.current - 1), value, ratio, detail, "down")


def queue_state(
    policy: ResolvedPolicy,
    observations: Mapping[str, MetricObservation],
    view: PodView,
    state: QueueState,
    now: float,
) -> tuple[QueueState, dict[str, list[float]]]:
    """This tick's queue readings: each queue metric's total, growth and learned throughput.

    Args:
        policy: The resolved policy.
        observations: This tick's metric observations.
        view: Pod classification.
        state: The queue state coming in (not modified).
        now: Current time, seconds.

    Returns:
        The new queue state (this tick's readings as ``candidates``), and the ready pods'
        samples of each queue metric that has one from every ready pod (for
        :func:`queue_proposal`, which would read the same values).
    """
    values_read: dict[str, list[float]] = {}
    queue_metrics = policy.queue_metrics
    if not queue_metrics:
        return state, values_read
    last = dict(state.last)
    growth_points = state.growth  # replaced, never modified, when a metric's points change
    learned = dict(state.throughput)
    rate_metric = policy.rate_metric
    served: float | None = None
    running: float | None = None
    window = 0.0
    if rate_metric is not None:
        served = _completions(rate_metric, observations, view)
        window = rate_metric.window
        running = _running_total(policy, observations, view)
    trails: dict[str, tuple[tuple[float, float, float], ...]] = {}
    candidates: dict[str, QueueReading] = {}
    ready_names = view.ready
    ready = len(ready_names)
    for metric in queue_metrics:
        name = metric.name
        obs = observations.get(name)
        if isinstance(obs, PodSamples):
            values = [value for value in map(obs.values.get, ready_names) if value is not None]
            if len(values) == ready:  # the same numbers in the same order: the same sum
                total = math.fsum(values)
                values_read[name] = values
            else:  # a missing sample counts 0
                total = math.fsum(map(obs.values.get, ready_names, repeat(0.0)))
        elif isinstance(obs, TargetSample):
            total = obs.value
        else:
            continue
        previous = last.get(name)
        rate = 0.0
        first = True
        previous_total = 0.0
        if previous is not None and now > previous[0]:
            previous_total = previous[1]
            rate = (total - previous_total) / (now - previous[0])
            first = False
        last[name] = (now, total)
        points = growth_points.get(name, ())
        # growth = arrivals - ready x mu holds while the pods are saturated: a growing queue that
        # ends above its target, or one above its target at both ends (draining: negative growth).
        floor = ready * metric.target
        draining = not first and min(total, previous_total) > floor
        if not first and ready > 0 and total > floor and (rate > 0 or draining):
            # One point per ready count, the newest last.
            points = (*(p for p in points if p.ready != ready), GrowthPoint(ready, rate, now))
            if len(points) > GROWTH_POINTS_KEPT:
                points = points[1:]
            growth_points = {**growth_points, name: points}
        mu = None
        if len(points) > 1:
            apart = POINTS_APART_STARTUPS * view.startup_estimate + POINTS_APART_SLACK
            mu = per_pod_throughput(points, apart)
        if mu is not None:
            learned[name] = mu
        window_rate: float | None = None
        if rate_metric is not None:
            trail = _trail(state.trails.get(name, ()), now - window - TRAIL_SLACK)
            point = (now, total, -1.0 if running is None else running)
            window_rate = _window_growth(trail, point, window)
            trails[name] = (*trail, point)
        candidates[name] = QueueReading(
            now, total, rate, first, learned.get(name), served, window_rate
        )
    return QueueState(
        last,
        candidates,
        state.references,
        growth_points,
        learned,
        trails if rate_metric is not None else state.trails,
    ), values_read


def _running_total(
    policy: ResolvedPolicy, observations: Mapping[str, MetricObservation], view: PodView
) -> float | None:
    """Running requests on the ready pods from the policy's running-requests metric, or None."""
    for metric in policy.metrics:
        if metric.kind != RUNNING_KIND:
            continue
        obs = observations.get(metric.name)
        if isinstance(obs, TargetSample) and math.isfinite(obs.value):
            return obs.value
        if isinstance(obs, PodSamples):
            values = [v for n in view.ready if (v := obs.values.get(n)) is not None]
            if len(values) == len(view.ready) and all(math.isfinite(v) for v in values):
                return math.fsum(values)
    return None


def _trail(
    points: tuple[tuple[float, float, float], ...], oldest: float
) -> tuple[tuple[float, float, float], ...]:
    """A queue metric's kept ``(time, queued, running or -1)`` points since ``oldest``."""
    return tuple(point for point in points if point[0] >= oldest and all(map(math.isfinite, point)))


def _window_growth(
    trail: tuple[tuple[float, float, float], ...],
    point: tuple[float, float, float],
    window: float,
) -> float | None:
    """Growth of the requests held (queued, plus running when known at both ends) over about
    the last ``window`` seconds, requests/s; None without a point at least half a window old.

    Uses the kept point closest to ``now - window``, so the growth covers the same span as the
    completion rate it corrects.
    """
    now = point[0]
    best: tuple[float, float, float] | None = None
    for old in trail:
        age = now - old[0]
        if age >= window / 2 and (best is None or abs(age - window) < abs(now - best[0] - window)):
            best = old
    if best is None or now <= best[0]:
        return None
    held = point[1] - best[1]
    if point[2] >= 0 and best[2] >= 0:
        held += point[2] - best[2]
    return held / (now - best[0])


def _completions(
    metric: ResolvedMetric, observations: Mapping[str, MetricObservation], view: PodView
) -> float | None:
    """Completions/s of the ready pods from the request-rate metric, or None (no sample)."""
    obs = observations.get(metric.name)
    if isinstance(obs, TargetSample):
        value = obs.value
        return value if math.isfinite(value) and value >= 0 else None
    if not isinstance(obs, PodSamples) or not view.ready:
        return None
    values = [v for n in view.ready if (v := obs.values.get(n)) is not None and math.isfinite(v)]
    if not values:
        return None
    return math.fsum(values) / len(values) * len(view.ready)


def per_pod_throughput(
    points: tuple[GrowthPoint, ...], max_apart: float = math.inf
) -> float | None:
    """Requests/s one saturated pod serves, from queue growth at two ready counts.

    While saturated, ``growth = arrivals - ready x mu``; the two newest points with different
    ready counts give ``mu = (g_a - g_b) / (r_b - r_a)`` when the arrival rate was the same at
    both, so the points must have been measured at most ``max_apart`` seconds apart (a point
    without a time gives no estimate). None when not estimable (or not positive).
    """
    if len(points) < 2:
        return None
    a, b = points[-2], points[-1]
    if a.ready == b.ready:
        return None
    if a.at is None or b.at is None or abs(b.at - a.at) > max_apart:
        return None
    mu = (a.rate - b.rate) / (b.ready - a.ready)
    return mu if mu > 0 else None


def promote_queue_reference(state: QueueState) -> QueueState:
    """After a scale-up: the tick's queue readings become the in-flight reference."""
    if not state.candidates:
        return state
    return replace(state, references=dict(state.candidates))
