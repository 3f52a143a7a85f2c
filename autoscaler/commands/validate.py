"""``nim-autoscaler validate PATH...``: check policy files and report every located error.

Uses :func:`autoscaler.policy.loader.load_paths`. Exit code 0 when every file is valid, 1 otherwise.
Human output lists each valid policy and ``ScalingBudget`` and each error as
``FILE:LINE:COL: field: message``, then budget warnings (a budget that covers no policy, or whose
policies' minReplicas alone need more GPUs than it has, where ``spec.gpusPerReplica`` says);
A policy with ``spec.capacity.profile`` also shows the capacity read from the sweep (per-replica
requests/s at the SLO, what limits it, the margins and the sweep's request lengths).
``--output json`` prints one JSON object (``valid``, ``policies``, ``budgets``, ``errors``; a
policy with a profile carries a ``capacity`` object).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from autoscaler.policy.loader import (
    LoadedBudget,
    LoadResult,
    errors_to_json,
    format_errors,
    load_paths,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the paths and ``--output``."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    parser.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="report format"
    )


def result_to_json(result: LoadResult) -> dict[str, Any]:
    """The load result as a JSON-ready object."""
    return {
        "valid": result.ok,
        "policies": [
            {
                "key": loaded.key,
                "file": loaded.location.file,
                "line": loaded.location.line,
                "column": loaded.location.column,
                **({"capacity": loaded.profile.to_json()} if loaded.profile else {}),
            }
            for loaded in result.policies
        ],
        "budgets": [
            {
                "name": loaded.key,
                "file": loaded.location.file,
                "line": loaded.location.line,
                "maxGpus": loaded.budget.spec.max_gpus,
                "policies": [p.key for p in result.policies if loaded.budget.spec.covers(p.policy)],
                "warnings": budget_warnings(loaded, result),
            }
            for loaded in result.budgets
        ],
        "errors": errors_to_json(result.errors),
    }


def budget_warnings(loaded: LoadedBudget, result: LoadResult) -> list[str]:
    """Problems of a valid budget given the policies beside it (not errors: pods may say more)."""
    spec = loaded.budget.spec
    covered = [p.policy for p in result.policies if spec.covers(p.policy)]
    if not covered:
        return [f"budget {loaded.key} covers no policy"]
    floor = sum(
        p.spec.min_replicas * p.spec.gpus_per_replica
        for p in covered
        if p.spec.gpus_per_replica is not None
    )
    warnings = []
    if floor > spec.max_gpus:
        warnings.append(
            f"budget {loaded.key}: the minReplicas of its policies alone need {floor} GPUs "
            f"(spec.gpusPerReplica) but maxGpus is {spec.max_gpus}; minima are always kept"
        )
    return warnings


def run(args: argparse.Namespace) -> int:
    """Validate, print the report, return 0 if all valid else 1."""
    result = load_paths(args.paths)
    if args.output == "json":
        sys.stdout.write(json.dumps(result_to_json(result), indent=2) + "\n")
        return 0 if result.ok else 1
    for loaded in result.policies:
        print(f"OK    {loaded.key} ({loaded.location})")
        if loaded.profile is not None:
            print(
                f"      capacity from {loaded.profile.path}: {loaded.profile.capacity.describe()}"
            )
            for note in loaded.profile.capacity.notes:
                print(f"      note: {note}")
    for budget in result.budgets:
        covered = sum(1 for p in result.policies if budget.budget.spec.covers(p.policy))
        print(
            f"OK    budget {budget.key}: {budget.budget.spec.max_gpus} GPUs for {covered} "
            f"policies ({budget.location})"
        )
        for warning in budget_warnings(budget, result):
            print(f"WARN  {warning}")
    for line in format_errors(result.errors):
        print(f"ERROR {line}")
    problems = len(result.all_errors())
    print(
        f"{len(result.policies)} valid policies, {problems} error(s) "
        f"in {len(result.errors)} file(s)"
    )
    return 0 if result.ok else 1
