"""Scale to zero and back (``algorithm: llm``, ``minReplicas: 0``): the rules of
:mod:`autoscaler.decision.zero` through :func:`autoscaler.decision.core.decide`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest

from autoscaler.decision.explain import render_text
from autoscaler.decision.types import (
    HISTORY_VERSION,
    ConditionType,
    History,
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodSamples,
)
from autoscaler.decision.zero import ZeroState
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from tests.decision.helpers import (
    decide,
    object_metric,
    observe,
    pods_metric,
    policy,
    record_rescale,
    running_pods,
    target,
)

GATEWAY_QUEUE = {
    "gatewayQueue": {"pool": "llama", "target": {"type": "AverageValue", "averageValue": 4}}
}
GATEWAY_RATE = {
    "gatewayRequestRate": {
        "model": "llama",
        "target": {"type": "AverageValue", "averageValue": 2},
    }
}
HISTORY_V1 = Path(__file__).resolve().parent / "fixtures" / "history_v1.json"
KV = {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}


def zero_policy(
    metrics: list[dict[str, Any]] | None = None, *, idle_for: str | None = "15m", **spec: Any
) -> ScalingPolicy:
    if idle_for is not None:
        spec["scaleToZero"] = {"idleFor": idle_for}
    return policy(
        metrics if metrics is not None else [KV, GATEWAY_QUEUE],
        min_replicas=0,
        max_replicas=10,
        algorithm="llm",
        **spec,
    )


def fleet(*, queue: float | None = 0.0, rate: float = 0.0, running: float = 0.0) -> dict[str, Any]:
    """The metrics of one ready pod ``p0`` and the gateway queue (None: no signal)."""
    metrics: dict[str, MetricObservation] = {
        "kvCache": PodSamples({"p0": 0.1}, 0.0),
        "__capacity_rate": PodSamples({"p0": rate}, 0.0),
        "__capacity_running": PodSamples({"p0": running}, 0.0),
        "__capacity_waiting": PodSamples({"p0": 0.0}, 0.0),
    }
    metrics["gatewayQueue"] = (
        NoSignal(NoSignalReason.EMPTY, "no series") if queue is None else target(queue)
    )
    return metrics


def tick(
    p: ScalingPolicy, history: History, now: float, current: int, metrics: dict[str, Any]
) -> tuple[int, History, Any]:
    pods = running_pods(current)
    result = decide(p, observe(current, pods, metrics), history, now)
    return result.decision.desired_replicas, result.history, result.decision


class TestValidation:
    def test_min_zero_without_activation_signal_is_an_error_naming_the_field(self) -> None:
        """minReplicas 0 with only per-pod metrics: the loader names file, line and field."""
        text = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {name: llama, namespace: nim}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llama}
  minReplicas: 0
  maxReplicas: 4
  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.7}}
"""
        result = load_text(text, "llama.yaml")
        assert not result.ok
        [error] = result.all_errors()
        assert error.location.file == "llama.yaml"
        assert error.location.line == 6
        assert error.location.field == "spec.minReplicas"
        assert "activation signal" in error.message
        assert "gatewayQueue" in error.message

    @pytest.mark.parametrize(
        "metric",
        [
            GATEWAY_QUEUE,
            GATEWAY_RATE,
            {"gatewayQueue": {"model": "llama", "target": {"type": "Value", "value": 1}}},
            object_metric("routerWaiting", 1.0),
        ],
        ids=["gateway-queue-pool", "gateway-request-rate", "gateway-queue-model", "prom-target"],
    )
    def test_whole_target_metrics_are_activation_signals(self, metric: dict[str, Any]) -> None:
        """Gateway presets and prometheus returns: target make minReplicas 0 valid."""
        p = zero_policy([KV, metric])
        assert p.spec.idle_for == 900.0

    def test_per_pod_prometheus_is_not_an_activation_signal(self) -> None:
        """A per-pod query does not exist while no pod runs."""
        with pytest.raises(pydantic.ValidationError, match="activation signal"):
            zero_policy([pods_metric("qps", 1.0)], idle_for=None)

    def test_latency_guard_is_not_an_activation_signal(self) -> None:
        """A whole-target latency guard says nothing about requests waiting."""
        guard = object_metric("p95", 1.0)
        guard["prometheus"]["role"] = "latencyGuard"
        with pytest.raises(pydantic.ValidationError, match="activation signal"):
            zero_policy([guard], idle_for=None)

    def test_hpa_keeps_min_zero_without_activation(self) -> None:
        """algorithm hpa with minReplicas 0 is the HPA's own rule: valid, no idle timer."""
        p = policy([pods_metric("qps", 1.0)], min_replicas=0, algorithm="hpa")
        assert p.spec.idle_for is None

    @pytest.mark.parametrize(
        ("min_replicas", "algorithm"), [(1, "llm"), (0, "hpa")], ids=["min-1", "hpa"]
    )
    def test_scale_to_zero_needs_llm_and_min_zero(self, min_replicas: int, algorithm: str) -> None:
        """scaleToZero elsewhere is refused, naming the field."""
        with pytest.raises(pydantic.ValidationError, match="scaleToZero applies"):
            policy(
                [KV, GATEWAY_QUEUE],
                min_replicas=min_replicas,
                algorithm=algorithm,
                scaleToZero={"idleFor": "5m"},
            )

    def test_gateway_queue_needs_pool_or_model(self) -> None:
        """Without a pool or model the query would sum every model's queue."""
        with pytest.raises(pydantic.ValidationError, match="'pool'"):
            zero_policy([KV, {"gatewayQueue": {"target": {"type": "Value", "value": 1}}}])

    def test_idle_for_default_and_custom(self) -> None:
        """idleFor defaults to 15 minutes and takes a duration."""
        assert zero_policy(idle_for=None).spec.idle_for == 900.0
        assert zero_policy(idle_for="90s").spec.idle_for == 90.0


