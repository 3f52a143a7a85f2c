"""Fixtures: a fake API server on 127.0.0.1 and the real kubernetes_asyncio client pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from autoscaler.kube.client import KubeApi
from autoscaler.settings import Settings
from tests.fakekube import FakeKube, write_kubeconfig


@pytest.fixture
async def fake() -> AsyncIterator[FakeKube]:
    """A running fake API server."""
    server = FakeKube(token="fake")  # the client must send the kubeconfig's bearer token
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings(fake: FakeKube, tmp_path: Path) -> Settings:
    """Settings whose kubeconfig points at the fake server."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
    return Settings(KUBECONFIG=kubeconfig, leader_election_namespace="nim-system")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[KubeApi]:
    """The real kubernetes_asyncio ApiClient, wrapped, talking to the fake."""
    client = await KubeApi.from_settings(settings, request_timeout=5.0)
    yield client
    await client.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling the event loop) until ``predicate()`` holds; fail after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.01)
