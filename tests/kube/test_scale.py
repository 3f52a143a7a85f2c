"""The /scale client against the fake API server, through the real kubernetes_asyncio client."""

from __future__ import annotations

import pytest

from autoscaler.controller.ports import ScaleWrite, WriteResult
from autoscaler.errors import ActuationError, Conflict, Forbidden, TargetNotFound
from autoscaler.kube.client import KubeApi
from autoscaler.kube.scale import KubeScaleClient
from autoscaler.policy.models import ScaleTargetRef
from tests.fakekube import FakeKube


async def _no_sleep(_: float) -> None:
    return None


def _client(api: KubeApi, **kwargs: object) -> KubeScaleClient:
    return KubeScaleClient(api, sleep=_no_sleep, **kwargs)  # type: ignore[arg-type]


TARGETS = [
    pytest.param("apps/v1", "Deployment", "deployments", id="deployment"),
    pytest.param("apps/v1", "StatefulSet", "statefulsets", id="statefulset"),
    pytest.param("apps.nvidia.com/v1alpha1", "NIMService", "nimservices", id="nimservice-crd"),
]


class TestGetSet:
    @pytest.mark.parametrize(("api_version", "kind", "plural"), TARGETS)
    async def test_get_reads_spec_status_and_selector(
        self, fake: FakeKube, api: KubeApi, api_version: str, kind: str, plural: str
    ) -> None:
        """get_scale returns spec.replicas, status.replicas and the selector string."""
        fake.add_deployment(
            "llm", "llama", replicas=3, labels={"app": "llama", "tier": "gpu"}, kind=kind
        )
        reading = await _client(api).get_scale(
            "llm", ScaleTargetRef(api_version=api_version, kind=kind, name="llama")
        )
        assert reading.spec_replicas == 3
        assert reading.status_replicas == 3
        assert reading.selector == "app=llama,tier=gpu"
        assert (
            reading.resource_version
            == fake.objects[(plural, "llm", "llama")]["metadata"]["resourceVersion"]
        )

    @pytest.mark.parametrize(("api_version", "kind", "plural"), TARGETS)
    async def test_set_writes_spec_replicas(
        self, fake: FakeKube, api: KubeApi, api_version: str, kind: str, plural: str
    ) -> None:
        """set_scale changes the object's spec.replicas through PUT .../scale."""
        fake.add_deployment("llm", "llama", replicas=1, kind=kind)
        await _client(api).set_scale(
            "llm", ScaleTargetRef(api_version=api_version, kind=kind, name="llama"), 4
        )
        assert fake.objects[(plural, "llm", "llama")]["spec"]["replicas"] == 4
        writes = [r for r in fake.requests if r[0] == "PUT"]
        assert [p for _, p in writes] == [
            f"{_base(api_version)}/namespaces/llm/{plural}/llama/scale"
        ]

    async def test_no_write_when_already_at_desired(self, fake: FakeKube, api: KubeApi) -> None:
        """A set to the current count only reads, and says it wrote nothing."""
        fake.add_deployment("llm", "llama", replicas=2)
        written = await _client(api).set_scale("llm", _ref(), 2)
        assert written.result is WriteResult.NO_OP
        assert [m for m, _ in fake.requests if m != "GET"] == []

    async def test_discovery_is_cached(self, fake: FakeKube, api: KubeApi) -> None:
        """The resource list of a group/version is fetched once for many calls."""
        fake.add_deployment("llm", "llama", replicas=2)
        client = _client(api)
        for _ in range(3):
            await client.get_scale("llm", _ref())
        assert [p for _, p in fake.requests].count("/apis/apps/v1") == 1


