"""The scale-target cache: list + watch of each target kind, so a steady tick reads no ``/scale``.

Implements :class:`autoscaler.controller.ports.TargetSource`. The first lookup of a kind
(``apiVersion`` + ``kind`` of a policy's ``scaleTargetRef``) starts watching it: the kind is
resolved to its resource through :class:`~autoscaler.kube.scale.Discovery`, then to where its
``/scale`` fields live in the object:

- built-in kinds (``apps/v1`` Deployment, StatefulSet, ReplicaSet): ``spec.replicas``,
  ``status.replicas`` and the structured ``spec.selector``, as the API server's own ``/scale``;
- custom resources (NIMService, any CRD): the ``scale`` subresource's ``specReplicasPath``,
  ``statusReplicasPath`` and ``labelSelectorPath`` of the served version, read once from the
  CustomResourceDefinition.

One reflector per kind and scope (:class:`autoscaler.kube.reflector.Reflector`: list, watch from
its resourceVersion with bookmarks, re-list on 410, back off on errors) keeps one small
:class:`~autoscaler.controller.ports.ScaleReading` per object, with the object's
resourceVersion (the one its ``/scale`` has, so a write from it is one guarded PUT).

:meth:`TargetCache.lookup` answers None -- and the control loop reads ``/scale`` itself --
while the kind's watch is not synced (before its first list, and after a watch error until the
watch is back), for an object the cache does not hold, and for a kind it cannot map (no
CRD access, no scale subresource: logged once). Neighbours: built by
:mod:`autoscaler.kube.factory`, asked by the control loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from autoscaler.controller.ports import ScaleReading
from autoscaler.decision.fleet import MODE_ANNOTATION
from autoscaler.errors import AutoscalerError
from autoscaler.kube.client import KubeApi, KubeApiError
from autoscaler.kube.reflector import ALL_NAMESPACES, Reflector
from autoscaler.kube.scale import Discovery, ResourceRef
from autoscaler.kube.selector import selector_from_label_selector
from autoscaler.policy.models import ScaleTargetRef

log = structlog.get_logger(__name__)

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
"""Collection path of CustomResourceDefinitions (cluster-scoped)."""

_BUILT_IN = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "ReplicaSet")})
"""Kinds whose ``/scale`` the API server derives from spec/status.replicas and spec.selector."""


class UnmappableKind(AutoscalerError):
    """The kind's ``/scale`` fields cannot be found in its objects (``/scale`` is read instead)."""


@dataclass(frozen=True, slots=True)
class ScalePaths:
    """Where a kind keeps its ``/scale`` fields."""

    spec_replicas: tuple[str, ...]
    status_replicas: tuple[str, ...]
    selector: tuple[str, ...] | None
    """Path of the selector; for built-in kinds, of the structured ``spec.selector``."""
    structured_selector: bool = False
    """True if the selector is a ``LabelSelector`` object, False if already a string."""

    @classmethod
    def built_in(cls) -> ScalePaths:
        """The paths of ``apps/v1`` workloads."""
        return cls(
            ("spec", "replicas"),
            ("status", "replicas"),
            ("spec", "selector"),
            structured_selector=True,
        )

    def reading(self, obj: Mapping[str, Any]) -> ScaleReading:
        """The ``/scale`` view of one object (absent or malformed counts read as 0)."""
        selector_value = _at(obj, self.selector) if self.selector is not None else None
        if self.structured_selector:
            selector = (
                selector_from_label_selector(selector_value)
                if isinstance(selector_value, Mapping)
                else None
            )
        else:
            selector = selector_value if isinstance(selector_value, str) else None
        meta = obj.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        notes = meta.get("annotations") if isinstance(meta, Mapping) else None
        # Only the annotation the controller reads is kept (the rest would cost memory per target).
        mode = notes.get(MODE_ANNOTATION) if isinstance(notes, Mapping) else None
        return ScaleReading(
            spec_replicas=_count(_at(obj, self.spec_replicas)),
            status_replicas=_count(_at(obj, self.status_replicas)),
            selector=selector or None,
            resource_version=rv if isinstance(rv, str) else None,
            annotations={MODE_ANNOTATION: mode} if isinstance(mode, str) else {},
        )


