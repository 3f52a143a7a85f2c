"""Sharding across controller replicas: one ``coordination.k8s.io`` Lease per shard.

Implements :class:`autoscaler.controller.ports.ShardGate`. Policies are split into ``shards``
shards by namespace: a policy belongs to shard ``crc32(namespace) % shards``
(:func:`shard_of_namespace`), the same in every process and version. By namespace, not by
policy: the batched PromQL queries select by namespace, so a replica that owns half the
namespaces reads and decodes half the series.

Each replica runs one :class:`ShardManager`, which every ``retry_period``:

1. renews its membership Lease ``<lease>-member-<identity>`` (a
   :class:`~autoscaler.kube.leader.LeaderElector` of its own);
2. lists the Leases of its namespace (one request) and counts the live members: membership
   Leases with a holder whose record changed within ``lease_duration`` on the *local* clock
   (as the elector judges expiry, so clock skew between replicas does not matter);
3. renews the shard Leases it holds (``<lease>-shard-<i>``, one elector each: renew deadline,
   release on shutdown, exactly as the single-leader election);
4. computes its fair share ``ceil(shards / members)``; above it, releases the excess (highest
   shard numbers first) -- the shard stops being owned at once, the release is written after
   the control loop's tick in progress has finished (``quiesce``), so the next owner starts
   from the history that tick saved; below it, campaigns for free or expired shard Leases
   until it holds its share (starting at an offset derived from its identity, so replicas
   starting together try different shards first).

**Its own thread.** Built with ``api_factory`` (as :mod:`autoscaler.kube.factory` does), the
manager runs in a thread of its own, with its own event loop and API client: a tick of a large
fleet keeps the controller's event loop busy for seconds at a time (deciding thousands of
policies is CPU work), which would otherwise delay renewals past the renew deadline and let the
Leases expire under a healthy replica (measured at 10,000 policies: the replicas took each
other's shards in turn). The control loop reads ownership from it without locks (membership
tests of sets only touched by the manager's thread); gains and quiesce are handed to the
controller's loop.

Since ``members x ceil(shards / members) >= shards``, every shard has a taker: a shard whose
holder stopped (Lease released) is picked up within one round; one whose holder died (no
release) once its Lease has not changed for ``lease_duration`` seconds, when the dead member's
membership Lease has expired too. Two replicas never own a shard at once as long as
``renew_deadline < lease_duration`` (the elector's guarantee, per shard).

Neighbours: the control loop asks :meth:`ShardManager.owns` per policy (the tick takes only
owned policies, and checks again before every write); :mod:`autoscaler.kube.factory` builds it
when ``settings.shards > 1`` (one shard keeps the single Lease of
:mod:`autoscaler.kube.leader`) and tells the history store (:mod:`autoscaler.kube.history`) of
every shard gained, so that shard's history is read afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import threading
import zlib
from collections.abc import Awaitable, Callable

import structlog

from autoscaler.clock import Clock, SystemClock
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.kube.leader import LeaderElector, LeaseRecord

log = structlog.get_logger(__name__)

_INVALID = re.compile(r"[^a-z0-9.-]+")


def shard_of_namespace(namespace: str, shards: int) -> int:
    """The shard of a namespace: ``crc32(namespace) % shards`` (stable across processes)."""
    return zlib.crc32(namespace.encode()) % shards


def shard_lease_name(lease: str, shard: int) -> str:
    """Name of shard ``shard``'s Lease: ``<lease>-shard-<shard>``."""
    return f"{lease}-shard-{shard}"


def member_lease_name(lease: str, identity: str) -> str:
    """Name of a replica's membership Lease: ``<lease>-member-<identity>`` (a DNS name)."""
    clean = _INVALID.sub("-", identity.lower()).strip("-.") or "member"
    return f"{lease}-member-{clean}"[:253].rstrip("-.")


