"""The max over the metrics' proposals, with the HPA's partial-metric rule.

:func:`combine` takes the largest valid proposal; with some metric invalid it never scales down
(the HPA's rule for missing data); ``llm`` latency guards that only allow a scale-down step down
by one when no proportional metric is valid. :func:`combine_rule` says which rule applied, for
reasons and explanations. Called by :mod:`autoscaler.decision.core`. Pure.
"""

from __future__ import annotations

from autoscaler.decision.calculator import (
    Proposal,
)


def combine(
    proposals: list[Proposal], current: int, llm_mode: bool
) -> tuple[int | None, str, int | None, int, int, Proposal | None]:
    """Max over valid proposals with the HPA partial-metric rule.

    Returns:
        ``(combined or None for 'no change', the winning metric or "", the best valid
        proposal, metrics counted, metrics invalid, the first invalid one)``;
        :func:`combine_rule` describes the rule applied.
    """
    best: int | None = None
    best_name = ""
    invalid = 0
    counted = 0
    first_invalid: Proposal | None = None
    down_guard: Proposal | None = None
    proportional_valid = False
    for p in proposals:
        if p.neutral:
            continue
        counted += 1
        proposal = p.proposal
        if proposal is None:
            invalid += 1
            if first_invalid is None:
                first_invalid = p
            continue
        guard = p.guard
        if guard:
            if llm_mode and guard == "down":
                if down_guard is None:
                    down_guard = p
                continue
        else:
            proportional_valid = True
        if best is None or proposal > best:
            best, best_name = proposal, p.name
    if best is None and down_guard is not None and not proportional_valid:
        # Only latency guards, all well below target: step down by one.
        best, best_name = down_guard.proposal, down_guard.name
    if counted == 0 or best is None or (invalid and best < current):
        return None, "", best, counted, invalid, first_invalid
    return best, best_name, best, counted, invalid, first_invalid


def combine_rule(best_name: str, best: int | None, counted: int, invalid: int, current: int) -> str:
    """The description of the rule :func:`combine` applied (for explanations and reasons)."""
    if counted == 0:
        return "no metric gave a signal"
    if best is None:
        return "all metrics invalid"
    if invalid and best < current:
        return (
            f"{invalid} metric(s) invalid and the valid ones propose {best} < current "
            f"{current}: no scale-down on partial metrics"
        )
    rule = f"max over valid metrics = {best} ({best_name})"
    if invalid:
        rule += f"; {invalid} invalid metric(s) ignored on scale-up"
    return rule