def parse_json_path(path: str) -> tuple[str, ...]:
    """``.spec.replicas`` -> ``("spec", "replicas")`` (the simple paths CRDs allow).

    Raises:
        UnmappableKind: a path with indexes, filters or empty parts.
    """
    if not path.startswith(".") or any(c in path for c in "[]*@?()"):
        msg = f"unsupported JSON path {path!r}"
        raise UnmappableKind(msg)
    parts = tuple(path[1:].split("."))
    if not all(parts):
        msg = f"unsupported JSON path {path!r}"
        raise UnmappableKind(msg)
    return parts


def crd_scale_paths(crd: Mapping[str, Any], version: str) -> ScalePaths:
    """The scale paths of ``version`` of a CustomResourceDefinition.

    Raises:
        UnmappableKind: the version is not served or has no ``scale`` subresource.
    """
    spec = crd.get("spec")
    versions = spec.get("versions") if isinstance(spec, Mapping) else None
    for entry in versions if isinstance(versions, list) else []:
        if not isinstance(entry, Mapping) or entry.get("name") != version:
            continue
        subresources = entry.get("subresources")
        scale = subresources.get("scale") if isinstance(subresources, Mapping) else None
        if not isinstance(scale, Mapping):
            break
        selector = scale.get("labelSelectorPath")
        return ScalePaths(
            parse_json_path(str(scale.get("specReplicasPath", ""))),
            parse_json_path(str(scale.get("statusReplicasPath", ""))),
            parse_json_path(selector) if isinstance(selector, str) and selector else None,
        )
    msg = f"version {version!r} of the CRD has no scale subresource"
    raise UnmappableKind(msg)


