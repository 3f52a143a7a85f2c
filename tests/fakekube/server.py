"""A small, faithful fake Kubernetes API server for tests (aiohttp, 127.0.0.1 only).

It speaks the real paths and JSON of the API server for the subset nim-autoscaler uses, so the
real ``kubernetes_asyncio`` client can talk to it through a kubeconfig file
(:func:`write_kubeconfig`):

- discovery: ``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}/{version}``;
- objects: pods, events, configmaps (core/v1), deployments and statefulsets (apps/v1), leases
  (coordination.k8s.io/v1) and NIMService (apps.nvidia.com/v1alpha1, a custom resource, whose
  CustomResourceDefinition -- with its ``scale`` subresource paths -- is served, cluster-scoped,
  by apiextensions.k8s.io/v1): list, create (POST), get, replace (PUT), merge patch (PATCH),
  delete;
- ``/scale`` subresources of deployments, statefulsets and nimservices (``autoscaling/v1``
  Scale JSON with ``status.selector``);
- ScalingPolicy (autoscaling.nim-autoscaler.io/v1alpha1) with a ``/status`` subresource as a CRD
  declaring one behaves: the main endpoint keeps ``status``, ``/status`` changes only ``status``,
  ``generation`` counts spec changes (no schema or CEL validation: that is the real API server's);
- watches of every kind above (pods, the scale targets, ScalingPolicy, ...): ``watch=true`` with
  ``resourceVersion`` (events newer than it), ``labelSelector``,
  ``allowWatchBookmarks``, ``timeoutSeconds``; a too-old resourceVersion gets an ``ERROR`` event
  carrying a 410 ``Expired`` Status, as the real server does;
- ``resourceVersion`` optimistic concurrency: a PUT (or a patch carrying
  ``metadata.resourceVersion``) with a stale version gets a 409 ``Conflict`` Status;
- injectable faults (:meth:`FakeKube.inject`): status codes, delays, for a method and a path
  pattern, a number of times; :meth:`FakeKube.cut_watches` drops open watch streams;
- an optional pod "reconciler" for workloads (:meth:`FakeKube.enable_reconcile`): when a
  workload's replicas change it creates or deletes pods carrying its selector labels (owned by a
  ReplicaSet, or by the StatefulSet with ordinal names; a scale-down removes pods in the
  ReplicaSet controller's order, ``controller.kubernetes.io/pod-deletion-cost`` included, or the
  highest ordinal first for a StatefulSet; a workload's ``nvidia.com/gpu`` limit is copied), and
  :meth:`FakeKube.step` moves them Pending -> Running -> Ready after configurable delays
  measured on an injectable clock.

Only what nim-autoscaler needs is implemented; anything else answers 404 or 405 with a Status.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from autoscaler.kube.selector import parse_selector, selector_from_label_selector

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """One API resource the fake serves."""

    group: str
    version: str
    plural: str
    kind: str
    scalable: bool = False
    namespaced: bool = True
    status_subresource: bool = False
    """Custom resources with ``subresources.status``: the main endpoint ignores ``status`` and
    ``/status`` changes only ``status`` (neither bumps ``generation`` for the other's part)."""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = (
    ResourceType("", "v1", "pods", "Pod"),
    ResourceType("", "v1", "events", "Event"),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("apps", "v1", "deployments", "Deployment", scalable=True),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", scalable=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("apps.nvidia.com", "v1alpha1", "nimservices", "NIMService", scalable=True),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
    ),
    ResourceType(
        "autoscaling.nim-autoscaler.io",
        "v1alpha1",
        "scalingpolicies",
        "ScalingPolicy",
        status_subresource=True,
    ),
)


def nimservice_crd() -> Obj:
    """The NIMService CustomResourceDefinition, with its ``scale`` subresource paths."""
    return {
        "metadata": {"name": "nimservices.apps.nvidia.com"},
        "spec": {
            "group": "apps.nvidia.com",
            "names": {"kind": "NIMService", "plural": "nimservices"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                }
            ],
        },
    }


