"""GPU budget allocation: priority first, then in proportion to unmet need, never below min."""

from __future__ import annotations

import pytest

from autoscaler.decision.budget import Claim, allocate, gpus_per_replica


def claim(name: str, desired: int, **kw: object) -> Claim:
    return Claim(
        policy=name,
        priority=int(kw.get("priority", 0)),  # type: ignore[call-overload]
        min_replicas=int(kw.get("min", 1)),  # type: ignore[call-overload]
        current=int(kw.get("current", 1)),  # type: ignore[call-overload]
        desired=desired,
        gpus_per_replica=kw.get("gpus", 1),  # type: ignore[arg-type]
        fixed=bool(kw.get("fixed", False)),
    )


def granted(allocation: object) -> dict[str, int]:
    return {g.policy: g.replicas for g in allocation.grants}  # type: ignore[attr-defined]


class TestAllocate:
    def test_everything_fits(self) -> None:
        """Within the budget every policy gets what it wants and nobody is held back."""
        result = allocate("pool", 16, [claim("a", 4, gpus=2), claim("b", 3, gpus=2)])
        assert granted(result) == {"a": 4, "b": 3}
        assert not any(g.held_back for g in result.grants)
        assert (result.wanted_gpus, result.granted_gpus) == (14, 14)

    def test_higher_priority_first(self) -> None:
        """The high-priority policy gets all it wants; the other only what is left."""
        result = allocate("pool", 16, [claim("hi", 6, gpus=2, priority=10), claim("lo", 6, gpus=2)])
        assert granted(result) == {"hi": 6, "lo": 2}
        lo = result.grant("lo")
        assert lo is not None
        assert lo.held_back
        assert "granted 2 of 6" in lo.note

    def test_same_priority_in_proportion_to_unmet_need(self) -> None:
        """Equal priority: GPUs left are split in proportion to unmet need (whole replicas)."""
        # 12 GPUs; minima 1+1 leave 10; unmet needs 9 and 3: shares 7.5 and 2.5 give 7 and 2
        # whole replicas, and the GPU left goes to the larger remainder (a tie: by name)
        result = allocate("pool", 12, [claim("a", 10), claim("b", 4)])
        assert granted(result) == {"a": 9, "b": 3}

    def test_never_below_min_replicas(self) -> None:
        """Minima are kept even when they alone exceed the budget."""
        result = allocate(
            "pool", 4, [claim("a", 5, min=3, gpus=2, priority=5), claim("b", 4, min=2, gpus=2)]
        )
        assert granted(result) == {"a": 3, "b": 2}
        assert result.granted_gpus == 10  # over the budget only through the minima

    def test_lower_priority_yields_running_replicas(self) -> None:
        """A budget cut takes running replicas from the lower priority first (not below min)."""
        result = allocate(
            "pool",
            8,
            [
                claim("hi", 3, gpus=2, priority=1, current=3),
                claim("lo", 4, gpus=2, current=4, min=1),
            ],
        )
        assert granted(result) == {"hi": 3, "lo": 1}

    def test_fixed_policies_are_charged_first(self) -> None:
        """A paused policy keeps its replicas and its GPUs count before any grant."""
        result = allocate(
            "pool", 8, [claim("paused", 1, current=3, gpus=2, fixed=True), claim("a", 4, gpus=2)]
        )
        assert granted(result) == {"paused": 3, "a": 1}

    def test_unknown_gpus_are_not_counted(self) -> None:
        """Without a GPU count the policy is neither charged nor held back; the note says so."""
        result = allocate("pool", 2, [claim("x", 8, gpus=None), claim("a", 2, gpus=1)])
        assert granted(result) == {"x": 8, "a": 2}
        x = result.grant("x")
        assert x is not None
        assert "unknown" in x.note

    def test_scaling_down_frees_gpus_for_others(self) -> None:
        """A policy wanting fewer replicas is charged its desired count, not its current one."""
        result = allocate("pool", 8, [claim("a", 1, current=4, gpus=2), claim("b", 3, gpus=2)])
        assert granted(result) == {"a": 1, "b": 3}

    @pytest.mark.parametrize(
        ("pods", "declared", "expected"),
        [
            pytest.param([2, 2, None], None, 2, id="from-pods"),
            pytest.param([], 4, 4, id="declared-without-pods"),
            pytest.param([None], None, None, id="unknown"),
            pytest.param([1], 8, 1, id="pods-win"),
        ],
    )
    def test_gpus_per_replica(
        self, pods: list[int | None], declared: int | None, expected: int | None
    ) -> None:
        """Pods' nvidia.com/gpu limits win; spec.gpusPerReplica only while there are none."""
        assert gpus_per_replica(pods, declared) == expected
