"""`nim-autoscaler import`: not built yet."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments yet."""
    del parser


def run(args: argparse.Namespace) -> int:
    """Report that the command is not available yet."""
    del args
    print("nim-autoscaler import: not available yet", file=sys.stderr)
    return 2
