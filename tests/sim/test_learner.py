"""The capacity learner on a simulated fleet: it converges to the fleet's true SLO capacity and
follows it when the request lengths double.

The true capacity is measured independently by the oracle's calibration (a fixed fleet of the
same profile and of the size the autoscaled fleet runs at, five replicas, under Poisson load at
the same lengths: the largest rate per replica at which at most a fifth of the minutes violate
the SLO, averaged over two seeds; a larger fleet carries a little more per replica, so the size
matters). The policy is the SLO-only
policy, active: it sizes the fleet itself from what it learned, on a load that moves between half
and 1.15 x the capacity of four replicas, then the same shape again with prompts and outputs
twice as long (a third of the capacity).
"""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.decision.capacity import CapacityEstimate
from autoscaler.decision.types import Decision
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.load import Workload, load_workload
from autoscaler.sim.oracle import Calibration, calibrate
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, SloTargets, run_simulation

SLO = SloTargets(ttft=0.5, itl=0.05, quantile=0.95)
PROFILE = get_profile("8b-fp8-h100")
DOUBLED = "in=lognormal:2040:0.7,out=lognormal:258:0.9"
"""Twice the simulator's default median prompt (1020) and output (129) lengths."""
REPLICAS = 4
LEVELS = (0.5, 0.7, 0.85, 1.0, 1.15, 0.9, 1.1, 0.8)
"""Load of each 4-minute step, in shares of what ``REPLICAS`` replicas carry."""
STEP = 240.0
POLICY = """\
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: learner, namespace: sim}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llm}
  algorithm: llm
  minReplicas: 1
  maxReplicas: 40
  slo:
    ttft: {quantile: 0.95, target: 0.5}
    itl: {quantile: 0.95, target: 0.05}
"""


CALIBRATION_REPLICAS = 5
"""The fleet size the policy keeps on this load (4 to 6 replicas)."""


def true_capacity(lengths: str) -> float:
    settings = Calibration(CALIBRATION_REPLICAS, 900.0, 0.2, 0.5, 30.0, 14)
    runs = [calibrate(PROFILE, SLO, lengths, settings, seed=seed).per_replica for seed in (0, 1)]
    return float(np.mean(runs))


def phase(mu: float, lengths: str, seed: int) -> Workload:
    rates = "/".join(f"{level * REPLICAS * mu:.4g}" for level in LEVELS)
    spec = f"synthetic:step:rates={rates},every={STEP:g}" + (f",{lengths}" if lengths else "")
    return load_workload(spec, seed=seed)


def policy() -> ScalingPolicy:
    loaded = load_text(POLICY, "learner.yaml")
    assert not loaded.errors
    return loaded.policies[0].policy


@pytest.fixture(scope="module")
def run() -> tuple[float, float, float, dict[float, CapacityEstimate]]:
    mu_default, mu_doubled = true_capacity(""), true_capacity(DOUBLED)
    first, second = phase(mu_default, "", seed=2), phase(mu_doubled, DOUBLED, seed=3)
    change = first.duration
    workload = Workload(
        np.concatenate([first.arrivals, second.arrivals + change]),
        np.concatenate([first.prompt, second.prompt]),
        np.concatenate([first.output, second.output]),
        "default lengths, then doubled",
        change + second.duration,
    )
    estimates: dict[float, CapacityEstimate] = {}

    def on_decision(now: float, decision: Decision) -> None:
        if decision.sizing is not None:
            estimates[now] = decision.sizing.estimate

    config = SimulationConfig(
        workload=workload, profile=PROFILE, policy=policy(), initial_replicas=REPLICAS, slo=SLO
    )
    run_simulation(config, on_decision)
    return mu_default, mu_doubled, change, estimates


def last_before(estimates: dict[float, CapacityEstimate], until: float) -> CapacityEstimate:
    return estimates[max(t for t in estimates if t <= until)]


def test_the_doubled_lengths_carry_far_less(
    run: tuple[float, float, float, dict[float, CapacityEstimate]],
) -> None:
    """The premise: a load test at the default lengths would mislead (2.5x+ too high)."""
    mu_default, mu_doubled, _, _ = run
    assert mu_default > 2.5 * mu_doubled


def test_converges_within_ten_percent(
    run: tuple[float, float, float, dict[float, CapacityEstimate]],
) -> None:
    """After one pass of varied load (32 minutes) the learned figure is the true one +-10 %."""
    mu_default, _, change, estimates = run
    learned = last_before(estimates, change)
    assert learned.source == "learned"
    assert learned.per_replica == pytest.approx(mu_default, rel=0.10)
    assert learned.good is not None
    assert learned.good <= mu_default * 1.10  # the lower bound is never far above the truth


def test_adapts_when_the_lengths_double(
    run: tuple[float, float, float, dict[float, CapacityEstimate]],
) -> None:
    """The same pass at doubled lengths: the figure has left the old capacity within the first
    half of the pass and ends near the new one. Measured: +10 % (3.93 against 3.56 req/s). At
    these lengths the p95 TTFT is mostly prefill and stays within 10 % of its target over a wide
    range of load, which the learner treats as neither met nor violated (its noise band), while
    the calibration counts every minute over the target; hence the 15 % bound here."""
    mu_default, mu_doubled, change, estimates = run
    halfway = last_before(estimates, change + len(LEVELS) * STEP / 2)
    assert halfway.per_replica is not None
    assert halfway.per_replica < 0.6 * mu_default
    end = last_before(estimates, change + len(LEVELS) * STEP)
    assert end.per_replica == pytest.approx(mu_doubled, rel=0.15)
    assert end.good is not None
    assert end.good == pytest.approx(mu_doubled, rel=0.15)