class TestIdleTimer:
    def test_scales_to_zero_after_idle_for(self) -> None:
        """Idle from t=0: 1 replica kept until idleFor has passed, then 0 at once."""
        p = zero_policy(idle_for="15m")
        history = History()
        desired, history, _ = tick(p, history, 0.0, 1, fleet())
        assert desired == 1
        assert history.zero == ZeroState(0.0)
        desired, history, decision = tick(p, history, 899.0, 1, fleet())
        assert desired == 1
        assert "idle for 899s of idleFor 900s" in render_text(decision)
        assert decision.explanation["minReplicas"] == 0
        assert "bounds [0, 10]" in render_text(decision)
        desired, history, decision = tick(p, history, 900.0, 1, fleet())
        assert desired == 0
        assert decision.reason.startswith("Scale to zero: no request for 900s")
        limited = decision.condition(ConditionType.SCALING_LIMITED)
        assert limited is not None
        assert limited.reason == "ScaledToZero"

    @pytest.mark.parametrize(
        "busy",
        [{"queue": 2.0}, {"rate": 0.5}, {"running": 1.0}],
        ids=["gateway-waiting", "fleet-completions", "fleet-running"],
    )
    def test_any_request_resets_the_timer(self, busy: dict[str, float]) -> None:
        """A request seen anywhere restarts the idle stretch."""
        p = zero_policy(idle_for="10m")
        _, history, _ = tick(p, History(), 0.0, 1, fleet())
        _, history, _ = tick(p, history, 500.0, 1, fleet(**busy))
        assert history.zero == ZeroState(None)
        _, history, _ = tick(p, history, 510.0, 1, fleet())
        desired, history, _ = tick(p, history, 1000.0, 1, fleet())
        assert desired == 1
        assert history.zero == ZeroState(510.0)
        desired, _, _ = tick(p, history, 1110.0, 1, fleet())
        assert desired == 0

    def test_floor_is_one_while_not_idle_long_enough(self) -> None:
        """Metrics proposing 0 (no load) never take a running fleet below 1 on their own."""
        p = zero_policy([GATEWAY_QUEUE], idle_for="1h", behavior={"scaleDown": {"policies": []}})
        history = History()
        for now in (0.0, 400.0, 800.0):
            desired, history, _ = tick(p, history, now, 3, fleet())
            assert desired >= 1

    def test_idle_state_survives_a_rescale(self) -> None:
        """record_rescale keeps the idle timer (a scale-down during the stretch)."""
        history = History(True, zero=ZeroState(42.0))  # noqa: FBT003 - positional field
        after = record_rescale(zero_policy(), history, 50.0, 3, 2)
        assert after.zero == ZeroState(42.0)


