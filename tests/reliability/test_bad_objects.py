"""Malformed Kubernetes objects into the adapters: never a crash, a clean error at worst.

- pods (missing fields, wrong types) into :func:`autoscaler.kube.pods.pod_info` and the pod
  cache's list handling: a :class:`PodInfo` always comes out;
- ``/scale`` answers mangled by the fake API server into :class:`KubeScaleClient`: a sane
  reading or an :class:`ActuationError`, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings

from autoscaler.decision.types import PodInfo, PodPhase
from autoscaler.errors import ActuationError
from autoscaler.kube.client import KubeApi
from autoscaler.kube.pods import PodCache, pod_info
from autoscaler.kube.scale import KubeScaleClient
from autoscaler.policy.models import ScaleTargetRef
from autoscaler.settings import Settings
from tests.fakekube.server import write_kubeconfig
from tests.reliability.chaos import ChaosKube
from tests.reliability.strategies import GOOD_POD, GOOD_SCALE, mangled

LABELS = {"app": "llama"}
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_pod(obj: Any) -> None:
    """The property of pod_info: a well-typed PodInfo, whatever the input."""
    info = pod_info(obj)
    assert isinstance(info, PodInfo)
    assert isinstance(info.name, str)
    assert isinstance(info.phase, PodPhase)
    assert isinstance(info.ready, bool)
    assert isinstance(info.deleting, bool)
    for stamp in (info.created_at, info.ready_at, info.scheduled_at):
        assert stamp is None or isinstance(stamp, float)
    assert info.unschedulable is None or isinstance(info.unschedulable, str)


class TestPodInfo:
    def test_good_pod(self) -> None:
        """The unmangled pod reads as Running and Ready (the fuzz starts from a valid pod)."""
        info = pod_info(GOOD_POD)
        assert (info.name, info.phase, info.ready) == ("llama-1", PodPhase.RUNNING, True)

    @FUZZ
    @given(mangled(GOOD_POD))
    def test_mangled_pods_never_crash(self, obj: Any) -> None:
        """Missing fields and wrong types anywhere: a well-typed PodInfo, no exception."""
        check_pod(obj)


class _MangledScaleKube(ChaosKube):
    """Answers ``GET .../scale`` with :attr:`body` (JSON text) when set."""

    body: str | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.body is not None and request.method == "GET" and request.path.endswith("/scale"):
            return web.Response(text=self.body, content_type="application/json")
        return await super()._handle(request)


class _Server:
    """The fake API server and a scale client on an event loop in a background thread."""

    def __init__(self, tmp: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = _MangledScaleKube()
        self.run(self.fake.start())
        self.fake.add_deployment("nim", "llama", replicas=2, labels={"app": "llama"})
        settings_ = Settings(kubeconfig=write_kubeconfig(tmp / "kubeconfig", self.fake.url))
        self.api = self.run(KubeApi.from_settings(settings_, request_timeout=2.0))
        self.client = KubeScaleClient(
            self.api, retry_budget=0.2, backoff_base=0.05, request_timeout=2.0
        )

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def reset_target(self, *, replicas: int) -> str:
        """Put the Deployment back at ``replicas``; its new resourceVersion."""

        async def put() -> Any:  # on the server's loop, like every request it serves
            return self.fake.add_deployment("nim", "llama", replicas=replicas, labels=LABELS)

        return str(self.run(put())["metadata"]["resourceVersion"])

    def target_replicas(self) -> int:
        """The Deployment's ``spec.replicas`` as the server holds it."""
        obj = self.fake.get("deployments", "nim", "llama")
        assert obj is not None
        return int(obj["spec"]["replicas"])

    def close(self) -> None:
        self.run(self.api.close())
        self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    """One fake API server and client for all examples (a module-scoped background loop)."""
    srv = _Server(tmp_path_factory.mktemp("scale"))
    yield srv
    srv.close()


