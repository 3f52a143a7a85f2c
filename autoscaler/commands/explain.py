"""``nim-autoscaler explain --policy FILE``: one live decision now, with its full arithmetic.

Reads the policy (:mod:`autoscaler.policy.loader`), queries Prometheus once through
:class:`~autoscaler.metrics.prometheus.PrometheusSource`, builds an
:class:`~autoscaler.decision.types.Observation`, calls
:func:`autoscaler.decision.core.decide` with an empty history and prints the decision
(:func:`autoscaler.decision.explain.render_text`, or JSON). It never writes anything anywhere.
A policy with ``spec.capacity.profile`` also shows what was read from the sweep (text, or the
``capacityProfile`` object in JSON).

Where pods and replicas come from, without a cluster:

* ``--pods a,b,c`` names the target's pods (taken as Running and Ready);
* otherwise every pod of the policy's namespace that exports a known NIM/vLLM metric is taken as
  a Running, Ready pod of the target (one ``count by (pod)`` query). This over-counts when several
  targets share a namespace: pass ``--pods`` then;
* ``--replicas N`` is the current replica count (default: the number of pods).

:func:`build_observation` takes pods and replicas as plain values, so the in-cluster path (scale
and pods read from Kubernetes) can feed it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from autoscaler.decision.record import decision_record
from autoscaler.decision.resolved import DEFAULT_FLAGS, HpaFlags, resolve
from autoscaler.decision.types import (
    Decision,
    History,
    MetricObservation,
    NoSignal,
    Observation,
    PodInfo,
    PodPhase,
    PodSamples,
    TargetSample,
)
from autoscaler.metrics import names as metric_names
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient, QueryFailed
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.policy.models import ScalingPolicy
from autoscaler.promql import quote_string, regex_alternation, string_literal
from autoscaler.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--policy``, ``--name``, ``--replicas``, ``--pods``, ``--prometheus-url``, ..."""
    parser.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    parser.add_argument(
        "--name",
        metavar="NAMESPACE/NAME",
        help="which policy of the file (needed when it holds several)",
    )
    parser.add_argument(
        "--replicas", type=int, metavar="N", help="current replicas (default: number of pods)"
    )
    parser.add_argument(
        "--pods",
        metavar="NAME,NAME,...",
        help="the target's pods (default: every pod of the namespace exporting NIM/vLLM metrics)",
    )
    parser.add_argument(
        "--prometheus-url", metavar="URL", help="Prometheus base URL (overrides the environment)"
    )
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read /scale, pods and the saved decision history from Kubernetes (default: when "
        "neither --replicas nor --pods is given and a cluster configuration is found)",
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: KUBECONFIG)")
    parser.add_argument("--context", dest="kube_context", help="kubeconfig context")
    parser.add_argument(
        "--at", type=float, metavar="UNIX_SECONDS", help="evaluation time (default: now)"
    )
    parser.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="output format"
    )


def build_observation(
    metrics: Mapping[str, MetricObservation],
    *,
    pods: Sequence[PodInfo],
    spec_replicas: int,
    status_replicas: int | None = None,
) -> Observation:
    """An Observation from metric observations plus pods and replicas from any source.

    Args:
        metrics: Metric name -> observation (from a :class:`MetricSource`).
        pods: The target's pods (from ``--pods``, Prometheus series, or Kubernetes).
        spec_replicas: The target's ``spec.replicas``.
        status_replicas: The target's ``status.replicas`` (default: ``spec_replicas``).
    """
    return Observation(
        spec_replicas=spec_replicas,
        status_replicas=spec_replicas if status_replicas is None else status_replicas,
        pods=tuple(pods),
        metrics=dict(metrics),
    )


def ready_pods(names: Sequence[str]) -> tuple[PodInfo, ...]:
    """PodInfo for pods known only by name: taken as Running and Ready."""
    return tuple(PodInfo(name=name, phase=PodPhase.RUNNING, ready=True) for name in names)


async def discover_pods(
    client: PrometheusClient, policy: ScalingPolicy, now: float
) -> tuple[PodInfo, ...]:
    """Pods of the policy's namespace that export any known NIM/vLLM metric (no cluster needed).

    Raises:
        QueryFailed: Prometheus could not be queried.
    """
    names = string_literal(regex_alternation(metric_names.all_probe_names()))
    namespace = quote_string(policy.metadata.namespace)
    query = f'count by (pod) ({{__name__=~{names}, namespace="{namespace}"}})'
    series = await client.query(query, now)
    return ready_pods(sorted({s.labels["pod"] for s in series if s.labels.get("pod")}))


