"""Per-policy series kept as plain values and rendered when ``/metrics`` is scraped.

:mod:`autoscaler.observability.metrics` and :mod:`autoscaler.observability.fleet_metrics` keep
one small state object per policy (floats, counts, references to the policy and to its last
decision's numbers) rather than a prometheus_client child per labelled series (a gauge object,
its dict and a lock: about 750 bytes each, ~30 per policy). A :class:`Collector` registered in
the injected registry turns that state into metric families at each scrape.

The event loop writes the state; :mod:`autoscaler.observability.server` renders ``/metrics`` in a
worker thread. So a render copies each dict it walks (``list(d.values())`` runs in C without
releasing the GIL) and reads objects that are replaced whole, never changed in place, except
:class:`Count`, whose single-field updates a reader sees either before or after.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from autoscaler.policy.models import ScalingPolicy

S = TypeVar("S")


@dataclass(slots=True)
class Count:
    """One counter series: its value and when it was created (exported as ``_created``)."""

    value: float
    created: float
    """Unix time of the first count, as prometheus_client stamps a new child."""

    @classmethod
    def new(cls, value: float = 1.0) -> Count:
        """A series created now, at ``value``."""
        return cls(value, time.time())


def state_of(states: dict[str, S], policy: ScalingPolicy, new: Callable[[str, str], S]) -> S:
    """The export state of ``policy`` in ``states``, made by ``new(name, namespace)`` if none."""
    state = states.get(policy.key)
    if state is None:
        meta = policy.metadata
        state = states[policy.key] = new(meta.name, meta.namespace)
    return state


def add(counts: dict[str, Count], label: str, by: float = 1.0) -> None:
    """Add ``by`` to the series ``label`` of ``counts`` (created now when new, even for 0)."""
    count = counts.get(label)
    if count is None:
        counts[label] = Count.new(by)
    else:
        count.value += by


@dataclass(frozen=True, slots=True)
class GaugeSpec:
    """Name, help text and label names of a gauge family (a public contract)."""

    name: str
    documentation: str
    labels: tuple[str, ...]

    def family(self) -> GaugeMetricFamily:
        """An empty family to add this scrape's samples to."""
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labels)


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """Name (without ``_total``), help text and label names of a counter family."""

    name: str
    documentation: str
    labels: tuple[str, ...]

    def family(self) -> CounterMetricFamily:
        """An empty family to add this scrape's samples to (with their ``created`` times)."""
        return CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class Collector:
    """prometheus_client's collector protocol over a function rendering families from state."""

    def __init__(self, render: Callable[[], Iterable[Metric]]) -> None:
        self._render = render

    def collect(self) -> Iterable[Metric]:
        """This scrape's families."""
        return self._render()

    def describe(self) -> Iterable[Metric]:
        """The same families: the registry reads their names once, to refuse duplicates."""
        return self._render()
