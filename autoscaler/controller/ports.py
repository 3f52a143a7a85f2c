"""Ports: the small interfaces the control loop needs from the cluster.

Implemented for Kubernetes by :mod:`autoscaler.kube` and for the simulated fleet by
:mod:`autoscaler.sim`. The loop is written only against these, so the live controller, dry-run
and the simulator run the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from autoscaler.decision.types import Decision, History, PodInfo
from autoscaler.policy.models import ScaleTargetRef, ScalingPolicy


@dataclass(frozen=True, slots=True)
class ScaleReading:
    """The target's ``/scale`` subresource."""

    spec_replicas: int
    status_replicas: int
    selector: str | None
    """``status.selector`` (label selector string), if the resource publishes one."""
    resource_version: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The target object's annotations (``nim-autoscaler.io/mode``), when the client reads them."""


class WriteResult(StrEnum):
    """What a ``/scale`` write did."""

    SCALED = "scaled"
    """``spec.replicas`` was changed from :attr:`ScaleWrite.previous` to the desired count."""
    NO_OP = "no_op"
    """Nothing was written: the target already had the desired count."""
    STALE = "stale"
    """Nothing was written: another writer changed ``spec.replicas`` since the reading the
    decision was made from; :attr:`ScaleWrite.reading` is the fresh one to decide again from."""


@dataclass(frozen=True, slots=True)
class ScaleWrite:
    """The result of :meth:`ScaleClient.set_scale`."""

    result: WriteResult
    previous: int
    """``spec.replicas`` before the write (SCALED) or as found (NO_OP, STALE)."""
    reading: ScaleReading | None = None
    """The fresh reading taken after a conflict (STALE; NO_OP when found at the count)."""


class ScaleClient(Protocol):
    """Reads and writes the ``/scale`` subresource of any scalable resource."""

    async def get_scale(self, namespace: str, ref: ScaleTargetRef) -> ScaleReading:
        """Read ``/scale``. Raises ``TargetNotFound``, ``Forbidden`` or ``ActuationError``."""
        ...

    async def set_scale(
        self,
        namespace: str,
        ref: ScaleTargetRef,
        replicas: int,
        *,
        expected: ScaleReading | None = None,
    ) -> ScaleWrite:
        """Set ``spec.replicas`` to ``replicas``, guarded by the reading the decision used.

        ``expected`` is the reading the caller decided from (None: read first). The write must
        never turn an absolute count decided from an older reading into the truth: when
        ``spec.replicas`` is no longer ``expected.spec_replicas`` (another writer won a 409
        race), nothing is written and the result is STALE with the fresh reading. Raises
        ``ActuationError`` subclasses.
        """
        ...


class TargetSource(Protocol):
    """Scale targets from a watch-fed cache, so a steady tick reads no ``/scale``."""

    def lookup(self, namespace: str, ref: ScaleTargetRef) -> ScaleReading | None:
        """The target's reading from the cache, with no I/O.

        None when the cache cannot vouch for it (its kind is not watched or not synced yet,
        the object is not in the cache): the caller then reads ``/scale``. Asking for a kind
        not watched yet may start watching it.
        """
        ...


class PodSource(Protocol):
    """Pods behind targets, from a watch-fed cache."""

    def pods(self, namespace: str, selector: str) -> tuple[PodInfo, ...]:
        """Pods in ``namespace`` matching the label ``selector`` (cached; no I/O)."""
        ...

    def synced(self) -> bool:
        """True once the initial list of every watched namespace has completed."""
        ...


class PodAnnotator(Protocol):
    """Writes the ``controller.kubernetes.io/pod-deletion-cost`` annotation of pods."""

    async def set_deletion_costs(
        self, namespace: str, costs: Mapping[str, int | None]
    ) -> Mapping[str, str]:
        """Set (or, for None, remove) each pod's deletion cost.

        Returns pod name -> error for the pods that could not be written (a pod deleted
        meanwhile is reported here, not raised); the other pods are written regardless.
        """
        ...


class Outcome(StrEnum):
    """What the loop did with a decision."""

    UNCHANGED = "unchanged"
    SCALED = "scaled"
    NO_OP = "no_op"
    """A scale was decided but nothing was written: the target already had the count, or
    another writer changed it and the decision made again from the fresh reading kept it."""
    DRY_RUN = "dry_run"
    NOT_LEADER = "not_leader"
    FAILED = "failed"
    ADVISORY = "advisory"
    """``mode: advisory``: decided and recorded; nothing written to ``/scale`` or pods."""
    PAUSED = "paused"
    """``mode: paused``: no decision made."""


class Recorder(Protocol):
    """Makes decisions visible in the cluster: Events on the target and a status record."""

    async def record(
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None = None,
    ) -> None:
        """Emit an Event (without flooding) and update the status record if it changed."""
        ...

    def settled(
        self,
        policy: ScalingPolicy,
        decision: Decision,
        outcome: Outcome,
        error: str | None = None,
    ) -> bool:
        """True when :meth:`record` would send nothing now, known without I/O (the caller
        then skips it); False when it may have to (the caller calls it)."""
        ...


class HistoryStore(Protocol):
    """Durable per-policy decision history, so a restart or failover changes no decision."""

    async def load(self, policy: ScalingPolicy) -> History | None:
        """The saved history, or None if there is none (or it is unreadable)."""
        ...

    async def save(self, policy: ScalingPolicy, history: History) -> None:
        """Record ``history`` for ``policy`` (it may be written only at :meth:`flush`)."""
        ...

    async def flush(self, *, force: bool = False) -> None:
        """Persist what :meth:`save` recorded (once per tick; skip if nothing changed).

        A store may hold back what is not urgent for a while; ``force`` writes everything
        queued now (a graceful stop).
        """
        ...


class LeaderGate(Protocol):
    """Tells whether this instance may write."""

    def is_leader(self) -> bool:
        """True while this instance holds the lease (always True without leader election)."""
        ...


@runtime_checkable
class ShardGate(LeaderGate, Protocol):
    """A :class:`LeaderGate` of one replica among several, each owning a part of the policies.

    ``is_leader`` is True while this replica owns at least one shard.
    """

    def owns(self, namespace: str) -> bool:
        """True while this replica owns the policies of ``namespace`` (it may write for them)."""
        ...
