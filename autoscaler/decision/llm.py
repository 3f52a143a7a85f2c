"""``algorithm: llm``: per-metric proposals that know about GPU cold starts and LLM signals.

Called by :mod:`autoscaler.decision.core` instead of :mod:`autoscaler.decision.hpa` when a
policy says ``algorithm: llm``; everything after the per-metric proposals (partial-metric rule,
stabilization, rate limits, min/max, ``onMetricFailure``) is shared with ``algorithm: hpa``.
This module reads the fleet once per tick (:func:`observe_fleet`), runs each metric through its
concept's module (:func:`llm_proposals`) and adds the SLO sizing's proposal
(:func:`slo_sizing_proposal`). The concepts, one module each:

* :mod:`~autoscaler.decision.pods`: the pods as capacity, learned start-up time;
* :mod:`~autoscaler.decision.credit`: capacity on the way (starting pods credited);
* :mod:`~autoscaler.decision.queue`: the queue as a stock, arrivals behind completions
  (state: :mod:`~autoscaler.decision.queue_state`);
* :mod:`~autoscaler.decision.demand`: demand per proportional signal (KV cache, running
  requests, request rate);
* :mod:`~autoscaler.decision.latency`: latency guards;
* :mod:`~autoscaler.decision.slo` and :mod:`~autoscaler.decision.capacity`: the SLO sizing and
  the capacity model.

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
from dataclasses import dataclass
from typing import Any

from autoscaler.decision import slo
from autoscaler.decision.calculator import (
    Proposal,
)
from autoscaler.decision.credit import apply_credit, context
from autoscaler.decision.demand import proportional_proposal
from autoscaler.decision.latency import latency_proposal
from autoscaler.decision.pods import PodView, classify_pods, learn_startup
from autoscaler.decision.queue import queue_proposal, queue_state
from autoscaler.decision.queue_state import EMPTY_QUEUE_STATE, QueueState
from autoscaler.decision.resolved import ResolvedPolicy
from autoscaler.decision.types import (
    NOT_COLLECTED,
    History,
    NoSignal,
    Observation,
)


@dataclass(slots=True)
class LlmTick:
    """What ``algorithm: llm`` reads of the fleet before the metrics (step 2 of
    :func:`autoscaler.decision.core.decide`)."""

    view: PodView
    """The pods as capacity."""
    known_pods: Mapping[str, float]
    """Start-up learning: pods seen not ready (for the next history)."""
    samples: tuple[float, ...]
    """Start-up learning: durations (for the next history)."""
    queue: QueueState
    """The queue state with this tick's readings."""
    queue_values: Mapping[str, list[float]]
    """Queue metric -> the ready pods' samples, as the queue readings summed them."""
    sized: slo.SloPlan
    """The capacity model and the SLO sizing of this tick."""
    down_window: float | None = None
    """The adaptive scale-down window, when it applied (set by the stabilization step)."""


def observe_fleet(
    rp: ResolvedPolicy, observation: Observation, history: History, now: float
) -> LlmTick:
    """Classify the pods, learn start-up times, read the queues and plan on the SLO."""
    known_pods: Mapping[str, float] = history.known_pods
    samples = history.startup_samples
    learned = samples if rp.startup_learning else ()
    view = classify_pods(observation.pods, now, learned, rp.startup_seconds)
    if rp.startup_learning:
        known_pods, samples = learn_startup(
            observation.pods,
            known_pods,
            samples,
            first_sight=not history.initialized,
            all_ready=len(view.ready) == len(observation.pods),
        )
    queue, queue_values = queue_state(rp, observation.metrics, view, history.queue, now)
    sized = slo.plan(
        history.capacity,
        observation.metrics,
        slo.Fleet(view.ready, len(view.credited) + len(view.stuck), view.startup_estimate),
        rp.objectives,
        rp.capacity_seed,
        rp.capacity_seed_source,
        now,
        rp.capacity_seed_lengths,
    )
    return LlmTick(view, known_pods, samples, queue, queue_values, sized)


def llm_proposals(
    rp: ResolvedPolicy,
    obs: Observation,
    view: PodView | None,
    *,
    queue: QueueState,
    queue_values: Mapping[str, list[float]],
    now: float,
    current: int,
) -> list[Proposal]:
    assert view is not None
    ctx = context(rp, current, view, now, queue, queue_values)
    metrics = rp.metrics
    observed = obs.metrics
    results: list[Proposal | None] = [None] * len(metrics)
    queue_valid = False
    # Queue metrics first: a saturated KV cache leaves the step to a valid queue metric.
    for index in rp.llm_order:
        metric = metrics[index]
        observation = observed.get(metric.name, NOT_COLLECTED)
        if metric.is_latency:
            results[index] = latency_proposal(metric, observation, ctx)
            continue
        if isinstance(observation, NoSignal):
            message = f"unable to get metric {metric.name}: no signal ({observation.reason.value})"
            if observation.detail:
                message += f": {observation.detail}"
            results[index] = Proposal(
                metric.name,
                None,
                failure_reason=metric.failure_no_signal,
                failure_message=message,
            )
            continue
        if metric.is_queue and metric.is_average:
            proposal = queue_proposal(metric, observation, ctx)
            queue_valid = queue_valid or proposal.proposal is not None  # .valid, inlined
        else:
            proposal = proportional_proposal(metric, observation, ctx, queue_valid=queue_valid)
        results[index] = proposal
    return results  # type: ignore[return-value] # every index was filled


ADAPTIVE_WINDOW_MIN = 60.0


ADAPTIVE_WINDOW_MAX = 600.0


def adaptive_window(startup: float) -> float:
    """Scale-down window of a policy sized on its SLO: one start-up time (bounded).

    Holding an idle pod longer than a cold start costs more GPU time than starting it again.
    """
    return min(ADAPTIVE_WINDOW_MAX, max(ADAPTIVE_WINDOW_MIN, startup))


def has_latency(sized: slo.SloPlan) -> bool:
    """Every objective has a latency signal this tick (the capacity model can learn)."""
    return bool(sized.latencies) and all(v is not None for _, _, _, v in sized.latencies)


def slo_sizing_proposal(
    rp: ResolvedPolicy, sized: slo.SloPlan, view: PodView, current: int, now: float
) -> Proposal:
    """The SLO sizing's proposal: the replicas the forecast needs, starting pods credited."""
    detail: dict[str, Any] = {}
    if sized.arrivals is None:
        return Proposal(
            "slo",
            None,
            failure_reason="FailedGetPodsMetric",
            failure_message="unable to size on the SLO: no request-rate signal",
            detail=detail,
        )
    if sized.need is None:
        if sized.arrivals <= 0:
            need_exact = 0.0
        else:
            detail["rule"] = "capacity not known yet (prior): keep current"
            return Proposal("slo", current, sized.arrivals, 1.0, "", "", detail, False, "")  # noqa: FBT003
    else:
        need_exact = sized.need
    need = max(0, math.ceil(need_exact - 1e-9))
    ctx = context(rp, current, view, now, EMPTY_QUEUE_STATE, {})
    ratio = need_exact / view.capacity if view.capacity else math.inf
    if need_exact == 0 and view.capacity == 0:
        ratio = 1.0
    proposal = apply_credit(ctx, need, ratio, detail)
    return Proposal("slo", proposal, sized.arrivals, ratio, "", "", detail, False, "")  # noqa: FBT003