def observation_to_json(observation: MetricObservation) -> dict[str, Any]:
    """A metric observation as JSON-ready data."""
    if isinstance(observation, NoSignal):
        return {"noSignal": observation.reason.value, "detail": observation.detail}
    if isinstance(observation, TargetSample):
        return {
            "value": observation.value,
            "timestamp": observation.timestamp,
            "oldestSample": observation.oldest_sample,
            "pods": observation.pods,
            "series": observation.series,
            "query": observation.query,
        }
    assert isinstance(observation, PodSamples)
    return {
        "values": dict(observation.values),
        "rejected": {
            pod: {"noSignal": r.reason.value, "detail": r.detail}
            for pod, r in observation.rejected.items()
        },
        "timestamp": observation.timestamp,
        "oldestSample": observation.oldest_sample,
        "series": observation.series,
        "query": observation.query,
    }


def decision_to_json(decision: Decision, observation: Observation) -> dict[str, Any]:
    """The decision record (``docs/decision-schema.md``) plus the observation it was made from."""
    return {
        **decision_record(decision),
        "observation": {
            "pods": [p.name for p in observation.pods],
            "metrics": {name: observation_to_json(m) for name, m in observation.metrics.items()},
        },
    }


async def explain_once(
    source: PrometheusSource,
    policy: ScalingPolicy,
    *,
    now: float,
    pods: Sequence[PodInfo] | None = None,
    replicas: int | None = None,
    status_replicas: int | None = None,
    history: History | None = None,
    annotations: Mapping[str, str] | None = None,
    flags: HpaFlags = DEFAULT_FLAGS,
) -> tuple[Decision, Observation]:
    """Fetch the policy's metrics once and decide (with the saved history, if given).

    The explanation also carries the mode in force (``spec.mode`` or the target's
    ``nim-autoscaler.io/mode`` annotation) and, for a scale-down, the drain plan: which pods the
    controller would mark with ``pod-deletion-cost`` (``explain`` itself writes nothing).

    Args:
        source: The Prometheus metric source.
        policy: The policy.
        now: Evaluation time.
        pods: The target's pods; None: discovered from Prometheus series.
        replicas: Current replicas; None: the number of pods.
        status_replicas: The target's ``status.replicas`` (default: ``replicas``).
        history: The controller's saved history (default: empty, as a first tick).
        annotations: The target object's annotations (for the mode), when read.
        flags: The controller-wide HPA flags (``AUTOSCALER_HPA_*``).

    Raises:
        QueryFailed: Pods had to be discovered and Prometheus could not be queried.
    """
    from autoscaler.decision.core import decide  # noqa: PLC0415 - keeps `--help` cheap

    if pods is None:
        pods = await discover_pods(source.client, policy, now)
    request = MetricRequest(policy, tuple(pods), selector=policy.spec.selector)
    metrics = (await source.fetch([request], now))[policy.key]
    current = len(pods) if replicas is None else replicas
    observation = build_observation(
        metrics, pods=pods, spec_replicas=current, status_replicas=status_replicas
    )
    result = decide(resolve(policy, flags), observation, history or History(), now)
    return with_fleet_records(policy, result.decision, observation, annotations or {}), observation


def with_fleet_records(
    policy: ScalingPolicy,
    decision: Decision,
    observation: Observation,
    annotations: Mapping[str, str],
) -> Decision:
    """The decision with its mode and (for a scale-down) drain-plan records, as ``run`` adds."""
    from autoscaler.decision.drain import plan_drain  # noqa: PLC0415 - keeps `--help` cheap
    from autoscaler.decision.fleet import resolve_mode, with_records  # noqa: PLC0415

    choice = resolve_mode(policy.spec.mode, annotations)
    records: dict[str, Any] = {"mode": choice.to_json()}
    if decision.desired_replicas < decision.current_replicas:
        plan = plan_drain(policy, observation.pods, observation.metrics, decision.desired_replicas)
        records["drain"] = {**plan.to_json(), "written": "no: explain writes nothing"}
    return with_records(decision, records)


@dataclass(frozen=True)
class ClusterInputs:
    """What the cluster says about a policy's target (read-only)."""

    pods: tuple[PodInfo, ...]
    spec_replicas: int
    status_replicas: int
    history: History | None
    annotations: Mapping[str, str] = field(default_factory=dict)


async def read_cluster(settings: Settings, policy: ScalingPolicy) -> ClusterInputs:
    """Read the target's ``/scale``, its pods and the controller's saved history; write nothing.

    Raises:
        KubeConfigError: no cluster configuration.
        ActuationError: the target cannot be read (not found, forbidden, API errors).
    """
    from autoscaler.errors import ActuationError  # noqa: PLC0415 - cluster path only
    from autoscaler.kube.factory import connect  # noqa: PLC0415 - cluster path only

    namespace = policy.metadata.namespace
    read_only = settings.model_copy(
        update={"leader_election": False, "dry_run": True, "namespaces": [namespace]}
    )
    context = await connect(read_only)
    try:
        reading = await context.scale.get_scale(namespace, policy.spec.scale_target_ref)
        selector = policy.spec.selector or reading.selector
        if not selector:
            msg = "the target's /scale has no status.selector; set spec.selector in the policy"
            raise ActuationError(msg)
        context.pods.start()
        if not await context.pods.wait_synced(within=20.0):
            msg = f"could not list the pods of namespace {namespace!r} within 20 s"
            raise ActuationError(msg)
        pods = context.pods.pods(namespace, selector)
        history = await context.history.load(policy)
    finally:
        await context.close()
    return ClusterInputs(
        pods, reading.spec_replicas, reading.status_replicas, history, dict(reading.annotations)
    )


