"""Scaling-quality benchmark: every autoscaler on the same simulated fleet, loads and seeds.

Run ``python -m benchmarks quality [--quick]`` (or ``python benchmarks/bench_quality.py``);
writes ``benchmarks/results/quality.json`` and one PNG per scenario
(``benchmarks/results/quality-<scenario>.png``). Method: ``docs/benchmarks.md``.

For each scenario (:mod:`benchmarks.quality.scenarios`) and cold start (90 s, 300 s), every
contender (:mod:`benchmarks.quality.contenders`) runs on the same workload (same seed), profile
(``8b-fp8-h100`` unless the scenario names another), cold start, initial replicas, replica
bounds and SLO; the oracle (:mod:`benchmarks.quality.oracle`) gives the GPU-hour lower bound.
Figures per run: SLO-violation minutes, share of requests within the SLO, GPU-hours, scale
events, GPU-hours over the oracle's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, SimulationResult, SloTargets, run_simulation
from benchmarks.quality import contenders as contenders_mod
from benchmarks.quality import oracle, scenarios
from benchmarks.support.results import portable, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROFILE = scenarios.DEFAULT_PROFILE
SLO = SloTargets(ttft=0.5, itl=0.05, quantile=0.95)
COLD_STARTS = (90.0, 300.0)
SEED = 1
"""Seed of every reported run (the tuned policy was chosen on other seeds and loads)."""
WORKERS = 2
HPA_REFERENCE = "hpa-kv-published"
LLM_HEADLINE = "llm-slo"
"""The contender the goals are set for: one SLO-only policy file for every scenario."""
LLM_TUNED = "llm-tuned"


def _calibration_args(quick: bool) -> dict[str, Any]:
    if quick:
        return {"replicas": 4, "duration": 240.0, "steps": 7}
    return {"replicas": 8, "duration": 300.0, "steps": 9}


def _calibrate(key: tuple[str, str], quick: bool) -> oracle.Capacity:
    profile, lengths = key
    return oracle.calibrate(get_profile(profile), SLO, lengths, **_calibration_args(quick))


def simulate_scenario(
    scenario_name: str,
    quick: bool,
    per_replica: float,
    seed: int,
    *,
    policy: ScalingPolicy | None,
    initial: int,
    **options: Any,
) -> SimulationResult:
    """One run of a scenario's load (scaled to ``per_replica``) on its profile, with ``policy``
    (None: a fixed fleet of ``initial`` pods); ``options`` go to the simulation's config."""
    scenario = next(s for s in scenarios.scenarios(quick) if s.name == scenario_name)
    workload, _ = scenario.workload(per_replica, seed)
    return run_simulation(
        SimulationConfig(
            workload=workload,
            profile=get_profile(scenario.profile),
            policy=policy,
            seed=seed,
            duration=scenario.duration,
            slo=SLO,
            initial_replicas=initial,
            **options,
        )
    )


def _simulate(  # noqa: PLR0917 - one value per field of a run
    scenario_name: str,
    contender_name: str,
    per_replica: float,
    initial: int,
    max_replicas: int,
    seed: int,
    quick: bool,
    cold: float,
    **options: Any,
) -> SimulationResult:
    """One contender on one scenario: the same fleet, load, bounds and SLO for every run."""
    contender = next(c for c in contenders_mod.contenders() if c.name == contender_name)
    return simulate_scenario(
        scenario_name,
        quick,
        per_replica,
        seed,
        policy=contender.policy(1, max_replicas, per_replica),
        initial=initial,
        interval=contender.interval,
        scrape_interval=contender.scrape_interval,
        metric_delay=contender.metric_delay,
        empty_as_zero=contender.empty_as_zero,
        cold_start=ColdStart.parse(f"{cold:g}"),
        **options,
    )