REF = ScaleTargetRef.model_validate(
    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"}
)


class TestMangledScale:
    def test_good_scale(self, server: _Server) -> None:
        """The unmangled Scale reads back as written (the fuzz starts from a valid object)."""
        server.fake.body = json.dumps(GOOD_SCALE)
        reading = server.run(server.client.get_scale("nim", REF))
        assert (reading.spec_replicas, reading.status_replicas, reading.selector) == (
            2,
            2,
            "app=llama",
        )

    @FUZZ
    @given(mangled(GOOD_SCALE))
    def test_get_scale_reading_or_actuation_error(self, server: _Server, obj: Any) -> None:
        """A mangled Scale: a sane reading (non-negative ints) or ActuationError, nothing else."""
        server.fake.body = json.dumps(obj)
        try:
            reading = server.run(server.client.get_scale("nim", REF))
        except ActuationError:
            return
        assert type(reading.spec_replicas) is int
        assert reading.spec_replicas >= 0
        assert type(reading.status_replicas) is int
        assert reading.status_replicas >= 0
        assert reading.selector is None or isinstance(reading.selector, str)

    @FUZZ
    @given(mangled(GOOD_SCALE))
    def test_set_scale_writes_or_actuation_error(self, server: _Server, obj: Any) -> None:
        """A mangled Scale read before a write: the write of 3 replicas reaches the target, or
        ActuationError and the target is untouched; no write only if the reading said 3."""
        rv = server.reset_target(replicas=2)
        server.fake.body = json.dumps(_with_resource_version(obj, rv))
        before = len(server.fake.scale_writes("llama"))
        try:
            server.run(server.client.set_scale("nim", REF, 3))
        except ActuationError:
            assert server.fake.scale_writes("llama")[before:] == []
            assert server.target_replicas() == 2
            return
        applied = server.fake.scale_writes("llama")[before:]
        if applied:
            assert [w.body["spec"]["replicas"] for w in applied] == [3]
            assert server.target_replicas() == 3
        else:
            assert server.run(server.client.get_scale("nim", REF)).spec_replicas == 3


def _with_resource_version(obj: Any, rv: str) -> Any:
    """``obj`` with GOOD_SCALE's resourceVersion, where the fuzz left it, set to ``rv``.

    GOOD_SCALE's version stands for the target's current one, so an unmangled version leads to
    a write the server accepts (a stale one would only ever test the conflict path).
    """
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(metadata, dict) and metadata.get("resourceVersion") == "1001":
        return {**obj, "metadata": {**metadata, "resourceVersion": rv}}
    return obj


async def test_pod_cache_survives_a_malformed_pod(tmp_path: Any) -> None:
    """A malformed pod in the list and the watch does not stop the cache: the others are served."""
    async with ChaosKube() as fake:
        fake.add_pod("nim", "good-1", labels={"app": "llama"})
        bad = {
            "metadata": {"name": "bad-1", "namespace": "nim", "labels": ["app"]},
            "status": "garbage",
        }
        fake.put("pods", bad)
        settings_ = Settings(kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", fake.url))
        api = await KubeApi.from_settings(settings_, request_timeout=2.0)
        cache = PodCache(api, ["nim"], backoff_base=0.05)
        cache.start()
        try:
            assert await cache.wait_synced(5.0)
            assert [p.name for p in cache.pods("nim", "app=llama")] == ["good-1"]
            fake.put("pods", {**bad, "metadata": {**bad["metadata"], "name": "bad-2"}})
            fake.add_pod("nim", "good-2", labels={"app": "llama"})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5.0
            while [p.name for p in cache.pods("nim", "app=llama")] != ["good-1", "good-2"]:
                assert loop.time() < deadline, "the watch stopped after a malformed pod"
                await asyncio.sleep(0.02)
            assert cache.lists == 1  # no crash-and-relist loop
        finally:
            await cache.stop()
            await api.close()
