"""``algorithm: llm``: cold-start credit, start-up learning, unschedulable pods, KV saturation,
queue as a stock, latency guards, onMetricFailure, and closed-loop step-load scenarios."""

from __future__ import annotations

import math
from typing import Any

import pytest

from autoscaler.decision.types import (
    ConditionType,
    Decision,
    History,
    NoSignal,
    NoSignalReason,
    Observation,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)
from autoscaler.policy.models import ScalingPolicy

from .fleet import run_fleet
from .helpers import decide, policy, record_rescale

KV = {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}
QUEUE = {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}}
ITL = {"interTokenLatency": {"target": {"type": "Value", "value": 0.030}}}
SEEDED = History(initialized=True)


def llm_policy(*metrics: dict[str, Any], **kwargs: Any) -> ScalingPolicy:
    """An llm policy with default behaviour, bounds [1, 40]."""
    kwargs.setdefault("behavior", {})
    kwargs.setdefault("max_replicas", 40)
    return policy(list(metrics), algorithm="llm", **kwargs)


def ready_pod(name: str) -> PodInfo:
    """A ready pod created long ago."""
    return PodInfo(name, PodPhase.RUNNING, ready=True, created_at=-1000.0, ready_at=-700.0)


def starting_pod(name: str, created: float, *, phase: PodPhase = PodPhase.RUNNING) -> PodInfo:
    """A pod loading its model."""
    return PodInfo(name, phase, ready=False, created_at=created)


def kv_obs(
    pods: tuple[PodInfo, ...], kv: float, extra: dict[str, Any] | None = None
) -> Observation:
    """Every ready pod at ``kv`` usage; starting pods export 0."""
    values = {p.name: (kv if p.ready else 0.0) for p in pods if p.phase is PodPhase.RUNNING}
    metrics: dict[str, Any] = {"kvCache": PodSamples(values, 0.0)}
    metrics.update(extra or {})
    return Observation(len(pods), len(pods), pods, metrics)


def cond(decision: Decision, kind: ConditionType) -> tuple[bool, str]:
    """(status, reason) of a condition."""
    found = decision.condition(kind)
    assert found is not None
    return found.status, found.reason


