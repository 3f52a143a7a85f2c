"""The scale-target cache: list + watch of target kinds against the fake API server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import structlog

from autoscaler.controller.loop import ControlLoop
from autoscaler.controller.ports import Outcome
from autoscaler.decision.types import PodSamples
from autoscaler.kube.client import KubeApi
from autoscaler.kube.pods import PodCache
from autoscaler.kube.scale import Discovery, KubeScaleClient
from autoscaler.kube.targets import TargetCache, UnmappableKind, crd_scale_paths
from autoscaler.policy.models import ScaleTargetRef
from tests.controller.memory import StaticMetricSource
from tests.fakekube import FakeKube
from tests.fakekube.server import nimservice_crd
from tests.kube.conftest import eventually
from tests.kube.test_recorder import policy

TARGETS = [
    pytest.param("apps/v1", "Deployment", id="deployment"),
    pytest.param("apps/v1", "StatefulSet", id="statefulset"),
    pytest.param("apps.nvidia.com/v1alpha1", "NIMService", id="nimservice-crd"),
]
PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "NIMService": "nimservices"}


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def targets(api: KubeApi) -> AsyncIterator[TargetCache]:
    """A cache watching namespace 'llm', with tiny back-offs."""
    cache = TargetCache(
        api, Discovery(api), ["llm"], watch_timeout=30, backoff_base=0.01, backoff_cap=0.05
    )
    yield cache
    await cache.stop()


class TestReadings:
    @pytest.mark.parametrize(("api_version", "kind"), TARGETS)
    async def test_reading_equals_the_scale_subresource(
        self,
        fake: FakeKube,
        api: KubeApi,
        targets: TargetCache,
        api_version: str,
        kind: str,
    ) -> None:
        """After the first lookup starts the watch, the cache answers what /scale answers."""
        fake.add_deployment(
            "llm", "llama", replicas=3, labels={"app": "llama", "tier": "gpu"}, kind=kind
        )
        ref = ScaleTargetRef(api_version=api_version, kind=kind, name="llama")
        assert targets.lookup("llm", ref) is None  # not watched yet: the caller reads /scale
        await eventually(lambda: targets.lookup("llm", ref) is not None)
        expected = await KubeScaleClient(api).get_scale("llm", ref)
        plural = PLURALS[kind]
        assert targets.lookup("llm", ref) == expected
        obj = fake.objects[(plural, "llm", "llama")]
        fake.put(plural, {**obj, "spec": {**obj["spec"], "replicas": 5}})
        await eventually(lambda: getattr(targets.lookup("llm", ref), "spec_replicas", 0) == 5)
        assert targets.lookup("llm", ref) == await KubeScaleClient(api).get_scale("llm", ref)
        fake.delete(plural, "llm", "llama")
        await eventually(lambda: targets.lookup("llm", ref) is None)

    async def test_one_list_and_one_watch_per_kind(
        self, fake: FakeKube, targets: TargetCache
    ) -> None:
        """Many targets of a kind cost one list and one watch, not a request per target."""
        for i in range(20):
            fake.add_deployment("llm", f"m{i}", replicas=1 + i % 3)
        refs = [
            ScaleTargetRef(api_version="apps/v1", kind="Deployment", name=f"m{i}")
            for i in range(20)
        ]
        for ref in refs:
            targets.lookup("llm", ref)
        await eventually(lambda: all(targets.lookup("llm", r) is not None for r in refs))
        assert [r.spec_replicas for r in (targets.lookup("llm", ref) for ref in refs) if r] == [
            1 + i % 3 for i in range(20)
        ]
        assert targets.lists == 1

        def lists() -> list[str]:
            return [
                p
                for m, p in fake.requests
                if m == "GET" and p.startswith("/apis/apps/v1/namespaces/llm/deployments?")
            ]

        # The watch follows the list; under load it may not have reached the server yet.
        await eventually(lambda: len(lists()) >= 2)
        assert len(lists()) == 2  # the list and the watch
        assert not [p for _, p in fake.requests if p.endswith("/scale")]

    async def test_unwatched_namespace_is_none(self, fake: FakeKube, targets: TargetCache) -> None:
        """A target outside the watched namespaces is left to /scale."""
        fake.add_deployment("llm", "llama")
        fake.add_deployment("other", "llama")
        ref = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name="llama")
        targets.lookup("llm", ref)
        await eventually(lambda: targets.synced("apps/v1", "Deployment"))
        assert targets.lookup("other", ref) is None


class TestFallback:
    async def test_unreadable_crd_falls_back_to_scale(
        self, fake: FakeKube, api: KubeApi, targets: TargetCache
    ) -> None:
        """Without access to the CRD the kind is not watched; lookups stay None (logged)."""
        fake.add_deployment("llm", "llama", kind="NIMService")
        fake.inject(r"/customresourcedefinitions/", 403, times=None)
        ref = ScaleTargetRef(
            api_version="apps.nvidia.com/v1alpha1", kind="NIMService", name="llama"
        )
        with structlog.testing.capture_logs() as logs:
            assert targets.lookup("llm", ref) is None
            await eventually(lambda: any(e["event"] == "target_watch_unavailable" for e in logs))
        assert targets.lookup("llm", ref) is None
        assert "customresourcedefinitions" in next(
            e["error"] for e in logs if e["event"] == "target_watch_unavailable"
        )

    async def test_watch_error_unsyncs_until_resumed(
        self, fake: FakeKube, targets: TargetCache
    ) -> None:
        """A failing watch makes lookups None (the caller reads /scale) until it is back."""
        fake.add_deployment("llm", "llama", replicas=2)
        ref = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name="llama")
        targets.lookup("llm", ref)
        await eventually(lambda: targets.lookup("llm", ref) is not None)
        fake.inject(r"/deployments$", 500, times=3)
        fake.cut_watches()
        await eventually(lambda: targets.lookup("llm", ref) is None)
        obj = fake.objects[("deployments", "llm", "llama")]
        fake.put("deployments", {**obj, "spec": {**obj["spec"], "replicas": 4}})
        await eventually(lambda: getattr(targets.lookup("llm", ref), "spec_replicas", 0) == 4)

    def test_crd_without_scale_subresource_is_unmappable(self) -> None:
        """A CRD version with no scale subresource cannot be read from its objects."""
        crd = nimservice_crd()
        del crd["spec"]["versions"][0]["subresources"]["scale"]
        with pytest.raises(UnmappableKind):
            crd_scale_paths(crd, "v1alpha1")
        with pytest.raises(UnmappableKind):
            crd_scale_paths(nimservice_crd(), "v2")


class TestSteadyTick:
    async def test_steady_tick_reads_no_scale(self, fake: FakeKube, api: KubeApi) -> None:
        """With the watches synced a tick sends no /scale GET; a scale is one PUT."""
        for i in range(5):
            fake.add_deployment("llm", f"m{i}", replicas=2, labels={"app": f"m{i}"})
            for j in range(2):
                fake.add_pod("llm", f"m{i}-{j}", labels={"app": f"m{i}"})
        base = policy()
        policies = [
            base.model_copy(
                update={
                    "metadata": base.metadata.model_copy(update={"name": f"m{i}"}),
                    "spec": base.spec.model_copy(
                        update={
                            "scale_target_ref": base.spec.scale_target_ref.model_copy(
                                update={"name": f"m{i}"}
                            )
                        }
                    ),
                }
            )
            for i in range(5)
        ]
        pods = PodCache(api, ["llm"], backoff_base=0.01)
        scale = KubeScaleClient(api, sleep=_no_sleep)
        targets = TargetCache(api, scale.discovery, ["llm"], backoff_base=0.01)
        source = StaticMetricSource()
        loop = ControlLoop(
            policies=lambda: policies,
            metrics=source,
            scale=scale,
            pods=pods,
            targets=targets,
            log_ticks=False,
        )
        pods.start()
        try:
            assert await pods.wait_synced(5.0)

            def at(value: float, now: float) -> None:
                for i in range(5):
                    names = [f"m{i}-0", f"m{i}-1"]
                    source.set(
                        f"llm/m{i}", {"kvCache": PodSamples(dict.fromkeys(names, value), now, 2)}
                    )

            at(0.7, 100.0)
            first = await loop.tick(100.0)  # the first lookups start the watch: /scale read
            assert {r.outcome for r in first} == {Outcome.UNCHANGED}
            await eventually(lambda: targets.synced("apps/v1", "Deployment"))
            fake.requests.clear()
            steady = await loop.tick(115.0)
            assert {r.outcome for r in steady} == {Outcome.UNCHANGED}
            assert not [p for _, p in fake.requests if "/scale" in p]
            at(1.4, 130.0)  # twice the target everywhere: 2 -> 4
            fake.requests.clear()
            scaled = await loop.tick(130.0)
            assert {r.outcome for r in scaled} == {Outcome.SCALED}
            assert sorted(m for m, p in fake.requests if "/scale" in p) == ["PUT"] * 5
        finally:
            await pods.stop()
            await targets.stop()
