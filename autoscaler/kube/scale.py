"""The ``/scale`` subresource of any scale target: Deployment, StatefulSet, NIMService, any CRD.

Implements :class:`autoscaler.controller.ports.ScaleClient` for Kubernetes. The target's
``apiVersion``/``kind`` (from the policy's ``scaleTargetRef``) are resolved to the plural
resource name through API discovery (:class:`Discovery`, cached), so no kind is hard-coded.
Reads return ``spec.replicas``, ``status.replicas`` and ``status.selector``; writes replace the
``autoscaling/v1`` Scale object with the resourceVersion of the reading the decision was made
from (a PUT, so a concurrent writer yields 409; with a reading from the target watch the write is
one request). A 409 re-reads: a count changed by another writer is never overwritten with an
absolute count decided from the older reading (the write returns STALE and the loop decides
again), a count already at the desired one is a NO_OP. Errors map to :mod:`autoscaler.errors`:
404 -> ``TargetNotFound``, 403 -> ``Forbidden`` naming the missing RBAC rule, 429/5xx/timeouts
are retried with back-off within a time budget, then ``ActuationError``. Talks HTTP through
:class:`autoscaler.kube.client.KubeApi`; called by the control loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from autoscaler.controller.ports import ScaleReading, ScaleWrite, WriteResult
from autoscaler.errors import ActuationError, Conflict, Forbidden, TargetNotFound
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.policy.models import ScaleTargetRef

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A resolved API resource: group, version and plural name."""

    group: str
    """API group; empty for the core group."""
    version: str
    plural: str
    kind: str

    def base(self) -> str:
        """``/api/v1`` or ``/apis/{group}/{version}``."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        """The API path of the collection, an object, or an object's subresource."""
        path = f"{self.base()}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
            if subresource is not None:
                path += f"/{subresource}"
        return path

    def rule(self, verb: str, namespace: str, subresource: str | None = None) -> str:
        """The RBAC rule a request needs, in words (for ``Forbidden`` messages)."""
        resource = f"{self.plural}/{subresource}" if subresource else self.plural
        group = self.group or '"" (core)'
        return (
            f"missing RBAC rule: verb {verb!r} on resource {resource!r} in apiGroup {group} "
            f"in namespace {namespace!r}"
        )


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ``("apps", "v1")``; ``v1`` -> ``("", "v1")``."""
    group, sep, version = api_version.rpartition("/")
    return (group, version) if sep else ("", api_version)


class Discovery:
    """Kind -> plural resource name, from ``/api/v1`` and ``/apis/{group}/{version}`` (cached).

    Args:
        api: the API client.
        ttl: seconds a fetched resource list is trusted; an unknown kind re-fetches earlier,
            at most once per ``refresh_interval``.
        refresh_interval: minimum seconds between fetches of one group/version.
        monotonic: time source (injectable for tests).
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        ttl: float = 600.0,
        refresh_interval: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._ttl = ttl
        self._refresh_interval = refresh_interval
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = asyncio.Lock()

    async def resolve(self, api_version: str, kind: str) -> ResourceRef:
        """The resource for ``kind`` in ``api_version``.

        Raises:
            TargetNotFound: the group/version or the kind is not served.
            KubeApiError: the discovery request failed otherwise.
        """
        group, version = split_api_version(api_version)
        async with self._lock:
            now = self._monotonic()
            cached = self._cache.get(api_version)
            kinds = cached[1] if cached else None
            stale = cached is None or now - cached[0] > self._ttl
            may_refresh = cached is None or now - cached[0] > self._refresh_interval
            if stale or (kinds is not None and kind not in kinds and may_refresh):
                kinds = await self._fetch(api_version, group, version)
                self._cache[api_version] = (now, kinds)
        assert kinds is not None
        plural = kinds.get(kind)
        if plural is None:
            msg = f"kind {kind!r} is not served by {api_version} (is its CRD installed?)"
            raise TargetNotFound(msg)
        return ResourceRef(group, version, plural, kind)

    def cached(self, api_version: str, kind: str) -> ResourceRef | None:
        """The resource for ``kind`` when the cache answers it as :meth:`resolve` would, without
        a request (None: :meth:`resolve` would read discovery, or the kind is not served)."""
        cached = self._cache.get(api_version)
        if cached is None or self._monotonic() - cached[0] > self._ttl:
            return None
        plural = cached[1].get(kind)
        if plural is None:
            return None
        group, version = split_api_version(api_version)
        return ResourceRef(group, version, plural, kind)

    async def _fetch(self, api_version: str, group: str, version: str) -> dict[str, str]:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            listing = await self._api.request("GET", path)
        except KubeApiError as exc:
            if exc.status == 404:
                msg = f"API {api_version} is not served by the cluster (is its CRD installed?)"
                raise TargetNotFound(msg) from exc
            raise
        kinds: dict[str, str] = {}
        for resource in listing.get("resources") or []:
            name = str(resource.get("name", ""))
            if "/" in name:
                continue  # subresources such as deployments/scale
            kinds[str(resource.get("kind", ""))] = name
        log.debug("discovery_fetched", api_version=api_version, kinds=len(kinds))
        return kinds


