"""The simulated pods' metrics, scraped like Prometheus and served through ``MetricSource``.

:class:`MetricStore` keeps, per pod, the samples a Prometheus server would have scraped every
``scrape_interval``: the gauges (``num_requests_running``, ``num_requests_waiting``, KV-cache
usage), the counters and the cumulative histogram buckets (vLLM V1 boundaries; the NIM/vLLM V0
lists are subsets of them, so both flavours are answered from one store).

:class:`SimMetricSource` implements :class:`autoscaler.metrics.base.MetricSource` over the store
with PromQL semantics: gauges are the last sample within the 5-minute lookback, ``rate`` uses the
samples inside the window with Prometheus' extrapolation, latency quantiles are
``histogram_quantile(q, sum by (le) (rate(..._bucket[w])))`` across the target's pods, and NaN or
an empty result is :class:`~autoscaler.decision.types.NoSignal`, never 0 (unless
``empty_as_zero`` models KEDA's ``ignoreNullValues``). :class:`MetricDelay` models the pipeline
between the pods and the controller (recording rules, adapters, caches). Fed by
:mod:`autoscaler.sim.fleet`; read by the control loop and by :mod:`autoscaler.sim.exposition`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from autoscaler.decision.types import (
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodSamples,
    TargetSample,
)
from autoscaler.metrics.base import MetricRequest, PolicyMetrics
from autoscaler.metrics.quantile import histogram_quantile
from autoscaler.policy.models import (
    GATEWAY_KINDS,
    GatewayMetricSpec,
    LatencyMetricSpec,
    MetricKind,
    MetricSpec,
    RateMetricSpec,
)
from autoscaler.sim.engine import E2E_BUCKETS, ITL_BUCKETS, TTFT_BUCKETS, Replica
from autoscaler.sim.promql import FloatArray, extrapolated_rate

LOOKBACK = 300.0
"""Prometheus' default lookback delta: an instant gauge older than this is stale (no series)."""

NIM_TTFT_BUCKETS = TTFT_BUCKETS[:16]
NIM_ITL_BUCKETS = ITL_BUCKETS[:13]
NIM_E2E_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scrape of one pod."""

    t: float
    running: int
    waiting: int
    kv: float
    prompt_tokens: int
    generation_tokens: int
    success: int
    preemptions: int
    ttft: tuple[int, ...]
    """Cumulative bucket counts (V1 bounds), +Inf last."""
    ttft_sum: float
    itl: tuple[int, ...]
    itl_sum: float
    e2e: tuple[int, ...]
    e2e_sum: float

    @classmethod
    def of(cls, t: float, replica: Replica) -> Snapshot:
        """Scrape ``replica`` at ``t`` (the caller has synced it to ``t``)."""
        return cls(
            t=t,
            running=len(replica.running),
            waiting=len(replica.waiting),
            kv=replica.kv_usage(),
            prompt_tokens=replica.prompt_tokens,
            generation_tokens=replica.generation_tokens,
            success=replica.success,
            preemptions=replica.preemptions_total,
            ttft=tuple(replica.ttft_hist.cumulative()),
            ttft_sum=replica.ttft_hist.total,
            itl=tuple(replica.itl_hist.cumulative()),
            itl_sum=replica.itl_hist.total,
            e2e=tuple(replica.e2e_hist.cumulative()),
            e2e_sum=replica.e2e_hist.total,
        )


@dataclass(frozen=True, slots=True)
class GatewaySample:
    """One scrape of the gateway in front of the fleet (the GIE endpoint picker)."""

    t: float
    held: int
    """Requests held because no replica is ready (``gatewayQueue``)."""
    received: int
    """Requests received so far (counter; ``gatewayRequestRate`` is its rate)."""


class MetricStore:
    """Scraped samples per pod, kept for ``retention`` seconds."""

    def __init__(self, scrape_interval: float = 15.0, retention: float = 1800.0) -> None:
        if scrape_interval <= 0:
            msg = f"scrape_interval must be > 0, got {scrape_interval}"
            raise ValueError(msg)
        self.scrape_interval = scrape_interval
        self._max = max(4, math.ceil(retention / scrape_interval) + 2)
        self.series: dict[str, deque[Snapshot]] = {}
        self.gateway: deque[GatewaySample] = deque(maxlen=self._max)
        """The gateway's scrapes, oldest first."""

    def add_gateway(self, sample: GatewaySample) -> None:
        """Append one scrape of the gateway."""
        self.gateway.append(sample)

    def gateway_window(self, at: float, window: float) -> list[GatewaySample]:
        """Gateway samples in ``(at - window, at]``, oldest first."""
        return [s for s in self.gateway if at - window < s.t <= at]

    def gateway_latest(self, at: float) -> GatewaySample | None:
        """The newest gateway sample at or before ``at`` within the lookback."""
        for sample in reversed(self.gateway):
            if sample.t <= at:
                return sample if sample.t > at - LOOKBACK else None
        return None

    def add(self, pod: str, snapshot: Snapshot) -> None:
        """Append one scrape of ``pod``."""
        samples = self.series.get(pod)
        if samples is None:
            samples = self.series[pod] = deque(maxlen=self._max)
        samples.append(snapshot)

    def latest(self, pod: str, at: float) -> Snapshot | None:
        """The newest sample of ``pod`` at or before ``at`` within the lookback."""
        for snap in reversed(self.series.get(pod, ())):
            if snap.t <= at:
                return snap if snap.t > at - LOOKBACK else None
        return None

    def window(self, pod: str, at: float, window: float) -> list[Snapshot]:
        """Samples of ``pod`` in ``(at - window, at]``, oldest first."""
        out: list[Snapshot] = []
        start = at - window
        for snap in reversed(self.series.get(pod, ())):  # newest first: stop at the window start
            if snap.t <= start:
                break
            if snap.t <= at:
                out.append(snap)
        out.reverse()
        return out