def _at(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class _KindWatch:
    """The readings of one kind, fed by one reflector per scope."""

    def __init__(self) -> None:
        self.reflectors: dict[str, Reflector[ScaleReading]] = {}
        """Scope (namespace, or all) -> its reflector; its store: (namespace, name) -> reading."""
        self.task: asyncio.Task[None] | None = None
        self.unmappable: str | None = None

    def reflector(self, namespace: str) -> Reflector[ScaleReading] | None:
        return self.reflectors.get(ALL_NAMESPACES) or self.reflectors.get(namespace)

    def synced(self) -> bool:
        return bool(self.reflectors) and all(r.synced for r in self.reflectors.values())

    def size(self) -> int:
        return sum(len(r.store) for r in self.reflectors.values())


class TargetCache:
    """:class:`~autoscaler.controller.ports.TargetSource` fed by list + watch of target kinds.

    Args:
        api: the API client.
        discovery: kind -> resource resolution (shared with the ``/scale`` client).
        namespaces: namespaces to watch; empty: all namespaces (one cluster-wide watch per kind).
        watch_timeout: ``timeoutSeconds`` asked of the server per watch.
        backoff_base: first delay after an error, seconds (doubles per consecutive error).
        backoff_cap: largest delay after errors, seconds.
        retry_unmappable: seconds after which a kind that could not be mapped is tried again.
        sleep: how to wait between retries (injectable for tests).
    """

    def __init__(
        self,
        api: KubeApi,
        discovery: Discovery,
        namespaces: Sequence[str] = (),
        *,
        watch_timeout: int = 300,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_unmappable: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._api = api
        self._discovery = discovery
        self._scopes: tuple[str, ...] = tuple(dict.fromkeys(namespaces)) or (ALL_NAMESPACES,)
        self._watch_timeout = watch_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._retry_unmappable = retry_unmappable
        self._sleep = sleep
        self._kinds: dict[tuple[str, str], _KindWatch] = {}
        self._stopped = False

    # -- TargetSource ---------------------------------------------------------------------

    def lookup(self, namespace: str, ref: ScaleTargetRef) -> ScaleReading | None:
        """The cached reading of the target, or None (the caller reads ``/scale``).

        The first lookup of a kind starts watching it (in the background).
        """
        key = (ref.api_version, ref.kind)
        watch = self._kinds.get(key)
        if watch is None:
            if self._stopped:
                return None
            watch = _KindWatch()
            self._kinds[key] = watch
            watch.task = asyncio.create_task(self._run(key, watch), name=f"target-watch:{ref.kind}")
            return None
        reflector = watch.reflector(namespace)
        if reflector is None or not reflector.synced:
            return None
        return reflector.store.get((namespace, ref.name))

    # -- state, for readiness and tests ---------------------------------------------------

    def synced(self, api_version: str, kind: str) -> bool:
        """True while the kind's watch is synced."""
        watch = self._kinds.get((api_version, kind))
        return watch is not None and watch.synced()

    def watched(self) -> dict[str, int]:
        """``apiVersion/kind`` -> objects cached, for every kind watched."""
        return {f"{av}/{kind}": w.size() for (av, kind), w in self._kinds.items()}

    @property
    def lists(self) -> int:
        """Completed (re-)lists over all kinds."""
        return sum(r.lists for w in self._kinds.values() for r in w.reflectors.values())

    @property
    def watches(self) -> int:
        """Watch requests started over all kinds."""
        return sum(r.watches for w in self._kinds.values() for r in w.reflectors.values())

    async def stop(self) -> None:
        """Stop every watch."""
        self._stopped = True
        tasks = [w.task for w in self._kinds.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- one kind -------------------------------------------------------------------------

    async def _run(self, key: tuple[str, str], watch: _KindWatch) -> None:
        api_version, kind = key
        failures = 0
        while True:
            try:
                resource = await self._discovery.resolve(api_version, kind)
                paths = await self._paths(resource)
            except (AutoscalerError, KubeApiError) as exc:
                watch.unmappable = str(exc)
                delay = (
                    self._retry_unmappable
                    if isinstance(exc, UnmappableKind)
                    else min(self._backoff_cap, self._backoff_base * 2**failures)
                )
                failures += 1
                log.warning(
                    "target_watch_unavailable",
                    kind=f"{api_version}/{kind}",
                    error=str(exc),
                    fallback="GET /scale per tick",
                    retry_in=delay,
                )
                await self._sleep(delay)
                continue
            watch.unmappable = None
            break
        await self._watch(resource, paths, watch)

    async def _paths(self, resource: ResourceRef) -> ScalePaths:
        if (resource.group, resource.kind) in _BUILT_IN:
            return ScalePaths.built_in()
        if not resource.group:
            msg = f"core kind {resource.kind} is not watched for /scale"
            raise UnmappableKind(msg)
        name = f"{resource.plural}.{resource.group}"
        try:
            crd = await self._api.request("GET", f"{CRD_PATH}/{name}")
        except KubeApiError as exc:
            if exc.status in {403, 404}:
                msg = (
                    f"cannot read CustomResourceDefinition {name} ({exc.status} {exc.reason}); "
                    "grant 'get' on customresourcedefinitions to watch this kind"
                )
                raise UnmappableKind(msg) from exc
            raise
        return crd_scale_paths(crd, resource.version)

    async def _watch(self, resource: ResourceRef, paths: ScalePaths, watch: _KindWatch) -> None:
        def path(scope: str) -> str:
            if scope == ALL_NAMESPACES:
                return f"{resource.base()}/{resource.plural}"
            return resource.path(scope)

        watch.reflectors = {
            scope: Reflector(
                self._api,
                path(scope),
                paths.reading,
                name=f"{resource.kind}:{scope or '*'}",
                watch_timeout=self._watch_timeout,
                backoff_base=self._backoff_base,
                backoff_cap=self._backoff_cap,
                sleep=self._sleep,
            )
            for scope in self._scopes
        }
        log.info("target_watch_started", kind=resource.kind, resource=resource.plural)
        await asyncio.gather(*(r.run() for r in watch.reflectors.values()))