class KubeScaleClient:
    """:class:`~autoscaler.controller.ports.ScaleClient` over the ``/scale`` subresource.

    Args:
        api: the API client.
        discovery: kind resolution (default: a new :class:`Discovery` on ``api``).
        conflict_retries: extra attempts after a 409 conflict before raising ``Conflict``.
        retry_budget: seconds spent retrying 429/5xx/timeouts of one call before giving up.
        backoff_base: first back-off delay, seconds (doubles each retry).
        backoff_cap: largest back-off delay, seconds.
        request_timeout: total timeout of one request, seconds.
        sleep: how to wait (injectable for tests).
        monotonic: time source for the budget (injectable for tests).
        read_annotations: also read the target object's annotations with each ``/scale`` read
            (``nim-autoscaler.io/mode``); one more GET per target and tick.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        discovery: Discovery | None = None,
        conflict_retries: int = 5,
        retry_budget: float = 10.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 2.0,
        request_timeout: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        read_annotations: bool = True,
    ) -> None:
        self._api = api
        self._read_annotations = read_annotations
        self._discovery = discovery or Discovery(api)
        self._conflict_retries = conflict_retries
        self._retry_budget = retry_budget
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._timeout = request_timeout
        self._sleep = sleep
        self._monotonic = monotonic

    @property
    def discovery(self) -> Discovery:
        """The discovery cache (shared with the recorder for status annotations)."""
        return self._discovery

    async def get_scale(self, namespace: str, ref: ScaleTargetRef) -> ScaleReading:
        """Read the target's ``/scale``.

        Raises:
            TargetNotFound: the target, its kind or its API is gone (404).
            Forbidden: RBAC denies ``get`` on ``{plural}/scale`` (403).
            ActuationError: any other failure, after retries within the budget.
        """
        resource = await self._resolve(namespace, ref)
        scale = await self._read(resource, namespace, ref.name)
        reading = _reading(scale)
        if not self._read_annotations:
            return reading
        # The Scale object carries no annotations: read the target's own metadata for
        # nim-autoscaler.io/mode (a missing or unreadable object keeps the policy's mode).
        try:
            target = await self._call(
                lambda: self._api.request(
                    "GET", resource.path(namespace, ref.name), request_timeout=self._timeout
                ),
                resource,
                namespace,
                ref.name,
                "get",
            )
        except (ActuationError, _ConflictSignal) as exc:
            log.warning(
                "target_annotations_unreadable", target=f"{namespace}/{ref.name}", error=str(exc)
            )
            return reading
        annotations = _section(_section(target, "metadata"), "annotations")
        return replace(reading, annotations={str(k): str(v) for k, v in annotations.items()})

    async def set_scale(
        self,
        namespace: str,
        ref: ScaleTargetRef,
        replicas: int,
        *,
        expected: ScaleReading | None = None,
    ) -> ScaleWrite:
        """Set ``spec.replicas`` to ``replicas``, guarded by the reading the decision used.

        With an ``expected`` reading that carries a resourceVersion (from the target watch or
        an earlier read) the write is one PUT of the Scale with that version; without one the
        Scale is read first. On a 409 the Scale is read again: at ``replicas`` already, the
        result is NO_OP; at a count other than the expected one (another writer won), nothing
        is written and the result is STALE with the fresh reading, for the caller to decide
        again; at the expected count (only the version moved, e.g. a status update) the write
        is retried with the fresh version, up to ``conflict_retries`` times.

        Raises:
            Conflict: 409 on every one of ``1 + conflict_retries`` attempts.
            TargetNotFound, Forbidden, ActuationError: as :meth:`get_scale`.
        """
        if replicas < 0:
            msg = f"refusing to scale {ref.kind} {namespace}/{ref.name} to {replicas} replicas"
            raise ActuationError(msg)
        resource = await self._resolve(namespace, ref)
        path = resource.path(namespace, ref.name, "scale")
        target = f"{namespace}/{ref.name}"
        reading = expected
        if reading is None or reading.resource_version is None:
            reading = _reading(await self._read(resource, namespace, ref.name))
        base = reading.spec_replicas
        sent = 0
        ambiguous = False  # a PUT failed in a way (timeout, 5xx) that may still have applied it
        for attempt in range(self._conflict_retries + 1):
            current = reading.spec_replicas
            if current == replicas:
                if ambiguous and base != replicas:
                    # One of our own unanswered writes may be what set it: count it as ours, so
                    # the rate limits see the change (the safe side when it was another's).
                    log.info("scale_landed_late", target=target, previous=base, replicas=replicas)
                    return ScaleWrite(WriteResult.SCALED, base)
                log.debug("scale_unchanged", target=target, replicas=replicas)
                return ScaleWrite(WriteResult.NO_OP, current, reading)
            if current != base:
                log.info(
                    "scale_stale_reading",
                    target=target,
                    decided_from=base,
                    found=current,
                    desired=replicas,
                )
                return ScaleWrite(WriteResult.STALE, current, reading)
            body: JsonObject = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    "name": ref.name,
                    "namespace": namespace,
                    "resourceVersion": reading.resource_version,
                },
                "spec": {"replicas": replicas},
            }

            def put(body: JsonObject = body) -> Awaitable[JsonObject]:
                nonlocal sent
                sent += 1
                return self._api.request("PUT", path, body=body, request_timeout=self._timeout)

            sent_before = sent
            try:
                await self._call(
                    put,
                    resource,
                    namespace,
                    ref.name,
                    "update",
                )
            except _ConflictSignal:
                ambiguous = ambiguous or sent - sent_before > 1
                log.info(
                    "scale_conflict_reread", target=target, attempt=attempt + 1, desired=replicas
                )
                reading = _reading(await self._read(resource, namespace, ref.name))
                continue
            log.info(
                "scaled",
                target=f"{ref.kind}/{namespace}/{ref.name}",
                previous=current,
                replicas=replicas,
            )
            return ScaleWrite(WriteResult.SCALED, current)
        msg = (
            f"scale {ref.kind} {namespace}/{ref.name} to {replicas}: resourceVersion conflict "
            f"on {self._conflict_retries + 1} attempts"
        )
        raise Conflict(msg)

    async def _resolve(self, namespace: str, ref: ScaleTargetRef) -> ResourceRef:
        try:
            return await self._retrying(
                lambda: self._discovery.resolve(ref.api_version, ref.kind),
                f"discover {ref.api_version} {ref.kind}",
            )
        except KubeApiError as exc:
            if exc.status == 403:
                group, version = split_api_version(ref.api_version)
                url = f"/apis/{group}/{version}" if group else f"/api/{version}"
                msg = (
                    f"forbidden to discover {ref.api_version}: missing RBAC rule: verb 'get' on "
                    f"nonResourceURL {url!r} (namespace {namespace!r}): {exc.message}"
                )
                raise Forbidden(msg) from exc
            msg = f"discover {ref.api_version} {ref.kind}: {exc}"
            raise ActuationError(msg) from exc

    async def _read(self, resource: ResourceRef, namespace: str, name: str) -> JsonObject:
        path = resource.path(namespace, name, "scale")
        return await self._call(
            lambda: self._api.request("GET", path, request_timeout=self._timeout),
            resource,
            namespace,
            name,
            "get",
        )

    async def _call(
        self,
        fn: Callable[[], Awaitable[JsonObject]],
        resource: ResourceRef,
        namespace: str,
        name: str,
        verb: str,
    ) -> JsonObject:
        what = f"{verb} {resource.kind} {namespace}/{name} scale"
        try:
            return await self._retrying(fn, what)
        except KubeApiError as exc:
            if exc.status == 404:
                msg = f"{what}: {resource.kind} {namespace}/{name} not found ({exc.message})"
                raise TargetNotFound(msg) from exc
            if exc.status == 403:
                msg = (
                    f"{what}: forbidden: {resource.rule(verb, namespace, 'scale')} ({exc.message})"
                )
                raise Forbidden(msg) from exc
            if exc.status == 409 and verb == "update":
                raise _ConflictSignal from exc
            msg = f"{what}: {exc}"
            raise ActuationError(msg) from exc

    async def _retrying(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """Call ``fn``, retrying retryable API errors with capped back-off within the budget."""
        deadline = self._monotonic() + self._retry_budget
        attempt = 0
        while True:
            try:
                return await fn()
            except KubeApiError as exc:
                delay = min(self._backoff_cap, self._backoff_base * 2**attempt)
                if not exc.retryable or self._monotonic() + delay > deadline:
                    raise
                log.warning(
                    "kube_request_retry",
                    what=what,
                    status=exc.status,
                    reason=exc.reason,
                    attempt=attempt + 1,
                    delay=delay,
                )
                await self._sleep(delay)
                attempt += 1


class _ConflictSignal(Exception):
    """Internal: the write got a 409 and should be retried after a fresh read."""


def _section(scale: JsonObject, name: str) -> JsonObject:
    """``scale[name]`` as an object (absent: empty); a malformed Scale is an ActuationError."""
    value = scale.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        msg = f"malformed Scale from the API server: {name} is {type(value).__name__}"
        raise ActuationError(msg)
    return value


def _replicas(section: JsonObject, where: str) -> int:
    """A replica count (absent: 0); anything but a non-negative integer is an ActuationError."""
    value = section.get("replicas")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        msg = f"malformed Scale from the API server: {where}.replicas is {value!r:.40}"
        raise ActuationError(msg)
    return value


def _reading(scale: JsonObject) -> ScaleReading:
    """The reading of a Scale object (raises ``ActuationError`` when it is malformed)."""
    spec = _section(scale, "spec")
    status = _section(scale, "status")
    selector = status.get("selector")
    if selector is not None and not isinstance(selector, str):
        msg = f"malformed Scale from the API server: status.selector is {selector!r:.40}"
        raise ActuationError(msg)
    resource_version = _section(scale, "metadata").get("resourceVersion")
    return ScaleReading(
        spec_replicas=_replicas(spec, "spec"),
        status_replicas=_replicas(status, "status"),
        selector=selector or None,
        resource_version=resource_version if isinstance(resource_version, str) else None,
    )
