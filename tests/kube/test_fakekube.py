"""The fake API server itself: the behaviours other tests (and end-to-end tests) rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.clock import VirtualClock
from autoscaler.kube.client import KubeApi, KubeApiError
from autoscaler.settings import Settings
from tests.fakekube import FakeKube, write_kubeconfig


class TestProtocol:
    async def test_wrong_token_is_401(self, fake: FakeKube, tmp_path: Path) -> None:
        """The fake checks the bearer token, so the kubeconfig's credentials are really used."""
        kubeconfig = write_kubeconfig(tmp_path / "bad", fake.url, token="wrong")
        api = await KubeApi.from_settings(Settings(KUBECONFIG=kubeconfig))
        try:
            with pytest.raises(KubeApiError) as info:
                await api.request("GET", "/api/v1")
        finally:
            await api.close()
        assert info.value.status == 401

    async def test_discovery_documents(self, api: KubeApi) -> None:
        """Discovery lists resources and their scale subresources per group/version."""
        groups = await api.request("GET", "/apis")
        assert {g["name"] for g in groups["groups"]} == {
            "apps",
            "coordination.k8s.io",
            "apps.nvidia.com",
            "apiextensions.k8s.io",
            "autoscaling.nim-autoscaler.io",
        }
        policies = await api.request("GET", "/apis/autoscaling.nim-autoscaler.io/v1alpha1")
        assert {r["name"] for r in policies["resources"]} == {
            "scalingpolicies",
            "scalingpolicies/status",
        }
        nvidia = await api.request("GET", "/apis/apps.nvidia.com/v1alpha1")
        names = {r["name"] for r in nvidia["resources"]}
        assert names == {"nimservices", "nimservices/scale"}
        core = await api.request("GET", "/api")
        assert core["versions"] == ["v1"]

    async def test_conflict_status_body(self, fake: FakeKube, api: KubeApi) -> None:
        """A stale resourceVersion on PUT is a 409 with a real Status body."""
        created = await api.request(
            "POST",
            "/api/v1/namespaces/ns/configmaps",
            body={"metadata": {"name": "cm"}, "data": {"a": "1"}},
        )
        stale = created["metadata"]["resourceVersion"]
        await api.request(
            "PUT",
            "/api/v1/namespaces/ns/configmaps/cm",
            body={"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"a": "2"}},
        )
        with pytest.raises(KubeApiError) as info:
            await api.request(
                "PUT",
                "/api/v1/namespaces/ns/configmaps/cm",
                body={"metadata": {"name": "cm", "resourceVersion": stale}, "data": {"a": "3"}},
            )
        assert (info.value.status, info.value.reason) == (409, "Conflict")
        assert "the object has been modified" in info.value.message
        assert fake.get("configmaps", "ns", "cm")["data"] == {"a": "2"}  # type: ignore[index]

    async def test_watch_replays_from_version_and_honours_selector(
        self, fake: FakeKube, api: KubeApi
    ) -> None:
        """A watch from version N sends later matching events in order; timeoutSeconds ends it."""
        start = fake.resource_version
        fake.add_pod("ns", "a", labels={"app": "x"})
        fake.add_pod("ns", "b", labels={"app": "y"})
        fake.set_pod_state("ns", "a", phase="Running", ready=False)
        events = [
            (e["type"], e["object"]["metadata"]["name"])
            async for e in api.stream(
                "/api/v1/namespaces/ns/pods",
                query={
                    "watch": True,
                    "resourceVersion": start,
                    "labelSelector": "app=x",
                    "timeoutSeconds": 1,
                },
            )
        ]
        assert events == [("ADDED", "a"), ("MODIFIED", "a")]

    async def test_too_old_version_gets_410_error_event(self, fake: FakeKube, api: KubeApi) -> None:
        """After compaction, a watch from an older version gets ERROR/410 Expired."""
        old = fake.resource_version
        fake.add_pod("ns", "a")
        fake.compact()
        events = [
            e
            async for e in api.stream(
                "/api/v1/namespaces/ns/pods",
                query={"watch": True, "resourceVersion": old, "timeoutSeconds": 1},
            )
        ]
        assert [(e["type"], e["object"]["code"], e["object"]["reason"]) for e in events] == [
            ("ERROR", 410, "Expired")
        ]


class TestLifecycle:
    async def test_async_context_manager(self, tmp_path: Path) -> None:
        """``async with FakeKube()`` serves while inside and stops after."""
        async with FakeKube() as server:
            kubeconfig = write_kubeconfig(tmp_path / "kc", server.url)
            api = await KubeApi.from_settings(Settings(KUBECONFIG=kubeconfig))
            try:
                assert (await api.request("GET", "/api/v1"))["groupVersion"] == "v1"
            finally:
                await api.close()
        api = await KubeApi.from_settings(Settings(KUBECONFIG=kubeconfig), request_timeout=2.0)
        try:
            with pytest.raises(KubeApiError) as info:
                await api.request("GET", "/api/v1")
            assert info.value.status == 0  # connection refused: a transport fault
            assert info.value.retryable
        finally:
            await api.close()


class TestReconcile:
    async def test_pods_follow_replicas_through_states(self) -> None:
        """With reconcile on, scaling creates Pending pods that step to Running then Ready."""
        clock = VirtualClock(1_700_000_000.0)
        fake = FakeKube(clock=clock.now)
        fake.enable_reconcile(schedule_after=10.0, ready_after=60.0)
        fake.add_deployment("llm", "llama", replicas=1, labels={"app": "llama"})

        def states() -> list[tuple[str, bool]]:
            return sorted(
                (
                    obj["status"]["phase"],
                    any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in obj["status"]["conditions"]
                    ),
                )
                for (plural, _, _), obj in fake.objects.items()
                if plural == "pods"
            )

        assert states() == [("Pending", False)]
        clock.advance(10)
        fake.step()
        assert states() == [("Running", False)]
        clock.advance(50)
        fake.step()
        assert states() == [("Running", True)]
        assert fake.objects[("deployments", "llm", "llama")]["status"]["readyReplicas"] == 1

        workload = fake.objects[("deployments", "llm", "llama")]
        fake.put("deployments", {**workload, "spec": {**workload["spec"], "replicas": 3}})
        assert states() == [("Pending", False), ("Pending", False), ("Running", True)]
        clock.advance(60)
        fake.step()
        assert states() == [("Running", True)] * 3
        status = fake.objects[("deployments", "llm", "llama")]["status"]
        assert (status["replicas"], status["readyReplicas"]) == (3, 3)

    async def test_scale_subresource_write_reconciles(self, api: KubeApi, fake: FakeKube) -> None:
        """A PUT on /scale with reconcile on creates and deletes pods with the labels."""
        fake.enable_reconcile()
        fake.add_deployment("llm", "llama", replicas=2, kind="StatefulSet")
        scale = await api.request("GET", "/apis/apps/v1/namespaces/llm/statefulsets/llama/scale")
        scale["spec"]["replicas"] = 1
        await api.request(
            "PUT", "/apis/apps/v1/namespaces/llm/statefulsets/llama/scale", body=scale
        )
        pods = [k for k in fake.objects if k[0] == "pods"]
        assert len(pods) == 1
        assert fake.objects[pods[0]]["metadata"]["labels"] == {"app": "llama"}
