"""Stability: every shipped policy on every quality scenario, counting collapses and flapping.

The quality benchmark (:mod:`benchmarks.bench_quality`) compares contenders built for it; this one
runs the policies users copy — every file in ``policies/`` and the demo policy the README shows
(``autoscaler/data/demo-policy.yaml``) — unchanged except for the replica bounds (the policy's own
``minReplicas``, the scenario's ``maxReplicas``) and the target's name, on each scenario of the
quality benchmark at both cold starts, and looks for limit cycles.

A **swing** is a collapse the load does not explain: within at most :data:`DROP_MINUTES` minutes
the fleet (ready + starting pods) falls to at most half of a level of at least
:data:`MIN_PEAK` replicas (by at least :data:`MIN_DROP`), and within :data:`RETURN_MINUTES`
minutes it is back at :data:`RETURN_SHARE` of it, while the arrival rate stays within a factor
:data:`LOAD_BAND` over the whole swing (from the level to the return: the issue's example is
40-60 req/s while the fleet went 20 -> 1 -> 20). A fleet that follows the load down and up is
not swinging. That is the 20 -> 1 -> 20 pattern a KV-cache or queue policy
shows on a fleet large enough for its load (both signals read near zero there). Goal: no swing
in any run. Scale events per hour are reported beside it (flapping).

Writes ``benchmarks/results/stability.json``; README rows: swings per policy over all runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.cluster import ColdStart
from benchmarks.bench_quality import (
    COLD_STARTS,
    RESULTS,
    SEED,
    WORKERS,
    _calibrate_full,
    _calibrate_quick,
    _map,
    simulate_scenario,
)
from benchmarks.quality import oracle, scenarios
from benchmarks.support.results import write_json

ROOT = Path(__file__).resolve().parent.parent
POLICY_FILES = (
    *sorted((ROOT / "policies").glob("*.yaml")),
    ROOT / "autoscaler" / "data" / "demo-policy.yaml",
)
DROP_MINUTES = 5
MIN_PEAK = 4
MIN_DROP = 3
LOAD_BAND = 1.5
RETURN_MINUTES = 15
RETURN_SHARE = 0.8


def swings(replicas: list[int], rates: list[float]) -> list[dict[str, float]]:
    """The collapses of ``replicas`` (per minute) that ``rates`` (arrivals per minute) do not
    explain and that come back (see the module docstring)."""
    found: list[dict[str, float]] = []
    m = 1
    while m < len(replicas):
        start = max(0, m - DROP_MINUTES)
        level_at = max(range(start, m), key=lambda i: replicas[i])
        level = replicas[level_at]
        low = replicas[m]
        if level >= MIN_PEAK and low <= level / 2 and level - low >= MIN_DROP and m < len(rates):
            back = next(
                (
                    k
                    for k in range(m + 1, min(len(replicas), m + 1 + RETURN_MINUTES))
                    if replicas[k] >= RETURN_SHARE * level
                ),
                None,
            )
            window = rates[level_at : (back or 0) + 1]
            if back is not None and max(window) <= LOAD_BAND * max(min(window), 1e-9):
                found.append(
                    {
                        "fromMinute": level_at,
                        "from": level,
                        "toMinute": m,
                        "to": low,
                        "backMinute": back,
                        "rateAtFrom": round(rates[level_at], 2),
                        "rateAtTo": round(rates[m], 2),
                    }
                )
                m = back + 1
                continue
        m += 1
    return found


def _policy(path: Path, max_replicas: int) -> ScalingPolicy:
    """The shipped policy with the scenario's upper bound and the simulator's target."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = document["spec"]
    spec["maxReplicas"] = max(max_replicas, spec["minReplicas"])
    spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}
    document["metadata"] = {"name": path.stem, "namespace": "bench"}
    loaded = load_text(yaml.safe_dump(document, sort_keys=False), str(path))
    if loaded.errors:
        msg = f"{path}: {loaded.errors}"
        raise ValueError(msg)
    return loaded.policies[0].policy


