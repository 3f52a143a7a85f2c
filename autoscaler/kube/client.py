"""Kubernetes client configuration and the typed HTTP wrapper every other ``kube`` module uses.

``kubernetes_asyncio`` is untyped and its generated API classes cover only built-in kinds, so the
rest of :mod:`autoscaler.kube` (:mod:`~autoscaler.kube.scale`, :mod:`~autoscaler.kube.pods`,
:mod:`~autoscaler.kube.recorder`, :mod:`~autoscaler.kube.history`,
:mod:`~autoscaler.kube.leader`) talks to the API server through :class:`KubeApi`: JSON in, JSON
out, through the generic ``ApiClient.call_api`` (so authentication, TLS and exec plug-ins are
the library's), with every failure turned into one typed :class:`KubeApiError`.
:func:`load_configuration` picks the cluster: explicit kubeconfig/context from
:class:`~autoscaler.settings.Settings`, else the in-cluster service account, else
``~/.kube/config``. :mod:`autoscaler.kube.factory` builds one :class:`KubeApi` per process.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from autoscaler.errors import AutoscalerError
from autoscaler.settings import Settings

log = structlog.get_logger(__name__)

JsonObject = dict[str, Any]
"""A decoded JSON object as the API server sends it."""

DEFAULT_TIMEOUT = 10.0
"""Total timeout of one ordinary API request, seconds."""

MERGE_PATCH = "application/merge-patch+json"
"""Content type of a JSON merge patch (RFC 7386)."""
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
"""Content type of a strategic merge patch (built-in kinds only)."""


class KubeConfigError(AutoscalerError):
    """No usable cluster configuration was found."""


@dataclass(frozen=True)
class KubeApiError(Exception):
    """A failed API request: an HTTP error status with its ``Status`` body, or a transport fault.

    ``status`` is 0 for transport failures and timeouts (no HTTP answer).
    """

    status: int
    reason: str
    """``Status.reason`` (``Conflict``, ``NotFound``, ``Forbidden``...) or the transport fault."""
    message: str
    method: str = ""
    path: str = ""

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.status} {self.reason}: {self.message}"

    @property
    def retryable(self) -> bool:
        """True for faults worth retrying: transport errors, timeouts, 429 and 5xx."""
        return self.status in {0, 429} or self.status >= 500


async def load_configuration(settings: Settings) -> Any:
    """Build a ``kubernetes_asyncio`` ``Configuration`` from the settings.

    Order: ``settings.kubeconfig`` (with ``settings.kube_context``), else the in-cluster service
    account, else ``~/.kube/config``.

    Raises:
        KubeConfigError: when none of them works.
    """
    configuration = k8s_client.Configuration()
    if settings.kubeconfig is not None:
        try:
            await k8s_config.load_kube_config(
                config_file=str(settings.kubeconfig),
                context=settings.kube_context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError) as exc:
            msg = f"cannot load kubeconfig {settings.kubeconfig}: {exc}"
            raise KubeConfigError(msg) from exc
        log.info("kube_config_loaded", source="kubeconfig", path=str(settings.kubeconfig))
        return configuration
    try:
        _load_incluster(configuration)
    except ConfigException as in_cluster_exc:
        default = Path.home() / ".kube" / "config"
        try:
            await k8s_config.load_kube_config(
                config_file=str(default),
                context=settings.kube_context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError) as exc:
            msg = (
                f"no cluster configuration: not in a cluster ({in_cluster_exc}) and "
                f"cannot load {default} ({exc}); set KUBECONFIG"
            )
            raise KubeConfigError(msg) from exc
        log.info("kube_config_loaded", source="kubeconfig", path=str(default))
        return configuration
    log.info("kube_config_loaded", source="in-cluster")
    return configuration


def _load_incluster(configuration: Any) -> None:
    """The in-cluster service account configuration (raises ``ConfigException`` outside)."""
    k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]


def _status_from_body(body: object) -> tuple[str, str]:
    """``(reason, message)`` of a ``Status`` body, if the body is one."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        data = json.loads(text)
    except ValueError:
        return "", text[:300]
    if isinstance(data, dict):
        return str(data.get("reason", "")), str(data.get("message", ""))
    return "", text[:300]