def _select(policies: Mapping[str, ScalingPolicy], name: str | None) -> ScalingPolicy | str:
    have = ", ".join(policies)
    if name is not None:
        policy = policies.get(name)
        return policy if policy is not None else f"no policy {name!r} (have: {have})"
    if len(policies) != 1:
        return f"the file holds {len(policies)} policies; choose one with --name ({have})"
    return next(iter(policies.values()))


def run(args: argparse.Namespace) -> int:
    """Make one decision now and print it. Exit 0 on success, 1 on input or query failure."""
    from autoscaler.decision.explain import render_text  # noqa: PLC0415 - keeps CLI import cheap
    from autoscaler.errors import ActuationError  # noqa: PLC0415 - as above
    from autoscaler.kube.client import KubeConfigError  # noqa: PLC0415 - as above
    from autoscaler.observability.logging import configure_logging  # noqa: PLC0415 - as above
    from autoscaler.policy.loader import format_errors, load_path  # noqa: PLC0415 - as above

    configure_logging(level="warning")
    loaded = load_path(args.policy)
    if not loaded.ok:
        for line in format_errors(loaded.errors):
            print(line, file=sys.stderr)
        return 1
    chosen = _select(loaded.by_key(), args.name)
    if isinstance(chosen, str):
        print(f"nim-autoscaler explain: {chosen}", file=sys.stderr)
        return 1
    profile = next((p.profile for p in loaded.policies if p.key == chosen.key), None)
    overrides: dict[str, Any] = {}
    if args.prometheus_url:
        overrides["prometheus_url"] = args.prometheus_url
    if args.kubeconfig:
        overrides["kubeconfig"] = args.kubeconfig
    if args.kube_context:
        overrides["kube_context"] = args.kube_context
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"nim-autoscaler explain: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    flags = HpaFlags(settings.hpa_tolerance, settings.hpa_downscale_stabilization)
    if args.replicas is not None and args.replicas < 0:
        print("nim-autoscaler explain: --replicas must be >= 0", file=sys.stderr)
        return 1
    pods = None
    if args.pods is not None:
        pods = ready_pods([p.strip() for p in args.pods.split(",") if p.strip()])
    now = args.at if args.at is not None else time.time()
    use_cluster = args.cluster
    if use_cluster is None:
        use_cluster = args.replicas is None and args.pods is None

    async def once() -> tuple[Decision, Observation]:
        cluster: ClusterInputs | None = None
        if use_cluster:
            try:
                cluster = await read_cluster(settings, chosen)
            except KubeConfigError as exc:
                if args.cluster:  # asked for explicitly
                    raise
                print(f"note: no cluster ({exc}); pods from Prometheus", file=sys.stderr)
        source = PrometheusSource.from_settings(settings)
        try:
            if cluster is not None:
                return await explain_once(
                    source,
                    chosen,
                    now=now,
                    pods=cluster.pods,
                    replicas=cluster.spec_replicas,
                    status_replicas=cluster.status_replicas,
                    history=cluster.history,
                    annotations=cluster.annotations,
                    flags=flags,
                )
            return await explain_once(
                source, chosen, now=now, pods=pods, replicas=args.replicas, flags=flags
            )
        finally:
            await source.close()

    try:
        decision, observation = asyncio.run(once())
    except QueryFailed as exc:
        print(f"nim-autoscaler explain: cannot list pods from Prometheus: {exc}", file=sys.stderr)
        return 1
    except (KubeConfigError, ActuationError) as exc:
        print(f"nim-autoscaler explain: cannot read the cluster: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        document = decision_to_json(decision, observation)
        if profile is not None:
            document["capacityProfile"] = profile.to_json()
        print(json.dumps(document, indent=2, default=str))
    else:
        print(render_text(decision))
        if profile is not None:
            print(f"\ncapacity profile {profile.path}:\n  {profile.capacity.describe()}")
            for note in profile.capacity.notes:
                print(f"  note: {note}")
        print("\nmetric inputs:")
        for name, metric in observation.metrics.items():
            print(f"  {name}: {json.dumps(observation_to_json(metric), default=str)}")
    return 0
