"""Builds the Kubernetes adapters from :class:`~autoscaler.settings.Settings` in one call.

``await connect(settings)`` returns a :class:`KubeContext` holding one API client and the port
implementations the control loop (:mod:`autoscaler.controller`) uses: the scale client, the
pod cache, the recorder, the history store and the leader gate. ``start()`` launches the
background tasks (pod watches, leader election); ``close()`` stops them (releasing the Lease)
and closes the HTTP session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from autoscaler.clock import Clock, SystemClock
from autoscaler.controller.ports import LeaderGate
from autoscaler.kube.annotate import KubePodAnnotator
from autoscaler.kube.client import DEFAULT_TIMEOUT, KubeApi
from autoscaler.kube.events import EventSink
from autoscaler.kube.history import KubeHistoryStore
from autoscaler.kube.leader import LeaderElector
from autoscaler.kube.pods import PodCache
from autoscaler.kube.policies import PolicyResources
from autoscaler.kube.policy_status import PolicyStatusWriter
from autoscaler.kube.recorder import KubeRecorder
from autoscaler.kube.scale import KubeScaleClient
from autoscaler.kube.shards import ShardManager
from autoscaler.kube.targets import TargetCache
from autoscaler.settings import Settings

log = structlog.get_logger(__name__)

CLOSE_FLUSH_TIMEOUT = 10.0
"""Seconds the history queued at a graceful stop may take to write."""


class AlwaysLeader:
    """:class:`~autoscaler.controller.ports.LeaderGate` without election (single instance)."""

    def is_leader(self) -> bool:
        """Always True."""
        return True


@dataclass
class KubeContext:
    """The Kubernetes side of one controller process."""

    api: KubeApi
    scale: KubeScaleClient
    """:class:`~autoscaler.controller.ports.ScaleClient`."""
    pods: PodCache
    """:class:`~autoscaler.controller.ports.PodSource`."""
    targets: TargetCache
    """:class:`~autoscaler.controller.ports.TargetSource` (watches start on first lookup)."""
    recorder: KubeRecorder
    """:class:`~autoscaler.controller.ports.Recorder`."""
    history: KubeHistoryStore
    """:class:`~autoscaler.controller.ports.HistoryStore`."""
    leader: LeaderGate
    """:class:`LeaderElector`, :class:`~autoscaler.kube.shards.ShardManager` (``shards > 1``),
    or :class:`AlwaysLeader` when election is off or in dry-run."""
    annotator: KubePodAnnotator | None = None
    """:class:`~autoscaler.controller.ports.PodAnnotator` (None: drain-aware scale-down off)."""
    policies: PolicyResources | None = None
    """The ScalingPolicy resources (list+watch), beside the policy files."""
    policy_status: PolicyStatusWriter | None = None
    """Writes the ScalingPolicy resources' /status and Events."""

    def start(self) -> None:
        """Start the pod and policy watches and (if enabled) leader election in background tasks."""
        self.pods.start()
        if self.policies is not None:
            self.policies.start()
        if isinstance(self.leader, LeaderElector | ShardManager):
            self.leader.start()

    async def close(self) -> None:
        """Write the queued history, stop leader election (releasing the Lease), stop the
        watches, close the client."""
        try:
            try:
                async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
                    await self.history.flush(force=True)
            except Exception as exc:  # noqa: BLE001 - the Lease must still be released
                log.warning("history_final_flush_failed", error=str(exc))
            if isinstance(self.leader, LeaderElector | ShardManager):
                await self.leader.stop()
            await self.pods.stop()
            await self.targets.stop()
            if self.policies is not None:
                await self.policies.stop()
        finally:
            await self.api.close()


async def connect(
    settings: Settings,
    *,
    clock: Clock | None = None,
    request_timeout: float = DEFAULT_TIMEOUT,
    scale_retry_budget: float = 10.0,
) -> KubeContext:
    """Configure the client and build every adapter (nothing is started yet; call ``start``).

    Leader election is used when ``settings.leader_election`` is on and the controller is not in
    dry-run (a dry run never writes, not even the Lease). The history ConfigMaps
    (``settings.history_configmap``-0 .. -N) and the Lease live in
    ``settings.leader_election_namespace`` (the controller's own namespace).

    Args:
        settings: controller settings (kubeconfig, context, namespaces, election timings).
        clock: time source for Events and election (default: wall clock).
        request_timeout: total timeout of one API request, seconds.
        scale_retry_budget: seconds one ``/scale`` call may spend retrying 429/5xx/timeouts.

    Raises:
        KubeConfigError: no usable cluster configuration.
    """
    clock = clock or SystemClock()
    api = await KubeApi.from_settings(settings, request_timeout=request_timeout)
    scale = KubeScaleClient(
        api,
        request_timeout=min(request_timeout, scale_retry_budget),
        retry_budget=scale_retry_budget,
    )
    leader: LeaderGate
    shards: ShardManager | None = None
    if settings.leader_election and not settings.dry_run and settings.shards > 1:
        leader = shards = ShardManager(
            None,
            settings.leader_election_namespace,
            settings.leader_election_lease_name,
            settings.identity,
            shards=settings.shards,
            lease_duration=settings.leader_election_lease_duration,
            renew_deadline=settings.leader_election_renew_deadline,
            retry_period=settings.leader_election_retry_period,
            clock=clock,
            # Its own thread and client: renewals must not wait for a long tick.
            api_factory=lambda: KubeApi.from_settings(settings, request_timeout=request_timeout),
        )
    elif settings.leader_election and not settings.dry_run:
        leader = LeaderElector(
            api,
            settings.leader_election_namespace,
            settings.leader_election_lease_name,
            settings.identity,
            lease_duration=settings.leader_election_lease_duration,
            renew_deadline=settings.leader_election_renew_deadline,
            retry_period=settings.leader_election_retry_period,
            clock=clock,
        )
    else:
        leader = AlwaysLeader()
    # One Event sink for the targets' and the ScalingPolicies' Events (one correlation cache).
    events = EventSink(api, clock=clock, identity=settings.identity)
    history = KubeHistoryStore(
        api,
        settings.leader_election_namespace,
        name=settings.history_configmap,
        shards=settings.history_shards,
        controller_shards=settings.shards,
        owns_shard=shards.owns_shard if shards is not None else None,
        save_interval=settings.history_save_interval,
    )
    if shards is not None:
        shards.on_gain = history.invalidate
    context = KubeContext(
        api=api,
        scale=scale,
        pods=PodCache(api, settings.namespaces),
        targets=TargetCache(api, scale.discovery, settings.namespaces),
        recorder=KubeRecorder(api, scale.discovery, clock=clock, events=events),
        history=history,
        leader=leader,
        annotator=KubePodAnnotator(api) if settings.drain_aware else None,
        policies=PolicyResources(api, settings.namespaces),
        policy_status=PolicyStatusWriter(api, clock=clock, events=events),
    )
    log.info(
        "kube_connected",
        namespaces=settings.namespaces or "all",
        leader_election=isinstance(leader, LeaderElector | ShardManager),
        shards=settings.shards,
        identity=settings.identity,
    )
    return context
