"""ScalingPolicy resources: a list+watch cache of the policies given as Kubernetes objects.

:class:`PolicyResources` keeps, per watched namespace (or cluster-wide), every
``scalingpolicies.autoscaling.nim-autoscaler.io`` object as a
:class:`~autoscaler.policy.sources.ResourcePolicy`: the policy validated by the controller's own
model (:func:`autoscaler.policy.loader.validate_document`), or the located reasons it is invalid.
It works as the pod cache (:mod:`autoscaler.kube.pods`): list (paged), then watch from the list's
resourceVersion with bookmarks, resume from the last event seen when a stream ends, re-list on
410 Expired, back off on errors. Only the validated policy and a few identifiers are kept per
object (never the raw JSON), so memory is bounded by the number of policies.

When the CRD is not installed (404) or RBAC denies the list (403), the cache says so once in the
log, counts as synced with no resources (files keep working), and tries again after
``missing_retry`` seconds.

Neighbours: the policy feed (:mod:`autoscaler.app`) merges these with the policy files
(:func:`autoscaler.policy.sources.merge_sources`); :mod:`autoscaler.kube.policy_status` writes
their ``/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.policy.crd import SCALING_POLICY
from autoscaler.policy.loader import validate_document
from autoscaler.policy.sources import ResourcePolicy

log = structlog.get_logger(__name__)

ALL_NAMESPACES = ""
"""The scope of a cluster-wide watch."""


class _Expired(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def resource_path(namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
    """API path of ScalingPolicy objects (all namespaces when ``namespace`` is empty)."""
    base = f"/apis/{SCALING_POLICY.group}/{SCALING_POLICY.version}"
    path = (
        f"{base}/namespaces/{namespace}/{SCALING_POLICY.plural}"
        if namespace
        else f"{base}/{SCALING_POLICY.plural}"
    )
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def to_resource_policy(obj: Mapping[str, Any]) -> ResourcePolicy:
    """Validate one ScalingPolicy object with the controller's model."""
    meta = _mapping(obj.get("metadata"))
    namespace = str(meta.get("namespace", ""))
    name = str(meta.get("name", ""))
    document = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(_mapping(meta.get("labels"))),
        },
        "spec": obj.get("spec"),
    }
    policy, errors = validate_document(document, f"ScalingPolicy {namespace}/{name}")
    return ResourcePolicy(
        namespace=namespace,
        name=name,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion", "")),
        policy=policy,
        errors=errors,
    )


