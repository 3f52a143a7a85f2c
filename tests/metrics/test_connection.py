"""Connection options through a checking proxy in front of the real Prometheus."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from autoscaler.decision.types import NoSignal, NoSignalReason, PodSamples
from autoscaler.metrics.base import MetricRequest
from autoscaler.metrics.client import PrometheusClient, QueryFailed, redact_url
from autoscaler.metrics.prometheus import PrometheusSource
from autoscaler.settings import Settings
from tests.metrics.env import ALL_PRESETS, LlmEnv, make_policy, pods_of
from tests.promserver.proxy import PrometheusProxy

pytestmark = pytest.mark.prometheus

ProxyFactory = Callable[..., PrometheusProxy]
SECRET = "s3cr3t-token-value"


def _write_token(path: Path, token: str, bump: int) -> None:
    path.write_text(token + "\n", encoding="utf-8")
    stamp = time.time() + bump
    os.utime(path, (stamp, stamp))


async def _kv(src: PrometheusSource, env: LlmEnv) -> object:
    policy = make_policy("nim-a", ALL_PRESETS[:1], names="nim")
    result = await src.fetch([MetricRequest(policy, pods_of(env, "nim-a"))], time.time() - 2)
    return result[policy.key]["kvCache"]


async def test_bearer_token_file_headers_and_path_prefix(
    llm_env: LlmEnv, proxy_factory: ProxyFactory, tmp_path: Path
) -> None:
    """Token from a file (re-read when it changes), X-Scope-OrgID, and a /prom path prefix."""
    proxy = proxy_factory(llm_env.server.url, "/prom")
    token_file = tmp_path / "token"
    _write_token(token_file, SECRET, 0)
    proxy.require({"Authorization": f"Bearer {SECRET}", "X-Scope-OrgID": "tenant-a"})
    settings = Settings(
        prometheus_url=proxy.url,
        prometheus_bearer_token_file=token_file,
        prometheus_headers={"X-Scope-OrgID": "tenant-a"},
    )
    src = PrometheusSource.from_settings(settings)
    assert isinstance(await _kv(src, llm_env), PodSamples)
    assert proxy.rejected == 0
    assert proxy.queries  # went through the prefix

    rotated = SECRET + "-rotated"
    proxy.require({"Authorization": f"Bearer {rotated}", "X-Scope-OrgID": "tenant-a"})
    with structlog.testing.capture_logs() as logs:
        stale = await _kv(src, llm_env)
    assert isinstance(stale, NoSignal)
    assert stale.reason is NoSignalReason.QUERY_ERROR
    assert "401" in stale.detail
    assert SECRET not in repr(logs)
    assert SECRET not in stale.detail

    _write_token(token_file, rotated, 5)
    assert isinstance(await _kv(src, llm_env), PodSamples)
    await src.close()


async def test_basic_auth_and_secret_free_errors(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """Basic auth is sent; a wrong password fails without the password in logs or errors."""
    proxy = proxy_factory(llm_env.server.url)
    good = base64.b64encode(b"alice:" + SECRET.encode()).decode()
    proxy.require({"Authorization": f"Basic {good}"})
    src = PrometheusSource(PrometheusClient(proxy.url, username="alice", password=SECRET))
    assert isinstance(await _kv(src, llm_env), PodSamples)
    await src.close()

    wrong = PrometheusSource(
        PrometheusClient(proxy.url, username="alice", password="nope-" + SECRET)
    )
    with structlog.testing.capture_logs() as logs:
        failed = await _kv(wrong, llm_env)
    await wrong.close()
    assert isinstance(failed, NoSignal)
    assert failed.reason is NoSignalReason.QUERY_ERROR
    assert SECRET not in repr(logs)
    assert SECRET not in failed.detail


def test_credentials_in_the_url_are_never_shown() -> None:
    """A URL with user-info is displayed without it."""
    assert redact_url("https://bob:pw@prom.example:9090/x") == "https://prom.example:9090/x"
    client = PrometheusClient("http://bob:pw@127.0.0.1:1/prom")
    assert "pw" not in client.display_url


async def test_retries_on_5xx_then_succeeds(llm_env: LlmEnv, proxy_factory: ProxyFactory) -> None:
    """Two 503s then success: the query succeeds after 2 retries (3 requests)."""
    proxy = proxy_factory(llm_env.server.url)
    proxy.fail_next = 2
    client = PrometheusClient(proxy.url, backoff=0.01)
    series = await client.query('gpu_cache_usage_perc{namespace="nim-a"}', time.time() - 2)
    assert len(series) == 3
    assert client.requests_sent == 3
    proxy.fail_next = 3
    with pytest.raises(QueryFailed) as info:
        await client.query('gpu_cache_usage_perc{namespace="nim-a"}', time.time() - 2)
    assert info.value.reason is NoSignalReason.QUERY_ERROR
    assert "HTTP 503" in info.value.detail
    assert client.requests_sent == 6
    await client.close()


async def test_retries_never_pass_the_deadline(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """With a 1 s backoff and a 0.3 s deadline, no retry is attempted."""
    proxy = proxy_factory(llm_env.server.url)
    proxy.fail_next = 5
    client = PrometheusClient(proxy.url, backoff=1.0)
    started = time.monotonic()
    with pytest.raises(QueryFailed):
        await client.query("up", time.time(), deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 0.5
    assert client.requests_sent == 1
    await client.close()


async def test_client_errors_are_not_retried(llm_env: LlmEnv, proxy_factory: ProxyFactory) -> None:
    """A 4xx (bad query, auth) is answered at once, without retries."""
    proxy = proxy_factory(llm_env.server.url)
    client = PrometheusClient(proxy.url, backoff=0.01)
    with pytest.raises(QueryFailed, match="HTTP 400"):
        await client.query("sum(", time.time())
    assert client.requests_sent == 1
    await client.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl CLI)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_with_ca_bundle_insecure_and_unverified(
    llm_env: LlmEnv, proxy_factory: ProxyFactory, tls_files: tuple[Path, Path]
) -> None:
    """HTTPS: the CA bundle verifies; without it the query fails; insecure skips verification."""
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    proxy = proxy_factory(llm_env.server.url, "", context)
    assert proxy.url.startswith("https://")
    with_ca = PrometheusSource(PrometheusClient(proxy.url, ca_file=cert))
    assert isinstance(await _kv(with_ca, llm_env), PodSamples)
    await with_ca.close()
    unverified = PrometheusSource(PrometheusClient(proxy.url))
    failed = await _kv(unverified, llm_env)
    await unverified.close()
    assert isinstance(failed, NoSignal)
    assert failed.reason is NoSignalReason.QUERY_ERROR
    insecure = PrometheusSource(PrometheusClient(proxy.url, insecure_skip_verify=True))
    assert isinstance(await _kv(insecure, llm_env), PodSamples)
    await insecure.close()


async def test_answers_are_asked_uncompressed_unless_configured(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """``Accept-Encoding: identity`` by default; an operator's own value is sent instead."""
    proxy = proxy_factory(llm_env.server.url)
    src = PrometheusSource(PrometheusClient(proxy.url))
    assert isinstance(await _kv(src, llm_env), PodSamples)
    await src.close()
    assert proxy.seen_headers
    assert _encodings(proxy) == {"identity"}

    proxy.seen_headers.clear()
    gzip = PrometheusSource(PrometheusClient(proxy.url, headers={"accept-encoding": "gzip"}))
    assert isinstance(await _kv(gzip, llm_env), PodSamples)
    await gzip.close()
    assert _encodings(proxy) == {"gzip"}


