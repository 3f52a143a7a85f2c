"""Command line: ``nim-autoscaler <command>``.

Each command lives in its own module under :mod:`autoscaler.commands` exposing
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code). Commands that need controller
settings build one :class:`~autoscaler.settings.Settings` from the environment plus their flags.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("autoscaler.commands.run", "run the controller (use --dry-run to only print)"),
    "validate": ("autoscaler.commands.validate", "validate policy files"),
    "lint": ("autoscaler.commands.lint", "warn about known pitfalls in policy files"),
    "schema": ("autoscaler.commands.schema", "print the policy JSON Schema"),
    "import": (
        "autoscaler.commands.import_",
        "convert an HPA, NIMService or KEDA ScaledObject into a policy",
    ),
    "explain": ("autoscaler.commands.explain", "make one live decision now and explain it"),
    "replay": ("autoscaler.commands.replay", "run a policy over a recorded metric timeline"),
    "simulate": ("autoscaler.commands.simulate", "run a policy against a simulated LLM fleet"),
    "demo": ("autoscaler.commands.demo", "simulate a bundled policy on a bundled trace"),
    "status": (
        "autoscaler.commands.status",
        "show policies and their targets, like kubectl get hpa",
    ),
}


def _load(module: str) -> ModuleType:
    return importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    from autoscaler import __version__  # noqa: PLC0415 - keeps import of the CLI cheap

    parser = argparse.ArgumentParser(
        prog="nim-autoscaler",
        description="Autoscale GPU LLM inference servers (NIM, vLLM) from Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        _load(module).add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nim-autoscaler`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = _load(COMMANDS[args.command][0])
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    return code
