"""Scale to zero in the simulator: requests at zero replicas wait at the gateway, the gateway
presets read that wait, and ``policies/scale-to-zero.yaml`` idles to 0 and wakes on demand."""

from __future__ import annotations

from pathlib import Path

from autoscaler.policy.loader import load_path
from autoscaler.policy.models import MetricSpec, ScalingPolicy
from autoscaler.sim.load import load_workload
from autoscaler.sim.metrics import GatewaySample, MetricStore, SimMetricSource
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.report import summary_lines
from autoscaler.sim.run import SimulationConfig, SimulationResult, run_simulation

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "scale-to-zero.yaml"
# 5 minutes at 4 req/s, then 30 minutes without a request, twice.
GAPS = (
    "synthetic:onoff:rate=4,on=300,off=1800,duration=4200,"
    "in=lognormal:1000:0.5,out=lognormal:300:0.5"
)


def example() -> ScalingPolicy:
    loaded = load_path(EXAMPLE)
    assert loaded.ok, [str(e) for e in loaded.all_errors()]
    [policy] = loaded.by_key().values()
    return policy


def simulate(policy: ScalingPolicy) -> SimulationResult:
    return run_simulation(
        SimulationConfig(
            workload=load_workload(GAPS, seed=1),
            profile=get_profile("8b-fp8-h100"),
            policy=policy,
            seed=1,
        )
    )


class TestGatewayMetrics:
    def test_queue_and_request_rate_from_the_gateway_scrapes(self) -> None:
        """gatewayQueue is the held count at the last scrape; gatewayRequestRate the rate of
        requests received (Prometheus extrapolation)."""
        store = MetricStore(scrape_interval=15.0)
        for index in range(5):
            store.add_gateway(GatewaySample(15.0 * index, held=index, received=30 * index))
        source = SimMetricSource(store)
        queue = MetricSpec.model_validate(
            {"gatewayQueue": {"pool": "p", "target": {"type": "Value", "value": 1}}}
        )
        rate = MetricSpec.model_validate(
            {"gatewayRequestRate": {"model": "m", "target": {"type": "Value", "value": 1}}}
        )
        assert source.observe(queue, [], 60.0).value == 4.0  # type: ignore[union-attr]
        assert source.observe(rate, [], 60.0).value == 2.0  # type: ignore[union-attr]

    def test_no_gateway_scrape_is_no_signal(self) -> None:
        """Before the gateway was ever scraped there is no value (never 0)."""
        source = SimMetricSource(MetricStore())
        queue = MetricSpec.model_validate(
            {"gatewayQueue": {"pool": "p", "target": {"type": "Value", "value": 1}}}
        )
        assert type(source.observe(queue, [], 10.0)).__name__ == "NoSignal"


class TestScaleToZeroExample:
    def test_idles_to_zero_and_wakes_for_the_next_burst(self) -> None:
        """The example policy on a trace with idle gaps: 0 in each gap after idleFor, back up
        when the next burst waits at the gateway; every request is served, none dropped."""
        policy = example()
        assert policy.spec.idle_for == 900.0
        result = simulate(policy)
        summary = result.summary
        assert summary["finished"] == summary["requests"]
        changes = [(d.timestamp, d.current_replicas, d.desired_replicas) for d in result.decisions]
        to_zero = [t for t, _, new in changes if new == 0]
        wakes = [t for t, old, _ in changes if old == 0]
        # Last request of the first burst at ~300 s: zero after 15 min idle (plus the rate
        # window and a tick), within the 30-minute gap; again in the second gap.
        assert len(to_zero) == 2
        assert 300 + 900 <= to_zero[0] <= 300 + 900 + 120
        assert 2400 + 900 <= to_zero[1] <= 2400 + 900 + 120
        # The second burst starts at 2100 s: woken within a tick or two of its first requests.
        assert len(wakes) == 1
        assert 2100 <= wakes[0] <= 2100 + 45
        wake = next(d for d in result.decisions if d.current_replicas == 0)
        assert wake.reason.startswith("Scale from zero")
        assert "scaleToZero" in wake.explanation

    def test_requests_at_zero_wait_at_the_gateway_and_are_reported(self) -> None:
        """Requests arriving at zero replicas are held (not dropped) for the cold start; the
        JSON and the table report how many and the longest wait, and their TTFT includes it."""
        result = simulate(example())
        doc = result.to_json()
        [line] = [line for line in summary_lines(result) if line.startswith("gateway:")]
        assert f"{doc['requestsHeldAtGateway']} requests held" in line
        held = doc["requestsHeldAtGateway"]
        longest = doc["longestGatewayWaitSeconds"]
        assert held > 0
        # At least the scheduling delay and the cold start, at most a few ticks more.
        assert longest >= 30.0
        assert longest <= 300.0
        assert doc["ttft"]["p99"] >= 0.5 * longest
        # Every minute at zero replicas holds its arrivals at the gateway.
        at_zero = [m for m in doc["minutes"] if m["ready"] == 0 and m["arrivalRate"] > 0]
        assert at_zero
        assert all(m["waiting"] > 0 for m in at_zero)

    def test_fewer_gpu_hours_than_a_fleet_that_never_idles(self) -> None:
        """The same policy with minReplicas 1 keeps a replica through the gaps."""
        zero = simulate(example())
        spec = example().spec.model_copy(update={"min_replicas": 1, "scale_to_zero": None})
        always = simulate(example().model_copy(update={"spec": spec}))
        assert zero.summary["gpuHours"] < always.summary["gpuHours"] * 0.9
        assert always.summary["requestsHeldAtGateway"] == 0