@dataclass(frozen=True, slots=True)
class MetricDelay:
    """Delay between the pods' scrapes and what the controller reads.

    The controller at time ``now`` sees the pipeline's result evaluated at
    ``floor((now - extra) / evaluation_interval) * evaluation_interval`` (no flooring when the
    interval is 0). Example, HPA + prometheus-adapter as often deployed: scrape 30 s (fleet
    option), recording rule every 30 s (``evaluation_interval=30``), adapter cache and HPA sync
    (``extra`` ~ 15-30 s).
    """

    extra: float = 0.0
    """Fixed extra latency, seconds."""
    evaluation_interval: float = 0.0
    """Period of the recording rule that produces the value (0: evaluated on demand)."""

    def eval_time(self, now: float) -> float:
        """The evaluation timestamp of the value the controller sees at ``now``."""
        at = now - self.extra
        if self.evaluation_interval > 0:
            at = math.floor(at / self.evaluation_interval) * self.evaluation_interval
        return at

    @classmethod
    def parse(cls, spec: str) -> MetricDelay:
        """``EXTRA`` or ``EXTRA:EVAL_INTERVAL`` (seconds), or ``hpa-adapter`` (30 s + 30 s)."""
        text = spec.strip()
        if text == "hpa-adapter":
            return cls(extra=30.0, evaluation_interval=30.0)
        try:
            parts = [float(p) for p in text.split(":")]
        except ValueError as exc:
            msg = f"bad metric delay {spec!r}: expected EXTRA[:EVAL_INTERVAL] or hpa-adapter"
            raise ValueError(msg) from exc
        if len(parts) not in (1, 2) or any(p < 0 for p in parts):
            msg = f"bad metric delay {spec!r}: expected EXTRA[:EVAL_INTERVAL] or hpa-adapter"
            raise ValueError(msg)
        return cls(parts[0], parts[1] if len(parts) == 2 else 0.0)


