"""Run a policy against the simulated fleet: the library behind ``simulate``, ``demo``, benchmarks.

:func:`run_simulation` builds the fleet (:mod:`autoscaler.sim.fleet`), its metric source
(:mod:`autoscaler.sim.metrics`) and the controller's own
:class:`~autoscaler.controller.loop.ControlLoop` (with the real decision core: there is no second
copy of the algorithm), then alternates ``fleet.run_until(t)`` and ``await loop.tick(t)`` on a
virtual clock. It returns a :class:`SimulationResult`: per-minute rows, an SLO / GPU-hour summary
and the settings used, all reproducible bit for bit from the seed.

A *contender* in a benchmark is one :class:`SimulationConfig` differing from another only in
``policy``, ``metric_delay``, ``empty_as_zero`` and ``interval``; run them on the same workload
and seed to compare them side by side.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from autoscaler.decision.resolved import DEFAULT_FLAGS, HpaFlags
from autoscaler.decision.types import Decision
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.annotate import SimPodAnnotator
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.engine import Request
from autoscaler.sim.fleet import Fleet, SimPodSource, SimScaleClient
from autoscaler.sim.load import Workload
from autoscaler.sim.metrics import MetricDelay, MetricStore, SimMetricSource
from autoscaler.sim.native import engine_module
from autoscaler.sim.profiles import HardwareProfile

log = structlog.get_logger(__name__)

MINUTE = 60.0
_LOG_LO = math.log(1e-4)
_BINS_PER_E = 40.0
_BINS = int((math.log(1e4) - _LOG_LO) * _BINS_PER_E) + 1


@dataclass(frozen=True, slots=True)
class SloTargets:
    """Latency objectives of the run: the ``quantile`` of TTFT / ITL under these seconds."""

    ttft: float | None = 0.5
    itl: float | None = 0.05
    quantile: float = 0.95

    @classmethod
    def parse(cls, spec: str) -> SloTargets:
        """``ttft=0.5,itl=0.05[,quantile=0.95]`` (seconds; omit a key to drop that objective)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("ttft", "itl", "quantile"):
                msg = f"bad SLO {part!r}: expected ttft=S, itl=S or quantile=Q"
                raise ValueError(msg)
            try:
                values[key] = float(value)
            except ValueError as exc:
                msg = f"bad SLO value {part!r}"
                raise ValueError(msg) from exc
        return cls(values.get("ttft"), values.get("itl"), values.get("quantile", 0.95))

    @classmethod
    def from_policy(cls, policy: ScalingPolicy | None) -> SloTargets | None:
        """The policy's ``spec.slo`` (TTFT and ITL objectives), if it has one."""
        slo = policy.spec.slo if policy is not None else None
        if slo is None or (slo.ttft is None and slo.itl is None):
            return None
        quantile = (slo.ttft or slo.itl).quantile  # type: ignore[union-attr]
        return cls(
            slo.ttft.target if slo.ttft else None, slo.itl.target if slo.itl else None, quantile
        )


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """Everything a run depends on (with the workload and the seed: the whole input)."""

    workload: Workload
    profile: HardwareProfile
    policy: ScalingPolicy | None = None
    """None: a fixed fleet of ``initial_replicas`` (no controller)."""
    seed: int = 0
    duration: float | None = None
    """Simulated seconds (default: the workload's duration)."""
    interval: float = 15.0
    """Controller tick interval, seconds."""
    scrape_interval: float = 15.0
    metric_delay: MetricDelay = field(default_factory=MetricDelay)
    empty_as_zero: bool = False
    flavor: str = "nim"
    cold_start: ColdStart | None = None
    """Default: the profile's."""
    slo: SloTargets = field(default_factory=SloTargets)
    initial_replicas: int | None = None
    """Default: the policy's ``minReplicas`` (at least 1)."""
    balancer: str = "least"
    scheduling_delay: float = 2.0
    gpu_capacity: int | None = None
    termination_grace: float = 30.0
    """Seconds a removed Ready pod may finish its requests (``terminationGracePeriodSeconds``);
    requests still in flight then are interrupted (0: every request in flight is)."""
    drain_aware: bool = True
    """Let the controller mark pods with ``pod-deletion-cost`` before a scale-down."""
    drain: float = 300.0
    """Seconds simulated after the end (fleet frozen, no new arrivals) to finish in-flight work."""
    progress: bool = False
    """Show a tqdm progress bar on stderr (only when stderr is a terminal and the ``sim`` extra,
    which brings tqdm, is installed)."""
    realtime: float | None = None
    """Pace the simulation against the wall clock at this speed (1.0: real time); None: as fast
    as possible."""
    serve_metrics: int | None = None
    """Serve the pods' metrics at ``http://127.0.0.1:PORT/metrics`` (0: any free port)."""
    hpa_flags: HpaFlags = DEFAULT_FLAGS
    """The controller-wide HPA flags the simulated controller decides with."""
    engine: str = "auto"
    """Replica engine: ``python`` (the reference), ``compiled`` (its mypyc build, see
    :mod:`autoscaler.sim.native`) or ``auto`` (compiled when built and current). Same results."""


