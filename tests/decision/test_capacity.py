"""The capacity model and the SLO sizing of ``algorithm: llm`` (pure parts)."""

from __future__ import annotations

import base64
import json
import math
from array import array

import pytest

from autoscaler.decision import capacity as cap
from autoscaler.decision import slo
from autoscaler.decision.types import (
    History,
    MetricObservation,
    Observation,
    PodSamples,
    TargetSample,
)
from autoscaler.policy.loader import load_text

from .helpers import decide, running_pods

OBJECTIVES = (cap.Objective("ttft", 0.95, 0.5), cap.Objective("itl", 0.95, 0.05))


def sample(now: float, load: float, itl: float, ttft: float = 0.2) -> cap.Sample:
    return cap.Sample(now, load, (("ttft", ttft / 0.5), ("itl", itl / 0.05)))


class TestCapacityModel:
    def test_met_samples_raise_good(self) -> None:
        """Every met sample is a demonstrated load; the highest one is kept."""
        model = cap.CapacityModel()
        for t, load in enumerate((3.0, 5.0, 4.0)):
            model = cap.observe(model, sample(t, load, itl=0.03))
        assert model.good == 5.0
        assert model.bad is None

    def test_one_violation_is_not_evidence(self) -> None:
        """A single violated tick changes nothing; two in a row set the upper bound."""
        model = cap.observe(cap.CapacityModel(), sample(0, 6.0, itl=0.03))
        once = cap.observe(model, sample(15, 9.0, itl=0.08))
        assert once.bad is None
        twice = cap.observe(once, sample(30, 9.0, itl=0.08))
        assert twice.bad == 9.0
        assert twice.good == 6.0

    def test_ambiguous_sample_is_neither(self) -> None:
        """Latency between the target and target x 1.1 neither raises good nor sets bad..."""
        model = cap.observe(cap.CapacityModel(), sample(0, 6.0, itl=0.03))
        for t in range(cap.MARGINAL_NEEDED - 1):
            model = cap.observe(model, sample(t + 1, 8.0, itl=0.053))
        assert model.good == 6.0
        assert model.bad is None
        # ... until it lasts a whole rate window: a fleet held just over target is violating.
        model = cap.observe(model, sample(cap.MARGINAL_NEEDED, 8.0, itl=0.053))
        assert model.bad == 8.0
        assert model.good == 6.0
        # a met sample in between restarts the count
        model = cap.observe(cap.CapacityModel(good=6.0), sample(0, 8.0, itl=0.053))
        model = cap.observe(model, sample(1, 7.0, itl=0.04))
        for t in range(cap.MARGINAL_NEEDED - 1):
            model = cap.observe(model, sample(t + 2, 8.0, itl=0.053))
        assert model.bad is None

    def test_capacity_drop_lowers_good(self) -> None:
        """Violations at or below the demonstrated load mean the capacity dropped."""
        model = cap.CapacityModel(good=8.0)
        for t in range(2):
            model = cap.observe(model, sample(t, 6.0, itl=0.09))
        assert model.bad == 6.0
        assert model.good == pytest.approx(cap.DRIFT_SHARE * 6.0)

    def test_met_sample_above_bad_clears_it(self) -> None:
        """A met sample at or above the old violation means that bound is stale."""
        model = cap.CapacityModel(good=5.0, bad=7.0, bad_at=0.0)
        model = cap.observe(model, sample(10, 7.5, itl=0.04))
        assert model.bad is None
        assert model.good == 7.5

    def test_bad_relaxes_over_time(self) -> None:
        """The upper bound grows by BAD_RELAX each BAD_RELAX_SECONDS without a new violation."""
        model = cap.CapacityModel(good=5.0, bad=8.0, bad_at=0.0)
        assert cap.relaxed_bad(model, cap.BAD_RELAX_SECONDS - 1) == 8.0
        assert cap.relaxed_bad(model, 2 * cap.BAD_RELAX_SECONDS) == pytest.approx(8.0 * 1.2)

    def test_estimate_sources(self) -> None:
        """Prior without anything, the seed while not contradicted, learned with evidence."""
        empty = cap.CapacityModel()
        assert cap.estimate(empty, 0, None, "spec").source == "prior"
        assert cap.estimate(empty, 0, None, "spec").planned is None
        seeded = cap.estimate(empty, 0, 7.0, "profile")
        assert (seeded.source, seeded.planned) == ("profile", 7.0)
        contradicted = cap.estimate(cap.CapacityModel(bad=6.0, bad_at=0.0), 0, 7.0, "spec")
        assert contradicted.source == "prior"
        assert contradicted.planned == pytest.approx(cap.PRIOR_BAD_SHARE * 6.0)
        learned = cap.estimate(cap.CapacityModel(good=9.0), 0, 7.0, "spec")
        assert (learned.source, learned.per_replica) == ("learned", 9.0)

    def test_exploration_is_bounded(self) -> None:
        """Headroom at the last sample allows planning above good, never past 1.5 x good or
        0.9 x bad."""
        model = cap.CapacityModel(good=4.0, last_load=4.0, last_ratio=0.6, last_explore=1.5)
        assert cap.estimate(model, 0, None, "spec").planned == pytest.approx(6.0)
        bounded = cap.CapacityModel(
            good=4.0, bad=5.0, bad_at=0.0, last_load=4.0, last_ratio=0.6, last_explore=1.5
        )
        assert cap.estimate(bounded, 0, None, "spec").planned == pytest.approx(4.5)
        tight = cap.CapacityModel(good=4.0, last_load=4.0, last_ratio=0.9, last_explore=1.0)
        assert cap.estimate(tight, 0, None, "spec").planned == 4.0
        # an overloaded last sample is no place to explore from
        over = cap.CapacityModel(good=4.0, last_load=9.0, last_ratio=1.4, last_explore=1.5)
        assert cap.estimate(over, 0, None, "spec").planned == 4.0

    def test_explore_factor_separates_the_latency_load_does_not_cause(self) -> None:
        """A TTFT near its target but at its lowest seen (prefill) does not stop exploring; an
        ITL that grew near its target does."""
        floors = {"ttft": 0.8, "itl": 0.2}
        prefill_bound = cap.explore_factor((("ttft", 0.82), ("itl", 0.3)), floors)
        assert prefill_bound > 1.3
        itl_bound = cap.explore_factor((("ttft", 0.82), ("itl", 0.9)), floors)
        assert itl_bound == 1.0
        violated = cap.explore_factor((("ttft", 1.2), ("itl", 0.3)), floors)
        assert violated == 1.0

    def test_json_round_trip(self) -> None:
        """The model survives serialisation exactly."""
        model = cap.CapacityModel(
            4.0, 10.0, 6.0, 20.0, 1, 7, 4.5, 0.6, (("itl", 0.2, 1.0),), 1.2, marginal=3
        )
        again = cap.CapacityModel.from_json(json.loads(json.dumps(model.to_json())))
        assert model == again