class KubeApi:
    """JSON requests against the API server through ``kubernetes_asyncio``'s ``ApiClient``.

    Args:
        api_client: a ``kubernetes_asyncio.client.ApiClient`` (owned by the caller).
        timeout: default total timeout of one request, seconds.
    """

    def __init__(self, api_client: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._api = api_client
        self._timeout = timeout

    @classmethod
    async def from_settings(
        cls, settings: Settings, *, request_timeout: float = DEFAULT_TIMEOUT
    ) -> KubeApi:
        """A client for the cluster the settings select (see :func:`load_configuration`)."""
        configuration = await load_configuration(settings)
        # One connection per open watch (one per watched namespace) plus ordinary requests.
        configuration.connection_pool_maxsize = max(100, len(settings.namespaces) + 50)
        return cls(k8s_client.ApiClient(configuration), timeout=request_timeout)

    async def close(self) -> None:
        """Close the underlying HTTP session."""
        await self._api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: object = None,
        content_type: str = "application/json",
        request_timeout: float | None = None,
    ) -> JsonObject:
        """Send one request and return the decoded JSON object.

        Args:
            method: HTTP method.
            path: API path, e.g. ``/apis/apps/v1/namespaces/ns/deployments/x/scale``.
            query: query parameters.
            body: JSON-serialisable body.
            content_type: the body's content type (merge patch for ``PATCH``).
            request_timeout: total timeout, seconds (default: the client's).

        Raises:
            KubeApiError: on an error status, a timeout or a transport fault.
        """
        try:
            result = await self._api.call_api(
                path,
                method,
                query_params=_query(query),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
                _request_timeout=request_timeout if request_timeout is not None else self._timeout,
            )
        except ApiException as exc:
            reason, message = _status_from_body(exc.body)
            raise KubeApiError(
                int(exc.status or 0), reason or str(exc.reason or ""), message, method, path
            ) from exc
        except TimeoutError as exc:
            raise KubeApiError(0, "Timeout", "request timed out", method, path) from exc
        except aiohttp.ClientError as exc:
            raise KubeApiError(0, type(exc).__name__, str(exc), method, path) from exc
        if not isinstance(result, dict):
            raise KubeApiError(0, "BadResponse", f"expected a JSON object, got {result!r:.100}")
        return result

    async def request_list(
        self,
        path: str,
        on_item: Callable[[JsonObject], None],
        *,
        query: Mapping[str, str | int | bool] | None = None,
        request_timeout: float | None = None,
    ) -> JsonObject:
        """GET a list, decoding its ``items`` one at a time; returns the other fields.

        A list of 10,000 pods is ~5 MB of JSON; decoded at once it is ~35 MB of objects, alive
        together with whatever the caller keeps. Here each item is decoded, handed to
        ``on_item`` and dropped before the next (the library's own decoding would build the
        whole tree, and keep the raw body as ``last_response``).

        Raises:
            KubeApiError: on an error status, a timeout, a transport fault or a body that is
                not a JSON object with an ``items`` array.
        """
        timeout = request_timeout if request_timeout is not None else self._timeout
        try:
            response = await self._get_raw(path, query, timeout)
            try:
                body = await response.read()
                status = response.status
            finally:
                response.release()
        except ApiException as exc:
            reason, message = _status_from_body(exc.body)
            raise KubeApiError(
                int(exc.status or 0), reason or str(exc.reason or ""), message, "GET", path
            ) from exc
        except TimeoutError as exc:
            raise KubeApiError(0, "Timeout", "request timed out", "GET", path) from exc
        except aiohttp.ClientError as exc:
            raise KubeApiError(0, type(exc).__name__, str(exc), "GET", path) from exc
        if not 200 <= status < 300:
            reason, message = _status_from_body(body)
            raise KubeApiError(status, reason, message, "GET", path)
        try:
            return decode_list(body.decode("utf-8"), on_item)
        except ValueError as exc:
            msg = f"undecodable list body: {exc}"
            raise KubeApiError(0, "BadResponse", msg[:300], "GET", path) from exc

    async def _get_raw(
        self,
        path: str,
        query: Mapping[str, str | int | bool] | None,
        request_timeout: float | aiohttp.ClientTimeout,
    ) -> Any:
        """GET ``path`` as JSON, the body not read (the caller reads and releases it)."""
        return await self._api.call_api(
            path,
            "GET",
            query_params=_query(query),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=request_timeout,
        )

    async def stream(
        self,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        stream_timeout: float | None = None,
    ) -> AsyncIterator[JsonObject]:
        """Stream a watch: yield one decoded JSON object per line until the server ends it.

        Args:
            path: the list path (``watch=true`` is added by the caller in ``query``).
            query: query parameters.
            stream_timeout: total time allowed for the whole stream, seconds (None: no limit
                beyond the server's ``timeoutSeconds``).

        Raises:
            KubeApiError: on an error status or a transport fault (also mid-stream).
        """
        try:
            response = await self._get_raw(
                path, query, aiohttp.ClientTimeout(total=stream_timeout, sock_connect=10.0)
            )
        except TimeoutError as exc:
            raise KubeApiError(0, "Timeout", "watch timed out", "GET", path) from exc
        except aiohttp.ClientError as exc:
            raise KubeApiError(0, type(exc).__name__, str(exc), "GET", path) from exc
        try:
            if response.status != 200:
                body = await response.read()
                reason, message = _status_from_body(body)
                raise KubeApiError(response.status, reason, message, "GET", path)
            while True:
                try:
                    line = await response.content.readline()
                except TimeoutError as exc:
                    raise KubeApiError(0, "Timeout", "watch timed out", "GET", path) from exc
                except aiohttp.ClientError as exc:
                    raise KubeApiError(0, type(exc).__name__, str(exc), "GET", path) from exc
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    msg = f"undecodable watch line {line[:100]!r}"
                    raise KubeApiError(0, "BadResponse", msg, "GET", path) from exc
                if isinstance(event, dict):
                    yield event
        finally:
            response.close()


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def decode_list(text: str, on_item: Callable[[JsonObject], None]) -> JsonObject:
    """Decode a JSON object, giving each element of its ``items`` array to ``on_item``.

    Returns the object without ``items``. Items that are not JSON objects are skipped; a
    missing or non-array ``items`` is an empty list.

    Raises:
        ValueError: not a JSON object, or malformed JSON.
    """
    decode = _DECODER.raw_decode
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        raise ValueError("expected a JSON object")
    pos = _skip(text, pos + 1)
    fields: JsonObject = {}
    if text[pos : pos + 1] == "}":
        pos = _skip(text, pos + 1)
        if text[pos:]:
            raise ValueError("extra data after the object")
        return fields
    while True:
        key, pos = decode(text, pos)
        if not isinstance(key, str):
            raise ValueError("expected a string key")
        pos = _skip(text, pos)
        if text[pos : pos + 1] != ":":
            raise ValueError(f"expected ':' at {pos}")
        pos = _skip(text, pos + 1)
        if key == "items" and text[pos : pos + 1] == "[":
            pos = _skip(text, pos + 1)
            if text[pos : pos + 1] == "]":
                pos += 1
            else:
                while True:
                    item, pos = decode(text, pos)
                    if isinstance(item, dict):
                        on_item(item)
                    pos = _skip(text, pos)
                    separator = text[pos : pos + 1]
                    pos = _skip(text, pos + 1)
                    if separator == "]":
                        break
                    if separator != ",":
                        raise ValueError(f"expected ',' or ']' at {pos}")
        else:
            value, pos = decode(text, pos)
            if key != "items":
                fields[key] = value
        pos = _skip(text, pos)
        separator = text[pos : pos + 1]
        pos = _skip(text, pos + 1)
        if separator == "}":
            break
        if separator != ",":
            raise ValueError(f"expected ',' or '}}' at {pos}")
    if text[pos:]:
        raise ValueError("extra data after the object")
    return fields


def _skip(text: str, pos: int) -> int:
    """The position of the first non-whitespace character at or after ``pos``."""
    match = _WHITESPACE.match(text, pos)
    return match.end() if match is not None else pos


def _query(query: Mapping[str, str | int | bool] | None) -> Sequence[tuple[str, str]]:
    """Query parameters as the API server spells them (``true``/``false`` for booleans)."""
    if not query:
        return []
    return [
        (key, ("true" if value else "false") if isinstance(value, bool) else str(value))
        for key, value in query.items()
    ]


async def sleep_backoff(attempt: int, *, base: float, cap: float) -> None:
    """Sleep ``min(cap, base * 2**attempt)`` seconds (capped exponential back-off)."""
    await asyncio.sleep(min(cap, base * (2**attempt)))