class TestColdStartCredit:
    """Starting pods count as capacity on the way."""

    def test_starting_pods_are_credited(self) -> None:
        """2 ready at 0.875 (need ceil(2 x 0.875 / 0.7) = 3) + 1 starting: no new scale-up."""
        pods = (ready_pod("a"), ready_pod("b"), starting_pod("c", created=-60.0))
        result = decide(llm_policy(KV), kv_obs(pods, 0.875), SEEDED, 0.0)
        assert result.decision.desired_replicas == 3
        assert cond(result.decision, ConditionType.CAPACITY_PENDING) == (True, "PodsStarting")

    def test_need_beyond_capacity_adds_only_the_shortfall(self) -> None:
        """4 ready + 1 starting, need 8: current 5 + need 8 - capacity 5 = 8."""
        kv_half = {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}
        pods = (*(ready_pod(n) for n in "abcd"), starting_pod("e", created=-60.0))
        # 4 x 0.9 / 0.5 = 7.2 -> need 8; capacity 4 + 1 = 5; ratio 7.2 / 5 = 1.44 > 1.1
        result = decide(llm_policy(kv_half), kv_obs(pods, 0.9), SEEDED, 0.0)
        assert result.decision.desired_replicas == 8
        # in band: 4 x 0.6 / 0.5 = 4.8 over capacity 5 = 0.96 -> keep 5
        steady = decide(llm_policy(kv_half), kv_obs(pods, 0.6), SEEDED, 0.0)
        assert steady.decision.desired_replicas == 5

    def test_stuck_pod_is_not_credited(self) -> None:
        """A pod starting for more than 2 x the start-up estimate is suspected stuck."""
        pods = (ready_pod("a"), ready_pod("b"), starting_pod("c", created=-1000.0))
        # learned estimate from a and b: 300 s; c is 1000 s old > 600 -> not credited
        # 2 x 0.9 / 0.7 = 2.57 -> need 3 > capacity 2 -> 3 + 3 - 2 = 4
        result = decide(llm_policy(KV), kv_obs(pods, 0.9), History(), 0.0)
        assert result.decision.explanation["pods"]["stuck"] == 1
        assert result.decision.metric_proposals["kvCache"] == 4

    def test_unschedulable_pods_are_not_credited_and_stop_asking(self) -> None:
        """Unschedulable: CapacityPending False/Unschedulable; same demand asks for nothing more."""
        gpu = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
        pods = (
            ready_pod("a"),
            ready_pod("b"),
            PodInfo("c", PodPhase.PENDING, ready=False, created_at=-30.0, unschedulable=gpu),
        )
        # 2 x 0.9 / 0.7 = 2.57 -> need 3; capacity 2 (c not credited); c already asked for:
        # max(3, 3 + 3 - 2 - 1) = 3
        result = decide(llm_policy(KV), kv_obs(pods, 0.9), SEEDED, 0.0)
        assert result.decision.desired_replicas == 3
        status = result.decision.condition(ConditionType.CAPACITY_PENDING)
        assert status is not None
        assert (status.status, status.reason) == (False, "Unschedulable")
        assert "nvidia.com/gpu" in status.message
        # saturated without a queue: no blind step while pods cannot be scheduled
        assert (
            decide(llm_policy(KV), kv_obs(pods, 0.97), SEEDED, 0.0).decision.desired_replicas == 3
        )

    def test_more_demand_with_unschedulable_pods_still_asks(self) -> None:
        """Demand beyond what was asked for still scales: need 4 -> 3 + 4 - 2 - 1 = 4."""
        kv_half = {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}}
        pods = (
            ready_pod("a"),
            ready_pod("b"),
            PodInfo("c", PodPhase.PENDING, ready=False, created_at=-30.0, unschedulable="no gpu"),
        )
        # 2 x 0.9 / 0.5 = 3.6 -> need 4
        result = decide(llm_policy(kv_half), kv_obs(pods, 0.9), SEEDED, 0.0)
        assert result.decision.desired_replicas == 4


class TestStartupLearning:
    """Start-up time learned from pods seen becoming ready."""

    def test_learns_from_transition(self) -> None:
        """Seen not ready at t=100 (created 0), ready at 250 -> sample 250."""
        pol = llm_policy(KV)
        first = (ready_pod("a"), starting_pod("b", created=0.0))
        h1 = decide(pol, kv_obs(first, 0.7), SEEDED, 100.0).history
        assert h1.known_pods == {"b": 0.0}
        second = (
            ready_pod("a"),
            PodInfo("b", PodPhase.RUNNING, ready=True, created_at=0.0, ready_at=250.0),
        )
        h2 = decide(pol, kv_obs(second, 0.7), h1, 260.0).history
        assert h2.startup_samples == (250.0,)
        assert h2.known_pods == {}

    def test_median_of_bounded_samples(self) -> None:
        """The estimate is the median of the last 20 samples."""
        history = History(
            initialized=True, startup_samples=tuple(float(s) for s in range(100, 125))
        )
        pods = (ready_pod("a"),)
        result = decide(llm_policy(KV), kv_obs(pods, 0.7), history, 0.0)
        # last 20 of 100..124 are 105..124 -> median 114.5
        assert result.decision.explanation["pods"]["startupEstimateSeconds"] == 114.5
        assert len(result.history.startup_samples) == 20


