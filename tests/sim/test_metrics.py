"""The simulated metric source: PromQL window semantics, quantiles across pods, no signal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.decision.types import (
    NoSignal,
    NoSignalReason,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.quantile import histogram_quantile
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.engine import ITL_BUCKETS, TTFT_BUCKETS
from autoscaler.sim.metrics import MetricDelay, MetricStore, SimMetricSource, Snapshot
from autoscaler.sim.promql import extrapolated_rate

POLICY = """
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {name: p, namespace: ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm}
  maxReplicas: 5
  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.7}}
    - queueDepth: {target: {type: AverageValue, averageValue: 4}}
    - interTokenLatency: {quantile: 0.95, window: 60s, target: {type: Value, value: 0.05}}
    - timeToFirstToken: {quantile: 0.5, window: 60s, target: {type: Value, value: 1}}
    - interTokenLatency:
        {name: itlMean, statistic: mean, window: 60s, target: {type: Value, value: 1}}
    - requestRate: {window: 60s, target: {type: AverageValue, averageValue: 5}}
    - prometheus: {name: custom, query: 'up', target: {type: Value, value: 1}}
"""


def policy() -> ScalingPolicy:
    loaded = load_text(POLICY)
    assert not loaded.errors
    return loaded.policies[0].policy


def cumulative(bounds: tuple[float, ...], observations: dict[float, int]) -> tuple[int, ...]:
    """Cumulative bucket counts (+Inf last) for observations value -> count."""
    out = []
    for bound in (*bounds, math.inf):
        out.append(sum(n for v, n in observations.items() if v <= bound))
    return tuple(out)


def snap(
    t: float,
    *,
    success: int = 0,
    kv: float = 0.0,
    waiting: int = 0,
    itl: dict[float, int] | None = None,
    ttft: dict[float, int] | None = None,
) -> Snapshot:
    itl = itl or {}
    ttft = ttft or {}
    return Snapshot(
        t=t, running=0, waiting=waiting, kv=kv, prompt_tokens=0, generation_tokens=0,
        success=success, preemptions=0,
        ttft=cumulative(TTFT_BUCKETS, ttft), ttft_sum=sum(v * n for v, n in ttft.items()),
        itl=cumulative(ITL_BUCKETS, itl), itl_sum=sum(v * n for v, n in itl.items()),
        e2e=cumulative((1.0,), {}) + (0,) * 20, e2e_sum=0.0,
    )  # fmt: skip


def pods(*names: str) -> tuple[PodInfo, ...]:
    return tuple(PodInfo(n, PodPhase.RUNNING, ready=True) for n in names)


async def fetch(source: SimMetricSource, names: tuple[str, ...], now: float) -> dict[str, object]:
    result = await source.fetch([MetricRequest(policy(), pods(*names))], now)
    return dict(result["ns/p"])


class TestRate:
    """PromQL rate()."""

    def test_steady_counter(self) -> None:
        """2 req/s scraped every 15 s: rate over 60 s is exactly 2 (with extrapolation)."""
        times = np.array([15.0, 30.0, 45.0, 60.0])
        values = np.array([30.0, 60.0, 90.0, 120.0])
        assert extrapolated_rate(times, values, 60.0, 60.0) == pytest.approx(2.0)

    def test_one_sample_is_no_series(self) -> None:
        """Fewer than two samples: no result."""
        assert extrapolated_rate(np.array([10.0]), np.array([1.0]), 60.0, 60.0) is None

    def test_counter_reset(self) -> None:
        """A drop counts as a reset to zero."""
        times = np.array([15.0, 30.0, 45.0, 60.0])
        values = np.array([100.0, 130.0, 10.0, 40.0])
        rate = extrapolated_rate(times, values, 60.0, 60.0)
        assert rate == pytest.approx((30 + 10 + 30) / 45.0)

    async def test_request_rate_per_pod(self) -> None:
        """requestRate gives per-pod rates over the window."""
        store = MetricStore(15.0)
        for i in range(1, 9):
            store.add("a", snap(15.0 * i, success=30 * i))
            store.add("b", snap(15.0 * i, success=15 * i))
        obs = await fetch(SimMetricSource(store), ("a", "b"), 120.0)
        rate = obs["requestRate"]
        assert isinstance(rate, PodSamples)
        assert rate.values == pytest.approx({"a": 2.0, "b": 1.0})


class TestQuantile:
    """histogram_quantile(q, sum by (le) (rate(bucket[w]))) across the target's pods."""

    async def test_across_pods(self) -> None:
        """Pod a: 100 ITLs <= 10 ms; pod b: 100 in (25, 50] ms; p95 interpolates to 47.5 ms."""
        store = MetricStore(15.0)
        store.add("a", snap(0.0))
        store.add("b", snap(0.0))
        for t in (15.0, 30.0, 45.0, 60.0):
            k = int(t // 15)
            store.add("a", snap(t, itl={0.005: 25 * k}))
            store.add("b", snap(t, itl={0.04: 25 * k}))
        obs = await fetch(SimMetricSource(store), ("a", "b"), 60.0)
        itl = obs["interTokenLatency"]
        assert isinstance(itl, TargetSample)
        assert itl.value == pytest.approx(0.0475)
        assert itl.pods == 2

    async def test_only_the_targets_pods(self) -> None:
        """Series of pods not behind the target are ignored."""
        store = MetricStore(15.0)
        for t in (0.0, 15.0, 30.0, 45.0, 60.0):
            k = int(t // 15)
            store.add("a", snap(t, itl={0.005: 25 * k}))
            store.add("other", snap(t, itl={0.9: 25 * k}))
        obs = await fetch(SimMetricSource(store), ("a",), 60.0)
        itl = obs["interTokenLatency"]
        assert isinstance(itl, TargetSample)
        assert itl.value <= 0.01

    async def test_window_forgets_old_observations(self) -> None:
        """Slow ITLs before the window do not count."""
        store = MetricStore(15.0)
        for t in range(0, 301, 15):
            slow = 100 if t >= 60 else 100 * t // 60
            fast = 0 if t <= 120 else (t - 120) * 10
            store.add("a", snap(float(t), itl={0.9: slow, 0.005: fast}))
        obs = await fetch(SimMetricSource(store), ("a",), 300.0)
        itl = obs["interTokenLatency"]
        assert isinstance(itl, TargetSample)
        assert itl.value <= 0.01

    async def test_zero_traffic_is_nan_no_signal(self) -> None:
        """No observations in the window: NaN -> NoSignal, never 0."""
        store = MetricStore(15.0)
        for t in (0.0, 15.0, 30.0, 45.0, 60.0):
            store.add("a", snap(t, itl={0.005: 10}))
        obs = await fetch(SimMetricSource(store), ("a",), 60.0)
        assert obs["interTokenLatency"] == NoSignal(
            NoSignalReason.NAN, obs["interTokenLatency"].detail
        )  # type: ignore[union-attr]
        zero = await fetch(SimMetricSource(store, empty_as_zero=True), ("a",), 60.0)
        itl = zero["interTokenLatency"]
        assert isinstance(itl, TargetSample)
        assert itl.value == 0.0

    async def test_flavor_buckets(self) -> None:
        """TTFT of 15 s: NIM buckets stop at 10 s (the +Inf rule), vLLM V1 interpolates."""
        store = MetricStore(15.0)
        for t in (0.0, 15.0, 30.0, 45.0, 60.0):
            store.add("a", snap(t, ttft={15.0: int(t)}))
        nim = (await fetch(SimMetricSource(store), ("a",), 60.0))["timeToFirstToken"]
        vllm = (await fetch(SimMetricSource(store, flavor="vllm"), ("a",), 60.0))[
            "timeToFirstToken"
        ]
        assert isinstance(nim, TargetSample)
        assert isinstance(vllm, TargetSample)
        assert nim.value == 10.0
        assert vllm.value == pytest.approx(15.0)


class TestGauges:
    """Instant gauges, staleness, empty results, delay."""

    async def test_latest_sample(self) -> None:
        """The newest sample at or before the evaluation time."""
        store = MetricStore(15.0)
        store.add("a", snap(15.0, kv=0.2, waiting=3))
        store.add("a", snap(30.0, kv=0.4, waiting=5))
        obs = await fetch(SimMetricSource(store), ("a",), 40.0)
        assert isinstance(obs["kvCache"], PodSamples)
        assert obs["kvCache"].values == {"a": 0.4}
        assert obs["queueDepth"].values == {"a": 5.0}  # type: ignore[union-attr]

    async def test_stale_and_empty(self) -> None:
        """Older than the 5-minute lookback: no series -> NoSignal(EMPTY); custom: not collected."""
        store = MetricStore(15.0)
        store.add("a", snap(15.0, kv=0.2))
        obs = await fetch(SimMetricSource(store), ("a",), 400.0)
        kv = obs["kvCache"]
        assert isinstance(kv, NoSignal)
        assert kv.reason is NoSignalReason.EMPTY
        custom = obs["custom"]
        assert isinstance(custom, NoSignal)
        assert custom.reason is NoSignalReason.NOT_COLLECTED

    async def test_delay(self) -> None:
        """With 30 s extra delay and a 30 s rule, the controller at t=75 sees t=30."""
        delay = MetricDelay(extra=30.0, evaluation_interval=30.0)
        assert delay.eval_time(75.0) == 30.0
        store = MetricStore(15.0)
        for t, kv in ((15.0, 0.1), (30.0, 0.2), (45.0, 0.3), (60.0, 0.4), (75.0, 0.5)):
            store.add("a", snap(t, kv=kv))
        obs = await fetch(SimMetricSource(store, delay=delay), ("a",), 75.0)
        assert obs["kvCache"].values == {"a": 0.2}  # type: ignore[union-attr]

    def test_delay_parse(self) -> None:
        """Delay specs."""
        assert MetricDelay.parse("hpa-adapter") == MetricDelay(30.0, 30.0)
        assert MetricDelay.parse("20:15") == MetricDelay(20.0, 15.0)
        with pytest.raises(ValueError, match="metric delay"):
            MetricDelay.parse("-1")


async def test_mean_statistic() -> None:
    """statistic: mean is rate(_sum) / rate(_count)."""
    store = MetricStore(15.0)
    for t in (0.0, 15.0, 30.0, 45.0, 60.0):
        k = int(t // 15)
        store.add("a", snap(t, itl={0.004: 10 * k, 0.02: 10 * k}))
    obs = await fetch(SimMetricSource(store), ("a",), 60.0)
    mean = obs["itlMean"]
    assert isinstance(mean, TargetSample)
    assert mean.value == pytest.approx(0.012)


def _per_pod_rate(
    store: MetricStore, pod: str, at: float, window: float, column: list[list[float]]
):  # type: ignore[no-untyped-def]
    """One pod's rate of ``column`` (rows per sample), as one call per pod computes it."""
    samples = store.window(pod, at, window)
    times = np.array([s.t for s in samples], dtype=np.float64)
    return extrapolated_rate(times, np.array(column, dtype=np.float64), at, window)


class TestRatesGroupedAcrossPods:
    """The pods' rates computed in groups of pods with the same scrape times, one call per group,
    equal bit for bit to one call per pod (the quantile sums them in the pods' order)."""

    @staticmethod
    def _store(seed: int) -> tuple[MetricStore, list[str]]:
        rng = np.random.default_rng(seed)
        store = MetricStore(15.0)
        names = [f"p{i}" for i in range(9)]
        for index, name in enumerate(names):
            joined = 0.0 if index < 5 else 15.0 * int(rng.integers(1, 9))  # late pods
            jitter = 0.37 if index == 2 else 0.0  # scraped at its own times
            success = 0
            itl = dict.fromkeys(ITL_BUCKETS[:6], 0)
            t = joined + jitter
            while t <= 150.0:
                success += int(rng.integers(0, 40))
                if index == 7 and t > 100.0:
                    success = int(rng.integers(0, 5))  # a counter reset
                for bound in itl:
                    itl[bound] += int(rng.integers(0, 30))
                store.add(name, snap(t, success=success, itl=dict(itl)))
                t += 15.0
        return store, names

    @pytest.mark.parametrize("seed", range(6))
    async def test_equal_to_one_call_per_pod(self, seed: int) -> None:
        store, names = self._store(seed)
        at, window = 150.0, 60.0
        obs = await fetch(SimMetricSource(store), tuple(names), at)
        rate = obs["requestRate"]
        assert isinstance(rate, PodSamples)
        expected_rates: dict[str, float] = {}
        total: np.ndarray | None = None
        sums = 0.0
        keep = [*(ITL_BUCKETS.index(b) for b in ITL_BUCKETS[:13]), len(ITL_BUCKETS)]
        for pod in names:
            samples = store.window(pod, at, window)
            if len(samples) < 2:
                continue
            one = _per_pod_rate(store, pod, at, window, [[s.success] for s in samples])
            expected_rates[pod] = float(one[0])
            rows = [[*(s.itl[k] for k in keep), s.itl_sum, s.itl[-1]] for s in samples]
            rates = _per_pod_rate(store, pod, at, window, rows)
            part = rates[: len(keep)]
            total = part if total is None else total + part
            sums += float(rates[len(keep)])
        assert len(expected_rates) >= 6  # shared times, late pods and the jittered pod
        assert rate.values == expected_rates  # exact, not approximate
        assert total is not None
        itl = obs["interTokenLatency"]
        assert isinstance(itl, TargetSample)
        assert itl.pods == len(expected_rates)
        bounds = (*ITL_BUCKETS[:13], math.inf)
        assert itl.value == histogram_quantile(0.95, bounds, total)
        mean = obs["itlMean"]
        assert isinstance(mean, TargetSample)
        assert mean.value == sums / float(total[-1])

    async def test_one_sample_pods_and_no_pods(self) -> None:
        """A pod with one sample in the window gives no rate; no pods at all: no series."""
        store = MetricStore(15.0)
        store.add("a", snap(140.0, success=10))
        for t in (105.0, 120.0, 135.0, 150.0):
            store.add("b", snap(t, success=int(t)))
        obs = await fetch(SimMetricSource(store), ("a", "b"), 150.0)
        assert obs["requestRate"].values == {"b": pytest.approx(1.0)}  # type: ignore[union-attr]
        empty = await fetch(SimMetricSource(store), ("a",), 150.0)
        assert isinstance(empty["requestRate"], NoSignal)
        assert isinstance(empty["interTokenLatency"], NoSignal)
