"""Kubernetes API faults: the control loop on the real adapters against a misbehaving API server.

Every run is compared with a clean run of the same scenario (:mod:`tests.reliability.kubeworld`):
the faulty target must end at the same replica count with each intended change applied exactly
once, and the healthy neighbour must decide and write exactly as in the clean run.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.reliability.chaos import ChaosKube
from tests.reliability.kubeworld import (
    NAMESPACE,
    TICKS,
    RunResult,
    applied_changes,
    run_world,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """The scenario without any fault (the reference every faulty run is compared with)."""
    return asyncio.run(run_world(tmp_path_factory.mktemp("clean"), extra_ticks=6))


def assert_exactly_once(run: RunResult, name: str) -> None:
    """Every applied /scale write changed the count, matches one SCALED tick, and no other."""
    assert run.fake is not None
    changes = applied_changes(run.fake, name)
    assert all(before != after for before, after in changes), changes
    scaled = [r for r in run.results[name] if r.outcome.value == "scaled"]
    assert len(changes) == len(scaled), (changes, run.outcomes(name))
    assert [after for _, after in changes] == [r.decision.desired_replicas for r in scaled]


def assert_history_consistent(run: RunResult, name: str) -> None:
    """The history ConfigMap holds exactly what the loop has in memory."""
    assert run.stored_history[name] is not None
    assert run.stored_history[name] == run.loop_history[name]


def assert_healthy_unaffected(run: RunResult, clean: RunResult) -> None:
    """The neighbour policy decided and wrote exactly as in the clean run."""
    assert run.desired("mistral")[:TICKS] == clean.desired("mistral")[:TICKS]
    assert run.outcomes("mistral")[:TICKS] == clean.outcomes("mistral")[:TICKS]
    assert run.fake is not None
    assert clean.fake is not None
    assert applied_changes(run.fake, "mistral") == applied_changes(clean.fake, "mistral")
    assert run.final_replicas["mistral"] == clean.final_replicas["mistral"]


class TestCleanRun:
    async def test_reference_scenario_scales_both_ways(self, clean: RunResult) -> None:
        """The reference run scales both targets up and down (so the comparisons mean something)."""
        for name in ("llama", "mistral"):
            changes = applied_changes(clean.fake, name)  # type: ignore[arg-type]
            assert any(after > before for before, after in changes), changes  # type: ignore[operator]
            assert any(after < before for before, after in changes), changes  # type: ignore[operator]
            assert_exactly_once(clean, name)
            assert_history_consistent(clean, name)
        assert clean.final_replicas == {"llama": 3, "mistral": 2}


def _clear_faults(fake: ChaosKube) -> None:
    fake.chaos_rules.clear()
    fake.faults.clear()


class TestRandomApiFaults:
    @pytest.mark.parametrize(
        ("seed", "retry_budget"),
        [(7, None), (12, 0.5)],
        ids=["adapter-retries", "ticks-fail"],
    )
    async def test_faulty_target_converges_exactly_once(
        self, tmp_path: Path, clean: RunResult, seed: int, retry_budget: float | None
    ) -> None:
        """~20 % of the target's, Events' and history's requests fail (500/429/timeout/409).

        The target ends where the clean run ends, each applied write changed the count and
        matches one SCALED tick, the history ConfigMap equals the loop's memory, and the
        healthy neighbour decides and writes exactly as without faults.
        """
        rules = []

        def setup(fake: ChaosKube) -> None:
            # llama's object and /scale, and the Deployment list/watch feeding the target cache
            # (a failing watch sends every policy back to reading /scale until it is back).
            rules.append(
                fake.chaos(r"/deployments/llama(/|$)|/deployments$", rate=0.2, seed=seed, delay=1.2)
            )
            rules.append(fake.chaos(r"/events(/|$)|/configmaps(/|$)", rate=0.2, seed=seed + 1))

        run = await run_world(
            tmp_path,
            setup=setup,
            hooks={TICKS: _clear_faults},
            extra_ticks=6,
            retry_budget=retry_budget,
        )
        fired = {kind: sum(r.fired.get(kind, 0) for r in rules) for kind in ("500", "429")}
        fired["timeout"] = sum(r.fired.get("timeout", 0) for r in rules)
        fired["409"] = sum(r.fired.get("409", 0) for r in rules)
        assert sum(fired.values()) >= 8, fired  # the faults really happened
        if retry_budget is not None:
            # Some faults escaped the adapter's retries: whole ticks failed for the target.
            assert "failed" in run.outcomes("llama")[:TICKS], run.outcomes("llama")
        assert run.final_replicas["llama"] == clean.final_replicas["llama"]
        assert_exactly_once(run, "llama")
        assert_history_consistent(run, "llama")
        assert_history_consistent(run, "mistral")
        assert_healthy_unaffected(run, clean)


class TestLateWrites:
    async def test_write_applied_after_the_client_timed_out(
        self, tmp_path: Path, clean: RunResult
    ) -> None:
        """A /scale PUT that times out client-side but lands later is not applied twice.

        The server holds the first two writes 1.5 s (the client gives up after 1 s) and then
        applies them with their stale resourceVersion: the retry has either seen the late write
        (nothing to do) or written first (the late one gets 409). One change either way.
        """

        def setup(fake: ChaosKube) -> None:
            fake.inject(r"/deployments/llama/scale$", method="PUT", delay=1.5, times=2)

        run = await run_world(tmp_path, setup=setup, extra_ticks=3)
        assert run.fake is not None
        late = [s for s in run.log_of("llama") if s.method == "PUT"]
        assert len(late) >= 2
        assert run.final_replicas["llama"] == clean.final_replicas["llama"]
        assert_exactly_once(run, "llama")
        assert_history_consistent(run, "llama")
        assert_healthy_unaffected(run, clean)


class TestWatchFaults:
    async def test_cut_watches_and_410_gone_change_no_decision(
        self, tmp_path: Path, clean: RunResult
    ) -> None:
        """Watches cut before every tick, history compacted (410) and a 410 on the list.

        The pod cache recovers each time (re-listing after 410), so both policies decide
        exactly as in the clean run.
        """

        def cut(fake: ChaosKube) -> None:
            fake.cut_watches()

        def cut_and_compact(fake: ChaosKube) -> None:
            # A change the pod watch does not see, then compaction: resuming from the pod
            # watch's resourceVersion is now "too old" (an ERROR event with a 410 Status).
            fake.put("configmaps", {"metadata": {"name": "noise", "namespace": NAMESPACE}})
            fake.cut_watches()
            fake.compact()

        def gone_on_http(fake: ChaosKube) -> None:
            fake.inject(r"^/api/v1/namespaces/nim/pods$", 410, method="GET", times=1)
            fake.put("configmaps", {"metadata": {"name": "noise2", "namespace": NAMESPACE}})
            fake.cut_watches()
            fake.compact()

        hooks = dict.fromkeys(range(1, TICKS), cut)
        hooks.update({3: cut_and_compact, 8: cut_and_compact, 11: gone_on_http})
        run = await run_world(tmp_path, hooks=hooks, extra_ticks=6)
        assert run.pod_lists >= 4  # the initial list and one re-list per 410
        for name in ("llama", "mistral"):
            assert run.desired(name) == clean.desired(name)
            assert run.outcomes(name) == clean.outcomes(name)
            assert_exactly_once(run, name)
        assert run.final_replicas == clean.final_replicas


class TestTargetFaults:
    async def test_target_deleted_and_recreated(self, tmp_path: Path, clean: RunResult) -> None:
        """Deleted: FailedGetScale (not found), no write, no crash; recreated: scaled again."""

        def delete(fake: ChaosKube) -> None:
            fake.delete("deployments", NAMESPACE, "llama")

        def recreate(fake: ChaosKube) -> None:
            fake.add_deployment(NAMESPACE, "llama", replicas=1, labels={"app": "llama"})

        run = await run_world(tmp_path, hooks={4: delete, 7: recreate}, extra_ticks=6)
        for result in run.results["llama"][4:7]:
            assert result.outcome.value == "failed"
            assert result.decision is None
            assert "not found" in (result.error or ""), result.error
        assert run.results["llama"][7].outcome.value == "scaled"  # the new object, from 1
        assert run.final_replicas["llama"] == clean.final_replicas["llama"]
        assert_exactly_once(run, "llama")
        assert_healthy_unaffected(run, clean)

    async def test_rbac_forbidden_on_one_target(self, tmp_path: Path, clean: RunResult) -> None:
        """403 on one target's /scale: Forbidden naming the missing rule; others unaffected.

        Once the RBAC rule is fixed the target converges to the clean run's count.
        """
        forbidden = []

        def deny(fake: ChaosKube) -> None:
            forbidden.append(fake.inject(r"/deployments/llama/scale$", 403, times=None))

        def allow(fake: ChaosKube) -> None:
            forbidden[0].times = 0

        run = await run_world(tmp_path, setup=deny, hooks={8: allow}, extra_ticks=6)
        # The target's replicas come from the watch, so the denied /scale shows when it is read
        # (the first tick, before the watch is synced) or a write is due: each such tick fails
        # naming the missing rule; no write lands before the fix.
        failed = [r for r in run.results["llama"][:8] if r.outcome.value == "failed"]
        assert failed
        for result in failed:
            assert "forbidden" in (result.error or "").lower(), result.error
            assert re.search(
                r"missing RBAC rule: verb '(get|update)' on resource 'deployments/scale'",
                result.error or "",
            ), result.error
        assert {r.outcome.value for r in run.results["llama"][:8]} <= {"failed", "unchanged"}
        assert run.registry is not None
        errors = sum(
            run.registry.get_sample_value(
                "nim_autoscaler_errors_total",
                {"policy": "llama", "namespace": NAMESPACE, "kind": kind},
            )
            or 0.0
            for kind in ("scale_read", "scale_write")
        )
        assert errors == len(failed)
        assert run.final_replicas["llama"] == clean.final_replicas["llama"]
        assert_exactly_once(run, "llama")
        assert_healthy_unaffected(run, clean)
