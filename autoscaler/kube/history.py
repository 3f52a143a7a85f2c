"""Durable decision history in sharded ConfigMaps, so a restart or failover changes no decision.

Implements :class:`autoscaler.controller.ports.HistoryStore` for Kubernetes. Layout: ``shards``
ConfigMaps in the controller's namespace, ``<name>-<i>`` for ``i`` in ``0..shards-1`` (default
``nim-autoscaler-history-0`` ...), one data key per policy, ``<namespace>.<name>`` (both DNS
names, so the key is a valid ConfigMap key and unique), whose value is the compact JSON of
``History.to_json()``. A policy lives in shard ``crc32("<namespace>/<name>") % shards``: stable
across processes, versions and restarts (unlike Python's ``hash``).

With the controller sharded across replicas (``controller_shards`` C > 1,
:mod:`autoscaler.kube.shards`), the number of ConfigMaps N is rounded up to a multiple of C and
a policy lives in ConfigMap ``crc32(namespace) % C + C * (blake2b("<namespace>/<name>") % (N /
C))``: ConfigMap ``i`` holds only policies of controller shard ``i % C``, so each ConfigMap has
one writer (the owner of that shard), and a shard's policies still spread over N / C
ConfigMaps. With C = 1 the formula above is kept (existing installs find their history). The
store then touches only the ConfigMaps of owned shards (``owns_shard``): the others are neither
read, written nor expired, and what it held of them is dropped;
:meth:`KubeHistoryStore.invalidate` (called on gaining a shard) makes the next load read afresh
what the previous owner saved. A write of a shard lost meanwhile that meets a 409 is dropped
(its new owner's data wins).

- ``load`` reads the policy's shard (one read serves further loads of that shard for
  ``max_age`` seconds, so many policies restored at start cost one request per shard, and a
  later ``load`` -- e.g. on becoming leader -- sees what another instance saved). A missing
  ConfigMap or key is "no history"; unreadable JSON for one policy is logged and that policy
  starts fresh. A shard that cannot be read (API error) raises :class:`HistoryUnavailable`:
  the caller must not take that for "no history" (and overwrite the saved one); it retries on a
  later tick. Other shards are unaffected.
- ``save`` queues the policy's history; ``flush`` (once per tick) writes each shard whose data
  changed, concurrently, with resourceVersion optimistic concurrency (replace with the version
  last read; on 409 it re-reads that shard, merges again and retries, bounded). A shard is
  written at once when one of its policies' *events* changed (a new recommended count, a
  scale event, the failure count, the pods known, scale-to-zero state), and otherwise at most
  once per ``save_interval`` at a phase of its own in the interval: a steady fleet's
  recommendations repeat the same count and its learned capacity moves a little every tick,
  and writing them every tick made the history the largest part of a steady tick's API
  requests. What a crash can lose is therefore at most ``save_interval`` seconds of repeats of
  the newest recommended count (the loop carries that count forward to the restart:
  :func:`autoscaler.decision.types.resumed`, so a stabilization window never ends earlier
  than without the restart) and of capacity learning; never a scale event or a change of
  recommendation. A graceful stop writes everything queued (``flush(force=True)``).
  Histories are serialised only when their shard is written. A shard
  deleted under the controller (404 on replace) is created again from what the store holds. A
  shard that would pass ``max_bytes`` (well under the API server's 1 MiB object limit) is not
  written and says so, naming the shard, the sizes and its policies; the other shards are.
- Keys of policies that are no longer saved (the policy was removed) are deleted after
  ``grace`` seconds, so a policy briefly gone (a bad edit, a file moved) keeps its history.
- Upgrades: the single ConfigMap ``<name>`` of earlier versions is read once; keys not yet in
  their shard are served from it and written to their shard at the next flush, after which the
  old ConfigMap is deleted.

Failures of ``save``/``flush`` are logged, never raised: the decision core keeps its in-memory
history and the next flush tries again. Neighbours: the control loop calls it;
:mod:`autoscaler.kube.factory` builds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from autoscaler.decision.types import History
from autoscaler.errors import AutoscalerError
from autoscaler.kube.client import JsonObject, KubeApi, KubeApiError
from autoscaler.kube.shards import shard_of_namespace
from autoscaler.policy.models import ScalingPolicy

log = structlog.get_logger(__name__)

DEFAULT_NAME = "nim-autoscaler-history"
"""Base name of the history ConfigMaps (and the name of the pre-sharding single ConfigMap)."""

DEFAULT_SHARDS = 8
"""Number of history ConfigMaps."""

MAX_BYTES = 900_000
"""Largest size of one shard's data, bytes (the API server refuses objects > 1 MiB)."""