@dataclass
class Fault:
    """An injected fault: requests matching ``method`` and ``path`` (regex) fail or are delayed.

    ``status`` None only delays. ``times`` None applies forever; otherwise it counts down.
    """

    method: str | None
    path: str
    status: int | None = None
    delay: float = 0.0
    times: int | None = 1
    message: str = "injected fault"
    action: Callable[[], None] | None = None
    """Run when the fault fires (e.g. simulate another writer)."""
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path, path) is not None


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(code: int, message: str, reason: str | None = None, **details: Any) -> Obj:
    """A ``metav1.Status`` failure object."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def _status_response(
    code: int, message: str, reason: str | None = None, **details: Any
) -> web.Response:
    return web.json_response(status_body(code, message, reason, **details), status=code)


def iso(ts: float) -> str:
    """RFC 3339 UTC timestamp with second precision, as Kubernetes writes them."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(eq=False)
class _Watcher:
    rtype: ResourceType
    namespace: str | None
    selector: str
    queue: asyncio.Queue[Obj | None] = field(default_factory=asyncio.Queue)


@dataclass
class _PodPlan:
    created: float
    owner: tuple[str, str, str]


class FakeKube:
    """The fake API server's state and HTTP handlers.

    Args:
        clock: time source for timestamps and the reconciler (default: wall clock).
        history_limit: watch events kept; older resourceVersions get 410 Expired.
        token: if set, every request must carry ``Authorization: Bearer <token>`` (else 401).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        history_limit: int = 1000,
        token: str | None = None,
    ) -> None:
        self.clock = clock
        self.token = token
        self.history_limit = history_limit
        self.objects: dict[tuple[str, str, str], Obj] = {}
        """(plural, namespace, name) -> object (cluster-scoped objects use namespace '')."""
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        """Every request seen, as (method, path with query)."""
        self.status_writes = 0
        """Successful writes to a ``/status`` subresource."""
        self._rv = itertools.count(1001)
        self.resource_version = 1000
        self._history: list[tuple[int, str, str, Obj]] = []
        """(resourceVersion, event type, plural, object) in order."""
        self.compacted = 0
        """Watches from a resourceVersion below this get 410 Expired."""
        self._watchers: set[_Watcher] = set()
        self._reconcile: tuple[float, float] | None = None
        self._plans: dict[tuple[str, str], _PodPlan] = {}
        self._pod_names = itertools.count(1)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.put("customresourcedefinitions", nimservice_crd())

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on 127.0.0.1 on a free port; returns the base URL."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Close watches and stop listening."""
        self.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKube:
        """``async with FakeKube() as fake:`` starts it (``fake.url`` is set)."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop it."""
        await self.stop()

    # -- test helpers ---------------------------------------------------------------------

    def inject(
        self,
        path: str,
        status: int | None = None,
        *,
        method: str | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        message: str = "injected fault",
        action: Callable[[], None] | None = None,
    ) -> Fault:
        """Make matching requests fail with ``status`` (and/or wait ``delay`` seconds)."""
        fault = Fault(method, path, status, delay, times, message, action)
        self.faults.append(fault)
        return fault

    def cut_watches(self) -> None:
        """End every open watch stream abruptly (as a dropped connection or proxy timeout)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    def compact(self) -> None:
        """Forget all watch history: any watch from an older resourceVersion gets 410."""
        self.compacted = self.resource_version + 1
        self._history.clear()

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK (current resourceVersion) to every watch that asked for them."""
        for watcher in self._watchers:
            kind = watcher.rtype.kind
            obj = {
                "kind": kind,
                "apiVersion": watcher.rtype.group_version,
                "metadata": {"resourceVersion": str(self.resource_version)},
            }
            watcher.queue.put_nowait({"type": "BOOKMARK", "object": obj})

    @property
    def open_watches(self) -> int:
        """Number of watch streams currently open."""
        return len(self._watchers)

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        """The stored object, or None."""
        obj = self.objects.get((plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def put(self, plural: str, obj: Obj) -> Obj:
        """Create or replace an object directly (no conflict check); emits a watch event.

        A workload whose spec changed is reconciled (pods follow its replicas) when enabled.
        """
        rtype = _by_plural(plural)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "")
        key = (plural, namespace, meta["name"])
        existing = self.objects.get(key)
        stored = self._store(rtype, key, obj, "MODIFIED" if existing else "ADDED", existing)
        if rtype.scalable and (existing is None or existing["spec"] != obj.get("spec")):
            self._reconcile_workload(plural, namespace, meta["name"])
            stored = copy.deepcopy(self.objects[key])
        return stored

    def delete(self, plural: str, namespace: str, name: str) -> None:
        """Delete an object directly; emits a DELETED event."""
        key = (plural, namespace, name)
        obj = self.objects.pop(key, None)
        if obj is not None:
            self._emit(_by_plural(plural), "DELETED", obj, bump=True)

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 1,
        labels: dict[str, str] | None = None,
        kind: str = "Deployment",
        gpus: int | None = None,
    ) -> Obj:
        """Create a Deployment, StatefulSet or NIMService selecting pods by ``labels``.

        ``gpus`` puts an ``nvidia.com/gpu`` limit in the pod template (reconciled pods get it).
        """
        labels = labels or {"app": name}
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}.get(
            kind, "nimservices"
        )
        rtype = _by_plural(plural)
        obj: Obj = {
            "apiVersion": rtype.group_version,
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}},
            },
            "status": {"replicas": replicas},
        }
        if gpus is not None:
            obj["spec"]["template"]["spec"] = {
                "containers": [
                    {"name": "llm", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                ]
            }
        if kind == "NIMService":
            obj["spec"] = {"replicas": replicas, "image": {"repository": "nim/llm"}}
            if gpus is not None:
                obj["spec"]["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
            obj["status"] = {"replicas": replicas, "selector": _selector_text(labels)}
        return self.put(plural, obj)

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        created: float | None = None,
        unschedulable: str | None = None,
        ready_since: float | None = None,
    ) -> Obj:
        """Create a pod in a given state (conditions and timestamps filled in; a ready pod's
        ``Ready`` condition changed at ``ready_since``, default now)."""
        now = self.clock()
        created = now if created is None else created
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels or {}),
                "creationTimestamp": iso(created),
            },
            "spec": {"containers": [{"name": "llm", "image": "nim/llm"}]},
            "status": _pod_status(
                phase, ready, created, now if ready_since is None else ready_since, unschedulable
            ),
        }
        return self.put("pods", pod)

    def set_pod_state(
        self, namespace: str, name: str, *, phase: str, ready: bool, deleting: bool = False
    ) -> Obj:
        """Change a pod's phase/readiness (and mark it terminating); emits MODIFIED."""
        pod = self.objects[("pods", namespace, name)]
        created = _parse_iso(pod["metadata"]["creationTimestamp"])
        pod = copy.deepcopy(pod)
        pod["status"] = _pod_status(phase, ready, created, self.clock(), None)
        if deleting:
            pod["metadata"]["deletionTimestamp"] = iso(self.clock())
        return self.put("pods", pod)

    def enable_reconcile(self, *, schedule_after: float = 0.0, ready_after: float = 0.0) -> None:
        """Make workloads own pods: replicas changes create/delete pods with their labels.

        New pods are Pending; :meth:`step` makes them Running (scheduled) once
        ``schedule_after`` seconds of the clock passed since creation, and Ready after
        ``ready_after`` seconds. Workload ``status.replicas`` / ``readyReplicas`` follow.
        """
        self._reconcile = (schedule_after, ready_after)
        for plural, namespace, name in list(self.objects):
            if _by_plural(plural).scalable:
                self._reconcile_workload(plural, namespace, name)

    def step(self) -> None:
        """Advance reconciled pods through Pending -> Running -> Ready per the clock."""
        if self._reconcile is None:
            return
        schedule_after, ready_after = self._reconcile
        now = self.clock()
        owners: set[tuple[str, str, str]] = set()
        for (namespace, name), plan in list(self._plans.items()):
            pod = self.objects.get(("pods", namespace, name))
            if pod is None:
                continue
            age = now - plan.created
            phase = pod["status"]["phase"]
            ready = _pod_ready(pod)
            want_phase = "Running" if age >= schedule_after else "Pending"
            want_ready = age >= ready_after and want_phase == "Running"
            if (want_phase, want_ready) != (phase, ready):
                updated = copy.deepcopy(pod)
                updated["status"] = _pod_status(want_phase, want_ready, plan.created, now, None)
                self.put("pods", updated)
                owners.add(plan.owner)
        for owner in owners:
            self._update_workload_status(*owner)

    # -- storage and watch events ---------------------------------------------------------

    def _next_rv(self) -> int:
        self.resource_version = next(self._rv)
        return self.resource_version

    def _store(
        self, rtype: ResourceType, key: tuple[str, str, str], obj: Obj, event: str, old: Obj | None
    ) -> Obj:
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = rtype.group_version
        obj["kind"] = rtype.kind
        meta = obj.setdefault("metadata", {})
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = meta.get("creationTimestamp") or iso(self.clock())
            meta.setdefault("generation", 1)
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            if obj.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            else:
                meta["generation"] = old["metadata"].get("generation", 1)
        meta["resourceVersion"] = str(self._next_rv())
        self.objects[key] = obj
        self._emit(rtype, event, obj, bump=False)
        return copy.deepcopy(obj)

    def _emit(self, rtype: ResourceType, event: str, obj: Obj, *, bump: bool) -> None:
        if bump:
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._next_rv())
        rv = int(obj["metadata"]["resourceVersion"])
        self._history.append((rv, event, rtype.plural, copy.deepcopy(obj)))
        if len(self._history) > self.history_limit:
            dropped = self._history.pop(0)
            self.compacted = dropped[0] + 1
        for watcher in self._watchers:
            if watcher.rtype.plural == rtype.plural and _selected(
                obj, watcher.namespace, watcher.selector
            ):
                watcher.queue.put_nowait({"type": event, "object": copy.deepcopy(obj)})

    # -- reconciler -----------------------------------------------------------------------

    def _reconcile_workload(self, plural: str, namespace: str, name: str) -> None:
        if self._reconcile is None:
            return
        workload = self.objects.get((plural, namespace, name))
        if workload is None:
            return
        labels = _workload_labels(workload)
        want = int(workload["spec"].get("replicas", 0))
        for key, plan in list(self._plans.items()):  # pods deleted by someone else are gone
            if plan.owner == (plural, namespace, name) and ("pods", *key) not in self.objects:
                del self._plans[key]
        owned = sorted(
            (
                pod_name
                for (ns, pod_name), plan in self._plans.items()
                if ns == namespace and plan.owner == (plural, namespace, name)
            ),
            key=lambda n: self._plans[(namespace, n)].created,
        )
        stateful = plural == "statefulsets"
        while len(owned) < want:
            if stateful:
                taken = set(owned)
                pod_name = next(
                    f"{name}-{i}" for i in itertools.count() if f"{name}-{i}" not in taken
                )
            else:
                pod_name = f"{name}-{next(self._pod_names):05d}"
            now = self.clock()
            self._plans[(namespace, pod_name)] = _PodPlan(now, (plural, namespace, name))
            self.add_pod(namespace, pod_name, labels=labels, phase="Pending", ready=False)
            self._own_pod(namespace, pod_name, workload, stateful=stateful)
            owned.append(pod_name)
        if len(owned) > want:
            pods = {n: self.objects[("pods", namespace, n)] for n in owned}
            if stateful:
                ranked = sorted(owned, key=lambda n: -int(n.rsplit("-", 1)[1]))
            else:
                # ties (timestamps have whole seconds): the newer pod first, as the ReplicaSet
                ranked = sorted(
                    sorted(owned, reverse=True), key=lambda n: _replicaset_rank(pods[n])
                )
            for victim in ranked[: len(owned) - want]:
                del self._plans[(namespace, victim)]
                self.delete("pods", namespace, victim)
        self.step()
        self._update_workload_status(plural, namespace, name)

    def _own_pod(self, namespace: str, pod_name: str, workload: Obj, *, stateful: bool) -> None:
        """Give a reconciled pod its owner reference and the workload's GPU limit."""
        pod = copy.deepcopy(self.objects[("pods", namespace, pod_name)])
        name = workload["metadata"]["name"]
        pod["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet" if stateful else "ReplicaSet",
                "name": name if stateful else f"{name}-rs",
                "uid": workload["metadata"].get("uid", ""),
                "controller": True,
            }
        ]
        template = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = template.get("containers") or []
        resources = (
            containers[0].get("resources")
            if containers
            else (workload.get("spec") or {}).get("resources")  # NIMService spec.resources
        )
        if resources:
            pod["spec"]["containers"][0]["resources"] = copy.deepcopy(resources)
        self.put("pods", pod)

    def _update_workload_status(self, plural: str, namespace: str, name: str) -> None:
        workload = self.objects.get((plural, namespace, name))
        if workload is None:
            return
        pods = [
            self.objects[("pods", ns, pod_name)]
            for (ns, pod_name), plan in self._plans.items()
            if plan.owner == (plural, namespace, name) and ("pods", ns, pod_name) in self.objects
        ]
        status = dict(workload.get("status") or {})
        status["replicas"] = len(pods)
        status["readyReplicas"] = sum(1 for pod in pods if _pod_ready(pod))
        if status != workload.get("status"):
            updated = copy.deepcopy(workload)
            updated["status"] = status
            self.put(plural, updated)

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.requests.append((request.method, request.path_qs))
        if (
            self.token is not None
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return _status_response(401, "Unauthorized", "Unauthorized")
        for fault in self.faults:
            if fault.matches(request.method, path):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.action is not None:
                    fault.action()
                if fault.status is not None:
                    return self._fault_response(fault, request)
                break
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return web.json_response(_group_list())
        parsed = _parse_path(path)
        if parsed is None:
            return _status_response(
                404, f"the server could not find the requested resource ({path})"
            )
        group, version, namespace, plural, name, sub = parsed
        if plural is None:
            return self._discovery(group, version)
        rtype = next(
            (r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)),
            None,
        )
        if rtype is None:
            return _status_response(
                404, f"the server could not find the requested resource ({path})"
            )
        if name is None:
            if request.method == "GET":
                if request.query.get("watch") in {"true", "1"}:
                    return await self._watch(request, rtype, namespace)
                return self._list(request, rtype, namespace)
            if request.method == "POST" and namespace is not None:
                return await self._create(request, rtype, namespace)
            return _status_response(405, f"method {request.method} not allowed")
        ns = namespace or ""
        if sub == "scale":
            if not rtype.scalable:
                return _status_response(404, "the server could not find the requested resource")
            return await self._scale(request, rtype, ns, name)
        if sub == "status" and rtype.status_subresource:
            return await self._status_subresource(request, rtype, ns, name)
        if sub is not None:
            return _status_response(404, "the server could not find the requested resource")
        return await self._item(request, rtype, ns, name)

    def _fault_response(self, fault: Fault, request: web.Request) -> web.Response:
        code = fault.status or 500
        message = fault.message
        if code == 403:
            message = (
                f'forbidden: User "system:serviceaccount:nim:autoscaler" cannot '
                f"{request.method.lower()} path {request.path} ({fault.message})"
            )
        headers = {"Retry-After": "1"} if code == 429 else None
        return web.json_response(status_body(code, message), status=code, headers=headers)

    def _discovery(self, group: str, version: str) -> web.Response:
        resources = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
        if not resources:
            return _status_response(404, "the server could not find the requested resource")
        listing: list[Obj] = []
        for r in resources:
            listing.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
            )
            if r.status_subresource:
                listing.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": True,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
            if r.scalable:
                listing.append(
                    {
                        "name": f"{r.plural}/scale",
                        "singularName": "",
                        "namespaced": True,
                        "group": "autoscaling",
                        "version": "v1",
                        "kind": "Scale",
                        "verbs": ["get", "patch", "update"],
                    }
                )
        gv = f"{group}/{version}" if group else version
        return web.json_response(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": listing,
            }
        )

    def _list(
        self, request: web.Request, rtype: ResourceType, namespace: str | None
    ) -> web.Response:
        selector = request.query.get("labelSelector", "")
        items = [
            copy.deepcopy(obj)
            for (plural, _, _), obj in sorted(self.objects.items())
            if plural == rtype.plural and _selected(obj, namespace, selector)
        ]
        return web.json_response(
            {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.group_version,
                "metadata": {"resourceVersion": str(self.resource_version)},
                "items": items,
            }
        )

    async def _watch(
        self, request: web.Request, rtype: ResourceType, namespace: str | None
    ) -> web.StreamResponse:
        since_text = request.query.get("resourceVersion", "")
        bookmarks = request.query.get("allowWatchBookmarks") in {"true", "1"}
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        selector = request.query.get("labelSelector", "")
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(event: Obj) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        since = int(since_text) if since_text not in {"", "0"} else None
        if since is not None and since < self.compacted - 1:
            expired = f"too old resource version: {since} ({self.compacted - 1})"
            await send({"type": "ERROR", "object": status_body(410, expired, "Expired")})
            return response
        watcher = _Watcher(rtype, namespace, selector)
        if since is None:
            # No resourceVersion: synthetic ADDED events for the current state, as the API does.
            for (plural, _, _), obj in sorted(self.objects.items()):
                if plural == rtype.plural and _selected(obj, namespace, selector):
                    watcher.queue.put_nowait({"type": "ADDED", "object": copy.deepcopy(obj)})
        else:
            for rv, event, plural, obj in self._history:
                if rv > since and plural == rtype.plural and _selected(obj, namespace, selector):
                    watcher.queue.put_nowait({"type": event, "object": copy.deepcopy(obj)})
        self._watchers.add(watcher)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break  # server-side timeout: the stream ends normally
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:
                    # Cut: drop the connection without a clean end of the chunked body.
                    if request.transport is not None:
                        request.transport.close()
                    return response
                if item["type"] == "BOOKMARK" and not bookmarks:
                    continue
                await send(item)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._watchers.discard(watcher)
        return response

    async def _create(
        self, request: web.Request, rtype: ResourceType, namespace: str
    ) -> web.Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _status_response(400, "body must be a JSON object")
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name:
            return _status_response(422, f"{rtype.kind} is invalid: metadata.name: Required value")
        if meta.get("namespace", namespace) != namespace:
            return _status_response(400, "the namespace of the object does not match the path")
        meta["namespace"] = namespace
        meta.pop("resourceVersion", None)
        if rtype.status_subresource:
            body.pop("status", None)  # status is written through /status only
        key = (rtype.plural, namespace, name)
        if key in self.objects:
            return _status_response(
                409,
                f'{rtype.plural} "{name}" already exists',
                "AlreadyExists",
                name=name,
                kind=rtype.plural,
            )
        stored = self._store(rtype, key, body, "ADDED", None)
        return web.json_response(stored, status=201)

    async def _item(
        self, request: web.Request, rtype: ResourceType, namespace: str, name: str
    ) -> web.Response:
        key = (rtype.plural, namespace, name)
        existing = self.objects.get(key)
        if existing is None:
            return _not_found(rtype, name)
        if request.method == "GET":
            return web.json_response(copy.deepcopy(existing))
        if request.method == "DELETE":
            self.delete(rtype.plural, namespace, name)
            return web.json_response(status_ok())
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _status_response(400, "body must be a JSON object")
        if request.method == "PUT":
            new = body
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if not rv:
                return _status_response(
                    422, "metadata.resourceVersion: Invalid value: must be specified for an update"
                )
        elif request.method == "PATCH":
            rv = (body.get("metadata") or {}).get("resourceVersion")
            new = merge_patch(existing, body)
        else:
            return _status_response(405, f"method {request.method} not allowed")
        if rv is not None and rv != existing["metadata"]["resourceVersion"]:
            return _conflict(rtype, name)
        if rtype.status_subresource:
            # With a status subresource, the main endpoint never changes status.
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in existing:
                new["status"] = copy.deepcopy(existing["status"])
        new.setdefault("metadata", {})
        new["metadata"]["name"] = name
        new["metadata"]["namespace"] = namespace
        stored = self._store(rtype, key, new, "MODIFIED", existing)
        if rtype.scalable:
            self._reconcile_workload(rtype.plural, namespace, name)
            stored = copy.deepcopy(self.objects[key])
        return web.json_response(stored)

    async def _status_subresource(
        self, request: web.Request, rtype: ResourceType, namespace: str, name: str
    ) -> web.Response:
        """``/status``: GET the object; PUT/PATCH change its ``status`` only."""
        key = (rtype.plural, namespace, name)
        existing = self.objects.get(key)
        if existing is None:
            return _not_found(rtype, name)
        if request.method == "GET":
            return web.json_response(copy.deepcopy(existing))
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _status_response(400, "body must be a JSON object")
        if request.method == "PUT":
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if not rv:
                return _status_response(
                    422, "metadata.resourceVersion: Invalid value: must be specified for an update"
                )
            status = body.get("status")
        elif request.method == "PATCH":
            rv = (body.get("metadata") or {}).get("resourceVersion")
            status = merge_patch(existing.get("status"), body.get("status", {}))
        else:
            return _status_response(405, f"method {request.method} not allowed")
        if rv is not None and rv != existing["metadata"]["resourceVersion"]:
            return _conflict(rtype, name)
        updated = copy.deepcopy(existing)
        if status is None:
            updated.pop("status", None)
        else:
            updated["status"] = status
        self.status_writes += 1
        return web.json_response(self._store(rtype, key, updated, "MODIFIED", existing))

    async def _scale(
        self, request: web.Request, rtype: ResourceType, namespace: str, name: str
    ) -> web.Response:
        key = (rtype.plural, namespace, name)
        existing = self.objects.get(key)
        if existing is None:
            return _not_found(rtype, name)
        scale = _scale_of(existing)
        if request.method == "GET":
            return web.json_response(scale)
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _status_response(400, "body must be a JSON object")
        if request.method == "PUT":
            new_scale = body
        elif request.method == "PATCH":
            new_scale = merge_patch(scale, body)
        else:
            return _status_response(405, f"method {request.method} not allowed")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != existing["metadata"]["resourceVersion"]:
            return _conflict(rtype, name)
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return _status_response(
                422, f"Scale is invalid: spec.replicas: Invalid value: {replicas!r}"
            )
        updated = copy.deepcopy(existing)
        updated["spec"]["replicas"] = replicas
        if self._reconcile is None:
            updated.setdefault("status", {})["replicas"] = replicas
        self._store(rtype, key, updated, "MODIFIED", existing)
        self._reconcile_workload(rtype.plural, namespace, name)
        return web.json_response(_scale_of(self.objects[key]))


