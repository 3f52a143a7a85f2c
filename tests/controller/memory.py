"""In-memory implementations of the control loop's ports, for the tests.

:class:`MemoryCluster` holds scale targets and their pods and implements the
:class:`~autoscaler.controller.ports.ScaleClient`, ``PodSource``, ``Recorder`` and
``HistoryStore`` ports;
:class:`StaticMetricSource` answers every fetch from values set by the caller. Faults can be
injected per target. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from autoscaler.controller.ports import Outcome, ScaleReading, ScaleWrite, WriteResult
from autoscaler.decision.types import (
    Decision,
    History,
    MetricObservation,
    NoSignal,
    NoSignalReason,
    PodInfo,
)
from autoscaler.errors import ActuationError
from autoscaler.metrics.base import MetricRequest, PolicyMetrics
from autoscaler.policy.models import ScaleTargetRef, ScalingPolicy


@dataclass
class MemoryTarget:
    """One scalable object."""

    spec_replicas: int
    status_replicas: int | None = None
    selector: str | None = "app=model"
    pods: list[PodInfo] = field(default_factory=list)
    read_error: ActuationError | None = None
    """Raised by ``get_scale`` while set."""
    write_error: ActuationError | None = None
    """Raised by ``set_scale`` while set."""
    annotations: dict[str, str] = field(default_factory=dict)
    """The target object's annotations (``nim-autoscaler.io/mode``)."""
    other_writer: Callable[[MemoryTarget], None] | None = None
    """Run (once, then cleared) at the next ``set_scale`` before its guard: another writer
    changing the target between the loop's reading and its write."""


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    """One call of :meth:`MemoryCluster.record`."""

    policy: str
    decision: Decision
    outcome: Outcome
    error: str | None


class MemoryCluster:
    """Targets keyed by ``(namespace, kind, name)``; pods are whatever the test puts there."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, str, str], MemoryTarget] = {}
        self.writes: list[tuple[str, str, int]] = []
        """Every successful ``set_scale``: (namespace, name, replicas)."""
        self.records: list[RecordedDecision] = []
        self.saved: dict[str, History] = {}
        self.load_error: Exception | None = None
        """Raised by ``load`` while set (the durable history cannot be read)."""
        self.synced_flag = True
        self.cost_writes: list[tuple[str, str, int | None]] = []
        """Every deletion-cost write: (namespace, pod, cost or None for removal)."""

    def add(self, namespace: str, kind: str, name: str, target: MemoryTarget) -> MemoryTarget:
        """Register a target and return it."""
        self.targets[(namespace, kind, name)] = target
        return target

    def _target(self, namespace: str, ref: ScaleTargetRef) -> MemoryTarget:
        try:
            return self.targets[(namespace, ref.kind, ref.name)]
        except KeyError:
            from autoscaler.errors import TargetNotFound

            msg = f"{ref.kind} {namespace}/{ref.name} not found"
            raise TargetNotFound(msg) from None

    async def get_scale(self, namespace: str, ref: ScaleTargetRef) -> ScaleReading:
        """Read the target's replicas and selector."""
        target = self._target(namespace, ref)
        if target.read_error is not None:
            raise target.read_error
        status = target.status_replicas
        return ScaleReading(
            spec_replicas=target.spec_replicas,
            status_replicas=target.spec_replicas if status is None else status,
            selector=target.selector,
            annotations=dict(target.annotations),
        )

    async def set_scale(
        self,
        namespace: str,
        ref: ScaleTargetRef,
        replicas: int,
        *,
        expected: ScaleReading | None = None,
    ) -> ScaleWrite:
        """Set ``spec_replicas`` (guarded by ``expected``, as the Kubernetes client is)."""
        target = self._target(namespace, ref)
        if target.write_error is not None:
            raise target.write_error
        if target.other_writer is not None:
            race, target.other_writer = target.other_writer, None
            race(target)
        current = target.spec_replicas
        if current == replicas:
            return ScaleWrite(WriteResult.NO_OP, current)
        if expected is not None and expected.spec_replicas != current:
            return ScaleWrite(WriteResult.STALE, current, await self.get_scale(namespace, ref))
        target.spec_replicas = replicas
        self.writes.append((namespace, ref.name, replicas))
        return ScaleWrite(WriteResult.SCALED, current)

    def pods(self, namespace: str, selector: str) -> tuple[PodInfo, ...]:
        """Pods of the (single) target in ``namespace`` whose selector equals ``selector``."""
        for (ns, _, _), target in self.targets.items():
            if ns == namespace and target.selector == selector:
                return tuple(target.pods)
        return ()

    async def set_deletion_costs(
        self, namespace: str, costs: Mapping[str, int | None]
    ) -> Mapping[str, str]:
        """Set the pods' ``deletion_cost``; a pod not found is reported, not raised."""
        failed: dict[str, str] = {}
        for name, cost in costs.items():
            for (ns, _, _), target in self.targets.items():
                if ns != namespace:
                    continue
                for index, pod in enumerate(target.pods):
                    if pod.name == name:
                        target.pods[index] = replace(pod, deletion_cost=cost)
                        self.cost_writes.append((namespace, name, cost))
                        break
                else:
                    continue
                break
            else:
                failed[name] = f"pod {namespace}/{name} not found"
        return failed

    def synced(self) -> bool:
        """Always synced unless a test says otherwise."""
        return self.synced_flag

    async def record(
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None = None,
    ) -> None:
        """Keep the record in memory."""
        self.records.append(RecordedDecision(policy.key, decision, outcome, error))

    def settled(
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None = None,
    ) -> bool:
        """Every decision is kept: never settled without :meth:`record`."""
        return False

    async def load(self, policy: ScalingPolicy) -> History | None:
        """The saved history (raises ``load_error`` while it is set)."""
        if self.load_error is not None:
            raise self.load_error
        return self.saved.get(policy.key)

    async def save(self, policy: ScalingPolicy, history: History) -> None:
        """Save (a JSON round trip, as a real store would)."""
        self.saved[policy.key] = History.from_json(history.to_json())

    async def flush(self) -> None:
        """Nothing buffered: :meth:`save` stores at once."""


class StaticMetricSource:
    """Answers from ``values[policy_key][metric_name]``; unset metrics are EMPTY."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, MetricObservation]] = {}
        self.fetches: list[tuple[float, int]] = []
        """Each fetch: (now, number of requests)."""
        self.error: Exception | None = None

    def set(self, policy_key: str, observations: Mapping[str, MetricObservation]) -> None:
        """Replace what a policy's metrics report."""
        self.values[policy_key] = dict(observations)

    async def fetch(self, requests: Sequence[MetricRequest], now: float) -> PolicyMetrics:
        """Answer every requested metric."""
        self.fetches.append((now, len(requests)))
        if self.error is not None:
            raise self.error
        empty = NoSignal(NoSignalReason.EMPTY, "no value set")
        return {
            r.policy.key: {
                m.name: self.values.get(r.policy.key, {}).get(m.name, empty)
                for m in r.policy.spec.fetched_metrics
            }
            for r in requests
        }

    async def close(self) -> None:
        """Nothing to release."""
