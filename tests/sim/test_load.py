"""Trace readers (every file in shared/traces), the synthetic grammar, scaling and seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoscaler.sim.load import (
    LoadSpecError,
    arrivals_from_rates,
    detect_format,
    load_workload,
    parse_length,
    read_azure,
    read_mooncake,
    read_servegen,
)


class TestTraceFiles:
    """Each shared trace is read (first lines only) with the right units."""

    def test_every_trace_file_is_recognised(self, traces: Path) -> None:
        """All data files in shared/traces have a known format and load."""
        files = sorted(p for p in traces.iterdir() if p.suffix in (".csv", ".jsonl"))
        assert len(files) >= 4
        for path in files:
            workload = load_workload(str(path), seed=1, limit=200, duration=600.0)
            assert len(workload) > 0, path
            assert np.all(np.diff(workload.arrivals) >= 0)
            assert workload.prompt.min() >= 1
            assert workload.output.min() >= 1

    def test_azure_timestamps_and_tokens(self, traces: Path) -> None:
        """The 7-digit fractional timestamps parse; times start at 0, rows keep their tokens."""
        t, prompt, output = read_azure(traces / "AzureLLMInferenceTrace_code_2023.csv", limit=3)
        assert t[0] == 0.0
        assert t[1] == pytest.approx(0.052, abs=1e-6)  # 04.0319600 - 03.9799600
        assert prompt.tolist() == [4808, 3180, 110]
        assert output.tolist() == [10, 8, 27]

    def test_mooncake_milliseconds(self, traces: Path) -> None:
        """Mooncake timestamps are milliseconds."""
        path = traces / "mooncake_synthetic_trace.jsonl"
        assert detect_format(path) == "mooncake"
        t, prompt, output = read_mooncake(path, limit=50)
        assert t.size == 50
        assert prompt[0] == 40160
        assert output[0] == 6
        assert t[-1] < 60.0

    def test_servegen_rates_become_arrivals(self, traces: Path) -> None:
        """ServeGen windows are 600 s; synthesised arrivals follow the window's rate."""
        path = traces / "servegen_m-large_aggregate_rate_10min.csv"
        starts, rates = read_servegen(path, limit=6)
        assert np.all(np.diff(starts) == 600.0)
        workload = load_workload(str(path), seed=3, duration=1200.0, rate_scale=0.1)
        counts = np.bincount((workload.arrivals // 600).astype(int), minlength=2)
        expected = rates[:2] * 0.1 * 600
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))

    def test_trace_options(self, traces: Path) -> None:
        """Options after '#': lengths resampled from another trace; unknown ones rejected."""
        path = traces / "servegen_m-large_aggregate_rate_10min.csv"
        conv = traces / "AzureLLMInferenceTrace_conv_2023.csv"
        workload = load_workload(
            f"{path}#cv=2,lengths={conv}", seed=1, duration=60, rate_scale=0.05
        )
        _, conv_in, _ = read_azure(conv)
        assert set(workload.prompt.tolist()) <= set(conv_in.tolist())
        with pytest.raises(LoadSpecError, match="unknown option"):
            load_workload(f"{path}#bogus=1", duration=60)

    def test_rate_scale_replicates_recorded_requests(self, traces: Path) -> None:
        """rate x2.5 on a recorded trace keeps each request 2 or 3 times."""
        path = str(traces / "AzureLLMInferenceTrace_conv_2023.csv")
        base = load_workload(path, limit=1000)
        scaled = load_workload(path, limit=1000, rate_scale=2.5, seed=5)
        assert 2.3 * len(base) < len(scaled) < 2.7 * len(base)
        assert sorted(set(scaled.prompt.tolist())) == sorted(set(base.prompt.tolist()))

    def test_time_scale_compresses(self, traces: Path) -> None:
        """time x2 halves every arrival time."""
        path = str(traces / "AzureLLMInferenceTrace_code_2023.csv")
        base = load_workload(path, limit=500)
        fast = load_workload(path, limit=500, time_scale=2.0)
        np.testing.assert_allclose(fast.arrivals, base.arrivals / 2.0)


