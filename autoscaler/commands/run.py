"""``nim-autoscaler run``: the controller (``--dry-run``: decide and print, never write).

Flags override the ``AUTOSCALER_*`` environment; see :class:`autoscaler.settings.Settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from autoscaler.settings import Settings

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``run`` (each overrides its ``AUTOSCALER_*`` variable)."""
    parser.add_argument("--dry-run", action="store_true", default=None, help="never write")
    parser.add_argument("--policy-dir", type=Path, help="policy directory or file")
    parser.add_argument("--prometheus-url", help="Prometheus API base URL")
    parser.add_argument("--interval", type=float, help="loop period, seconds")
    parser.add_argument("--log-format", choices=["json", "console", "auto"])
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz")
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="elect one writer through a Lease",
    )
    parser.add_argument("--leader-election-namespace", help="namespace of the Lease")
    parser.add_argument("--namespaces", help="comma-separated namespaces to watch (default: all)")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file")
    parser.add_argument("--context", dest="kube_context", help="kubeconfig context")
    parser.add_argument(
        "--output",
        choices=["auto", "text", "json"],
        default="auto",
        help="dry-run decision format (auto: text on a terminal, JSON lines otherwise)",
    )


_FLAGS = (
    "dry_run",
    "policy_dir",
    "prometheus_url",
    "interval",
    "log_format",
    "log_level",
    "metrics_port",
    "leader_election",
    "leader_election_namespace",
    "namespaces",
    "kubeconfig",
    "kube_context",
)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment settings with the given flags on top."""
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def run(args: argparse.Namespace) -> int:
    """Run the controller until SIGTERM."""
    from autoscaler.app import run_controller  # noqa: PLC0415 - heavy imports only for `run`
    from autoscaler.commands.printer import DecisionPrinter  # noqa: PLC0415
    from autoscaler.observability.logging import configure_logging  # noqa: PLC0415

    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"nim-autoscaler run: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    printer = DecisionPrinter(sys.stdout, args.output) if settings.dry_run else None
    try:
        return asyncio.run(run_controller(settings, on_decision=printer))
    except Exception as exc:  # startup faults (no cluster config, bad URL): say so and exit
        log.exception("controller failed to start", error=f"{type(exc).__name__}: {exc}")
        return 1
