"""``algorithm: llm``: the queue as a stock, and the arrivals behind the completions.

Each tick :func:`queue_state` reads every queue metric into the typed state
(:class:`~autoscaler.decision.queue_state.QueueState`): the total on the ready pods, its growth,
growth points per ready count and from them the per-pod throughput ``mu``, and, with a
request-rate metric, the requests held over the rate window (arrivals = completions + their
growth). :func:`queue_proposal` sizes a queue metric: within its band like the HPA; above it on
the arrival rate when ``mu`` is known, else hold while it drains and at most a doubling while it
grows (growth beyond the rate seen at the scale-up in flight is new demand).
:func:`promote_queue_reference` keeps the tick's readings as that reference after a scale-up.
The band and arrival helpers are read by :mod:`autoscaler.decision.demand` and
:mod:`autoscaler.decision.latency`. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import repeat
from typing import Any

from autoscaler.decision.calculator import (
    Proposal,
)
from autoscaler.decision.credit import (
    LlmContext,
    apply_credit,
    invalid_proposal,
    ready_values,
    valid_proposal,
)
from autoscaler.decision.explain import LAZY
from autoscaler.decision.pods import STUCK_FACTOR, PodView
from autoscaler.decision.queue_state import GrowthPoint, QueueReading, QueueState
from autoscaler.decision.resolved import ResolvedMetric, ResolvedPolicy
from autoscaler.decision.types import (
    MetricObservation,
    PodSamples,
    TargetSample,
)

TRAIL_SLACK = 30.0
"""Seconds of queue trail kept beyond the request-rate window (the trail turns the window's
completion rate into its arrival rate: arrivals = completions + growth)."""


RUNNING_KIND = "runningRequests"


REQUEST_RATE_KIND = "requestRate"


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
            values, missing = ready_values(observation, view.ready)
        detail["readyWithSample"] = len(values)
        detail["readyMissing"] = missing
        if not values:
            return invalid_proposal(metric, "no sample from any ready pod", detail)
        total = math.fsum(values)
    else:
        total = observation.value
    if ready == 0:
        return invalid_proposal(metric, "no ready pod to serve the queue", detail)
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
        return valid_proposal(metric, proposal, per_ready, ratio, detail)
    if rate_sizes_queue(ctx):
        detail["rule"] = (
            LAZY,
            "queue {:.3g}/pod above target: the request-rate metric sizes the step "
            "(arrivals = completions + queue growth); the queue keeps current (no scale-down)",
            per_ready,
        )
        return valid_proposal(metric, current, per_ready, ratio, detail)
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
        return valid_proposal(metric, current, per_ready, ratio, detail)
    reference = _reference_growth(metric, ctx) if view.credited else None
    if view.credited:
        if reference is None or growth is None:
            detail["rule"] = (
                "queue above target while pods start: capacity on the way, keep current"
            )
            return valid_proposal(metric, current, per_ready, ratio, detail)
        detail["growthAtScaleUp"] = reference
        if growth <= reference * (1 + tol_up) + 1e-9:
            detail["rule"] = (
                LAZY,
                "queue growth {:.3g}/s not above {:.3g}/s seen at the scale-up in flight: "
                "keep current",
                growth,
                reference,
            )
            return valid_proposal(metric, current, per_ready, ratio, detail)
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
        return valid_proposal(metric, proposal, per_ready, ratio, detail)
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
    return valid_proposal(metric, proposal, per_ready, ratio, detail)


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
    return valid_proposal(metric, proposal, total / ready, ratio, detail)


def backlog_growth(ctx: LlmContext) -> float | None:
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


def rate_sizes_queue(ctx: LlmContext) -> bool:
    """A request-rate metric with a sample this tick sizes the steps of a queue above its band."""
    return any(entry.served is not None for entry in ctx.candidates.values())


def queue_within_band(ctx: LlmContext) -> bool:
    """The policy has a queue metric with a sample this tick, and none is above its band."""
    candidates = ctx.candidates
    if not ctx.view.ready:
        return False
    seen = any(m.name in candidates for m in ctx.policy.queue_metrics)
    return seen and not queue_above_band(ctx)


def queue_above_band(ctx: LlmContext) -> bool:
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
    # Every policy's trail is filtered on every tick: the finiteness test is spelled out (a
    # map() per point cost four times as much).
    isfinite = math.isfinite
    return tuple(
        [
            p
            for p in points
            if p[0] >= oldest and isfinite(p[0]) and isfinite(p[1]) and isfinite(p[2])
        ]
    )


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
    # Positional construction: ``dataclasses.replace`` costs several times more, on every scale-up.
    return QueueState(
        state.last,
        state.candidates,
        dict(state.candidates),
        state.growth,
        state.throughput,
        state.trails,
    )
