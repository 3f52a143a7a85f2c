"""Durable decision history in sharded ConfigMaps, against the fake API server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
import structlog

from autoscaler.decision.queue_state import QueueState
from autoscaler.decision.types import History, Recommendation, ScaleEvent
from autoscaler.kube.client import KubeApi
from autoscaler.kube.history import (
    DEFAULT_NAME,
    HistoryUnavailable,
    KubeHistoryStore,
    history_key,
    shard_of,
)
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
        queue=QueueState(throughput={"queueDepth": 0.5}),
    )


async def save_now(store: KubeHistoryStore, *args: object) -> None:
    """Save one history and flush it, as one control-loop tick does for one policy."""
    await store.save(*args)  # type: ignore[arg-type]
    await store.flush()


SHARD = f"{DEFAULT_NAME}-0"
"""The only shard of a one-shard store."""


def _store(api: KubeApi, **kwargs: Any) -> KubeHistoryStore:
    """A one-shard store (the layout of one shard; sharding itself is tested below)."""
    return KubeHistoryStore(api, NS, shards=1, save_interval=0, **kwargs)


def _configmap(fake: FakeKube) -> dict[str, object] | None:
    return fake.get("configmaps", NS, SHARD)


def _writes(fake: FakeKube) -> list[str]:
    return [m for m, p in fake.requests if m in {"POST", "PUT"} and "/configmaps" in p]


class TestRoundTrip:
    async def test_save_then_restore_in_a_new_store(self, fake: FakeKube, api: KubeApi) -> None:
        """What one instance saves, a fresh instance (restart/failover) loads identically."""
        await save_now(_store(api), policy(), _history())
        restored = await _store(api).load(policy())
        assert restored == _history()
        cm = _configmap(fake)
        assert cm is not None
        assert list(cm["data"]) == ["llm.llama-policy"]  # type: ignore[call-overload]

    async def test_nothing_saved_is_none(self, api: KubeApi) -> None:
        """No ConfigMap at all: load returns None."""
        assert await _store(api).load(policy()) is None

    async def test_written_only_when_changed(self, fake: FakeKube, api: KubeApi) -> None:
        """Saving the same history twice writes once; a change writes again (PUT with rv)."""
        store = _store(api)
        await save_now(store, policy(), _history())
        await save_now(store, policy(), _history())
        assert _writes(fake) == ["POST"]
        await save_now(store, policy(), _history(5))
        assert _writes(fake) == ["POST", "PUT"]
        restored = await _store(api).load(policy())
        assert restored == _history(5)

    async def test_restored_then_unchanged_is_not_rewritten(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """After a restart, saving the restored history again writes nothing."""
        await save_now(_store(api), policy(), _history())
        store = _store(api)
        loaded = await store.load(policy())
        assert loaded is not None
        await save_now(store, policy(), loaded)
        assert _writes(fake) == ["POST"]


class TestFailover:
    async def test_load_rereads_after_max_age(self, fake: FakeKube, api: KubeApi) -> None:
        """Loads within max_age share one read; a later load sees another instance's save."""
        now = [0.0]
        standby = _store(api, max_age=5.0, monotonic=lambda: now[0])
        assert await standby.load(policy()) is None
        assert await standby.load(policy()) is None
        gets = [p for m, p in fake.requests if m == "GET" and "/configmaps/" in p]
        assert gets.count(f"/api/v1/namespaces/{NS}/configmaps/{SHARD}") == 1
        await save_now(_store(api), policy(), _history(6))  # the leader saves
        now[0] = 6.0  # the standby becomes leader later and loads again
        assert await standby.load(policy()) == _history(6)


