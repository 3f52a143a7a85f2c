"""Fast tests of the scaling-quality benchmark's pieces: oracle, contenders, scenarios, goals."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.policy.models import Algorithm
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.load import load_workload
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, SloTargets, run_simulation
from benchmarks import bench_quality
from benchmarks.quality import contenders, oracle, scenarios

SLO = SloTargets(ttft=0.5, itl=0.05)


def naive_follow(need: list[int], cold: float) -> float:
    """Cost of following ``need`` minute by minute, paying a cold start for every added pod."""
    total = need[0] * 60.0
    for before, now in itertools.pairwise(need):
        total += now * 60.0 + max(0, now - before) * cold
    return total


class TestOracleGpuSeconds:
    """The oracle's schedule is the cheapest one meeting the per-minute need."""

    def test_constant_need_costs_no_loading(self) -> None:
        """Replicas needed from minute 0 are Ready at t = 0: 3 pods x 10 minutes."""
        assert oracle.gpu_seconds(np.full(10, 3), cold_start=90.0) == 3 * 600.0

    def test_added_replicas_pay_their_cold_start(self) -> None:
        """[1,1,3,3,1,1]: level 1 six minutes; levels 2-3 two minutes + 90 s loading each."""
        need = np.array([1, 1, 3, 3, 1, 1])
        assert oracle.gpu_seconds(need, cold_start=90.0) == 360.0 + 2 * (120.0 + 90.0)

    @pytest.mark.parametrize(
        ("cold", "expected"),
        [
            pytest.param(90.0, 360.0, id="gap 60 s < cold start 90 s: bridged (kept running)"),
            pytest.param(30.0, 330.0, id="gap 60 s > cold start 30 s: removed, restarted"),
        ],
    )
    def test_short_gaps_are_bridged(self, cold: float, expected: float) -> None:
        """[2,1,2]: the second replica is kept through a dip shorter than a cold start."""
        assert oracle.gpu_seconds(np.array([2, 1, 2]), cold_start=cold) == expected

    def test_never_above_simple_schedules(self) -> None:
        """On random needs: at most 'hold the peak' and at most 'follow and restart'."""
        rng = np.random.default_rng(3)
        for _ in range(200):
            need = rng.integers(1, 6, size=int(rng.integers(1, 15)))
            cold = float(rng.choice([30.0, 90.0, 300.0]))
            cost = oracle.gpu_seconds(need, cold)
            peak = int(need.max())
            hold = peak * need.size * 60.0 + (peak - int(need[0])) * cold
            assert cost <= hold + 1e-9
            assert cost <= naive_follow(need.tolist(), cold) + 1e-9
            assert cost >= float(need.sum()) * 60.0  # never below the Ready time itself

    def test_replicas_needed(self) -> None:
        """max(1, ceil(rate / capacity)) per minute; an idle minute still holds one replica."""
        rates = np.array([0.0, 9.9, 10.0, 10.1, 35.0])
        assert oracle.replicas_needed(rates, 10.0).tolist() == [1, 1, 1, 2, 4]

    def test_plan_counts_gpus_per_pod(self) -> None:
        """A 2-GPU profile doubles the oracle's GPU-hours."""
        rates = np.array([10.0, 30.0, 10.0])
        one = oracle.plan(rates, 10.0, 90.0, gpus=1)
        two = oracle.plan(rates, 10.0, 90.0, gpus=2)
        assert two.gpu_hours == pytest.approx(2 * one.gpu_hours)
        assert one.scale_events == 2


def test_calibration_brackets_a_compliant_rate() -> None:
    """Tiny calibration: the capacity found met the SLO on its probe; a probe above it did not."""
    cap = oracle.calibrate(get_profile("8b-fp8-h100"), SLO, "", replicas=1, duration=150.0, steps=4)
    assert 0.2 < cap.per_replica < 60.0
    passing = [rate for rate, bad, total in cap.probes if total and bad <= 0.2 * total]
    failing = [rate for rate, bad, total in cap.probes if not (total and bad <= 0.2 * total)]
    assert cap.per_replica == pytest.approx(max(passing, default=0.2), rel=1e-3)
    assert all(rate > cap.per_replica for rate in failing)


