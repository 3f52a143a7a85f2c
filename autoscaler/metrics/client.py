"""The Prometheus HTTP connection: auth, TLS, headers, timeouts, retries, response checks.

Wraps ``prometheus_api_client.PrometheusConnect`` (synchronous, on ``requests``) for
:mod:`autoscaler.metrics.prometheus`: every query runs in a worker thread
(``asyncio.to_thread``) under a semaphore (at most ``concurrency`` in flight), with a per-query
timeout, at most ``max_retries`` retries on connection errors and HTTP 5xx, with backoff, and
never past the caller's deadline. A failure raises :class:`QueryFailed` carrying the
:class:`~autoscaler.decision.types.NoSignalReason` (``timeout`` or ``query_error``) that the
source turns into "no signal".

Secrets (the bearer token, the basic-auth password, header values, credentials in the URL)
never appear in logs or exception messages: messages name the query and the failure only, and
the URL is shown without its user-info part.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from autoscaler.decision.types import NoSignalReason
from autoscaler.errors import MetricsUnavailable
from autoscaler.settings import Settings

log = structlog.get_logger(__name__)

_MAX_DETAIL = 300
_ERROR_RE = re.compile(r'"error":"((?:[^"\\]|\\.)*)"')


class QueryFailed(MetricsUnavailable):
    """A PromQL query failed; ``reason`` says how (timeout or error)."""

    def __init__(self, reason: NoSignalReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class Series:
    """One series of an instant-vector result."""

    labels: Mapping[str, str]
    timestamp: float
    value: float


def redact_url(url: str) -> str:
    """The URL without user-info (``https://user:pass@host`` -> ``https://host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def parse_vector(data: Any) -> list[Series]:
    """Check and convert the ``data.result`` of an instant query (a vector, or a scalar).

    Args:
        data: The decoded ``result`` list.

    Returns:
        The series.

    Raises:
        QueryFailed: The result is not a well-formed instant vector (``query_error``).
    """
    if not isinstance(data, list):
        raise QueryFailed(NoSignalReason.QUERY_ERROR, "malformed response: result is not a list")
    if len(data) == 2 and isinstance(data[0], int | float) and isinstance(data[1], str):
        # A scalar result (``scalar(...)``, a number literal): one value without labels.
        try:
            return [Series(labels={}, timestamp=float(data[0]), value=float(data[1]))]
        except ValueError as exc:
            msg = "malformed response: bad scalar"
            raise QueryFailed(NoSignalReason.QUERY_ERROR, msg) from exc
    out: list[Series] = []
    for item in data:
        try:
            labels = item["metric"]
            stamp, text = item["value"]
            if not isinstance(labels, dict) or not isinstance(text, str):
                raise TypeError("bad series shape")
            # Prometheus label names and values are JSON strings: no copy needed.
            out.append(Series(labels=labels, timestamp=float(stamp), value=float(text)))
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"malformed response: bad series ({type(exc).__name__})"
            raise QueryFailed(NoSignalReason.QUERY_ERROR, msg) from exc
    return out


class _TokenFile:
    """A bearer token read from a file, re-read when the file's mtime (or size) changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def token(self) -> str:
        """The current token; raises ``OSError`` if the file cannot be read."""
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._token = self._path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
            return self._token


class PrometheusClient:
    """A Prometheus HTTP API client for instant queries, safe to call from asyncio.

    Args:
        url: Base URL including any path prefix (``https://mimir.example/prometheus``).
        bearer_token_file: File holding a bearer token (re-read when it changes).
        username: Basic-auth user.
        password: Basic-auth password.
        ca_file: CA bundle to verify the server's certificate.
        insecure_skip_verify: Do not verify TLS certificates (testing only).
        headers: Extra headers sent with every request (e.g. ``X-Scope-OrgID``).
        timeout: Seconds one query may take (client side, and sent to Prometheus).
        concurrency: Queries in flight at once.
        max_retries: Retries on connection errors and HTTP 5xx (within the deadline).
        backoff: First retry delay, seconds; tripled on each further retry.
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token_file: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        insecure_skip_verify: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        concurrency: int = 8,
        max_retries: int = 2,
        backoff: float = 0.1,
    ) -> None:
        if timeout <= 0 or not math.isfinite(timeout):
            msg = f"timeout must be a positive number of seconds, got {timeout!r}"
            raise ValueError(msg)
        if concurrency < 1:
            msg = f"concurrency must be >= 1, got {concurrency}"
            raise ValueError(msg)
        self.url = url.rstrip("/")
        self.display_url = redact_url(self.url)
        self.timeout = timeout
        self.concurrency = concurrency
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self._base_headers = dict(headers or {})
        self._token = _TokenFile(bearer_token_file) if bearer_token_file else None
        self._headers_lock = threading.Lock()
        session = requests.Session()
        if insecure_skip_verify:
            # Chosen explicitly by the operator (testing only): no warning on every query.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            session.verify = False
        elif ca_file is not None:
            session.verify = str(ca_file)
        # Retries are ours (deadline-aware); the adapter must not retry on its own.
        session.mount(
            "http://", HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=False))
        )
        session.mount(
            "https://", HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=False))
        )
        self._session = session
        auth = (username, password or "") if username is not None else None
        self._prom = PrometheusConnect(
            url=self.url,
            headers=dict(self._base_headers),
            disable_ssl=insecure_skip_verify,
            retry=Retry(total=0, read=False, redirect=False),
            auth=auth,
            session=session,
            timeout=timeout,
        )
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.requests_sent = 0
        """HTTP requests sent so far (including retries); for tests and benchmarks."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PrometheusClient:
        """A client configured from the controller settings."""
        password = settings.prometheus_password
        return cls(
            settings.prometheus_url,
            bearer_token_file=settings.prometheus_bearer_token_file,
            username=settings.prometheus_username,
            password=password.get_secret_value() if password is not None else None,
            ca_file=settings.prometheus_ca_file,
            insecure_skip_verify=settings.prometheus_insecure_skip_verify,
            headers=settings.prometheus_headers,
            timeout=settings.prometheus_timeout,
            concurrency=settings.prometheus_concurrency,
        )

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = asyncio.Semaphore(self.concurrency)
            self._semaphores = {loop: sem}
        return sem

    def _refresh_headers(self) -> None:
        """Put the current bearer token into the headers (thread-safe; token never logged)."""
        if self._token is None:
            return
        try:
            token = self._token.token()
        except OSError as exc:
            msg = f"cannot read the bearer token file ({type(exc).__name__})"
            raise QueryFailed(NoSignalReason.QUERY_ERROR, msg) from None
        with self._headers_lock:
            headers = dict(self._base_headers)
            headers["Authorization"] = f"Bearer {token}"
            if headers != self._prom.headers:
                self._prom.headers = headers

    def _query_sync(self, promql: str, at: float, timeout: float) -> list[Series]:
        """One HTTP attempt (runs in a worker thread)."""
        self._refresh_headers()
        with self._headers_lock:
            self.requests_sent += 1
        params = {"time": f"{at:.3f}", "timeout": f"{max(1, round(timeout * 1000))}ms"}
        try:
            data = self._prom.custom_query(promql, params=params, timeout=timeout)
        except requests.Timeout:
            raise QueryFailed(
                NoSignalReason.TIMEOUT, f"no answer within {timeout:.3g}s from {self.display_url}"
            ) from None
        except requests.ConnectionError as exc:
            raise _Retryable(f"cannot reach {self.display_url}: {type(exc).__name__}") from None
        except PrometheusApiClientException as exc:
            text = str(exc)
            status = _status_code(text)
            error = _ERROR_RE.search(text)
            shown = f"HTTP {status}: {error.group(1)}" if error and status else text
            detail = f"{self.display_url} answered {shown[:_MAX_DETAIL]}"
            if status is not None and status >= 500:
                raise _Retryable(detail) from None
            raise QueryFailed(NoSignalReason.QUERY_ERROR, detail) from None
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            # Undecodable or truncated body (JSONDecodeError is a ValueError), or no data.result.
            msg = f"malformed response from {self.display_url}: {type(exc).__name__}"
            raise QueryFailed(NoSignalReason.QUERY_ERROR, msg) from None
        return parse_vector(data)

    async def query(self, promql: str, at: float, deadline: float | None = None) -> list[Series]:
        """Run an instant query evaluated at time ``at``.

        Args:
            promql: The query.
            at: Evaluation time, seconds since the epoch (``time=`` parameter).
            deadline: ``time.monotonic()`` value after which no attempt starts or runs.

        Returns:
            The series of the instant vector.

        Raises:
            QueryFailed: Timeout, error status, connection failure after retries, or a
                malformed body.
        """
        async with self._semaphore():
            attempt = 0
            while True:
                remaining = self.timeout
                if deadline is not None:
                    remaining = min(remaining, deadline - time.monotonic())
                if remaining <= 0:
                    raise QueryFailed(NoSignalReason.TIMEOUT, "tick deadline passed before query")
                started = time.monotonic()
                try:
                    result = await asyncio.wait_for(
                        asyncio.to_thread(self._query_sync, promql, at, remaining),
                        timeout=remaining + 1.0,
                    )
                except TimeoutError:
                    raise QueryFailed(
                        NoSignalReason.TIMEOUT,
                        f"no answer within {remaining:.3g}s from {self.display_url}",
                    ) from None
                except _Retryable as exc:
                    delay = self.backoff * (3**attempt)
                    out_of_time = deadline is not None and time.monotonic() + delay >= deadline
                    if attempt >= self.max_retries or out_of_time:
                        raise QueryFailed(NoSignalReason.QUERY_ERROR, exc.detail) from None
                    attempt += 1
                    log.debug("prometheus query retry", attempt=attempt, detail=exc.detail)
                    await asyncio.sleep(delay)
                    continue
                log.debug(
                    "prometheus query",
                    query=promql[:200],
                    series=len(result),
                    seconds=round(time.monotonic() - started, 4),
                )
                return result

    async def close(self) -> None:
        """Close the HTTP session (ours: older client versions have no ``close()``)."""
        await asyncio.to_thread(self._session.close)


class _Retryable(QueryFailed):
    """A failure worth retrying (connection error, HTTP 5xx)."""

    def __init__(self, detail: str) -> None:
        super().__init__(NoSignalReason.QUERY_ERROR, detail)


def _status_code(text: str) -> int | None:
    """The HTTP status from a ``PrometheusApiClientException`` message, if present."""
    prefix = "HTTP Status Code "
    if not text.startswith(prefix):
        return None
    digits = text[len(prefix) : len(prefix) + 3]
    return int(digits) if digits.isdigit() else None