class TestConcurrency:
    async def test_conflict_rereads_and_keeps_other_keys(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Two stores writing different policies: a 409 re-reads; both keys survive."""
        first = _store(api)
        second = _store(api)
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
        store = _store(api, conflict_retries=2)
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
                "metadata": {"name": SHARD, "namespace": NS},
                "data": {history_key(policy()): "{not json", history_key(other): good},
            },
        )
        store = _store(api)
        with structlog.testing.capture_logs() as logs:
            assert await store.load(policy()) is None
        assert any(e["event"] == "history_unreadable_starting_fresh" for e in logs)
        assert await store.load(other) == _history()

    async def test_malformed_structure_starts_fresh(self, fake: FakeKube, api: KubeApi) -> None:
        """Valid JSON of the wrong shape is also unreadable."""
        fake.put(
            "configmaps",
            {
                "metadata": {"name": SHARD, "namespace": NS},
                "data": {history_key(policy()): '{"recommendations": [[1]]}'},
            },
        )
        assert await _store(api).load(policy()) is None

    async def test_api_failure_is_unknown_not_absent(self, fake: FakeKube, api: KubeApi) -> None:
        """A 500 on read is HistoryUnavailable (not "no history"); on write it is logged."""
        fake.inject(r"/configmaps/", 500, times=None)
        fake.inject(r"/configmaps$", 500, times=None)
        store = _store(api)
        with pytest.raises(HistoryUnavailable):
            await store.load(policy())
        await save_now(store, policy(), _history())
        assert _configmap(fake) is None


class TestSizeLimit:
    async def test_oversized_history_is_refused_with_clear_error(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A save that would exceed the limit is not written and says why."""
        store = _store(api, max_bytes=2_000)
        big = History(startup_samples=tuple(float(i) for i in range(1_000)))
        with structlog.testing.capture_logs() as logs:
            await save_now(store, policy(), big)
        (entry,) = [e for e in logs if e["event"] == "history_shard_too_large"]
        assert entry["limit"] == 2_000
        assert entry["bytes"] > 2_000
        assert _configmap(fake) is None


class TestOneWritePerTick:
    async def test_many_saves_then_one_flush_is_one_write(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A tick saving 20 policies concurrently costs one ConfigMap write, no conflicts."""
        store = _store(api)
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
        fresh = _store(api)
        for i, p in enumerate(policies):
            assert await fresh.load(p) == _history(i + 1)
        await store.flush()  # nothing queued: no request
        assert _writes(fake) == ["POST"]


def _named(name: str) -> Any:
    base = policy()
    return base.model_copy(update={"metadata": base.metadata.model_copy(update={"name": name})})


class TestSaveInterval:
    """Recommendations and learning are written once per save_interval; events at once."""

    @staticmethod
    def _ticked(history: History, t: float, replicas: int = 4) -> History:
        """The history one more tick later: one more recommendation (by default the same
        count as the newest one of :func:`_history`), nothing else."""
        return dataclasses.replace(
            history, recommendations=(*history.recommendations, Recommendation(t, replicas))
        )

    async def test_recommendations_wait_for_the_interval(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        now = [0.0]
        store = KubeHistoryStore(api, NS, shards=1, save_interval=60.0, monotonic=lambda: now[0])
        history = _history()
        await save_now(store, policy(), history)
        assert _writes(fake) == ["POST"]
        for tick in range(1, 4):  # 15 s ticks: a recommendation each
            now[0] = 15.0 * tick
            history = self._ticked(history, 1000.0 + tick)
            await save_now(store, policy(), history)
        assert _writes(fake) == ["POST"]
        now[0] = 60.0
        history = self._ticked(history, 1004.0)
        await save_now(store, policy(), history)
        assert _writes(fake) == ["POST", "PUT"]
        # The newest, all of it, marked as possibly followed by 60 s of unwritten repeats.
        assert await _store(api).load(policy()) == dataclasses.replace(history, held_back=60.0)

    async def test_a_scale_event_is_written_at_once(self, fake: FakeKube, api: KubeApi) -> None:
        now = [0.0]
        store = KubeHistoryStore(api, NS, shards=1, save_interval=60.0, monotonic=lambda: now[0])
        await save_now(store, policy(), _history())
        now[0] = 15.0
        scaled = dataclasses.replace(
            _history(), scale_up_events=(*_history().scale_up_events, ScaleEvent(1015.0, 2))
        )
        await save_now(store, policy(), scaled)
        assert _writes(fake) == ["POST", "PUT"]
        assert await _store(api).load(policy()) == dataclasses.replace(scaled, held_back=60.0)

    async def test_a_new_recommended_count_is_written_at_once(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """What is held back is only ever a run of the newest count written: a change of
        recommended count goes out in the tick it appears (a restart may then carry it)."""
        now = [0.0]
        store = KubeHistoryStore(api, NS, shards=1, save_interval=60.0, monotonic=lambda: now[0])
        history = _history()  # newest recommendation: 4
        await save_now(store, policy(), history)
        now[0] = 15.0
        history = self._ticked(history, 1015.0, replicas=2)
        await save_now(store, policy(), history)
        assert _writes(fake) == ["POST", "PUT"]
        now[0] = 30.0
        history = self._ticked(history, 1030.0, replicas=2)
        await save_now(store, policy(), history)
        assert _writes(fake) == ["POST", "PUT"]  # a repeat of 2: held back

    async def test_forced_flush_writes_what_is_queued(self, fake: FakeKube, api: KubeApi) -> None:
        """A graceful stop loses nothing: ``flush(force=True)`` writes the queued histories."""
        now = [0.0]
        store = KubeHistoryStore(api, NS, shards=1, save_interval=60.0, monotonic=lambda: now[0])
        await save_now(store, policy(), _history())
        now[0] = 15.0
        later = self._ticked(_history(), 1015.0)
        await save_now(store, policy(), later)
        assert _writes(fake) == ["POST"]
        await store.flush(force=True)
        assert _writes(fake) == ["POST", "PUT"]
        assert await _store(api).load(policy()) == later  # a graceful stop holds nothing back
        await store.flush(force=True)  # nothing queued: nothing written
        assert _writes(fake) == ["POST", "PUT"]

    async def test_shards_written_together_spread_over_the_interval(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Eight shards first written in one tick are then written at their own phases: each
        once per interval, not all eight in the same tick."""
        now = [0.0]
        store = KubeHistoryStore(api, NS, shards=8, save_interval=60.0, monotonic=lambda: now[0])
        policies = [_named(f"p-{i}") for i in range(40)]
        histories = {p.key: _history() for p in policies}
        writes_per_tick: list[int] = []
        for tick in range(int(300 / 5) + 1):  # five minutes of 5 s ticks
            now[0] = 5.0 * tick
            before = len(_writes(fake))
            for p in policies:
                histories[p.key] = self._ticked(histories[p.key], 1000.0 + now[0])
                await store.save(p, histories[p.key])
            await store.flush()
            writes_per_tick.append(len(_writes(fake)) - before)
        assert writes_per_tick[0] == 8
        later = writes_per_tick[1:]
        assert max(later) <= 2
        assert 8 * 4 <= sum(later) <= 8 * 5  # once per minute each, over five minutes


class TestShards:
    async def test_policies_spread_over_shards_by_stable_hash(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Each policy's key is in shard crc32(namespace/name) % shards, and only there."""
        store = KubeHistoryStore(api, NS, shards=4, save_interval=0)
        policies = [_named(f"p{i}") for i in range(40)]
        for i, p in enumerate(policies):
            await store.save(p, _history(i + 1))
        await store.flush()
        for index in range(4):
            cm = fake.get("configmaps", NS, f"{DEFAULT_NAME}-{index}")
            assert cm is not None
            expected = {history_key(p) for p in policies if shard_of(p.key, 4) == index}
            assert set(cm["data"]) == expected
        assert shard_of("llm/p0", 4) == shard_of("llm/p0", 4)  # no per-process salt
        fresh = KubeHistoryStore(api, NS, shards=4, save_interval=0)
        for i, p in enumerate(policies):
            assert await fresh.load(p) == _history(i + 1)

    async def test_one_failing_shard_does_not_stop_the_others(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A shard that cannot be read or written fails alone: the others load and save."""
        policies = [_named(f"p{i}") for i in range(12)]
        bad = shard_of(policies[0].key, 3)
        fake.inject(f"{DEFAULT_NAME}-{bad}$", 500, times=None)
        store = KubeHistoryStore(api, NS, shards=3, save_interval=0)
        for p in policies:
            if shard_of(p.key, 3) == bad:
                with pytest.raises(HistoryUnavailable):
                    await store.load(p)
            else:
                assert await store.load(p) is None
            await store.save(p, _history())
        await store.flush()
        for index in range(3):
            cm = fake.get("configmaps", NS, f"{DEFAULT_NAME}-{index}")
            assert (cm is None) == (index == bad)

    async def test_oversized_shard_is_refused_alone(self, fake: FakeKube, api: KubeApi) -> None:
        """A shard over the size limit is not written (and says which); the others are."""
        policies = [_named(f"p{i}") for i in range(8)]
        big_policy = policies[0]
        big_shard = shard_of(big_policy.key, 2)
        store = KubeHistoryStore(api, NS, shards=2, max_bytes=3_000, save_interval=0)
        big = History(startup_samples=tuple(float(i) for i in range(1_000)))
        for p in policies:
            await store.save(p, big if p is big_policy else _history())
        with structlog.testing.capture_logs() as logs:
            await store.flush()
        (entry,) = [e for e in logs if e["event"] == "history_shard_too_large"]
        assert entry["configmap"] == f"{NS}/{DEFAULT_NAME}-{big_shard}"
        assert big_policy.key in entry["policies"]
        assert fake.get("configmaps", NS, f"{DEFAULT_NAME}-{big_shard}") is None
        assert fake.get("configmaps", NS, f"{DEFAULT_NAME}-{1 - big_shard}") is not None

    async def test_deleted_shard_is_recreated_with_all_its_keys(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A shard ConfigMap deleted under the store comes back whole at the next change."""
        store = KubeHistoryStore(api, NS, shards=1, save_interval=0)
        first, second = _named("a"), _named("b")
        await store.save(first, _history(2))
        await store.save(second, _history(3))
        await store.flush()
        fake.delete("configmaps", NS, SHARD)
        await save_now(store, first, _history(4))
        cm = _configmap(fake)
        assert cm is not None
        fresh = _store(api)
        assert await fresh.load(first) == _history(4)
        assert await fresh.load(second) == _history(3)


class TestRemovedPolicies:
    async def test_key_deleted_after_grace_only(self, fake: FakeKube, api: KubeApi) -> None:
        """A policy no longer saved keeps its key for ``grace`` seconds, then loses it."""
        now = [0.0]
        store = _store(api, grace=600.0, monotonic=lambda: now[0])
        kept, removed = _named("kept"), _named("removed")
        await store.save(kept, _history(1))
        await save_now(store, removed, _history(2))
        now[0] = 500.0
        await save_now(store, kept, _history(3))
        data = _configmap(fake)["data"]  # type: ignore[index]
        assert set(data) == {history_key(kept), history_key(removed)}
        now[0] = 700.0
        await save_now(store, kept, _history(3))  # unchanged, but the other key has expired
        data = _configmap(fake)["data"]  # type: ignore[index]
        assert set(data) == {history_key(kept)}

    async def test_a_key_no_longer_saved_keeps_its_value_through_other_writes(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """The store keeps digests, not texts, of what it wrote: a policy saved no more (removed,
        or a tick that could not decide) still has its exact value written with the shard's
        other keys, and loads as it was saved, from this store and from a fresh one."""
        now = [0.0]
        store = KubeHistoryStore(
            api, NS, shards=1, save_interval=60.0, max_age=1e9, monotonic=lambda: now[0]
        )
        kept, idle = _named("kept"), _named("idle")
        await store.save(idle, _history(2))
        await save_now(store, kept, _history(1))
        written = _configmap(fake)["data"][history_key(idle)]  # type: ignore[index]
        for step, replicas in enumerate((3, 5, 4), start=1):
            now[0] = 60.0 * step
            await save_now(store, kept, _history(replicas))  # a new count: written at once
            data = _configmap(fake)["data"]  # type: ignore[index]
            assert json.loads(data[history_key(kept)])["recommendations"][-1][1] == replicas + 1
            assert data[history_key(idle)] == written
        assert len(_writes(fake)) == 4
        restored = await store.load(idle)  # within max_age: from what the store holds
        assert restored == dataclasses.replace(_history(2), held_back=60.0)
        assert await _store(api).load(idle) == restored

    async def test_an_expired_key_survives_a_failed_write(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A write that deletes an expired key fails: the next one deletes it, and meanwhile
        every other key keeps its value (the store lost neither texts nor histories)."""
        now = [0.0]
        store = _store(api, grace=600.0, monotonic=lambda: now[0])
        kept, removed = _named("kept"), _named("removed")
        await store.save(removed, _history(2))
        await save_now(store, kept, _history(1))
        now[0] = 700.0
        fake.inject(f"{SHARD}$", 500, method="PUT")
        await save_now(store, kept, _history(3))
        assert history_key(removed) in _configmap(fake)["data"]  # type: ignore[index]
        await save_now(store, kept, _history(4))
        data = _configmap(fake)["data"]  # type: ignore[index]
        assert set(data) == {history_key(kept)}
        assert await _store(api).load(kept) == _history(4)

    async def test_keys_found_at_start_get_a_full_grace(self, fake: FakeKube, api: KubeApi) -> None:
        """After a restart, keys of policies not (yet) in force are kept for ``grace``."""
        await save_now(_store(api), _named("old"), _history(2))
        now = [1000.0]
        store = _store(api, grace=600.0, monotonic=lambda: now[0])
        await save_now(store, _named("new"), _history(1))
        assert history_key(_named("old")) in _configmap(fake)["data"]  # type: ignore[index]
        now[0] = 1700.0
        await save_now(store, _named("new"), _history(1))
        assert history_key(_named("old")) not in _configmap(fake)["data"]  # type: ignore[index]


class TestMigration:
    async def test_single_configmap_is_migrated_then_deleted(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """An upgrade keeps every policy's history: read from the old ConfigMap, written to
        the shards, then the old ConfigMap is deleted."""
        policies = [_named(f"p{i}") for i in range(10)]
        fake.put(
            "configmaps",
            {
                "metadata": {"name": DEFAULT_NAME, "namespace": NS},
                "data": {
                    history_key(p): json.dumps(_history(i + 1).to_json())
                    for i, p in enumerate(policies)
                },
            },
        )
        store = KubeHistoryStore(api, NS, shards=3, save_interval=0)
        assert await store.load(policies[0]) == _history(1)  # before any shard exists
        await store.flush()
        assert fake.get("configmaps", NS, DEFAULT_NAME) is None
        fresh = KubeHistoryStore(api, NS, shards=3, save_interval=0)
        for i, p in enumerate(policies):
            assert await fresh.load(p) == _history(i + 1)

    async def test_shard_value_wins_over_the_old_configmap(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A key already in its shard is not overwritten by the old ConfigMap's value."""
        await save_now(_store(api), policy(), _history(7))
        fake.put(
            "configmaps",
            {
                "metadata": {"name": DEFAULT_NAME, "namespace": NS},
                "data": {history_key(policy()): json.dumps(_history(1).to_json())},
            },
        )
        store = _store(api)
        await store.flush()
        assert await _store(api).load(policy()) == _history(7)
        assert fake.get("configmaps", NS, DEFAULT_NAME) is None
