"""The Prometheus HTTP connection: auth, TLS, headers, timeouts, retries, response checks.

Built directly on ``requests`` (a ``Session`` with our TLS, auth and header settings, and
``urllib3`` for the retry policy of its adapters) for :mod:`autoscaler.metrics.prometheus`. The
``/api/v1/query`` request is ours so that the body is decoded by :mod:`autoscaler.metrics.vector`
as it is read (a batched answer at 1,000 policies is ~15 MB of JSON: never one tree of Python
objects); a Prometheus client library would decode it whole, and holding one only for its
connection settings added dependencies and nothing else. Every query runs in a worker thread
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
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from autoscaler.decision.types import NoSignalReason
from autoscaler.metrics.rules import RuleGroup, parse_rule_groups
from autoscaler.metrics.vector import (
    KeyedRow,
    LabelStrings,
    QueryFailed,
    Series,
    decode_keyed,
    decode_series,
    parse_vector,
)
from autoscaler.settings import Settings

__all__ = ["PrometheusClient", "QueryFailed", "Series", "parse_vector", "redact_url"]

T = TypeVar("T")

log = structlog.get_logger(__name__)

_MAX_DETAIL = 300
_READ_CHUNK = 1 << 20
"""Bytes per read of an answer's body."""
_ERROR_RE = re.compile(r'"error":"((?:[^"\\]|\\.)*)"')


