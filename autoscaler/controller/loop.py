"""The control loop: one ``tick(now)`` fetches, decides and acts for every policy.

This is the only place that knows about order and time; it runs unchanged in the live controller
(Kubernetes + Prometheus adapters), in dry-run, and in the simulator (simulated adapters and a
virtual clock). It talks to the world only through the ports in :mod:`autoscaler.controller.ports`
and :class:`autoscaler.metrics.base.MetricSource`, and decides only through
:func:`autoscaler.decision.core.decide`.

A tick, for all policies at once:

1. take each target's scale from the watch-fed target cache, reading ``/scale`` (bounded
   concurrency, per-call timeout) only for targets the cache cannot vouch for;
2. take each target's pods from the watch-fed cache;
3. load the decision history of policies seen for the first time (durable store);
4. fetch every policy's metrics with ONE batched ``MetricSource.fetch`` (timeout: no signal);
5. decide per policy (pure);
6. act: write ``/scale`` when the desired count differs, unless dry-run or not leader. The
   write is guarded by the reading the decision was made from: if another writer changed the
   count meanwhile (409), the policy is decided again from the fresh reading; a rescale is
   recorded only for a write that changed the count (the rest are counted as ``no-op``);
7. record: Events and status, history persistence, the controller's own metrics, one log line.

One policy's failure (API error, bad data, an exception in any step) never affects another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import structlog
from prometheus_client import CollectorRegistry

from autoscaler.controller import heap
from autoscaler.controller.ports import (
    HistoryStore,
    LeaderGate,
    Outcome,
    PodAnnotator,
    PodSource,
    Recorder,
    ScaleClient,
    ScaleReading,
    ShardGate,
    TargetSource,
    WriteResult,
)
from autoscaler.decision.budget import Claim, Grant, allocate, gpus_per_replica
from autoscaler.decision.core import decide, record_rescale
from autoscaler.decision.drain import DrainPlan, disabled_plan, plan_drain
from autoscaler.decision.fleet import (
    ModeChoice,
    external_rescale_record,
    paused_decision,
    resolve_mode,
    with_condition,
    with_records,
)
from autoscaler.decision.resolved import DEFAULT_FLAGS, HpaFlags, ResolvedPolicy, resolve
from autoscaler.decision.types import (
    Condition,
    ConditionType,
    Decision,
    History,
    MetricObservation,
    NoSignal,
    NoSignalReason,
    Observation,
    PodInfo,
    resumed,
)
from autoscaler.errors import ActuationError, Forbidden, TargetNotFound
from autoscaler.metrics.base import MetricRequest, MetricSource
from autoscaler.observability.fleet_metrics import FleetMetrics
from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy.budget import ScalingBudget
from autoscaler.policy.models import PolicyMode, ScalingPolicy

log = structlog.get_logger(__name__)

_QUERY_FAILURES = frozenset({NoSignalReason.QUERY_ERROR, NoSignalReason.TIMEOUT})
"""No-signal reasons that are faults of the metric pipeline (counted as errors), as opposed
to what the data says (empty, NaN, stale...)."""

PolicyProvider = Callable[[], Sequence[ScalingPolicy]]
"""Returns the policies in force now (the hot-reloading policy directory, or a fixed list)."""

BudgetProvider = Callable[[], Sequence[ScalingBudget]]
"""Returns the ``ScalingBudget`` documents in force now."""


@dataclass(frozen=True, slots=True)
class TickResult:
    """What happened to one policy in one tick."""

    policy: str
    """``namespace/name``."""
    decision: Decision | None
    """The decision (None when no decision could be made: scale unreadable, not leader)."""
    outcome: Outcome
    error: str | None = None
    observation: Observation | None = field(default=None, repr=False)
    """What was observed (for dry-run printing and tests)."""


@dataclass(slots=True)
class _Work:
    """Per-policy scratch state inside one tick."""

    policy: ScalingPolicy
    reading: ScaleReading | None = None
    selector: str | None = None
    pods: tuple[PodInfo, ...] = ()
    error: str | None = None
    error_kind: str | None = None
    decision: Decision | None = None
    observation: Observation | None = None
    outcome: Outcome = Outcome.UNCHANGED
    mode: ModeChoice | None = None
    """The mode in force this tick (spec.mode or the target's annotation)."""
    records: dict[str, object] = field(default_factory=dict)
    """Fleet records added to the decision's explanation (mode, externalRescale, drain...)."""
    drain: DrainPlan | None = None
    marked: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Deletion costs written this tick: pod -> (the cost written, the value before the tick)."""
    metrics: Mapping[str, MetricObservation] | None = None
    """The metrics the decision was made from (to decide again after a conflict)."""
    history_before: History | None = None
    """The history the decision started from (to decide again after a conflict)."""
    history_unknown: bool = False
    """The saved history could not be read: this tick's history is not saved (it must not
    overwrite the saved one) and the load is retried next tick."""
    grants: list[tuple[str, Grant]] = field(default_factory=list)
    """(budget, grant) of the ScalingBudgets covering the policy this tick: a decision made
    again after a conflict is held to them too."""


@dataclass(frozen=True, slots=True)
class LoopTimeouts:
    """Per-phase time budgets, seconds."""

    scale_read: float = 5.0
    """One ``/scale`` read."""
    metrics: float = 8.0
    """The whole batched metric fetch."""
    scale_write: float = 10.0
    """One ``/scale`` write (including conflict retries)."""
    record: float = 5.0
    """Events, status and history writes of one policy."""


REDECIDE_ROUNDS = 2
"""Times one policy is decided again from a fresh reading after losing a write race, per tick."""


class ControlLoop:
    """Fetch -> decide -> act -> record, for every policy, once per ``tick``."""

    def __init__(
        self,
        *,
        policies: PolicyProvider,
        metrics: MetricSource,
        scale: ScaleClient,
        pods: PodSource,
        targets: TargetSource | None = None,
        recorder: Recorder | None = None,
        history_store: HistoryStore | None = None,
        leader: LeaderGate | None = None,
        dry_run: bool = False,
        registry: CollectorRegistry | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        timeouts: LoopTimeouts | None = None,
        concurrency: int = 32,
        log_ticks: bool = True,
        annotator: PodAnnotator | None = None,
        drain_aware: bool = True,
        budgets: BudgetProvider | None = None,
        hpa_flags: HpaFlags = DEFAULT_FLAGS,
        manage_heap: bool = False,
    ) -> None:
        self._policies = policies
        self._metrics = metrics
        self._scale = scale
        self._pods = pods
        self._targets = targets
        self._recorder = recorder
        self._store = history_store
        self._leader = leader
        self._owns: Callable[[str], bool] | None = (
            leader.owns if isinstance(leader, ShardGate) else None
        )
        """With sharding across replicas: whether this replica owns a namespace's policies."""
        self._dry_run = dry_run
        self._on_decision = on_decision
        self._timeouts = timeouts or LoopTimeouts()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._log_ticks = log_ticks
        self._annotator = annotator
        self._drain_aware = drain_aware
        self._budgets = budgets
        self._budget_names: set[str] = set()
        self._hpa_flags = hpa_flags
        self._manage_heap = manage_heap
        """Freeze the collector's view after the first tick with policies and trim the C heap
        after every tick (:mod:`.heap`; the live controller does, tests and the simulator do
        not)."""
        self._frozen = False
        self.monitor = ControllerMetrics(registry) if registry is not None else None
        self.fleet_monitor = FleetMetrics(registry) if registry is not None else None
        self._replicas_seen: dict[str, int] = {}
        """Policy key -> the target's spec.replicas as last read or written by this controller
        (to tell a rescale by someone else)."""
        self._histories: dict[str, History] = {}
        self._unsaved: dict[str, History] = {}
        """Histories of policies whose saved history could not be read (never saved; used
        only if the retried load finds none)."""
        self._known: dict[str, ScalingPolicy] = {}
        self._resolved: dict[str, tuple[ScalingPolicy, ResolvedPolicy]] = {}
        """Policy key -> (the policy object, its resolved form): resolved once per loaded
        policy, again only when the policy in force is a new object (an edit, a reload)."""
        self._owned_keys: set[str] = set()
        """Keys of the policies this instance owned (was leader for) last tick."""
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_tick_at: float | None = None
        """Wall time (``time.monotonic``) at which the last tick finished."""

    @property
    def dry_run(self) -> bool:
        """True if the loop never writes to the cluster."""
        return self._dry_run

    def history(self, policy_key: str) -> History | None:
        """The in-memory history of a policy (for tests and ``explain``)."""
        return self._histories.get(policy_key)

    async def tick(self, now: float) -> list[TickResult]:
        """Run one control-loop iteration at time ``now`` for every policy in force."""
        self._idle.clear()
        try:
            return await self._tick(now)
        finally:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no tick is in progress (at once between ticks)."""
        await self._idle.wait()

    async def _tick(self, now: float) -> list[TickResult]:
        started = time.monotonic()
        if self._frozen:
            # What the last tick made is garbage by now (its results released): a short walk.
            heap.collect_young()
        policies = list(self._policies())
        self._forget_removed(policies)
        leader = self._leader.is_leader() if self._leader is not None else True
        if self.monitor is not None:
            self.monitor.is_leader.set(1.0 if leader else 0.0)
        policies, others = self._take_owned(policies, leader)
        skipped = [TickResult(p.key, None, Outcome.NOT_LEADER) for p in others]
        if not policies and others:
            return skipped

        if not self._pods.synced():
            log.warning("pod cache not synced yet; holding every policy this tick")
            return [
                TickResult(p.key, None, Outcome.FAILED, "pod cache not synced yet")
                for p in policies
            ] + skipped
        work = [_Work(policy) for policy in policies]
        # The target cache and the histories in memory answer most policies at once: a task
        # each only for the reads that go to the API server.
        await self._bounded([w for w in work if not self._cached_reading(w)], self._read_scale)
        for item in work:
            self._select_pods(item)
        await self._bounded(
            [w for w in work if w.policy.key not in self._histories],
            lambda item: self._load_history(item, now),
        )
        for item in work:
            self._observe_fleet(item)
        deciding = [w for w in work if w.error is None and not self._paused(w)]
        observed = await self._fetch_metrics(deciding, now)
        for item in work:
            if item.error is None and self._paused(item):
                self._pause(item, now)
            elif item.error is None:
                self._decide(item, observed.get(item.policy.key, {}), now)
        self._apply_budgets(work)
        for item in work:
            if item.error is None and not self._paused(item):
                self._plan_drain(item, observed.get(item.policy.key, {}))
        for item in work:
            if item.decision is not None and item.records:
                item.decision = with_records(item.decision, item.records)
        # Most policies write nothing: settled inline, a task each only for the writes.
        await self._bounded(
            [w for w in work if not self._settled(w, now)], lambda item: self._act(item, now)
        )
        # Most policies have nothing to write either: their records are settled inline, a task
        # each only for those that may write; then every history is queued in one pass.
        recording = [item for item in work if self._note(item)]
        await self._bounded(recording, self._record)
        await self._save_histories(work)
        await self._flush_history(work)
        results = [
            TickResult(w.policy.key, w.decision, w.outcome, w.error, w.observation) for w in work
        ]
        if self._log_ticks:
            for result, item in zip(results, work, strict=True):
                self._log(result, item)
        results.extend(skipped)
        if self.monitor is not None:
            self.monitor.tick_duration.observe(time.monotonic() - started)
            self.monitor.last_successful_tick.set(time.time())
        self.last_tick_at = time.monotonic()
        if self._manage_heap and work:
            if not self._frozen:
                self._frozen = True
                heap.freeze()
                heap.tune_collector()
            heap.trim()
        return results

    # ---- phases --------------------------------------------------------------------------

    def _cached_reading(self, item: _Work) -> bool:
        """Take the target's reading from the watch-fed cache; False: read ``/scale``."""
        if self._targets is None:
            return False
        ref = item.policy.spec.scale_target_ref
        try:
            item.reading = self._targets.lookup(item.policy.metadata.namespace, ref)
        except Exception:  # a cache fault must not hide the target: read /scale instead
            log.exception("target cache lookup failed", policy=item.policy.key)
        return item.reading is not None

    async def _read_scale(self, item: _Work) -> None:
        """Read the target's ``/scale`` (the cache had no reading)."""
        ref = item.policy.spec.scale_target_ref
        try:
            async with asyncio.timeout(self._timeouts.scale_read):
                item.reading = await self._scale.get_scale(item.policy.metadata.namespace, ref)
        except TargetNotFound as exc:
            self._fail(item, "scale_read", f"FailedGetScale: target not found: {exc}")
        except Forbidden as exc:
            self._fail(item, "scale_read", f"FailedGetScale: forbidden: {exc}")
        except TimeoutError:
            self._fail(item, "scale_read", "FailedGetScale: timed out reading /scale")
        except ActuationError as exc:
            self._fail(item, "scale_read", f"FailedGetScale: {exc}")
        except Exception as exc:  # noqa: BLE001 - one target's fault must not stop the others
            self._fail(
                item, "scale_read", f"FailedGetScale: unexpected {type(exc).__name__}: {exc}"
            )

    def _select_pods(self, item: _Work) -> None:
        if item.error is not None or item.reading is None:
            return
        selector = item.policy.spec.selector or item.reading.selector
        if not selector:
            self._fail(
                item,
                "pods",
                "InvalidSelector: the target's /scale has no status.selector; "
                "set spec.selector in the policy",
            )
            return
        item.selector = selector
        try:
            item.pods = tuple(self._pods.pods(item.policy.metadata.namespace, selector))
        except Exception as exc:  # noqa: BLE001 - a bad selector must not stop other policies
            self._fail(item, "pods", f"InvalidSelector: {selector!r}: {exc}")

    async def _load_history(self, item: _Work, now: float) -> None:
        key = item.policy.key
        if key in self._histories:
            return
        loaded: History | None = None
        if self._store is not None:
            try:
                async with asyncio.timeout(self._timeouts.record):
                    loaded = await self._store.load(item.policy)
            except Exception as exc:  # noqa: BLE001 - retried next tick; others go on
                # The saved history is unknown, not absent: decide from what this process has
                # (a fresh history holds the current count against scale-down), never save it
                # over the stored one, and load again next tick.
                item.history_unknown = True
                self._count_error(item.policy, "history")
                log.warning(
                    "history load failed; not saved, retried next tick",
                    policy=key,
                    error=str(exc),
                )
                self._histories[key] = self._unsaved.get(key) or History()
                return
        unsaved = self._unsaved.pop(key, None)
        if loaded is not None:
            self._histories[key] = resumed(loaded, now)
        else:
            self._histories[key] = unsaved or History()

    async def _fetch_metrics(
        self, work: Sequence[_Work], now: float
    ) -> Mapping[str, Mapping[str, MetricObservation]]:
        if not work:
            return {}
        requests = [MetricRequest(w.policy, w.pods, w.selector) for w in work]
        try:
            async with asyncio.timeout(self._timeouts.metrics):
                observed = await self._metrics.fetch(requests, now)
        except TimeoutError:
            reason, detail = NoSignalReason.TIMEOUT, "metric fetch exceeded its time budget"
        except Exception as exc:  # noqa: BLE001 - a broken source means no signal, not a crash
            reason, detail = NoSignalReason.QUERY_ERROR, f"{type(exc).__name__}: {exc}"
        else:
            # A source reports failed queries as no signal rather than raising: count them.
            for item in work:
                failed = (
                    o.reason in _QUERY_FAILURES
                    for o in observed.get(item.policy.key, {}).values()
                    if isinstance(o, NoSignal)
                )
                if any(failed):
                    self._count_error(item.policy, "metrics")
            return observed
        log.warning("metric fetch failed", reason=reason.value, detail=detail)
        for item in work:
            self._count_error(item.policy, "metrics")
        nothing = NoSignal(reason, detail)
        return {
            w.policy.key: {m.name: nothing for m in w.policy.spec.fetched_metrics} for w in work
        }

    def _decide(
        self,
        item: _Work,
        metrics: Mapping[str, MetricObservation],
        now: float,
        *,
        history: History | None = None,
    ) -> None:
        """Decide for one policy; ``history`` (default: the current one) is where it starts."""
        assert item.reading is not None
        observation = Observation(
            spec_replicas=item.reading.spec_replicas,
            status_replicas=item.reading.status_replicas,
            pods=item.pods,
            metrics=metrics,
        )
        item.observation = observation
        key = item.policy.key
        item.metrics = metrics
        start = history if history is not None else self._histories[key]
        item.history_before = start
        try:
            result = decide(self._resolve(item.policy), observation, start, now)
        except Exception as exc:  # a decision bug must not take the loop down
            item.decision = None
            self._fail(item, "decision", f"internal error in decision: {type(exc).__name__}: {exc}")
            log.exception("decision failed", policy=key)
            return
        item.decision = result.decision
        self._histories[key] = result.history

    def _resolve(self, policy: ScalingPolicy) -> ResolvedPolicy:
        """The policy's resolved form, built when this policy object is first decided."""
        known = self._resolved.get(policy.key)
        if known is not None and known[0] is policy:
            return known[1]
        resolved = resolve(policy, self._hpa_flags)
        self._resolved[policy.key] = (policy, resolved)
        return resolved

    def _observe_fleet(self, item: _Work) -> None:
        """Resolve the mode in force and notice a rescale this controller did not make."""
        if item.error is not None or item.reading is None:
            return
        key = item.policy.key
        item.mode = resolve_mode(item.policy.spec.mode, item.reading.annotations)
        item.records["mode"] = item.mode.to_json()
        if item.mode.warning is not None:
            log.warning("invalid_mode_annotation", policy=key, detail=item.mode.warning)
        if self.fleet_monitor is not None:
            self.fleet_monitor.set_mode(item.policy, item.mode.mode)
        observed = item.reading.spec_replicas
        previous = self._replicas_seen.get(key)
        self._replicas_seen[key] = observed
        if previous is not None and previous != observed:
            item.records["externalRescale"] = external_rescale_record(previous, observed)
            log.info("external_rescale", policy=key, previous=previous, replicas=observed)
            if self.fleet_monitor is not None:
                self.fleet_monitor.external_rescale(item.policy)

    @staticmethod
    def _paused(item: _Work) -> bool:
        return item.mode is not None and item.mode.mode is PolicyMode.PAUSED

    def _pause(self, item: _Work, now: float) -> None:
        """A paused policy: no metrics, no decision, the history untouched."""
        assert item.reading is not None
        assert item.mode is not None
        item.observation = Observation(
            spec_replicas=item.reading.spec_replicas,
            status_replicas=item.reading.status_replicas,
            pods=item.pods,
            metrics={},
        )
        item.decision = paused_decision(item.policy.key, now, item.reading.spec_replicas, item.mode)

    def _apply_budgets(self, work: Sequence[_Work]) -> None:
        """Cap the decisions of policies in a ``ScalingBudget`` to what it grants them."""
        budgets = list(self._budgets()) if self._budgets is not None else []
        if self.fleet_monitor is not None:
            for gone in self._budget_names - {b.key for b in budgets}:
                for kind in ("limit", "wanted", "granted"):
                    self.fleet_monitor.budget_gpus.remove(gone, kind)
            self._budget_names = {b.key for b in budgets}
        limited: set[str] = set()
        for budget in budgets:
            covered = [w for w in work if w.reading is not None and budget.spec.covers(w.policy)]
            claims = [self._claim(w) for w in covered]
            allocation = allocate(budget.key, budget.spec.max_gpus, claims)
            if self.fleet_monitor is not None:
                gauge = self.fleet_monitor.budget_gpus
                gauge.labels(budget.key, "limit").set(budget.spec.max_gpus)
                gauge.labels(budget.key, "wanted").set(allocation.wanted_gpus)
                gauge.labels(budget.key, "granted").set(allocation.granted_gpus)
            for item in covered:
                grant = allocation.grant(item.policy.key)
                if grant is None:
                    continue
                item.grants.append((budget.key, grant))
                records = item.records.setdefault("budgets", [])
                assert isinstance(records, list)
                records.append(allocation.record(item.policy.key))
                item.records["budget"] = {"note": "; ".join(r["note"] for r in records)}
                if not grant.held_back or item.decision is None:
                    continue
                limited.add(item.policy.key)
                log.warning(
                    "budget_exhausted",
                    policy=item.policy.key,
                    budget=budget.key,
                    desired=grant.desired,
                    granted=grant.replicas,
                )
                item.decision = _held_back(item.decision, budget.key, grant)
        if self.fleet_monitor is not None:
            for item in work:
                self.fleet_monitor.set_limited(item.policy, limited=item.policy.key in limited)

    def _claim(self, item: _Work) -> Claim:
        """One policy's position in a budget this tick."""
        assert item.reading is not None
        policy = item.policy
        mode = item.mode.mode if item.mode is not None else PolicyMode.ACTIVE
        fixed = item.decision is None or mode is not PolicyMode.ACTIVE
        current = item.reading.spec_replicas
        return Claim(
            policy=policy.key,
            priority=policy.spec.priority,
            min_replicas=policy.spec.min_replicas,
            current=current,
            desired=item.decision.desired_replicas if item.decision is not None else current,
            gpus_per_replica=gpus_per_replica(
                [p.gpus for p in item.pods if not p.deleting], policy.spec.gpus_per_replica
            ),
            fixed=fixed,
        )

    def _plan_drain(
        self,
        item: _Work,
        metrics: Mapping[str, MetricObservation],
        pods: Sequence[PodInfo] | None = None,
    ) -> None:
        """For a scale-down: which pods should go, and the deletion costs that make them go."""
        decision = item.decision
        if decision is None or decision.desired_replicas >= decision.current_replicas:
            return
        if not self._drain_aware:
            plan = disabled_plan("drain-aware scale-down is disabled (drainAware: false)")
        else:
            pods = item.pods if pods is None else pods
            plan = plan_drain(item.policy, pods, metrics, decision.desired_replicas)
        item.drain = plan
        item.records["drain"] = plan.to_json()

    async def _mark_pods(self, item: _Work) -> None:
        """Write the drain plan's deletion costs before lowering ``/scale`` (best effort)."""
        plan = item.drain
        if plan is None or not plan.marks:
            return
        record = dict(plan.to_json())
        record["written"] = await self._write_marks(
            item, {mark.pod: (mark.cost, mark.previous) for mark in plan.marks}
        )
        self._drain_written(item, record)

    async def _remark(self, item: _Work) -> None:
        """Mark the pods for a decision made again after a 409 (see :meth:`_write`).

        The marks written for the superseded decision chose pods for another count. The new
        decision's plan is made from the pods as the cache has them now, with this tick's
        writes applied; it marks what it needs, and each pod still there that was marked this
        tick and that it neither marks nor removes gets its value from before the tick back (it
        would otherwise stay first in line). The fleet records of the tick carry over to the new
        decision.
        """
        assert item.decision is not None
        item.drain = None
        item.records.pop("drain", None)
        pods: Sequence[PodInfo] = item.pods
        if item.selector is not None:
            try:
                pods = self._pods.pods(item.policy.metadata.namespace, item.selector)
            except Exception:  # noqa: BLE001 - the tick's pods serve (the selector parsed then)
                log.debug("pods_reread_failed", policy=item.policy.key)
        written = {pod: cost for pod, (cost, _) in item.marked.items()}
        pods = [
            replace(pod, deletion_cost=written[pod.name]) if pod.name in written else pod
            for pod in pods
        ]
        self._plan_drain(item, item.metrics or {}, pods)
        plan = item.drain
        item.decision = with_records(item.decision, item.records)
        wanted: dict[str, tuple[int | None, int | None]] = (
            {m.pod: (m.cost, m.previous) for m in plan.marks} if plan is not None else {}
        )
        going: set[str] = set(plan.victims) if plan is not None else set()
        present = {pod.name for pod in pods}
        undo = {
            pod: (before, cost)
            for pod, (cost, before) in item.marked.items()
            if pod in present and pod not in wanted and pod not in going and cost != before
        }
        if not wanted and not undo:
            return
        record = (
            plan.to_json()
            if plan is not None
            else DrainPlan(
                applies=True, note="no scale-down any more: this tick's marks undone"
            ).to_json()
        )
        record["marks"] = [
            *record["marks"],
            *(
                {"pod": pod, "cost": cost, "previous": was, "reason": "undone: not removed now"}
                for pod, (cost, was) in undo.items()
            ),
        ]
        written_now = await self._write_marks(item, {**wanted, **undo})
        record["written"] = f"decided again after a conflict, pods re-marked: {written_now}"
        self._drain_written(item, record)

    async def _write_marks(
        self, item: _Work, marks: Mapping[str, tuple[int | None, int | None]]
    ) -> str:
        """Write deletion costs (pod -> (cost, value before)); returns what was written."""
        if self._annotator is None:
            return "no pod annotator configured"
        costs = {pod: cost for pod, (cost, _) in marks.items()}
        try:
            async with asyncio.timeout(self._timeouts.scale_write):
                failed = await self._annotator.set_deletion_costs(
                    item.policy.metadata.namespace, costs
                )
        except Exception as exc:  # noqa: BLE001 - marks help; their failure must not block
            failed = dict.fromkeys(costs, f"{type(exc).__name__}: {exc}")
        for pod, (cost, before) in marks.items():
            if pod not in failed:
                first = item.marked.get(pod)
                item.marked[pod] = (cost, before if first is None else first[1])
        ok = len(costs) - len(failed)
        if failed:
            self._count_error(item.policy, "pod_annotate")
            log.warning("deletion_cost_write_failed", policy=item.policy.key, failed=failed)
        if self.fleet_monitor is not None:
            self.fleet_monitor.deletion_costs_written(item.policy, ok, len(failed))
        return f"{ok} of {len(costs)} written" + (f"; failed: {dict(failed)}" if failed else "")

    @staticmethod
    def _drain_written(item: _Work, record: dict[str, object]) -> None:
        item.records["drain"] = record
        if item.decision is not None:
            item.decision = with_records(item.decision, {"drain": record})

    def _settled(self, item: _Work, now: float) -> bool:
        """Settle the outcomes decided without the API server; False: :meth:`_act` goes on
        (it checks the lease right before writing)."""
        decision = item.decision
        if decision is None:
            item.outcome = Outcome.FAILED
            return True
        if self._paused(item):
            item.outcome = Outcome.PAUSED
            return True
        if not decision.scale:
            item.outcome = Outcome.UNCHANGED
            return True
        key = item.policy.key
        advisory = item.mode is not None and item.mode.mode is PolicyMode.ADVISORY
        if self._dry_run or advisory:
            item.outcome = Outcome.ADVISORY if advisory else Outcome.DRY_RUN
            if item.drain is not None and item.drain.marks:
                record = dict(item.drain.to_json())
                record["written"] = "no: " + ("advisory mode" if advisory else "dry run")
                self._drain_written(item, record)
            # Open loop, as replay: keep the history as if the write had happened.
            self._histories[key] = record_rescale(
                self._resolve(item.policy),
                self._histories[key],
                now,
                decision.current_replicas,
                decision.desired_replicas,
            )
            return True
        return False

    async def _act(self, item: _Work, now: float) -> None:
        """Mark the pods to remove first, then write the decided count (after
        :meth:`_settled` said the target is to be written)."""
        decision = item.decision
        assert decision is not None
        key = item.policy.key
        if not self._may_write(item.policy):
            item.outcome = Outcome.NOT_LEADER  # lost the lease during this tick: do not write
            return
        await self._mark_pods(item)
        try:
            async with asyncio.timeout(self._timeouts.scale_write):
                await self._write(item, decision, now)
        except Exception as exc:  # noqa: BLE001 - reported as FailedRescale; others go on
            item.outcome = Outcome.FAILED
            item.error = f"FailedRescale: {type(exc).__name__}: {exc}"
            self._count_error(item.policy, "scale_write")
            # The write may have landed: learn the count afresh rather than call it external.
            self._replicas_seen.pop(key, None)
            return

    async def _write(self, item: _Work, decision: Decision, now: float) -> None:
        """Write the decided count, guarded by the reading it was decided from.

        Another writer winning a 409 race changes the ground under the decision: it is made
        again from the fresh reading (pure, same metrics and history as before), at most
        :data:`REDECIDE_ROUNDS` times, and the pods are marked again for it (:meth:`_remark`).
        Only a write that changed the count is recorded as a rescale (in the history, the Event
        and the ``scale`` counter); the rest are ``no-op``.
        """
        policy = item.policy
        key = policy.key
        ref = policy.spec.scale_target_ref
        for _ in range(REDECIDE_ROUNDS + 1):
            written = await self._scale.set_scale(
                policy.metadata.namespace, ref, decision.desired_replicas, expected=item.reading
            )
            if written.result is WriteResult.SCALED:
                item.outcome = Outcome.SCALED
                self._replicas_seen[key] = decision.desired_replicas
                self._histories[key] = record_rescale(
                    self._resolve(policy),
                    self._histories[key],
                    now,
                    written.previous,
                    decision.desired_replicas,
                )
                if self.monitor is not None:
                    self.monitor.scaled(policy, written.previous, decision.desired_replicas)
                return
            if written.result is WriteResult.NO_OP or written.reading is None:
                self._no_op(item, written.previous)
                return
            # STALE: decide again from what the target is now.
            log.info(
                "scale_decided_again",
                policy=key,
                decided_from=decision.current_replicas,
                found=written.reading.spec_replicas,
            )
            item.reading = written.reading
            self._decide(item, item.metrics or {}, now, history=item.history_before)
            if item.decision is None:
                return  # the decision failed; _decide reported it
            for budget_key, grant in item.grants:
                # The budget granted this tick still holds for the new decision (a higher
                # count than granted would take GPUs allotted to other policies).
                if item.decision.desired_replicas > grant.replicas:
                    item.decision = _held_back(item.decision, budget_key, grant)
            await self._remark(item)
            decision = item.decision
            if not decision.scale:
                self._no_op(item, written.reading.spec_replicas)
                return
        msg = f"the count kept changing under {REDECIDE_ROUNDS + 1} decisions (other writers?)"
        raise ActuationError(msg)

    def _no_op(self, item: _Work, found: int) -> None:
        item.outcome = Outcome.NO_OP
        self._replicas_seen[item.policy.key] = found
        if self.monitor is not None:
            self.monitor.no_op(item.policy)
        log.debug("scale_no_op", policy=item.policy.key, replicas=found)

    def _note(self, item: _Work) -> bool:
        """The tick's bookkeeping of one decision; True when its record may need a write
        (:meth:`_record`), False when there is none to make (settled here, or a dry run)."""
        policy = item.policy
        if self.monitor is not None and item.decision is not None:
            self.monitor.observe_decision(policy, item.decision)
        if self._on_decision is not None and item.decision is not None:
            try:
                self._on_decision(item.decision)
            except Exception:  # a printing callback must not break the loop
                log.exception("on_decision callback failed", policy=policy.key)
        if item.history_unknown:
            unsaved = self._histories.pop(policy.key, None)  # loaded again next tick
            if unsaved is not None:
                self._unsaved[policy.key] = unsaved
        if self._dry_run:
            return False
        if self._recorder is not None:
            decision = item.decision or self._failure_decision(item)
            try:
                if not self._recorder.settled(policy, decision, item.outcome, item.error):
                    return True
            except Exception:  # a bug here must not break scaling: record() decides
                log.exception("record check failed", policy=policy.key)
                return True
        return False

    async def _record(self, item: _Work) -> None:
        policy = item.policy
        decision = item.decision or self._failure_decision(item)
        if self._recorder is not None:
            try:
                async with asyncio.timeout(self._timeouts.record):
                    await self._recorder.record(policy, decision, item.outcome, item.error)
            except Exception as exc:  # noqa: BLE001 - visibility must not break scaling
                self._count_error(policy, "record")
                log.warning("recording failed", policy=policy.key, error=str(exc))

    async def _save_histories(self, work: Sequence[_Work]) -> None:
        """Queue the tick's histories, one after another under one timeout (a store queues
        them for :meth:`_flush_history`, without I/O); a dry run saves nothing."""
        if self._store is None or self._dry_run or not work:
            return
        done = 0
        try:
            async with asyncio.timeout(self._timeouts.record):
                for item in work:
                    history = self._histories.get(item.policy.key)
                    if history is not None:
                        try:
                            await self._store.save(item.policy, history)
                        except Exception as exc:  # noqa: BLE001 - memory keeps the state
                            self._count_error(item.policy, "history")
                            log.warning(
                                "history save failed", policy=item.policy.key, error=str(exc)
                            )
                    done += 1
        except TimeoutError:
            for item in work[done:]:  # memory keeps them; queued again next tick
                self._count_error(item.policy, "history")
            log.warning("history save timed out", policies=len(work) - done)

    async def _flush_history(self, work: Sequence[_Work]) -> None:
        """Persist the histories saved this tick in one write."""
        if self._store is None or self._dry_run or not work:
            return
        try:
            async with asyncio.timeout(self._timeouts.record):
                await self._store.flush()
        except Exception as exc:  # noqa: BLE001 - memory keeps the state; retried next tick
            for item in work:
                self._count_error(item.policy, "history")
            log.warning("history flush failed", error=str(exc))

    # ---- helpers -------------------------------------------------------------------------

    async def _bounded(
        self, work: Sequence[_Work], step: Callable[[_Work], Awaitable[None]]
    ) -> None:
        async def run(item: _Work) -> None:
            async with self._semaphore:
                await step(item)

        await asyncio.gather(*(run(item) for item in work))

    def _fail(self, item: _Work, kind: str, message: str) -> None:
        item.error = message
        item.error_kind = kind
        item.outcome = Outcome.FAILED
        self._count_error(item.policy, kind)

    def _count_error(self, policy: ScalingPolicy, kind: str) -> None:
        if self.monitor is not None:
            self.monitor.error(policy, kind)

    @staticmethod
    def _failure_decision(item: _Work) -> Decision:
        """A decision-shaped record of a tick that could not decide (for Events and status)."""
        replicas = item.reading.spec_replicas if item.reading is not None else 0
        message = item.error or "no decision"
        reason = message.split(":", 1)[0] if ":" in message else "FailedDecision"
        return Decision(
            policy=item.policy.key,
            timestamp=0.0,
            current_replicas=replicas,
            desired_replicas=replicas,
            reason=message,
            conditions=(
                Condition(
                    ConditionType.ABLE_TO_SCALE, status=False, reason=reason, message=message
                ),
            ),
        )

    def _take_owned(
        self, policies: list[ScalingPolicy], leader: bool
    ) -> tuple[list[ScalingPolicy], list[ScalingPolicy]]:
        """Split the policies into those this instance decides this tick and the others.

        Without sharding that is all of them while leader (none otherwise); with sharding,
        those of the shards owned now, taken before the fetch so the batched queries carry
        only owned namespaces. A dry run decides every policy (it writes nothing). A policy
        gained (a new term, a shard acquired) starts from the store's history, which its
        previous owner saved; one lost is dropped from memory and from this instance's
        per-policy metrics.
        """
        if self._owns is not None:
            by_namespace: dict[str, bool] = {}
            owned: list[ScalingPolicy] = []
            others: list[ScalingPolicy] = []
            for policy in policies:
                namespace = policy.metadata.namespace
                mine = by_namespace.get(namespace)
                if mine is None:
                    mine = by_namespace[namespace] = self._owns(namespace)
                (owned if mine else others).append(policy)
        elif leader:
            owned, others = policies, []
        else:
            owned, others = [], policies
        keys = {p.key for p in owned}
        if keys != self._owned_keys:
            for key in keys - self._owned_keys:
                self._histories.pop(key, None)
                self._replicas_seen.pop(key, None)
                self._unsaved.pop(key, None)
            lost = [p for p in others if p.key in self._owned_keys]
            for policy in lost:
                self._histories.pop(policy.key, None)
                self._replicas_seen.pop(policy.key, None)
                self._unsaved.pop(policy.key, None)
            if lost and self._owns is not None and self.monitor is not None:
                self.monitor.forget(lost)
            if lost and self._owns is not None and self.fleet_monitor is not None:
                self.fleet_monitor.forget(lost)
            self._owned_keys = keys
        if self._dry_run:
            return policies, []
        return owned, others

    def _may_write(self, policy: ScalingPolicy) -> bool:
        """True while this instance may write for ``policy`` (leader, or owner of its shard)."""
        if self._leader is None:
            return True
        if self._owns is not None:
            return self._owns(policy.metadata.namespace)
        return self._leader.is_leader()

    def _forget_removed(self, policies: Sequence[ScalingPolicy]) -> None:
        current = {p.key: p for p in policies}
        removed = [p for key, p in self._known.items() if key not in current]
        for policy in removed:
            self._histories.pop(policy.key, None)
            self._replicas_seen.pop(policy.key, None)
            self._unsaved.pop(policy.key, None)
            self._resolved.pop(policy.key, None)
        if removed and self.monitor is not None:
            self.monitor.forget(removed)
        if removed and self.fleet_monitor is not None:
            self.fleet_monitor.forget(removed)
        for key, policy in current.items():
            old = self._known.get(key)
            if old is not None and old != policy and self.monitor is not None:
                self.monitor.forget_version([old])
        self._known = current

    @staticmethod
    def _log(result: TickResult, item: _Work) -> None:
        decision = result.decision
        if decision is None:
            log.warning(
                "tick",
                policy=result.policy,
                outcome=result.outcome.value,
                error=result.error,
            )
            return
        # A steady tick that only confirmed the count is debug: at 1,000 policies, info would
        # be 1,000 lines per tick saying nothing happened.
        steady = (
            result.outcome in _QUIET
            and decision.desired_replicas == decision.current_replicas
            and result.error is None
        )
        (log.debug if steady else log.info)(
            "tick",
            policy=result.policy,
            target=f"{item.policy.spec.scale_target_ref.kind}/{item.policy.spec.scale_target_ref.name}",
            current=decision.current_replicas,
            desired=decision.desired_replicas,
            reason=decision.reason,
            outcome=result.outcome.value,
            error=result.error,
        )


_QUIET = frozenset({Outcome.UNCHANGED, Outcome.NOT_LEADER})
"""Outcomes logged at debug when the decision keeps the current count."""


def _held_back(decision: Decision, budget: str, grant: Grant) -> Decision:
    """``decision`` held to what ``budget`` grants (``ScalingLimited=True/BudgetExhausted``)."""
    return with_condition(
        replace(
            decision,
            desired_replicas=grant.replicas,
            reason=f"{decision.reason}; held back by budget {budget}",
        ),
        Condition(
            ConditionType.SCALING_LIMITED,
            status=True,
            reason="BudgetExhausted",
            message=grant.note,
        ),
    )