# -- helpers --------------------------------------------------------------------------------


def status_ok() -> Obj:
    """A success Status."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}


def _by_plural(plural: str) -> ResourceType:
    return next(r for r in RESOURCES if r.plural == plural)


def _group_list() -> Obj:
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            groups.setdefault(r.group, [])
            if r.version not in groups[r.group]:
                groups[r.group].append(r.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": name,
                "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                "preferredVersion": {
                    "groupVersion": f"{name}/{versions[0]}",
                    "version": versions[0],
                },
            }
            for name, versions in groups.items()
        ],
    }


_CORE_RE = re.compile(r"^/api/(?P<version>v1)(?P<rest>/.*)?$")
_GROUP_RE = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)(?P<rest>/.*)?$")


def _parse_path(
    path: str,
) -> tuple[str, str, str | None, str | None, str | None, str | None] | None:
    """(group, version, namespace, plural, name, subresource) of an API path."""
    match = _CORE_RE.match(path) or _GROUP_RE.match(path)
    if match is None:
        return None
    group = match.groupdict().get("group") or ""
    version = match.group("version")
    parts = [p for p in (match.group("rest") or "").split("/") if p]
    namespace: str | None = None
    if len(parts) >= 2 and parts[0] == "namespaces":
        namespace = parts[1]
        parts = parts[2:]
        if not parts:
            return None
    if not parts:
        return group, version, None, None, None, None
    if len(parts) > 3:
        return None
    plural = parts[0]
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    return group, version, namespace, plural, name, sub


def _selected(obj: Obj, namespace: str | None, selector: str) -> bool:
    meta = obj.get("metadata") or {}
    if namespace is not None and meta.get("namespace", "") != namespace:
        return False
    return not selector or parse_selector(selector).matches(meta.get("labels") or {})


def _not_found(rtype: ResourceType, name: str) -> web.Response:
    resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
    return _status_response(
        404,
        f'{resource} "{name}" not found',
        "NotFound",
        name=name,
        group=rtype.group,
        kind=rtype.plural,
    )


def _conflict(rtype: ResourceType, name: str) -> web.Response:
    resource = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
    return _status_response(
        409,
        f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        name=name,
        group=rtype.group,
        kind=rtype.plural,
    )


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        return None


def _selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _workload_labels(workload: Obj) -> dict[str, str]:
    if workload["kind"] == "NIMService":
        return dict(workload["metadata"].get("labels") or {})
    return dict(((workload["spec"].get("selector") or {}).get("matchLabels")) or {})


def _scale_of(obj: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale view of a workload."""
    meta = obj["metadata"]
    status = obj.get("status") or {}
    if obj["kind"] == "NIMService":
        selector = status.get("selector", "")
    else:
        selector = selector_from_label_selector(obj["spec"].get("selector") or {})
    scale_status: Obj = {"replicas": int(status.get("replicas", 0))}
    if selector:
        scale_status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": int(obj["spec"].get("replicas", 0))},
        "status": scale_status,
    }


