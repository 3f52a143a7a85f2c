"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's ``leaderelection``.

Implements :class:`autoscaler.controller.ports.LeaderGate`. Every ``retry_period`` the elector
reads the Lease and tries to acquire or renew it:

- it acquires when the Lease does not exist (create), has no holder (released), or has expired:
  the record (holder, renewTime...) has not changed for ``lease_duration`` seconds measured on
  the *local* clock since this instance last saw it change, so clock skew between instances
  does not matter (client-go's ``observedTime``);
- a write is a replace (PUT) with the read resourceVersion: a 409 means another candidate
  won this round;
- a leader that has not renewed successfully for ``renew_deadline`` seconds stops being leader:
  :meth:`LeaderElector.is_leader` checks that deadline on every call, so it turns False even
  while a request hangs. With ``renew_deadline < lease_duration`` two instances are never both
  leader;
- :meth:`LeaderElector.stop` makes ``is_leader()`` False at once, then releases the Lease
  (empty holder, ``leaseDurationSeconds: 1``) so another instance takes over immediately.

Neighbours: the control loop asks :meth:`~LeaderElector.is_leader` before writing;
:mod:`autoscaler.kube.factory` builds it from :class:`~autoscaler.settings.Settings`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from autoscaler.clock import Clock, SystemClock
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.kube.pods import parse_time

log = structlog.get_logger(__name__)


def micro_time(ts: float) -> str:
    """``metav1.MicroTime``: RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The election fields of a Lease's spec."""

    holder: str
    lease_duration: int
    acquire_time: float | None
    renew_time: float | None
    transitions: int

    @classmethod
    def from_lease(cls, lease: JsonObject) -> LeaseRecord:
        """Read the record from a Lease object."""
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=parse_time(spec.get("acquireTime")),
            renew_time=parse_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def spec(self) -> JsonObject:
        """The Lease ``spec`` for this record."""
        spec: JsonObject = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = micro_time(self.acquire_time)
        if self.renew_time is not None:
            spec["renewTime"] = micro_time(self.renew_time)
        return spec


class LeaderElector:
    """:class:`~autoscaler.controller.ports.LeaderGate` backed by a Lease.

    Args:
        api: the API client.
        namespace: namespace of the Lease (normally the controller's own).
        name: name of the Lease.
        identity: this instance's unique identity (pod name).
        lease_duration: seconds a non-renewed lease stays valid for the others.
        renew_deadline: seconds a leader keeps trying to renew before giving up leadership
            (must be less than ``lease_duration``).
        retry_period: seconds between attempts.
        clock: time source and sleeper (injectable for tests).
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        if not 0 < retry_period < renew_deadline < lease_duration:
            msg = (
                "leader election needs 0 < retry_period < renew_deadline < lease_duration, got "
                f"{retry_period}, {renew_deadline}, {lease_duration}"
            )
            raise ValueError(msg)
        self._api = api
        self._namespace = namespace
        self._name = name
        self._identity = identity
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._clock: Clock = clock or SystemClock()
        self._observed: LeaseRecord | None = None
        self._observed_rv: str | None = None
        self._observed_time = 0.0
        self._leader = False
        self._last_renew = -math.inf
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._running = False
        self._task: asyncio.Task[None] | None = None

    @property
    def identity(self) -> str:
        """This instance's identity."""
        return self._identity

    @property
    def path(self) -> str:
        """API path of the Lease."""
        return f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases/{self._name}"

    def is_leader(self) -> bool:
        """True while this instance holds the Lease and renewed it within the renew deadline."""
        if not self._leader or self._stopping.is_set():
            return False
        return self._clock.now() - self._last_renew < self._renew_deadline

    def observe(self, lease: JsonObject | None) -> None:
        """Take note of the Lease as read elsewhere (a list); None: it does not exist.

        Lets a candidate that lists many Leases at once track their expiry without reading
        each one (see :mod:`autoscaler.kube.shards`).
        """
        if lease is None:
            self._observed, self._observed_rv = None, None
            return
        self._observe(
            LeaseRecord.from_lease(lease), (lease.get("metadata") or {}).get("resourceVersion")
        )

    def acquirable(self) -> bool:
        """True if the Lease, as last observed, could be taken now: absent, released, held by
        this identity, or not changed for ``lease_duration`` seconds (local clock)."""
        record = self._observed
        if record is None or not record.holder or record.holder == self._identity:
            return True
        return self._observed_time + self._lease_duration <= self._clock.now()

    def start(self) -> None:
        """Run :meth:`run` in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="leader-election")

    async def run(self) -> None:
        """Acquire, then renew, every ``retry_period`` until :meth:`stop`."""
        self._running = True
        try:
            while not self._stopping.is_set():
                try:
                    await self.step()
                except Exception:  # an eternal task: log (with traceback) and retry; never die
                    log.exception("leader_election_step_failed", lease=self._name)
                    self._expire_if_deadline_passed()
                await self._wait(self._retry_period)
        finally:
            self._running = False
            self._stopped.set()

    async def step(self) -> bool:
        """One acquire-or-renew attempt and its effect on leadership; True if it succeeded."""
        if self._stopping.is_set():
            return False
        attempt_at = self._clock.now()
        ok = await self._try_acquire_or_renew(attempt_at)
        if self._stopping.is_set():
            return False
        if ok:
            if not self._leader:
                log.info("leader_elected", lease=self._name, identity=self._identity)
            self._leader = True
            self._last_renew = attempt_at
        else:
            self._expire_if_deadline_passed()
        return ok

    def _expire_if_deadline_passed(self) -> None:
        if self._leader and self._clock.now() - self._last_renew >= self._renew_deadline:
            self._leader = False
            log.warning(
                "leader_lost",
                lease=self._name,
                identity=self._identity,
                reason="renew deadline exceeded",
            )

    async def stop(self) -> None:
        """Give up leadership at once and release the Lease (if held) for a fast takeover."""
        self._stopping.set()
        was_leader = self._leader
        self._leader = False
        if self._task is not None:
            await self._task
        elif self._running:
            await self._stopped.wait()
        if was_leader or (self._observed is not None and self._observed.holder == self._identity):
            await self._release()

    # -- internals ------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()

    def _observe(self, record: LeaseRecord, resource_version: str | None) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_time = self._clock.now()
        self._observed_rv = resource_version

    async def _try_acquire_or_renew(self, now: float) -> bool:
        duration = max(1, math.ceil(self._lease_duration))
        timeout = self._renew_deadline
        try:
            try:
                lease = await self._api.request("GET", self.path, request_timeout=timeout)
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                return await self._create(now, duration, timeout)
            record = LeaseRecord.from_lease(lease)
            self._observe(record, (lease.get("metadata") or {}).get("resourceVersion"))
            if (
                record.holder
                and record.holder != self._identity
                and self._observed_time + self._lease_duration > self._clock.now()
            ):
                return False  # held by another and not expired (as observed locally)
            if record.holder == self._identity:
                new = replace(record, renew_time=now, lease_duration=duration)
            else:
                new = LeaseRecord(self._identity, duration, now, now, record.transitions + 1)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self._name,
                    "namespace": self._namespace,
                    "resourceVersion": self._observed_rv,
                },
                "spec": new.spec(),
            }
            updated = await self._api.request("PUT", self.path, body=body, request_timeout=timeout)
        except KubeApiError as exc:
            if exc.status == 409:
                log.debug("lease_conflict", lease=self._name, identity=self._identity)
            else:
                log.warning(
                    "lease_update_failed",
                    lease=self._name,
                    status=exc.status,
                    reason=exc.reason,
                    error=exc.message,
                )
            return False
        if record.holder != self._identity:
            log.info(
                "lease_acquired",
                lease=self._name,
                identity=self._identity,
                previous=record.holder or None,
                transitions=new.transitions,
            )
        self._observe(new, (updated.get("metadata") or {}).get("resourceVersion"))
        return True

    async def _create(self, now: float, duration: int, request_timeout: float) -> bool:
        record = LeaseRecord(self._identity, duration, now, now, 0)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": record.spec(),
        }
        try:
            created = await self._api.request(
                "POST",
                f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases",
                body=body,
                request_timeout=request_timeout,
            )
        except KubeApiError as exc:
            if exc.status != 409:
                log.warning(
                    "lease_create_failed", lease=self._name, status=exc.status, error=exc.message
                )
            return False
        log.info("lease_created", lease=self._name, identity=self._identity)
        self._observe(record, (created.get("metadata") or {}).get("resourceVersion"))
        return True

    async def _release(self) -> None:
        """Clear the holder so another candidate can acquire without waiting for expiry."""
        now = self._clock.now()
        try:
            lease = await self._api.request("GET", self.path)
            record = LeaseRecord.from_lease(lease)
            if record.holder != self._identity:
                return
            released = LeaseRecord("", 1, now, now, record.transitions)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self._name,
                    "namespace": self._namespace,
                    "resourceVersion": (lease.get("metadata") or {}).get("resourceVersion"),
                },
                "spec": released.spec(),
            }
            await self._api.request("PUT", self.path, body=body)
        except KubeApiError as exc:
            log.warning(
                "lease_release_failed", lease=self._name, status=exc.status, error=exc.message
            )
            return
        log.info("lease_released", lease=self._name, identity=self._identity)
