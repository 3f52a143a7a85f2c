"""A list + watch reflector for one collection, keeping one small decoded value per object.

As client-go's reflector: list (paged), then watch from the list's resourceVersion with
``allowWatchBookmarks=true``; ADDED/MODIFIED/DELETED update the store, BOOKMARK advances the
resourceVersion, a 410 Gone (HTTP status or ``ERROR`` event) re-lists, other errors back off
(capped exponential) and resume from the last resourceVersion, and a watch the server ends
normally (``timeoutSeconds``) is restarted. A re-list replaces the store in one step (the
readers never see half a list).

:attr:`Reflector.synced` is True after a list and while the watch is healthy; it turns False
on a watch error and True again with the next event of a resumed watch or the next list, so a
reader can fall back to direct reads while the store may be behind.

An owner shapes it without copying the loop: ``new_store`` builds the mapping the objects are kept
in (an index of its own, e.g. by namespace), ``on_listed`` sees each new store after a list,
``on_change`` each object a watch event adds, changes or deletes, and ``on_list_error`` may
treat a list the API refuses (a CRD not installed, RBAC) as an empty collection to retry later.
Its log lines carry the owner's fields and event names (``log_context``, ``event_prefix``).
:class:`ScopedReflectors` runs one reflector per watched namespace (or one cluster-wide) and
tells when all have had their first list.
Used by :mod:`autoscaler.kube.targets`, :mod:`autoscaler.kube.pods` and
:mod:`autoscaler.kube.policies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Generic, TypeVar

import structlog

from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError

log = structlog.get_logger(__name__)

ALL_NAMESPACES = ""
"""Scope of a cluster-wide list/watch."""

V = TypeVar("V")

Key = tuple[str, str]
"""(namespace, name) of an object."""


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): re-list."""