class TestKvSaturation:
    """KV usage at or above kvSaturation means demand is unknown-high."""

    def test_saturated_without_queue_steps_up(self) -> None:
        """3 ready at 0.97, no queue metric, nothing starting: 3 + 3 ready = 6."""
        pods = (ready_pod("a"), ready_pod("b"), ready_pod("c"))
        result = decide(llm_policy(KV), kv_obs(pods, 0.97), SEEDED, 0.0)
        assert result.decision.desired_replicas == 6

    def test_saturated_step_bounded_by_rate_policy(self) -> None:
        """A 1 Pod / 60 s scale-up policy bounds the step to 4."""
        pol = llm_policy(
            KV,
            behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}},
        )
        pods = (ready_pod("a"), ready_pod("b"), ready_pod("c"))
        assert decide(pol, kv_obs(pods, 0.97), SEEDED, 0.0).decision.desired_replicas == 4

    def test_below_saturation_is_ratio_math(self) -> None:
        """3 ready at 0.9: ceil(2.7 / 0.7) = 4 (not a step)."""
        pods = (ready_pod("a"), ready_pod("b"), ready_pod("c"))
        assert decide(llm_policy(KV), kv_obs(pods, 0.9), SEEDED, 0.0).decision.desired_replicas == 4


class TestQueueStock:
    """The queue is a stock: sized on growth, not on level."""

    def queue_obs(self, pods: tuple[PodInfo, ...], per_pod: float) -> Observation:
        values = {p.name: per_pod for p in pods if p.ready}
        return kv_obs(pods, 1.0, {"queueDepth": PodSamples(values, 0.0)})

    def test_draining_queue_holds(self) -> None:
        """Queue above target but shrinking: keep current (capacity in place drains it)."""
        pol = llm_policy(KV, QUEUE)
        pods = (ready_pod("a"), ready_pod("b"))
        h = decide(pol, self.queue_obs(pods, 100.0), SEEDED, 0.0).history
        result = decide(pol, self.queue_obs(pods, 80.0), h, 15.0)
        assert result.decision.metric_proposals["queueDepth"] == 2

    def test_growing_queue_at_most_doubles_without_throughput(self) -> None:
        """Growing queue, throughput unknown: ceil(ready x min(ratio, 2)) = 4."""
        pol = llm_policy(KV, QUEUE)
        pods = (ready_pod("a"), ready_pod("b"))
        h = decide(pol, self.queue_obs(pods, 10.0), SEEDED, 0.0).history
        result = decide(pol, self.queue_obs(pods, 500.0), h, 15.0)
        assert result.decision.metric_proposals["queueDepth"] == 4

    def test_growth_within_reference_holds_while_pods_start(self) -> None:
        """During warm-up, growth at the rate seen at the scale-up adds nothing."""
        pol = llm_policy(KV, QUEUE)
        two = (ready_pod("a"), ready_pod("b"))
        h = decide(pol, self.queue_obs(two, 0.0), SEEDED, 0.0).history
        r = decide(pol, self.queue_obs(two, 300.0), h, 15.0)  # growth 2*300/15 = 40/s
        h = record_rescale(pol, r.history, 15.0, 2, r.decision.desired_replicas)
        assert r.decision.desired_replicas == 4
        warm = (*two, starting_pod("c", created=15.0), starting_pod("d", created=15.0))
        same = decide(pol, self.queue_obs(warm, 600.0), h, 30.0)  # growth 40/s again
        assert same.decision.desired_replicas == 4
        surge = decide(pol, self.queue_obs(warm, 1200.0), same.history, 45.0)  # 80/s
        assert surge.decision.desired_replicas > 4


