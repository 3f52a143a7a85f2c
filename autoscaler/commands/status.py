"""``nim-autoscaler status``: policies and their targets, like ``kubectl get hpa``.

Reads the policies from the policy directory (:mod:`autoscaler.policy.loader`), then, for
each, the target's ``/scale`` (live replicas) and its ``nim-autoscaler.io/status``
annotation written by :mod:`autoscaler.kube.recorder` (metric values vs targets). Prints::

    NAME     REFERENCE           TARGETS                 MINPODS  MAXPODS  REPLICAS  AGE
    llama    Deployment/llama    kvCache: 0.93/0.7       1        8        4         3d

AGE is the age of the target object. Then, when the directory holds ``ScalingBudget``
documents, one line per budget with the GPUs its policies hold against its limit (replicas x
GPUs per replica, as the controller last recorded them, else ``spec.gpusPerReplica``)::

    BUDGET      GPUS    POLICIES   HELD BACK
    h100-pool   12/16   3          nim/mistral

Cluster access goes through :mod:`autoscaler.kube`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from autoscaler.errors import AutoscalerError
from autoscaler.kube.client import KubeApi, KubeApiError
from autoscaler.kube.pods import parse_time
from autoscaler.kube.recorder import STATUS_ANNOTATION
from autoscaler.kube.scale import KubeScaleClient
from autoscaler.policy.budget import ScalingBudget
from autoscaler.policy.loader import format_errors, load_path
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import Settings

HEADERS = ("NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``status``."""
    parser.add_argument("-n", "--namespace", help="only policies in this namespace")
    parser.add_argument(
        "--policy-dir", type=Path, help="directory (or file) of policies (default: settings)"
    )
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: KUBECONFIG)")
    parser.add_argument("--context", help="kubeconfig context")


def run(args: argparse.Namespace) -> int:
    """Print the table; exit code 1 if the cluster or the policies cannot be read."""
    overrides: dict[str, Any] = {}
    if args.policy_dir is not None:
        overrides["policy_dir"] = args.policy_dir
    if args.kubeconfig is not None:
        overrides["KUBECONFIG"] = args.kubeconfig
    if args.context is not None:
        overrides["kube_context"] = args.context
    settings = Settings(**overrides)
    return asyncio.run(status(settings, args.namespace, sys.stdout, sys.stderr))


def load_policies(path: Path, errors: TextIO) -> list[ScalingPolicy]:
    """Every valid policy under ``path``; problems of invalid files are reported and skipped."""
    result = load_path(path)
    for line in format_errors(result.errors):
        print(f"warning: {line}", file=errors)
    return [loaded.policy for loaded in result.policies]


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    name: str
    reference: str
    targets: str
    min_pods: str
    max_pods: str
    replicas: str
    age: str
    policy: ScalingPolicy | None = None
    status: dict[str, Any] | None = None
    spec_replicas: int | None = None

    def cells(self) -> tuple[str, ...]:
        """The cells in header order."""
        return (
            self.name,
            self.reference,
            self.targets,
            self.min_pods,
            self.max_pods,
            self.replicas,
            self.age,
        )


