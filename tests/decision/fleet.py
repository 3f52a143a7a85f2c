"""A toy LLM fleet for closed-loop tests of ``algorithm: llm`` (not the product simulator).

Each ready pod serves ``mu`` requests/s; arrivals beyond the ready capacity pile up in a shared
queue (spread over the ready pods); KV-cache usage per ready pod is ``min(1, arrivals/capacity)``.
New pods become ready ``startup`` seconds after creation; a scale-down removes starting pods
first. With a KV target of 0.7 the steady-state need is ``ceil(arrivals / (0.7 x mu))``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from autoscaler.decision.types import History, Observation, PodInfo, PodPhase, PodSamples
from autoscaler.policy.models import ScalingPolicy

from .helpers import decide, record_rescale


@dataclass
class _Pod:
    name: str
    created: float
    ready_at: float


@dataclass
class Fleet:
    """State of the toy fleet."""

    startup: float
    mu: float = 10.0
    pods: list[_Pod] = field(default_factory=list)
    queue: float = 0.0
    seq: int = 0

    def ready(self, now: float) -> list[_Pod]:
        """Pods ready at ``now``."""
        return [p for p in self.pods if now >= p.ready_at]

    def observe(self, now: float, arrivals: float, tick: float) -> Observation:
        """Advance the queue by one tick and report what the controller sees."""
        ready = self.ready(now)
        capacity = len(ready) * self.mu
        self.queue = max(0.0, self.queue + (arrivals - capacity) * tick)
        kv = min(1.0, arrivals / capacity) if capacity else 1.0
        infos = tuple(
            PodInfo(
                p.name,
                PodPhase.RUNNING if now - p.created > 30 else PodPhase.PENDING,
                now >= p.ready_at,
                created_at=p.created,
                ready_at=p.ready_at if now >= p.ready_at else None,
            )
            for p in self.pods
        )
        per_pod = self.queue / len(ready) if ready else 0.0
        metrics = {
            "kvCache": PodSamples({p.name: kv for p in ready}, now),
            "queueDepth": PodSamples({p.name: per_pod for p in ready}, now),
        }
        return Observation(len(self.pods), len(self.pods), infos, metrics)

    def scale(self, now: float, desired: int) -> None:
        """Apply a new replica count."""
        while len(self.pods) < desired:
            self.seq += 1
            self.pods.append(_Pod(f"n{self.seq}", now, now + self.startup))
        while len(self.pods) > desired:
            starting = [p for p in self.pods if now < p.ready_at]
            self.pods.remove((starting or self.pods)[-1])


def run_fleet(
    pol: ScalingPolicy,
    *,
    startup: float,
    arrivals: Callable[[float], float],
    duration: float,
    initial: int = 3,
    tick: float = 15.0,
    restart: bool = False,
) -> list[tuple[float, int, int]]:
    """Close the loop; returns ``(t, current, desired)`` per tick.

    ``restart=True`` passes the history through JSON between ticks (a controller restart).
    """
    fleet = Fleet(startup=startup)
    fleet.pods = [_Pod(f"init{i}", -2 * startup, -startup) for i in range(initial)]
    history = History()
    out: list[tuple[float, int, int]] = []
    for k in range(int(duration / tick)):
        now = k * tick
        obs = fleet.observe(now, arrivals(now), tick)
        if restart:
            history = History.from_json(json.loads(json.dumps(history.to_json())))
        result = decide(pol, obs, history, now)
        desired = result.decision.desired_replicas
        history = record_rescale(pol, result.history, now, obs.spec_replicas, desired)
        fleet.scale(now, desired)
        out.append((now, obs.spec_replicas, desired))
    return out