class TestLatencyGuard:
    """Latency is a guard, not a proportional signal."""

    def obs(self, kv: float, itl: Any) -> Observation:
        pods = (ready_pod("a"), ready_pod("b"), ready_pod("c"), ready_pod("d"))
        return kv_obs(pods, kv, {"interTokenLatency": itl})

    def test_above_target_adds_one(self) -> None:
        """p95 ITL 0.040 > 0.033: at least current + 1 even with KV in band."""
        pol = llm_policy(KV, ITL)
        result = decide(pol, self.obs(0.7, TargetSample(0.040, 0.0)), SEEDED, 0.0)
        assert result.decision.desired_replicas == 5

    def test_between_margin_and_target_blocks_scale_down(self) -> None:
        """ITL 0.027 (>= 0.8 x 0.030): the KV scale-down is held."""
        pol = llm_policy(KV, ITL)
        result = decide(pol, self.obs(0.2, TargetSample(0.027, 0.0)), SEEDED, 0.0)
        assert result.decision.desired_replicas == 4

    def test_below_margin_allows_scale_down(self) -> None:
        """ITL 0.010 (< 0.024): KV at 0.2 drives 4 -> ceil(0.8 / 0.7) = 2."""
        pol = llm_policy(KV, ITL, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        result = decide(pol, self.obs(0.2, TargetSample(0.010, 0.0)), SEEDED, 0.0)
        assert result.decision.desired_replicas == 2

    @pytest.mark.parametrize("reason", [NoSignalReason.NAN, NoSignalReason.EMPTY])
    def test_no_traffic_is_neutral(self, reason: NoSignalReason) -> None:
        """NaN/empty latency (no traffic): does not block the KV scale-down, does not force up."""
        pol = llm_policy(KV, ITL, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        down = decide(pol, self.obs(0.2, NoSignal(reason)), SEEDED, 0.0).decision
        assert down.desired_replicas == 2
        steady = decide(pol, self.obs(0.7, NoSignal(reason)), SEEDED, 0.0).decision
        assert steady.desired_replicas == 4

    def test_latency_query_error_blocks_scale_down(self) -> None:
        """A failing latency query is missing data: no scale-down."""
        pol = llm_policy(KV, ITL, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
        failing = NoSignal(NoSignalReason.QUERY_ERROR, "timeout")
        assert decide(pol, self.obs(0.2, failing), SEEDED, 0.0).decision.desired_replicas == 4


class TestOnMetricFailure:
    """hold (default) and fallback, in both algorithms."""

    @pytest.mark.parametrize("algorithm", ["hpa", "llm"])
    def test_fallback_after_consecutive_failures(self, algorithm: str) -> None:
        """No valid metric for 3 ticks -> fallback replicas 6, condition Fallback True."""
        pol = policy(
            [KV],
            algorithm=algorithm,
            behavior={},
            onMetricFailure={"action": "fallback", "replicas": 6, "afterFailures": 3},
        )
        pods = (ready_pod("a"), ready_pod("b"))
        obs = Observation(2, 2, pods, {})
        history = SEEDED
        desired = []
        for i in range(3):
            result = decide(pol, obs, history, 15.0 * i)
            history = result.history
            desired.append(result.decision.desired_replicas)
        assert desired == [2, 2, 6]
        assert cond(result.decision, ConditionType.FALLBACK) == (True, "MetricsUnavailable")

    def test_hold_keeps_current(self) -> None:
        """Default hold: no valid metric keeps the count forever."""
        pol = llm_policy(KV)
        obs = Observation(2, 2, (ready_pod("a"), ready_pod("b")), {})
        history = SEEDED
        for i in range(10):
            result = decide(pol, obs, history, 15.0 * i)
            history = result.history
            assert result.decision.desired_replicas == 2
        assert history.consecutive_failures == 10


SCENARIOS = [
    pytest.param(180.0, id="step 20->100 req/s, 3 min cold start"),
    pytest.param(300.0, id="step 20->100 req/s, 5 min cold start"),
    pytest.param(420.0, id="step 20->100 req/s, 7 min cold start"),
]


@pytest.mark.parametrize("startup", SCENARIOS)
def test_step_load_no_overshoot(startup: float) -> None:
    """Step load with slow cold starts: llm never exceeds the steady-state need; hpa does."""
    need = math.ceil(100 / (0.7 * 10))  # 15 pods at KV target 0.7
    arrivals = lambda t: 20.0 if t < 60 else 100.0  # noqa: E731 - a one-line load profile
    llm_run = run_fleet(llm_policy(KV, QUEUE), startup=startup, arrivals=arrivals, duration=3000)
    hpa_run = run_fleet(
        policy([KV, QUEUE], behavior={}, max_replicas=40),
        startup=startup,
        arrivals=arrivals,
        duration=3000,
    )
    assert max(d for _, _, d in llm_run) <= need
    assert llm_run[-1][2] >= math.ceil(100 / (0.77 * 10))  # reached the tolerance band
    assert max(d for _, _, d in hpa_run) > need  # the HPA over-shoots on the queue stock


def test_second_surge_mid_warm_up_still_scales() -> None:
    """100 req/s at 60 s, 160 req/s at 200 s (mid warm-up): scales again before pods are ready."""
    arrivals = lambda t: 20.0 if t < 60 else (100.0 if t < 200 else 160.0)  # noqa: E731 - profile
    run = run_fleet(llm_policy(KV, QUEUE), startup=300.0, arrivals=arrivals, duration=3000)
    first_step = next(d for t, c, d in run if d > c)
    during_warm_up = [d for t, _, d in run if 200 <= t < 360]
    assert max(during_warm_up) > first_step
    assert max(d for _, _, d in run) <= math.ceil(160 / (0.7 * 10))
    assert run[-1][2] >= math.ceil(160 / (0.77 * 10))


def test_instant_ready_pods_teach_nothing() -> None:
    """Pods ready at creation (ready_at == created_at) give no start-up sample."""
    pods = (PodInfo("a", PodPhase.RUNNING, ready=True, created_at=0.0, ready_at=0.0),)
    result = decide(llm_policy(KV), kv_obs(pods, 0.7), History(), 10.0)
    assert result.history.startup_samples == ()
    assert result.decision.explanation["pods"]["startupEstimateSeconds"] == 120.0


def test_restart_through_json_changes_no_llm_decision() -> None:
    """The llm state (start-up samples, queue references, growth points) survives JSON."""
    arrivals = lambda t: 20.0 if t < 60 else (100.0 if t < 200 else 160.0)  # noqa: E731 - profile
    pol = llm_policy(KV, QUEUE)
    plain = run_fleet(pol, startup=300.0, arrivals=arrivals, duration=1800)
    restarted = run_fleet(pol, startup=300.0, arrivals=arrivals, duration=1800, restart=True)
    assert plain == restarted
    assert any(d != c for _, c, d in plain)


RUNNING = {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 10}}}


def queue_only(pods: tuple[PodInfo, ...], total: float) -> Observation:
    """The queue total spread over the ready pods (KV in band)."""
    ready = [p.name for p in pods if p.ready]
    values = {name: total / len(ready) for name in ready}
    return kv_obs(pods, 0.7, {"queueDepth": PodSamples(values, 0.0)})


class TestQueueDrain:
    """A queue above its band, with a per-pod throughput known, is sized on arrivals + backlog."""

    two = (ready_pod("a"), ready_pod("b"))
    four = (*two, ready_pod("c"), ready_pod("d"))

    def history(self, drain_at: float) -> tuple[ScalingPolicy, History]:
        """Growth 6/s at 2 ready (t 0 -> 15), then 4 ready and a held queue at ``drain_at - 15``."""
        pol = llm_policy(KV, QUEUE)
        h = decide(pol, queue_only(self.two, 1000.0), SEEDED, 0.0).history
        h = decide(pol, queue_only(self.two, 1090.0), h, 15.0).history
        h = decide(pol, queue_only(self.four, 1090.0), h, drain_at - 15.0).history
        return pol, h

    def test_backlog_not_growing_is_sized_not_held(self) -> None:
        """mu = (6 - (-2)) / (4 - 2) = 4/s; arrivals -2 + 4 x 4 = 14/s, planned at 0.7 x mu:
        ceil(14 / 2.8) = 5 (the old rule held 4 because the queue was not growing)."""
        pol, h = self.history(45.0)
        result = decide(pol, queue_only(self.four, 1060.0), h, 45.0)
        detail = result.decision.explanation["metrics"]
        queue = next(m for m in detail if m["name"] == "queueDepth")
        assert queue["arithmetic"]["perPodThroughput"] == pytest.approx(4.0)
        assert result.decision.metric_proposals["queueDepth"] == 5

    def test_points_far_apart_do_not_estimate_throughput(self) -> None:
        """Growth points 1000 s apart (load changed between them): no mu, the old hold rule."""
        pol, h = self.history(1015.0)
        result = decide(pol, queue_only(self.four, 1060.0), h, 1015.0)
        assert result.decision.metric_proposals["queueDepth"] == 4

    def test_backlog_does_not_buy_a_fleet(self) -> None:
        """A huge backlog is drained by the planned headroom, not by pods per queued request."""
        pol = llm_policy(KV, QUEUE)
        h = decide(pol, queue_only(self.two, 100_000.0), SEEDED, 0.0).history
        h = decide(pol, queue_only(self.two, 100_090.0), h, 15.0).history  # +6/s at 2 ready
        h = decide(pol, queue_only(self.four, 100_090.0), h, 30.0).history
        result = decide(pol, queue_only(self.four, 100_060.0), h, 45.0)  # -2/s at 4 ready
        # arrivals 14/s at 0.7 x 4/s: 5 pods (HPA ratio math on 25,000 per pod: the maximum)
        assert result.decision.metric_proposals["queueDepth"] == 5

    def test_draining_queue_never_proposes_down(self) -> None:
        """A fast-draining queue above its band proposes at least current."""
        pol, h = self.history(45.0)
        result = decide(pol, queue_only(self.four, 200.0), h, 45.0)  # -58/s: arrivals 0
        assert result.decision.metric_proposals["queueDepth"] >= 4


class TestRunningRequests:
    """Running requests (concurrency) inflate when the batch is saturated."""

    three = (ready_pod("a"), ready_pod("b"), ready_pod("c"))

    def obs(self, running: float, queue: float = 0.0) -> Observation:
        names = [p.name for p in self.three]
        return kv_obs(
            self.three,
            0.1,
            {
                "runningRequests": PodSamples(dict.fromkeys(names, running), 0.0),
                "queueDepth": PodSamples(dict.fromkeys(names, queue), 0.0),
            },
        )

    def test_in_proportion_below_twice_the_target(self) -> None:
        """15 running per pod, target 10: ceil(45 / 10) = 5 (plain ratio math)."""
        pol = llm_policy(RUNNING)
        result = decide(pol, self.obs(15.0), SEEDED, 0.0)
        assert result.decision.metric_proposals["runningRequests"] == 5

    def test_far_above_target_at_most_doubles(self) -> None:
        """200 running per pod (a saturated batch): at most 2 x 3 ready = 6, not ceil(600/10)."""
        pol = llm_policy(RUNNING)
        result = decide(pol, self.obs(200.0), SEEDED, 0.0)
        assert result.decision.metric_proposals["runningRequests"] == 6

    def test_doubling_is_credited_while_pods_start(self) -> None:
        """3 ready + 3 starting at 200 running/pod: need 6 = capacity, keep current."""
        pods = (*self.three, *(starting_pod(n, created=-30.0) for n in "def"))
        names = [p.name for p in self.three]
        obs = kv_obs(pods, 0.1, {"runningRequests": PodSamples(dict.fromkeys(names, 200.0), 0.0)})
        result = decide(llm_policy(RUNNING), obs, SEEDED, 0.0)
        assert result.decision.metric_proposals["runningRequests"] == 6

    def test_queue_above_band_decides(self) -> None:
        """With the queue above its band the running count holds and the queue sizes the step."""
        pol = llm_policy(RUNNING, QUEUE)
        result = decide(pol, self.obs(18.0, queue=40.0), SEEDED, 0.0)
        assert result.decision.metric_proposals["runningRequests"] == 3
        # the queue (first sight, throughput unknown) at most doubles
        assert result.decision.desired_replicas == 6


def test_learned_throughput_sizes_a_later_surge_from_its_first_tick() -> None:
    """A per-pod throughput learned at one surge is kept: a later surge is not sized blind."""
    drain = TestQueueDrain()
    pol, h = drain.history(45.0)
    h = decide(pol, queue_only(drain.four, 1060.0), h, 45.0).history  # mu = 4 learned
    quiet = decide(pol, queue_only(drain.four, 0.0), h, 3000.0).history
    assert quiet.queue.throughput["queueDepth"] == pytest.approx(4.0)
    surge = decide(pol, queue_only(drain.four, 600.0), quiet, 3015.0)  # +40/s at 4 ready
    # arrivals 40 + 4 x 4 = 56/s at 0.7 x 4/s: 20 pods (blind: at most a doubling, 8)
    assert surge.decision.metric_proposals["queueDepth"] == 20


class TestTtftGuardNeedsAQueue:
    """A TTFT guard acts only when requests wait: otherwise TTFT is the prompts' prefill."""

    TTFT = {"timeToFirstToken": {"target": {"type": "Value", "value": 0.4}}}
    four = (ready_pod("a"), ready_pod("b"), ready_pod("c"), ready_pod("d"))

    def obs(self, kv: float, ttft: float, queue_per_pod: float | None) -> Observation:
        extra: dict[str, Any] = {"timeToFirstToken": TargetSample(ttft, 0.0)}
        if queue_per_pod is not None:
            extra["queueDepth"] = PodSamples({p.name: queue_per_pod for p in self.four}, 0.0)
        return kv_obs(self.four, kv, extra)

    def test_high_ttft_without_waiting_requests_is_neutral(self) -> None:
        """TTFT 0.6 > 0.44 with an empty queue: no +1, and the KV scale-down is not held."""
        pol = llm_policy(
            KV, QUEUE, self.TTFT, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}
        )
        steady = decide(pol, self.obs(0.7, 0.6, 0.0), SEEDED, 0.0).decision
        assert steady.desired_replicas == 4  # not 5
        down = decide(pol, self.obs(0.2, 0.6, 0.0), SEEDED, 0.0).decision
        assert down.desired_replicas == 2  # ceil(0.8 / 0.7), not held at 4

    def test_high_ttft_with_a_queue_above_band_steps_up(self) -> None:
        """Queue 10 per pod (target 4) and TTFT above target: the guard adds a replica."""
        pol = llm_policy(KV, QUEUE, self.TTFT)
        result = decide(pol, self.obs(0.7, 0.6, 10.0), SEEDED, 0.0)
        assert result.decision.metric_proposals["timeToFirstToken"] == 5

    def test_without_a_queue_metric_the_guard_acts_as_before(self) -> None:
        """No queue metric in the policy: nothing tells prefill from waiting, the guard acts."""
        pol = llm_policy(KV, self.TTFT)
        assert decide(pol, self.obs(0.7, 0.6, None), SEEDED, 0.0).decision.desired_replicas == 5


