"""What one ``decide`` call saw and chose, and the explanation built from it on first read.

:class:`Trace` is filled by :mod:`autoscaler.decision.core` as the tick goes; the decision's
:class:`~autoscaler.decision.explain.Explanation` calls :func:`build_explanation` only when
someone reads it (dry-run, ``explain``, replay), which turns the trace into the JSON-ready record
of ``docs/decision.md`` with the same :mod:`~autoscaler.decision.normalize` helpers the tick used
(window records, period starts, each rate policy's limit). Pure.
"""

from __future__ import annotations

from typing import Any

from autoscaler.decision import slo
from autoscaler.decision.calculator import (
    Proposal,
)
from autoscaler.decision.combine import combine_rule
from autoscaler.decision.explain import resolve_text
from autoscaler.decision.hpa import Recipe, recipe_detail
from autoscaler.decision.llm import LlmTick
from autoscaler.decision.normalize import (
    legacy_scale_up_limit,
    legacy_window,
    period_start,
    policy_limit,
    scale_down_limit,
    scale_up_limit,
    stabilization_windows,
)
from autoscaler.decision.resolved import ResolvedMetric, ResolvedPolicy
from autoscaler.decision.types import (
    NOT_COLLECTED,
    History,
    MetricObservation,
    Observation,
    PodSamples,
    Recommendation,
    TargetSample,
)


def _metric_record(
    metric: ResolvedMetric,
    observation: MetricObservation,
    proposal: Proposal,
    rp: ResolvedPolicy,
    now: float,
    *,
    detail: dict[str, Any],
) -> dict[str, Any]:
    down, up = rp.tolerance_down, rp.tolerance_up
    record: dict[str, Any] = {
        "name": metric.name,
        "kind": metric.kind,
        "target": {"type": metric.target_type, "value": metric.target},
        "tolerance": {"down": down, "up": up, "band": [1 - down, 1 + up]},
        "value": proposal.value,
        "ratio": proposal.ratio,
        "proposal": proposal.proposal,
        "valid": proposal.proposal is not None,
    }
    if isinstance(observation, PodSamples):
        record["observation"] = {
            "type": "podSamples",
            "values": dict(observation.values),
            "rejected": {k: str(v.reason) for k, v in observation.rejected.items()}
            if observation.rejected
            else {},
            "series": observation.series,
            **_sample_age(observation, now),
        }
    elif isinstance(observation, TargetSample):
        record["observation"] = {
            "type": "targetSample",
            "value": observation.value,
            "series": observation.series,
            "pods": observation.pods,
            **_sample_age(observation, now),
        }
    else:
        record["observation"] = {
            "type": "noSignal",
            "reason": observation.reason.value,
            "detail": observation.detail,
        }
    if proposal.guard:
        record["guard"] = proposal.guard
    if not proposal.valid and not proposal.neutral:
        record["failure"] = {"reason": proposal.failure_reason, "message": proposal.failure_message}
    if detail:
        record["arithmetic"] = detail
    return record


def _stabilization_record(  # noqa: PLR0917 - private; the stabilization step's values
    rp: ResolvedPolicy,
    recommendations: tuple[Recommendation, ...],
    desired: int,
    now: float,
    stabilized: int,
    reason: str,
    adaptive_window: float | None = None,
) -> dict[str, Any]:
    """The stabilization step: each window's records and bound (as ``stabilize_*`` has them)."""
    down_window = rp.down.window if adaptive_window is None else adaptive_window
    if rp.has_behavior:
        window_up, window_down, up_bound, down_bound = stabilization_windows(
            recommendations, desired, now, rp.up.window, down_window
        )
    else:
        window_down, down_bound = legacy_window(recommendations, desired, now, rp.down.window)
    record: dict[str, Any] = {
        "path": "behavior" if rp.has_behavior else "legacy",
        "input": desired,
        "downWindowSeconds": down_window,
        "downWindow": [[now - r.timestamp, r.replicas] for r in window_down],
        "downBound": down_bound,
        "value": stabilized,
        "reason": reason,
    }
    if rp.has_behavior:
        record["upWindowSeconds"] = rp.up.window
        record["upWindow"] = [[now - r.timestamp, r.replicas] for r in window_up]
        record["upBound"] = up_bound
    return record


