"""The Event sink shared by the target recorder and the ScalingPolicy writer (fake API server)."""

from __future__ import annotations

from typing import Any

from autoscaler.clock import VirtualClock
from autoscaler.kube.client import KubeApi
from autoscaler.kube.events import EventSink, EventSpec, InvolvedObject
from tests.fakekube import FakeKube

T0 = 1_700_000_000.0

TARGET = InvolvedObject("apps/v1", "Deployment", "llm", "llama", "uid-target")
POLICY = InvolvedObject("autoscaling.nim-autoscaler.io/v1alpha1", "ScalingPolicy", "llm", "llama")
WARN = EventSpec("Warning", "FailedGetScale", "timed out")


def _events(fake: FakeKube) -> list[dict[str, Any]]:
    return [obj for (plural, _, _), obj in fake.objects.items() if plural == "events"]


class TestEventSink:
    async def test_wire_object(self, fake: FakeKube, api: KubeApi) -> None:
        """A first Event carries the involved object, the reporter and count 1."""
        sink = EventSink(api, clock=VirtualClock(T0), identity="pod-a")
        await sink.emit(TARGET, WARN)
        (event,) = _events(fake)
        assert event["involvedObject"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "llama",
            "namespace": "llm",
            "uid": "uid-target",
        }
        assert (event["type"], event["reason"], event["message"]) == (
            "Warning",
            "FailedGetScale",
            "timed out",
        )
        assert event["source"] == {"component": "nim-autoscaler", "host": "pod-a"}
        assert (event["reportingComponent"], event["reportingInstance"]) == (
            "nim-autoscaler",
            "pod-a",
        )
        assert event["firstTimestamp"] == event["lastTimestamp"] == "2023-11-14T22:13:20Z"
        assert event["count"] == 1
        assert event["metadata"]["name"].startswith("llama.")

    async def test_objects_with_one_name_keep_their_own_events(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """The same reason on a target and on a policy of the same name: two Events."""
        sink = EventSink(api, clock=VirtualClock(T0))
        await sink.emit(TARGET, WARN)
        await sink.emit(POLICY, WARN)
        await sink.emit(POLICY, WARN)
        kinds = sorted((e["involvedObject"]["kind"], e["count"]) for e in _events(fake))
        assert kinds == [("Deployment", 1), ("ScalingPolicy", 1)]  # the repeat is held back

    async def test_repeats_are_patched_once_per_interval(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Repeats within the interval are counted and carried by the next patch."""
        clock = VirtualClock(T0)
        sink = EventSink(api, clock=clock, aggregate_interval=30.0)
        for _ in range(4):
            await sink.emit(POLICY, WARN)
            clock.advance(10)
        patches = [p for m, p in fake.requests if m == "PATCH" and "/events/" in p]
        assert len(patches) == 1  # at T0 + 30 s
        (event,) = _events(fake)
        assert event["count"] == 4
        assert event["lastTimestamp"] == "2023-11-14T22:13:50Z"

    async def test_expired_event_is_recreated_with_the_count(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A 404 on the patch (Event TTL) creates a new Event carrying count and first time."""
        clock = VirtualClock(T0)
        sink = EventSink(api, clock=clock, aggregate_interval=30.0)
        await sink.emit(POLICY, WARN)
        ((_, _, name),) = [k for k in fake.objects if k[0] == "events"]
        fake.delete("events", "llm", name)
        clock.advance(60)
        await sink.emit(POLICY, WARN)
        (event,) = _events(fake)
        assert event["count"] == 2
        assert event["firstTimestamp"] == "2023-11-14T22:13:20Z"
        assert event["lastTimestamp"] == "2023-11-14T22:14:20Z"

    async def test_cache_is_bounded_least_recently_used_first(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Past cache_size keys the least recently used is forgotten (its repeat is new)."""
        clock = VirtualClock(T0)
        sink = EventSink(api, clock=clock, cache_size=2)
        first, second, third = (EventSpec("Warning", "R", str(i)) for i in range(3))
        await sink.emit(POLICY, first)
        await sink.emit(POLICY, second)
        await sink.emit(POLICY, first)  # used again: 'second' is now the oldest
        await sink.emit(POLICY, third)  # forgets 'second'
        await sink.emit(POLICY, first)
        await sink.emit(POLICY, second)
        messages = sorted(e["message"] for e in _events(fake))
        assert messages == ["0", "1", "1", "2"]