def _parse_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _replicaset_rank(pod: Obj) -> tuple[int, int, int, int, float, float]:
    """The ReplicaSet controller's deletion order (``ActivePodsWithRanks``), first = first to go:
    unscheduled, Pending before Running, not ready, lower pod-deletion-cost, ready for less
    time, newer."""
    status = pod.get("status") or {}
    meta = pod["metadata"]
    scheduled = any(
        c.get("type") == "PodScheduled" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    phase = {"Pending": 0, "Unknown": 1}.get(status.get("phase", ""), 2)
    ready = _pod_ready(pod)
    try:
        cost = int(
            (meta.get("annotations") or {}).get("controller.kubernetes.io/pod-deletion-cost", 0)
        )
    except ValueError:
        cost = 0
    ready_since = next(
        (
            _parse_iso(c["lastTransitionTime"])
            for c in status.get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        ),
        0.0,
    )
    return (
        int(scheduled),
        phase,
        int(ready),
        cost,
        -ready_since,
        -_parse_iso(meta["creationTimestamp"]),
    )


def _pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _pod_status(
    phase: str, ready: bool, created: float, now: float, unschedulable: str | None
) -> Obj:
    scheduled = phase != "Pending"  # the fake's Pending pods are the unscheduled ones
    conditions: list[Obj] = []
    if unschedulable is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
                "lastTransitionTime": iso(created),
            }
        )
    elif scheduled:
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(created)}
        )
    if scheduled:
        conditions.append(
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": iso(now if ready else created),
            }
        )
    return {"phase": phase, "conditions": conditions}


def write_kubeconfig(
    path: Path,
    url: str,
    *,
    namespace: str = "default",
    token: str = "fake",  # noqa: S107 - the fake server accepts any token
) -> Path:
    """Write a kubeconfig whose current context points at the fake server."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": token}}],
        "contexts": [
            {"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}
        ],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))
    return path