class TestConflicts:
    async def test_409_rereads_and_retries(self, fake: FakeKube, api: KubeApi) -> None:
        """A 409 on the write re-reads and writes again."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/deployments/llama/scale$", 409, method="PUT", times=2)
        await _client(api).set_scale("llm", _ref(), 5)
        assert fake.objects[("deployments", "llm", "llama")]["spec"]["replicas"] == 5
        assert [m for m, p in fake.requests if p.endswith("/scale")].count("PUT") == 3

    async def test_real_resource_version_conflict(self, fake: FakeKube, api: KubeApi) -> None:
        """A concurrent change between read and write is a real 409 from a stale version."""
        fake.add_deployment("llm", "llama", replicas=1)
        client = _client(api)
        reading = await client.get_scale("llm", _ref())
        fake.put("deployments", fake.objects[("deployments", "llm", "llama")])  # bump rv
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "llama", "resourceVersion": reading.resource_version},
            "spec": {"replicas": 3},
        }
        from autoscaler.kube.client import KubeApiError

        with pytest.raises(KubeApiError) as info:
            await api.request(
                "PUT", "/apis/apps/v1/namespaces/llm/deployments/llama/scale", body=body
            )
        assert info.value.status == 409
        assert info.value.reason == "Conflict"

    async def test_conflict_after_retries_raises(self, fake: FakeKube, api: KubeApi) -> None:
        """Conflicts on every attempt end in Conflict, after exactly 1 + retries writes."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/scale$", 409, method="PUT", times=None)
        with pytest.raises(Conflict):
            await _client(api, conflict_retries=2).set_scale("llm", _ref(), 5)
        assert [m for m, _ in fake.requests].count("PUT") == 3

    async def test_no_write_if_someone_else_already_scaled(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """After a conflict the re-read shows the desired count already: no second write."""
        fake.add_deployment("llm", "llama", replicas=1)

        def other_writer() -> None:
            obj = fake.objects[("deployments", "llm", "llama")]
            fake.put("deployments", {**obj, "spec": {**obj["spec"], "replicas": 5}})

        fake.inject(r"/scale$", 409, method="PUT", times=1, action=other_writer)
        await _client(api).set_scale("llm", _ref(), 5)
        assert [m for m, _ in fake.requests].count("PUT") == 1
        assert fake.objects[("deployments", "llm", "llama")]["spec"]["replicas"] == 5


class TestGuardedWrites:
    async def test_write_from_a_reading_is_one_put(self, fake: FakeKube, api: KubeApi) -> None:
        """With the reading the decision used (its resourceVersion), a write is one PUT."""
        fake.add_deployment("llm", "llama", replicas=1)
        client = _client(api)
        reading = await client.get_scale("llm", _ref())
        fake.requests.clear()
        written = await client.set_scale("llm", _ref(), 4, expected=reading)
        assert written == ScaleWrite(WriteResult.SCALED, 1)
        assert [m for m, _ in fake.requests] == ["PUT"]
        assert fake.objects[("deployments", "llm", "llama")]["spec"]["replicas"] == 4

    async def test_other_writer_changed_the_count_is_stale(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Another writer scaled after our reading: 409, re-read, nothing written, STALE."""
        fake.add_deployment("llm", "llama", replicas=2)
        client = _client(api)
        reading = await client.get_scale("llm", _ref())
        obj = fake.objects[("deployments", "llm", "llama")]
        fake.put("deployments", {**obj, "spec": {**obj["spec"], "replicas": 6}})
        written = await client.set_scale("llm", _ref(), 3, expected=reading)
        assert written.result is WriteResult.STALE
        assert written.previous == 6
        assert written.reading is not None
        assert written.reading.spec_replicas == 6
        assert fake.objects[("deployments", "llm", "llama")]["spec"]["replicas"] == 6
        assert [m for m, _ in fake.requests if m == "PUT"] == ["PUT"]

    async def test_version_moved_but_count_did_not_retries(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A 409 from a change that left spec.replicas alone (status) retries the write."""
        fake.add_deployment("llm", "llama", replicas=2)
        client = _client(api)
        reading = await client.get_scale("llm", _ref())
        obj = fake.objects[("deployments", "llm", "llama")]
        fake.put("deployments", {**obj, "status": {"replicas": 1}})
        written = await client.set_scale("llm", _ref(), 3, expected=reading)
        assert written == ScaleWrite(WriteResult.SCALED, 2)
        assert fake.objects[("deployments", "llm", "llama")]["spec"]["replicas"] == 3

    async def test_already_at_desired_after_conflict_is_no_op(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Another writer set exactly our count: NO_OP, one PUT (the 409) only."""
        fake.add_deployment("llm", "llama", replicas=2)
        client = _client(api)
        reading = await client.get_scale("llm", _ref())
        obj = fake.objects[("deployments", "llm", "llama")]
        fake.put("deployments", {**obj, "spec": {**obj["spec"], "replicas": 5}})
        written = await client.set_scale("llm", _ref(), 5, expected=reading)
        assert written.result is WriteResult.NO_OP
        assert [m for m, _ in fake.requests].count("PUT") == 1


class TestErrors:
    async def test_404_raises_target_not_found(self, fake: FakeKube, api: KubeApi) -> None:
        """A missing target is TargetNotFound naming it."""
        with pytest.raises(TargetNotFound, match="llm/ghost"):
            await _client(api).get_scale("llm", _ref("ghost"))

    async def test_unknown_api_group_is_target_not_found(self, api: KubeApi) -> None:
        """A kind whose API group is not served (CRD not installed) is TargetNotFound."""
        ref = ScaleTargetRef(api_version="example.com/v1", kind="Thing", name="x")
        with pytest.raises(TargetNotFound, match="CRD"):
            await _client(api).get_scale("llm", ref)

    async def test_403_names_the_missing_rule(self, fake: FakeKube, api: KubeApi) -> None:
        """Forbidden says verb, group, resource/subresource and namespace."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/scale$", 403, method="PUT", times=None)
        with pytest.raises(Forbidden) as info:
            await _client(api).set_scale("llm", _ref(), 2)
        message = str(info.value)
        for part in ("'update'", "'deployments/scale'", "apiGroup apps", "namespace 'llm'"):
            assert part in message

    async def test_409_on_read_is_an_actuation_error(self, fake: FakeKube, api: KubeApi) -> None:
        """A (strange) 409 on GET is not retried as a write conflict."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/scale$", 409, method="GET", times=1)
        with pytest.raises(ActuationError, match="409"):
            await _client(api).get_scale("llm", _ref())

    async def test_5xx_and_429_are_retried(self, fake: FakeKube, api: KubeApi) -> None:
        """Transient 500 and 429 answers are retried, then the call succeeds."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/scale$", 500, method="GET", times=1)
        fake.inject(r"/scale$", 429, method="GET", times=1)
        reading = await _client(api).get_scale("llm", _ref())
        assert reading.spec_replicas == 1

    async def test_retry_budget_exhausted_raises_actuation_error(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """Persistent 503s end in ActuationError once the budget would be exceeded."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/scale$", 503, method="GET", times=None)
        now = [0.0]

        async def fake_sleep(seconds: float) -> None:
            now[0] += seconds

        client = KubeScaleClient(
            api, sleep=fake_sleep, monotonic=lambda: now[0], retry_budget=3.0, backoff_base=0.5
        )
        with pytest.raises(ActuationError, match="503") as info:
            await client.get_scale("llm", _ref())
        assert not isinstance(info.value, TargetNotFound | Forbidden)
        assert now[0] <= 3.0
        assert fake.faults[0].hits == 3  # 0.5 + 1.0 waited; a 2.0 wait would pass the budget

    async def test_timeout_is_retried_then_fails(self, fake: FakeKube, api: KubeApi) -> None:
        """A request slower than the timeout counts as a transient failure."""
        fake.add_deployment("llm", "llama", replicas=1)
        fake.inject(r"/scale$", None, method="GET", delay=1.0, times=None)
        client = KubeScaleClient(api, sleep=_no_sleep, request_timeout=0.2, retry_budget=0.0)
        with pytest.raises(ActuationError, match="Timeout"):
            await client.get_scale("llm", _ref())


def _ref(name: str = "llama") -> ScaleTargetRef:
    return ScaleTargetRef(api_version="apps/v1", kind="Deployment", name=name)


def _base(api_version: str) -> str:
    return f"/apis/{api_version}"