def format_age(seconds: float | None) -> str:
    """kubectl-style age: ``45s``, ``12m``, ``5h``, ``3d``."""
    if seconds is None:
        return "<unknown>"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _number(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return "<unknown>"


def format_targets(policy: ScalingPolicy, status: dict[str, Any] | None) -> str:
    """``name: value/target`` per metric, as the HPA's TARGETS column."""
    values: dict[str, Any] = {}
    if status is not None:
        for metric in status.get("metrics") or []:
            if isinstance(metric, dict):
                values[str(metric.get("name"))] = metric.get("value")
    parts = []
    for metric in policy.spec.metrics:
        target = metric.target
        goal = target.value if target.value is not None else target.average_value
        parts.append(f"{metric.name}: {_number(values.get(metric.name))}/{_number(goal)}")
    return ", ".join(parts)


async def _row(api: KubeApi, scale: KubeScaleClient, policy: ScalingPolicy, errors: TextIO) -> Row:
    ref = policy.spec.scale_target_ref
    namespace = policy.metadata.namespace
    replicas = "<unknown>"
    age: float | None = None
    status: dict[str, Any] | None = None
    spec_replicas: int | None = None
    try:
        reading = await scale.get_scale(namespace, ref)
        replicas = str(reading.status_replicas)
        spec_replicas = reading.spec_replicas
        resource = await scale.discovery.resolve(ref.api_version, ref.kind)
        obj = await api.request("GET", resource.path(namespace, ref.name))
        meta = obj.get("metadata") or {}
        created = parse_time(meta.get("creationTimestamp"))
        age = time.time() - created if created is not None else None
        text = (meta.get("annotations") or {}).get(STATUS_ANNOTATION)
        if text:
            loaded = json.loads(text)
            status = loaded if isinstance(loaded, dict) else None
    except (AutoscalerError, KubeApiError, ValueError) as exc:
        print(f"warning: {policy.key}: {exc}", file=errors)
    return Row(
        name=policy.metadata.name,
        reference=f"{ref.kind}/{ref.name}",
        targets=format_targets(policy, status),
        min_pods=str(policy.spec.min_replicas),
        max_pods=str(policy.spec.max_replicas),
        replicas=replicas,
        age=format_age(age),
        policy=policy,
        status=status,
        spec_replicas=spec_replicas,
    )


BUDGET_HEADERS = ("BUDGET", "GPUS", "POLICIES", "HELD BACK")


def budget_lines(budgets: Iterable[ScalingBudget], rows: Iterable[Row]) -> list[tuple[str, ...]]:
    """Per budget: GPUs held (replicas x GPUs per replica) / limit, policies, held back."""
    rows = list(rows)
    lines: list[tuple[str, ...]] = []
    for budget in budgets:
        used = 0
        unknown = False
        covered = 0
        held: list[str] = []
        for row in rows:
            if row.policy is None or not budget.spec.covers(row.policy):
                continue
            covered += 1
            record = next(
                (
                    b
                    for b in (row.status or {}).get("budgets") or []
                    if isinstance(b, dict) and b.get("budget") == budget.key
                ),
                {},
            )
            per_replica = record.get("gpusPerReplica") or row.policy.spec.gpus_per_replica
            if record.get("heldBack"):
                held.append(row.policy.key)
            if per_replica is None or row.spec_replicas is None:
                unknown = True
                continue
            used += row.spec_replicas * int(per_replica)
        gpus = f"{used}{'+?' if unknown else ''}/{budget.spec.max_gpus}"
        lines.append((budget.key, gpus, str(covered), ", ".join(held) or "-"))
    return lines


def _render(headers: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    table = [headers, *lines]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def render(rows: Iterable[Row]) -> str:
    """Left-aligned columns separated by three spaces, as kubectl prints."""
    table = [HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


async def status(settings: Settings, namespace: str | None, out: TextIO, errors: TextIO) -> int:
    """Collect and print the table.

    Args:
        settings: cluster and policy directory.
        namespace: only policies of this namespace (None: all).
        out: where the table goes.
        errors: where warnings go.
    """
    policies = [
        p
        for p in load_policies(settings.policy_dir, errors)
        if namespace is None or p.metadata.namespace == namespace
    ]
    if not policies:
        print(f"No policies found in {settings.policy_dir}.", file=errors)
        return 0
    try:
        api = await KubeApi.from_settings(settings)
    except AutoscalerError as exc:
        print(f"error: {exc}", file=errors)
        return 1
    try:
        scale = KubeScaleClient(api, retry_budget=2.0)
        rows = [await _row(api, scale, policy, errors) for policy in policies]
    finally:
        await api.close()
    print(render(rows), file=out)
    budgets = [b.budget for b in load_path(settings.policy_dir).budgets]
    if budgets:
        print(file=out)
        print(_render(BUDGET_HEADERS, budget_lines(budgets, rows)), file=out)
    return 0
