"""The pod cache: list + watch against the fake API server, and pod -> PodInfo conversion."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from autoscaler.decision.types import PodPhase
from autoscaler.kube.client import KubeApi
from autoscaler.kube.pods import PodCache, parse_time, pod_info
from tests.fakekube import FakeKube
from tests.kube.conftest import eventually


@pytest.fixture
async def cache(api: KubeApi) -> AsyncIterator[PodCache]:
    """A started cache watching namespace 'llm', with tiny back-offs."""
    pods = PodCache(api, ["llm"], watch_timeout=30, backoff_base=0.01, backoff_cap=0.05)
    pods.start()
    yield pods
    await pods.stop()


def _names(cache: PodCache, selector: str = "app=llama", namespace: str = "llm") -> list[str]:
    return [p.name for p in cache.pods(namespace, selector)]


class TestListWatch:
    async def test_initial_list_then_synced(self, fake: FakeKube, api: KubeApi) -> None:
        """Pods present before start are listed; synced() turns True after the list."""
        fake.add_pod("llm", "a", labels={"app": "llama"})
        fake.add_pod("llm", "b", labels={"app": "other"})
        fake.add_pod("other-ns", "c", labels={"app": "llama"})
        pods = PodCache(api, ["llm"])
        assert not pods.synced()
        pods.start()
        try:
            assert await pods.wait_synced(5.0)
            assert pods.synced()
            assert _names(pods) == ["a"]
            assert _names(pods, "app=llama", "other-ns") == []  # not watched
        finally:
            await pods.stop()

    async def test_watch_added_modified_deleted(self, fake: FakeKube, cache: PodCache) -> None:
        """Watch events keep the cache current."""
        assert await cache.wait_synced(5.0)
        fake.add_pod("llm", "a", labels={"app": "llama"}, phase="Pending", ready=False)
        await eventually(lambda: _names(cache) == ["a"])
        assert not cache.pods("llm", "app=llama")[0].ready
        fake.set_pod_state("llm", "a", phase="Running", ready=True)
        await eventually(lambda: cache.pods("llm", "app=llama")[0].ready)
        fake.delete("pods", "llm", "a")
        await eventually(lambda: _names(cache) == [])
        assert cache.lists == 1

    async def test_lookups_are_memoised_until_the_namespace_changes(
        self, fake: FakeKube, cache: PodCache
    ) -> None:
        """A repeated lookup is served from memory; any event in the namespace refreshes it."""
        assert await cache.wait_synced(5.0)
        fake.add_pod("llm", "a", labels={"app": "llama"})
        await eventually(lambda: _names(cache) == ["a"])
        first = cache.pods("llm", "app=llama")
        assert cache.pods("llm", "app=llama") is first
        fake.add_pod("llm", "b", labels={"app": "other"})
        await eventually(lambda: cache.pods("llm", "app=llama") is not first)
        assert _names(cache) == ["a"]
        fake.add_pod("llm", "c", labels={"app": "llama"})
        await eventually(lambda: _names(cache) == ["a", "c"])
        fake.delete("pods", "llm", "a")
        await eventually(lambda: _names(cache) == ["c"])

    async def test_all_namespaces_when_none_configured(self, fake: FakeKube, api: KubeApi) -> None:
        """With no namespaces configured one cluster-wide watch serves every namespace."""
        fake.add_pod("ns1", "a", labels={"app": "llama"})
        pods = PodCache(api, [])
        pods.start()
        try:
            assert await pods.wait_synced(5.0)
            fake.add_pod("ns2", "b", labels={"app": "llama"})
            await eventually(lambda: _names(pods, namespace="ns2") == ["b"])
            assert _names(pods, namespace="ns1") == ["a"]
            assert any(
                p == "/api/v1/pods" or p.startswith("/api/v1/pods?") for _, p in fake.requests
            )
        finally:
            await pods.stop()

    async def test_bookmarks_requested_and_advance_version(
        self, fake: FakeKube, cache: PodCache
    ) -> None:
        """The watch asks for bookmarks; after a bookmark a resumed watch starts from it."""
        assert await cache.wait_synced(5.0)
        await eventually(lambda: fake.open_watches == 1)
        assert any("allowWatchBookmarks=true" in p for _, p in fake.requests)
        fake.add_pod("elsewhere", "x", labels={})  # bumps the version, invisible to 'llm'
        fake.send_bookmarks()
        rv = str(fake.resource_version)
        await eventually(lambda: cache._rv["llm"] == rv)
        fake.cut_watches()
        await eventually(
            lambda: any(
                f"resourceVersion={rv}" in p and "watch=true" in p for _, p in fake.requests
            )
        )

    async def test_watch_cut_resumes_without_relist(self, fake: FakeKube, cache: PodCache) -> None:
        """A dropped watch resumes from the last version: no re-list, no lost events."""
        assert await cache.wait_synced(5.0)
        fake.add_pod("llm", "a", labels={"app": "llama"})
        await eventually(lambda: _names(cache) == ["a"])
        await eventually(lambda: fake.open_watches == 1)
        fake.cut_watches()
        fake.add_pod("llm", "b", labels={"app": "llama"})  # happens while disconnected
        await eventually(lambda: _names(cache) == ["a", "b"])
        assert cache.lists == 1
        assert cache.watches >= 2

    async def test_410_error_event_relists(self, fake: FakeKube, cache: PodCache) -> None:
        """An ERROR event with code 410 (version compacted away) makes the cache re-list."""
        assert await cache.wait_synced(5.0)
        await eventually(lambda: fake.open_watches == 1)
        fake.add_pod("llm", "a", labels={"app": "llama"})
        await eventually(lambda: _names(cache) == ["a"])
        fake.compact()
        fake.history_limit = 0  # any event from now is immediately compacted
        fake.cut_watches()
        fake.delete("pods", "llm", "a")  # lost to the watch, found by the re-list
        fake.add_pod("llm", "c", labels={"app": "llama"})
        fake.history_limit = 1000
        await eventually(lambda: cache.lists >= 2)
        await eventually(lambda: _names(cache) == ["c"])

    async def test_http_410_relists(self, fake: FakeKube, cache: PodCache) -> None:
        """A 410 Gone HTTP answer to the watch request also re-lists."""
        assert await cache.wait_synced(5.0)
        await eventually(lambda: fake.open_watches == 1)
        fake.inject(r"/pods$", 410, method="GET", times=1)  # only matches the watch (path)
        fake.cut_watches()
        await eventually(lambda: cache.lists >= 2)

    async def test_malformed_event_relists_instead_of_dying(
        self, fake: FakeKube, cache: PodCache
    ) -> None:
        """An undecodable ERROR event does not kill the reflector: it re-lists and goes on."""
        assert await cache.wait_synced(5.0)
        await eventually(lambda: fake.open_watches == 1)
        for watcher in fake._watchers:
            watcher.queue.put_nowait({"type": "ERROR", "object": {"code": "bogus"}})
        await eventually(lambda: cache.lists >= 2)
        fake.add_pod("llm", "after", labels={"app": "llama"})
        await eventually(lambda: _names(cache) == ["after"])

    async def test_errors_back_off_and_recover(self, fake: FakeKube, api: KubeApi) -> None:
        """Failing lists are retried with growing delays until they work."""
        delays: list[float] = []

        async def record_sleep(seconds: float) -> None:
            delays.append(seconds)

        fake.inject(r"/pods$", 500, method="GET", times=4)
        pods = PodCache(api, ["llm"], backoff_base=0.5, backoff_cap=2.0, sleep=record_sleep)
        pods.start()
        try:
            assert await pods.wait_synced(5.0)
        finally:
            await pods.stop()
        assert delays[:4] == [0.5, 1.0, 2.0, 2.0]

    async def test_server_timeout_restarts_watch(self, fake: FakeKube, api: KubeApi) -> None:
        """A watch ended by the server's timeoutSeconds is restarted, without a re-list."""
        pods = PodCache(api, ["llm"], watch_timeout=1, backoff_base=0.01)
        pods.start()
        try:
            assert await pods.wait_synced(5.0)
            await eventually(lambda: pods.watches >= 2, timeout=5.0)
            fake.add_pod("llm", "late", labels={"app": "llama"})
            await eventually(lambda: _names(pods) == ["late"])
            assert pods.lists == 1
        finally:
            await pods.stop()

    async def test_selector_and_bad_selector(self, fake: FakeKube, cache: PodCache) -> None:
        """pods() filters by the selector; an invalid selector raises."""
        from autoscaler.kube.selector import SelectorError

        fake.add_pod("llm", "a", labels={"app": "llama", "tier": "gpu"})
        fake.add_pod("llm", "b", labels={"app": "llama", "tier": "cpu"})
        await eventually(lambda: len(_names(cache)) == 2)
        assert _names(cache, "app=llama,tier in (gpu)") == ["a"]
        assert _names(cache, "app=llama,tier!=gpu") == ["b"]
        with pytest.raises(SelectorError):
            cache.pods("llm", "app in (")


