"""Simulated pods of one Deployment: scheduling, cold start, readiness, drain, GPU limit.

The pod lifecycle follows Kubernetes: a new pod is Pending until the scheduler binds it (after a
scheduling delay, and only if a GPU is free; otherwise it stays Pending with a
``PodScheduled=False/Unschedulable`` message such as ``0/4 nodes are available: 4 Insufficient
nvidia.com/gpu.``), then Running but not Ready while the model loads (the cold start, drawn from a
seeded :class:`ColdStart` distribution), then Ready. Scale-down picks victims as the ReplicaSet
controller does (unscheduled first, then not ready, then the lower
``controller.kubernetes.io/pod-deletion-cost``, then the most recently ready, then the newest)
and a Ready victim drains: it takes no new requests and finishes what it has within the
termination grace period; requests still in flight when the grace period ends are interrupted.

:mod:`autoscaler.sim.fleet` owns the event heap and calls into this module; it also implements the
:class:`~autoscaler.controller.ports.ScaleClient` and
:class:`~autoscaler.controller.ports.PodSource` ports on top of it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from autoscaler.decision.types import PodInfo, PodPhase
from autoscaler.sim.engine import Replica


class ColdStartSpecError(ValueError):
    """A cold-start spec that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Distribution of the model-load time (scheduled -> Ready), seconds.

    Spec grammar: ``90`` (fixed), ``uniform:60:120``, ``lognormal:median=90,sigma=0.2``
    (also ``lognormal:90:0.2``), ``normal:mean=90,sd=10`` (clipped at 1 s).
    """

    kind: str
    a: float
    b: float = 0.0
    spec: str = ""

    @classmethod
    def parse(cls, spec: str) -> ColdStart:
        """Parse a cold-start spec; raises :class:`ColdStartSpecError` naming the problem."""
        text = spec.strip()
        try:
            if ":" not in text:
                value = float(text)
                if value < 0:
                    raise ValueError(text)
                return cls("fixed", value, spec=text)
            kind, _, rest = text.partition(":")
            named = dict(re.findall(r"(\w+)=([0-9.eE+-]+)", rest))
            values = [float(v) for v in rest.split(":")] if not named else []
            if kind == "uniform":
                lo, hi = values if values else (float(named["min"]), float(named["max"]))
                if not 0 <= lo <= hi:
                    raise ValueError(text)
                return cls("uniform", lo, hi, text)
            if kind == "lognormal":
                median, sigma = (
                    values if values else (float(named["median"]), float(named["sigma"]))
                )
                if median <= 0 or sigma < 0:
                    raise ValueError(text)
                return cls("lognormal", median, sigma, text)
            if kind == "normal":
                mean, sd = values if values else (float(named["mean"]), float(named["sd"]))
                if sd < 0:
                    raise ValueError(text)
                return cls("normal", mean, sd, text)
        except (ValueError, KeyError) as exc:
            msg = (
                f"bad cold-start spec {spec!r}: expected SECONDS, uniform:MIN:MAX, "
                "lognormal:median=M,sigma=S or normal:mean=M,sd=S"
            )
            raise ColdStartSpecError(msg) from exc
        msg = f"unknown cold-start distribution {kind!r} (fixed, uniform, lognormal, normal)"
        raise ColdStartSpecError(msg)

    def sample(self, rng: np.random.Generator) -> float:
        """One load time, seconds."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return float(rng.uniform(self.a, self.b))
        if self.kind == "lognormal":
            return float(rng.lognormal(math.log(self.a), self.b))
        return max(1.0, float(rng.normal(self.a, self.b)))


class PodState(IntEnum):
    """Where a simulated pod is in its life."""

    PENDING = 0
    LOADING = 1
    READY = 2
    TERMINATING = 3
    GONE = 4


class SimPod:
    """One pod of the simulated Deployment."""

    __slots__ = (
        "created_at",
        "deletion_cost",
        "ended_at",
        "index",
        "load_seconds",
        "name",
        "ready_at",
        "replica",
        "scheduled_at",
        "state",
        "terminating_at",
        "unschedulable",
        "version",
    )

    def __init__(self, name: str, index: int, created_at: float) -> None:
        self.name = name
        self.index = index
        self.created_at = created_at
        self.scheduled_at: float | None = None
        self.ready_at: float | None = None
        self.terminating_at: float | None = None
        self.ended_at: float | None = None
        self.load_seconds = 0.0
        self.unschedulable: str | None = None
        self.state = PodState.PENDING
        self.replica: Replica | None = None
        self.version = 0
        """Invalidates scheduled events of this pod (boundary events, ready events)."""
        self.deletion_cost: int | None = None
        """The ``controller.kubernetes.io/pod-deletion-cost`` annotation (None: absent)."""

    def info(self) -> PodInfo:
        """The pod as the controller sees it."""
        if self.state is PodState.PENDING:
            phase = PodPhase.PENDING
        else:
            phase = PodPhase.RUNNING
        return PodInfo(
            name=self.name,
            phase=phase,
            ready=self.state in (PodState.READY, PodState.TERMINATING),
            created_at=self.created_at,
            ready_at=self.ready_at,
            scheduled_at=self.scheduled_at,
            deleting=self.state is PodState.TERMINATING,
            unschedulable=self.unschedulable,
            deletion_cost=self.deletion_cost,
            owner_kind="ReplicaSet",
        )

    def gpu_seconds(self, until: float) -> float:
        """Seconds this pod held its GPUs (from scheduling to its end, loading included)."""
        if self.scheduled_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else until
        return max(0.0, min(end, until) - self.scheduled_at)


def removal_order(pods: list[SimPod]) -> list[SimPod]:
    """Live pods in the order the ReplicaSet controller deletes them (first = first deleted).

    ``controller.ActivePodsWithRanks`` ranking: unscheduled before scheduled, Pending before
    Running, not ready before ready, lower ``pod-deletion-cost`` before higher (absent: 0), ready
    for less time before longer, newer before older.
    """

    def rank(pod: SimPod) -> tuple[int, int, int, int, float, float]:
        scheduled = 0 if pod.scheduled_at is None else 1
        running = 0 if pod.state is PodState.PENDING else 1
        ready = 1 if pod.state is PodState.READY else 0
        cost = pod.deletion_cost or 0
        ready_at = pod.ready_at if pod.ready_at is not None else math.inf
        return (scheduled, running, ready, cost, -ready_at, -pod.created_at)

    return sorted(pods, key=rank)
