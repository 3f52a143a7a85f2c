"""Scale writes racing other writers and the target watch, and history shards that break.

The real adapters (target watch, guarded ``/scale`` writes, sharded history) against the fake API
server, in the scenario of :mod:`tests.reliability.kubeworld` (two policies scaling up and down):

- another writer changes ``spec.replicas`` between the controller's reading and its write: the
  write gets a real 409 (stale resourceVersion); the controller never writes an absolute count
  decided from the older reading over it, decides again from the fresh one, and records a
  rescale only for a write that changed the count;
- the target watch is cut while a write is in flight: the next decision is not made from a
  stale count (the cache is not trusted until the watch is back), and each change lands once;
- a history shard ConfigMap is deleted mid-run: it is recreated whole from memory;
- a history shard passes the size limit: that shard is not written (said in the log); the other
  shard is, and no decision changes.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
import structlog

from autoscaler.kube.history import shard_of
from tests.reliability.chaos import ChaosKube
from tests.reliability.kubeworld import (
    CONTROLLER_NS,
    FAULTY,
    HEALTHY,
    NAMESPACE,
    TICKS,
    RunResult,
    applied_changes,
    history_data,
    run_world,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The scenario without any fault."""
    return asyncio.run(run_world(tmp_path_factory.mktemp("clean"), extra_ticks=4))


def assert_rescales_match_writes(run: RunResult, name: str) -> None:
    """Every applied write changed the count and is one SCALED tick; no other tick is."""
    assert run.fake is not None
    changes = applied_changes(run.fake, name)
    assert all(before != after for before, after in changes), changes
    scaled = [r for r in run.results[name] if r.outcome.value == "scaled"]
    assert [after for _, after in changes] == [r.decision.desired_replicas for r in scaled]  # type: ignore[union-attr]


class TestWriteRaces:
    async def test_409_race_against_another_writer(self, tmp_path: Path) -> None:
        """Another writer scales llama to 7 while the controller's write is on its way."""
        raced: list[int] = []

        def other_writer(fake: ChaosKube) -> None:
            obj = fake.objects[("deployments", NAMESPACE, "llama")]
            if obj["spec"]["replicas"] != 7:
                updated = copy.deepcopy(obj)
                updated["spec"]["replicas"] = 7
                fake.put("deployments", updated)
                raced.append(7)

        def setup(fake: ChaosKube) -> None:
            # The first scale-up write of llama: the other writer goes first (same request).
            fake.inject(
                r"/deployments/llama/scale$",
                method="PUT",
                times=1,
                action=lambda: other_writer(fake),
            )

        run = await run_world(tmp_path, setup=setup, extra_ticks=4)
        assert run.fake is not None
        assert raced == [7]
        conflicts = [s for s in run.log_of("llama") if s.method == "PUT" and s.status == 409]
        assert len(conflicts) == 1  # a real 409 from the stale resourceVersion
        # Nothing decided from the old count overwrote the other writer's 7: the write after
        # the race started from 7 (or there was none).
        changes = applied_changes(run.fake, "llama")
        race_at = run.fake.log.index(conflicts[0])
        after_race = [
            s.replicas_before
            for s in run.fake.scale_writes("llama")
            if run.fake.log.index(s) > race_at
        ]
        assert not after_race or after_race[0] == 7, changes
        assert_rescales_match_writes(run, "llama")
        assert run.final_replicas["llama"] == 3  # converges as the load says, from 7
        assert run.stored_history["llama"] == run.loop_history["llama"]
        assert run.registry is not None
        no_op = run.registry.get_sample_value(
            "nim_autoscaler_scale_total",
            {"policy": "llama", "namespace": NAMESPACE, "direction": "no-op"},
        )
        decided_again = [r for r in run.results["llama"] if r.outcome.value == "no_op"]
        assert (no_op or 0.0) == len(decided_again)

    async def test_target_watch_cut_with_a_write_in_flight(
        self, tmp_path: Path, clean: RunResult
    ) -> None:
        """The target watches are cut while llama's scale-up write is held by the server."""

        cuts: list[int] = []

        def setup(fake: ChaosKube) -> None:
            def cut() -> None:
                cuts.append(fake.open_watches)
                fake.cut_watches()

            fake.inject(r"/deployments/llama/scale$", method="PUT", delay=0.3, times=2, action=cut)

        run = await run_world(tmp_path, setup=setup, extra_ticks=4)
        assert run.fake is not None
        assert len(cuts) == 2
        assert all(open_ >= 2 for open_ in cuts)  # the pod and the Deployment watches
        assert run.final_replicas == clean.final_replicas
        for name in ("llama", "mistral"):
            assert_rescales_match_writes(run, name)
            assert applied_changes(run.fake, name) == applied_changes(clean.fake, name)  # type: ignore[arg-type]
            assert run.desired(name) == clean.desired(name)
            assert run.stored_history[name] == run.loop_history[name]


class TestHistoryShards:
    async def test_shard_configmap_deleted_mid_run(self, tmp_path: Path, clean: RunResult) -> None:
        """Every history shard is deleted at tick 6: each comes back whole at its next write."""

        def delete_shards(fake: ChaosKube) -> None:
            for plural, ns, name in list(fake.objects):
                if plural == "configmaps" and ns == CONTROLLER_NS:
                    fake.delete(plural, ns, name)

        run = await run_world(tmp_path, hooks={6: delete_shards}, extra_ticks=4)
        for name in ("llama", "mistral"):
            assert run.desired(name) == clean.desired(name)
            assert run.stored_history[name] == run.loop_history[name]

    async def test_shard_over_the_size_limit(self, tmp_path: Path, clean: RunResult) -> None:
        """llama's shard also holds a bulky key and passes the limit: it is not written (and
        the log says so); mistral's shard is; no decision changes."""
        assert shard_of(FAULTY.key, 8) != shard_of(HEALTHY.key, 8)
        bulky = "x" * 6_000
        shard = f"nim-autoscaler-history-{shard_of(FAULTY.key, 8)}"

        def setup(fake: ChaosKube) -> None:
            fake.put(
                "configmaps",
                {
                    "metadata": {"name": shard, "namespace": CONTROLLER_NS},
                    "data": {"nim.bulky": bulky},
                },
            )

        with structlog.testing.capture_logs() as logs:
            run = await run_world(tmp_path, setup=setup, extra_ticks=4, history_max_bytes=5_000)
        too_large = [e for e in logs if e["event"] == "history_shard_too_large"]
        assert too_large
        assert {e["configmap"] for e in too_large} == {f"{CONTROLLER_NS}/{shard}"}
        assert run.fake is not None
        assert history_data(run.fake).get("nim.llama") is None
        assert run.stored_history["mistral"] == run.loop_history["mistral"]
        for name in ("llama", "mistral"):
            assert run.desired(name) == clean.desired(name)
        assert len(run.results["llama"]) == TICKS + 4