def observations(
    pods: list[str],
    rate: float,
    *,
    waiting: float = 0.0,
    running: float = 10.0,
    itl: float | None = 0.03,
    ttft: float | None = 0.2,
    lengths: tuple[float, float] | None = None,
) -> dict[str, MetricObservation]:
    """The capacity signals with ``rate`` completions/s spread over ``pods`` (and the token
    counters' rates for requests of ``lengths`` (prompt, output) tokens)."""
    share = 1.0 / len(pods)
    metrics: dict[str, MetricObservation] = {
        slo.SIGNAL_RATE: PodSamples(dict.fromkeys(pods, rate * share), 0.0),
        slo.SIGNAL_WAITING: PodSamples(dict.fromkeys(pods, waiting * share), 0.0),
        slo.SIGNAL_RUNNING: PodSamples(dict.fromkeys(pods, running * share), 0.0),
    }
    if lengths is not None:
        prompt, output = lengths
        metrics[slo.SIGNAL_PROMPT_TOKENS] = PodSamples(
            dict.fromkeys(pods, rate * prompt * share), 0.0
        )
        metrics[slo.SIGNAL_GENERATION_TOKENS] = PodSamples(
            dict.fromkeys(pods, rate * output * share), 0.0
        )
    if itl is not None:
        metrics[slo.SIGNAL_ITL] = TargetSample(itl, 0.0)
    if ttft is not None:
        metrics[slo.SIGNAL_TTFT] = TargetSample(ttft, 0.0)
    return metrics