def object_key(obj: Mapping[str, Any]) -> Key | None:
    """(namespace, name) of an object (None without metadata)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class Reflector(Generic[V]):
    """Keeps ``store`` current for the collection at ``path``.

    Args:
        api: the API client.
        path: the collection's path (namespaced or cluster-wide).
        decode: the value kept per object (called for each listed or changed object).
        name: for logs.
        watch_timeout: ``timeoutSeconds`` asked of the server per watch.
        backoff_base: first delay after an error, seconds (doubles per consecutive error).
        backoff_cap: largest delay after errors, seconds.
        page_size: ``limit`` of list requests.
        sleep: how to wait between retries (injectable for tests).
        new_store: builds an empty store (a fresh one per list, filled before it replaces the
            old one); a plain dict by default.
        on_listed: called after every (re-)list with the new store and its resourceVersion;
            when given it replaces the ``listed`` log line.
        on_change: called after a watch event is applied, with the key, the value before and
            the value after (None for an object not held before, or deleted).
        on_list_error: asked when a list fails with an API error other than 410; a number of
            seconds means: hold an empty store and list again after that long (without the
            back-off and its log line); None: back off as for any other error.
        log_context: fields of every log line (default: ``watch=<name>``).
        event_prefix: put before the names of the log events (``watch_error`` ...).
    """

    def __init__(
        self,
        api: KubeApi,
        path: str,
        decode: Callable[[JsonObject], V],
        *,
        name: str,
        watch_timeout: int = 300,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        page_size: int = 500,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        new_store: Callable[[], MutableMapping[Key, V]] = dict,
        on_listed: Callable[[MutableMapping[Key, V], str], None] | None = None,
        on_change: Callable[[Key, V | None, V | None], None] | None = None,
        on_list_error: Callable[[KubeApiError], float | None] | None = None,
        log_context: Mapping[str, object] | None = None,
        event_prefix: str = "",
    ) -> None:
        self._api = api
        self._path = path
        self._decode = decode
        self.name = name
        self._watch_timeout = watch_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._page_size = page_size
        self._sleep = sleep
        self._new_store = new_store
        self._on_listed = on_listed
        self._on_change = on_change
        self._on_list_error = on_list_error
        self._context: dict[str, object] = dict(
            log_context if log_context is not None else {"watch": name}
        )
        self._events = {
            event: f"{event_prefix}{event}"
            for event in (
                "watch_expired_relist",
                "watch_error",
                "reflector_failed",
                "watch_unknown_event",
            )
        }
        """Log event names (the owner's, with its prefix)."""
        self.store: MutableMapping[Key, V] = new_store()
        self.synced = False
        self._rv: str | None = None
        self.lists = 0
        """Completed (re-)lists."""
        self.watches = 0
        """Watch requests started."""

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion a resumed watch starts from (None: the next step is a list)."""
        return self._rv

    async def run(self) -> None:
        """List, then watch forever; re-list on 410; back off on errors."""
        failures = 0
        while True:
            try:
                if self._rv is None:
                    self._rv = await self._list()
                started = time.monotonic()
                events = await self._watch(self._rv)
                failures = 0
                if events == 0 and time.monotonic() - started < 1.0:
                    await self._sleep(self._backoff_base)  # do not spin on empty, ended watches
            except _Expired:
                log.info(self._events["watch_expired_relist"], **self._context)
                self._rv = None
            except KubeApiError as exc:
                if exc.status == 410:
                    log.info(self._events["watch_expired_relist"], **self._context)
                    self._rv = None
                    continue
                if self._rv is None and self._on_list_error is not None:
                    retry_in = self._on_list_error(exc)
                    if retry_in is not None:
                        self.store = self._new_store()
                        await self._sleep(retry_in)
                        continue
                self.synced = False
                delay = min(self._backoff_cap, self._backoff_base * 2**failures)
                failures += 1
                log.warning(
                    self._events["watch_error"],
                    **self._context,
                    status=exc.status,
                    reason=exc.reason,
                    error=exc.message,
                    retry_in=delay,
                    relist=self._rv is None,
                )
                await self._sleep(delay)
            except Exception:  # an eternal task: log (with traceback), back off, re-list
                self.synced = False
                delay = min(self._backoff_cap, self._backoff_base * 2**failures)
                failures += 1
                log.exception(self._events["reflector_failed"], **self._context, retry_in=delay)
                self._rv = None
                await self._sleep(delay)

    async def _list(self) -> str:
        items = self._new_store()
        token = ""

        # Objects are decoded one at a time and only their values kept (a page of full objects
        # decoded at once can cost many times the store itself).
        def add(obj: JsonObject) -> None:
            key = object_key(obj)
            if key is not None:
                items[key] = self._decode(obj)

        while True:
            query: dict[str, str | int | bool] = {"limit": self._page_size}
            if token:
                query["continue"] = token
            listing = await self._api.request_list(
                self._path, add, query=query, request_timeout=60.0
            )
            meta = listing.get("metadata")
            meta = meta if isinstance(meta, Mapping) else {}
            token = str(meta.get("continue") or "")
            if not token:
                break
        self.store = items
        self.synced = True
        self.lists += 1
        resource_version = str(meta.get("resourceVersion") or "")
        if self._on_listed is not None:
            self._on_listed(items, resource_version)
        else:
            log.info("listed", **self._context, objects=len(items), rv=resource_version)
        return resource_version

    async def _watch(self, resource_version: str) -> int:
        """Watch from ``resource_version`` until the stream ends; returns the events seen."""
        self.watches += 1
        query: dict[str, str | int | bool] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self._watch_timeout,
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        events = 0
        async for event in self._api.stream(
            self._path, query=query, stream_timeout=self._watch_timeout + 30.0
        ):
            events += 1
            kind = event.get("type")
            raw = event.get("object")
            obj: JsonObject = dict(raw) if isinstance(raw, Mapping) else {}
            if kind == "ERROR":
                code = int(obj.get("code") or 0)
                if code == 410:
                    raise _Expired
                raise KubeApiError(
                    code, str(obj.get("reason", "")), str(obj.get("message", "")), "WATCH"
                )
            key = object_key(obj)
            if kind in {"ADDED", "MODIFIED"} and key is not None:
                self._apply(key, self._decode(obj))
            elif kind == "DELETED" and key is not None:
                self._apply(key, None)
            elif kind != "BOOKMARK":
                log.warning(self._events["watch_unknown_event"], **self._context, type=kind)
                continue
            self.synced = True
            meta = obj.get("metadata")
            rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
            if rv:
                self._rv = str(rv)
        return events

    def _apply(self, key: Key, value: V | None) -> None:
        """Put (or, with None, delete) one object, telling ``on_change``."""
        old = self.store.get(key) if self._on_change is not None else None
        if value is None:
            self.store.pop(key, None)
        else:
            self.store[key] = value
        if self._on_change is not None:
            self._on_change(key, old, value)


class ScopedReflectors(Generic[V]):
    """The reflectors of one collection, one per scope (a namespace, or all), run together.

    Synced once every scope has listed at least once, or was marked synced by its owner (a
    collection that cannot be listed and counts as empty); it stays synced after that (a
    reader of a scope's store sees its last list and the events since).

    Args:
        namespaces: the scopes; empty: one cluster-wide scope (:data:`ALL_NAMESPACES`).
        build: the reflector of a scope.
        task_name: prefix of the tasks' names (``<task_name>:<scope or *>``).
    """

    def __init__(
        self,
        namespaces: Sequence[str],
        build: Callable[[str], Reflector[V]],
        *,
        task_name: str,
    ) -> None:
        self.scopes: tuple[str, ...] = tuple(dict.fromkeys(namespaces)) or (ALL_NAMESPACES,)
        self._task_name = task_name
        self._synced: set[str] = set()
        self._synced_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.by_scope: dict[str, Reflector[V]] = {scope: build(scope) for scope in self.scopes}

    @property
    def lists(self) -> int:
        """Completed (re-)lists over all scopes."""
        return sum(r.lists for r in self.by_scope.values())

    @property
    def watches(self) -> int:
        """Watch requests started over all scopes."""
        return sum(r.watches for r in self.by_scope.values())

    def mark_synced(self, scope: str) -> None:
        """The scope has its first answer (a list, or a collection counted as empty)."""
        if scope not in self._synced:
            self._synced.add(scope)
            if self.synced():
                self._synced_event.set()

    def is_synced(self, scope: str) -> bool:
        """True once ``scope`` has had its first answer."""
        return scope in self._synced

    def synced(self) -> bool:
        """True once every scope has had its first answer."""
        return len(self._synced) == len(self.scopes)

    async def wait_synced(self, within: float) -> bool:
        """Wait until :meth:`synced` (True) or ``within`` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._synced_event.wait(), within)
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        """Start one task per scope (idempotent)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(reflector.run(), name=f"{self._task_name}:{scope or '*'}")
            for scope, reflector in self.by_scope.items()
        ]

    async def stop(self) -> None:
        """Cancel the tasks and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
