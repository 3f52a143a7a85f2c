"""``nim-autoscaler simulate``: run a policy against a simulated LLM fleet.

Thin CLI over :func:`autoscaler.sim.run.run_simulation`: parses the flags, loads the policy
(:mod:`autoscaler.policy.loader`) and the load (:mod:`autoscaler.sim.load`), prints per-minute rows
and a summary (:mod:`autoscaler.sim.report`) or the JSON document, and optionally writes a plot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from autoscaler.decision.resolved import HpaFlags
from autoscaler.observability.logging import configure_logging
from autoscaler.policy.loader import format_errors, load_path
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import HpaSettings
from autoscaler.sim.cluster import ColdStart, ColdStartSpecError
from autoscaler.sim.fleet import BALANCERS
from autoscaler.sim.load import LoadSpecError, load_workload
from autoscaler.sim.metrics import MetricDelay
from autoscaler.sim.native import ENGINES, NativeUnavailable, engine_module
from autoscaler.sim.oracle import run_oracle, with_oracle
from autoscaler.sim.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from autoscaler.sim.report import PlotUnavailable, plot, summary_lines, table_header, table_row
from autoscaler.sim.run import SimulationConfig, SimulationResult, SloTargets, run_simulation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``simulate``."""
    parser.add_argument("--policy", required=True, help="policy YAML file (one policy)")
    parser.add_argument(
        "--trace",
        required=True,
        help="trace file (Azure CSV, Mooncake JSONL, ServeGen rates; options after '#') "
        "or synthetic:KIND:key=value,... (see docs/simulator.md)",
    )
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES), help="hardware profile"
    )
    parser.add_argument(
        "--cold-start",
        help="model load time: SECONDS, uniform:MIN:MAX, lognormal:median=M,sigma=S "
        "(default: the profile's)",
    )
    parser.add_argument(
        "--slo",
        help="latency objectives, e.g. ttft=0.5,itl=0.05 (default: the policy's spec.slo, "
        "else ttft=0.5,itl=0.05)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--duration", type=float, help="simulated seconds (default: the load's)")
    parser.add_argument(
        "--interval", type=float, default=15.0, help="controller tick interval, s (default 15)"
    )
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="metric scrape interval, s"
    )
    parser.add_argument(
        "--metric-delay",
        default="0",
        help="pipeline delay: EXTRA[:EVAL_INTERVAL] seconds, or hpa-adapter (default 0)",
    )
    parser.add_argument(
        "--empty-as-zero",
        action="store_true",
        help="treat empty/NaN metric results as 0 (KEDA ignoreNullValues); default: no signal",
    )
    parser.add_argument("--flavor", choices=("nim", "vllm"), default="nim", help="metric names")
    parser.add_argument("--rate-scale", type=float, default=1.0, help="multiply the arrival rate")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="play the load this many times faster"
    )
    parser.add_argument("--initial-replicas", type=int, help="pods Ready at t=0")
    parser.add_argument("--balancer", choices=BALANCERS, default="least", help="load balancing")
    parser.add_argument(
        "--gpu-capacity", type=int, help="GPUs in the cluster (pods beyond stay Unschedulable)"
    )
    parser.add_argument(
        "--termination-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds a removed pod may finish its requests; what is still in flight then is "
        "interrupted (0: the server aborts at once)",
    )
    parser.add_argument(
        "--no-drain-aware",
        dest="drain_aware",
        action="store_false",
        help="do not mark pods with pod-deletion-cost before a scale-down",
    )
    parser.add_argument(
        "--realtime",
        type=float,
        metavar="SPEED",
        help="pace the simulation against the wall clock (1 = real time, 10 = 10x faster)",
    )
    parser.add_argument(
        "--serve-metrics",
        type=int,
        metavar="PORT",
        help="serve the simulated pods' metrics at http://127.0.0.1:PORT/metrics (pod label; "
        "scrape with honor_labels); use with --realtime",
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="replica engine: compiled (built by `make native`), python (the reference) or "
        "auto (compiled when built and current); the results are the same",
    )
    parser.add_argument(
        "--oracle",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compare with the oracle (knows the arrivals, meets the SLO each minute; "
        "calibrated with simulator runs at the trace's lengths): oracleGpuHours and "
        "gpuHoursOverOracle (default: on with --output json, off with the table)",
    )
    parser.add_argument("--plot", type=Path, help="write a PNG of load, replicas and latency")


def load_policy(path: str) -> ScalingPolicy:
    """The single policy in ``path``; raises ``ValueError`` with the loader's messages."""
    loaded = load_path(path)
    if loaded.errors:
        raise ValueError("\n".join(format_errors(loaded.errors)))
    if len(loaded.policies) != 1:
        msg = f"{path}: expected exactly one policy, found {len(loaded.policies)}"
        raise ValueError(msg)
    return loaded.policies[0].policy


def build_config(args: argparse.Namespace) -> SimulationConfig:
    """The simulation config from parsed flags; raises ``ValueError`` on bad input."""
    policy = load_policy(args.policy)
    hpa = HpaSettings()  # AUTOSCALER_HPA_TOLERANCE, AUTOSCALER_HPA_DOWNSCALE_STABILIZATION
    profile = get_profile(args.profile)
    workload = load_workload(
        args.trace,
        seed=args.seed,
        rate_scale=args.rate_scale,
        time_scale=args.time_scale,
        duration=args.duration,
    )
    engine_module(args.engine)  # fails early when a compiled engine is asked for and missing
    if args.slo:
        slo = SloTargets.parse(args.slo)
    else:
        slo = SloTargets.from_policy(policy) or SloTargets()
    return SimulationConfig(
        workload=workload,
        profile=profile,
        policy=policy,
        seed=args.seed,
        duration=args.duration,
        interval=args.interval,
        scrape_interval=args.scrape_interval,
        metric_delay=MetricDelay.parse(args.metric_delay),
        empty_as_zero=args.empty_as_zero,
        flavor=args.flavor,
        cold_start=ColdStart.parse(args.cold_start) if args.cold_start else None,
        slo=slo,
        initial_replicas=args.initial_replicas,
        balancer=args.balancer,
        gpu_capacity=args.gpu_capacity,
        termination_grace=args.termination_grace,
        drain_aware=args.drain_aware,
        progress=True,
        realtime=args.realtime,
        serve_metrics=args.serve_metrics,
        hpa_flags=HpaFlags(hpa.hpa_tolerance, hpa.hpa_downscale_stabilization),
        engine=args.engine,
    )


def print_result(result: SimulationResult, slo: SloTargets, output: str) -> None:
    """Print the JSON document or the table and summary to stdout."""
    if output == "json":
        print(json.dumps(result.to_json(), indent=2, sort_keys=False))
        return
    print(table_header())
    for row in result.rows:
        print(table_row(row, slo))
    print()
    for line in summary_lines(result):
        print(line)


def run(args: argparse.Namespace) -> int:
    """Run the simulation; exit 0, or 2 on bad input."""
    configure_logging(level="warning")
    try:
        cfg = build_config(args)
    except (
        ValueError,
        KeyError,
        OSError,
        LoadSpecError,
        ColdStartSpecError,
        NativeUnavailable,
    ) as exc:
        print(f"nim-autoscaler simulate: {exc}", file=sys.stderr)
        return 2
    result = run_simulation(cfg)
    if args.oracle or (args.oracle is None and args.output == "json"):
        result = with_oracle(result, run_oracle(cfg))
    print_result(result, cfg.slo, args.output)
    if args.plot is not None:
        try:
            path = plot(result, args.plot)
        except PlotUnavailable as exc:
            print(f"nim-autoscaler simulate: {exc}", file=sys.stderr)
            return 1
        print(f"plot: {path}", file=sys.stderr if args.output == "json" else sys.stdout)
    return 0