def fleet(n: int, starting: int = 0) -> slo.Fleet:
    return slo.Fleet(tuple(f"p{i}" for i in range(n)), starting, 90.0)


def run_plan(
    ticks: int, n: int, rate: float, state: slo.SloState | None = None, **kwargs: float
) -> slo.SloPlan:
    pods = [f"p{i}" for i in range(n)]
    result = None
    start = 0.0 if state is None or state.last_tick is None else state.last_tick + 15.0
    for i in range(ticks):
        result = slo.plan(
            state,
            observations(pods, rate, **kwargs),  # type: ignore[arg-type]
            fleet(n),
            OBJECTIVES,
            None,
            "spec",
            start + 15.0 * i,
        )
        state = result.state
    assert result is not None
    return result


class TestSloPlan:
    def test_nothing_is_learned_in_the_first_rate_window(self) -> None:
        """Series may be younger than the rate window when a policy appears: its rates
        understate the load, so not even a met tick is a sample until a window has passed."""
        first = run_plan(6, 4, 20.0)
        assert first.steady == "the first rate window since the policy appeared"
        assert first.state.model.samples == 0
        assert first.state.model.good is None
        assert run_plan(7, 4, 20.0).state.model.good == pytest.approx(5.0)

    def test_violations_count_only_after_a_steady_window(self) -> None:
        """In the first rate window plus a scrape after a change only met ticks teach (they
        understate the load carried); a violation needs a whole steady window."""
        watched = run_plan(8, 4, 20.0).state
        assert watched.model.good == pytest.approx(5.0)
        pods = [f"p{i}" for i in range(5)]
        met = slo.plan(
            watched, observations(pods, 30.0), fleet(5), OBJECTIVES, None, "spec", 8 * 15.0
        )
        assert met.steady == "steady (met)"
        assert met.state.model.good == pytest.approx(6.0)
        early = run_plan(6, 4, 20.0, itl=0.09)
        assert early.state.model.bad is None
        assert early.state.model.samples == 0
        later = run_plan(12, 4, 20.0, itl=0.09)
        assert later.state.model.bad == pytest.approx(5.0)

    def test_ignores_violations_while_pods_start(self) -> None:
        """A pod that became ready restarts the steady clock: its violations are no evidence."""
        state = run_plan(12, 4, 20.0).state
        pods = [f"p{i}" for i in range(5)]
        for _ in range(6):
            result = slo.plan(
                state,
                observations(pods, 40.0, itl=0.09),
                fleet(5),
                OBJECTIVES,
                None,
                "spec",
                state.last_tick + 15.0,  # type: ignore[operator]
            )
            assert result.steady == "pods started or left within the rate window"
            state = result.state
        assert state.model.bad is None
        assert state.model.good == pytest.approx(5.0)

    def test_ignores_a_draining_backlog(self) -> None:
        """A shrinking backlog above one waiting request per pod is no sample."""
        state = run_plan(12, 4, 20.0, waiting=400.0).state
        samples = state.model.samples
        result = run_plan(1, 4, 20.0, state=state, waiting=100.0)
        assert result.steady == "backlog draining"
        assert result.state.model.samples == samples

    def test_ignores_the_window_after_a_backlog_drained(self) -> None:
        """Once the backlog is gone its requests still set the window's latency: no sample (a
        violation at a low load then would read as a capacity drop)."""
        state = run_plan(12, 4, 20.0, waiting=400.0).state
        samples = state.model.samples
        result = run_plan(1, 4, 20.0, state=state, waiting=0.0, itl=0.2)
        assert result.steady == "backlog drained within the rate window"
        assert result.state.model.samples == samples
        assert result.state.model.bad is None

    def test_pods_leaving_do_not_read_as_fewer_arrivals(self) -> None:
        """Requests held by pods that left leave the sum with them: arrivals stay at least the
        completions (no collapse from a scale-down's own effect)."""
        state = run_plan(12, 8, 40.0, running=80.0).state
        pods = [f"p{i}" for i in range(4)]
        result = slo.plan(
            state,
            observations(pods, 40.0, running=40.0),
            fleet(4),
            OBJECTIVES,
            None,
            "spec",
            (state.last_tick or 0.0) + 15.0,
        )
        assert result.arrivals is not None
        assert result.arrivals >= 40.0

    def test_pods_joining_during_a_drain_do_not_read_as_more_arrivals(self) -> None:
        """Pods that joined take nothing out of the held sum: while a backlog drains, the
        completions that empty it are not new arrivals (they would read as a recurring burst
        and keep the late pods)."""
        state = run_plan(12, 4, 20.0, waiting=2400.0).state
        pods = [f"p{i}" for i in range(8)]
        result = None
        for i in range(4):
            # 60 completions/s drain the backlog by 40/s: 20 req/s arrive.
            result = slo.plan(
                state,
                observations(pods, 60.0, waiting=2400.0 - 600.0 * (i + 1)),
                fleet(8),
                OBJECTIVES,
                None,
                "spec",
                (state.last_tick or 0.0) + 15.0,
            )
            state = result.state
        assert result is not None
        assert result.arrivals == pytest.approx(20.0)

    def test_pods_that_arrive_after_a_burst_are_late(self) -> None:
        """Pods asked for by a burst that ended before they arrived are flagged late (released
        without waiting a whole down window) once the policy watched long enough to call the
        burst isolated; pods the load still needs are not late."""
        state = run_plan(60, 4, 20.0).state
        burst = run_plan(4, 4, 80.0, state=state, itl=0.2, waiting=400.0).state
        quiet = run_plan(2, 4, 20.0, state=burst).state
        late = run_plan(1, 16, 20.0, state=quiet)
        assert late.late_pods
        needed = run_plan(1, 16, 80.0, state=quiet)
        assert not needed.late_pods

    def test_much_longer_requests_divide_the_learned_capacity(self) -> None:
        """The token counters give the mean request lengths (median of met steady ticks);
        requests more than 1.5x longer than those the capacity was learned at divide it by how
        much longer they are, before any violation (here the load fell too, so no tick shows
        the old figure holding at the new lengths); the explanation shows both lengths."""
        state = run_plan(12, 4, 20.0, lengths=(1000.0, 200.0)).state
        assert state.model.good == pytest.approx(5.0)
        assert state.model.good_lengths == pytest.approx((1000.0, 200.0))
        noisy = run_plan(3, 4, 20.0, state=state, lengths=(1400.0, 200.0))
        assert noisy.estimate.per_replica == pytest.approx(5.0)  # within 1.5x: the mix's noise
        longer = run_plan(10, 4, 8.0, state=noisy.state, lengths=(1000.0, 500.0))
        assert longer.estimate.good == pytest.approx(2.0)  # 5 req/s / 2.5x longer outputs
        assert longer.estimate.lengths == pytest.approx((1000.0, 500.0))
        assert "requests of 1000 in / 500 out tokens" in longer.estimate.note
        shown = longer.estimate.to_json()
        assert shown["requestLengths"] == {"promptTokens": 1000.0, "outputTokens": 500.0}
        assert shown["learnedAtRequestLengths"] == {"promptTokens": 1000.0, "outputTokens": 500.0}
        restored = slo.SloState.from_json(json.loads(json.dumps(longer.state.to_json())))
        assert restored == longer.state

    def test_no_token_counters_leave_the_figure_alone(self) -> None:
        """Without the token counters the lengths are unknown and nothing is divided."""
        result = run_plan(12, 4, 20.0)
        assert result.estimate.lengths is None
        assert result.estimate.per_replica == pytest.approx(5.0)

    def test_a_profile_seed_waits_for_the_live_lengths_then_is_approached(self) -> None:
        """With token counters exported, a profile measured at 500 in / 100 out tokens is not
        used before the live lengths are measured (no scale-down on it); at 3x longer prompts
        it is divided by 3 and, being an extrapolation, approached from the demonstrated load
        by bounded steps (1.5 x)."""
        state: slo.SloState | None = None
        pods = [f"p{i}" for i in range(4)]
        results = []
        for i in range(14):
            result = slo.plan(
                state,
                observations(pods, 8.0, lengths=(1500.0, 100.0)),
                fleet(4),
                OBJECTIVES,
                12.0,
                "profile",
                15.0 * i,
                (500.0, 100.0),
            )
            state = result.state
            results.append(result)
        pending = results[7]  # two length measurements so far
        assert pending.estimate.source != "profile"
        assert "used once the live request lengths are measured" in pending.estimate.note
        done = results[-1]
        assert done.estimate.lengths == pytest.approx((1500.0, 100.0))
        assert done.estimate.source == "profile"
        assert done.estimate.good == pytest.approx(2.0)
        assert done.estimate.per_replica == pytest.approx(3.0)  # 12 / 3 = 4, capped at 1.5 x 2
        assert "approached in steps" in done.estimate.note

    def test_a_profile_seed_violated_below_stays_unused(self) -> None:
        """A violation below the seed contradicts it for good: a later met sample that clears
        the violated bound does not bring the seed back."""
        lengths = (500.0, 100.0)
        state: slo.SloState | None = None
        pods = [f"p{i}" for i in range(4)]
        for i, (rate, itl) in enumerate([(20.0, 0.03)] * 10 + [(20.0, 0.09)] * 8):
            result = slo.plan(
                state,
                observations(pods, rate, itl=itl, lengths=lengths),
                fleet(4),
                OBJECTIVES,
                12.0,
                "profile",
                15.0 * i,
                lengths,
            )
            state = result.state
        assert state is not None
        assert state.seed_contradicted
        assert state.model.bad == pytest.approx(5.0)
        later = run_plan(12, 4, 24.0, state=state, lengths=lengths)  # clears bad (met at 6)
        assert later.state.model.bad is None
        again = slo.plan(
            later.state,
            observations(pods, 24.0, lengths=lengths),
            fleet(4),
            OBJECTIVES,
            12.0,
            "profile",
            (later.state.last_tick or 0.0) + 15.0,
            lengths,
        )
        assert again.estimate.source == "learned"
        assert "contradicted" in again.estimate.note

    def test_a_profile_seed_measured_at_shorter_requests_is_divided(self) -> None:
        """A GenAI-Perf sweep at 500 in / 100 out tokens says nothing for 3,000-token prompts:
        its figure is divided by 6; at the sweep's own lengths it stands."""
        model = cap.CapacityModel()
        live = (3000.0, 100.0)
        seeded = cap.estimate(model, 0.0, 12.0, "profile", live, (500.0, 100.0))
        assert seeded.per_replica == pytest.approx(2.0)
        assert "6x longer than the profile's 500 in / 100 out tokens" in seeded.note
        same = cap.estimate(model, 0.0, 12.0, "profile", (520.0, 90.0), (500.0, 100.0))
        assert same.per_replica == pytest.approx(12.0)
        unknown = cap.estimate(model, 0.0, 12.0, "profile", None, (500.0, 100.0))
        assert unknown.per_replica == pytest.approx(12.0)

    def test_arrivals_count_the_growth_of_the_requests_held(self) -> None:
        """Arrivals = completions + growth of waiting + running over the rate window."""
        state = run_plan(5, 4, 20.0, waiting=0.0).state
        grown = run_plan(1, 4, 20.0, state=state, waiting=120.0)
        # 120 more requests held over the last 60 s: 2 req/s more than the completions.
        assert grown.arrivals == pytest.approx(22.0)

    def test_need_has_poisson_headroom_and_floor_has_none(self) -> None:
        """need = (rate + z sqrt(rate / interval)) / planned; floor = ceil(rate / planned)."""
        result = run_plan(12, 4, 20.0, itl=0.045, ttft=0.45)
        planned = result.estimate.planned
        assert planned == pytest.approx(5.0)
        assert result.forecast == pytest.approx(20.0)
        peak = 20.0 + slo.PEAK_Z * math.sqrt(20.0 / 15.0)
        assert result.need == pytest.approx(peak / 5.0)
        assert result.floor == 4

    def test_trend_forecasts_a_rise_over_the_startup_time(self) -> None:
        """A steady rise is provisioned one start-up time ahead; a flat noisy load is not."""
        pods = [f"p{i}" for i in range(4)]
        state = None
        result = None
        for i in range(20):
            result = slo.plan(
                state,
                observations(pods, 20.0 + 0.5 * i),
                fleet(4),
                OBJECTIVES,
                None,
                "spec",
                15.0 * i,
            )
            state = result.state
        assert result is not None
        assert result.trend is not None
        # 0.5 req/s per 15 s is 1/30 req/s^2; 90 s ahead is +3 req/s.
        assert result.trend == pytest.approx(29.5 + 3.0, rel=0.05)
        flat = None
        state = None
        for i in range(20):
            flat = slo.plan(
                state,
                observations(pods, 20.0 + (1.0 if i % 2 else -1.0)),
                fleet(4),
                OBJECTIVES,
                None,
                "spec",
                15.0 * i,
            )
            state = flat.state
        assert flat is not None
        assert flat.forecast == pytest.approx(flat.arrivals)

    def test_recurring_bursts_keep_a_share_of_their_peak(self) -> None:
        """On/off arrivals (two bursts within the kept window) forecast RECURRING_SHARE x their
        peak between the bursts; a single burst (a spike) is left to the trend."""
        pods = [f"p{i}" for i in range(4)]

        def run(rates: list[float]) -> slo.SloPlan:
            state, result = None, None
            for i, rate in enumerate(rates):
                result = slo.plan(
                    state, observations(pods, rate), fleet(4), OBJECTIVES, None, "spec", 15.0 * i
                )
                state = result.state
            assert result is not None
            return result

        on_off = run([40.0] * 8 + [2.0] * 8 + [40.0] * 8 + [2.0] * 4)
        assert on_off.recurring == pytest.approx(slo.RECURRING_SHARE * on_off_peak(on_off))
        assert on_off.forecast is not None
        assert on_off.forecast >= slo.RECURRING_SHARE * 30.0
        spike = run([2.0] * 8 + [40.0] * 8 + [2.0] * 8)
        assert spike.recurring is None
        assert spike.forecast is not None
        assert spike.forecast < slo.RECURRING_SHARE * 40.0
        # bursts older than the kept window are forgotten
        old = run([40.0] * 4 + [2.0] * 4 + [40.0] * 4 + [2.0] * 48)
        assert old.recurring is None

    def test_daily_shape_once_a_day_was_seen(self) -> None:
        """After a whole day, the shape of the day raises the forecast ahead of a daily rise."""
        rising_bins = tuple(10.0 if i < 72 else 20.0 for i in range(slo.DAY_BINS))
        state = slo.SloState(day=rising_bins, first_seen=0.0, last_tick=None)
        pods = [f"p{i}" for i in range(4)]
        before_rise = 72 * 600.0 - 60.0 + slo.DAY  # one minute before the second half, day 2
        result = slo.plan(
            state, observations(pods, 10.0), fleet(4), OBJECTIVES, None, "spec", before_rise
        )
        assert result.daily is not None
        assert result.daily > 10.0
        assert result.forecast == pytest.approx(result.daily)

    def test_state_round_trip(self) -> None:
        """The SLO state survives JSON exactly (restart, failover)."""
        state = run_plan(20, 4, 20.0).state
        again = slo.SloState.from_json(json.loads(json.dumps(state.to_json())))
        assert state == again

    def test_state_holds_packed_doubles(self) -> None:
        """The daily shape and the windows of points are packed doubles, as ticks build them
        and as a restart reads them (8 bytes a value): tuples held a float object (24 bytes
        more) for each bin once the bins differ, 3.5 KB per policy, and a tuple and a float or
        two for each point, ~4 KB for a full arrival window. The plan leaves the state it was
        given as it was."""
        state = run_plan(20, 4, 20.0).state
        again = slo.SloState.from_json(json.loads(json.dumps(state.to_json())))
        for kept in (state, again):
            assert memoryview(kept.day).nbytes == 8 * slo.DAY_BINS  # type: ignore[arg-type]
            arrivals = slo._points(kept.arrivals)
            assert len(arrivals) >= 10
            assert memoryview(kept.arrivals).nbytes == 16 * len(arrivals)  # type: ignore[arg-type]
            assert memoryview(kept.held).nbytes == 16 * len(slo._points(kept.held))  # type: ignore[arg-type]
        before = list(again.day)
        pods = [f"p{i}" for i in range(4)]
        later = slo.plan(again, observations(pods, 30.0), fleet(4), OBJECTIVES, None, "spec", 1e6)
        assert list(again.day) == before
        assert list(later.state.day) != before


