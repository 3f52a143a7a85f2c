"""Benchmark of the decision core: decisions per second.

Runs :func:`autoscaler.decision.core.decide` (plus ``record_rescale`` when the count changes, as
the controller does) in one process on one core, for policies with 1 and 3 metrics over 10 and
100 pods, in both algorithms. Each case replays a fixed cycle of observations (load rising and
falling, so stabilization windows and rate limits are exercised) and reports the median
throughput of several runs. ``main()`` writes ``benchmarks/results/decision.json``.

``decisionsPerSecond`` is the controller's path: every decision carries its explanation, which is
built on first read (the live loop does not read it; dry-run, ``explain`` and replay do).
``decisionsPerSecondExplanationRead`` also reads the whole explanation (``dict(...)``) of every
decision, as dry-run does.

Run: ``.venv/bin/python -m benchmarks.bench_decision [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from autoscaler.decision.core import decide, record_rescale
from autoscaler.decision.resolved import resolve
from autoscaler.decision.types import (
    History,
    MetricObservation,
    Observation,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)
from autoscaler.policy.models import ScalingPolicy

RESULTS = Path(__file__).resolve().parent / "results" / "decision.json"
TARGET_RATE = 20_000.0
"""Goal: decisions/s for 10 pods and 3 metrics."""

KV = {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}
QUEUE = {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}}
ITL = {"interTokenLatency": {"target": {"type": "Value", "value": 0.030}}}


def make_policy(metrics: int, algorithm: str) -> ScalingPolicy:
    """A policy with 1 (KV) or 3 (KV, queue, p95 ITL) metrics and default behaviour."""
    chosen = [KV] if metrics == 1 else [KV, QUEUE, ITL]
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": f"bench-{metrics}-{algorithm}", "namespace": "bench"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "minReplicas": 1,
                "maxReplicas": 1000,
                "algorithm": algorithm,
                "metrics": chosen,
                "behavior": {},
            },
        }
    )


def make_observations(pods: int, cycle: int = 64) -> list[Observation]:
    """A cycle of observations with ``pods`` ready pods and load going up and down."""
    infos = tuple(
        PodInfo(f"pod-{i}", PodPhase.RUNNING, ready=True, created_at=0.0, ready_at=120.0)
        for i in range(pods)
    )
    out = []
    for k in range(cycle):
        level = 0.4 + 0.5 * abs((k % 32) - 16) / 16  # 0.4 .. 0.9 and back
        kv = {p.name: min(1.0, level + 0.01 * (i % 7)) for i, p in enumerate(infos)}
        queue = {p.name: 8.0 * level for p in infos}
        metrics: dict[str, MetricObservation] = {
            "kvCache": PodSamples(kv, timestamp=0.0),
            "queueDepth": PodSamples(queue, timestamp=0.0),
            "interTokenLatency": TargetSample(0.02 + 0.02 * level, timestamp=0.0),
        }
        out.append(Observation(pods, pods, infos, metrics))
    return out


def _rate(
    pol: ScalingPolicy, observations: list[Observation], decisions: int, *, read: bool
) -> float:
    """Decisions/s of one run (CPU time); ``read``: also read each decision's explanation."""
    resolved = resolve(pol)  # once, as the controller does when the policy is loaded
    history = History()
    start = time.process_time()
    for i in range(decisions):
        obs = observations[i % len(observations)]
        now = 15.0 * i
        result = decide(resolved, obs, history, now)
        if read:
            dict(result.decision.explanation)
        history = result.history
        desired = result.decision.desired_replicas
        if desired != obs.spec_replicas:
            history = record_rescale(resolved, history, now, obs.spec_replicas, desired)
    return decisions / (time.process_time() - start)


def run_case(
    metrics: int, pods: int, algorithm: str, decisions: int, repeats: int
) -> dict[str, Any]:
    """Median decisions/s over ``repeats`` runs of ``decisions`` decisions (runs interleaved)."""
    pol = make_policy(metrics, algorithm)
    observations = make_observations(pods)
    rates = []
    read_rates = []
    for _ in range(repeats):
        rates.append(_rate(pol, observations, decisions, read=False))
        read_rates.append(_rate(pol, observations, decisions, read=True))
    return {
        "metrics": metrics,
        "pods": pods,
        "algorithm": algorithm,
        "decisions": decisions,
        "runs": repeats,
        "decisionsPerSecond": round(statistics.median(rates)),
        "microsecondsPerDecision": round(1e6 / statistics.median(rates), 1),
        "decisionsPerSecondExplanationRead": round(statistics.median(read_rates)),
    }


def calibration_ns_per_loop() -> float:
    """CPU time of one empty ``for`` iteration, ns: compares this machine with others.

    A quiet modern x86 core runs it in roughly 15-20 ns; a shared or slower core shows more and
    the decision rates scale down by about the same factor.
    """
    start = time.process_time()
    for _ in range(2_000_000):
        pass
    return round((time.process_time() - start) / 2_000_000 * 1e9, 1)


def readme_rows(cases: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """README rows: decisions/s for 3 metrics and 10 pods, per algorithm, against the aim."""
    rows = []
    for case in cases:
        if case["metrics"] != 3 or case["pods"] != 10:  # the aim's case
            continue
        rows.append(
            {
                "benchmark": "decision",
                "figure": f"decisions/s, {case['algorithm']}, 3 metrics x 10 pods, one core"
                + (" (quick run)" if quick else ""),
                "value": f"{case['decisionsPerSecond']:,} "
                f"({case['decisionsPerSecondExplanationRead']:,} with the explanation read)",
                "goal": f">= {TARGET_RATE:,.0f}",
                "met": case["decisionsPerSecond"] >= TARGET_RATE,
            }
        )
    return rows


def main(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write ``benchmarks/results/decision.json`` and return the results."""
    decisions = 1_000 if quick else 5_000
    repeats = 3 if quick else 5
    cases = [
        run_case(metrics, pods, algorithm, decisions, repeats)
        for algorithm in ("hpa", "llm")
        for metrics in (1, 3)
        for pods in (10, 100)
    ]
    headline = next(
        c for c in cases if c["algorithm"] == "hpa" and c["metrics"] == 3 and c["pods"] == 10
    )
    result: dict[str, Any] = {
        "benchmark": "decision",
        "quick": quick,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "timer": "time.process_time (CPU time of this process, one core)",
        "calibrationNsPerEmptyLoop": calibration_ns_per_loop(),
        "target": {
            "decisionsPerSecond": TARGET_RATE,
            "case": "3 metrics, 10 pods",
            "met": all(
                c["decisionsPerSecond"] >= TARGET_RATE
                for c in cases
                if c["metrics"] == 3 and c["pods"] == 10
            ),
        },
        "headlineDecisionsPerSecond": headline["decisionsPerSecond"],
        "cases": cases,
        "readme_rows": readme_rows(cases, quick),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer decisions and runs")
    outcome = main(quick=parser.parse_args().quick)
    for case in outcome["cases"]:
        print(
            f"{case['algorithm']:>3} {case['metrics']} metric(s) {case['pods']:>3} pods: "
            f"{case['decisionsPerSecond']:>7} decisions/s"
        )
