"""Durable decision history in a ConfigMap, so a restart or failover changes no decision.

Implements :class:`autoscaler.controller.ports.HistoryStore` for Kubernetes. Layout: **one
ConfigMap per controller namespace** (default ``nim-autoscaler-history`` in the leader-election
namespace), one data key per policy, ``<namespace>.<name>`` (both DNS names, so the key is a
valid ConfigMap key and unique), whose value is the compact JSON of ``History.to_json()``.

- ``load`` reads the ConfigMap (a read serves further loads for ``max_age`` seconds, so many
  policies restored at start cost one request, and a later ``load`` -- e.g. on becoming leader --
  sees what another instance saved); a missing ConfigMap or key is "no history"; unreadable
  JSON for one policy is logged and that policy starts fresh.
- ``save`` writes only when the policy's JSON changed, with resourceVersion optimistic
  concurrency: a replace (PUT) with the version last read; on 409 it re-reads, puts its key
  into the fresh data and retries (bounded). The first save creates the ConfigMap.
- The object must stay under the API server's 1 MiB limit: a save that would pass ``max_bytes``
  is refused with a clear error log naming the policy and the sizes.

Failures are logged, never raised: the decision core keeps its in-memory history and the next
save tries again. Neighbours: the control loop calls it; :mod:`autoscaler.kube.factory` builds it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

import structlog

from autoscaler.decision.types import History
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.policy.models import ScalingPolicy

log = structlog.get_logger(__name__)

DEFAULT_NAME = "nim-autoscaler-history"
"""Name of the history ConfigMap."""

MAX_BYTES = 900_000
"""Largest total size of the ConfigMap's data, bytes (the API server refuses objects > 1 MiB)."""


def history_key(policy: ScalingPolicy) -> str:
    """The ConfigMap data key of a policy: ``<namespace>.<name>``."""
    return f"{policy.metadata.namespace}.{policy.metadata.name}"


class KubeHistoryStore:
    """:class:`~autoscaler.controller.ports.HistoryStore` on one ConfigMap.

    Args:
        api: the API client.
        namespace: the controller's namespace (where the ConfigMap lives).
        name: the ConfigMap's name.
        max_bytes: size limit of all data (keys + values), bytes.
        conflict_retries: re-read-and-retry rounds after 409 conflicts.
        max_age: seconds a read of the ConfigMap serves ``load`` calls before it is read again
            (so a ``load`` on becoming leader sees what the previous leader saved).
        monotonic: time source for ``max_age`` (injectable for tests).
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        *,
        name: str = DEFAULT_NAME,
        max_bytes: int = MAX_BYTES,
        conflict_retries: int = 5,
        max_age: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self._max_bytes = max_bytes
        self._retries = conflict_retries
        self._data: dict[str, str] = {}
        self._rv: str | None = None
        self._exists = False
        self._loaded = False
        self._max_age = max_age
        self._monotonic = monotonic
        self._fetched_at = -math.inf
        self._pending: dict[str, tuple[str, str]] = {}
        """Key -> (serialised history, policy key) waiting for :meth:`flush`."""
        self._lock = asyncio.Lock()

    @property
    def path(self) -> str:
        """API path of the ConfigMap."""
        return f"/api/v1/namespaces/{self._namespace}/configmaps/{self._name}"

    async def load(self, policy: ScalingPolicy) -> History | None:
        """The saved history of ``policy``, or None (none saved, unreadable, or API failure)."""
        key = history_key(policy)
        if not self._loaded or self._monotonic() - self._fetched_at > self._max_age:
            try:
                await self._fetch()
            except KubeApiError as exc:
                log.warning(
                    "history_load_failed", policy=policy.key, status=exc.status, error=str(exc)
                )
                return None
        text = self._data.get(key)
        if text is None:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                msg = f"expected a JSON object, got {type(data).__name__}"
                raise ValueError(msg)
            history = History.from_json(data)
        except ValueError as exc:
            log.error(
                "history_unreadable_starting_fresh",
                policy=policy.key,
                configmap=f"{self._namespace}/{self._name}",
                key=key,
                error=str(exc),
            )
            return None
        log.info(
            "history_restored", policy=policy.key, recommendations=len(history.recommendations)
        )
        return history

    async def save(self, policy: ScalingPolicy, history: History) -> None:
        """Queue ``history`` for ``policy``; it is written by the next :meth:`flush`.

        The control loop saves every policy and then flushes once per tick, so the whole tick
        costs one ConfigMap write (none when nothing changed) instead of one racing write per
        policy.
        """
        key = history_key(policy)
        text = json.dumps(history.to_json(), separators=(",", ":"), sort_keys=True)
        self._pending[key] = (text, policy.key)

    async def flush(self) -> None:
        """Write every queued history in one update of the ConfigMap (if anything changed).

        409 conflicts re-read the ConfigMap and merge again (other keys are kept). API errors are
        logged; the queued histories stay queued for the next flush.
        """
        async with self._lock:
            if not self._pending:
                return
            try:
                if not self._loaded:
                    await self._fetch()
                for attempt in range(self._retries + 1):
                    changed = {
                        key: text
                        for key, (text, _) in self._pending.items()
                        if self._data.get(key) != text
                    }
                    if not changed:
                        self._pending.clear()
                        return
                    data = {**self._data, **changed}
                    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
                    if size > self._max_bytes:
                        log.error(
                            "history_too_large",
                            configmap=f"{self._namespace}/{self._name}",
                            bytes=size,
                            limit=self._max_bytes,
                            policies=sorted(policy for _, policy in self._pending.values()),
                            hint="too many policies or an unbounded history; not saved",
                        )
                        self._pending.clear()
                        return
                    try:
                        stored = await self._write(data)
                    except KubeApiError as exc:
                        if exc.status != 409:
                            raise
                        log.info("history_conflict_retry", attempt=attempt + 1)
                        await self._fetch()
                        continue
                    self._adopt(stored)
                    self._pending.clear()
                    return
                log.warning(
                    "history_save_conflicts",
                    policies=len(self._pending),
                    attempts=self._retries + 1,
                )
            except KubeApiError as exc:
                log.warning(
                    "history_save_failed",
                    policies=len(self._pending),
                    status=exc.status,
                    error=str(exc),
                )

    async def _fetch(self) -> None:
        try:
            obj = await self._api.request("GET", self.path)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            self._data, self._rv, self._exists = {}, None, False
        else:
            self._adopt(obj)
        self._loaded = True
        self._fetched_at = self._monotonic()

    def _adopt(self, obj: JsonObject) -> None:
        raw: Any = obj.get("data") or {}
        self._data = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        self._rv = (obj.get("metadata") or {}).get("resourceVersion")
        self._exists = True

    async def _write(self, data: dict[str, str]) -> JsonObject:
        body: JsonObject = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self._name,
                "namespace": self._namespace,
                "labels": {"app.kubernetes.io/name": "nim-autoscaler"},
            },
            "data": data,
        }
        if not self._exists:
            return await self._api.request(
                "POST", f"/api/v1/namespaces/{self._namespace}/configmaps", body=body
            )
        body["metadata"]["resourceVersion"] = self._rv
        return await self._api.request("PUT", self.path, body=body)
