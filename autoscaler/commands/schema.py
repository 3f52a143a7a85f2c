"""``nim-autoscaler schema``: print the policy JSON Schema (see :mod:`autoscaler.policy.schema`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoscaler.policy.schema import policy_schema_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--output``."""
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="write the schema to FILE instead of standard output",
    )


def run(args: argparse.Namespace) -> int:
    """Print (or write) the schema; 0 on success, 1 if the file cannot be written."""
    text = policy_schema_json()
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(
                f"nim-autoscaler schema: cannot write {args.output}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0
