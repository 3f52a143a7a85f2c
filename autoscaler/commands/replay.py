"""``nim-autoscaler replay``: run a policy over a recorded timeline and print every decision.

Loads the policy with :mod:`autoscaler.policy.loader`, the timeline with
:mod:`autoscaler.replay`, runs the same decision core as the controller (open loop: each tick's
current replicas come from the timeline) and prints one decision per tick as a table, JSON
(``--output json``: an array of ``{t, currentReplicas, desiredReplicas, reason, explanation, ...}``)
or CSV. ``--explain`` adds the full arithmetic of each tick to the table. Exit code 0 on success,
1 on a bad policy or timeline (the message names the file, tick index and field).
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from autoscaler.decision.explain import render_text
from autoscaler.decision.resolved import HpaFlags
from autoscaler.policy.loader import format_errors, load_path
from autoscaler.policy.models import ScalingPolicy
from autoscaler.replay import (
    TimelineError,
    format_csv,
    format_json,
    format_table,
    load_timeline,
    replay,
)
from autoscaler.settings import HpaSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--policy``, ``--timeline``, ``--output``, ``--name`` and ``--explain``."""
    parser.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    parser.add_argument(
        "--timeline", required=True, metavar="FILE", help="timeline JSON, or CSV (.csv)"
    )
    parser.add_argument(
        "--output",
        "-o",
        choices=("table", "json", "csv"),
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument(
        "--name",
        metavar="NAMESPACE/NAME",
        help="which policy to use when the file holds several",
    )
    parser.add_argument(
        "--explain", action="store_true", help="table output: print each tick's full arithmetic"
    )


def _pick_policy(path: str, name: str | None) -> ScalingPolicy | None:
    result = load_path(path)
    if not result.ok:
        for line in format_errors(result.errors):
            print(line, file=sys.stderr)
        return None
    policies = result.by_key()
    if name is not None:
        if name not in policies:
            known = ", ".join(sorted(policies)) or "none"
            print(f"{path}: no policy {name!r} (found: {known})", file=sys.stderr)
            return None
        return policies[name]
    if len(policies) != 1:
        known = ", ".join(sorted(policies)) or "none"
        print(
            f"{path}: expected exactly one policy, found {len(policies)} ({known}); use --name",
            file=sys.stderr,
        )
        return None
    return next(iter(policies.values()))


def run(args: argparse.Namespace) -> int:
    """Replay the timeline and print the decisions; 1 on bad input."""
    policy = _pick_policy(args.policy, args.name)
    if policy is None:
        return 1
    try:
        ticks = load_timeline(args.timeline, policy)
    except TimelineError as exc:
        print(f"nim-autoscaler replay: {args.timeline}: {exc}", file=sys.stderr)
        return 1
    try:
        hpa = HpaSettings()
    except ValidationError as exc:
        print(f"nim-autoscaler replay: invalid settings:\n{exc}", file=sys.stderr)
        return 1
    flags = HpaFlags(hpa.hpa_tolerance, hpa.hpa_downscale_stabilization)
    rows = replay(policy, ticks, flags=flags)
    if args.output == "json":
        print(format_json(rows))
    elif args.output == "csv":
        print(format_csv(rows, policy))
    elif args.explain:
        for row in rows:
            print(render_text(row.decision))
            print()
    else:
        print(format_table(rows))
    return 0