class TestSynthetic:
    """The synthetic load grammar."""

    def test_poisson_rate(self) -> None:
        """poisson:rate=20 for 600 s gives ~12,000 requests, exponential gaps (cv ~ 1)."""
        workload = load_workload("synthetic:poisson:rate=20,duration=600", seed=1)
        assert abs(len(workload) - 12_000) < 5 * np.sqrt(12_000)
        gaps = np.diff(workload.arrivals)
        assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)

    def test_gamma_burstiness(self) -> None:
        """cv=3 gives inter-arrival times with coefficient of variation ~3, same mean rate."""
        workload = load_workload("synthetic:poisson:rate=20,duration=3000,cv=3", seed=2)
        gaps = np.diff(workload.arrivals)
        assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.15)
        assert len(workload) / 3000 == pytest.approx(20, rel=0.1)

    def test_step_spike_onoff_diurnal(self) -> None:
        """Each kind's rates show in per-window counts."""
        step = load_workload("synthetic:step:rates=5/50/5,every=120", seed=1)
        assert step.rate_per_window(120).round().tolist() == pytest.approx([5, 50, 5], abs=3)
        spike = load_workload("synthetic:spike:base=5,peak=60,at=120,width=60,duration=300", seed=1)
        assert spike.rate_per_window(60)[2] > 5 * spike.rate_per_window(60)[0]
        onoff = load_workload("synthetic:onoff:rate=30,on=60,off=60,duration=240", seed=1)
        assert onoff.rate_per_window(60)[1] == 0.0
        assert onoff.rate_per_window(60)[0] > 20
        diurnal = load_workload("synthetic:diurnal:mean=20,amplitude=0.8,period=3600", seed=1)
        hourly = diurnal.rate_per_window(600)
        assert hourly.max() > 2 * hourly.min()

    def test_lengths(self) -> None:
        """Token length specs."""
        rng = np.random.default_rng(0)
        assert parse_length("200")(rng, 3).tolist() == [200, 200, 200]
        values = parse_length("uniform:10:20")(rng, 1000)
        assert values.min() >= 10
        assert values.max() <= 20
        median = np.median(parse_length("lognormal:1000:0.5")(rng, 20_000))
        assert median == pytest.approx(1000, rel=0.05)
        with pytest.raises(LoadSpecError):
            parse_length("gauss:1")

    def test_seeded(self) -> None:
        """Same seed, same workload bit for bit; another seed differs."""
        spec = "synthetic:spike:base=5,peak=20,at=60,width=30,duration=180"
        a, b = load_workload(spec, seed=9), load_workload(spec, seed=9)
        c = load_workload(spec, seed=10)
        assert a.arrivals.tobytes() == b.arrivals.tobytes()
        assert a.prompt.tobytes() == b.prompt.tobytes()
        assert a.arrivals.tobytes() != c.arrivals.tobytes()

    @pytest.mark.parametrize(
        "spec",
        ["synthetic:wave:rate=1", "synthetic:poisson:rate=x", "synthetic:step:every=1",
         "synthetic:poisson:rate=1,oops"],
    )  # fmt: skip
    def test_bad_specs(self, spec: str) -> None:
        """Bad specs raise LoadSpecError."""
        with pytest.raises(LoadSpecError):
            load_workload(spec)


def test_rate_function_is_continuous_across_windows() -> None:
    """A renewal process mapped through the cumulative rate: zero-rate windows get nothing."""
    rng = np.random.default_rng(4)
    times = arrivals_from_rates(np.array([0.0, 100.0, 200.0, 300.0]), np.array([10, 0, 10.0]), rng)
    assert not np.any((times > 100) & (times < 200))
    assert abs(times.size - 2000) < 5 * np.sqrt(2000)