def _run(task: tuple[str, float, str, float, int, int, int, bool]) -> dict[str, Any]:
    """One contender on one scenario and cold start (runs in a worker process)."""
    scenario_name, cold, contender_name, per_replica, initial, max_replicas, seed, quick = task
    started = time.perf_counter()
    result = _simulate(
        scenario_name, contender_name, per_replica, initial, max_replicas, seed, quick, cold
    )
    summary = result.summary
    return {
        "scenario": scenario_name,
        "coldStart": cold,
        "contender": contender_name,
        "sloViolationMinutes": summary["sloViolationMinutes"],
        "sloAttainment": summary["sloAttainment"],
        "gpuHours": summary["gpuHours"],
        "scaleEvents": summary["scaleEvents"],
        "peakReplicas": summary["peakReplicas"],
        "requests": summary["requests"],
        "ttftP95": summary["ttft"]["p95"],
        "wallSeconds": round(time.perf_counter() - started, 2),
        "replicas": [r.ready + r.starting for r in result.rows],
        "ready": [r.ready for r in result.rows],
        "violating": [int(r.violates(SLO)) for r in result.rows],
    }


DRAIN_COLD_START = 90.0
DRAIN_BALANCER = "random"
"""kube-proxy's default (iptables mode) spreads requests at random, so the pods' loads differ and
the choice of the pods to remove matters; a least-loaded gateway evens them out."""
DRAIN_GRACE = 30.0
"""Kubernetes' default terminationGracePeriodSeconds."""


def _drain_run(task: tuple[str, float, int, int, int, bool, bool]) -> dict[str, Any]:
    """The headline contender on one scenario, drain-aware or not (runs in a worker process)."""
    scenario_name, per_replica, initial, max_replicas, seed, quick, aware = task
    result = _simulate(
        scenario_name,
        LLM_HEADLINE,
        per_replica,
        initial,
        max_replicas,
        seed,
        quick,
        DRAIN_COLD_START,
        balancer=DRAIN_BALANCER,
        termination_grace=DRAIN_GRACE,
        drain_aware=aware,
    )
    summary = result.summary
    return {
        "scenario": scenario_name,
        "drainAware": aware,
        "scaleEvents": summary["scaleEvents"],
        "scaleDowns": sum(1 for _, old, new in _scale_changes(result) if new < old),
        "requestsOnRemovedPods": summary["requestsOnRemovedPods"],
        "requestsInterrupted": summary["requestsInterrupted"],
        "podDeletionCostWrites": summary["podDeletionCostWrites"],
        "sloAttainment": summary["sloAttainment"],
        "gpuHours": summary["gpuHours"],
    }


def _scale_changes(result: Any) -> list[tuple[float, int, int]]:
    return [(float(d.timestamp), d.current_replicas, d.desired_replicas) for d in result.decisions]


def drain_comparison(
    scaling: dict[str, dict[str, Any]], quick: bool, workers: int
) -> dict[str, Any]:
    """Drain-aware scale-down against the ReplicaSet's own order, per scenario.

    Args:
        scaling: the scenarios' figures (``perReplicaCapacity``, ``initialReplicas``,
            ``maxReplicas``) as in ``quality.json``.
        quick: the quick scenario set.
        workers: worker processes.
    """
    tasks = [
        (
            name,
            float(figures["perReplicaCapacity"]),
            int(figures["initialReplicas"]),
            int(figures["maxReplicas"]),
            SEED,
            quick,
            aware,
        )
        for name, figures in scaling.items()
        for aware in (True, False)
    ]
    runs = _map(_drain_run, tasks, workers)
    return {
        "contender": LLM_HEADLINE,
        "coldStart": DRAIN_COLD_START,
        "balancer": DRAIN_BALANCER,
        "terminationGraceSeconds": DRAIN_GRACE,
        "runs": runs,
    }


