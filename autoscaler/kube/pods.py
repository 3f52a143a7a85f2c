"""The pod cache: list + watch per namespace, queried by label selector with no I/O.

Implements :class:`autoscaler.controller.ports.PodSource` for Kubernetes. One reflector
(:class:`autoscaler.kube.reflector.Reflector`) per watched namespace (or one for all namespaces
when ``Settings.namespaces`` is empty) lists the pods, then watches from the list's
resourceVersion with ``allowWatchBookmarks=true``, as client-go's reflector does:
ADDED/MODIFIED/DELETED update the cache, BOOKMARK advances the resourceVersion, a 410 Gone (HTTP
status or ``ERROR`` event) re-lists, other errors back off (capped exponential) and resume from
the last resourceVersion, and a watch the server ends normally (``timeoutSeconds``) is simply
restarted. Only the fields :class:`PodInfo` needs (plus labels) are kept per pod, in a store
indexed by namespace that memoises selector lookups. Selectors are parsed and matched by
:mod:`autoscaler.kube.selector`.
The control loop calls :meth:`PodCache.pods`; :mod:`autoscaler.kube.factory` starts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import structlog

from autoscaler.decision.types import PodInfo, PodPhase
from autoscaler.kube.client import JsonObject, KubeApi
from autoscaler.kube.reflector import ALL_NAMESPACES, Key, Reflector, ScopedReflectors
from autoscaler.kube.selector import parse_selector

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Entry:
    labels: Mapping[str, str]
    info: PodInfo


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


class _PodStore(MutableMapping[Key, _Entry]):
    """(namespace, name) -> entry, indexed by namespace, with the selector lookups memoised.

    Indexed by namespace so that a lookup stays cheap with a cluster-wide watch of many pods; a
    namespace's memo is dropped whenever one of its pods is put or deleted (a re-list builds a
    new store, with no memo).
    """

    def __init__(self) -> None:
        self.by_namespace: dict[str, dict[str, _Entry]] = {}
        self.lookups: dict[str, dict[str, tuple[PodInfo, ...]]] = {}
        """Namespace -> selector -> the answer of :meth:`PodCache.pods`."""

    def __getitem__(self, key: Key) -> _Entry:
        return self.by_namespace[key[0]][key[1]]

    def __setitem__(self, key: Key, value: _Entry) -> None:
        namespace, name = key
        self.by_namespace.setdefault(namespace, {})[name] = value
        self.lookups.pop(namespace, None)

    def __delitem__(self, key: Key) -> None:
        namespace, name = key
        in_namespace = self.by_namespace[namespace]
        del in_namespace[name]
        if not in_namespace:
            del self.by_namespace[namespace]
        self.lookups.pop(namespace, None)

    def __iter__(self) -> Iterator[Key]:
        for namespace, pods in self.by_namespace.items():
            for name in pods:
                yield namespace, name

    def __len__(self) -> int:
        return sum(len(pods) for pods in self.by_namespace.values())


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
        def reflector(scope: str) -> Reflector[_Entry]:
            return Reflector(
                api,
                f"/api/v1/namespaces/{scope}/pods" if scope else "/api/v1/pods",
                _decode,
                name=f"pods:{scope or '*'}",
                watch_timeout=watch_timeout,
                backoff_base=backoff_base,
                backoff_cap=backoff_cap,
                page_size=page_size,
                sleep=sleep,
                new_store=_PodStore,
                on_listed=self._listed_callback(scope),
                log_context={"namespace": scope or "*"},
                event_prefix="pod_",
            )

        self._reflectors = ScopedReflectors(namespaces, reflector, task_name="pod-reflector")
        self._unwatched_warned: set[str] = set()

    @property
    def lists(self) -> int:
        """Number of completed (re-)lists, for observability and tests."""
        return self._reflectors.lists

    @property
    def watches(self) -> int:
        """Number of watch requests started."""
        return self._reflectors.watches

    @property
    def _rv(self) -> dict[str, str | None]:
        """Last resourceVersion seen per scope (None: must list)."""
        return {scope: r.resource_version for scope, r in self._reflectors.by_scope.items()}

    # -- PodSource ------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str) -> tuple[PodInfo, ...]:
        """Cached pods in ``namespace`` whose labels match ``selector``, sorted by name.

        Raises:
            SelectorError: ``selector`` cannot be parsed.
        """
        scopes = self._reflectors.by_scope
        reflector = scopes.get(ALL_NAMESPACES if ALL_NAMESPACES in scopes else namespace)
        if reflector is None:
            if namespace not in self._unwatched_warned:
                self._unwatched_warned.add(namespace)
                log.warning(
                    "pods_namespace_not_watched",
                    namespace=namespace,
                    watched=self._reflectors.scopes,
                )
            return ()
        store = cast("_PodStore", reflector.store)  # built by new_store=_PodStore
        memo = store.lookups.get(namespace)
        if memo is not None:
            # Memoised until a pod of the namespace changes (every policy asks every tick; the
            # watch changes little): a lookup is then one dict access, not a sorted scan.
            found = memo.get(selector)
            if found is not None:
                return found
        parsed = parse_selector(selector)
        in_namespace = store.by_namespace.get(namespace)
        if not in_namespace:
            return ()
        found = tuple(
            entry.info for _, entry in sorted(in_namespace.items()) if parsed.matches(entry.labels)
        )
        store.lookups.setdefault(namespace, {})[selector] = found
        return found

    def synced(self) -> bool:
        """True once every watched scope has completed its initial list."""
        return self._reflectors.synced()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start one reflector task per scope (idempotent)."""
        self._reflectors.start()

    async def wait_synced(self, within: float) -> bool:
        """Wait until :meth:`synced` (True) or ``within`` seconds pass (False)."""
        return await self._reflectors.wait_synced(within)

    async def stop(self) -> None:
        """Cancel the reflector tasks and wait for them to end."""
        await self._reflectors.stop()

    # -- reflector ------------------------------------------------------------------------

    def _listed_callback(self, scope: str) -> Callable[[MutableMapping[Key, _Entry], str], None]:
        def listed(store: MutableMapping[Key, _Entry], resource_version: str) -> None:
            self._reflectors.mark_synced(scope)
            log.info("pods_listed", namespace=scope or "*", pods=len(store), rv=resource_version)

        return listed


def _decode(pod: JsonObject) -> _Entry:
    meta = _mapping(pod.get("metadata"))
    labels = {str(k): str(v) for k, v in _mapping(meta.get("labels")).items()}
    return _Entry(labels, pod_info(pod))
