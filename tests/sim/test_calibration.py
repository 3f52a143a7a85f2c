"""Every hardware profile against its reference points (serving.md §3), closed-loop."""

from __future__ import annotations

import pytest

from autoscaler.sim.calibrate import closed_loop
from autoscaler.sim.profiles import PROFILES, get_profile

# NIM 1.3.0 llama-3.1-8b-instruct, 200/200 tokens: concurrency -> output tokens/s.
NIM13_8B = {25: 4_100, 50: 6_746, 100: 10_370, 200: 9_885}
# NIM 1.3.0 llama-3.1-70b-instruct: concurrency -> (output tokens/s, ITL seconds).
NIM13_70B = {1: (75, 0.01321), 25: (1_565, 0.01531), 50: (2_744, 0.01742), 100: (4_092, 0.02328),
             200: (5_856, 0.03122)}  # fmt: skip


class TestEightBillionFp8:
    """8b-fp8-h100 follows the NIM 1.3.0 table."""

    @pytest.mark.parametrize("concurrency", sorted(NIM13_8B))
    def test_tokens_per_second_within_15_percent(self, concurrency: int) -> None:
        """Output tokens/s within 15 % of the table at c = 25, 50, 100, 200."""
        result = closed_loop(get_profile("8b-fp8-h100"), concurrency, duration=60.0)
        reference = NIM13_8B[concurrency]
        assert abs(result.output_tokens_per_s / reference - 1) <= 0.15

    def test_saturates_near_52_requests_per_second(self) -> None:
        """Max throughput ~52 req/s (10.4k tok/s / 200), reached at high concurrency."""
        result = closed_loop(get_profile("8b-fp8-h100"), 300, duration=60.0)
        assert 47.0 <= result.requests_per_s <= 57.0

    def test_single_stream_itl_is_memory_floor(self) -> None:
        """At c=1 the ITL is m + k (4.22 ms), the table says 4.37 ms."""
        result = closed_loop(get_profile("8b-fp8-h100"), 1, duration=20.0)
        assert result.itl_mean == pytest.approx(0.00437, rel=0.1)


class TestEightBillionSlow:
    """8b-h100-slow matches the c=10 point: TTFT ~85 ms, ITL ~8.8 ms, ~5.4 req/s."""

    def test_reference_point(self) -> None:
        """All three figures within 10 %."""
        result = closed_loop(get_profile("8b-h100-slow"), 10, duration=60.0)
        assert result.ttft_mean == pytest.approx(0.085, rel=0.1)
        assert result.itl_mean == pytest.approx(0.0088, rel=0.1)
        assert result.requests_per_s == pytest.approx(5.41, rel=0.1)


class TestSeventyBillion:
    """70b-fp8-h100-tp2 follows the NIM 1.3.0 70B table."""

    @pytest.mark.parametrize("concurrency", sorted(NIM13_70B))
    def test_tokens_per_second_and_itl(self, concurrency: int) -> None:
        """Tokens/s within 15 % and ITL within 15 % of the table."""
        result = closed_loop(get_profile("70b-fp8-h100-tp2"), concurrency, duration=60.0)
        tokens, itl = NIM13_70B[concurrency]
        assert abs(result.output_tokens_per_s / tokens - 1) <= 0.15
        assert abs(result.itl_mean / itl - 1) <= 0.15


class TestExtended:
    """The extended step form reproduces the NIM 1.3.0 8B table too (parameter set D)."""

    @pytest.mark.parametrize("concurrency", sorted(NIM13_8B))
    def test_tokens_per_second_within_15_percent(self, concurrency: int) -> None:
        """Same reference points as the roofline profile."""
        result = closed_loop(get_profile("8b-fp8-h100-extended"), concurrency, duration=60.0)
        assert abs(result.output_tokens_per_s / NIM13_8B[concurrency] - 1) <= 0.15


def test_every_profile_names_its_source() -> None:
    """Each bundled profile says where its coefficients come from."""
    for profile in PROFILES.values():
        assert "serving.md" in profile.source


def test_unknown_profile_lists_known_ones() -> None:
    """A bad name is a KeyError naming the bundled profiles."""
    with pytest.raises(KeyError, match="8b-fp8-h100"):
        get_profile("nope")