def drain_rows(drain: dict[str, Any]) -> list[dict[str, Any]]:
    """README rows: requests on removed pods and interrupted, drain-aware vs not."""
    by = {(r["scenario"], r["drainAware"]): r for r in drain["runs"]}
    rows = []
    for scenario in dict.fromkeys(r["scenario"] for r in drain["runs"]):
        aware, blind = by[scenario, True], by[scenario, False]
        rows.append(
            {
                "benchmark": f"quality {scenario}, drain-aware scale-down",
                "figure": (
                    "requests in flight on removed pods / interrupted after "
                    f"{drain['terminationGraceSeconds']:g} s grace: drain-aware vs ReplicaSet "
                    "order"
                ),
                "value": (
                    f"{aware['requestsOnRemovedPods']} / {aware['requestsInterrupted']} vs "
                    f"{blind['requestsOnRemovedPods']} / {blind['requestsInterrupted']}"
                ),
                "goal": "drain-aware <= ReplicaSet order",
                "met": aware["requestsOnRemovedPods"] <= blind["requestsOnRemovedPods"]
                and aware["requestsInterrupted"] <= blind["requestsInterrupted"],
            }
        )
    return rows


def _fixed_run(task: tuple[str, float, int, int, bool]) -> dict[str, Any]:
    """A fixed fleet (no autoscaler) of ``replicas`` pods on one scenario (worker process)."""
    scenario_name, per_replica, replicas, seed, quick = task
    result = simulate_scenario(
        scenario_name, quick, per_replica, seed, policy=None, initial=replicas
    )
    return {
        "scenario": scenario_name,
        "replicas": replicas,
        "sloViolationMinutes": result.summary["sloViolationMinutes"],
        "gpuHours": result.summary["gpuHours"],
    }


def oracle_check(scaling: dict[str, dict[str, Any]], quick: bool, workers: int) -> dict[str, Any]:
    """Does the oracle's schedule meet the SLO? A bound from a fleet that is never smaller.

    Per scenario, a fixed fleet of the oracle's peak replica count (``ceil(peak rate / mu)``)
    runs the whole load: in every minute it has at least the oracle's replicas (more than it in
    all but the peak minutes), so the minutes it violates the SLO are minutes the oracle's
    cheaper schedule cannot meet either. The oracle's capacity ``mu`` comes from Poisson arrivals;
    a trace whose requests come in tighter bursts than Poisson needs more than ``mu`` suggests,
    and this check shows where.
    """
    tasks = [
        (
            name,
            float(figures["perReplicaCapacity"]),
            max(1, math.ceil(float(figures["peakReplicasOfLoad"]) - 1e-9)),
            SEED,
            quick,
        )
        for name, figures in scaling.items()
    ]
    return {
        "method": "fixed fleet at the oracle's peak replica count, no autoscaler",
        "runs": _map(_fixed_run, tasks, workers),
    }


def oracle_rows(check: dict[str, Any]) -> list[dict[str, Any]]:
    """README row: the scenarios where even a fleet never smaller than the oracle's violates."""
    parts = [
        f"{r['scenario']} {r['sloViolationMinutes']} min ({r['replicas']} pods)"
        for r in check["runs"]
    ]
    return [
        {
            "benchmark": "quality, oracle check",
            "figure": "SLO-violation minutes of a fixed fleet at the oracle's peak replica count",
            "value": ", ".join(parts),
            "goal": "reported",
            "met": None,
        }
    ]


def oracle_check_only(workers: int = WORKERS) -> dict[str, Any]:
    """Add (or refresh) the oracle check in an existing ``quality.json``."""
    path = RESULTS / "quality.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    doc["oracleCheck"] = oracle_check(doc["scenarios"], doc["quick"], workers)
    doc["readme_rows"] = [
        row for row in doc["readme_rows"] if row["benchmark"] != "quality, oracle check"
    ] + oracle_rows(doc["oracleCheck"])
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