class SimMetricSource:
    """``MetricSource`` over a :class:`MetricStore` with PromQL window semantics."""

    def __init__(
        self,
        store: MetricStore,
        *,
        delay: MetricDelay | None = None,
        empty_as_zero: bool = False,
        flavor: str = "nim",
    ) -> None:
        """Create the source.

        Args:
            store: the scraped samples.
            delay: pipeline delay (default none).
            empty_as_zero: turn an empty/NaN result into 0 (KEDA ``ignoreNullValues``); off by
                default: no data is "no signal".
            flavor: ``nim`` (V0 bucket boundaries, unprefixed names) or ``vllm`` (V1).
        """
        if flavor not in ("nim", "vllm"):
            msg = f"flavor must be 'nim' or 'vllm', got {flavor!r}"
            raise ValueError(msg)
        self.store = store
        self.delay = delay or MetricDelay()
        self.empty_as_zero = empty_as_zero
        self.flavor = flavor

    async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
        """Observe every metric of every requested policy as the pipeline shows it at ``now``."""
        at = self.delay.eval_time(now)
        out: dict[str, Mapping[str, MetricObservation]] = {}
        for request in requests:
            pods = [p.name for p in request.pods]
            rates = _Rates(self.store, pods, at)  # shared by this policy's metrics
            out[request.policy.key] = {
                metric.name: self.observe(metric, pods, at, rates)
                for metric in request.policy.spec.fetched_metrics
            }
        return out

    async def close(self) -> None:
        """Nothing to release."""

    # ---- one metric --------------------------------------------------------------------------

    def observe(
        self,
        metric: MetricSpec,
        pods: Sequence[str],
        at: float,
        rates: _Rates | None = None,
    ) -> MetricObservation:
        """The observation of ``metric`` over ``pods`` evaluated at ``at``.

        ``rates``: the per-pod rates already computed for these pods at ``at`` (one
        :class:`_Rates` serves all the metrics of one policy in one fetch), else computed here.
        """
        kind = metric.kind
        if kind in (MetricKind.KV_CACHE, MetricKind.QUEUE_DEPTH, MetricKind.RUNNING_REQUESTS):
            return self._gauge(kind, pods, at)
        if rates is None:
            rates = _Rates(self.store, pods, at)
        if kind in _COUNTERS:
            spec = metric.spec
            assert isinstance(spec, RateMetricSpec)
            return self._rate(kind, rates, spec.window)
        if kind is MetricKind.PROMETHEUS:
            return NoSignal(NoSignalReason.NOT_COLLECTED, "custom PromQL is not simulated")
        if kind in GATEWAY_KINDS:
            spec = metric.spec
            assert isinstance(spec, GatewayMetricSpec)
            return self._gateway(kind, spec, at)
        spec = metric.spec
        assert isinstance(spec, LatencyMetricSpec)
        return self._latency(kind, spec, rates)

    def _gateway(self, kind: MetricKind, spec: GatewayMetricSpec, at: float) -> MetricObservation:
        """The gateway presets: requests held (no replica ready), or the arrival rate."""
        if kind is MetricKind.GATEWAY_QUEUE:
            sample = self.store.gateway_latest(at)
            if sample is None:
                return self._empty((), at, per_pod=False, what="gateway queue")
            query = "inference_extension_flow_control_queue_size (simulated)"
            return TargetSample(float(sample.held), at, sample.t, query=query)
        samples = self.store.gateway_window(at, spec.window)
        if len(samples) < 2:
            return self._empty((), at, per_pod=False, what="gateway request counter")
        times = np.fromiter((s.t for s in samples), np.float64, len(samples))
        counts = np.fromiter((s.received for s in samples), np.float64, len(samples))
        rate = extrapolated_rate(times, counts, at, spec.window)
        if rate is None:
            return self._empty((), at, per_pod=False, what="gateway request counter")
        query = f"rate(inference_objective_request_total[{spec.window:g}s]) (simulated)"
        return TargetSample(float(rate), at, at - spec.window, query=query)

    def _empty(self, pods: Sequence[str], at: float, per_pod: bool, what: str) -> MetricObservation:
        if self.empty_as_zero:
            if per_pod:
                return PodSamples(dict.fromkeys(pods, 0.0), at, query=f"{what} (empty as 0)")
            return TargetSample(0.0, at, series=0, query=f"{what} (empty as 0)")
        return NoSignal(NoSignalReason.EMPTY, f"no samples of {what} at t={at:.0f}")

    def _gauge(self, kind: MetricKind, pods: Sequence[str], at: float) -> MetricObservation:
        values: dict[str, float] = {}
        oldest: float | None = None
        for pod in pods:
            snap = self.store.latest(pod, at)
            if snap is None:
                continue
            if kind is MetricKind.KV_CACHE:
                values[pod] = snap.kv
            elif kind is MetricKind.QUEUE_DEPTH:
                values[pod] = float(snap.waiting)
            else:
                values[pod] = float(snap.running)
            oldest = snap.t if oldest is None else min(oldest, snap.t)
        name = _GAUGE_NAMES[self.flavor][kind]
        if not values:
            return self._empty(pods, at, per_pod=True, what=name)
        return PodSamples(values, at, oldest, series=len(values), query=f"{name} (simulated)")

    def _rate(self, kind: MetricKind, rates: _Rates, window: float) -> MetricObservation:
        field, series = _COUNTERS[kind]
        column = _COUNTER_FIELDS.index(field)
        per_pod = rates.counters(window)
        values = {pod: float(row[column]) for pod, row in per_pod.items()}
        query = f"rate({series}[{window:g}s]) (simulated)"
        at = rates.at
        if not values:
            return self._empty(rates.pods, at, per_pod=True, what=series)
        return PodSamples(values, at, at - window, {}, len(values), query)

    def _latency(
        self, kind: MetricKind, spec: LatencyMetricSpec, rates: _Rates
    ) -> MetricObservation:
        attr, v1_bounds, nim_bounds = _HISTOGRAMS[kind]
        bounds = nim_bounds if self.flavor == "nim" else v1_bounds
        keep = (*(v1_bounds.index(b) for b in bounds), len(v1_bounds))
        at = rates.at
        total: np.ndarray | None = None
        sums = 0.0
        contributing = 0
        # Summed across pods in the pods' order, as the per-pod loop it replaces did.
        for row in rates.histogram(attr, keep, spec.window).values():
            part = row[: len(keep)]
            total = part if total is None else total + part
            sums += float(row[len(keep)])
            contributing += 1
        name = _LATENCY_NAMES[self.flavor][kind]
        if total is None:
            return self._empty(rates.pods, at, per_pod=False, what=name)
        if spec.statistic == "mean":
            count = float(total[-1])
            value = sums / count if count > 0 else math.nan
            query = f"rate({name}_sum[{spec.window:g}s]) / rate({name}_count) (simulated)"
        else:
            value = histogram_quantile(spec.quantile, (*bounds, math.inf), total)
            query = (
                f"histogram_quantile({spec.quantile:g}, sum by (le) "
                f"(rate({name}_bucket[{spec.window:g}s]))) (simulated)"
            )
        if math.isnan(value):
            if self.empty_as_zero:
                return TargetSample(0.0, at, series=contributing, query=query + " (NaN as 0)")
            return NoSignal(NoSignalReason.NAN, f"{name}: no observations in the window")
        return TargetSample(
            value, at, at - spec.window, series=contributing, pods=contributing, query=query
        )


