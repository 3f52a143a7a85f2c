"""The oracle of ``simulate`` and of the quality benchmark, checked against the simulator.

Its capacity comes from simulator runs, so the checks are runs too: a fixed fleet of the size the
oracle asks for meets the SLO (and one replica fewer does not), no run that meets the SLO spends
fewer GPU-hours than the oracle, the capacity follows the trace's lengths, calibrations are cached,
and ``simulate --output json`` carries the fields.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.commands.demo import demo_policy
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.load import load_workload
from autoscaler.sim.oracle import (
    Calibration,
    CapacityCache,
    Lengths,
    calibrate,
    gpu_seconds,
    mean_cold_start,
    minute_rates,
    run_oracle,
)
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, SloTargets, run_simulation

PROFILE = get_profile("8b-fp8-h100")
SLO = SloTargets(ttft=0.5, itl=0.05)
FAST = Calibration(replicas=4, duration=240.0, steps=7)
"""Cheaper probes than the default (the quick quality benchmark's)."""
POLICY = Path(__file__).resolve().parents[2] / "autoscaler" / "data" / "demo-policy.yaml"


def violating_share(result_rows: tuple[object, ...], slo: SloTargets) -> float:
    """Share of measured minutes (after the first) violating the SLO."""
    rows = [r for r in result_rows[1:] if not math.isnan(r.ttft_p)]  # type: ignore[attr-defined]
    return sum(1 for r in rows if r.violates(slo)) / len(rows)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def mu() -> float:
    """Per-replica capacity at the simulator's default lengths (seed 2)."""
    return calibrate(PROFILE, SLO, Lengths.of_spec(""), FAST, seed=2).per_replica


class TestConsistency:
    """The oracle's figures hold up in the simulator they come from."""

    def test_fleet_sized_by_the_oracle_meets_the_slo(self, mu: float) -> None:
        """Steady load at 3.8 replicas of capacity: 4 replicas meet the SLO, 3 do not."""
        rate = 3.8 * mu
        workload = load_workload(f"synthetic:poisson:rate={rate:.4f},duration=600", seed=7)
        cfg = SimulationConfig(workload=workload, profile=PROFILE, seed=7, slo=SLO)
        oracle = run_oracle(cfg, settings=FAST)
        need = max(oracle.plan.need)
        assert need in {4, 5}  # Poisson minutes above the mean may ask for a fifth
        sized = run_simulation(SimulationConfig(**{**vars_of(cfg), "initial_replicas": need}))
        assert violating_share(sized.rows, SLO) <= FAST.tolerated
        fewer = run_simulation(SimulationConfig(**{**vars_of(cfg), "initial_replicas": 3}))
        assert violating_share(fewer.rows, SLO) > FAST.tolerated

    def test_no_run_meeting_the_slo_is_cheaper_than_the_oracle(self, mu: float) -> None:
        """Step load low -> high -> low: fixed fleets and the autoscaled demo policy."""
        low, high = 1.5 * mu, 5.5 * mu
        spec = f"synthetic:step:rates={low:.3f}/{high:.3f}/{high:.3f}/{low:.3f}/{low:.3f},every=120"
        workload = load_workload(spec, seed=3)
        cold = ColdStart.parse("90")
        base = SimulationConfig(
            workload=workload, profile=PROFILE, seed=3, slo=SLO, cold_start=cold
        )
        oracle = run_oracle(base, settings=FAST).plan.gpu_hours
        met = 0
        for replicas in range(2, 10):
            result = run_simulation(
                SimulationConfig(**{**vars_of(base), "initial_replicas": replicas})
            )
            if violating_share(result.rows, SLO) <= FAST.tolerated:
                met += 1
                assert result.summary["gpuHours"] >= oracle
        assert met >= 2  # not vacuous: the larger fleets meet the SLO
        scaled = run_simulation(SimulationConfig(**{**vars_of(base), "policy": demo_policy()}))
        if violating_share(scaled.rows, SLO) <= FAST.tolerated:
            assert scaled.summary["gpuHours"] >= oracle

    def test_capacity_follows_the_traces_lengths(self, mu: float) -> None:
        """Long prompts: lower capacity per replica, hence more oracle replicas, than defaults."""
        long = load_workload("synthetic:poisson:rate=5,duration=300,in=8000,out=100", seed=1)
        long_mu = calibrate(PROFILE, SLO, Lengths.of_workload(long), FAST, seed=2).per_replica
        assert long_mu < 0.7 * mu


class TestPieces:
    """Cache, minute rates, partial last minute, cold-start mean."""

    def test_cache_calibrates_once_per_key(self) -> None:
        """Same (profile, lengths, SLO, settings, seed): one calibration; another SLO: a second."""
        cache = CapacityCache()
        lengths = Lengths.of_workload(load_workload("synthetic:poisson:rate=4,duration=60", seed=1))
        cheap = Calibration(replicas=2, duration=120.0, steps=3)
        a = cache.capacity(PROFILE, SLO, lengths, cheap, seed=1)
        b = cache.capacity(PROFILE, SLO, lengths, cheap, seed=1)
        assert a is b
        assert cache.misses == 1
        cache.capacity(PROFILE, SloTargets(ttft=2.0, itl=0.1), lengths, cheap, seed=1)
        assert cache.misses == 2

    def test_minute_rates_use_the_last_minutes_width(self) -> None:
        """90 s with 30 arrivals in each half-minute: 0.5 req/s in both minutes."""
        arrivals = np.concatenate([np.linspace(0, 59, 30), np.linspace(60, 89.9, 15)])
        workload = load_workload("synthetic:poisson:rate=1,duration=90", seed=1)
        workload = type(workload)(
            arrivals, arrivals.astype(np.int64), arrivals.astype(np.int64), "x", 90
        )
        assert minute_rates(workload, 90.0).tolist() == pytest.approx([0.5, 0.5])

    def test_partial_last_minute_is_not_paid_whole(self) -> None:
        """Two replicas over 1.5 minutes: 180 replica-seconds."""
        assert gpu_seconds(np.array([2, 2]), cold_start=90.0, last=30.0) == 180.0

    @pytest.mark.parametrize(
        ("spec", "expected"),
        [("90", 90.0), ("uniform:60:120", 90.0), ("normal:mean=100,sd=5", 100.0)],
    )
    def test_mean_cold_start(self, spec: str, expected: float) -> None:
        """The oracle pays the mean of the run's cold-start distribution."""
        assert mean_cold_start(ColdStart.parse(spec)) == expected


def vars_of(cfg: SimulationConfig) -> dict[str, object]:
    """The config's fields (to vary one of them)."""
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


def test_simulate_json_reports_the_oracle(capsys: pytest.CaptureFixture[str]) -> None:
    """``simulate --output json`` adds oracleGpuHours and gpuHoursOverOracle (its own ratio)."""
    trace = "synthetic:step:rates=4/12/4,every=60,in=lognormal:1500:0.5,out=200"
    code = main(["simulate", "--policy", str(POLICY), "--trace", trace, "--output", "json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["oracleGpuHours"] > 0
    assert doc["gpuHoursOverOracle"] == pytest.approx(
        doc["gpuHours"] / doc["oracleGpuHours"], rel=1e-3
    )
    assert doc["oracle"]["lengths"] == f"resampled from the run's {doc['requests']} requests"
    assert doc["oracle"]["coldStartSeconds"] == 90.0  # the profile's uniform:60:120
    assert len(doc["oracle"]["probes"]) == Calibration().steps
    code = main(
        ["simulate", "--policy", str(POLICY), "--trace", trace, "--output", "json", "--no-oracle"]
    )
    assert "oracleGpuHours" not in json.loads(capsys.readouterr().out)