class TestPodInfo:
    def test_running_ready_pod(self) -> None:
        """Phase, readiness and times are read from the pod."""
        info = pod_info(
            {
                "metadata": {"name": "p", "creationTimestamp": "2024-05-01T10:00:00Z"},
                "status": {
                    "phase": "Running",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "True",
                            "lastTransitionTime": "2024-05-01T10:00:05Z",
                        },
                        {
                            "type": "Ready",
                            "status": "True",
                            "lastTransitionTime": "2024-05-01T10:03:00Z",
                        },
                    ],
                },
            }
        )
        assert info.phase is PodPhase.RUNNING
        assert info.ready
        assert info.created_at == parse_time("2024-05-01T10:00:00Z")
        assert info.scheduled_at is not None
        assert info.created_at is not None
        assert info.scheduled_at - info.created_at == 5.0
        assert info.ready_at is not None
        assert info.ready_at - info.created_at == 180.0
        assert not info.deleting
        assert info.unschedulable is None

    def test_unschedulable_and_terminating(self) -> None:
        """PodScheduled=False/Unschedulable gives its message; deletionTimestamp -> deleting."""
        info = pod_info(
            {
                "metadata": {"name": "p", "deletionTimestamp": "2024-05-01T10:00:00Z"},
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                        }
                    ],
                },
            }
        )
        assert info.phase is PodPhase.PENDING
        assert not info.ready
        assert info.scheduled_at is None
        assert info.deleting
        assert info.unschedulable == "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."

    def test_unknown_phase_and_fractional_time(self) -> None:
        """An unknown phase becomes Unknown; MicroTime stamps parse."""
        info = pod_info(
            {
                "metadata": {"name": "p", "creationTimestamp": "2024-05-01T10:00:00.5Z"},
                "status": {"phase": "Weird"},
            }
        )
        assert info.phase is PodPhase.UNKNOWN
        assert info.created_at == parse_time("2024-05-01T10:00:00Z") + 0.5  # type: ignore[operator]
