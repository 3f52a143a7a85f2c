"""Durable decision history in a ConfigMap, against the fake API server."""

from __future__ import annotations

import asyncio
import json

import structlog

from autoscaler.decision.types import History, Recommendation, ScaleEvent
from autoscaler.kube.client import KubeApi
from autoscaler.kube.history import DEFAULT_NAME, KubeHistoryStore, history_key
from tests.fakekube import FakeKube
from tests.kube.test_recorder import policy

NS = "nim-system"


def _history(replicas: int = 3) -> History:
    return History(
        initialized=True,
        recommendations=(Recommendation(100.0, replicas), Recommendation(115.0, replicas + 1)),
        scale_up_events=(ScaleEvent(110.0, 2),),
        startup_samples=(182.5,),
        known_pods={"llama-1": 90.0},
        extra={"llm": {"ewma": 0.5}},
    )


async def save_now(store: KubeHistoryStore, *args: object) -> None:
    """Save one history and flush it, as one control-loop tick does for one policy."""
    await store.save(*args)  # type: ignore[arg-type]
    await store.flush()


def _configmap(fake: FakeKube) -> dict[str, object] | None:
    return fake.get("configmaps", NS, DEFAULT_NAME)


def _writes(fake: FakeKube) -> list[str]:
    return [m for m, p in fake.requests if m in {"POST", "PUT"} and "/configmaps" in p]