class PolicyResources:
    """List+watch cache of ScalingPolicy resources in the watched namespaces.

    Args:
        api: the API client.
        namespaces: namespaces to watch (empty: all, with one cluster-wide watch).
        watch_timeout: server-side timeout of one watch request, seconds.
        backoff_base: first retry delay after an error, seconds (doubles up to ``backoff_cap``).
        backoff_cap: longest retry delay, seconds.
        missing_retry: seconds between attempts while the CRD is missing or access is denied.
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
        missing_retry: float = 60.0,
        page_size: int = 500,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._scopes: tuple[str, ...] = tuple(dict.fromkeys(namespaces)) or (ALL_NAMESPACES,)
        self._watch_timeout = watch_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._missing_retry = missing_retry
        self._page_size = page_size
        self._sleep = sleep
        self._store: dict[str, dict[tuple[str, str], ResourcePolicy]] = {
            scope: {} for scope in self._scopes
        }
        self._rv: dict[str, str | None] = dict.fromkeys(self._scopes)
        self._synced: set[str] = set()
        self._synced_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.available = True
        """False while the CRD is missing or the list is forbidden (then: no resources)."""
        self.lists = 0
        """Completed (re-)lists."""
        self.watches = 0
        """Watch requests started."""

    # -- reading --------------------------------------------------------------------------

    def resources(self) -> list[ResourcePolicy]:
        """Every resource seen (valid or not), sorted by ``namespace/name``."""
        found = [r for scope in self._store.values() for r in scope.values()]
        return sorted(found, key=lambda r: (r.namespace, r.name))

    def get(self, namespace: str, name: str) -> ResourcePolicy | None:
        """The resource ``namespace/name``, if seen."""
        for scope in self._store.values():
            found = scope.get((namespace, name))
            if found is not None:
                return found
        return None

    def synced(self) -> bool:
        """True once every scope has listed (or found the CRD missing)."""
        return len(self._synced) == len(self._scopes)

    async def wait_synced(self, within: float) -> bool:
        """Wait until :meth:`synced` (True) or ``within`` seconds pass (False)."""
        try:
            await asyncio.wait_for(self._synced_event.wait(), within)
        except TimeoutError:
            return False
        return True

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start one reflector task per scope (idempotent)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._reflect(scope), name=f"policy-reflector:{scope or '*'}")
            for scope in self._scopes
        ]

    async def stop(self) -> None:
        """Cancel the reflector tasks and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # -- reflector ------------------------------------------------------------------------

    def _mark_synced(self, scope: str) -> None:
        if scope not in self._synced:
            self._synced.add(scope)
            if self.synced():
                self._synced_event.set()

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
                    await self._sleep(self._backoff_base)
            except _Expired:
                log.info("policy_watch_expired_relist", namespace=where)
                self._rv[scope] = None
            except KubeApiError as exc:
                if exc.status == 410:
                    self._rv[scope] = None
                    continue
                if exc.status in {403, 404} and self._rv[scope] is None:
                    self._unavailable(scope, exc)
                    await self._sleep(self._missing_retry)
                    continue
                delay = min(self._backoff_cap, self._backoff_base * 2**failures)
                failures += 1
                log.warning(
                    "policy_watch_error",
                    namespace=where,
                    status=exc.status,
                    error=exc.message,
                    retry_in=delay,
                )
                await self._sleep(delay)
            except Exception:  # an eternal task: log (with traceback), back off, re-list
                delay = min(self._backoff_cap, self._backoff_base * 2**failures)
                failures += 1
                log.exception("policy_reflector_failed", namespace=where, retry_in=delay)
                self._rv[scope] = None
                await self._sleep(delay)

    def _unavailable(self, scope: str, exc: KubeApiError) -> None:
        if self.available or scope not in self._synced:
            hint = (
                "install the chart's CRD (charts/nim-autoscaler/crds/)"
                if exc.status == 404
                else "grant list/watch on scalingpolicies (the chart's RBAC does)"
            )
            log.warning(
                "policy_resources_unavailable",
                namespace=scope or "*",
                status=exc.status,
                error=exc.message,
                hint=f"{hint}; policy files keep working",
            )
        self.available = False
        self._store[scope] = {}
        self._mark_synced(scope)

    async def _list(self, scope: str) -> str:
        items: dict[tuple[str, str], ResourcePolicy] = {}
        token = ""
        while True:
            query: dict[str, str | int | bool] = {"limit": self._page_size}
            if token:
                query["continue"] = token

            def add(obj: JsonObject) -> None:
                entry = to_resource_policy(obj)
                items[(entry.namespace, entry.name)] = entry

            listing = await self._api.request_list(
                resource_path(scope), add, query=query, request_timeout=60.0
            )
            meta = _mapping(listing.get("metadata"))
            token = str(meta.get("continue") or "")
            if not token:
                break
        self._store[scope] = items
        self.lists += 1
        self.available = True
        self._mark_synced(scope)
        invalid = sum(1 for entry in items.values() if entry.policy is None)
        log.info(
            "policy_resources_listed", namespace=scope or "*", count=len(items), invalid=invalid
        )
        return str(meta.get("resourceVersion") or "")

    async def _watch(self, scope: str, resource_version: str) -> int:
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
            resource_path(scope), query=query, stream_timeout=self._watch_timeout + 30.0
        ):
            events += 1
            kind = event.get("type")
            obj = _mapping(event.get("object"))
            if kind == "ERROR":
                code = int(obj.get("code") or 0)
                if code == 410:
                    raise _Expired
                raise KubeApiError(
                    code, str(obj.get("reason", "")), str(obj.get("message", "")), "WATCH"
                )
            meta = _mapping(obj.get("metadata"))
            if kind in {"ADDED", "MODIFIED"}:
                entry = to_resource_policy(obj)
                old = store.get((entry.namespace, entry.name))
                store[(entry.namespace, entry.name)] = entry
                if old is None or old.generation != entry.generation:
                    for error in entry.errors:
                        log.warning("policy_resource_invalid", error=str(error))
            elif kind == "DELETED":
                store.pop((str(meta.get("namespace", "")), str(meta.get("name", ""))), None)
            elif kind != "BOOKMARK":
                log.warning("policy_watch_unknown_event", type=kind)
                continue
            rv = meta.get("resourceVersion")
            if rv:
                self._rv[scope] = str(rv)
        return events
