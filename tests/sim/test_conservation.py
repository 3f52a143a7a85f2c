"""Request conservation: every arrival ends exactly once (finished, or still in flight at the end).

The simulator has no admission control, so nothing is dropped: a request either finishes (once)
or is still at the gateway, queued or running when the run stops. These tests count both ways, on
loads that end calmly, mid-burst (with work left over), exactly on an arrival, and under a
controller that scales pods up and down (drained pods must hand back nothing).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from autoscaler.commands.demo import demo_policy
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.fleet import Fleet
from autoscaler.sim.load import Workload, load_workload
from autoscaler.sim.metrics import MetricStore
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import Ledger, SimulationConfig, run_simulation

PROFILE = get_profile("8b-fp8-h100")

LOADS = {
    "steady": "synthetic:poisson:rate=20,duration=300",
    # The run stops in the middle of a burst four times the fleet's capacity.
    "ends-mid-burst": "synthetic:spike:base=5,peak=120,at=200,width=200,duration=300",
    "onoff-cut-in-on": "synthetic:onoff:rate=60,on=60,off=60,duration=290",
    "long-prompts": "synthetic:poisson:rate=8,duration=240,in=lognormal:12000:0.5,out=200",
}


class RecordingLedger(Ledger):
    """The run's ledger, also keeping every finished row's request id (duplicates included)."""

    def __init__(self, n_requests: int, minutes: int) -> None:
        super().__init__(n_requests, minutes)
        self.ids: list[int] = []

    def finished_many(self, done: npt.NDArray[np.float64]) -> None:
        self.ids.extend(done[:, 0].astype(np.int64).tolist())
        super().finished_many(done)


def replay(workload: Workload, duration: float, drain: float, replicas: int) -> dict[str, int]:
    """Drive a fixed fleet like ``run_simulation`` does and count how requests ended."""
    ledger = RecordingLedger(len(workload), int(duration // 60) + 1)
    fleet = Fleet(
        PROFILE,
        workload,
        ledger,
        MetricStore(15.0),
        initial_replicas=replicas,
        cold_start=ColdStart.parse("60"),
        seed=1,
    )
    for t in [*np.arange(15.0, duration, 15.0).tolist(), duration]:
        fleet.run_until(t)
    arrived = fleet.arrived
    fleet.close_arrivals()
    fleet.run_until(duration + drain)
    fleet.flush()
    ledger.settle()
    counts = Counter(ledger.ids)
    assert all(c == 1 for c in counts.values()), "a request finished twice"
    assert all(rid < arrived for rid in counts), "a request finished that never arrived"
    assert ledger.finished_count == len(counts)
    assert int((~np.isnan(ledger.e2e)).sum()) == len(counts)
    return {"arrived": arrived, "finished": len(counts), "in_flight": fleet.in_flight()}


class TestConservation:
    """Arrivals == finished + in flight, and no request finishes twice."""

    @pytest.mark.parametrize("name", sorted(LOADS))
    @pytest.mark.parametrize("drain", [0.0, 5.0, 300.0], ids=["no-drain", "drain-5s", "drain-300s"])
    def test_fixed_fleet(self, name: str, drain: float) -> None:
        """Each load, stopped with no, a short or the default drain: every arrival accounted."""
        workload = load_workload(LOADS[name], seed=4)
        duration = workload.duration
        counts = replay(workload, duration, drain, replicas=2)
        assert counts["arrived"] == int(np.count_nonzero(workload.arrivals <= duration))
        assert counts["arrived"] == counts["finished"] + counts["in_flight"]
        if name != "steady" and drain < 300.0:
            assert counts["in_flight"] > 0  # the check is not vacuous: work is left over

    def test_arrival_at_the_last_instant(self) -> None:
        """A recorded trace lasts until its last arrival, which is served and counted once."""
        arrivals = np.array([0.5, 1.0, 30.0, 59.0, 90.0])
        workload = Workload(
            arrivals,
            np.full(arrivals.size, 500, dtype=np.int64),
            np.full(arrivals.size, 50, dtype=np.int64),
            "five requests",
            90.0,
        )
        cfg = SimulationConfig(workload=workload, profile=PROFILE, initial_replicas=1, seed=1)
        summary = run_simulation(cfg).summary
        assert summary["requests"] == 5
        assert summary["finished"] == 5
        assert summary["inFlight"] == 0

    @pytest.mark.parametrize("drain", [2.0, 300.0])
    def test_autoscaled_run_summary(self, drain: float) -> None:
        """Under the controller (scale-ups, cold starts, drained scale-downs) the JSON balances."""
        spec = "synthetic:step:rates=4/40/40/4/4/4,every=60,in=lognormal:2000:0.5,out=200"
        workload = load_workload(spec, seed=2)
        cfg = SimulationConfig(
            workload=workload,
            profile=PROFILE,
            policy=demo_policy(),
            seed=2,
            drain=drain,
            cold_start=ColdStart.parse("30"),
        )
        result = run_simulation(cfg)
        summary = result.summary
        assert summary["scaleEvents"] >= 2  # up and down
        assert summary["requests"] == int(np.count_nonzero(workload.arrivals <= workload.duration))
        assert summary["requests"] == summary["finished"] + summary["inFlight"]
        assert summary["finished"] <= summary["requests"]

    def test_recorded_trace(self, traces: Path) -> None:
        """A slice of the Azure conv trace, replicated x3, stopped mid-load: the JSON balances."""
        workload = load_workload(
            str(traces / "AzureLLMInferenceTrace_conv_2023.csv"), seed=1, rate_scale=3.0, limit=3000
        )
        cfg = SimulationConfig(
            workload=workload, profile=PROFILE, initial_replicas=1, seed=1, drain=1.0
        )
        summary = run_simulation(cfg).summary
        assert summary["requests"] == len(workload)  # duration = the last arrival: all served
        assert summary["requests"] == summary["finished"] + summary["inFlight"]
        assert summary["inFlight"] > 0
