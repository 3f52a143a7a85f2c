"""The replay fast paths: buffered observations, bulk sinks, balancer bookkeeping, regressions.

The engine buffers histogram observations and hands finished requests to a bulk sink in batches
(:class:`~autoscaler.sim.engine.BulkSink`); the fleet keeps the ready replicas' loads in a list
for the least-outstanding balancer. These tests check that the fast paths give exactly what the
per-event paths give, and pin the outputs of fixed-fleet runs to those of the engine before the
speed work (same numbers, not just close ones).
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.engine import DONE_COLUMNS, ITL_BUCKETS, Histogram, Replica, Request
from autoscaler.sim.fleet import Fleet
from autoscaler.sim.load import Workload
from autoscaler.sim.metrics import MetricStore
from autoscaler.sim.profiles import HardwareProfile, get_profile
from autoscaler.sim.run import Ledger, SimulationConfig, run_simulation

A = get_profile("8b-fp8-h100")


class PlainSink:
    """Per-event sink: every ITL run and every finished request, as they happen."""

    def __init__(self) -> None:
        self.itl_events: list[tuple[float, float, int]] = []
        self.done: list[Request] = []

    def itl(self, t: float, dt: float, weight: int) -> None:
        self.itl_events.append((t, dt, weight))

    def finished(self, request: Request) -> None:
        self.done.append(request)


class BatchSink(PlainSink):
    """Bulk sink: the same observations, in batches."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[npt.NDArray[np.float64]] = []

    def itl_many(
        self, t: npt.NDArray[np.float64], dt: npt.NDArray[np.float64], weight: npt.NDArray[np.int64]
    ) -> None:
        self.itl_events.extend(zip(t.tolist(), dt.tolist(), weight.tolist(), strict=True))

    def finished_many(self, done: npt.NDArray[np.float64]) -> None:
        self.rows.append(done.copy())


def requests(seed: int, n: int = 300) -> list[Request]:
    rng = random.Random(seed)
    t = 0.0
    out = []
    for rid in range(n):
        t += rng.expovariate(12.0)
        out.append(Request(rid, t, rng.randint(1, 2500), rng.randint(1, 300)))
    return out


def drive(profile: HardwareProfile, reqs: list[Request], sink: PlainSink) -> Replica:
    replica = Replica(profile, sink)
    boundary: float | None = None
    i = 0
    while i < len(reqs) or boundary is not None:
        if i < len(reqs) and (boundary is None or reqs[i].arrival <= boundary):
            changed = replica.enqueue(reqs[i], reqs[i].arrival)
            i += 1
            if changed is not None:
                boundary = changed
        else:
            boundary = replica.on_boundary()
    replica.flush()
    return replica


@pytest.mark.parametrize("seed", [1, 2])
def test_bulk_sink_gets_exactly_what_a_plain_sink_gets(seed: int) -> None:
    """Same ITL runs and finished rows through both paths, with preemptions (tight KV)."""
    profile = replace(A, max_num_seqs=24, max_num_batched_tokens=2048, kv_blocks=900)
    plain, batch = PlainSink(), BatchSink()
    a = drive(profile, requests(seed), plain)
    b = drive(profile, requests(seed), batch)
    assert a.preemptions_total > 0
    assert batch.itl_events == plain.itl_events
    assert not batch.done  # the per-request path is not used with a bulk sink
    rows = np.concatenate(batch.rows)
    assert list(DONE_COLUMNS) == ["rid", "ttft", "tpot", "e2e", "first_token", "preemptions"]
    expected = np.asarray(
        [[r.rid, r.ttft, r.tpot, r.e2e, r.first_token, r.preemptions] for r in plain.done]
    )
    np.testing.assert_array_equal(rows, expected)
    for name in ("ttft_hist", "itl_hist", "e2e_hist"):
        ha, hb = getattr(a, name), getattr(b, name)
        assert ha.counts == hb.counts
        assert ha.count == hb.count
        assert ha.total == pytest.approx(hb.total, rel=1e-12)


def test_histograms_count_every_observation() -> None:
    """The buffered histograms equal one ``observe`` per event (ITL weighted by the batch)."""
    plain = PlainSink()
    replica = drive(A, requests(3), plain)
    itl = Histogram(ITL_BUCKETS)
    for _, dt, weight in plain.itl_events:
        itl.observe(dt, weight)
    assert replica.itl_hist.counts == itl.counts
    assert replica.itl_hist.total == pytest.approx(itl.total, rel=1e-12)
    assert replica.ttft_hist.count == replica.e2e_hist.count == len(plain.done)


