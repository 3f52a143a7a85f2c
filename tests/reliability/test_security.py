"""Secrets never leak, and the metrics/health port exposes nothing but its three endpoints.

- The real controller process with a Prometheus bearer token from a file, debug logging, a proxy
  that checks the token (and then rejects a rotated one, so errors are logged too): neither token
  appears in its logs, its ``/metrics``, or anything it wrote to the cluster.
- In-process with basic auth: the password (and its base64 form) never appears in captured log
  events or in decision explanations, including while Prometheus rejects it.
- The health port: GET ``/metrics``, ``/healthz``, ``/readyz`` answer 200; every other path is
  404, other methods are refused, no listing, no debug pages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import structlog

from autoscaler.app import build_controller, run_controller
from autoscaler.decision.types import Decision
from autoscaler.settings import Settings
from tests.e2e.harness import NAMESPACE, World, wait_until
from tests.fakekube.server import write_kubeconfig
from tests.promserver.fixtures import fleet_target
from tests.promserver.prometheus import free_port
from tests.reliability.chaos import ChaosKube
from tests.reliability.process import ControllerProcess, controller_env

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]

TOKEN = "tok-3f9a1c0e-do-not-log"
ROTATED = "tok-rotated-77b2d9-do-not-log"
PASSWORD = "pw-basic-5e1d-do-not-log"

ALLOWED = ("/metrics", "/healthz", "/readyz")
PROBED = (
    "/",
    "/metrics/",
    "/healthz/",
    "/metrics.txt",
    "/debug",
    "/debug/pprof/",
    "/debug/vars",
    "/admin",
    "/config",
    "/policies",
    "/env",
    "/static/",
    "/..%2f..%2fetc%2fpasswd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/metrics/../../etc/passwd",
    "/favicon.ico",
    "/api/v1/query",
)


def http(url: str, method: str = "GET") -> tuple[int, bytes]:
    """Status and body of one request (errors included)."""
    request = urllib.request.Request(url, method=method)  # noqa: S310 - http://127.0.0.1 only
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - as above
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def assert_only_three_endpoints(base: str) -> bytes:
    """The port's surface: 3 GET endpoints; everything else 404 (or 405 for other methods)."""
    bodies = b""
    for path in ALLOWED:
        status, body = http(base + path)
        assert status in {200, 503}, (path, status)  # readyz may say "not ready" (503)
        bodies += body
    assert http(base + "/metrics")[0] == 200
    assert http(base + "/healthz")[0] == 200
    for path in PROBED:
        status, body = http(base + path)
        assert status == 404, (path, status, body[:200])
        assert b"Index of" not in body
        bodies += body
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in (*ALLOWED, "/"):
            status, _ = http(base + path, method)
            assert status in {404, 405}, (method, path, status)
    return bodies


def assert_no_secret(text: str | bytes, *secrets: str) -> None:
    """None of the secrets (nor their base64 forms) is in ``text``."""
    data = text.encode() if isinstance(text, str) else text
    for secret in secrets:
        for form in (secret.encode(), base64.b64encode(secret.encode())):
            assert form not in data, f"secret {secret!r} leaked"