def _limits_record(  # noqa: PLR0917 - private; the limit step's values
    rp: ResolvedPolicy,
    history: History,
    now: float,
    stabilized: int,
    current: int,
    desired: int,
    reason: str,
) -> dict[str, Any]:
    """The rate-limit and clamp step, with each rate policy's limit (as the tick computed it)."""
    record: dict[str, Any] = {
        "input": stabilized,
        "minReplicas": rp.min_replicas,
        "maxReplicas": rp.max_replicas,
        "output": desired,
        "reason": reason,
        "limited": desired != stabilized,
    }
    if not rp.has_behavior:
        record["legacyScaleUpLimit"] = legacy_scale_up_limit(current)
        return record
    direction = "up" if stabilized > current else "down" if stabilized < current else "none"
    record["direction"] = direction
    if direction == "none":
        return record
    up_events, down_events = history.scale_up_events, history.scale_down_events
    scale_up = direction == "up"
    if scale_up:
        rules = rp.up
        limit = max(scale_up_limit(current, up_events, down_events, rules, now), current)
    else:
        rules = rp.down
        limit = min(scale_down_limit(current, up_events, down_events, rules, now), current)
    record["selectPolicy"] = rules.select
    record["rateLimit"] = limit
    policies: list[dict[str, Any]] = []
    raw: list[int] = []
    if rules.select != "Disabled":
        for policy in rules.policies:
            start = period_start(policy, current, up_events, down_events, now)
            raw.append(policy_limit(policy, start, scale_up=scale_up))
            policies.append(
                {
                    "type": policy.type,
                    "value": policy.value,
                    "periodSeconds": policy.period,
                    "periodStart": start,
                    "limit": raw[-1],
                }
            )
    record["policies"] = policies
    if raw:
        pick_max = (rules.select == "Max") == (direction == "up")
        chosen = max(raw) if pick_max else min(raw)
        record["winner"] = raw.index(chosen)
    return record


class Trace:
    """What one ``decide`` call saw and chose, kept to build its explanation on first read."""

    __slots__ = (
        "combine",
        "desired",
        "details",
        "down_window",
        "fallback",
        "floor",
        "history",
        "normalized",
        "now",
        "observation",
        "precheck",
        "proposals",
        "reason",
        "recommendations",
        "rp",
        "sized",
        "slo_proposal",
        "steps",
        "view",
    )

    def __init__(  # noqa: PLR0917 - one call site
        self,
        rp: ResolvedPolicy,
        now: float,
        observation: Observation,
        history: History,
        recommendations: tuple[Recommendation, ...],
        fleet: LlmTick | None,
    ) -> None:
        self.rp = rp
        self.now = now
        self.observation = observation
        self.history = history
        """The history ``decide`` received."""
        self.recommendations = recommendations
        """The recommendations going into stabilization (first-sight seed included)."""
        self.view = None if fleet is None else fleet.view
        self.precheck = ""
        self.proposals: list[Proposal] | None = None
        self.details: list[Recipe | None] | None = None
        """Deferred detail recipes of the hpa fast paths (None: the proposal's own detail)."""
        self.combine: tuple[int | None, str, int | None, int, int] | None = None
        self.fallback: int | None = None
        """Consecutive failures when the fallback is in force."""
        self.normalized: int | None = None
        """The recommendation that went into stabilization (None: not reached)."""
        self.steps: tuple[int, str, str] = (0, "", "")
        """(stabilized replicas, AbleToScale reason, ScalingLimited reason)."""
        self.desired = 0
        self.reason = ""
        self.sized: slo.SloPlan | None = None if fleet is None else fleet.sized
        """The SLO sizing and capacity model of this tick (``llm``)."""
        self.slo_proposal: Proposal | None = None
        self.floor: tuple[int, int] | None = None
        """(combined before, after) when the capacity floor raised a scale-down."""
        self.down_window: float | None = None
        """The adaptive scale-down window, when it applied."""


