"""ScalingPolicy resources: a list+watch cache of the policies given as Kubernetes objects.

:class:`PolicyResources` keeps, per watched namespace (or cluster-wide), every
``scalingpolicies.autoscaling.nim-autoscaler.io`` object as a
:class:`~autoscaler.policy.sources.ResourcePolicy`: the policy validated by the controller's own
model (:func:`autoscaler.policy.loader.validate_document`), or the located reasons it is invalid.
One reflector per scope (:class:`autoscaler.kube.reflector.Reflector`, as the pod cache): list
(paged), then watch from the list's resourceVersion with bookmarks, resume from the last event
seen when a stream ends, re-list on 410 Expired, back off on errors. Only the validated policy
and a few identifiers are kept per object (never the raw JSON), so memory is bounded by the
number of policies.

When the CRD is not installed (404) or RBAC denies the list (403), the cache says so once in the
log, counts as synced with no resources (files keep working), and tries again after
``missing_retry`` seconds.

Neighbours: the policy feed (:mod:`autoscaler.app`) merges these with the policy files
(:func:`autoscaler.policy.sources.merge_sources`); :mod:`autoscaler.kube.policy_status` writes
their ``/status``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

import structlog

from autoscaler.kube.client import KubeApi, KubeApiError
from autoscaler.kube.reflector import Key, Reflector, ScopedReflectors
from autoscaler.policy.crd import SCALING_POLICY
from autoscaler.policy.loader import validate_document
from autoscaler.policy.sources import ResourcePolicy

log = structlog.get_logger(__name__)


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
        self._missing_retry = missing_retry

        def reflector(scope: str) -> Reflector[ResourcePolicy]:
            return Reflector(
                api,
                resource_path(scope),
                to_resource_policy,
                name=f"scalingpolicies:{scope or '*'}",
                watch_timeout=watch_timeout,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                page_size=page_size,
                sleep=sleep,
                on_listed=self._listed_callback(scope),
                on_change=_warn_invalid,
                on_list_error=self._list_error_callback(scope),
                log_context={"namespace": scope or "*"},
                event_prefix="policy_",
            )

        self._reflectors = ScopedReflectors(namespaces, reflector, task_name="policy-reflector")
        self.available = True
        """False while the CRD is missing or the list is forbidden (then: no resources)."""

    @property
    def lists(self) -> int:
        """Completed (re-)lists."""
        return self._reflectors.lists

    @property
    def watches(self) -> int:
        """Watch requests started."""
        return self._reflectors.watches

    # -- reading --------------------------------------------------------------------------

    def resources(self) -> list[ResourcePolicy]:
        """Every resource seen (valid or not), sorted by ``namespace/name``."""
        scopes = self._reflectors.by_scope.values()
        found = [r for reflector in scopes for r in reflector.store.values()]
        return sorted(found, key=lambda r: (r.namespace, r.name))

    def get(self, namespace: str, name: str) -> ResourcePolicy | None:
        """The resource ``namespace/name``, if seen."""
        for reflector in self._reflectors.by_scope.values():
            found = reflector.store.get((namespace, name))
            if found is not None:
                return found
        return None

    def synced(self) -> bool:
        """True once every scope has listed (or found the CRD missing)."""
        return self._reflectors.synced()

    async def wait_synced(self, within: float) -> bool:
        """Wait until :meth:`synced` (True) or ``within`` seconds pass (False)."""
        return await self._reflectors.wait_synced(within)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start one reflector task per scope (idempotent)."""
        self._reflectors.start()

    async def stop(self) -> None:
        """Cancel the reflector tasks and wait for them to end."""
        await self._reflectors.stop()

    # -- reflector ------------------------------------------------------------------------

    def _listed_callback(
        self, scope: str
    ) -> Callable[[MutableMapping[Key, ResourcePolicy], str], None]:
        def listed(store: MutableMapping[Key, ResourcePolicy], _resource_version: str) -> None:
            self.available = True
            self._reflectors.mark_synced(scope)
            invalid = sum(1 for entry in store.values() if entry.policy is None)
            log.info(
                "policy_resources_listed", namespace=scope or "*", count=len(store), invalid=invalid
            )

        return listed

    def _list_error_callback(self, scope: str) -> Callable[[KubeApiError], float | None]:
        def list_error(exc: KubeApiError) -> float | None:
            if exc.status not in {403, 404}:
                return None
            self._unavailable(scope, exc)
            return self._missing_retry

        return list_error

    def _unavailable(self, scope: str, exc: KubeApiError) -> None:
        """The CRD is missing (404) or the list is denied (403): no resources, said once."""
        if self.available or not self._reflectors.is_synced(scope):
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
        self._reflectors.mark_synced(scope)


def _warn_invalid(_key: Key, old: ResourcePolicy | None, new: ResourcePolicy | None) -> None:
    """Log the reasons a changed resource is invalid (once per generation)."""
    if new is not None and (old is None or old.generation != new.generation):
        for error in new.errors:
            log.warning("policy_resource_invalid", error=str(error))