RATE = {"requestRate": {"window": "1m", "target": {"type": "AverageValue", "averageValue": 5}}}


class TestRequestRateArrivals:
    """A request-rate metric (completions) is turned into arrivals by the queue's growth."""

    two = (ready_pod("a"), ready_pod("b"))

    def obs(self, completions: float, queue: float, running: float | None = None) -> Observation:
        """Each of the two ready pods completing ``completions``/s with ``queue`` waiting."""
        names = [p.name for p in self.two]
        extra: dict[str, Any] = {
            "requestRate": PodSamples(dict.fromkeys(names, completions), 0.0),
            "queueDepth": PodSamples(dict.fromkeys(names, queue / 2), 0.0),
        }
        if running is not None:
            extra["runningRequests"] = PodSamples(dict.fromkeys(names, running / 2), 0.0)
        return kv_obs(self.two, 0.1, extra)

    def run(
        self, pol: ScalingPolicy, points: list[tuple[float, float, float, float | None]]
    ) -> Decision:
        """Decide at each (time, completions per pod, queue total, running total)."""
        history = SEEDED
        result = None
        for t, completions, queue, running in points:
            result = decide(pol, self.obs(completions, queue, running), history, t)
            history = result.history
        assert result is not None
        return result.decision

    def test_completions_alone_without_a_queue_window(self) -> None:
        """First tick: no queue point a window old, the completions are the demand."""
        pol = llm_policy(RATE, QUEUE)
        decision = self.run(pol, [(0.0, 9.0, 0.0, None)])
        # 2 x 9 = 18/s over 5/s per pod: ceil(3.6) = 4
        assert decision.metric_proposals["requestRate"] == 4

    def test_growing_backlog_adds_to_arrivals(self) -> None:
        """Completions cap at the pods' throughput; the queue's growth is the rest."""
        pol = llm_policy(RATE, QUEUE)
        points = [(t, 10.0, 30.0 * t, None) for t in (0.0, 15.0, 30.0, 45.0, 60.0)]
        decision = self.run(pol, points)
        # 20/s completed + 30/s growth over the window = 50/s at 5/s per pod: 10
        assert decision.metric_proposals["requestRate"] == 10
        detail = next(m for m in decision.explanation["metrics"] if m["name"] == "requestRate")[
            "arithmetic"
        ]
        assert detail["backlogGrowthPerSecond"] == pytest.approx(30.0)
        assert detail["arrivalsPerSecond"] == pytest.approx(50.0)
        # the queue above its band defers to the request rate (no doubling of its own)
        assert decision.metric_proposals["queueDepth"] == 2

    def test_draining_backlog_is_not_demand(self) -> None:
        """Pods draining a backlog complete more than arrives: the drain is subtracted."""
        pol = llm_policy(RATE, QUEUE)
        points = [(t, 15.0, 1800.0 - 20.0 * t, None) for t in (0.0, 15.0, 30.0, 45.0, 60.0)]
        decision = self.run(pol, points)
        # 30/s completed - 20/s drained = 10/s: 2 pods (the completions alone would ask for 6)
        assert decision.metric_proposals["requestRate"] == 2
        assert decision.desired_replicas == 2  # the queue above its band blocks a scale-down

    def test_running_requests_are_held_requests_too(self) -> None:
        """A batch filling up (running grows) is arrival the completions do not show yet."""
        running = {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 32}}}
        pol = llm_policy(RATE, QUEUE, running)
        points = [(t, 5.0, 0.0, 4.0 * t) for t in (0.0, 15.0, 30.0, 45.0, 60.0)]
        decision = self.run(pol, points)
        # 10/s completed + 4/s more running = 14/s at 5/s per pod: ceil(2.8) = 3
        assert decision.metric_proposals["requestRate"] == 3

    def test_inflated_running_count_defers_to_the_rate(self) -> None:
        """Far above its target the running count holds when the request rate sizes steps."""
        running = {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 32}}}
        pol = llm_policy(RATE, QUEUE, running)
        decision = self.run(pol, [(0.0, 5.0, 0.0, 400.0)])
        assert decision.metric_proposals["runningRequests"] == 2  # not a doubling to 4

    def test_hostile_trail_in_history_is_ignored(self) -> None:
        """A history whose queue trail is malformed (hand-edited ConfigMap) is not trusted."""
        pol = llm_policy(RATE, QUEUE)
        bad = History.from_json(
            {
                "v": 1,
                "initialized": True,
                "extra": {
                    "queueTrail": {"queueDepth": [[0.0, "x", 1.0], [1.0], "junk", [math.nan, 1, 1]]}
                },
            }
        )
        result = decide(pol, self.obs(9.0, 0.0), bad, 60.0)
        assert result.decision.metric_proposals["requestRate"] == 4
