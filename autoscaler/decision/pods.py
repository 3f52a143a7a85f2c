"""``algorithm: llm``: the target's pods as capacity, and the learned start-up time.

:func:`classify_pods` splits the pods into ready, starting and credited as capacity on the way,
suspected stuck (starting for longer than ``STUCK_FACTOR`` x the start-up estimate),
unschedulable (never credited) and others; :func:`learn_startup` turns pods seen becoming ready
into start-up samples (``History.startup_samples``, ``History.known_pods``), whose median is the
estimate. Called once per tick by :mod:`autoscaler.decision.core`; the view is read by every
``llm`` proposal (:mod:`autoscaler.decision.credit`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.decision.types import (
    PodInfo,
    PodPhase,
)

_RUNNING = PodPhase.RUNNING


_PENDING = PodPhase.PENDING


STARTUP_SAMPLES_KEPT = 20
"""How many observed start-up durations History keeps."""


KNOWN_PODS_KEPT = 1000
"""Upper bound on pods remembered as 'seen not ready'."""


MIN_STARTUP_SAMPLE = 1.0
"""Start-up durations below this (seconds) are not samples (pods ready at creation, clock skew)."""


STUCK_FACTOR = 2.0
"""A starting pod older than this x the start-up estimate is suspected stuck (not credited)."""


@dataclass(frozen=True, slots=True)
class PodView:
    """The target's pods, classified for capacity accounting."""

    ready: tuple[str, ...]
    """Running, Ready, not deleting."""
    credited: tuple[str, ...]
    """Starting and credited as capacity on the way."""
    stuck: tuple[str, ...]
    """Starting for longer than ``STUCK_FACTOR`` x the start-up estimate."""
    unschedulable: tuple[tuple[str, str], ...]
    """(pod, scheduler message) of pods that cannot be scheduled."""
    other: int
    """Deleting, Failed, Succeeded or Unknown pods."""
    capacity: int
    """Ready plus credited pods."""
    learned: tuple[float, ...]
    """Learned start-up durations the estimate is the median of (empty: ``default_startup``)."""
    default_startup: float
    """The policy's start-up seconds."""

    @property
    def startup_estimate(self) -> float:
        """The start-up time to assume, seconds (computed when read: few ticks need it)."""
        return startup_estimate(self.learned, self.default_startup, True)  # noqa: FBT003

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "ready": len(self.ready),
            "starting": len(self.credited) + len(self.stuck),
            "credited": len(self.credited),
            "stuck": len(self.stuck),
            "unschedulable": len(self.unschedulable),
            "other": self.other,
            "capacity": self.capacity,
            "startupEstimateSeconds": self.startup_estimate,
        }


def startup_estimate(samples: tuple[float, ...], default: float, learning: bool) -> float:
    """The start-up time to assume: median of learned samples, else the configured default."""
    if learning and samples:
        return float(_median(samples[-STARTUP_SAMPLES_KEPT:]))
    return default


def _median(values: tuple[float, ...]) -> float:
    """``statistics.median`` (same arithmetic): the middle value, or the mean of the two."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def classify_pods(
    pods: tuple[PodInfo, ...], now: float, learned: tuple[float, ...], default: float
) -> PodView:
    """Split pods into ready, credited starting, stuck, unschedulable and others.

    Args:
        pods: The target's pods.
        now: Current time, seconds.
        learned: Learned start-up durations (empty without learning), newest last.
        default: The policy's start-up seconds (the estimate without samples).

    Returns:
        The classification.
    """
    ready = [p.name for p in pods if p.ready and p.phase is _RUNNING and not p.deleting]
    if len(ready) == len(pods):  # the steady state: nothing starting, nothing else
        return PodView(tuple(ready), (), (), (), 0, len(ready), learned, default)
    return _classify_all(pods, now, learned, default)


def _classify_all(
    pods: tuple[PodInfo, ...], now: float, learned: tuple[float, ...], default: float
) -> PodView:
    """:func:`classify_pods` for a fleet with pods that are not all ready."""
    estimate = startup_estimate(learned, default, True)  # noqa: FBT003
    ready: list[str] = []
    credited: list[str] = []
    stuck: list[str] = []
    unschedulable: list[tuple[str, str]] = []
    other = 0
    for pod in pods:
        if pod.deleting or (pod.phase is not _RUNNING and pod.phase is not _PENDING):
            other += 1
        elif pod.phase is _RUNNING and pod.ready:
            ready.append(pod.name)
        elif pod.unschedulable is not None:
            unschedulable.append((pod.name, pod.unschedulable))
        elif pod.created_at is not None and now - pod.created_at > STUCK_FACTOR * estimate:
            stuck.append(pod.name)
        else:
            credited.append(pod.name)
    return PodView(
        tuple(ready),
        tuple(credited),
        tuple(stuck),
        tuple(unschedulable),
        other,
        len(ready) + len(credited),
        learned,
        default,
    )


def learn_startup(
    pods: tuple[PodInfo, ...],
    known: Mapping[str, float],
    samples: tuple[float, ...],
    *,
    first_sight: bool = False,
    all_ready: bool = False,
) -> tuple[dict[str, float], tuple[float, ...]]:
    """Update the start-up learning state from this tick's pods.

    A pod seen not ready (with a creation time) is remembered; when a remembered pod is seen
    Ready with a ``ready_at``, ``ready_at - created_at`` becomes a sample. On the first tick of a
    policy, pods already ready with both timestamps give a sample each (bootstrap).

    Args:
        pods: The target's pods.
        known: Pods seen not ready -> creation time.
        samples: Learned durations, newest last.
        first_sight: The policy's first tick.
        all_ready: Every pod is Running, Ready and not deleting (as :func:`classify_pods` found).

    Returns:
        The new ``known`` mapping (only pods still present) and samples (last 20).
    """
    if not known and not first_sight:
        # No pod remembered: a ready pod gives no sample, the others are remembered.
        if all_ready:
            return {}, tuple(samples[-STARTUP_SAMPLES_KEPT:])
        new_known = {
            pod.name: pod.created_at
            for pod in pods
            if not pod.deleting
            and not (pod.ready and pod.phase is _RUNNING)
            and pod.created_at is not None
            and pod.unschedulable is None
        }
        return _bounded(new_known), tuple(samples[-STARTUP_SAMPLES_KEPT:])
    remembered: dict[str, float] = {}
    new_samples = list(samples)
    for pod in pods:
        if pod.deleting:
            continue
        if pod.ready and pod.phase is _RUNNING:
            created = known.get(pod.name)
            if created is None and first_sight:
                created = pod.created_at
            if created is not None and pod.ready_at is not None:
                duration = pod.ready_at - created
                if duration >= MIN_STARTUP_SAMPLE:
                    new_samples.append(duration)
        elif pod.created_at is not None and pod.unschedulable is None:
            remembered[pod.name] = known.get(pod.name, pod.created_at)
    return _bounded(remembered), tuple(new_samples[-STARTUP_SAMPLES_KEPT:])


def _bounded(known: dict[str, float]) -> dict[str, float]:
    """The newest ``KNOWN_PODS_KEPT`` remembered pods."""
    if len(known) > KNOWN_PODS_KEPT:
        newest = sorted(known.items(), key=lambda item: item[1])[-KNOWN_PODS_KEPT:]
        return dict(newest)
    return known
