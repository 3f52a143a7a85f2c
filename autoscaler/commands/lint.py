"""``nim-autoscaler lint PATH...``: warn about known pitfalls in valid policies.

Loads with :func:`autoscaler.policy.loader.load_paths` and runs :mod:`autoscaler.policy.lint`.
Exit code 0 when there is no warning and no invalid file, 1 otherwise; ``--output json`` prints
one JSON object (``clean``, ``findings``, ``errors``). ``--ignore RULE`` (repeatable) skips a rule.
"""

from __future__ import annotations

import argparse
import json
import sys

from autoscaler.policy.lint import RULES, lint_policies
from autoscaler.policy.loader import errors_to_json, format_errors, load_paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the paths, ``--output`` and ``--ignore``."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    parser.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="report format"
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        choices=sorted(RULES),
        metavar="RULE",
        help=f"skip a rule (repeatable); rules: {', '.join(RULES)}",
    )


def run(args: argparse.Namespace) -> int:
    """Lint, print the findings, return 0 when clean else 1."""
    result = load_paths(args.paths)
    findings = lint_policies(result.policies, args.ignore)
    clean = result.ok and not findings
    if args.output == "json":
        report = {
            "clean": clean,
            "findings": [finding.to_json() for finding in findings],
            "errors": errors_to_json(result.errors),
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0 if clean else 1
    for line in format_errors(result.errors):
        print(f"ERROR {line}")
    for finding in findings:
        print(f"WARNING {finding}")
    print(
        f"{len(result.policies)} policies linted, {len(findings)} warning(s), "
        f"{len(result.all_errors())} error(s)"
    )
    return 0 if clean else 1