def build_explanation(trace: Trace) -> dict[str, Any]:
    """The JSON-ready explanation of one decision (see ``docs/decision.md``)."""
    rp, now, obs, history = trace.rp, trace.now, trace.observation, trace.history
    current = obs.spec_replicas
    explanation: dict[str, Any] = {
        "policy": rp.key,
        "algorithm": "llm" if rp.llm else "hpa",
        "time": now,
        "currentReplicas": current,
        "statusReplicas": obs.status_replicas,
        "minReplicas": rp.min_replicas,
        "maxReplicas": rp.max_replicas,
    }
    if not history.initialized:
        explanation["firstSight"] = f"seeded the recommendations with ({now:g}, {current})"
    if trace.view is not None:
        explanation["pods"] = trace.view.to_json()
    if trace.precheck:
        explanation["precheck"] = trace.precheck
    proposals = trace.proposals
    if proposals is not None:
        details = trace.details or [None] * len(proposals)
        explanation["metrics"] = [
            _metric_record(
                m,
                obs.metrics.get(m.name, NOT_COLLECTED),
                p,
                rp,
                now,
                detail=resolve_text(p.detail) if recipe is None else recipe_detail(recipe),
            )
            for m, p, recipe in zip(rp.metrics, proposals, details, strict=True)
        ]
    if trace.combine is not None:
        combined, best_metric, best, counted, invalid = trace.combine
        explanation["combined"] = {
            "proposal": combined,
            "metric": best_metric,
            "invalidMetrics": [
                p.name for p in proposals or () if not p.neutral and p.proposal is None
            ],
            "rule": combine_rule(best_metric, best, counted, invalid, current),
        }
    sized = trace.sized
    if sized is not None:
        explanation["capacity"] = sized.estimate.to_json()
        record = sized.to_json()
        slo_proposal = trace.slo_proposal
        if slo_proposal is not None:
            record["proposal"] = slo_proposal.proposal
            detail = resolve_text(slo_proposal.detail)
            if "rule" in detail:
                record["rule"] = detail["rule"]
            if slo_proposal.failure_message:
                record["failure"] = slo_proposal.failure_message
        if trace.floor is not None:
            before, after = trace.floor
            record["floorApplied"] = (
                f"combined {before} < capacity floor {sized.floor}: scale-down stops at {after}"
            )
        explanation["slo"] = record
    if trace.fallback is not None:
        explanation["fallback"] = {
            "consecutiveFailures": trace.fallback,
            "replicas": rp.fallback_replicas,
        }
    normalized = trace.normalized
    if normalized is not None:
        stabilized, ability, limit_reason = trace.steps
        explanation["stabilization"] = _stabilization_record(
            rp, trace.recommendations, normalized, now, stabilized, ability, trace.down_window
        )
        explanation["limits"] = _limits_record(
            rp, history, now, stabilized, current, trace.desired, limit_reason
        )
    explanation["desiredReplicas"] = trace.desired
    explanation["reason"] = trace.reason
    return explanation


def _sample_age(observation: PodSamples | TargetSample, now: float) -> dict[str, float | None]:
    """``sampleAge`` in seconds; when only a bound is known, None and ``sampleAgeBelow``."""
    if observation.oldest_sample is None and observation.sample_age_below is not None:
        return {"sampleAge": None, "sampleAgeBelow": observation.sample_age_below}
    oldest = observation.oldest_sample
    return {"sampleAge": now - (oldest if oldest is not None else observation.timestamp)}
