"""The live controller: wires the Kubernetes and Prometheus adapters into the control loop.

``nim-autoscaler run`` builds one :class:`~autoscaler.settings.Settings` and calls
:func:`run_controller`. Everything here is assembly: the policy directory (hot reload), the
Prometheus source (:mod:`autoscaler.metrics.prometheus`), the Kubernetes context
(:mod:`autoscaler.kube.factory`: /scale, pod cache, Events/status, history, leader election), the
health/metrics server, and the :class:`~autoscaler.controller.runner.Runner` that ticks the
:class:`~autoscaler.controller.loop.ControlLoop` until SIGTERM.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from autoscaler.clock import Clock, SystemClock
from autoscaler.controller import heap
from autoscaler.controller.loop import ControlLoop, LoopTimeouts
from autoscaler.controller.runner import Runner
from autoscaler.decision.resolved import HpaFlags
from autoscaler.decision.types import Decision
from autoscaler.kube.factory import KubeContext, connect
from autoscaler.kube.policies import PolicyResources
from autoscaler.kube.policy_status import ResourceAwareRecorder
from autoscaler.kube.shards import ShardManager
from autoscaler.metrics.base import MetricRequest, PolicyMetrics
from autoscaler.metrics.client import redact_url
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.observability.server import HealthChecks, HealthServer
from autoscaler.policy.budget import ScalingBudget
from autoscaler.policy.loader import PolicyDirectory
from autoscaler.policy.models import ScalingPolicy
from autoscaler.policy.sources import (
    MergedPolicies,
    ResourcePolicy,
    ResourceProblem,
    merge_sources,
)
from autoscaler.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class PolicyFeed:
    """The policies in force: the directory's files (hot reload) and the ScalingPolicy resources.

    Re-read once per tick. A file that becomes invalid keeps its last good policies in force;
    its errors are counted in ``nim_autoscaler_policy_errors`` and logged once when the file
    changes. Resources come from the watch (:mod:`autoscaler.kube.policies`) and are merged by
    :func:`~autoscaler.policy.sources.merge_sources`: a resource and a file with the same
    ``namespace/name`` both stay out of force (reported on both sides); an invalid resource is
    reported on its own status. Until the resources have been listed once, no policy runs (so
    which policy governs a target never depends on start-up timing).
    """

    directory: PolicyDirectory
    monitor: ControllerMetrics | None = None
    resources: PolicyResources | None = None
    report: Callable[[Sequence[ResourceProblem]], Coroutine[Any, Any, None]] | None = None
    """Writes the status of resources that do not run (set only when the controller may write)."""
    may_write: Callable[[], bool] = lambda: True
    """True while this instance may write (the leader, not in dry-run)."""
    owns: Callable[[str], bool] | None = None
    """With sharding across replicas: whether this replica owns a namespace (it reports only
    the problems of resources in owned namespaces)."""
    forget: Callable[[set[str]], None] | None = None
    """Told the uids of the resources that exist (the status writer drops the others)."""
    current: list[ScalingPolicy] = field(default_factory=list)
    budgets: list[ScalingBudget] = field(default_factory=list)
    merged: MergedPolicies = field(default_factory=MergedPolicies)
    loaded_once: bool = False
    error_files: int = 0
    _reporting: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _conflicts: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def refresh(self) -> None:
        """Re-read changed files, merge the resources, report what does not run."""
        result = self.directory.reload()
        self.budgets = [loaded.budget for loaded in result.budgets]
        if self.resources is not None and not self.resources.synced():
            self.current = []
            return
        resources = self.resources.resources() if self.resources is not None else []
        if self.forget is not None:
            self.forget({r.uid for r in resources})
        self.merged = merge_sources(result, resources)
        self.current = list(self.merged.policies)
        self.error_files = len(result.errors) + len(self.merged.problems)
        self.loaded_once = True
        if self.merged.conflicts != self._conflicts:
            for key, file in self.merged.conflicts.items():
                if self._conflicts.get(key) != file:
                    log.warning(
                        "policy_conflict",
                        policy=key,
                        file=file,
                        message="a ScalingPolicy resource and a policy file define the same "
                        "policy; neither is applied until one is removed",
                    )
            self._conflicts = dict(self.merged.conflicts)
        if self.monitor is not None:
            self.monitor.policies_loaded.set(len(self.current))
            self.monitor.policy_errors.set(self.error_files)
        self._report_problems()

    def _report_problems(self) -> None:
        problems: Sequence[ResourceProblem] = self.merged.problems
        if self.owns is not None:
            owns = self.owns
            problems = [p for p in problems if owns(p.resource.namespace)]
        if self.report is None or not problems or not self.may_write():
            return
        if self._reporting is not None and not self._reporting.done():
            return  # the previous report is still being written
        report = self.report

        async def guarded() -> None:
            try:
                await report(problems)
            except Exception:  # reporting must never stop the loop; retried next tick
                log.exception("policy_problems_report_failed", problems=len(problems))

        self._reporting = asyncio.get_running_loop().create_task(guarded(), name="policy-problems")

    def origin(self, key: str) -> ResourcePolicy | None:
        """The resource a policy in force came from (None: a file)."""
        return self.merged.resources.get(key)

    def policies(self) -> list[ScalingPolicy]:
        """The policies in force (the loop's provider)."""
        return self.current

    def budget_list(self) -> list[ScalingBudget]:
        """The ``ScalingBudget`` documents in force (the loop's budget provider)."""
        return self.budgets


class CountingSource:
    """The Prometheus source, counting the queries each fetch sent in the controller's metrics."""

    def __init__(self, source: PrometheusSource) -> None:
        self.source = source
        self.monitor: ControllerMetrics | None = None

    async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
        """Fetch, then add the number of queries sent to ``nim_autoscaler_prometheus_queries``."""
        try:
            return await self.source.fetch(requests, now)
        finally:
            stats = self.source.last_stats
            if self.monitor is not None and stats is not None:
                self.monitor.prometheus_queries.inc(stats.queries)

    async def close(self) -> None:
        """Close the underlying source."""
        await self.source.close()


POLICY_LIST_WAIT = 10.0
"""Seconds :meth:`Controller.start` waits for the first list of ScalingPolicy resources."""


def _timeouts(settings: Settings) -> LoopTimeouts:
    """Phase budgets that fit inside one interval."""
    budget = max(settings.interval, 1.0)
    return LoopTimeouts(
        scale_read=min(5.0, budget * 0.3),
        metrics=min(max(settings.prometheus_timeout * 1.6, 2.0), budget * 0.6),
        scale_write=min(10.0, budget * 0.5),
        record=min(5.0, budget * 0.3),
    )


@dataclass
class Controller:
    """A running controller's parts (returned by :func:`build_controller` for tests)."""

    settings: Settings
    feed: PolicyFeed
    kube: KubeContext
    metrics: PrometheusSource
    loop: ControlLoop
    runner: Runner
    registry: CollectorRegistry
    health: HealthServer | None
    started_at: float = field(default_factory=time.monotonic)

    def live(self) -> tuple[bool, str]:
        """Liveness: the loop has ticked recently (or is still within its first interval)."""
        limit = max(3 * self.settings.interval, 60.0)
        last = self.loop.last_tick_at or self.started_at
        age = time.monotonic() - last
        if age > limit:
            return False, f"no tick for {age:.0f} s (limit {limit:.0f} s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Readiness: policies loaded and pod caches synced."""
        if not self.feed.loaded_once:
            return False, "policies not loaded yet"
        if not self.kube.pods.synced():
            return False, "pod caches not synced yet"
        if self.kube.policies is not None and not self.kube.policies.synced():
            return False, "ScalingPolicy resources not listed yet"
        return True, "ok"

    async def start(self) -> None:
        """Start watches, leader election and the health server.

        Returns once the ScalingPolicy resources have been listed (or after
        :data:`POLICY_LIST_WAIT` seconds), so the first tick already sees them: which policy
        governs a target never depends on how fast the first list answered.
        """
        self.kube.start()
        if self.health is not None:
            await self.health.start()
        if self.kube.policies is not None and not await self.kube.policies.wait_synced(
            within=POLICY_LIST_WAIT
        ):
            log.warning("ScalingPolicy resources not listed yet; their policies wait for it")

    async def close(self) -> None:
        """Release the lease, stop watches, close clients and the health server."""
        try:
            await self.kube.close()
        finally:
            await self.metrics.close()
            if self.health is not None:
                await self.health.stop()


async def build_controller(
    settings: Settings,
    *,
    on_decision: Callable[[Decision], None] | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    max_ticks: int | None = None,
) -> Controller:
    """Assemble (but do not start) a controller from settings."""
    heap.tune_allocator()
    clock = clock or SystemClock()
    registry = registry if registry is not None else CollectorRegistry()
    timeouts = _timeouts(settings)
    # The /scale client's own retries must end inside the loop's budget, so a persistent API
    # error is reported as itself and not as the loop's timeout.
    kube = await connect(
        settings,
        clock=clock,
        scale_retry_budget=0.8 * min(timeouts.scale_read, timeouts.scale_write),
    )
    prometheus = PrometheusSource.from_settings(settings)
    metrics = CountingSource(prometheus)
    feed = PolicyFeed(
        PolicyDirectory(settings.policy_dir, keep_nodes=False), resources=kube.policies
    )
    recorder: ResourceAwareRecorder | None = None
    if kube.policy_status is not None:
        writer = kube.policy_status
        recorder = ResourceAwareRecorder(kube.recorder, writer, feed.origin)
        feed.forget = writer.forget
        if not settings.dry_run:
            feed.report = writer.report
            feed.may_write = kube.leader.is_leader
    loop = ControlLoop(
        policies=feed.policies,
        metrics=metrics,
        scale=kube.scale,
        pods=kube.pods,
        targets=kube.targets,
        recorder=recorder if recorder is not None else kube.recorder,
        history_store=kube.history,
        leader=kube.leader,
        dry_run=settings.dry_run,
        registry=registry,
        on_decision=on_decision,
        timeouts=timeouts,
        annotator=kube.annotator,
        drain_aware=settings.drain_aware,
        budgets=feed.budget_list,
        hpa_flags=HpaFlags(settings.hpa_tolerance, settings.hpa_downscale_stabilization),
        manage_heap=True,
    )
    feed.monitor = loop.monitor
    if isinstance(kube.leader, ShardManager):
        # A shard given up is released once the tick in progress has saved its history.
        kube.leader.quiesce = loop.wait_idle
        feed.owns = kube.leader.owns
    metrics.monitor = loop.monitor
    runner = Runner(
        loop=loop,
        clock=clock,
        interval=settings.interval,
        before_tick=feed.refresh,
        max_ticks=max_ticks,
        phase=prometheus.tick_phase if settings.align_to_rules else None,
    )
    controller = Controller(
        settings=settings,
        feed=feed,
        kube=kube,
        metrics=prometheus,
        loop=loop,
        runner=runner,
        registry=registry,
        health=None,
    )
    if settings.metrics_port:
        controller.health = HealthServer(
            registry,
            HealthChecks(live=controller.live, ready=controller.ready),
            settings.metrics_bind_address,
            settings.metrics_port,
        )
    return controller


async def run_controller(
    settings: Settings,
    *,
    on_decision: Callable[[Decision], None] | None = None,
    install_signals: bool = True,
) -> int:
    """Run until SIGTERM/SIGINT: finish the tick, release the lease, exit 0."""
    controller = await build_controller(settings, on_decision=on_decision)
    log.info(
        "controller starting",
        policy_dir=str(settings.policy_dir),
        interval=settings.interval,
        dry_run=settings.dry_run,
        prometheus=redact_url(settings.prometheus_url),
        namespaces=settings.namespaces or "all",
    )
    try:
        await controller.start()
        if install_signals:
            controller.runner.install_signal_handlers()
        synced = await controller.kube.pods.wait_synced(within=max(settings.interval, 30.0))
        if not synced:
            log.warning("pod caches not synced yet; starting the loop anyway")
        await controller.runner.run()
    except asyncio.CancelledError:
        log.info("controller cancelled")
        raise
    finally:
        await controller.close()
        log.info("controller stopped", ticks=controller.runner.ticks)
    return 0