def _map(fn: Any, items: list[Any], workers: int) -> list[Any]:
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def main(quick: bool = False, workers: int = WORKERS) -> dict[str, Any]:
    """Run the benchmark; write ``benchmarks/results/quality.json`` and the plots."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    chosen = scenarios.scenarios(quick)
    keys = sorted({(s.profile, s.lengths) for s in chosen})
    capacities = dict(
        zip(
            keys,
            _map(_calibrate_quick if quick else _calibrate_full, keys, workers),
            strict=True,
        )
    )
    calibrated = time.perf_counter()
    names = [c.name for c in contenders_mod.contenders()]
    tasks: list[tuple[str, float, str, float, int, int, int, bool]] = []
    oracles: dict[tuple[str, float], oracle.OraclePlan] = {}
    scaling: dict[str, dict[str, Any]] = {}
    for scenario in chosen:
        mu = capacities[scenario.profile, scenario.lengths].per_replica
        profile = get_profile(scenario.profile)
        workload, applied = scenario.workload(mu, SEED)
        minutes = max(1, math.ceil(scenario.duration / 60.0))
        rates = scenarios.minute_rates(workload, minutes)
        need = oracle.replicas_needed(rates, mu)
        max_replicas = max(10, 2 * int(need.max()))
        initial = int(need[0])
        scaling[scenario.name] = {
            "label": scenario.label,
            "profile": scenario.profile,
            **applied,
            "load": workload.description,
            "requests": len(workload),
            "durationSeconds": scenario.duration,
            "perReplicaCapacity": round(mu, 3),
            "meanReplicasOfLoad": round(float(rates.mean() / mu), 2),
            "peakReplicasOfLoad": round(float(rates.max() / mu), 2),
            "initialReplicas": initial,
            "minReplicas": 1,
            "maxReplicas": max_replicas,
            "rates": [round(float(r), 3) for r in rates],
        }
        for cold in COLD_STARTS:
            oracles[scenario.name, cold] = oracle.plan(rates, mu, cold, profile.gpus)
            tasks.extend(
                (scenario.name, cold, name, mu, initial, max_replicas, SEED, quick)
                for name in names
            )
    runs = _map(_run, tasks, workers)
    table = _table(chosen, runs, oracles)
    doc: dict[str, Any] = {
        "quick": quick,
        "profile": PROFILE,
        "slo": {"ttft": SLO.ttft, "itl": SLO.itl, "quantile": SLO.quantile},
        "coldStarts": list(COLD_STARTS),
        "seed": SEED,
        "workers": workers,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "capacity": {
            f"{prof} {lengths or 'simulator default lengths'}": {
                "perReplica": round(cap.per_replica, 3),
                "replicas": cap.replicas,
                "probes": cap.probes,
            }
            for (prof, lengths), cap in capacities.items()
        },
        "contenders": {
            c.name: {
                "label": c.label,
                "interval": c.interval,
                "scrapeInterval": c.scrape_interval,
                "metricDelay": [c.metric_delay.extra, c.metric_delay.evaluation_interval],
                "emptyAsZero": c.empty_as_zero,
                "adapted": c.adapted,
                "capacityShare": c.capacity_share or None,
                "policy": c.document,
            }
            for c in contenders_mod.contenders()
        },
        "scenarios": scaling,
        "results": table,
        "runs": runs,
        "oracle": {
            f"{name}@{cold:g}": {
                "gpuHours": round(plan.gpu_hours, 4),
                "scaleEvents": plan.scale_events,
                "need": list(plan.need),
            }
            for (name, cold), plan in oracles.items()
        },
        "goals": _goals(table),
        "drainAware": drain_comparison(scaling, quick, workers),
        "oracleCheck": oracle_check(scaling, quick, workers),
        "wallSeconds": {
            "calibration": round(calibrated - started, 1),
            "total": round(time.perf_counter() - started, 1),
            "mainProcessCpu": round(time.process_time() - cpu_started, 1),
            "simulationCpuSum": round(sum(r["wallSeconds"] for r in runs), 1),
        },
    }
    doc["readme_rows"] = (
        readme_rows(doc) + drain_rows(doc["drainAware"]) + oracle_rows(doc["oracleCheck"])
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        from benchmarks.quality import plots

        doc["plots"] = plots.draw(doc, chosen, RESULTS)
    except ImportError as exc:  # matplotlib missing: figures still written, plots skipped
        doc["plots"] = f"skipped: {exc}"
    doc = portable(doc)
    write_json(RESULTS / "quality.json", doc, indent=1)
    return doc


def _calibrate_quick(key: tuple[str, str]) -> oracle.Capacity:
    return _calibrate(key, quick=True)


def _calibrate_full(key: tuple[str, str]) -> oracle.Capacity:
    return _calibrate(key, quick=False)


def _table(
    chosen: list[scenarios.Scenario],
    runs: list[dict[str, Any]],
    oracles: dict[tuple[str, float], oracle.OraclePlan],
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for scenario in chosen:
        for cold in COLD_STARTS:
            plan = oracles[scenario.name, cold]
            for run in runs:
                if run["scenario"] != scenario.name or run["coldStart"] != cold:
                    continue
                rows.append(
                    {
                        "scenario": scenario.name,
                        "coldStart": cold,
                        "contender": run["contender"],
                        "sloViolationMinutes": run["sloViolationMinutes"],
                        "sloAttainment": run["sloAttainment"],
                        "gpuHours": run["gpuHours"],
                        "scaleEvents": run["scaleEvents"],
                        "gpuHoursOverOracle": _ratio(run["gpuHours"], plan.gpu_hours),
                    }
                )
            rows.append(
                {
                    "scenario": scenario.name,
                    "coldStart": cold,
                    "contender": "oracle",
                    "sloViolationMinutes": None,
                    "sloAttainment": None,
                    "gpuHours": round(plan.gpu_hours, 4),
                    "scaleEvents": plan.scale_events,
                    "gpuHoursOverOracle": 1.0,
                }
            )
    return rows


def _totals(table: list[dict[str, Any]], contender: str) -> dict[str, float]:
    mine = [r for r in table if r["contender"] == contender]
    oracle_rows = {(r["scenario"], r["coldStart"]): r for r in table if r["contender"] == "oracle"}
    return {
        "sloViolationMinutes": sum(r["sloViolationMinutes"] for r in mine),
        "gpuHours": round(sum(r["gpuHours"] for r in mine), 4),
        "oracleGpuHours": round(
            sum(oracle_rows[r["scenario"], r["coldStart"]]["gpuHours"] for r in mine), 4
        ),
    }


def _versus(
    totals: dict[str, dict[str, float]], contender: str, minutes: float, gpu: float, oracle: float
) -> dict[str, Any]:
    """One contender's totals against the reference HPA's and the oracle's, with the goals."""
    mine, hpa = totals[contender], totals[HPA_REFERENCE]
    oracle_ratio = mine["gpuHours"] / mine["oracleGpuHours"]
    return {
        "contender": contender,
        "reference": HPA_REFERENCE,
        "violationMinutesRatio": _ratio(mine["sloViolationMinutes"], hpa["sloViolationMinutes"]),
        "gpuHoursRatio": _ratio(mine["gpuHours"], hpa["gpuHours"]),
        "gpuHoursOverOracle": round(oracle_ratio, 3),
        "goals": {"violationMinutesRatio": minutes, "gpuHoursRatio": gpu, "overOracle": oracle},
        "met": mine["sloViolationMinutes"] <= minutes * hpa["sloViolationMinutes"]
        and mine["gpuHours"] <= gpu * hpa["gpuHours"]
        and oracle_ratio <= oracle,
    }


