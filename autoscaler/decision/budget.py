"""GPU budgets across policies: how many replicas each policy may have when GPUs are short.

Pure. The control loop gathers, once per tick and for every ``ScalingBudget`` in force, what each
covered policy wants (its decision's desired replicas) and holds, and calls :func:`allocate`.
The rules:

- GPUs per replica come from the target's pods (their ``nvidia.com/gpu`` limits), or from
  ``spec.gpusPerReplica`` while it has no pods; a policy with neither is not counted (and the
  explanation says so).
- Policies the controller will not rescale this tick (paused, advisory, failed to decide) hold
  what they have: their current replicas are charged first.
- Every policy keeps at least ``minReplicas`` (never less than it wants): running replicas are
  never taken below the minimum, even when the minima alone exceed the budget.
- The rest is granted by ``spec.priority``, highest first; within one priority level, when the
  GPUs left do not cover every unmet need, in proportion to unmet need (whole replicas; the
  GPUs a rounding leaves go to the largest remainders).
- A grant below what a policy wants caps its desired replicas (like ``maxReplicas``, at once,
  also below its current count: a lower priority yields running replicas to a higher one). Such
  a policy is held back: condition ``ScalingLimited=True``, reason ``BudgetExhausted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Claim:
    """One policy's position in a budget this tick."""

    policy: str
    """``namespace/name``."""
    priority: int
    min_replicas: int
    current: int
    """The target's replicas now."""
    desired: int
    """What the policy's decision asks for (before the budget)."""
    gpus_per_replica: int | None
    """None: unknown (no pods with a GPU limit, no ``spec.gpusPerReplica``)."""
    fixed: bool = False
    """True: the controller does not rescale it this tick (paused, advisory, failed)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one policy may have."""

    policy: str
    replicas: int
    """Replicas granted (equal to the claim's desired when not held back)."""
    desired: int
    gpus_per_replica: int | None
    held_back: bool
    note: str


@dataclass(frozen=True, slots=True)
class Allocation:
    """The outcome for one budget."""

    budget: str
    max_gpus: int
    wanted_gpus: int
    """GPUs the covered policies would hold at their desired counts."""
    granted_gpus: int
    """GPUs they hold at the granted counts (can exceed ``max_gpus`` only through minima)."""
    grants: tuple[Grant, ...]

    def grant(self, policy: str) -> Grant | None:
        """The grant of ``policy``, if it is covered."""
        return next((g for g in self.grants if g.policy == policy), None)

    def record(self, policy: str) -> dict[str, Any]:
        """JSON-ready record of this budget for one policy's explanation."""
        grant = self.grant(policy)
        return {
            "budget": self.budget,
            "maxGpus": self.max_gpus,
            "wantedGpus": self.wanted_gpus,
            "grantedGpus": self.granted_gpus,
            "granted": grant.replicas if grant else None,
            "desired": grant.desired if grant else None,
            "gpusPerReplica": grant.gpus_per_replica if grant else None,
            "heldBack": grant.held_back if grant else False,
            "note": grant.note if grant else "",
        }


def allocate(budget: str, max_gpus: int, claims: Sequence[Claim]) -> Allocation:
    """Grant replicas to the claims within ``max_gpus`` (see the module docstring).

    Args:
        budget: the budget's name (for notes).
        max_gpus: the budget's limit.
        claims: the covered policies.
    """
    counted = [c for c in claims if c.gpus_per_replica is not None]
    granted: dict[str, int] = {}
    for claim in counted:
        if claim.fixed:
            granted[claim.policy] = claim.current
        else:
            granted[claim.policy] = min(claim.min_replicas, claim.desired)
    left = max_gpus - sum(granted[c.policy] * _g(c) for c in counted)
    for priority in sorted({c.priority for c in counted if not c.fixed}, reverse=True):
        level = [c for c in counted if not c.fixed and c.priority == priority]
        need = {c.policy: max(0, c.desired - granted[c.policy]) * _g(c) for c in level}
        total = sum(need.values())
        if total <= max(left, 0):
            for claim in level:
                granted[claim.policy] = claim.desired
            left -= total
            continue
        left = _share(level, need, granted, max(left, 0))
        break  # lower priorities get nothing beyond their minima
    wanted = sum(c.desired * _g(c) for c in counted if not c.fixed) + sum(
        c.current * _g(c) for c in counted if c.fixed
    )
    grants = []
    for claim in claims:
        grants.append(_grant(budget, max_gpus, claim, granted.get(claim.policy)))
    used = sum(g.replicas * (g.gpus_per_replica or 0) for g in grants)
    return Allocation(budget, max_gpus, wanted, used, tuple(grants))


def _g(claim: Claim) -> int:
    return claim.gpus_per_replica or 0


def _share(level: Sequence[Claim], need: dict[str, int], granted: dict[str, int], left: int) -> int:
    """Split ``left`` GPUs over one priority level in proportion to unmet need, whole replicas."""
    total = sum(need.values())
    remainders: list[tuple[float, str]] = []
    for claim in level:
        g = _g(claim)
        if need[claim.policy] == 0:
            continue
        if g == 0:  # a replica without GPUs costs nothing
            granted[claim.policy] = claim.desired
            continue
        share = left * need[claim.policy] / total
        extra = min(int(share // g), claim.desired - granted[claim.policy])
        granted[claim.policy] += extra
        remainders.append((share - extra * g, claim.policy))
    spent = sum((granted[c.policy] - min(c.min_replicas, c.desired)) * _g(c) for c in level)
    rest = left - spent
    by_name = {c.policy: c for c in level}
    for _, name in sorted(remainders, key=lambda r: (-r[0], r[1])):
        claim = by_name[name]
        if granted[name] < claim.desired and _g(claim) <= rest:
            granted[name] += 1
            rest -= _g(claim)
    return rest


def _grant(budget: str, max_gpus: int, claim: Claim, replicas: int | None) -> Grant:
    if replicas is None:
        return Grant(
            claim.policy,
            claim.desired,
            claim.desired,
            None,
            held_back=False,
            note=(
                f"budget {budget}: GPUs per replica unknown (no pod with an nvidia.com/gpu "
                "limit, no spec.gpusPerReplica): not counted"
            ),
        )
    if claim.fixed:
        return Grant(
            claim.policy,
            claim.current,
            claim.desired,
            claim.gpus_per_replica,
            held_back=False,
            note=f"budget {budget}: not rescaled this tick; holds {claim.current} replicas",
        )
    held = replicas < claim.desired
    if not held:
        note = (
            f"budget {budget} ({max_gpus} GPUs): {replicas} replicas x "
            f"{claim.gpus_per_replica} GPUs granted"
        )
    else:
        note = (
            f"budget {budget} exhausted ({max_gpus} GPUs): granted {replicas} of "
            f"{claim.desired} desired replicas x {claim.gpus_per_replica} GPUs "
            f"(priority {claim.priority}; higher priorities first, then in proportion to "
            f"unmet need; never below minReplicas {claim.min_replicas})"
        )
    return Grant(claim.policy, replicas, claim.desired, claim.gpus_per_replica, held, note)


def gpus_per_replica(pod_gpus: Sequence[int | None], declared: int | None) -> int | None:
    """GPUs one replica uses: the largest pod GPU limit seen, else the declared value."""
    seen = [g for g in pod_gpus if g is not None]
    if seen:
        return max(seen)
    return declared
