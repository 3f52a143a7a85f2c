"""The pod cache: list + watch per namespace, queried by label selector with no I/O.

Implements :class:`autoscaler.controller.ports.PodSource` for Kubernetes. One reflector task per
watched namespace (or one for all namespaces when ``Settings.namespaces`` is empty) lists the
pods, then watches from the list's resourceVersion with ``allowWatchBookmarks=true``, as
client-go's reflector does: ADDED/MODIFIED/DELETED update the cache, BOOKMARK advances the
resourceVersion, a 410 Gone (HTTP status or ``ERROR`` event) re-lists, other errors back off
(capped exponential) and resume from the last resourceVersion, and a watch the server ends
normally (``timeoutSeconds``) is simply restarted. Only the fields :class:`PodInfo` needs (plus
labels) are kept per pod. Selectors are parsed and matched by :mod:`autoscaler.kube.selector`.
The control loop calls :meth:`PodCache.pods`; :mod:`autoscaler.kube.factory` starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from autoscaler.decision.types import PodInfo, PodPhase
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.kube.selector import parse_selector

log = structlog.get_logger(__name__)

ALL_NAMESPACES = ""
"""Scope key of a cluster-wide watch."""


@dataclass(frozen=True, slots=True)
class _Entry:
    labels: Mapping[str, str]
    info: PodInfo


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): re-list."""


def parse_time(value: object) -> float | None:
    """Seconds since the epoch from an RFC 3339 timestamp (None if absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):  # unreadable, or out of the platform's range
        return None


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (malformed input is not a crash)."""
    return value if isinstance(value, Mapping) else {}


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    """The fields of a pod object the decision core uses.

    Args:
        pod: a ``v1.Pod`` as JSON.
    """
    meta = _mapping(_mapping(pod).get("metadata"))
    status = _mapping(_mapping(pod).get("status"))
    raw_phase = status.get("phase", "Unknown")
    try:
        phase = PodPhase(raw_phase) if isinstance(raw_phase, str) else PodPhase.UNKNOWN
    except ValueError:
        phase = PodPhase.UNKNOWN
    ready = False
    ready_at: float | None = None
    scheduled_at: float | None = None
    unschedulable: str | None = None
    conditions = status.get("conditions")
    for cond in conditions if isinstance(conditions, list) else []:
        if not isinstance(cond, Mapping):
            continue
        kind = cond.get("type")
        if kind == "Ready":
            ready = cond.get("status") == "True"
            ready_at = parse_time(cond.get("lastTransitionTime"))
        elif kind == "PodScheduled":
            if cond.get("status") == "True":
                scheduled_at = parse_time(cond.get("lastTransitionTime"))
            elif cond.get("reason") == "Unschedulable":
                unschedulable = str(cond.get("message") or "Unschedulable")
    name = meta.get("name")
    return PodInfo(
        name=name if isinstance(name, str) else "",
        phase=phase,
        ready=ready,
        created_at=parse_time(meta.get("creationTimestamp")),
        ready_at=ready_at,
        scheduled_at=scheduled_at,
        deleting=meta.get("deletionTimestamp") is not None,
        unschedulable=unschedulable,
        deletion_cost=_deletion_cost(_mapping(meta.get("annotations")).get(DELETION_COST)),
        owner_kind=_owner_kind(meta.get("ownerReferences")),
        gpus=_gpus(_mapping(_mapping(pod).get("spec")).get("containers")),
    )


DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
"""The annotation the ReplicaSet controller reads to choose which pods to remove first."""


def _deletion_cost(value: object) -> int | None:
    """The annotation's value as the ReplicaSet reads it (an int32), None if absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        cost = int(value.strip())
    except ValueError:
        return None
    return cost if -(2**31) <= cost < 2**31 else None


def _owner_kind(value: object) -> str | None:
    """Kind of the controlling owner reference (``controller: true``), if any."""
    for ref in value if isinstance(value, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            kind = ref.get("kind")
            return kind if isinstance(kind, str) else None
    return None


def _gpus(containers: object) -> int | None:
    """``nvidia.com/gpu`` limits (or requests) summed over the containers; None if none."""
    total = 0
    found = False
    for container in containers if isinstance(containers, list) else []:
        resources = _mapping(_mapping(container).get("resources"))
        value = _mapping(resources.get("limits")).get(GPU_RESOURCE)
        if value is None:
            value = _mapping(resources.get("requests")).get(GPU_RESOURCE)
        try:
            count = int(str(value)) if value is not None else 0
        except ValueError:
            continue
        if count > 0:
            total += count
            found = True
    return total if found else None


GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource name of NVIDIA GPUs (device plugin)."""