class _Rates:
    """``rate()`` of every pod's counters and histogram buckets over one window, computed once.

    The fleet scrapes all its pods at the same instants, so the pods' samples inside a window
    usually share their timestamps: the pods are grouped by those, and each group's series go
    through one :func:`extrapolated_rate` call (column by column, the same arithmetic as one call
    per pod). The results are kept per window for the metrics of one fetch that read them.
    """

    def __init__(self, store: MetricStore, pods: Sequence[str], at: float) -> None:
        self.store = store
        self.pods = pods
        self.at = at
        self._groups: dict[float, list[tuple[FloatArray, list[tuple[str, list[Snapshot]]]]]] = {}
        self._rated: dict[tuple[object, ...], dict[str, FloatArray]] = {}

    def _grouped(self, window: float) -> list[tuple[FloatArray, list[tuple[str, list[Snapshot]]]]]:
        """Pods with two samples or more in the window, grouped by their sample times: per
        group, the times and (pod, its samples) in the pods' order."""
        groups = self._groups.get(window)
        if groups is None:
            by_times: dict[tuple[float, ...], list[tuple[str, list[Snapshot]]]] = {}
            for pod in self.pods:
                samples = self.store.window(pod, self.at, window)
                if len(samples) >= 2:  # a rate needs two samples
                    by_times.setdefault(tuple(s.t for s in samples), []).append((pod, samples))
            groups = [(np.array(times), members) for times, members in by_times.items()]
            self._groups[window] = groups
        return groups

    def _rates(
        self, key: tuple[object, ...], window: float, row: Callable[[Snapshot], list[float]]
    ) -> dict[str, FloatArray]:
        """Per pod (in the pods' order), the rates of the series ``row`` reads from a sample;
        kept under ``key`` for the other metrics of the fetch."""
        found = self._rated.get(key)
        if found is None:
            rated: dict[str, FloatArray] = {}
            for times, members in self._grouped(window):
                values = np.array(
                    [
                        [value for _, samples in members for value in row(samples[i])]
                        for i in range(len(times))
                    ],
                    dtype=np.float64,
                )
                rates = extrapolated_rate(times, values, self.at, window)
                if rates is None:
                    continue
                columns = rates.size // len(members)
                for index, (pod, _) in enumerate(members):
                    rated[pod] = rates[index * columns : (index + 1) * columns]
            found = {pod: rated[pod] for pod in self.pods if pod in rated}
            self._rated[key] = found
        return found

    def counters(self, window: float) -> dict[str, FloatArray]:
        """Per pod: the rates of :data:`_COUNTER_FIELDS`, in that order."""
        return self._rates(
            ("counters", window), window, lambda s: [getattr(s, f) for f in _COUNTER_FIELDS]
        )

    def histogram(self, attr: str, keep: tuple[int, ...], window: float) -> dict[str, FloatArray]:
        """Per pod: the rates of the kept buckets of histogram ``attr``, then its sum and count."""
        total = attr + "_sum"

        def row(snap: Snapshot) -> list[float]:
            buckets = getattr(snap, attr)
            return [*(buckets[k] for k in keep), getattr(snap, total), buckets[-1]]

        return self._rates((attr, keep, window), window, row)


