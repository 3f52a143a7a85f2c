"""``nim-autoscaler replay``: run a policy over a recorded timeline and print every decision.

Loads the policy with :mod:`autoscaler.policy.loader`, reads the timeline (JSON with pods and
per-pod samples, or CSV of whole-target values), turns each tick into an
:class:`~autoscaler.decision.types.Observation`, and feeds the same
:func:`autoscaler.decision.core.decide` the controller uses. Each tick's ``currentReplicas`` comes
from the timeline; the history is updated with
:func:`~autoscaler.decision.core.record_rescale` whenever the decision differs from the current
count, as if the controller had scaled (open loop). Prints one decision per tick as a table, JSON
(``--output json``: an array of decision records, ``docs/decision-schema.md``, each with its ``t``)
or CSV; ``--explain`` adds the full arithmetic of each tick to the table. Exit code 0 on success,
1 on a bad policy or timeline (the message names the file, tick index and field).

Timeline JSON::

    {"ticks": [{"t": 0, "currentReplicas": 3, "statusReplicas": 3,
                "pods": [{"name": "p0", "phase": "Running", "ready": true,
                          "createdAt": -300, "readyAt": -120, "metrics": {"kv": 0.62}}],
                "metrics": {"itl": 0.021}}]}

Timeline CSV: a header ``t,currentReplicas[,statusReplicas],<metric>...``; an empty cell is no
signal. CSV carries no pod detail: each tick has ``statusReplicas`` Running and Ready pods.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autoscaler.decision.core import decide, record_rescale
from autoscaler.decision.explain import render_text
from autoscaler.decision.record import decision_record
from autoscaler.decision.resolved import DEFAULT_FLAGS, HpaFlags, resolve
from autoscaler.decision.types import (
    Decision,
    History,
    MetricObservation,
    NoSignal,
    NoSignalReason,
    Observation,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)
from autoscaler.errors import AutoscalerError
from autoscaler.policy.loader import format_errors, load_path
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import HpaSettings


class TimelineError(AutoscalerError, ValueError):
    """The timeline file is malformed; the message names the tick index and the field."""


@dataclass(frozen=True, slots=True)
class Tick:
    """One recorded tick."""

    t: float
    """Seconds from the start of the timeline."""
    observation: Observation


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """The outcome of one replayed tick."""

    t: float
    decision: Decision

    def to_json(self) -> dict[str, Any]:
        """The tick's decision record (``docs/decision-schema.md``) with ``t`` first."""
        return {"t": self.t, **decision_record(self.decision)}


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _number(value: object, where: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        msg = f"{where}: expected {kind}, got {value!r}"
        raise TimelineError(msg)
    if integer and (not float(value).is_integer() or value < 0):
        msg = f"{where}: expected a non-negative integer, got {value!r}"
        raise TimelineError(msg)
    if not math.isfinite(float(value)):
        msg = f"{where}: expected a finite number, got {value!r}"
        raise TimelineError(msg)
    return float(value)


def _optional_number(data: Mapping[str, Any], key: str, where: str) -> float | None:
    if key not in data or data[key] is None:
        return None
    return _number(data[key], f"{where}.{key}")


def _metric_value(value: object, where: str, t: float) -> MetricObservation:
    """A whole-target value: number -> sample, null -> no signal, NaN -> no signal (nan)."""
    if value is None:
        return NoSignal(NoSignalReason.EMPTY, "null in the timeline")
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{where}: expected a number or null, got {value!r}"
        raise TimelineError(msg)
    if math.isnan(value):
        return NoSignal(NoSignalReason.NAN, "NaN in the timeline")
    if math.isinf(value):
        return NoSignal(NoSignalReason.INF, "Inf in the timeline")
    return TargetSample(float(value), timestamp=t)


def _parse_pod(data: object, where: str) -> tuple[PodInfo, Mapping[str, Any]]:
    if not isinstance(data, Mapping):
        msg = f"{where}: expected an object, got {type(data).__name__}"
        raise TimelineError(msg)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        msg = f"{where}.name: expected a non-empty string, got {name!r}"
        raise TimelineError(msg)
    phase_raw = data.get("phase", "Running")
    try:
        phase = PodPhase(phase_raw)
    except ValueError:
        allowed = ", ".join(p.value for p in PodPhase)
        msg = f"{where}.phase: expected one of {allowed}, got {phase_raw!r}"
        raise TimelineError(msg) from None
    ready = data.get("ready", phase is PodPhase.RUNNING)
    deleting = data.get("deleting", False)
    for key, value in (("ready", ready), ("deleting", deleting)):
        if not isinstance(value, bool):
            msg = f"{where}.{key}: expected true or false, got {value!r}"
            raise TimelineError(msg)
    unschedulable = data.get("unschedulable")
    if unschedulable is not None and not isinstance(unschedulable, str):
        msg = f"{where}.unschedulable: expected the scheduler message, got {unschedulable!r}"
        raise TimelineError(msg)
    metrics = data.get("metrics", {})
    if not isinstance(metrics, Mapping):
        msg = f"{where}.metrics: expected an object, got {type(metrics).__name__}"
        raise TimelineError(msg)
    pod = PodInfo(
        name=name,
        phase=phase,
        ready=ready,
        created_at=_optional_number(data, "createdAt", where),
        ready_at=_optional_number(data, "readyAt", where),
        scheduled_at=_optional_number(data, "scheduledAt", where),
        deleting=deleting,
        unschedulable=unschedulable,
    )
    return pod, metrics


def _parse_tick(data: object, index: int, policy: ScalingPolicy) -> Tick:
    where = f"ticks[{index}]"
    if not isinstance(data, Mapping):
        msg = f"{where}: expected an object, got {type(data).__name__}"
        raise TimelineError(msg)
    if "t" not in data:
        msg = f"{where}.t: missing (seconds from the start)"
        raise TimelineError(msg)
    t = _number(data["t"], f"{where}.t")
    if "currentReplicas" not in data:
        msg = f"{where}.currentReplicas: missing (the target's spec.replicas)"
        raise TimelineError(msg)
    current = int(_number(data["currentReplicas"], f"{where}.currentReplicas", integer=True))
    status = current
    if data.get("statusReplicas") is not None:
        status = int(_number(data["statusReplicas"], f"{where}.statusReplicas", integer=True))
    pods_raw = data.get("pods", [])
    if not isinstance(pods_raw, list):
        msg = f"{where}.pods: expected a list, got {type(pods_raw).__name__}"
        raise TimelineError(msg)
    pods: list[PodInfo] = []
    pod_metrics: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for j, raw in enumerate(pods_raw):
        pod, pod_values = _parse_pod(raw, f"{where}.pods[{j}]")
        if pod.name in seen:
            msg = f"{where}.pods[{j}].name: duplicate pod name {pod.name!r}"
            raise TimelineError(msg)
        seen.add(pod.name)
        pods.append(pod)
        pod_metrics.append(pod_values)
    top = data.get("metrics", {})
    if not isinstance(top, Mapping):
        msg = f"{where}.metrics: expected an object, got {type(top).__name__}"
        raise TimelineError(msg)
    metrics: dict[str, MetricObservation] = {}
    for spec in policy.spec.metrics:
        name = spec.name
        if name in top:
            metrics[name] = _metric_value(top[name], f"{where}.metrics.{name}", t)
            continue
        if not spec.per_pod:
            continue  # absent: not collected
        values: dict[str, float] = {}
        rejected: dict[str, NoSignal] = {}
        for j, (pod, pm) in enumerate(zip(pods, pod_metrics, strict=True)):
            if name not in pm:
                continue
            sample = _metric_value(pm[name], f"{where}.pods[{j}].metrics.{name}", t)
            if isinstance(sample, TargetSample):
                values[pod.name] = sample.value
            elif isinstance(sample, NoSignal):
                rejected[pod.name] = sample
        metrics[name] = PodSamples(
            values, timestamp=t, rejected=rejected, series=len(values) + len(rejected)
        )
    return Tick(t, Observation(current, status, tuple(pods), metrics))


def parse_timeline(data: object, policy: ScalingPolicy) -> list[Tick]:
    """Ticks from parsed timeline JSON (``{"ticks": [...]}`` or a bare list).

    Args:
        data: The parsed JSON document.
        policy: The policy (its metric names and kinds decide per-pod vs whole-target).

    Returns:
        The ticks in order.

    Raises:
        TimelineError: On malformed input, naming the tick index and field.
    """
    ticks_raw = data.get("ticks") if isinstance(data, Mapping) else data
    if not isinstance(ticks_raw, list):
        msg = "timeline: expected an object with a 'ticks' list (or a list of ticks)"
        raise TimelineError(msg)
    ticks = [_parse_tick(raw, i, policy) for i, raw in enumerate(ticks_raw)]
    for i in range(1, len(ticks)):
        if ticks[i].t < ticks[i - 1].t:
            msg = f"ticks[{i}].t: {ticks[i].t:g} is before the previous tick ({ticks[i - 1].t:g})"
            raise TimelineError(msg)
    return ticks


def parse_csv(text: str, policy: ScalingPolicy) -> list[Tick]:
    """Ticks from CSV text: ``t,currentReplicas[,statusReplicas],<metric names...>``.

    Args:
        text: The CSV text (header first).
        policy: The policy.

    Returns:
        The ticks in order (each with ``statusReplicas`` Running, Ready pods ``csv-<i>``).

    Raises:
        TimelineError: On malformed input, naming the row (tick index) and column.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    for required in ("t", "currentReplicas"):
        if required not in header:
            msg = f"timeline CSV: missing column {required!r} (header: {','.join(header)})"
            raise TimelineError(msg)
    names = {spec.name for spec in policy.spec.metrics}
    columns = [c for c in header if c in names]
    ticks: list[dict[str, Any]] = []
    for i, row in enumerate(reader):
        where = f"ticks[{i}]"
        parsed: dict[str, Any] = {}
        for column in ("t", "currentReplicas", "statusReplicas", *columns):
            cell = (row.get(column) or "").strip()
            if column == "statusReplicas" and not cell:
                continue
            if column in columns and not cell:
                parsed.setdefault("metrics", {})[column] = None
                continue
            try:
                number = float(cell)
            except ValueError:
                msg = f"{where}.{column}: expected a number, got {cell!r}"
                raise TimelineError(msg) from None
            if column in columns:
                parsed.setdefault("metrics", {})[column] = number
            elif column == "t":
                parsed["t"] = number
            else:
                if not number.is_integer():
                    msg = f"{where}.{column}: expected an integer, got {cell!r}"
                    raise TimelineError(msg)
                parsed[column] = int(number)
        status = parsed.get("statusReplicas", parsed["currentReplicas"])
        parsed["pods"] = [
            {"name": f"csv-{k}", "phase": "Running", "ready": True} for k in range(status)
        ]
        ticks.append(parsed)
    return parse_timeline({"ticks": ticks}, policy)


def load_timeline(path: str | Path, policy: ScalingPolicy) -> list[Tick]:
    """Read a timeline file: ``.csv`` as CSV, anything else as JSON.

    Raises:
        TimelineError: On unreadable or malformed input.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read timeline {file}: {exc.strerror or exc}"
        raise TimelineError(msg) from exc
    if file.suffix.lower() == ".csv":
        return parse_csv(text, policy)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"timeline {file}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise TimelineError(msg) from exc
    return parse_timeline(data, policy)


# --------------------------------------------------------------------------------------------
# Running and formatting
# --------------------------------------------------------------------------------------------


def replay(
    policy: ScalingPolicy,
    ticks: Sequence[Tick],
    history: History | None = None,
    *,
    flags: HpaFlags = DEFAULT_FLAGS,
) -> list[ReplayRow]:
    """Run the decision core over the ticks (open loop).

    Args:
        policy: The policy.
        ticks: Recorded ticks.
        history: Starting history (default: a fresh one, as a new controller).
        flags: The controller-wide HPA flags (``AUTOSCALER_HPA_*``).

    Returns:
        One row per tick.
    """
    resolved = resolve(policy, flags)
    state = history if history is not None else History()
    rows: list[ReplayRow] = []
    for tick in ticks:
        result = decide(resolved, tick.observation, state, tick.t)
        decision = result.decision
        state = result.history
        if decision.desired_replicas != decision.current_replicas:
            state = record_rescale(
                resolved, state, tick.t, decision.current_replicas, decision.desired_replicas
            )
        rows.append(ReplayRow(tick.t, decision))
    return rows


def format_table(rows: Sequence[ReplayRow]) -> str:
    """A fixed-width table: t, current, desired, reason."""
    lines = [f"{'t':>8}  {'current':>7}  {'desired':>7}  reason"]
    for row in rows:
        d = row.decision
        mark = "*" if d.scale else " "
        lines.append(
            f"{row.t:>8g}  {d.current_replicas:>7}  {d.desired_replicas:>6}{mark}  {d.reason}"
        )
    return "\n".join(lines)


def format_json(rows: Sequence[ReplayRow]) -> str:
    """A JSON array, one object per tick."""
    return json.dumps([row.to_json() for row in rows], indent=2, allow_nan=False, default=str)


def format_csv(rows: Sequence[ReplayRow], policy: ScalingPolicy) -> str:
    """CSV: t, currentReplicas, desiredReplicas, reason, then value and proposal per metric."""
    names = [spec.name for spec in policy.spec.metrics]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["t", "currentReplicas", "desiredReplicas", "reason"]
    for name in names:
        header += [f"{name}.value", f"{name}.proposal"]
    writer.writerow(header)
    for row in rows:
        d = row.decision
        line: list[object] = [f"{row.t:g}", d.current_replicas, d.desired_replicas, d.reason]
        for name in names:
            value = d.metric_values.get(name)
            proposal = d.metric_proposals.get(name)
            line += ["" if value is None else value, "" if proposal is None else proposal]
        writer.writerow(line)
    return out.getvalue().rstrip("\n")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


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
