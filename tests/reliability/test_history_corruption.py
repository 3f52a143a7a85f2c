"""A corrupted history ConfigMap: the damaged policy starts fresh, the others keep theirs.

The real :class:`KubeHistoryStore` reads (and migrates to its shards) the pre-sharding ConfigMap
on the fake API server in which one
policy's key was damaged (by hand, by a bad tool, by a truncated write); the neighbour's key is a
valid history. Loading reports the damaged one (``history_unreadable_starting_fresh``) and gives
no history for it; the neighbour's history comes back intact; the next save repairs the damaged
key and leaves the neighbour's untouched. A loop tick over both then decides normally.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from autoscaler.controller.loop import ControlLoop
from autoscaler.decision.types import History, PodSamples, Recommendation, ScaleEvent
from autoscaler.kube.factory import connect
from autoscaler.settings import Settings
from tests.controller.memory import StaticMetricSource
from tests.fakekube.server import write_kubeconfig
from tests.reliability.chaos import ChaosKube
from tests.reliability.kubeworld import CONTROLLER_NS, FAULTY, HEALTHY, NAMESPACE, history_data

GOOD = History(
    initialized=True,
    recommendations=(Recommendation(999_990.0, 5), Recommendation(999_995.0, 4)),
    scale_up_events=(ScaleEvent(999_980.0, 2),),
)

CORRUPTIONS = {
    "not-json": "{not json",
    "truncated": json.dumps(GOOD.to_json())[:40],
    "a-list": "[1, 2, 3]",
    "a-string": '"history"',
    "null": "null",
    "wrong-shape": json.dumps({"recommendations": "lots"}),
    "wrong-arity": json.dumps({"recommendations": [[1.0]]}),
    "wrong-types": json.dumps({"scaleUpEvents": [["x", "y", "z"]]}),
    "binary": "\x00\x01\x02\ufffd",
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
async def test_corrupted_key_starts_fresh_others_keep_theirs(tmp_path: Path, damage: str) -> None:
    """One damaged key: that policy starts fresh (logged); the neighbour's history is intact."""
    damaged_key = f"{NAMESPACE}.{FAULTY.metadata.name}"
    healthy_key = f"{NAMESPACE}.{HEALTHY.metadata.name}"
    healthy_text = json.dumps(GOOD.to_json(), separators=(",", ":"), sort_keys=True)
    async with ChaosKube() as fake:
        for name in ("llama", "mistral"):
            fake.add_deployment(NAMESPACE, name, replicas=4, labels={"app": name})
        fake.enable_reconcile()
        fake.step()
        fake.put(
            "configmaps",
            {
                "metadata": {"name": "nim-autoscaler-history", "namespace": CONTROLLER_NS},
                "data": {damaged_key: CORRUPTIONS[damage], healthy_key: healthy_text},
            },
        )
        settings = Settings(
            kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", fake.url),
            leader_election=False,
            leader_election_namespace=CONTROLLER_NS,
            namespaces=[NAMESPACE],
        )
        context = await connect(settings, request_timeout=2.0)
        try:
            with structlog.testing.capture_logs() as logs:
                assert await context.history.load(FAULTY) is None
                assert await context.history.load(HEALTHY) == GOOD
            unreadable = [e for e in logs if e["event"] == "history_unreadable_starting_fresh"]
            assert len(unreadable) == 1, logs
            assert unreadable[0]["policy"] == FAULTY.key
            assert unreadable[0]["key"] == damaged_key

            # A tick over both: the damaged policy decides from a fresh history (HPA first
            # sight), the neighbour from its own (its 5-replica recommendation is in the window).
            context.start()
            assert await context.pods.wait_synced(within=10)
            source = StaticMetricSource()
            now = 1_000_000.0
            for name in ("llama", "mistral"):
                pods = [
                    pod for (plural, _, pod) in fake.objects if plural == "pods" and name in pod
                ]
                samples = PodSamples(dict.fromkeys(pods, 0.25), timestamp=now, series=len(pods))
                source.set(f"{NAMESPACE}/{name}", {"kvCache": samples})
            loop = ControlLoop(
                policies=lambda: [FAULTY, HEALTHY],
                metrics=source,
                scale=context.scale,
                pods=context.pods,
                recorder=context.recorder,
                history_store=context.history,
                leader=context.leader,
                log_ticks=False,
            )
            results = {r.policy: r for r in await loop.tick(now)}
        finally:
            await context.close()

        assert results[FAULTY.key].decision is not None
        assert results[HEALTHY.key].decision is not None
        fresh, kept = loop.history(FAULTY.key), loop.history(HEALTHY.key)
        assert fresh is not None
        assert kept is not None
        assert [r.replicas for r in fresh.recommendations][:-1] == [4]  # seeded from current
        assert kept.recommendations[: len(GOOD.recommendations)] == GOOD.recommendations
        assert kept.scale_up_events == GOOD.scale_up_events
        data = history_data(fake)
        assert History.from_json(json.loads(data[damaged_key])) == fresh  # repaired
        assert History.from_json(json.loads(data[healthy_key])) == kept