_GAUGE_NAMES: dict[str, dict[MetricKind, str]] = {
    "nim": {
        MetricKind.KV_CACHE: "gpu_cache_usage_perc",
        MetricKind.QUEUE_DEPTH: "num_requests_waiting",
        MetricKind.RUNNING_REQUESTS: "num_requests_running",
    },
    "vllm": {
        MetricKind.KV_CACHE: "vllm:kv_cache_usage_perc",
        MetricKind.QUEUE_DEPTH: "vllm:num_requests_waiting",
        MetricKind.RUNNING_REQUESTS: "vllm:num_requests_running",
    },
}

_LATENCY_NAMES: dict[str, dict[MetricKind, str]] = {
    "nim": {
        MetricKind.TIME_TO_FIRST_TOKEN: "time_to_first_token_seconds",
        MetricKind.INTER_TOKEN_LATENCY: "time_per_output_token_seconds",
        MetricKind.E2E_LATENCY: "e2e_request_latency_seconds",
    },
    "vllm": {
        MetricKind.TIME_TO_FIRST_TOKEN: "vllm:time_to_first_token_seconds",
        MetricKind.INTER_TOKEN_LATENCY: "vllm:inter_token_latency_seconds",
        MetricKind.E2E_LATENCY: "vllm:e2e_request_latency_seconds",
    },
}

_COUNTERS: dict[MetricKind, tuple[str, str]] = {
    MetricKind.REQUEST_RATE: ("success", "request_success_total"),
    MetricKind.PROMPT_TOKEN_RATE: ("prompt_tokens", "prompt_tokens_total"),
    MetricKind.GENERATION_TOKEN_RATE: ("generation_tokens", "generation_tokens_total"),
}
"""Counter presets: the snapshot field each reads and the series it stands for."""

_COUNTER_FIELDS = tuple(field for field, _ in _COUNTERS.values())
"""The snapshot fields of the counter presets, in the column order of :meth:`_Rates.counters`."""

_HISTOGRAMS: dict[MetricKind, tuple[str, tuple[float, ...], tuple[float, ...]]] = {
    MetricKind.TIME_TO_FIRST_TOKEN: ("ttft", TTFT_BUCKETS, NIM_TTFT_BUCKETS),
    MetricKind.INTER_TOKEN_LATENCY: ("itl", ITL_BUCKETS, NIM_ITL_BUCKETS),
    MetricKind.E2E_LATENCY: ("e2e", E2E_BUCKETS, NIM_E2E_BUCKETS),
}
