"""The history store with the controller sharded across replicas (``controller_shards`` > 1).

Two stores (two replicas, two real clients) against one fake API server: each ConfigMap holds
one controller shard's policies, a replica touches only the ConfigMaps of shards it owns, a
shard gained is read afresh, and a write of a shard lost meanwhile never overwrites its new
owner's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from autoscaler.decision.types import History, Recommendation
from autoscaler.kube.client import KubeApi
from autoscaler.kube.history import KubeHistoryStore, history_key
from autoscaler.kube.shards import shard_of_namespace
from autoscaler.policy.models import ScalingPolicy
from autoscaler.settings import Settings
from tests.fakekube import FakeKube


def store_of(*args: Any, **kwargs: Any) -> KubeHistoryStore:
    """A store that writes at every flush (these tests are about who writes what, not when)."""
    return KubeHistoryStore(*args, save_interval=0, **kwargs)


NS = "nim-system"
SHARDS = 2


def make_policy(namespace: str, name: str = "llama") -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": 1,
                "maxReplicas": 8,
                "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}],
            },
        }
    )


def namespace_in(shard: int, skip: int = 0) -> str:
    """A namespace of controller shard ``shard``."""
    found = [f"ns-{i}" for i in range(100) if shard_of_namespace(f"ns-{i}", SHARDS) == shard]
    return found[skip]


def history(replicas: int) -> History:
    return History(initialized=True, recommendations=(Recommendation(100.0, replicas),))


@pytest.fixture
async def second_api(settings: Settings) -> AsyncIterator[KubeApi]:
    client = await KubeApi.from_settings(settings, request_timeout=5.0)
    yield client
    await client.close()


def configmaps(fake: FakeKube) -> dict[str, dict[str, str]]:
    return {
        name: dict(obj.get("data") or {})
        for (plural, ns, name), obj in fake.objects.items()
        if plural == "configmaps" and ns == NS
    }


async def test_layout_rounds_up_and_keeps_one_shard_per_configmap(
    fake: FakeKube, api: KubeApi
) -> None:
    """3 history ConfigMaps over 2 controller shards become 4; ConfigMap i holds shard i % 2."""
    store = store_of(api, NS, shards=3, controller_shards=SHARDS)
    policies = [make_policy(f"ns-{i}", f"p-{j}") for i in range(12) for j in range(3)]
    for policy in policies:
        await store.save(policy, history(2))
    await store.flush()
    maps = configmaps(fake)
    assert sorted(maps) == [f"nim-autoscaler-history-{i}" for i in range(4)]
    for name, data in maps.items():
        index = int(name.rsplit("-", 1)[1])
        for key in data:
            assert shard_of_namespace(key.split(".")[0], SHARDS) == index % SHARDS
    assert sum(len(d) for d in maps.values()) == len(policies)


async def test_one_controller_shard_keeps_the_old_layout(fake: FakeKube, api: KubeApi) -> None:
    """controller_shards=1: the ConfigMap of a policy is crc32(namespace/name) % shards, as
    before sharding (existing installs find their history)."""
    plain = store_of(api, NS, shards=8)
    sharded = store_of(api, NS, shards=8, controller_shards=1)
    for i in range(20):
        policy = make_policy(f"ns-{i}")
        assert plain.shard_name(policy) == sharded.shard_name(policy)


async def test_replicas_touch_only_owned_configmaps(
    fake: FakeKube, api: KubeApi, second_api: KubeApi
) -> None:
    """Each replica writes its shard's ConfigMaps; neither expires nor reads the other's."""
    owned_a, owned_b = {0}, {1}
    a = store_of(
        api, NS, shards=SHARDS, controller_shards=SHARDS, owns_shard=owned_a.__contains__, grace=0
    )
    b = store_of(
        api=second_api,
        namespace=NS,
        shards=SHARDS,
        controller_shards=SHARDS,
        owns_shard=owned_b.__contains__,
        grace=0,
    )
    pa, pb = make_policy(namespace_in(0)), make_policy(namespace_in(1))
    await a.save(pa, history(3))
    await b.save(pb, history(4))
    await a.flush()
    await b.flush()
    before = len(fake.requests)
    await a.flush()  # grace 0: a would expire every key it did not save this round...
    assert configmaps(fake)[b.shard_name(pb)] == {history_key(pb): b_json(history(4))}
    touched = [p for _, p in fake.requests[before:] if "/configmaps/" in p]
    assert all(b.shard_name(pb) not in p for p in touched)  # ...but never reads b's ConfigMap
    loaded = await b.load(pb)
    assert loaded == history(4)


def b_json(h: History) -> str:
    import json

    return json.dumps(h.to_json(), separators=(",", ":"), sort_keys=True)


async def test_gained_shard_is_read_afresh(
    fake: FakeKube, api: KubeApi, second_api: KubeApi
) -> None:
    """A replica that held a shard, lost it and gains it again loads what the other saved
    meanwhile, not its cached copy."""
    owned_a, owned_b = {0, 1}, set[int]()
    a = store_of(api, NS, shards=SHARDS, controller_shards=SHARDS, owns_shard=owned_a.__contains__)
    b = store_of(
        second_api, NS, shards=SHARDS, controller_shards=SHARDS, owns_shard=owned_b.__contains__
    )
    policy = make_policy(namespace_in(1))
    await a.save(policy, history(3))
    await a.flush()
    assert await a.load(policy) == history(3)  # cached now
    owned_a.discard(1)
    owned_b.add(1)
    await b.save(policy, history(7))
    await b.flush()
    owned_b.discard(1)
    owned_a.add(1)
    a.invalidate(1)
    assert await a.load(policy) == history(7)


async def test_write_of_a_lost_shard_never_overwrites_the_new_owner(
    fake: FakeKube, api: KubeApi, second_api: KubeApi
) -> None:
    """A save queued while owning, flushed after the shard moved and met a 409: dropped."""
    owned_a, owned_b = {0, 1}, set[int]()
    a = store_of(api, NS, shards=SHARDS, controller_shards=SHARDS, owns_shard=owned_a.__contains__)
    b = store_of(
        second_api, NS, shards=SHARDS, controller_shards=SHARDS, owns_shard=owned_b.__contains__
    )
    policy = make_policy(namespace_in(1))
    await a.save(policy, history(3))
    await a.flush()
    await a.save(policy, history(4))  # queued while a owned shard 1
    owned_a.discard(1)
    owned_b.add(1)
    await b.save(policy, history(9))
    await b.flush()
    await a.flush()  # a's stale write meets b's newer resourceVersion: dropped
    assert configmaps(fake)[b.shard_name(policy)] == {history_key(policy): b_json(history(9))}