class TestMissingData:
    def test_missing_gateway_signal_restarts_the_timer(self) -> None:
        """No data from the activation signal: never scale to zero, the stretch restarts."""
        p = zero_policy(idle_for="5m")
        _, history, _ = tick(p, History(), 0.0, 1, fleet())
        desired, history, decision = tick(p, history, 301.0, 1, fleet(queue=None))
        assert desired == 1
        assert history.zero == ZeroState(None)
        assert "missing data never scales to zero" in render_text(decision)

    def test_ready_pod_without_sample_restarts_the_timer(self) -> None:
        """A ready pod missing from the fleet's request signals is unknown, not idle."""
        p = zero_policy(idle_for="5m")
        metrics = fleet()
        metrics["__capacity_running"] = PodSamples({}, 0.0)
        _, history, _ = tick(p, History(), 0.0, 1, fleet())
        desired, history, _ = tick(p, history, 400.0, 1, metrics)
        assert desired == 1
        assert history.zero == ZeroState(None)

    def test_no_activation_signal_at_zero_stays_at_zero(self) -> None:
        """At zero with the gateway unreadable: stay (no scale-up on nothing, no error)."""
        p = zero_policy()
        queue = {"gatewayQueue": NoSignal(NoSignalReason.QUERY_ERROR, "timeout")}
        result = decide(p, observe(0, (), queue), History(), 10.0)
        assert result.decision.desired_replicas == 0
        active = result.decision.condition(ConditionType.SCALING_ACTIVE)
        assert active is not None
        assert not active.status
        assert "no data from activation signal(s) gatewayQueue" in result.decision.reason


class TestFromZero:
    def test_wakes_to_one_without_capacity_model(self) -> None:
        """Requests waiting, nothing known about a replica's capacity: 1 replica."""
        result = decide(zero_policy(), observe(0, (), {"gatewayQueue": target(25)}), History(), 5.0)
        decision = result.decision
        assert decision.desired_replicas == 1
        assert decision.reason.startswith("Scale from zero: 25 request(s) waiting")
        record = decision.explanation["scaleToZero"]
        assert record["rule"] == "no per-replica capacity known yet: 1 replica"
        assert result.history.recommendations[-1].replicas == 1

    def test_stays_at_zero_when_nothing_waits(self) -> None:
        """Every activation signal at 0: stay at zero."""
        result = decide(zero_policy(), observe(0, (), {"gatewayQueue": target(0)}), History(), 5.0)
        assert result.decision.desired_replicas == 0
        assert result.decision.reason == "At zero: no request waiting at the gateway"

    def test_sizes_from_waiting_load_and_capacity(self) -> None:
        """N = ceil((arrivals + waiting / start-up) / per-replica capacity), capped at max."""
        slo = {"ttft": {"quantile": 0.95, "target": 2.0}}
        p = zero_policy(
            [KV, GATEWAY_QUEUE, GATEWAY_RATE],
            slo=slo,
            capacity={"requestsPerSecond": 0.5},
            llm={"startupSeconds": "100s", "startupLearning": False},
        )
        # 30 waiting over a 100 s start-up = 0.3/s, plus 0.6/s arriving: 0.9 / 0.5 -> 2
        observed = {"gatewayQueue": target(30), "gatewayRequestRate": target(0.6)}
        decision = decide(p, observe(0, (), observed), History(), 5.0).decision
        assert decision.desired_replicas == 2
        rule = decision.explanation["scaleToZero"]["rule"]
        assert "arrivals 0.6/s + waiting 30 / start-up 100s" in rule
        assert rule.endswith("= 2")
        # 20/s arriving: 41 replicas needed, capped at maxReplicas 10
        observed["gatewayRequestRate"] = target(20.0)
        decision = decide(p, observe(0, (), observed), History(), 5.0).decision
        assert decision.desired_replicas == 10
        assert "capped at maxReplicas 10" in decision.explanation["scaleToZero"]["rule"]
        assert "Scale from zero" in render_text(decision)