class TestRoundTrip:
    async def test_save_then_restore_in_a_new_store(self, fake: FakeKube, api: KubeApi) -> None:
        """What one instance saves, a fresh instance (restart/failover) loads identically."""
        await save_now(KubeHistoryStore(api, NS), policy(), _history())
        restored = await KubeHistoryStore(api, NS).load(policy())
        assert restored == _history()
        cm = _configmap(fake)
        assert cm is not None
        assert list(cm["data"]) == ["llm.llama-policy"]  # type: ignore[call-overload]

    async def test_nothing_saved_is_none(self, api: KubeApi) -> None:
        """No ConfigMap at all: load returns None."""
        assert await KubeHistoryStore(api, NS).load(policy()) is None

    async def test_written_only_when_changed(self, fake: FakeKube, api: KubeApi) -> None:
        """Saving the same history twice writes once; a change writes again (PUT with rv)."""
        store = KubeHistoryStore(api, NS)
        await save_now(store, policy(), _history())
        await save_now(store, policy(), _history())
        assert _writes(fake) == ["POST"]
        await save_now(store, policy(), _history(5))
        assert _writes(fake) == ["POST", "PUT"]
        restored = await KubeHistoryStore(api, NS).load(policy())
        assert restored == _history(5)

    async def test_restored_then_unchanged_is_not_rewritten(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """After a restart, saving the restored history again writes nothing."""
        await save_now(KubeHistoryStore(api, NS), policy(), _history())
        store = KubeHistoryStore(api, NS)
        loaded = await store.load(policy())
        assert loaded is not None
        await save_now(store, policy(), loaded)
        assert _writes(fake) == ["POST"]


class TestFailover:
    async def test_load_rereads_after_max_age(self, fake: FakeKube, api: KubeApi) -> None:
        """Loads within max_age share one read; a later load sees another instance's save."""
        now = [0.0]
        standby = KubeHistoryStore(api, NS, max_age=5.0, monotonic=lambda: now[0])
        assert await standby.load(policy()) is None
        assert await standby.load(policy()) is None
        gets = [p for m, p in fake.requests if m == "GET" and "/configmaps/" in p]
        assert len(gets) == 1
        await save_now(KubeHistoryStore(api, NS), policy(), _history(6))  # the leader saves
        now[0] = 6.0  # the standby becomes leader later and loads again
        assert await standby.load(policy()) == _history(6)


class TestConcurrency:
    async def test_conflict_rereads_and_keeps_other_keys(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Two stores writing different policies: a 409 re-reads; both keys survive."""
        first = KubeHistoryStore(api, NS)
        second = KubeHistoryStore(api, NS)
        other = policy().model_copy(
            update={"metadata": policy().metadata.model_copy(update={"name": "other"})}
        )
        await first.load(policy())  # both read "no ConfigMap"
        await second.load(other)
        await save_now(first, policy(), _history(3))
        await save_now(second, other, _history(7))  # POST -> 409 AlreadyExists -> read -> PUT
        await save_now(first, policy(), _history(4))  # stale rv -> 409 Conflict -> read -> PUT
        cm = _configmap(fake)
        assert cm is not None
        data = cm["data"]
        assert isinstance(data, dict)
        assert set(data) == {"llm.llama-policy", "llm.other"}
        assert History.from_json(json.loads(data["llm.llama-policy"])) == _history(4)
        assert History.from_json(json.loads(data["llm.other"])) == _history(7)
        assert _writes(fake) == ["POST", "POST", "PUT", "PUT", "PUT"]

    async def test_injected_conflicts_bounded(self, fake: FakeKube, api: KubeApi) -> None:
        """Endless 409s stop after the retry bound without raising."""
        store = KubeHistoryStore(api, NS, conflict_retries=2)
        await save_now(store, policy(), _history())
        fake.inject(r"/configmaps/", 409, method="PUT", times=None)
        await save_now(store, policy(), _history(9))
        assert _writes(fake) == ["POST", "PUT", "PUT", "PUT"]


class TestCorruption:
    async def test_unreadable_json_starts_fresh_for_that_policy_only(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A broken value is logged and that policy starts fresh; others still load."""
        other = policy().model_copy(
            update={"metadata": policy().metadata.model_copy(update={"name": "other"})}
        )
        good = json.dumps(_history().to_json())
        fake.put(
            "configmaps",
            {
                "metadata": {"name": DEFAULT_NAME, "namespace": NS},
                "data": {history_key(policy()): "{not json", history_key(other): good},
            },
        )
        store = KubeHistoryStore(api, NS)
        with structlog.testing.capture_logs() as logs:
            assert await store.load(policy()) is None
        assert any(e["event"] == "history_unreadable_starting_fresh" for e in logs)
        assert await store.load(other) == _history()

    async def test_malformed_structure_starts_fresh(self, fake: FakeKube, api: KubeApi) -> None:
        """Valid JSON of the wrong shape is also unreadable."""
        fake.put(
            "configmaps",
            {
                "metadata": {"name": DEFAULT_NAME, "namespace": NS},
                "data": {history_key(policy()): '{"recommendations": [[1]]}'},
            },
        )
        assert await KubeHistoryStore(api, NS).load(policy()) is None

    async def test_api_failure_is_logged_not_raised(self, fake: FakeKube, api: KubeApi) -> None:
        """A 500 on read or write never raises to the loop."""
        fake.inject(r"/configmaps/", 500, times=None)
        fake.inject(r"/configmaps$", 500, times=None)
        store = KubeHistoryStore(api, NS)
        assert await store.load(policy()) is None
        await save_now(store, policy(), _history())
        assert fake.get("configmaps", NS, DEFAULT_NAME) is None


class TestSizeLimit:
    async def test_oversized_history_is_refused_with_clear_error(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A save that would exceed the limit is not written and says why."""
        store = KubeHistoryStore(api, NS, max_bytes=2_000)
        big = History(startup_samples=tuple(float(i) for i in range(1_000)))
        with structlog.testing.capture_logs() as logs:
            await save_now(store, policy(), big)
        (entry,) = [e for e in logs if e["event"] == "history_too_large"]
        assert entry["limit"] == 2_000
        assert entry["bytes"] > 2_000
        assert fake.get("configmaps", NS, DEFAULT_NAME) is None


class TestOneWritePerTick:
    async def test_many_saves_then_one_flush_is_one_write(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A tick saving 20 policies concurrently costs one ConfigMap write, no conflicts."""
        store = KubeHistoryStore(api, NS)
        base = policy()
        policies = [
            base.model_copy(update={"metadata": base.metadata.model_copy(update={"name": f"p{i}"})})
            for i in range(20)
        ]
        await asyncio.gather(*(store.save(p, _history(i + 1)) for i, p in enumerate(policies)))
        assert _writes(fake) == []  # nothing is written before the flush
        await store.flush()
        assert _writes(fake) == ["POST"]
        conflicts = [p for m, p in fake.requests if m == "PUT" and "configmaps" in p]
        assert conflicts == []
        fresh = KubeHistoryStore(api, NS)
        for i, p in enumerate(policies):
            assert await fresh.load(p) == _history(i + 1)
        await store.flush()  # nothing queued: no request
        assert _writes(fake) == ["POST"]