class ShardManager:
    """:class:`~autoscaler.controller.ports.ShardGate`: the shards this replica owns.

    Args:
        api: the API client (None with ``api_factory``).
        namespace: namespace of the Leases (the controller's own).
        lease: base name of the Leases (``settings.leader_election_lease_name``).
        identity: this replica's unique identity (pod name).
        shards: number of shards (fixed for a cluster).
        lease_duration: seconds a Lease not renewed stays valid for the others.
        renew_deadline: seconds a holder keeps trying to renew before giving a shard up.
        retry_period: seconds between rounds.
        clock: time source and sleeper (injectable for tests).
        on_gain: called with a shard's number when this replica acquires it.
        quiesce: awaited between giving up a shard and releasing its Lease (the control
            loop's ``wait_idle``: the tick in progress finishes and saves its history first).
        api_factory: builds an API client; given, :meth:`start` runs the manager in a thread
            of its own with a client made there (``on_gain`` and ``quiesce`` then run on the
            event loop that called :meth:`start`).
    """

    def __init__(
        self,
        api: KubeApi | None,
        namespace: str,
        lease: str,
        identity: str,
        *,
        shards: int,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
        on_gain: Callable[[int], None] | None = None,
        quiesce: Callable[[], Awaitable[None]] | None = None,
        api_factory: Callable[[], Awaitable[KubeApi]] | None = None,
    ) -> None:
        if shards < 1:
            msg = f"shards must be >= 1, got {shards}"
            raise ValueError(msg)
        if (api is None) == (api_factory is None):
            msg = "give exactly one of api and api_factory"
            raise ValueError(msg)
        self._api = api
        self._api_factory = api_factory
        self._home: asyncio.AbstractEventLoop | None = None
        """The loop that called :meth:`start` (thread mode: where callbacks run)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        """The manager's own loop (thread mode)."""
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._namespace = namespace
        self._lease = lease
        self._identity = identity
        self._shards = shards
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._clock: Clock = clock or SystemClock()
        self.on_gain = on_gain
        self.quiesce = quiesce
        self._member: LeaderElector | None = None
        self._electors: list[LeaderElector] = []
        """One elector per shard (made in the manager's thread in thread mode)."""
        if api is not None:
            self._make_electors()
        self._held: set[int] = set()
        self._releasing: set[int] = set()
        self._members_seen: dict[str, tuple[LeaseRecord, float]] = {}
        self._members = 1
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._offset = zlib.crc32(identity.encode()) % shards

    def _make_electors(self) -> None:
        self._member = self._elector(member_lease_name(self._lease, self._identity))
        self._electors = [
            self._elector(shard_lease_name(self._lease, i)) for i in range(self._shards)
        ]

    def _elector(self, name: str) -> LeaderElector:
        api = self._api
        assert api is not None
        return LeaderElector(
            api,
            self._namespace,
            name,
            self._identity,
            lease_duration=self._lease_duration,
            renew_deadline=self._renew_deadline,
            retry_period=self._retry_period,
            clock=self._clock,
        )

    # ---- the gate --------------------------------------------------------------------------

    @property
    def shards(self) -> int:
        """The number of shards."""
        return self._shards

    @property
    def identity(self) -> str:
        """This replica's identity."""
        return self._identity

    @property
    def members(self) -> int:
        """Live members (this replica included) as counted in the last round."""
        return self._members

    def shard_of(self, namespace: str) -> int:
        """The shard of ``namespace``."""
        return shard_of_namespace(namespace, self._shards)

    def owns_shard(self, shard: int) -> bool:
        """True while this replica holds shard ``shard``'s Lease within the renew deadline."""
        return (
            shard in self._held
            and shard not in self._releasing
            and self._electors[shard].is_leader()
        )

    def owns(self, namespace: str) -> bool:
        """True while this replica owns the shard of ``namespace`` (it may write its targets)."""
        return self.owns_shard(shard_of_namespace(namespace, self._shards))

    def owned(self) -> frozenset[int]:
        """The shards owned now."""
        return frozenset(i for i in range(self._shards) if self.owns_shard(i))

    def is_leader(self) -> bool:
        """True while this replica owns at least one shard."""
        return any(self.owns_shard(i) for i in range(self._shards))

    # ---- running -------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` in a background task (with ``api_factory``: in its own thread)."""
        if self._api_factory is None:
            if self._task is None:
                self._task = asyncio.create_task(self.run(), name="shard-manager")
            return
        if self._thread is None:
            self._home = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=asyncio.run, args=(self._thread_main(),), name="shard-manager", daemon=True
            )
            self._thread.start()

    async def _thread_main(self) -> None:
        """The thread's loop: make the client and the electors, run, release, close."""
        assert self._api_factory is not None
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        try:
            api = await self._api_factory()
        except Exception:  # no client: this replica owns nothing (logged; the others take all)
            log.exception("shard_manager_client_failed", identity=self._identity)
            return
        try:
            self._api = api
            self._make_electors()
            await self.run()
            await self._release_all()
        finally:
            await api.close()

    async def run(self) -> None:
        """One round every ``retry_period`` until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                await self.step()
            except Exception:  # an eternal task: log (with traceback) and retry; never die
                log.exception("shard_round_failed", identity=self._identity)
            await self._wait(self._retry_period)

    async def step(self) -> None:
        """One round: membership, renewals, then release the excess or campaign for the share."""
        if self._stopping.is_set() or self._member is None:
            return
        await self._member.step()
        leases = await self._list()
        if leases is None:  # nothing known of the others: renew what is held, take nothing
            await asyncio.gather(*(self._renew(i) for i in sorted(self._held)))
            return
        self._members = self._count_members(leases)
        for i, elector in enumerate(self._electors):
            if i not in self._held:
                elector.observe(leases.get(shard_lease_name(self._lease, i)))
        await asyncio.gather(*(self._renew(i) for i in sorted(self._held)))
        if self._stopping.is_set():
            return
        share = math.ceil(self._shards / self._members)
        excess = len(self._held) - share
        if excess > 0:
            for shard in sorted(self._held, reverse=True)[:excess]:
                await self._release(shard, reason="rebalance")
        elif excess < 0:
            await self._campaign(-excess)

    async def stop(self) -> None:
        """Own nothing at once, then release every held shard Lease and the membership Lease."""
        self._releasing.update(range(self._shards))
        if self._thread is not None:
            await asyncio.to_thread(self._ready.wait, 10.0)
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the thread's loop has just ended
                    self._loop.call_soon_threadsafe(self._stopping.set)
            await asyncio.to_thread(self._thread.join)
            return
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self._release_all()

    async def _release_all(self) -> None:
        held = sorted(self._held)
        await asyncio.gather(*(self._electors[i].stop() for i in held))
        self._held.clear()
        self._releasing.clear()
        if self._member is not None:
            await self._member.stop()
        if held:
            log.info("shards_released", identity=self._identity, shards=held)

    # ---- internals -------------------------------------------------------------------------

    async def _wait(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()

    async def _list(self) -> dict[str, JsonObject] | None:
        """The Leases of the namespace by name (None when the list failed)."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self._namespace}/leases"
        assert self._api is not None
        try:
            answer = await self._api.request("GET", path, request_timeout=self._renew_deadline)
        except KubeApiError as exc:
            log.warning("shard_lease_list_failed", status=exc.status, error=exc.message)
            return None
        items = answer.get("items") or []
        return {
            str((item.get("metadata") or {}).get("name")): item
            for item in items
            if isinstance(item, dict)
        }

    def _count_members(self, leases: dict[str, JsonObject]) -> int:
        prefix = f"{self._lease}-member-"
        own = member_lease_name(self._lease, self._identity)
        now = self._clock.now()
        seen: dict[str, tuple[LeaseRecord, float]] = {}
        live = 1  # this replica
        for name, lease in leases.items():
            if not name.startswith(prefix) or name == own:
                continue
            record = LeaseRecord.from_lease(lease)
            previous = self._members_seen.get(name)
            since = previous[1] if previous is not None and previous[0] == record else now
            seen[name] = (record, since)
            if record.holder and now - since < self._lease_duration:
                live += 1
        self._members_seen = seen
        if live != self._members:
            log.info("shard_members", identity=self._identity, members=live)
        return live

    async def _renew(self, shard: int) -> None:
        elector = self._electors[shard]
        await elector.step()
        if not elector.is_leader():
            self._held.discard(shard)
            self._electors[shard] = self._elector(shard_lease_name(self._lease, shard))
            log.warning("shard_lost", identity=self._identity, shard=shard)

    async def _release(self, shard: int, *, reason: str) -> None:
        self._releasing.add(shard)  # owned no more, from now on
        try:
            await self._quiesce()
            await self._electors[shard].stop()
        finally:
            self._held.discard(shard)
            self._releasing.discard(shard)
            self._electors[shard] = self._elector(shard_lease_name(self._lease, shard))
        log.info("shard_released", identity=self._identity, shard=shard, reason=reason)

    async def _campaign(self, wanted: int) -> None:
        order = [(self._offset + k) % self._shards for k in range(self._shards)]
        for shard in order:
            if wanted <= 0 or self._stopping.is_set():
                return
            elector = self._electors[shard]
            if shard in self._held or not elector.acquirable():
                continue
            if await elector.step():
                if not self._stopping.is_set():
                    self._gained(shard)  # before it is owned: its history is read afresh
                self._held.add(shard)  # released by stop() if it is stopping meanwhile
                wanted -= 1
                if self._stopping.is_set():
                    return
                log.info(
                    "shard_acquired",
                    identity=self._identity,
                    shard=shard,
                    members=self._members,
                    held=len(self._held),
                )

    def _gained(self, shard: int) -> None:
        """Tell ``on_gain`` (on the controller's loop in thread mode)."""
        if self.on_gain is None:
            return
        if self._home is not None and self._thread is not None:
            self._home.call_soon_threadsafe(self.on_gain, shard)
        else:
            self.on_gain(shard)

    async def _quiesce(self) -> None:
        """Await ``quiesce`` (on the controller's loop in thread mode)."""
        if self.quiesce is None:
            return
        if self._home is not None and self._thread is not None:
            future = asyncio.run_coroutine_threadsafe(_awaited(self.quiesce), self._home)
            await asyncio.wrap_future(future)
        else:
            await self.quiesce()


async def _awaited(quiesce: Callable[[], Awaitable[None]]) -> None:
    await quiesce()