def _run(task: tuple[str, str, float, float, int, int, bool]) -> dict[str, Any]:
    """One policy on one scenario and cold start (a worker process)."""
    file, scenario_name, cold, per_replica, initial, max_replicas, quick = task
    path = Path(file)
    scenario = next(s for s in scenarios.scenarios(quick) if s.name == scenario_name)
    workload, _ = scenario.workload(per_replica, SEED)
    result = simulate_scenario(
        scenario_name,
        quick,
        per_replica,
        SEED,
        policy=_policy(path, max_replicas),
        initial=initial,
        cold_start=ColdStart.parse(f"{cold:g}"),
    )
    minutes = max(1, math.ceil(scenario.duration / 60.0))
    rates = [float(r) for r in scenarios.minute_rates(workload, minutes)]
    replicas = [r.ready + r.starting for r in result.rows]
    summary = result.summary
    return {
        "policy": path.relative_to(ROOT).as_posix(),
        "scenario": scenario_name,
        "coldStart": cold,
        "swings": swings(replicas, rates),
        "scaleEvents": summary["scaleEvents"],
        "scaleEventsPerHour": round(summary["scaleEvents"] / (scenario.duration / 3600.0), 1),
        "sloViolationMinutes": summary["sloViolationMinutes"],
        "gpuHours": summary["gpuHours"],
        "replicas": replicas,
    }


def main(quick: bool = False, workers: int = WORKERS) -> dict[str, Any]:
    """Run every shipped policy on every scenario; write ``stability.json``."""
    started = time.perf_counter()
    chosen = scenarios.scenarios(quick)
    tasks: list[tuple[str, str, float, float, int, int, bool]] = []
    for scenario in chosen:
        calibrate = _calibrate_quick if quick else _calibrate_full
        mu = calibrate((scenario.profile, scenario.lengths)).per_replica
        workload, _ = scenario.workload(mu, SEED)
        minutes = max(1, math.ceil(scenario.duration / 60.0))
        need = oracle.replicas_needed(scenarios.minute_rates(workload, minutes), mu)
        max_replicas = max(10, 2 * int(need.max()))
        for cold in COLD_STARTS:
            tasks.extend(
                (str(path), scenario.name, cold, mu, int(need[0]), max_replicas, quick)
                for path in POLICY_FILES
            )
    runs = _map(_run, tasks, workers)
    doc: dict[str, Any] = {
        "quick": quick,
        "coldStarts": list(COLD_STARTS),
        "definition": {
            "dropMinutes": DROP_MINUTES,
            "minPeak": MIN_PEAK,
            "minDrop": MIN_DROP,
            "loadBand": LOAD_BAND,
            "returnMinutes": RETURN_MINUTES,
            "returnShare": RETURN_SHARE,
        },
        "runs": runs,
        "wallSeconds": round(time.perf_counter() - started, 1),
    }
    doc["readme_rows"] = readme_rows(doc)
    write_json(RESULTS / "stability.json", doc, indent=1)
    return doc


def readme_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per policy: swings over every scenario and cold start, and the flapping."""
    rows = []
    for policy in dict.fromkeys(r["policy"] for r in doc["runs"]):
        mine = [r for r in doc["runs"] if r["policy"] == policy]
        count = sum(len(r["swings"]) for r in mine)
        where = sorted({f"{r['scenario']}@{r['coldStart']:g}" for r in mine if r["swings"]})
        busiest = max(mine, key=lambda r: r["scaleEventsPerHour"])
        rows.append(
            {
                "benchmark": f"stability {policy}",
                "figure": (
                    f"swings (collapse and return at steady load) over {len(mine)} runs; "
                    "most scale events per hour"
                ),
                "value": (
                    f"{count}{' (' + ', '.join(where) + ')' if where else ''}; "
                    f"{busiest['scaleEventsPerHour']:g} ({busiest['scenario']}@"
                    f"{busiest['coldStart']:g})"
                ),
                "goal": "0 swings",
                "met": count == 0,
            }
        )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_stability")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args()
    out = main(quick=args.quick, workers=args.workers)
    for row in out["readme_rows"]:
        print(row)
    print(json.dumps({"wallSeconds": out["wallSeconds"]}))
    sys.exit(0)