DEFAULT_SAVE_INTERVAL = 60.0
"""Seconds between writes of a shard whose policies only added recommendations or learned."""

DEFAULT_GRACE = 3600.0
"""Seconds a removed policy's history is kept before its key is deleted."""


class HistoryUnavailable(AutoscalerError):
    """A history shard could not be read; the policy's saved history is unknown (not absent)."""


def history_key(policy: ScalingPolicy) -> str:
    """The ConfigMap data key of a policy: ``<namespace>.<name>``."""
    return f"{policy.metadata.namespace}.{policy.metadata.name}"


def shard_of(policy_key: str, shards: int) -> int:
    """The shard of a policy (``namespace/name``): a stable hash, the same in every process."""
    return zlib.crc32(policy_key.encode()) % shards


@dataclass(frozen=True, slots=True)
class _Stored:
    """A value this store wrote from a history it still holds: the text's digest and the
    ``held_back`` it was serialised with, not the text (about 6 KB per policy). The text is
    serialised again from :attr:`_Shard.latest` when a write needs it and the policy has no
    newer history queued (a policy removed, a tick that could not decide)."""

    digest: bytes
    held: float


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass
class _Shard:
    """What the store knows of one shard ConfigMap."""

    name: str
    data: dict[str, str | _Stored] = field(default_factory=dict)
    """Key -> the stored value: its text as read, or :class:`_Stored` for what this store wrote
    from a history in :attr:`latest`."""
    rv: str | None = None
    exists: bool = False
    loaded: bool = False
    fetched_at: float = -math.inf
    pending: dict[str, tuple[History | str, str]] = field(default_factory=dict)
    """Key -> (history, or its serialised form, policy key) waiting for
    :meth:`KubeHistoryStore.flush`."""
    expired: list[str] = field(default_factory=list)
    """Keys the write being prepared deletes (their grace is over)."""
    serialised: dict[str, float] = field(default_factory=dict)
    """Keys of :attr:`pending` serialised from their history (not text from the pre-sharding
    ConfigMap) -> the ``held_back`` they were serialised with."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    saved_at: float | None = None
    """When this store last wrote the shard or found nothing to write (monotonic)."""
    urgent: bool = False
    """A queued history changed an event: write at the next flush, whatever the interval."""
    latest: dict[str, tuple[History, str]] = field(default_factory=dict)
    """Key -> the history last saved (and its policy key), written or not."""
    held: bool = False
    """What the shard holds was written saying repeats may follow unwritten (``heldBack``)."""


def _events(history: History) -> tuple[object, ...]:
    """What a restart must not lose: a change of any of these is written at once.

    The newest recommendation's count is one: so what is not yet written is only ever a run
    of recommendations equal to the newest one written, which a restart carries forward
    (:func:`autoscaler.decision.types.resumed`) instead of losing.
    """
    newest = history.recommendations[-1].replicas if history.recommendations else None
    return (
        newest,
        history.initialized,
        history.scale_up_events,
        history.scale_down_events,
        history.consecutive_failures,
        history.known_pods,
        history.zero,
    )


def _same(stored: str | _Stored | None, text: str) -> bool:
    """Whether ``text`` is what is stored."""
    if isinstance(stored, _Stored):
        return stored.digest == _digest(text)
    return stored == text


def _serialise(value: History | str, held_back: float) -> str:
    """The stored form; ``held_back``: how long unwritten repeats may follow (see
    :func:`autoscaler.decision.types.resumed`)."""
    if isinstance(value, str):
        return value
    if value.held_back != held_back:
        value = replace(value, held_back=held_back)
    # No cycle check: to_json() builds a fresh tree of plain dicts and lists (15 % faster).
    return json.dumps(value.to_json(), separators=(",", ":"), sort_keys=True, check_circular=False)


class KubeHistoryStore:
    """:class:`~autoscaler.controller.ports.HistoryStore` on ``shards`` ConfigMaps.

    Args:
        api: the API client.
        namespace: the controller's namespace (where the ConfigMaps live).
        name: base name of the ConfigMaps (shard ``i`` is ``<name>-<i>``).
        shards: number of shards; changing it moves policies between shards (their histories
            are then found again only in their old shard: keep it fixed for a cluster).
        max_bytes: size limit of one shard's data (keys + values), bytes.
        conflict_retries: re-read-and-retry rounds after 409 conflicts, per shard.
        max_age: seconds a read of a shard serves ``load`` calls before it is read again.
        grace: seconds after which the key of a policy no longer saved is deleted.
        monotonic: time source for ``max_age``, ``grace`` and ``save_interval`` (injectable
            for tests).
        save_interval: seconds between writes of a shard whose policies changed no event
            (0: every flush writes what changed).
        controller_shards: the controller's shard count (``settings.shards``); the ConfigMaps
            are rounded up to a multiple of it.
        owns_shard: whether this replica owns a controller shard now (None: it owns all).
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        *,
        name: str = DEFAULT_NAME,
        shards: int = DEFAULT_SHARDS,
        max_bytes: int = MAX_BYTES,
        conflict_retries: int = 5,
        max_age: float = 5.0,
        grace: float = DEFAULT_GRACE,
        monotonic: Callable[[], float] = time.monotonic,
        controller_shards: int = 1,
        owns_shard: Callable[[int], bool] | None = None,
        save_interval: float = DEFAULT_SAVE_INTERVAL,
    ) -> None:
        if shards < 1:
            msg = f"history shards must be >= 1, got {shards}"
            raise ValueError(msg)
        if controller_shards < 1:
            msg = f"controller shards must be >= 1, got {controller_shards}"
            raise ValueError(msg)
        self._controller_shards = controller_shards
        self.owns_shard = owns_shard
        shards = math.ceil(shards / controller_shards) * controller_shards
        self._api = api
        self._namespace = namespace
        self._name = name
        self._max_bytes = max_bytes
        self._retries = conflict_retries
        self._max_age = max_age
        self._grace = grace
        self._save_interval = save_interval
        self._monotonic = monotonic
        self._shards = [_Shard(f"{name}-{i}") for i in range(shards)]
        self._seen: dict[str, float] = {}
        """Data key -> when it was last saved (or first found in a shard)."""
        self._forcing = False
        """Inside a forced flush (what it writes holds nothing back)."""
        self._events: dict[str, tuple[object, ...]] = {}
        """Data key -> the events of the history last queued (see :func:`_events`)."""
        self._legacy: dict[str, str] | None = None
        """The pre-sharding ConfigMap's data (None: not read yet)."""
        self._legacy_exists = False
        self._legacy_lock = asyncio.Lock()
        self._migrating: set[str] = set()
        """Keys queued from the pre-sharding ConfigMap (their shard's own value wins)."""

    def path(self, shard: int) -> str:
        """API path of one shard ConfigMap."""
        return self._object_path(self._shards[shard].name)

    def shard_name(self, policy: ScalingPolicy) -> str:
        """Name of the ConfigMap holding ``policy``'s history."""
        return self._shards[self._index(policy.metadata.namespace, policy.key)].name

    def _index(self, namespace: str, policy_key: str) -> int:
        """The ConfigMap of a policy (see the module docstring)."""
        c = self._controller_shards
        if c == 1:
            return shard_of(policy_key, len(self._shards))
        # Not crc32 for the spread within the shard: crc32 is affine, so its bits for
        # "<namespace>/<name>" are correlated with those of crc32(namespace) used above.
        digest = hashlib.blake2b(policy_key.encode(), digest_size=8).digest()
        spread = int.from_bytes(digest, "big") % (len(self._shards) // c)
        return shard_of_namespace(namespace, c) + c * spread

    def _owned(self, index: int) -> bool:
        """True if this replica owns the controller shard of ConfigMap ``index``."""
        return self.owns_shard is None or self.owns_shard(index % self._controller_shards)

    def invalidate(self, controller_shard: int) -> None:
        """Forget what is cached of a controller shard's ConfigMaps: the next load reads them.

        Called when this replica gains the shard: another replica may have written since.
        """
        for index in range(controller_shard, len(self._shards), self._controller_shards):
            self._drop(self._shards[index])

    def _drop(self, shard: _Shard) -> None:
        for key in shard.data:
            self._seen.pop(key, None)
        shard.data, shard.rv, shard.exists = {}, None, False
        shard.loaded, shard.fetched_at = False, -math.inf
        shard.saved_at, shard.urgent = None, False
        shard.latest, shard.held = {}, False
        shard.serialised, shard.expired = {}, []

    def _object_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{self._namespace}/configmaps/{name}"

    async def load(self, policy: ScalingPolicy) -> History | None:
        """The saved history of ``policy``, or None (none saved, or unreadable).

        Raises:
            HistoryUnavailable: the policy's shard (or the pre-sharding ConfigMap, until it is
                migrated) cannot be read; the saved history is unknown.
        """
        key = history_key(policy)
        shard = self._shards[self._index(policy.metadata.namespace, policy.key)]
        async with shard.lock:
            if not shard.loaded or self._monotonic() - shard.fetched_at > self._max_age:
                await self._fetch_or_raise(shard, policy)
        text = self._text(shard, key)
        if text is None:
            text = await self._from_legacy(key, policy)
            if text is None:
                return None
            self._seen.setdefault(key, self._monotonic())
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                msg = f"expected a JSON object, got {type(data).__name__}"
                raise ValueError(msg)
            history = History.from_json(data)
        except ValueError as exc:
            log.error(
                "history_unreadable_starting_fresh",
                policy=policy.key,
                configmap=f"{self._namespace}/{shard.name}",
                key=key,
                error=str(exc),
            )
            return None
        log.info(
            "history_restored", policy=policy.key, recommendations=len(history.recommendations)
        )
        return history

    async def save(self, policy: ScalingPolicy, history: History) -> None:
        """Queue ``history`` for ``policy``; it is written by a later :meth:`flush`.

        The control loop saves every policy and then flushes once per tick, so a tick costs at
        most one write per shard (none when nothing changed or the shard is not due).
        """
        key = history_key(policy)
        index = self._index(policy.metadata.namespace, policy.key)
        shard = self._shards[index]
        shard.pending[key] = (history, policy.key)
        shard.latest[key] = (history, policy.key)
        events = _events(history)
        if self._events.get(key) != events:
            self._events[key] = events
            shard.urgent = True
        self._seen[key] = self._monotonic()
        self._migrating.discard(key)

    async def flush(self, *, force: bool = False) -> None:
        """Write every shard that is due and whose data changed (concurrently); expire keys.

        A shard is due when a queued history changed an event, or ``save_interval`` has passed
        since its last write (each shard at a phase of its own). ``force``: write every shard
        with something queued now, and only those (a graceful stop). Never raises: each
        shard's failure is logged and its queued histories stay queued for the next flush; the
        other shards are written.
        """
        await self._migrate_legacy()
        now = self._monotonic()
        if force:
            for shard in self._shards:
                if shard.held:  # mark what is stored as complete (nothing held back)
                    for key, entry in shard.latest.items():
                        shard.pending.setdefault(key, entry)
        self._forcing = force
        try:
            await asyncio.gather(
                *(
                    self._flush_shard(shard, i)
                    for i, shard in enumerate(self._shards)
                    if not self._owned(i) or self._due(shard, now, force)
                )
            )
        finally:
            self._forcing = False
        await self._retire_legacy()

    def _due(self, shard: _Shard, now: float, force: bool) -> bool:
        """Whether an owned shard is written (or its expired keys deleted) at this flush."""
        if force:
            return bool(shard.pending)
        if shard.urgent or shard.saved_at is None:
            return True
        age = now - shard.saved_at
        return age >= self._save_interval or age < 0

    # ---- one shard ------------------------------------------------------------------------

    async def _flush_shard(self, shard: _Shard, index: int) -> None:
        async with shard.lock:
            if not self._owned(index) and not shard.pending:
                if shard.loaded:
                    self._drop(shard)  # another replica's now
                return
            try:
                if not shard.loaded:
                    await self._fetch(shard)
                    now = self._monotonic()
                    for key in shard.data:
                        self._seen.setdefault(key, now)
                for attempt in range(self._retries + 1):
                    data = self._next_data(shard)
                    if data is None:
                        self._written(shard, index)
                        return
                    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
                    if size > self._max_bytes:
                        log.error(
                            "history_shard_too_large",
                            configmap=f"{self._namespace}/{shard.name}",
                            bytes=size,
                            limit=self._max_bytes,
                            policies=sorted(policy for _, policy in shard.pending.values()),
                            hint="raise AUTOSCALER_HISTORY_SHARDS; this shard is not saved",
                        )
                        self._written(shard, index)
                        return
                    try:
                        stored = await self._write(shard, data)
                    except KubeApiError as exc:
                        if exc.status == 409:
                            if not self._owned(index):
                                # Lost the shard meanwhile: its new owner's data wins.
                                log.info("history_save_dropped_not_owner", configmap=shard.name)
                                shard.pending.clear()
                                self._drop(shard)
                                return
                            log.info(
                                "history_conflict_retry", configmap=shard.name, attempt=attempt + 1
                            )
                            await self._fetch(shard)
                            continue
                        if exc.status == 404 and shard.exists:
                            # Deleted under us: create it again from what this store holds.
                            log.warning("history_shard_recreated", configmap=shard.name)
                            shard.exists, shard.rv = False, None
                            continue
                        raise
                    self._adopt(shard, stored)
                    self._after_write(shard, data)
                    self._written(shard, index)
                    return
                log.warning(
                    "history_save_conflicts",
                    configmap=shard.name,
                    policies=len(shard.pending),
                    attempts=self._retries + 1,
                )
            except KubeApiError as exc:
                log.warning(
                    "history_save_failed",
                    configmap=shard.name,
                    policies=len(shard.pending),
                    status=exc.status,
                    error=str(exc),
                )

    def _written(self, shard: _Shard, index: int) -> None:
        """Shard ``index``'s queue was written (or needed no write, or cannot be written)."""
        shard.pending.clear()
        shard.serialised.clear()
        shard.urgent = False
        now = self._monotonic()
        if shard.saved_at is None:
            # First write since start (or since the shard was gained): as if written a share
            # of the interval earlier, so shards written together (a start, a failover) come
            # due at phases spread over the interval, not all in one later tick.
            now -= self._save_interval * index / len(self._shards)
        shard.saved_at = now

    def _next_data(self, shard: _Shard) -> dict[str, str] | None:
        """The shard's data after this flush, or None when it would not change."""
        # A forced flush (a graceful stop) holds nothing back; any other write may be followed
        # by repeats of the newest recommendation for up to the save interval.
        held = 0.0 if self._forcing else self._save_interval
        shard.held = held > 0
        texts: dict[str, str] = {}
        for key, (value, policy_key) in shard.pending.items():
            if isinstance(value, History):
                shard.serialised[key] = held
            # Serialised once, even when a 409 brings us back.
            text = texts[key] = _serialise(value, held)
            shard.pending[key] = (text, policy_key)
        changed = {
            key: text
            for key, text in texts.items()
            if not _same(shard.data.get(key), text)
            and not (key in self._migrating and key in shard.data)
        }
        cutoff = self._monotonic() - self._grace
        expired = [
            key
            for key in shard.data
            if key not in shard.pending and self._seen.get(key, math.inf) < cutoff
        ]
        if not changed and not expired:
            return None
        # The values queued are the new texts (the same as stored when unchanged), but for a
        # key still being migrated, whose shard's own value wins.
        data = {
            key: texts[key]
            if key in texts and key not in self._migrating
            else self._stored_text(shard, key, value)
            for key, value in shard.data.items()
        }
        data.update(changed)
        for key in expired:
            del data[key]
        shard.expired = expired
        return data

    @staticmethod
    def _text(shard: _Shard, key: str) -> str | None:
        """The stored text of ``key`` (serialised again from its history if only its digest
        is kept), or None (not in the shard)."""
        value = shard.data.get(key)
        if value is None:
            return None
        return KubeHistoryStore._stored_text(shard, key, value)

    @staticmethod
    def _stored_text(shard: _Shard, key: str, value: str | _Stored) -> str:
        """The text of the stored ``value`` of ``key``."""
        if isinstance(value, str):
            return value
        # A key is kept as a digest only while its history is in ``latest``: an expired key
        # leaves ``latest`` once the write that deleted it succeeded, and the answer to that
        # write (the shard's data from then on) no longer holds it. The history is the one
        # written, or a newer one a write could not take (a shard over the size limit): either
        # is what the key should hold.
        return _serialise(shard.latest[key][0], value.held)

    def _after_write(self, shard: _Shard, written: dict[str, str]) -> None:
        """Forget the keys the write deleted (only now: after a failed write they are still
        due), and keep digests, not texts, of the values serialised from histories."""
        for key in shard.expired:
            log.info("history_key_expired", configmap=shard.name, key=key, grace=self._grace)
            self._seen.pop(key, None)
            self._events.pop(key, None)
            shard.latest.pop(key, None)
        shard.expired = []
        for key, held in shard.serialised.items():
            text = shard.data.get(key)
            if key in shard.latest and isinstance(text, str) and text == written.get(key):
                shard.data[key] = _Stored(_digest(text), held)

    async def _fetch_or_raise(self, shard: _Shard, policy: ScalingPolicy) -> None:
        try:
            await self._fetch(shard)
        except KubeApiError as exc:
            msg = f"history ConfigMap {self._namespace}/{shard.name} unreadable: {exc}"
            log.warning("history_load_failed", policy=policy.key, status=exc.status, error=msg)
            raise HistoryUnavailable(msg) from exc
        now = self._monotonic()
        for key in shard.data:
            self._seen.setdefault(key, now)

    async def _fetch(self, shard: _Shard) -> None:
        try:
            obj = await self._api.request("GET", self._object_path(shard.name))
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            shard.data, shard.rv, shard.exists = {}, None, False
        else:
            self._adopt(shard, obj)
        shard.loaded = True
        shard.fetched_at = self._monotonic()

    @staticmethod
    def _adopt(shard: _Shard, obj: JsonObject) -> None:
        raw: Any = obj.get("data") or {}
        shard.data = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        shard.rv = (obj.get("metadata") or {}).get("resourceVersion")
        shard.exists = True

    async def _write(self, shard: _Shard, data: dict[str, str]) -> JsonObject:
        body: JsonObject = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": shard.name,
                "namespace": self._namespace,
                "labels": {
                    "app.kubernetes.io/name": "nim-autoscaler",
                    "app.kubernetes.io/component": "history",
                },
            },
            "data": data,
        }
        if not shard.exists:
            return await self._api.request(
                "POST", f"/api/v1/namespaces/{self._namespace}/configmaps", body=body
            )
        body["metadata"]["resourceVersion"] = shard.rv
        return await self._api.request("PUT", self._object_path(shard.name), body=body)

    # ---- upgrade from the single ConfigMap ------------------------------------------------

    async def _read_legacy(self) -> None:
        """Read the pre-sharding ConfigMap once (raises ``KubeApiError`` but for 404)."""
        async with self._legacy_lock:
            if self._legacy is not None:
                return
            try:
                obj = await self._api.request("GET", self._object_path(self._name))
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                self._legacy, self._legacy_exists = {}, False
                return
            raw: Any = obj.get("data") or {}
            self._legacy = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
            self._legacy_exists = True
            log.info(
                "history_migrating",
                configmap=f"{self._namespace}/{self._name}",
                keys=len(self._legacy),
                shards=len(self._shards),
            )

    async def _from_legacy(self, key: str, policy: ScalingPolicy) -> str | None:
        """The key's value in the pre-sharding ConfigMap (read once)."""
        try:
            await self._read_legacy()
        except KubeApiError as exc:
            msg = f"history ConfigMap {self._namespace}/{self._name} unreadable: {exc}"
            log.warning("history_load_failed", policy=policy.key, status=exc.status, error=msg)
            raise HistoryUnavailable(msg) from exc
        return (self._legacy or {}).get(key)

    def _legacy_shard(self, key: str) -> _Shard:
        namespace, _, name = key.partition(".")  # a namespace has no dot
        return self._shards[self._index(namespace, f"{namespace}/{name}")]

    def _legacy_owned(self, key: str) -> bool:
        namespace, _, name = key.partition(".")
        return self._owned(self._index(namespace, f"{namespace}/{name}"))

    async def _migrate_legacy(self) -> None:
        """Queue every key of the pre-sharding ConfigMap that its shard does not hold yet."""
        try:
            await self._read_legacy()
        except KubeApiError as exc:
            log.warning("history_migration_read_failed", status=exc.status, error=str(exc))
            return
        if not self._legacy_exists or not self._legacy:
            return
        now = self._monotonic()
        for key, text in self._legacy.items():
            if not self._legacy_owned(key):
                continue  # its owner migrates it
            shard = self._legacy_shard(key)
            if key not in shard.pending and (not shard.loaded or key not in shard.data):
                shard.pending[key] = (text, key)
                self._migrating.add(key)
                self._seen.setdefault(key, now)

    async def _retire_legacy(self) -> None:
        """Delete the pre-sharding ConfigMap once every key it held is in its shard."""
        if not self._legacy_exists or self._legacy is None:
            return
        if any(
            not self._legacy_owned(key) or key not in self._legacy_shard(key).data
            for key in self._legacy
        ):
            return  # a shard failed to save, or another replica's: keep it for a next flush
        try:
            await self._api.request("DELETE", self._object_path(self._name))
        except KubeApiError as exc:
            if exc.status != 404:
                log.warning("history_migration_cleanup_failed", error=str(exc))
                return
        log.info("history_migrated", configmap=f"{self._namespace}/{self._name}")
        self._legacy_exists = False
