"""The refresh of status records whose metric values alone moved: once per interval, spread."""

from __future__ import annotations

from collections import Counter

import pytest

from autoscaler.kube.recorder import values_refresh_due

INTERVAL = 60.0


class TestValuesRefreshDue:
    """``values_refresh_due(key, written_at, now, interval)``."""

    @pytest.mark.parametrize(
        ("age", "due"),
        [
            pytest.param(0.0, False, id="just written: not due"),
            pytest.param(29.9, False, id="under half the interval: never due"),
            pytest.param(60.0, True, id="a whole interval: always due"),
            pytest.param(600.0, True, id="long ago: due"),
            pytest.param(-5.0, True, id="clock went back: due (no record held forever)"),
        ],
    )
    def test_bounds(self, age: float, due: bool) -> None:
        """Whatever the key's phase, the age bounds hold."""
        for n in range(50):
            assert due == values_refresh_due(f"ns/p-{n}", 1000.0, 1000.0 + age, INTERVAL)

    def test_records_written_together_refresh_spread(self) -> None:
        """1,000 records written in one tick refresh over the interval, each once per interval.

        Ticks every 15 s for 10 minutes; a record is rewritten whenever due (as the recorder
        does). Without the phases, every record would be rewritten in the same tick each minute.
        """
        keys = [f"bench-{n // 10:04d}/p-{n:04d}" for n in range(1000)]
        written = dict.fromkeys(keys, 0.0)
        per_tick: Counter[float] = Counter()
        gaps: list[float] = []
        for step in range(1, 41):
            now = 15.0 * step
            for key in keys:
                if values_refresh_due(key, written[key], now, INTERVAL):
                    gaps.append(now - written[key])
                    written[key] = now
                    per_tick[now] += 1
        steady = [per_tick[15.0 * step] for step in range(9, 41)]
        # Four ticks per interval: about a quarter of the records each, never all of them.
        assert max(steady) < 400
        assert min(steady) > 100
        assert sum(steady) == pytest.approx(1000 * len(steady) / 4, rel=0.05)
        assert min(gaps) >= INTERVAL / 2
        assert max(gaps) <= INTERVAL

    def test_zero_interval_always_due(self) -> None:
        """``values_refresh: 0`` writes every change."""
        assert values_refresh_due("a/b", 10.0, 10.0, 0.0)
