"""Pod deletion-cost annotations, written before a drain-aware scale-down.

Implements :class:`autoscaler.controller.ports.PodAnnotator` for Kubernetes: one JSON merge
PATCH per pod setting (or, with ``null``, removing) ``controller.kubernetes.io/pod-deletion-cost``.
The control loop calls it, only as leader and only in ``active`` mode, with the marks of
:func:`autoscaler.decision.drain.plan_drain` just before it lowers ``/scale``. A pod deleted
meanwhile (404) or a refused write is reported per pod, never raised: the scale-down goes on and
the ReplicaSet falls back to its own order for that pod. Needs ``patch`` on ``pods`` (the chart
grants it when ``drainAware`` is on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from autoscaler.decision.drain import DELETION_COST
from autoscaler.kube.client import MERGE_PATCH, KubeApi, KubeApiError

log = structlog.get_logger(__name__)


class KubePodAnnotator:
    """Writes pods' deletion costs with merge patches (bounded concurrency).

    Args:
        api: the API client.
        concurrency: patches in flight at once.
        request_timeout: timeout of one patch, seconds.
        attempts: tries per pod on retryable errors (429, 5xx, timeouts).
        backoff: pause between two tries, seconds.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        concurrency: int = 8,
        request_timeout: float = 5.0,
        attempts: int = 2,
        backoff: float = 0.2,
    ) -> None:
        self._api = api
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._semaphore = asyncio.Semaphore(concurrency)
        self._timeout = request_timeout

    async def set_deletion_costs(
        self, namespace: str, costs: Mapping[str, int | None]
    ) -> Mapping[str, str]:
        """Patch every pod; returns pod -> error for the ones that failed."""
        failed: dict[str, str] = {}

        async def one(pod: str, cost: int | None) -> None:
            value = None if cost is None else str(cost)
            body = {"metadata": {"annotations": {DELETION_COST: value}}}
            path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
            async with self._semaphore:
                try:
                    await self._patch(path, body)
                except KubeApiError as exc:
                    if exc.status == 404:
                        failed[pod] = "pod not found (deleted meanwhile)"
                    elif exc.status == 403:
                        failed[pod] = (
                            "forbidden: missing RBAC rule: verb 'patch' on resource 'pods' "
                            f'in apiGroup "" (core) in namespace {namespace!r}'
                        )
                    else:
                        failed[pod] = str(exc)
                    return
            log.info("pod_deletion_cost", pod=f"{namespace}/{pod}", cost=value)

        await asyncio.gather(*(one(pod, cost) for pod, cost in costs.items()))
        return failed

    async def _patch(self, path: str, body: object) -> None:
        """One merge patch, retried once after a short pause on a retryable error."""
        for attempt in range(self._attempts):
            try:
                await self._api.request(
                    "PATCH",
                    path,
                    body=body,
                    content_type=MERGE_PATCH,
                    request_timeout=self._timeout,
                )
            except KubeApiError as exc:
                if not exc.retryable or attempt + 1 == self._attempts:
                    raise
                await asyncio.sleep(self._backoff)
            else:
                return