class PodCache:
    """:class:`~autoscaler.controller.ports.PodSource` fed by list + watch.

    Args:
        api: the API client.
        namespaces: namespaces to watch; empty: all namespaces (one cluster-wide watch).
        watch_timeout: ``timeoutSeconds`` asked of the server per watch; the stream then ends
            normally and is restarted from the last resourceVersion.
        backoff_base: first delay after an error, seconds (doubles per consecutive error).
        backoff_cap: largest delay after errors, seconds.
        page_size: ``limit`` of list requests (pages follow ``continue``).
        sleep: how to wait between retries (injectable for tests).
    """

    def __init__(
        self,
        api: KubeApi,
        namespaces: Sequence[str] = (),
        *,
        watch_timeout: int = 300,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        page_size: int = 500,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._scopes: tuple[str, ...] = tuple(dict.fromkeys(namespaces)) or (ALL_NAMESPACES,)
        self._watch_timeout = watch_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._page_size = page_size
        self._sleep = sleep
        self._store: dict[str, dict[str, dict[str, _Entry]]] = {s: {} for s in self._scopes}
        """Scope -> namespace -> pod name -> entry (indexed by namespace: lookups stay cheap
        with a cluster-wide watch of many pods)."""
        self._synced: set[str] = set()
        self._lookups: dict[str, dict[str, tuple[PodInfo, ...]]] = {}
        """Namespace -> selector -> the answer of :meth:`pods`; dropped on any change there."""
        self._unwatched_warned: set[str] = set()
        self._rv: dict[str, str | None] = dict.fromkeys(self._scopes)
        """Last resourceVersion seen per scope (None: must list)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._synced_event = asyncio.Event()
        self.lists = 0
        """Number of completed (re-)lists, for observability and tests."""
        self.watches = 0
        """Number of watch requests started."""

    # -- PodSource ------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str) -> tuple[PodInfo, ...]:
        """Cached pods in ``namespace`` whose labels match ``selector``, sorted by name.

        Raises:
            SelectorError: ``selector`` cannot be parsed.
        """
        memo = self._lookups.get(namespace)
        if memo is not None:
            # Memoised until a pod of the namespace changes (every policy asks every tick; the
            # watch changes little): a lookup is then one dict access, not a sorted scan.
            found = memo.get(selector)
            if found is not None:
                return found
        parsed = parse_selector(selector)
        scope = ALL_NAMESPACES if ALL_NAMESPACES in self._store else namespace
        entries = self._store.get(scope)
        if entries is None:
            if namespace not in self._unwatched_warned:
                self._unwatched_warned.add(namespace)
                log.warning("pods_namespace_not_watched", namespace=namespace, watched=self._scopes)
            return ()
        in_namespace = entries.get(namespace)
        if not in_namespace:
            return ()
        found = tuple(
            entry.info for _, entry in sorted(in_namespace.items()) if parsed.matches(entry.labels)
        )
        self._lookups.setdefault(namespace, {})[selector] = found
        return found

    def synced(self) -> bool:
        """True once every watched scope has completed its initial list."""
        return len(self._synced) == len(self._scopes)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start one reflector task per scope (idempotent)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._reflect(scope), name=f"pod-reflector:{scope or '*'}")
            for scope in self._scopes
        ]

    async def wait_synced(self, within: float) -> bool:
        """Wait until :meth:`synced` (True) or ``within`` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._synced_event.wait(), within)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Cancel the reflector tasks and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- reflector ------------------------------------------------------------------------

    def _path(self, scope: str) -> str:
        return f"/api/v1/namespaces/{scope}/pods" if scope else "/api/v1/pods"

    async def _reflect(self, scope: str) -> None:
        """List, then watch forever; re-list on 410; back off on errors."""
        failures = 0
        where = scope or "*"
        while True:
            try:
                resource_version = self._rv[scope]
                if resource_version is None:
                    resource_version = await self._list(scope)
                    self._rv[scope] = resource_version
                started = time.monotonic()
                events = await self._watch(scope, resource_version)
                failures = 0
                if events == 0 and time.monotonic() - started < 1.0:
                    # An immediately empty, ended watch: do not spin against the server.
                    await self._sleep(self._backoff_base)
            except _Expired:
                log.info("pod_watch_expired_relist", namespace=where)
                self._rv[scope] = None
            except KubeApiError as exc:
                if exc.status == 410:
                    log.info("pod_watch_expired_relist", namespace=where)
                    self._rv[scope] = None
                    continue
                delay = min(self._backoff_cap, self._backoff_base * 2**failures)
                failures += 1
                log.warning(
                    "pod_watch_error",
                    namespace=where,
                    status=exc.status,
                    reason=exc.reason,
                    error=exc.message,
                    retry_in=delay,
                    relist=self._rv[scope] is None,
                )
                await self._sleep(delay)
            except Exception:  # an eternal task: log (with traceback), back off, re-list
                delay = min(self._backoff_cap, self._backoff_base * 2**failures)
                failures += 1
                log.exception("pod_reflector_failed", namespace=where, retry_in=delay)
                self._rv[scope] = None
                await self._sleep(delay)

    async def _list(self, scope: str) -> str:
        items: dict[str, dict[str, _Entry]] = {}
        token = ""
        while True:
            query: dict[str, str | int | bool] = {"limit": self._page_size}
            if token:
                query["continue"] = token

            def add(pod: JsonObject) -> None:
                (namespace, name), entry = _entry(pod)
                items.setdefault(namespace, {})[name] = entry

            # Pods are decoded one at a time and only their entries kept (a page of full pod
            # objects decoded at once costs many times the cache itself).
            listing = await self._api.request_list(
                self._path(scope), add, query=query, request_timeout=60.0
            )
            meta = _mapping(listing.get("metadata"))
            token = str(meta.get("continue") or "")
            if not token:
                break
        self._store[scope] = items
        self._lookups.clear()
        self.lists += 1
        if scope not in self._synced:
            self._synced.add(scope)
            if self.synced():
                self._synced_event.set()
        resource_version = str(meta.get("resourceVersion") or "")
        count = sum(len(pods) for pods in items.values())
        log.info("pods_listed", namespace=scope or "*", pods=count, rv=resource_version)
        return resource_version

    async def _watch(self, scope: str, resource_version: str) -> int:
        """Watch from ``resource_version`` until the stream ends; returns the events seen.

        Every event's resourceVersion is remembered at once, so a watch cut mid-stream resumes
        from the last event applied.
        """
        self.watches += 1
        query: dict[str, str | int | bool] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self._watch_timeout,
        }
        if resource_version:
            query["resourceVersion"] = resource_version
        store = self._store[scope]
        events = 0
        async for event in self._api.stream(
            self._path(scope), query=query, stream_timeout=self._watch_timeout + 30.0
        ):
            events += 1
            kind = event.get("type")
            obj: JsonObject = dict(_mapping(event.get("object")))
            if kind == "ERROR":
                code = int(obj.get("code") or 0)
                if code == 410:
                    raise _Expired
                raise KubeApiError(
                    code, str(obj.get("reason", "")), str(obj.get("message", "")), "WATCH"
                )
            rv = _mapping(obj.get("metadata")).get("resourceVersion")
            if kind in {"ADDED", "MODIFIED"}:
                (namespace, name), entry = _entry(obj)
                store.setdefault(namespace, {})[name] = entry
                self._lookups.pop(namespace, None)
            elif kind == "DELETED":
                (namespace, name), _ = _entry(obj)
                self._lookups.pop(namespace, None)
                in_namespace = store.get(namespace)
                if in_namespace is not None:
                    in_namespace.pop(name, None)
                    if not in_namespace:
                        del store[namespace]
            elif kind != "BOOKMARK":
                log.warning("pod_watch_unknown_event", type=kind)
                continue
            if rv:
                self._rv[scope] = str(rv)
        return events


def _entry(pod: object) -> tuple[tuple[str, str], _Entry]:
    meta = _mapping(_mapping(pod).get("metadata"))
    labels = {str(k): str(v) for k, v in _mapping(meta.get("labels")).items()}
    key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
    return key, _Entry(labels, pod_info(_mapping(pod)))