class TestHpaUnaffected:
    def test_hpa_at_zero_with_min_one_is_scaling_disabled(self) -> None:
        """The HPA's rule: current 0 and minReplicas != 0 means scaling is disabled."""
        p = policy([pods_metric("qps", 1.0)], min_replicas=1, algorithm="hpa")
        decision = decide(p, observe(0, (), {"qps": target(5)}), History(), 0.0).decision
        assert decision.desired_replicas == 0
        active = decision.condition(ConditionType.SCALING_ACTIVE)
        assert active is not None
        assert active.reason == "ScalingDisabled"

    def test_hpa_min_zero_has_no_idle_timer(self) -> None:
        """algorithm hpa with minReplicas 0 never goes through the scale-to-zero rule."""
        p = policy([object_metric("waiting", 4.0)], min_replicas=0, algorithm="hpa")
        result = decide(p, observe(2, running_pods(2), {"waiting": target(0)}), History(), 0.0)
        assert result.history.zero is None
        assert "scaleToZero" not in result.decision.explanation


class TestHistory:
    def test_round_trip(self) -> None:
        """The idle timer is persisted beside the queue and capacity state (form ``v`` 2) and read
        back."""
        p = zero_policy()
        _, history, _ = tick(p, History(), 0.0, 1, fleet())
        _, history, _ = tick(p, history, 15.0, 1, fleet())
        assert history.zero == ZeroState(0.0)
        assert history.capacity is not None
        data = json.loads(json.dumps(history.to_json()))
        assert data["v"] == HISTORY_VERSION
        assert data["zero"] == {"idleSince": 0.0}
        assert "capacity" in data
        assert History.from_json(data) == history
        assert History.from_json({**data, "zero": {"idleSince": None}}).zero == ZeroState(None)

    def test_round_trip_decides_alike(self) -> None:
        """A history read back (a controller restart) scales to zero at the same tick."""
        p = zero_policy(idle_for="5m")
        _, history, _ = tick(p, History(), 0.0, 1, fleet())
        restored = History.from_json(json.loads(json.dumps(history.to_json())))
        assert tick(p, restored, 300.0, 1, fleet())[0] == 0
        assert tick(p, history, 300.0, 1, fleet())[0] == 0

    def test_history_without_timer_loads(self) -> None:
        """A history written before the rule existed (form ``v`` 2 or 1) has no idle timer."""
        current = History(True).to_json()  # noqa: FBT003 - positional field
        assert "zero" not in current
        assert History.from_json(current).zero is None
        previous = json.loads(HISTORY_V1.read_text(encoding="utf-8"))
        assert previous["v"] == 1
        assert "zero" not in previous
        assert History.from_json(previous).zero is None

    def test_previous_form_with_timer_loads(self) -> None:
        """A form ``v`` 1 history with an idle timer (the queue state still in ``extra``) keeps
        both: the timer and the typed queue state."""
        previous = json.loads(HISTORY_V1.read_text(encoding="utf-8"))
        history = History.from_json({**previous, "zero": {"idleSince": 120.0}})
        assert history.zero == ZeroState(120.0)
        assert history.queue == History.from_json(previous).queue
        assert history.queue.last
        again = History.from_json(json.loads(json.dumps(history.to_json())))
        assert again == history

    @pytest.mark.parametrize("bad", [[1], {"idleSince": "soon"}, {"idleSince": float("inf")}])
    def test_malformed_state_is_an_error(self, bad: object) -> None:
        """A corrupt idle timer is a clear error, not a silent 0."""
        with pytest.raises(ValueError, match="malformed decision history"):
            History.from_json({"initialized": True, "zero": bad})
