"""HTTP endpoints of the controller: ``/metrics``, ``/healthz`` and ``/readyz``.

Served by aiohttp on ``settings.metrics_port``. Nothing else is exposed: no debug pages, no policy
contents, no secrets. Liveness means the control loop is still ticking; readiness means the policies
are loaded and the pod caches have synced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)


@dataclass
class HealthChecks:
    """Callables answering the probes; each returns ``(ok, detail)``."""

    live: Callable[[], tuple[bool, str]]
    ready: Callable[[], tuple[bool, str]]


def build_app(registry: CollectorRegistry, checks: HealthChecks) -> web.Application:
    """The aiohttp application with the three endpoints."""

    async def metrics(_: web.Request) -> web.Response:
        # Rendered in a worker thread: at 1,000 policies it takes hundreds of milliseconds, which
        # would stall the control loop (the per-policy collectors read the loop's state safely).
        body = await asyncio.to_thread(generate_latest, registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    def probe(check: Callable[[], tuple[bool, str]]) -> Callable[[web.Request], object]:
        async def handler(_: web.Request) -> web.Response:
            ok, detail = check()
            return web.Response(status=200 if ok else 503, text=("ok" if ok else detail) + "\n")

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", probe(checks.live))  # type: ignore[arg-type]
    app.router.add_get("/readyz", probe(checks.ready))  # type: ignore[arg-type]
    return app


class HealthServer:
    """Runs :func:`build_app` on a host and port until stopped."""

    def __init__(
        self, registry: CollectorRegistry, checks: HealthChecks, host: str, port: int
    ) -> None:
        self._app = build_app(registry, checks)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The bound port (useful when started with port 0)."""

    async def start(self) -> None:
        """Bind and serve."""
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("health server listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
