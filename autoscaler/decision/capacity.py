"""The capacity model of ``algorithm: llm``: how much load one ready replica carries within the SLO.

Pure and typed. :mod:`autoscaler.decision.slo` feeds it one sample per tick and sizes the fleet
from its estimate; the state (:class:`CapacityModel`) lives in the policy's
:class:`~autoscaler.decision.types.History`, so it survives restarts and leader changes.

The model learns from the fleet's own behaviour, not from a latency curve fitted far from the
operating point (latency percentiles of continuous-batching servers jump when prefill chunks start
to land in the measured quantile, so a fitted curve extrapolates badly). It keeps a bracket:

* ``good``: the highest load per ready replica (completions/s) at which every objective was met
  on a steady fleet (no pod starting, the same ready count for a whole rate window, no backlog
  draining): a load the hardware has *demonstrated* at the current request mix;
* ``bad``: the lowest load per replica at which an objective was clearly violated (above
  ``target x (1 + VIOLATION_MARGIN)`` on ``VIOLATIONS_NEEDED`` steady ticks in a row).

A violation at or below ``good`` means the capacity dropped (longer requests, another mix):
``good`` falls below it. A met sample at or above ``bad`` clears ``bad`` (it was stale), and
``bad`` relaxes upwards by ``BAD_RELAX`` every ``BAD_RELAX_SECONDS`` so capacity lost to a
passing mix is found again.

The per-replica rate the fleet is *planned* at is ``good``, raised by a bounded exploration when
the latest sample shows headroom (:func:`explore_factor`: the part of the latency the load causes
is still well under what the objective allows; up to ``EXPLORE_MAX`` x the load of that sample,
never past ``EXPLORE_MAX`` x ``good`` nor ``BAD_SHARE`` x ``bad``). The fleet therefore converges
on its capacity from below by bounded steps, and a scale-down can never remove more capacity
than the evidence supports (the floor of :mod:`autoscaler.decision.slo`).

Before any evidence the model starts from the seed (``spec.capacity``: a load-test figure or a
GenAI-Perf sweep read at the SLO) or, without one, from the conservative prior "the current load
per replica is what a replica carries" (hold), and says so (:attr:`CapacityEstimate.source`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

VIOLATION_MARGIN = 0.1
"""An objective is violated when its latency exceeds ``target x (1 + VIOLATION_MARGIN)``; between
the target and that, a sample is neither evidence of headroom nor of overload."""
VIOLATIONS_NEEDED = 2
"""Steady ticks in a row with a violation before it becomes evidence (one noisy minute is not)."""
MARGINAL_NEEDED = 4
"""Steady ticks in a row over the target (by any amount, a whole rate window of them) that are
evidence of a violation too: a fleet held just over its target is not meeting the SLO."""
DRIFT_SHARE = 0.9
"""A violation at a load at or below ``good`` sets ``good`` to this share of that load."""
BAD_RELAX = 0.1
"""``bad`` grows by this share every :data:`BAD_RELAX_SECONDS` without a new violation."""
BAD_RELAX_SECONDS = 1800.0
BAD_SHARE = 0.9
"""The planned rate stays at or below this share of ``bad``."""
EXPLORE_MAX = 1.5
"""Most exploration: the planned rate is at most this x ``good`` and x the latest sample's load."""
FLOOR_LOAD = 0.5
"""A lowest latency counts as the part the load does not cause only if it was seen at no more
than this share of the current load (else all of the latency is taken as caused by load)."""
EXPLORE_SAFETY = 0.8
"""Share of the headroom the exploration extrapolates into (latency grows faster than load)."""
PRIOR_BAD_SHARE = 0.8
"""Without any load known to meet the SLO, plan at this share of the load seen violating it."""
LENGTH_DRIFT = 1.5
"""Requests this many times longer (prompt or output, mean) than those a capacity figure was
measured at make that figure stale: it is divided by how many times longer they are."""