class TestContenders:
    """Every contender is a valid policy; the baselines are what they claim to be."""

    def test_all_build_with_the_scenario_bounds(self) -> None:
        """Each policy loads, with min/max replaced by the scenario's bounds."""
        for contender in contenders.contenders():
            pol = contender.policy(1, 17, 8.0)
            assert (pol.spec.min_replicas, pol.spec.max_replicas) == (1, 17)
            # The scenario's SLO is the one measured; llm-slo sizes on it (the same objectives).
            assert (pol.spec.slo is not None) == contender.keep_slo

    def test_rate_targets_follow_the_scenario_capacity(self) -> None:
        """llm-tuned and hpa-rate: request-rate target = the share x the capacity given."""
        by_name = {c.name: c for c in contenders.contenders()}
        for name in ("llm-tuned", "hpa-rate"):
            contender = by_name[name]
            assert contender.capacity_share == contenders.TUNED_SHARE
            for capacity in (6.0, 9.5):
                pol = contender.policy(1, 10, capacity)
                targets = [
                    m.request_rate.target.average_value
                    for m in pol.spec.metrics
                    if m.request_rate is not None
                ]
                assert targets == [round(contenders.TUNED_SHARE * capacity, 3)]
            with pytest.raises(ValueError, match="needs the capacity"):
                contender.policy(1, 10)

    def test_published_hpa_is_nvidias_example(self) -> None:
        """algorithm hpa, KV AverageValue 0.1 (100m), no behavior, adapter pipeline."""
        hpa = next(c for c in contenders.contenders() if c.name == "hpa-kv-published")
        pol = hpa.policy(1, 10, 8.0)
        assert pol.spec.algorithm is Algorithm.HPA
        assert pol.spec.behavior is None
        assert hpa.document["spec"]["metrics"][0]["kvCache"]["target"]["averageValue"] == 0.1
        assert (hpa.scrape_interval, hpa.interval) == (30.0, 15.0)
        assert (hpa.metric_delay.extra, hpa.metric_delay.evaluation_interval) == (30.0, 30.0)

    def test_keda_reads_empty_as_zero(self) -> None:
        """KEDA's ignoreNullValues default; the HPA baselines do not."""
        by_name = {c.name: c for c in contenders.contenders()}
        assert by_name["keda-queue"].empty_as_zero
        assert not by_name["hpa-queue"].empty_as_zero

    def test_llm_contenders_use_algorithm_llm(self) -> None:
        """The llm contenders run algorithm llm; every other field of the pipeline is ours."""
        for contender in contenders.contenders():
            if contender.name.startswith("llm-"):
                assert contender.policy(1, 10, 8.0).spec.algorithm is Algorithm.LLM
                assert contender.metric_delay.extra == 0.0

    def test_every_contender_runs_on_a_tiny_load(self) -> None:
        """Same 4-minute step load and seed for every contender; each produces a valid summary."""
        workload = load_workload("synthetic:step:rates=10/40,every=120", seed=5)
        for contender in contenders.contenders():
            result = run_simulation(
                SimulationConfig(
                    workload=workload,
                    profile=get_profile("8b-fp8-h100"),
                    policy=contender.policy(1, 8, 8.0),
                    seed=5,
                    interval=contender.interval,
                    scrape_interval=contender.scrape_interval,
                    metric_delay=contender.metric_delay,
                    empty_as_zero=contender.empty_as_zero,
                    cold_start=ColdStart.parse("30"),
                    slo=SLO,
                    initial_replicas=1,
                    drain=30.0,
                )
            )
            assert result.summary["requests"] == len(workload)
            assert result.summary["gpuHours"] > 0


@pytest.mark.parametrize("time_scale", [1.0, 4.0, 12.0])
def test_day_is_sized_in_replicas_of_load_whatever_the_compression(time_scale: float) -> None:
    """Compressing the day keeps its requests (rates x time_scale): the scaling undoes that."""
    day = scenarios.ServeGenDay(
        "day", "day", "", replicas=8.0, duration=scenarios.DAY / time_scale, time_scale=time_scale
    )
    workload, applied = day.workload(per_replica=9.0, seed=3)
    rates = scenarios.minute_rates(workload, int(day.duration // 60))
    assert applied["timeScale"] == time_scale
    assert rates.mean() / 9.0 == pytest.approx(8.0, rel=0.03)


def test_missing_traces_fail_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No shared/traces: the benchmark says where it looked and what it needs."""
    monkeypatch.setattr(scenarios, "TRACES", tmp_path)
    with pytest.raises(scenarios.TracesMissing, match="not found in"):
        scenarios.scenarios(quick=True)


def test_goals_compare_totals() -> None:
    """Goals of the SLO-only policy: <= 1/4 of the HPA's violation minutes at no more GPU-hours
    and <= 1.3x the oracle's, never worse than the HPA in one run; the tuned one beside it."""
    rows = []
    runs = {"a": ((2, 10.0), (2, 9.0), (10, 11.0)), "b": ((1, 5.0), (3, 5.0), (6, 5.0))}
    for scenario, (slo, tuned, hpa) in runs.items():
        rows += [
            {"scenario": scenario, "coldStart": 90.0, "contender": "llm-slo",
             "sloViolationMinutes": slo[0], "gpuHours": slo[1]},
            {"scenario": scenario, "coldStart": 90.0, "contender": "llm-tuned",
             "sloViolationMinutes": tuned[0], "gpuHours": tuned[1]},
            {"scenario": scenario, "coldStart": 90.0, "contender": "hpa-kv-published",
             "sloViolationMinutes": hpa[0], "gpuHours": hpa[1]},
            {"scenario": scenario, "coldStart": 90.0, "contender": "oracle",
             "sloViolationMinutes": None, "gpuHours": 6.5},
        ]  # fmt: skip
    goals = bench_quality._goals(rows)
    slo = goals["llmVsHpa"]
    assert slo["contender"] == "llm-slo"
    assert slo["violationMinutesRatio"] == pytest.approx(3 / 16, abs=1e-3)
    assert slo["gpuHoursOverOracle"] == pytest.approx(15 / 13, abs=1e-3)
    assert slo["met"]  # 3 <= 4 minutes, 15 <= 16 GPU-hours, 1.15 <= 1.3 x oracle
    tuned = goals["tunedVsHpa"]
    assert tuned["violationMinutesRatio"] == pytest.approx(5 / 16, abs=1e-3)
    assert not tuned["met"]  # 5 > 4 minutes
    assert goals["llmWorseThanHpa"] == {"runs": [], "met": True}
    assert math.isclose(goals["totals"]["hpa-kv-published"]["gpuHours"], 16.0)
    rows[0]["sloViolationMinutes"] = 12  # worse than the HPA's 10 in scenario a
    worse = bench_quality._goals(rows)
    assert worse["llmWorseThanHpa"] == {"runs": ["a@90"], "met": False}
    assert not worse["llmVsHpa"]["met"]
