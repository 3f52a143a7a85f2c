"""The client library's generated APIs and models load only when used (a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_controller_imports_load_no_generated_model() -> None:
    """Importing the controller's Kubernetes modules loads no model or API class module."""
    out = _run(
        """
        import sys
        import autoscaler.app, autoscaler.kube.factory, autoscaler.kube.client
        heavy = [m for m in sys.modules
                 if m.startswith(("kubernetes_asyncio.client.models.",
                                  "kubernetes_asyncio.client.api."))]
        print(len(heavy))
        """
    )
    assert out == "0"


def test_every_name_still_resolves() -> None:
    """Models, APIs, subpackages and plain attributes resolve as with the eager packages."""
    out = _run(
        """
        import autoscaler.kube.client
        import kubernetes_asyncio
        import kubernetes_asyncio.client as client
        from kubernetes_asyncio.client import V1Deployment, CoreV1Api
        from kubernetes_asyncio.client.models.v1_pod import V1Pod as direct
        from kubernetes_asyncio.watch import Watch
        assert client.V1Pod is direct
        assert V1Deployment.__module__ == "kubernetes_asyncio.client.models.v1_deployment"
        assert CoreV1Api.__module__ == "kubernetes_asyncio.client.api.core_v1_api"
        assert kubernetes_asyncio.watch.Watch is Watch
        assert "V1Pod" in dir(client) and "V1Service" in dir(client.models)
        assert kubernetes_asyncio.__version__
        try:
            client.NoSuchThing
        except AttributeError as exc:
            assert "NoSuchThing" in str(exc)
        else:
            raise AssertionError("unknown names must raise AttributeError")
        import asyncio
        class Response:
            data = '{"metadata": {"name": "p", "namespace": "n"}, "status": {"phase": "Running"}}'
        async def main():
            async with client.ApiClient() as api:
                return api.deserialize(Response(), "V1Pod")
        pod = asyncio.run(main())
        print(type(pod).__name__, pod.metadata.name, pod.status.phase)
        """
    )
    assert out == "V1Pod p Running"