@dataclass(frozen=True, slots=True)
class MinuteRow:
    """One simulated minute."""

    minute: int
    arrival_rate: float
    """Arrivals per second in the minute."""
    ready: int
    """Ready pods at the end of the minute."""
    starting: int
    """Pending or loading pods at the end of the minute."""
    kv_usage: float
    """Mean KV-cache usage of ready pods at the end of the minute (NaN: none ready)."""
    waiting: int
    """Queued requests (engine queues and the gateway) at the end of the minute."""
    running: int
    ttft_p: float
    """TTFT quantile (SLO quantile) of the requests whose first token came in the minute, s."""
    itl_p: float
    """Inter-token latency quantile over every decode step of the minute, s."""
    actions: str
    """Scale changes in the minute, e.g. ``2->4``."""

    def violates(self, slo: SloTargets) -> bool:
        """The minute's TTFT or ITL quantile exceeds its objective."""
        return (slo.ttft is not None and self.ttft_p > slo.ttft) or (
            slo.itl is not None and self.itl_p > slo.itl
        )


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """The outcome of one run."""

    rows: tuple[MinuteRow, ...]
    summary: dict[str, Any]
    settings: dict[str, Any]
    decisions: tuple[Decision, ...]
    """Every decision that changed the replica count."""

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``simulate --output json``."""
        return {
            **self.summary,
            "settings": self.settings,
            "minutes": [_row_json(r) for r in self.rows],
        }


def _row_json(row: MinuteRow) -> dict[str, Any]:
    def num(value: float) -> float | None:
        return None if math.isnan(value) else round(value, 6)

    return {
        "minute": row.minute,
        "arrivalRate": round(row.arrival_rate, 6),
        "ready": row.ready,
        "starting": row.starting,
        "kvUsage": num(row.kv_usage),
        "waiting": row.waiting,
        "running": row.running,
        "ttftP": num(row.ttft_p),
        "itlP": num(row.itl_p),
        "actions": row.actions,
    }


class Ledger:
    """Per-request outcomes and per-minute inter-token histograms (the engine's sink).

    Replicas hand observations over in batches (``itl_many`` / ``finished_many``, see
    :class:`~autoscaler.sim.engine.BulkSink`), which are kept and folded in large blocks (numpy
    per-call overhead would dominate small ones); ``itl`` / ``finished`` take them one at a time.
    Call :meth:`settle` before reading the arrays.
    """

    _BLOCK = 1 << 18
    """Pending rows that trigger a fold."""

    def __init__(self, n_requests: int, minutes: int) -> None:
        self.ttft = np.full(n_requests, np.nan, dtype=np.float64)
        self.tpot = np.full(n_requests, np.nan, dtype=np.float64)
        self.e2e = np.full(n_requests, np.nan, dtype=np.float64)
        self.first = np.full(n_requests, np.nan, dtype=np.float64)
        self.preempted = np.zeros(n_requests, dtype=np.int32)
        self._itl_rows = np.zeros((minutes + 1, _BINS), dtype=np.int64)
        self._last_minute = minutes
        self.finished_count = 0
        self._itl_pending: list[
            tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]
        ] = []
        self._itl_size = 0
        self._done_pending: list[npt.NDArray[np.float64]] = []
        self._done_size = 0

    def itl(self, t: float, dt: float, weight: int) -> None:
        """Count ``weight`` intervals of ``dt`` in the minute of ``t``."""
        self.itl_many(
            np.asarray([t], dtype=np.float64),
            np.asarray([dt], dtype=np.float64),
            np.asarray([weight], dtype=np.int64),
        )

    def itl_many(
        self,
        t: npt.NDArray[np.float64],
        dt: npt.NDArray[np.float64],
        weight: npt.NDArray[np.int64],
    ) -> None:
        """Count ``weight[i]`` intervals of ``dt[i]`` in the minute of ``t[i]``."""
        self._itl_pending.append((t, dt, weight))
        self._itl_size += len(t)
        if self._itl_size >= self._BLOCK:
            self._fold_itl()

    def _fold_itl(self) -> None:
        if not self._itl_pending:
            return
        t, dt, weight = (np.concatenate(parts) for parts in zip(*self._itl_pending, strict=True))
        self._itl_pending = []
        self._itl_size = 0
        minute = (t / MINUTE).astype(np.int64)
        keep = minute <= self._last_minute
        if not keep.all():
            minute, dt, weight = minute[keep], dt[keep], weight[keep]
        index = np.clip(((np.log(dt) - _LOG_LO) * _BINS_PER_E).astype(np.int64), 0, _BINS - 1)
        flat = np.bincount(
            minute * _BINS + index, weights=weight, minlength=self._itl_rows.size
        ).astype(np.int64)
        self._itl_rows += flat.reshape(self._itl_rows.shape)

    def finished(self, request: Request) -> None:
        """Store the request's latencies."""
        row = (
            request.rid,
            request.ttft,
            request.tpot,
            request.e2e,
            request.first_token,
            request.preemptions,
        )
        self.finished_many(np.asarray([row], dtype=np.float64))

    def finished_many(self, done: npt.NDArray[np.float64]) -> None:
        """Store the latencies of finished requests (rows of ``engine.DONE_COLUMNS``)."""
        self._done_pending.append(done)
        self._done_size += len(done)
        self.finished_count += len(done)
        if self._done_size >= self._BLOCK:
            self._fold_done()

    def _fold_done(self) -> None:
        if not self._done_pending:
            return
        done = np.concatenate(self._done_pending)
        self._done_pending = []
        self._done_size = 0
        rid = done[:, 0].astype(np.int64)
        self.ttft[rid] = done[:, 1]
        self.tpot[rid] = done[:, 2]
        self.e2e[rid] = done[:, 3]
        self.first[rid] = done[:, 4]
        self.preempted[rid] = done[:, 5].astype(np.int32)

    def settle(self) -> None:
        """Fold every pending observation into the arrays (before reading them)."""
        self._fold_itl()
        self._fold_done()

    def itl_quantile(self, minute: int, q: float) -> float:
        """The ``q`` quantile of the minute's inter-token intervals (NaN: none)."""
        self._fold_itl()
        return _hist_quantile(self._itl_rows[minute].astype(np.float64), q)


def _hist_quantile(counts: npt.NDArray[np.float64], q: float) -> float:
    total = float(counts.sum())
    if total <= 0:
        return math.nan
    index = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
    return math.exp(_LOG_LO + (index + 0.5) / _BINS_PER_E)


class _Bar(Protocol):
    """The part of a tqdm bar the run uses."""

    n: float

    def update(self, n: float) -> object:
        """Advance by ``n`` simulated seconds."""

    def close(self) -> None:
        """Remove the bar."""


class _NoBar:
    """No progress bar: off, not on a terminal, or tqdm (the ``sim`` extra) not installed."""

    def __init__(self) -> None:
        self.n = 0.0

    def update(self, n: float) -> None:
        self.n += n

    def close(self) -> None:
        pass


def _progress_bar(total: int, *, enabled: bool) -> _Bar:
    if enabled:
        try:
            from tqdm import tqdm  # noqa: PLC0415 - optional (the sim extra)
        except ImportError:
            return _NoBar()
        bar: _Bar = tqdm(total=total, unit="s", desc="simulating", file=sys.stderr, leave=False)
        return bar
    return _NoBar()


def _settings(cfg: SimulationConfig, duration: float, cold: ColdStart) -> dict[str, Any]:
    policy = cfg.policy
    return {
        "policy": policy.key if policy is not None else None,
        "algorithm": policy.spec.algorithm.value if policy is not None else None,
        "load": cfg.workload.description,
        "profile": cfg.profile.name,
        "coldStart": cold.spec or cold.kind,
        "slo": {"ttft": cfg.slo.ttft, "itl": cfg.slo.itl, "quantile": cfg.slo.quantile},
        "seed": cfg.seed,
        "duration": duration,
        "interval": cfg.interval,
        "scrapeInterval": cfg.scrape_interval,
        "metricDelay": {
            "extra": cfg.metric_delay.extra,
            "evaluationInterval": cfg.metric_delay.evaluation_interval,
        },
        "emptyAsZero": cfg.empty_as_zero,
        "flavor": cfg.flavor,
        "balancer": cfg.balancer,
        "initialReplicas": _initial(cfg),
        "gpuCapacity": cfg.gpu_capacity,
        "schedulingDelay": cfg.scheduling_delay,
        "terminationGrace": cfg.termination_grace,
        "drainAware": cfg.drain_aware,
        "mode": policy.spec.mode.value if policy is not None else None,
        "hpaTolerance": cfg.hpa_flags.tolerance,
        "hpaDownscaleStabilization": cfg.hpa_flags.downscale_stabilization,
    }


def _initial(cfg: SimulationConfig) -> int:
    if cfg.initial_replicas is not None:
        return cfg.initial_replicas
    if cfg.policy is not None:
        return max(1, cfg.policy.spec.min_replicas)  # minReplicas 0: starts at 1, idles to 0
    return 1


async def run_simulation_async(
    cfg: SimulationConfig, on_decision: Callable[[float, Decision], None] | None = None
) -> SimulationResult:
    """Run the simulation inside a running event loop (see :func:`run_simulation`)."""
    duration = float(cfg.duration if cfg.duration is not None else cfg.workload.duration)
    minutes = max(1, math.ceil(duration / MINUTE))
    cold = cfg.cold_start or ColdStart.parse(cfg.profile.cold_start)
    ledger = Ledger(len(cfg.workload), minutes)
    store = MetricStore(cfg.scrape_interval)
    policy = cfg.policy
    namespace = policy.metadata.namespace if policy is not None else "default"
    deployment = policy.spec.scale_target_ref.name if policy is not None else "llm"
    fleet = Fleet(
        cfg.profile,
        cfg.workload,
        ledger,
        store,
        deployment=deployment,
        initial_replicas=_initial(cfg),
        cold_start=cold,
        scheduling_delay=cfg.scheduling_delay,
        gpu_capacity=cfg.gpu_capacity,
        balancer=cfg.balancer,
        seed=cfg.seed,
        termination_grace=cfg.termination_grace,
        engine=engine_module(cfg.engine),
    )
    annotator = SimPodAnnotator(fleet, namespace)
    decisions: list[Decision] = []
    loop = None
    if policy is not None:
        from autoscaler.controller.loop import ControlLoop  # noqa: PLC0415 - heavy, only with a policy

        def record(decision: Decision) -> None:
            if decision.scale:
                decisions.append(decision)
            if on_decision is not None:
                on_decision(fleet.now, decision)

        loop = ControlLoop(
            policies=lambda: [policy],
            metrics=SimMetricSource(
                store, delay=cfg.metric_delay, empty_as_zero=cfg.empty_as_zero, flavor=cfg.flavor
            ),
            scale=SimScaleClient(fleet, namespace),
            pods=SimPodSource(fleet, namespace),
            on_decision=record,
            log_ticks=False,
            annotator=annotator,
            drain_aware=cfg.drain_aware,
            hpa_flags=cfg.hpa_flags,
        )
    samples: list[tuple[int, int, int, float, int, int]] = []
    bar = _progress_bar(int(duration), enabled=cfg.progress and sys.stderr.isatty())
    server = None
    if cfg.serve_metrics is not None:
        from autoscaler.sim.exposition import ExpositionServer  # noqa: PLC0415 - optional

        server = ExpositionServer(
            fleet, port=cfg.serve_metrics, flavor=cfg.flavor, namespace=namespace
        )
        port = await server.start()
        print(f"serving simulated pod metrics at http://127.0.0.1:{port}/metrics", file=sys.stderr)
    pace = 0.25 * cfg.realtime if cfg.realtime else math.inf
    wall_start = time.monotonic()
    next_tick = cfg.interval
    next_minute = MINUTE
    next_pace = pace
    t = 0.0
    while t < duration:
        t = min(next_tick if loop is not None else math.inf, next_minute, duration, next_pace)
        if cfg.realtime:
            await asyncio.sleep(max(0.0, wall_start + t / cfg.realtime - time.monotonic()))
            if t >= next_pace:
                next_pace += pace
        fleet.run_until(t)
        if t >= next_minute or t >= duration:
            ready, starting, _ = fleet.counts()
            waiting, running, kv = fleet.queue_and_kv()
            samples.append((ready, starting, waiting, kv, running, fleet.arrived))
            bar.update(int(t) - bar.n)
            next_minute += MINUTE
        if loop is not None and t >= next_tick:
            await loop.tick(t)
            next_tick += cfg.interval
    bar.close()
    if server is not None:
        await server.stop()
    replica_seconds = fleet.replica_seconds(duration)
    arrived = fleet.arrived
    fleet.close_arrivals()
    fleet.run_until(duration + cfg.drain)
    fleet.flush()
    ledger.settle()
    result = _result(
        cfg,
        duration,
        cold,
        fleet,
        ledger,
        samples,
        replica_seconds,
        decisions,
        arrived=arrived,
    )
    result.summary["requestsInterrupted"] = fleet.requests_interrupted
    result.summary["requestsOnRemovedPods"] = fleet.requests_on_removed
    result.summary["podDeletionCostWrites"] = annotator.writes
    result.summary["requestsHeldAtGateway"] = fleet.requests_held
    result.summary["longestGatewayWaitSeconds"] = round(fleet.gateway_wait(), 3)
    return result


def run_simulation(
    cfg: SimulationConfig, on_decision: Callable[[float, Decision], None] | None = None
) -> SimulationResult:
    """Run one simulation to the end and summarise it.

    Args:
        cfg: the run's configuration.
        on_decision: called with ``(simulated time, decision)`` for every controller decision.
    """
    return asyncio.run(run_simulation_async(cfg, on_decision))


def _quantile(values: npt.NDArray[np.float64], q: float) -> float:
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return math.nan
    return float(np.quantile(finite, q))


def _result(  # noqa: PLR0917 - private; one call site passes the run's pieces in order
    cfg: SimulationConfig,
    duration: float,
    cold: ColdStart,
    fleet: Fleet,
    ledger: Ledger,
    samples: list[tuple[int, int, int, float, int, int]],
    replica_seconds: float,
    decisions: list[Decision],
    *,
    arrived: int,
) -> SimulationResult:
    slo = cfg.slo
    q = slo.quantile
    workload = cfg.workload
    arrivals_per_minute = np.bincount(
        (workload.arrivals // MINUTE).astype(np.int64), minlength=len(samples)
    )
    first_minute = np.where(np.isnan(ledger.first), -1, ledger.first // MINUTE).astype(np.int64)
    order = np.argsort(first_minute, kind="stable")
    sorted_minutes = first_minute[order]
    actions: dict[int, list[str]] = {}
    for t, old, new in fleet.scale_events:
        actions.setdefault(int(t // MINUTE), []).append(f"{old}->{new}")
    rows: list[MinuteRow] = []
    for minute, (ready, starting, waiting, kv, running, _) in enumerate(samples):
        lo, hi = np.searchsorted(sorted_minutes, [minute, minute + 1])
        ttft = ledger.ttft[order[lo:hi]]
        width = min(MINUTE, duration - minute * MINUTE)
        rows.append(
            MinuteRow(
                minute=minute,
                arrival_rate=float(arrivals_per_minute[minute]) / width if width > 0 else 0.0,
                ready=ready,
                starting=starting,
                kv_usage=kv,
                waiting=waiting,
                running=running,
                ttft_p=float(np.quantile(ttft, q)) if ttft.size else math.nan,
                itl_p=ledger.itl_quantile(minute, q),
                actions=" ".join(actions.get(minute, [])),
            )
        )
    ok = ~np.isnan(ledger.e2e)
    if slo.ttft is not None:
        ok &= ledger.ttft <= slo.ttft
    if slo.itl is not None:
        ok &= np.isnan(ledger.tpot) | (ledger.tpot <= slo.itl)
    # Every request the fleet received (arrival <= duration: an arrival at the last instant is
    # served too), so that requests == finished + inFlight.
    n = arrived
    within = int(ok.sum())
    peak = max([fleet.desired, _initial(cfg)] + [new for _, _, new in fleet.scale_events])
    replica_hours = replica_seconds / 3600.0
    summary: dict[str, Any] = {
        "requests": n,
        "finished": int(ledger.finished_count),
        "inFlight": fleet.in_flight(),
        "requestsWithinSlo": within,
        "sloAttainment": round(within / n, 6) if n else None,
        "sloViolationMinutes": sum(1 for r in rows if r.violates(slo)),
        "simulatedMinutes": len(rows),
        "gpuHours": round(replica_hours * cfg.profile.gpus, 6),
        "replicaHours": round(replica_hours, 6),
        "scaleEvents": len(fleet.scale_events),
        "peakReplicas": peak,
        "peakReadyReplicas": max((r.ready for r in rows), default=0),
        "preemptions": int(ledger.preempted.sum()),
        "ttft": _latency_summary(ledger.ttft),
        "itl": _latency_summary(ledger.tpot),
        "e2e": _latency_summary(ledger.e2e),
    }
    return SimulationResult(tuple(rows), summary, _settings(cfg, duration, cold), tuple(decisions))


def _latency_summary(values: npt.NDArray[np.float64]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = _quantile(values, q)
        out[label] = None if math.isnan(value) else round(value, 6)
    return out
