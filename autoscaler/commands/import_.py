"""``nim-autoscaler import FILE``: convert an HPA, NIMService or KEDA ScaledObject to a policy.

Uses :mod:`autoscaler.policy.importers`. Prints the policy YAML (``algorithm: hpa``) with what was
not converted as comments at the top; the same notes go to standard error. Exit code 0 when a
policy was produced (even with notes), 1 when nothing valid can be produced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoscaler.errors import ImportConversionError
from autoscaler.policy.importers import import_text, render_yaml


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the input file and ``--output``."""
    parser.add_argument("file", metavar="FILE", help="manifest to convert ('-' for stdin)")
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write the policy to FILE instead of stdout"
    )


def run(args: argparse.Namespace) -> int:
    """Convert, print notes on stderr, write the policy; 0 on success, 1 on failure."""
    source = str(args.file)
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        print(f"nim-autoscaler import: cannot read {source}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        print(f"nim-autoscaler import: {source} is not UTF-8 text", file=sys.stderr)
        return 1
    try:
        results = import_text(text, source)
    except ImportConversionError as exc:
        print(f"nim-autoscaler import: cannot import {exc.source}:", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return 1
    for result in results:
        for note in result.notes:
            print(f"warning: {result.source}: {note}", file=sys.stderr)
    output = render_yaml(results, source)
    if args.output:
        try:
            Path(args.output).write_text(output, encoding="utf-8")
        except OSError as exc:
            print(
                f"nim-autoscaler import: cannot write {args.output}: {exc.strerror}",
                file=sys.stderr,
            )
            return 1
    else:
        sys.stdout.write(output)
    return 0