def redact_url(url: str) -> str:
    """The URL without user-info (``https://user:pass@host`` -> ``https://host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


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
        if not any(name.lower() == "accept-encoding" for name in self._base_headers):
            # Uncompressed answers: compressing megabytes of JSON costs Prometheus more CPU
            # than a cluster network costs to carry them (and us more to inflate). A remote
            # Prometheus behind a slow link: set the header to "gzip" in ``headers``.
            self._base_headers["Accept-Encoding"] = "identity"
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
        self._auth = (username, password or "") if username is not None else None
        self._headers = dict(self._base_headers)
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.requests_sent = 0
        """HTTP requests sent so far (including retries); for tests and benchmarks."""
        self._strings = LabelStrings()
        """Label values decoded by earlier batched answers (the same pods every tick)."""

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
            if headers != self._headers:
                self._headers = headers

    def _get(self, promql: str, at: float, timeout: float) -> bytes:
        """One query attempt (runs in a worker thread): the body of a 200 answer."""
        params = {
            "query": promql,
            "time": f"{at:.3f}",
            "timeout": f"{max(1, round(timeout * 1000))}ms",
        }
        # The raw body: decoded by .vector without building the whole JSON tree.
        return self._request("/api/v1/query", params, timeout)

    def _request(self, path: str, params: Mapping[str, str], timeout: float) -> bytes:
        """One HTTP GET of an API path (runs in a worker thread): the body of a 200 answer."""
        self._refresh_headers()
        with self._headers_lock:
            self.requests_sent += 1
        try:
            response = self._session.get(
                f"{self.url}{path}",
                params=params,
                headers=self._headers,
                auth=self._auth,
                # Explicit: otherwise REQUESTS_CA_BUNDLE would override the session's setting.
                verify=self._session.verify,
                cert=self._session.cert,
                timeout=timeout,
                stream=True,
            )
            try:
                # Read in large pieces (``.content`` reads 10 KiB at a time: ~1,500 reads for
                # a 15 MB tick).
                body = b"".join(response.iter_content(_READ_CHUNK))
            finally:
                response.close()  # back to the pool (the body is read whole)
        except requests.Timeout:
            raise QueryFailed(
                NoSignalReason.TIMEOUT, f"no answer within {timeout:.3g}s from {self.display_url}"
            ) from None
        except requests.ConnectionError as exc:
            raise _Retryable(f"cannot reach {self.display_url}: {type(exc).__name__}") from None
        except requests.RequestException as exc:
            msg = f"malformed response from {self.display_url}: {type(exc).__name__}"
            raise QueryFailed(NoSignalReason.QUERY_ERROR, msg) from None
        if response.status_code != 200:
            status = response.status_code
            text = f"HTTP Status Code {status} ({body!r})"
            error = _ERROR_RE.search(text)
            shown = f"HTTP {status}: {error.group(1)}" if error else text
            detail = f"{self.display_url} answered {shown[:_MAX_DETAIL]}"
            if status >= 500:
                raise _Retryable(detail)
            raise QueryFailed(NoSignalReason.QUERY_ERROR, detail)
        return body

    def _query_sync(self, promql: str, at: float, timeout: float) -> list[Series]:
        """One attempt, decoded into series (runs in a worker thread)."""
        return decode_series(self._get(promql, at, timeout), self.display_url)

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
        return await self._attempts(promql, deadline, lambda t: self._query_sync(promql, at, t))

    async def query_keyed(
        self,
        promql: str,
        at: float,
        deadline: float | None,
        keys: Sequence[str],
        consume: Callable[[Iterable[KeyedRow]], T],
    ) -> T:
        """Run an instant query and reduce its series in the worker thread, as they are read.

        For large batched answers: no per-series object outlives the call; ``consume`` gets,
        per series, the values of the labels ``keys`` (None where absent) and the sample value,
        and returns the compact result (it may be called again from the start if the body needs
        the slower decoder; it must build its result from the rows alone).

        Raises:
            QueryFailed: as :meth:`query`.
        """

        def attempt(timeout: float) -> T:
            body = self._get(promql, at, timeout)
            return decode_keyed(body, self.display_url, keys, consume, strings=self._strings)

        return await self._attempts(promql, deadline, attempt)

    async def rule_groups(self, deadline: float | None = None) -> tuple[RuleGroup, ...]:
        """The recording rule groups Prometheus evaluates (``/api/v1/rules?type=record``).

        Raises:
            QueryFailed: as :meth:`query` (a server without the rules API answers 404:
                ``query_error``).
        """

        def attempt(timeout: float) -> tuple[RuleGroup, ...]:
            body = self._request("/api/v1/rules", {"type": "record"}, timeout)
            try:
                return parse_rule_groups(json.loads(body))
            except ValueError as exc:  # JSONDecodeError is a ValueError
                msg = f"malformed rules answer from {self.display_url}: {exc}"
                raise QueryFailed(NoSignalReason.QUERY_ERROR, msg[:_MAX_DETAIL]) from None

        return await self._attempts("rules", deadline, attempt)

    async def _attempts(
        self, promql: str, deadline: float | None, attempt: Callable[[float], T]
    ) -> T:
        """Run ``attempt(timeout)`` in a worker thread with the semaphore, timeouts, retries."""
        async with self._semaphore():
            tries = 0
            while True:
                remaining = self.timeout
                if deadline is not None:
                    remaining = min(remaining, deadline - time.monotonic())
                if remaining <= 0:
                    raise QueryFailed(NoSignalReason.TIMEOUT, "tick deadline passed before query")
                started = time.monotonic()
                try:
                    result = await asyncio.wait_for(
                        asyncio.to_thread(attempt, remaining), timeout=remaining + 1.0
                    )
                except TimeoutError:
                    raise QueryFailed(
                        NoSignalReason.TIMEOUT,
                        f"no answer within {remaining:.3g}s from {self.display_url}",
                    ) from None
                except _Retryable as exc:
                    delay = self.backoff * (3**tries)
                    out_of_time = deadline is not None and time.monotonic() + delay >= deadline
                    if tries >= self.max_retries or out_of_time:
                        raise QueryFailed(NoSignalReason.QUERY_ERROR, exc.detail) from None
                    tries += 1
                    log.debug("prometheus query retry", attempt=tries, detail=exc.detail)
                    await asyncio.sleep(delay)
                    continue
                log.debug(
                    "prometheus query",
                    query=promql[:200],
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