async def test_process_never_logs_bearer_token_and_exposes_three_endpoints(
    tmp_path: Path, prometheus_factory, fleet_factory, proxy_factory
) -> None:
    """Bearer token from a file (then rotated and rejected): in no log line, metric or object."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    proxy = proxy_factory(prometheus.url)
    proxy.require({"Authorization": f"Bearer {TOKEN}"})
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    async with ChaosKube() as fake:
        world = World(fake, fleet, tmp_path, scale_down_window=0)
        await world.launch(replicas=2, demand=1.0)
        env = controller_env(
            world.policy_dir,
            proxy.url,
            leader_election="false",
            prometheus_bearer_token_file=str(token_file),
            log_level="debug",
            metrics_port=str(port),
            metrics_bind_address="127.0.0.1",
        )
        controller = ControllerProcess(tmp_path, "sec", fake.url, env)
        await controller.start()
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_until(lambda: len(proxy.seen_headers) >= 3, 30, "authenticated queries")
            world.demand = 2.0
            await wait_until(lambda: world.replicas() == 4, 20, "a scale-out (auth works)")
            rejected = proxy.rejected
            token_file.write_text(ROTATED + "\n")  # the proxy still wants the old token: 401s
            await wait_until(lambda: proxy.rejected >= rejected + 3, 20, "rejected queries")
            await asyncio.sleep(1.5)  # error handling and logging of a few ticks
            bodies = await asyncio.to_thread(assert_only_three_endpoints, base)
            controller.signal(signal.SIGTERM)
            assert await controller.wait(20) == 0
        finally:
            await controller.kill()
            await world.stop()
        rotated_seen = [
            h for h in proxy.seen_headers if h.get("Authorization") == f"Bearer {ROTATED}"
        ]
        assert rotated_seen  # the rotated token really was in use (and refused)
        log = controller.text()
        assert '"event": "tick"' in log  # the log is the real one (debug level, JSON)
        assert "401" in log or "unauthorized" in log.lower()  # the failure itself is reported
        assert_no_secret(log, TOKEN, ROTATED)
        assert_no_secret(bodies, TOKEN, ROTATED)
        assert_no_secret(json.dumps(list(fake.objects.values())), TOKEN, ROTATED)


async def test_basic_auth_password_not_in_logs_or_explanations(
    tmp_path: Path, prometheus_factory, fleet_factory, proxy_factory
) -> None:
    """Basic-auth password (accepted, then refused): not in log events nor explanations."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    proxy = proxy_factory(prometheus.url)
    good = "Basic " + base64.b64encode(f"autoscaler:{PASSWORD}".encode()).decode()
    proxy.require({"Authorization": good})
    decisions: list[Decision] = []
    async with ChaosKube() as fake:
        world = World(fake, fleet, tmp_path, scale_down_window=0)
        await world.launch(replicas=2, demand=2.0)
        settings = world.settings(
            proxy.url,
            prometheus_username="autoscaler",
            prometheus_password=PASSWORD,
            log_level="debug",
        )
        with structlog.testing.capture_logs() as logs:
            controller = await build_controller(settings, on_decision=decisions.append)
            await controller.start()
            task = asyncio.create_task(controller.runner.run())
            try:
                await wait_until(lambda: world.replicas() == 4, 20, "a scale-out (auth works)")
                proxy.require({"Authorization": "Basic something-else"})
                seen = len(decisions)
                await wait_until(lambda: len(decisions) >= seen + 3, 20, "ticks while refused")
            finally:
                controller.runner.stop()
                await asyncio.wait_for(task, 15)
                await controller.close()
                await world.stop()
        failures = [d for d in decisions if "401" in json.dumps(d.explanation, default=str)]
        assert failures, "the refusal is explained (so the check below reads real errors)"
        assert_no_secret(repr(logs), PASSWORD, f"autoscaler:{PASSWORD}")
        for decision in decisions:
            assert_no_secret(json.dumps(decision.explanation, default=str), PASSWORD)
            assert_no_secret(repr(decision), PASSWORD)


async def test_credentials_in_prometheus_url_not_logged(tmp_path: Path) -> None:
    """user:password in AUTOSCALER_PROMETHEUS_URL never reaches the logs."""
    async with ChaosKube() as fake:
        policies = tmp_path / "policies"
        policies.mkdir()
        settings = Settings(
            prometheus_url=f"http://autoscaler:{PASSWORD}@127.0.0.1:{free_port()}",
            policy_dir=policies,
            kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", fake.url),
            leader_election=False,
            metrics_port=0,
            namespaces=[NAMESPACE],
            interval=0.5,
        )
        # An earlier test may have left a level filter (warning) that capture_logs keeps:
        # capture every event here, and put the configuration back after.
        saved = structlog.get_config()
        structlog.reset_defaults()
        try:
            with structlog.testing.capture_logs() as logs:
                task = asyncio.create_task(run_controller(settings, install_signals=False))
                await wait_until(
                    lambda: any(e["event"] == "controller starting" for e in logs), 20, "start"
                )
                await asyncio.sleep(1.0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        finally:
            structlog.configure(**saved)
        assert_no_secret(repr(logs), PASSWORD)