def test_observe_many_matches_observe() -> None:
    """Bucket edges included (``le`` is inclusive: bisect_left semantics)."""
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.lognormal(-3.0, 2.0, 500), np.asarray(ITL_BUCKETS)])
    weights = rng.integers(1, 50, values.size)
    one, many = Histogram(ITL_BUCKETS), Histogram(ITL_BUCKETS)
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        one.observe(v, w)
    many.observe_many(values[:100], weights[:100])
    many.observe_many(values[100:], weights[100:])
    assert many.counts == one.counts
    assert many.count == one.count
    assert many.total == pytest.approx(one.total, rel=1e-12)


def test_least_balancer_loads_follow_the_replicas() -> None:
    """The fleet's load list equals the replicas' outstanding requests through scale changes."""
    n = 3000
    rng = np.random.default_rng(2)
    work = Workload(
        np.sort(rng.uniform(0.0, 300.0, n)),
        rng.integers(50, 3000, n),
        rng.integers(1, 400, n),
        "test",
        300.0,
    )
    sim = Fleet(
        A, work, PlainSink(), MetricStore(15.0), initial_replicas=3, cold_start=ColdStart.parse("5")
    )
    for t, replicas in ((40.0, 6), (90.0, 2), (150.0, 5), (220.0, 1), (300.0, 4)):
        sim.run_until(t)
        ready = sim._ready_replicas
        assert sim._loads == [r.load for r in ready]
        assert [r.slot for r in ready] == list(range(len(ready)))
        assert all(r.load == r.outstanding for r in ready)
        sim.set_replicas(replicas)
    sim.close_arrivals()
    sim.run_until(900.0)
    assert sum(len(p.replica.running) for p in sim.pods if p.replica is not None) == 0


def test_ledger_blocks_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger folds batches in blocks; the block size does not change the outcome."""
    cfg = fixed_fleet("least")
    reference = json.dumps(run_simulation(cfg).to_json(), sort_keys=True)
    monkeypatch.setattr(Ledger, "_BLOCK", 7)
    assert json.dumps(run_simulation(cfg).to_json(), sort_keys=True) == reference


def fixed_fleet(balancer: str) -> SimulationConfig:
    """Three replicas with a small KV cache (preemptions) under ~40 req/s for 4 minutes."""
    rng = np.random.default_rng(11)
    n = 9600
    arrivals = np.cumsum(rng.exponential(1 / 40.0, n))
    prompt = np.maximum(1, rng.lognormal(np.log(1020), 0.7, n)).astype(np.int64)
    output = np.maximum(1, rng.lognormal(np.log(129), 0.9, n)).astype(np.int64)
    work = Workload(arrivals, prompt, output, "pinned", float(arrivals[-1]) + 1.0)
    return SimulationConfig(
        workload=work,
        profile=replace(A, kv_blocks=3000),
        seed=11,
        initial_replicas=3,
        balancer=balancer,
    )


# Outputs of the engine before the speed work (commit of the event-driven engine with per-event
# observations), for ``fixed_fleet``: the optimised paths reproduce them exactly.
PINNED: dict[str, dict[str, object]] = {
    "least": {
        "requests": 9600,
        "finished": 9600,
        "requestsWithinSlo": 265,
        "preemptions": 1220,
        "ttft": {"p50": 35.585106, "p95": 70.407033, "p99": 74.80835},
        "itl": {"p50": 0.015408, "p95": 0.021332, "p99": 0.02699},
        "e2e": {"p50": 38.244676, "p95": 73.161709, "p99": 78.700805},
    },
    "random": {
        "requests": 9600,
        "finished": 9600,
        "requestsWithinSlo": 204,
        "preemptions": 1230,
        "ttft": {"p50": 36.019698, "p95": 77.599352, "p99": 87.233581},
        "itl": {"p50": 0.015406, "p95": 0.021377, "p99": 0.026075},
        "e2e": {"p50": 38.879989, "p95": 80.608192, "p99": 90.067339},
    },
    "round-robin": {
        "requests": 9600,
        "finished": 9600,
        "requestsWithinSlo": 247,
        "preemptions": 1162,
        "ttft": {"p50": 36.123565, "p95": 70.236531, "p99": 77.50499},
        "itl": {"p50": 0.015372, "p95": 0.02114, "p99": 0.026062},
        "e2e": {"p50": 38.701149, "p95": 73.405563, "p99": 80.096781},
    },
}


@pytest.mark.parametrize("balancer", sorted(PINNED))
def test_fixed_fleet_outputs_are_pinned(balancer: str) -> None:
    """Requests within SLO, preemptions and latency quantiles as before the speed work."""
    summary = run_simulation(fixed_fleet(balancer)).summary
    keys = ("requests", "finished", "requestsWithinSlo", "preemptions", "ttft", "itl", "e2e")
    assert {k: summary[k] for k in keys} == PINNED[balancer]