class TestPackedState:
    """Version 2 of the state keeps its windows and daily shape as packed doubles."""

    def test_exact_round_trip_through_json(self) -> None:
        """Every double comes back bit for bit, NaN and infinities included."""
        day = array("d", [i / 7 for i in range(slo.DAY_BINS)])
        day[3], day[4], day[5] = math.nan, math.inf, -0.0
        state = slo.SloState(
            held=array("d", [1.5, 2.0, 16.25, 3.0]),
            arrivals=array("d", [1_796_654_377.0944102, 54.974584341049194]),
            day=day,
            ready=3,
        )
        doc = json.loads(json.dumps(state.to_json()))
        assert doc["v"] == 2
        assert isinstance(doc["day"], str)
        again = slo.SloState.from_json(doc)
        assert bytes(again.day) == bytes(day)  # type: ignore[arg-type]
        assert list(again.held) == [1.5, 2.0, 16.25, 3.0]
        assert list(again.arrivals) == [1_796_654_377.0944102, 54.974584341049194]
        empty = slo.SloState.from_json(json.loads(json.dumps(slo.SloState().to_json())))
        assert (empty.held, empty.arrivals, empty.day) == ((), (), ())

    def test_version_1_lists_are_read(self) -> None:
        """A state written as lists of numbers (version 1) reads as the same doubles."""
        state = run_plan(20, 4, 20.0).state
        doc = state.to_json()
        old = {
            **doc,
            "v": 1,
            "held": [list(p) for p in slo._points(state.held)],
            "arrivals": [list(p) for p in slo._points(state.arrivals)],
            "day": list(state.day),
        }
        assert slo.SloState.from_json(json.loads(json.dumps(old))) == state

    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("day", "not base64!", ValueError),
            ("day", base64.b64encode(bytes(12)).decode(), ValueError),  # not whole doubles
            ("arrivals", base64.b64encode(bytes(24)).decode(), ValueError),  # not whole pairs
            ("held", [1.0, 2.0], TypeError),  # version 2 holds strings
            ("day", base64.b64encode(bytes(8 * 3)).decode(), ValueError),  # not DAY_BINS bins
        ],
    )
    def test_malformed_packed_doubles_are_refused(
        self, field: str, value: object, error: type[Exception]
    ) -> None:
        doc = {**slo.SloState().to_json(), field: value}
        with pytest.raises(error):
            slo.SloState.from_json(doc)