def _goals(table: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals per contender; the SLO-only policy's goals (issue figures) and the tuned one's."""
    contenders = sorted({r["contender"] for r in table} - {"oracle"})
    totals = {c: _totals(table, c) for c in contenders}
    goals: dict[str, Any] = {"totals": totals}
    by = {(r["scenario"], r["coldStart"], r["contender"]): r for r in table}
    if LLM_HEADLINE in totals:
        goals["llmVsHpa"] = _versus(totals, LLM_HEADLINE, 0.25, 1.0, 1.3)
        worse = [
            f"{scenario}@{cold:g}"
            for (scenario, cold, contender), row in by.items()
            if contender == LLM_HEADLINE
            and row["sloViolationMinutes"]
            > by[scenario, cold, HPA_REFERENCE]["sloViolationMinutes"]
        ]
        goals["llmWorseThanHpa"] = {"runs": worse, "met": not worse}
    if LLM_TUNED in totals:
        goals["tunedVsHpa"] = _versus(totals, LLM_TUNED, 0.25, 1.0, 1.15)
    return goals


def readme_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """README rows: per scenario and cold start the SLO-only policy against the tuned one and
    the HPAs, then the totals against the goals."""
    rows: list[dict[str, Any]] = []
    table = doc["results"]
    by = {(r["scenario"], r["coldStart"], r["contender"]): r for r in table}
    others = (LLM_TUNED, HPA_REFERENCE, "hpa-queue", "hpa-rate")
    for scenario in doc["scenarios"]:
        for cold in doc["coldStarts"]:
            mine = by[scenario, cold, LLM_HEADLINE]
            hpa = by[scenario, cold, HPA_REFERENCE]
            cells = [mine, *(by[scenario, cold, name] for name in others)]
            names = f"{LLM_HEADLINE} / llm-tuned / HPA KV (published) / HPA queue / HPA rate"
            rows.append(
                {
                    "benchmark": f"quality {scenario}, cold start {cold:g} s",
                    "figure": f"SLO-violation minutes: {names}",
                    "value": " / ".join(str(c["sloViolationMinutes"]) for c in cells),
                    "goal": f"{LLM_HEADLINE} <= HPA KV",
                    "met": mine["sloViolationMinutes"] <= hpa["sloViolationMinutes"],
                }
            )
            rows.append(
                {
                    "benchmark": f"quality {scenario}, cold start {cold:g} s",
                    "figure": f"GPU-hours over oracle: {names}",
                    "value": " / ".join(str(c["gpuHoursOverOracle"]) for c in cells),
                    "goal": f"{LLM_HEADLINE} <= 1.3",
                    "met": (mine["gpuHoursOverOracle"] or math.inf) <= 1.3,
                }
            )
    goals = doc["goals"]
    for key in ("llmVsHpa", "tunedVsHpa"):
        versus = goals.get(key)
        if versus is None:
            continue
        target = versus["goals"]
        rows.append(
            {
                "benchmark": "quality, all scenarios and cold starts",
                "figure": (
                    f"{versus['contender']} vs HPA KV (published): violation minutes ratio, "
                    "GPU-hours ratio, GPU-hours over oracle"
                ),
                "value": (
                    f"{versus['violationMinutesRatio']}, {versus['gpuHoursRatio']}, "
                    f"{versus['gpuHoursOverOracle']}"
                ),
                "goal": (
                    f"<= {target['violationMinutesRatio']:g}, <= {target['gpuHoursRatio']:g}, "
                    f"<= {target['overOracle']:g}"
                ),
                "met": versus["met"],
            }
        )
    worse = goals.get("llmWorseThanHpa")
    if worse is not None:
        rows.append(
            {
                "benchmark": "quality, all scenarios and cold starts",
                "figure": f"runs where {LLM_HEADLINE} has more violation minutes than HPA KV",
                "value": ", ".join(worse["runs"]) or "none",
                "goal": "none",
                "met": worse["met"],
            }
        )
    return rows


def drain_only(workers: int = WORKERS) -> dict[str, Any]:
    """Add (or refresh) the drain-aware comparison in an existing ``quality.json``."""
    path = RESULTS / "quality.json"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    doc["drainAware"] = drain_comparison(doc["scenarios"], doc["quick"], workers)
    doc["drainAware"]["wallSeconds"] = round(time.perf_counter() - started, 1)
    doc["readme_rows"] = [
        row for row in doc["readme_rows"] if "drain-aware" not in row["benchmark"]
    ] + drain_rows(doc["drainAware"])
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_quality")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument(
        "--drain-only",
        action="store_true",
        help="only run the drain-aware comparison and add it to the existing quality.json",
    )
    parser.add_argument(
        "--oracle-check-only",
        action="store_true",
        help="only run the oracle check and add it to the existing quality.json",
    )
    args = parser.parse_args()
    if args.oracle_check_only:
        out = oracle_check_only(workers=args.workers)
        print(json.dumps(out["oracleCheck"], indent=1))
        sys.exit(0)
    if args.drain_only:
        out = drain_only(workers=args.workers)
        print(json.dumps(out["drainAware"], indent=1))
        sys.exit(0)
    out = main(quick=args.quick, workers=args.workers)
    for row in out["readme_rows"]:
        print(row)
    print(json.dumps(out["wallSeconds"]))
