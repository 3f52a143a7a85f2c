"""``nim-autoscaler demo``: the one-command demo (what ``make demo`` runs). No cluster, no flags.

Simulates the bundled policy (``autoscaler/data/demo-policy.yaml``: ``algorithm: llm`` sized on a
TTFT/ITL objective alone, learning the per-replica capacity as it runs) against a seeded synthetic
load with a surge (steady, then 3x, then back down; 12 simulated minutes), printing every
decision as it happens in the dry-run format of :mod:`autoscaler.commands.printer` (the full
explanation block for scale changes), then the
per-minute table, the summary and the path of the plot. Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

from autoscaler.commands.printer import DecisionPrinter
from autoscaler.decision.types import Decision
from autoscaler.observability.logging import configure_logging
from autoscaler.policy.loader import format_errors, load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.load import load_workload
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.report import PlotUnavailable, plot, summary_lines, table_header, table_row
from autoscaler.sim.run import SimulationConfig, SloTargets, run_simulation

DEMO_PROFILE = "8b-fp8-h100"
DEMO_STEP_SECONDS = 60.0
DEMO_RATES = "6/6/6/18/18/18/18/18/6/6/6/6"
"""Requests/second per step: 3 minutes steady, a 3x surge for 5 minutes, then back down."""
DEMO_TOKENS = "in=lognormal:2000:0.5,out=lognormal:250:0.5"
"""RAG-like chat requests (2k-token prompts) so the KV cache matters."""
DEMO_SEED = 7


def demo_load_spec(step_seconds: float = DEMO_STEP_SECONDS) -> str:
    """The synthetic load spec of the demo."""
    return f"synthetic:step:rates={DEMO_RATES},every={step_seconds:g},{DEMO_TOKENS}"


def demo_policy() -> ScalingPolicy:
    """The bundled demo policy (package data)."""
    text = resources.files("autoscaler.data").joinpath("demo-policy.yaml").read_text()
    loaded = load_text(text, "autoscaler/data/demo-policy.yaml")
    if loaded.errors or len(loaded.policies) != 1:
        raise ValueError("\n".join(format_errors(loaded.errors)) or "demo policy missing")
    return loaded.policies[0].policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Optional flags (the demo needs none)."""
    parser.add_argument(
        "--short",
        action="store_true",
        help="a 6-minute variant (30-second load steps), for smoke tests",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("out"),
        help="where to write demo.png (default ./out; a temporary directory if not writable)",
    )


class _Printer:
    """Dry-run style lines: one per decision, the explanation block for scale changes."""

    def __init__(self) -> None:
        self._blocks = DecisionPrinter(
            sys.stdout, "text", changes_only=True, clock_label="relative"
        )

    def __call__(self, now: float, decision: Decision) -> None:
        if decision.scale:
            self._blocks(decision)
            return
        minutes, seconds = divmod(int(now), 60)
        hours, minutes = divmod(minutes, 60)
        print(
            f"[t+{hours:02d}:{minutes:02d}:{seconds:02d}] {decision.policy}: "
            f"{decision.current_replicas} (no change)  {decision.reason}"
        )


def _plot_path(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError:
        out_dir = Path(tempfile.mkdtemp(prefix="nim-autoscaler-demo-"))
    return out_dir / "demo.png"


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0."""
    configure_logging(level="warning")
    policy = demo_policy()
    step = DEMO_STEP_SECONDS / 2 if args.short else DEMO_STEP_SECONDS
    spec = demo_load_spec(step)
    workload = load_workload(spec, seed=DEMO_SEED)
    slo = SloTargets.from_policy(policy) or SloTargets()
    print(f"nim-autoscaler demo: policy {policy.key} (algorithm {policy.spec.algorithm.value})")
    print(f"load: {spec} ({len(workload)} requests, seed {DEMO_SEED})")
    print(f"profile: {DEMO_PROFILE}; pods load the model in 60-120 s; decisions every 15 s\n")
    cfg = SimulationConfig(
        workload=workload,
        profile=get_profile(DEMO_PROFILE),
        policy=policy,
        seed=DEMO_SEED,
        slo=slo,
        progress=False,
    )
    result = run_simulation(cfg, on_decision=_Printer())
    print()
    print(table_header())
    for row in result.rows:
        print(table_row(row, slo))
    print()
    for line in summary_lines(result):
        print(line)
    try:
        path = plot(result, _plot_path(args.out_dir))
    except PlotUnavailable as exc:
        print(f"nim-autoscaler demo: {exc}", file=sys.stderr)
        return 1
    print(f"plot: {path}")
    return 0