@dataclass(frozen=True, slots=True)
class Objective:
    """One latency objective: the ``quantile`` of ``name`` stays under ``target`` seconds."""

    name: str
    """``ttft`` or ``itl``."""
    quantile: float
    target: float


@dataclass(frozen=True, slots=True)
class CapacityModel:
    """The learned bracket (persisted in the history)."""

    good: float | None = None
    """Highest steady load per ready replica (requests/s) with every objective met."""
    good_at: float = 0.0
    bad: float | None = None
    """Lowest steady load per ready replica with an objective clearly violated."""
    bad_at: float = 0.0
    violations: int = 0
    """Consecutive steady ticks with a violation."""
    samples: int = 0
    """Steady samples seen (met, violated or in between)."""
    last_load: float | None = None
    """Load per ready replica of the latest steady sample."""
    last_ratio: float | None = None
    """Worst latency / target of the latest steady sample."""
    floors: tuple[tuple[str, float, float], ...] = ()
    """Per objective, (name, lowest latency / target seen on a sample, the load it was seen at):
    the latency the load does not cause (prefill of the prompts, the fixed step time)."""
    last_explore: float | None = None
    """Exploration factor the latest sample allows (see :func:`explore_factor`)."""
    marginal: int = 0
    """Consecutive steady ticks over the target (violated or within the noise band)."""
    good_lengths: tuple[float, float] | None = None
    """Mean (prompt, output) tokens per request when ``good`` was last set (None: unknown)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_json`)."""
        return {
            "good": self.good,
            "goodAt": self.good_at,
            "bad": self.bad,
            "badAt": self.bad_at,
            "violations": self.violations,
            "marginal": self.marginal,
            "samples": self.samples,
            "lastLoad": self.last_load,
            "lastRatio": self.last_ratio,
            "floors": [list(f) for f in self.floors],
            "lastExplore": self.last_explore,
            "goodLengths": None if self.good_lengths is None else list(self.good_lengths),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapacityModel:
        """Rebuild from :meth:`to_json` output; raises ``ValueError``/``TypeError`` if malformed."""
        return cls(
            good=_opt_float(data.get("good")),
            good_at=float(data.get("goodAt", 0.0)),
            bad=_opt_float(data.get("bad")),
            bad_at=float(data.get("badAt", 0.0)),
            violations=int(data.get("violations", 0)),
            marginal=int(data.get("marginal", 0)),
            samples=int(data.get("samples", 0)),
            last_load=_opt_float(data.get("lastLoad")),
            last_ratio=_opt_float(data.get("lastRatio")),
            floors=tuple(
                (str(name), float(value), float(load))
                for name, value, load in data.get("floors", ())
            ),
            last_explore=_opt_float(data.get("lastExplore")),
            good_lengths=lengths_from_json(data.get("goodLengths")),
        )


def lengths_from_json(value: object) -> tuple[float, float] | None:
    """Request lengths from their JSON form ``[prompt, output]`` (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        msg = f"request lengths must be [prompt, output]: {value!r}"
        raise ValueError(msg)
    lengths = (_opt_float(value[0]), _opt_float(value[1]))
    if lengths[0] is None or lengths[1] is None:
        msg = f"request lengths must be two positive numbers: {value!r}"
        raise ValueError(msg)
    return (lengths[0], lengths[1])


def length_factor(
    live: tuple[float, float] | None, reference: tuple[float, float] | None
) -> tuple[float, float]:
    """``(factor, heavier)``: how a capacity measured at ``reference`` lengths applies now.

    ``heavier`` is the largest of live / reference over the prompt and output means. Up to
    ``LENGTH_DRIFT`` the figure stands (1.0: the traffic mix's own noise); beyond it the figure
    is divided by ``heavier`` (a request that is k times longer in prompt and in output costs
    about k times the prefill, decode steps and KV-cache blocks). Shorter requests never raise a
    figure: the learner finds the headroom from evidence.
    """
    if live is None or reference is None:
        return 1.0, 1.0
    heavier = max(live[0] / reference[0], live[1] / reference[1])
    return (1.0 / heavier if heavier > LENGTH_DRIFT else 1.0), heavier


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number <= 0:
        msg = f"not a positive number: {value!r}"
        raise ValueError(msg)
    return number


@dataclass(frozen=True, slots=True)
class Sample:
    """One tick's evidence (only taken on a steady fleet: see :mod:`autoscaler.decision.slo`)."""

    now: float
    load: float
    """Completions/s per ready replica over the rate window."""
    ratios: tuple[tuple[str, float], ...]
    """(objective, measured latency / target) for every objective with a signal."""
    lengths: tuple[float, float] | None = None
    """Mean (prompt, output) tokens per request over the window (None: not exported)."""


def observe(model: CapacityModel, sample: Sample) -> CapacityModel:
    """The model after one steady sample."""
    if sample.load <= 0 or not sample.ratios:
        return model
    factor, _ = length_factor(sample.lengths, model.good_lengths)
    if factor < 1.0:
        # The requests got much longer than those the bracket was measured at: rebase it.
        model = replace(
            model,
            good=None if model.good is None else model.good * factor,
            bad=None if model.bad is None else model.bad * factor,
            good_lengths=sample.lengths,
        )
    worst = max(ratio for _, ratio in sample.ratios)
    known = {name: (value, load) for name, value, load in model.floors}
    for name, ratio in sample.ratios:
        if name not in known or ratio <= known[name][0]:
            known[name] = (ratio, sample.load)
    floors = tuple(sorted((name, value, load) for name, (value, load) in known.items()))
    trusted = {
        name: value for name, (value, load) in known.items() if load <= FLOOR_LOAD * sample.load
    }
    # Every outcome records the sample (one copy of the model, with the outcome's fields too).
    seen: dict[str, Any] = {
        "samples": model.samples + 1,
        "last_load": sample.load,
        "last_ratio": worst,
        "floors": floors,
        "last_explore": explore_factor(sample.ratios, trusted),
    }
    if worst <= 1.0:
        good = sample.load if model.good is None else max(model.good, sample.load)
        bad = relaxed_bad(model, sample.now)
        if bad is not None and sample.load >= bad:
            bad = None
        raised = good == sample.load
        return replace(
            model,
            **seen,
            good=good,
            good_at=sample.now if raised else model.good_at,
            good_lengths=sample.lengths
            if raised or model.good_lengths is None
            else model.good_lengths,
            bad=bad,
            bad_at=model.bad_at if bad is not None else 0.0,
            violations=0,
            marginal=0,
        )
    marginal = model.marginal + 1
    if worst <= 1.0 + VIOLATION_MARGIN:
        # Over the target by less than the noise band: evidence only when it lasts.
        if marginal < MARGINAL_NEEDED:
            return replace(model, **seen, violations=0, marginal=marginal)
        violations = model.violations
    else:
        violations = model.violations + 1
        if violations < VIOLATIONS_NEEDED and marginal < MARGINAL_NEEDED:
            return replace(model, **seen, violations=violations, marginal=marginal)
    current_bad = relaxed_bad(model, sample.now)
    bad = sample.load if current_bad is None else min(current_bad, sample.load)
    lowered: float | None = model.good
    if lowered is not None and lowered >= sample.load:
        lowered = DRIFT_SHARE * sample.load
    return replace(
        model,
        **seen,
        good=lowered,
        good_at=sample.now if lowered != model.good else model.good_at,
        # Lowered by a violation: the lengths it holds at are not known yet (they are measured
        # on met ticks only); the next met tick records them.
        good_lengths=None if lowered != model.good else model.good_lengths,
        bad=bad,
        bad_at=sample.now,
        violations=violations,
        marginal=marginal,
    )


def relaxed_bad(model: CapacityModel, now: float) -> float | None:
    """``bad`` after its relaxation: +``BAD_RELAX`` per ``BAD_RELAX_SECONDS`` since it was set."""
    if model.bad is None:
        return None
    periods = max(0.0, now - model.bad_at) // BAD_RELAX_SECONDS
    return model.bad * (1.0 + BAD_RELAX * periods)


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """What the model says at one tick."""

    source: str
    """``learned`` (evidence from this fleet), ``profile`` or ``spec`` (the policy's seed, not
    contradicted by evidence), ``prior`` (nothing known: see :attr:`planned`)."""
    per_replica: float | None
    """Requests/s one ready replica carries within the SLO (best estimate; None: unknown)."""
    planned: float | None
    """Requests/s per replica the fleet is sized at (``per_replica`` with bounded exploration)."""
    good: float | None
    bad: float | None
    note: str
    """One line on where the figure comes from."""
    lengths: tuple[float, float] | None = None
    """Mean (prompt, output) tokens per request now (None: the server does not export them)."""
    learned_at: tuple[float, float] | None = None
    """The lengths the learned figure was measured at."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``explain``'s ``capacity`` object)."""
        return {
            "source": self.source,
            "perReplicaRequestsPerSecond": _round(self.per_replica),
            "plannedRequestsPerSecond": _round(self.planned),
            "evidence": {"metSloUpTo": _round(self.good), "violatedSloFrom": _round(self.bad)},
            "requestLengths": _lengths_json(self.lengths),
            "learnedAtRequestLengths": _lengths_json(self.learned_at),
            "note": self.note,
        }


def _lengths_json(lengths: tuple[float, float] | None) -> dict[str, float] | None:
    if lengths is None:
        return None
    return {"promptTokens": round(lengths[0], 1), "outputTokens": round(lengths[1], 1)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def explore_factor(ratios: tuple[tuple[str, float], ...], floors: dict[str, float]) -> float:
    """How much more load per replica the latest sample suggests, within ``[1, EXPLORE_MAX]``.

    Per objective, the latency is split into the part the load does not cause (its lowest
    ratio seen: prefill of the prompts, the fixed step time) and the part it does; assuming the
    latter grows at least in proportion to the load, ``(1 - floor) / (ratio - floor)`` more load
    still meets the objective. The smallest over the objectives, times ``EXPLORE_SAFETY``.
    A TTFT target that sits close to the prompts' prefill time therefore does not stop the
    exploration; an ITL already near its target does.
    """
    factor = EXPLORE_MAX
    for name, ratio in ratios:
        if ratio >= 1.0:
            return 1.0
        floor = min(floors.get(name, 0.0), ratio)
        caused = ratio - floor
        if caused > 0:
            factor = min(factor, EXPLORE_SAFETY * (1.0 - floor) / caused)
    return max(1.0, factor)


def estimate(  # noqa: PLR0917 - the model, the clock and what the policy seeds
    model: CapacityModel,
    now: float,
    seed: float | None,
    seed_source: str,
    lengths: tuple[float, float] | None = None,
    seed_lengths: tuple[float, float] | None = None,
) -> CapacityEstimate:
    """The capacity estimate and the planned per-replica rate at ``now``.

    Args:
        model: The learned state.
        now: Current time, seconds.
        seed: Per-replica capacity from the policy (``spec.capacity``), or None.
        seed_source: ``spec`` or ``profile`` (where ``seed`` comes from).
        lengths: Mean (prompt, output) tokens per request now (None: not exported); a profile
            seed is judged against them, and they are reported.
        seed_lengths: The lengths a profile seed was measured at (None: unknown).
    """
    result = _estimate(model, now, seed, seed_source, lengths, seed_lengths)
    return replace(result, lengths=lengths, learned_at=model.good_lengths)


def _estimate(  # noqa: PLR0917 - one rule per case, each explained
    model: CapacityModel,
    now: float,
    seed: float | None,
    seed_source: str,
    lengths: tuple[float, float] | None,
    seed_lengths: tuple[float, float] | None,
) -> CapacityEstimate:
    # ``good`` and ``bad`` need no length adjustment here: :func:`observe` rebases them on the
    # steady tick that measures longer requests (the only tick the lengths change on).
    good, bad = model.good, relaxed_bad(model, now)
    extrapolated = False
    if seed is not None and seed_lengths is not None:
        seed_factor, seed_heavier = length_factor(lengths, seed_lengths)
        extrapolated = seed_factor < 1.0
        if extrapolated:
            seed *= seed_factor
            seed_source_note = (
                f" (requests {seed_heavier:.2g}x longer than the {seed_source}'s "
                f"{seed_lengths[0]:.0f} in / {seed_lengths[1]:.0f} out tokens: divided by that)"
            )
        else:
            seed_source_note = (
                f" (measured at {seed_lengths[0]:.0f} in / {seed_lengths[1]:.0f} out tokens)"
            )
    else:
        seed_source_note = ""
    if good is None:
        if seed is not None and (bad is None or seed < bad):
            return CapacityEstimate(
                seed_source,
                seed,
                seed,
                None,
                bad,
                f"{seed:.4g} req/s per replica from the policy's {seed_source}"
                f"{seed_source_note}; no steady evidence from the fleet yet",
            )
        if bad is not None:
            planned = PRIOR_BAD_SHARE * bad
            return CapacityEstimate(
                "prior",
                planned,
                planned,
                None,
                bad,
                f"no load known to meet the SLO; the SLO was violated at {bad:.4g} req/s per "
                f"replica: planning at {PRIOR_BAD_SHARE:g} x that",
            )
        return CapacityEstimate(
            "prior",
            None,
            None,
            None,
            None,
            "no evidence yet: the current load per replica is assumed to be what a replica "
            "carries (no scale-down below it)",
        )
    base = good
    source = "learned"
    at = model.good_lengths
    shape = "" if at is None else f" (requests of {at[0]:.0f} in / {at[1]:.0f} out tokens)"
    note = f"SLO met at up to {good:.4g} req/s per replica{shape}"
    if seed is not None and seed > good and (bad is None or seed < bad):
        base, source = seed, seed_source
        note = (
            f"{seed:.4g} req/s per replica from the policy's {seed_source}{seed_source_note} "
            "(not contradicted)"
        )
        if extrapolated and seed > EXPLORE_MAX * good:
            # Divided for longer requests, the figure is an extrapolation: approached from what
            # the fleet demonstrated by the exploration's bounded steps.
            base = EXPLORE_MAX * good
            note += f"; approached in steps from the {good:.4g} demonstrated: {base:.4g} now"
    if bad is not None:
        note += f"; violated from {bad:.4g}"
    planned = base
    if (
        model.last_load is not None
        and model.last_explore is not None
        and model.last_ratio is not None
        and model.last_ratio <= 1.0
    ):
        # Only a met sample shows headroom (an overloaded one's load is no place to explore from).
        explored = model.last_load * model.last_explore
        planned = max(base, min(explored, EXPLORE_MAX * base))
    if bad is not None:
        planned = max(base, min(planned, BAD_SHARE * bad)) if base < BAD_SHARE * bad else base
    if planned > base:
        note += f"; exploring up to {planned:.4g} (latency headroom at the last steady sample)"
    # The figure in force: the middle of the bracket, never beyond what exploration would try
    # (an upper bound far above the lower one says little about where the capacity is).
    per_replica = base if bad is None else min(max(base, (base + bad) / 2), bad, EXPLORE_MAX * base)
    return CapacityEstimate(source, per_replica, planned, good, bad, note)


def prior_from_violation(load: float) -> CapacityEstimate:
    """The prior while nothing is learned and the SLO is violated at ``load`` per replica now."""
    planned = PRIOR_BAD_SHARE * load
    return CapacityEstimate(
        "prior",
        planned,
        planned,
        None,
        None,
        f"nothing learned yet and the SLO is violated now at {load:.4g} req/s per replica: "
        f"planning at {PRIOR_BAD_SHARE:g} x that",
    )