def _encodings(proxy: PrometheusProxy) -> set[str]:
    """The ``Accept-Encoding`` values the proxy saw (header names in any case)."""
    return {v for h in proxy.seen_headers for k, v in h.items() if k.lower() == "accept-encoding"}


async def test_rule_groups_are_read_like_queries(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """``/api/v1/rules`` goes through the same path prefix and retries; a server that does not
    serve it (404) or answers nonsense is a ``query_error``, not retried."""
    proxy = proxy_factory(llm_env.server.url, prefix="/prom")
    client = PrometheusClient(proxy.url, backoff=0.01)
    try:
        assert await client.rule_groups() == ()  # this Prometheus has no recording rules
        proxy.fail_next = 1
        assert await client.rule_groups() == ()  # a 503, then the answer
        assert client.requests_sent == 3
        proxy.fail_status, proxy.fail_next = 404, 1
        with pytest.raises(QueryFailed, match="HTTP 404") as info:
            await client.rule_groups()
        assert info.value.reason is NoSignalReason.QUERY_ERROR
        assert client.requests_sent == 4
        proxy.body_mode = "garbage"
        with pytest.raises(QueryFailed, match="malformed rules answer") as info:
            await client.rule_groups()
        assert info.value.reason is NoSignalReason.QUERY_ERROR
    finally:
        await client.close()


async def test_without_the_rules_api_the_source_reads_on_without_a_phase(
    llm_env: LlmEnv, proxy_factory: ProxyFactory
) -> None:
    """Behind an endpoint that serves queries only, the probe's rules read fails: logged once,
    no phase, and the tick's metrics are read as before."""
    proxy = proxy_factory(llm_env.server.url)
    proxy.unserved = {"/api/v1/rules"}
    client = PrometheusClient(proxy.url, backoff=0.01)
    source = PrometheusSource(client, rules_probe_interval=0.0)  # a probe every tick
    policy = make_policy("nim-a", [ALL_PRESETS[0], ALL_PRESETS[3]], name="p")
    request = MetricRequest(policy, pods_of(llm_env, "nim-a"))
    # An earlier test may have left a level filter (warning) that capture_logs keeps: capture
    # every event here, and put the configuration back after.
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(2):
                result = await source.fetch([request], time.time() - 2)
                assert source.last_stats is not None
                assert source.last_stats.rules_probe_queries == 1
                assert isinstance(result[policy.key]["kvCache"], PodSamples)
                assert isinstance(result[policy.key]["requestRate"], PodSamples)
                assert source.tick_phase() is None
    finally:
        structlog.configure(**saved)
        await client.close()
    unavailable = [e for e in logs if e["event"].startswith("recording rule timing unavailable")]
    assert len(unavailable) == 1, logs
    assert "404" in unavailable[0]["detail"]