def on_off_peak(result: slo.SloPlan) -> float:
    """The highest arrival rate kept in the state (what the bursts reached)."""
    return max(v for _, v in slo._points(result.state.arrivals))


SLO_ONLY = """
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {name: slo-only, namespace: ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}
  algorithm: llm
  minReplicas: 1
  maxReplicas: 20
  slo:
    ttft: {quantile: 0.95, target: 0.5}
    itl: {quantile: 0.95, target: 0.05}
"""


class TestDecide:
    def policy(self, text: str = SLO_ONLY):  # type: ignore[no-untyped-def]
        loaded = load_text(text, "p.yaml")
        assert not loaded.errors
        return loaded.policies[0].policy

    def tick(
        self, history: History, now: float, n: int, rate: float, **kwargs: float
    ) -> tuple[int, History, dict]:  # type: ignore[type-arg]
        pods = running_pods(n)
        names = [p.name for p in pods]
        obs = Observation(n, n, pods, observations(names, rate, **kwargs))  # type: ignore[arg-type]
        result = decide(self.policy(), obs, history, now)
        return result.decision.desired_replicas, result.history, result.decision.explanation

    def test_slo_only_policy_sizes_on_learned_capacity(self) -> None:
        """Learned 5 req/s per replica at 4 pods; load doubles: the proposal follows it."""
        history = History()
        for i in range(12):
            _, history, _ = self.tick(history, 15.0 * i, 4, 20.0, itl=0.045, ttft=0.45)
        # No latency signal on the last tick: sized, not learned from.
        desired, history, explanation = self.tick(history, 200.0, 4, 40.0, itl=None)
        assert explanation["capacity"]["source"] == "learned"
        assert explanation["capacity"]["perReplicaRequestsPerSecond"] == pytest.approx(5.0)
        assert explanation["slo"]["proposal"] >= 8
        assert desired >= 8

    def test_floor_stops_a_collapse(self) -> None:
        """A KV-only policy on a fleet whose KV reads near zero never drops below what carries
        the measured arrivals."""
        kv_only = SLO_ONLY.replace(
            """  slo:
    ttft: {quantile: 0.95, target: 0.5}
    itl: {quantile: 0.95, target: 0.05}
""",
            """  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.7}}
  behavior: {scaleDown: {stabilizationWindowSeconds: 0}}
""",
        )
        policy = self.policy(kv_only)
        pods = running_pods(20)
        names = [p.name for p in pods]
        history = History()
        desired = 20
        for i in range(30):
            metrics = observations(names, 60.0, itl=0.03, ttft=0.3)
            metrics["kvCache"] = PodSamples(dict.fromkeys(names, 0.02), 0.0)
            result = decide(policy, Observation(20, 20, pods, metrics), history, 15.0 * i)
            history, desired = result.history, result.decision.desired_replicas
            explanation = result.decision.explanation
        # 3 req/s per replica demonstrated; exploration allows at most 1.5 x that.
        assert desired >= math.ceil(60.0 / 4.5)
        assert "floorApplied" in explanation["slo"]

    def test_history_restart_changes_no_decision(self) -> None:
        """A decision from a history that went through JSON equals the one without restart."""
        history = History()
        for i in range(12):
            _, history, _ = self.tick(history, 15.0 * i, 4, 20.0)
        restored = History.from_json(json.loads(json.dumps(history.to_json())))
        assert restored.capacity == history.capacity
        a = self.tick(history, 200.0, 4, 35.0)
        b = self.tick(restored, 200.0, 4, 35.0)
        assert a[0] == b[0]
        assert a[2]["slo"] == b[2]["slo"]

    def test_no_rate_signal_never_scales_down(self) -> None:
        """Without the completion rate the SLO sizing is invalid: no scale-down on it."""
        pods = running_pods(6)
        history = History()
        desired = 0
        for i in range(12):
            result = decide(self.policy(), Observation(6, 6, pods, {}), history, 15.0 * i)
            history, desired = result.history, result.decision.desired_replicas
        assert desired == 6
