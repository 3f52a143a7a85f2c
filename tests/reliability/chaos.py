"""A fake API server with seeded random faults and a record of who wrote what.

:class:`ChaosKube` subclasses :class:`tests.fakekube.server.FakeKube` (which it does not edit):

- :meth:`ChaosKube.chaos` makes a fraction of the requests matching a path pattern fail, chosen
  by a seeded ``random.Random``: 500, 429 (with ``Retry-After``), a delay longer than the
  client's timeout (then 504, so the server never applies a request the client gave up on) and,
  for writes, 409 Conflict;
- every request's outcome is kept in :attr:`ChaosKube.log` with the caller's identity (the
  bearer token of its kubeconfig), so tests can attribute ``/scale`` writes to an instance and
  check that each applied write changed the replica count.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakekube.server import FakeKube, status_body

FAULT_KINDS = ("500", "429", "timeout", "409")


@dataclass
class Chaos:
    """Random faults on requests whose path matches ``path``."""

    path: str
    rate: float
    rng: random.Random
    kinds: tuple[str, ...] = FAULT_KINDS
    delay: float = 1.0
    """Seconds a ``timeout`` fault waits before answering 504 (longer than the client timeout)."""
    fired: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """One request and its answer."""

    who: str
    """Bearer token of the caller (``""``: none)."""
    method: str
    path: str
    status: int
    body: Any
    """Decoded JSON body of a write (None for reads)."""
    replicas_before: int | None = None
    """For ``/scale`` writes: the target's ``spec.replicas`` when the request arrived."""
    at: float = 0.0
    """Wall time the request arrived."""
    lease_holders: tuple[str, ...] = ()
    """``holderIdentity`` of every Lease when the request arrived."""


class ChaosKube(FakeKube):
    """:class:`FakeKube` plus seeded random faults and a per-request log with identities."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chaos_rules: list[Chaos] = []
        self.log: list[Seen] = []

    def chaos(
        self,
        path: str,
        *,
        rate: float = 0.2,
        seed: int = 0,
        kinds: tuple[str, ...] = FAULT_KINDS,
        delay: float = 1.0,
    ) -> Chaos:
        """Fail ``rate`` of the requests matching ``path`` (regex), seeded."""
        rule = Chaos(path, rate, random.Random(seed), kinds, delay)
        self.chaos_rules.append(rule)
        return rule

    def scale_writes(self, name: str | None = None, *, applied: bool = True) -> list[Seen]:
        """``/scale`` PUT/PATCH requests (of one target), by default only the applied ones."""
        return [
            seen
            for seen in self.log
            if seen.method in {"PUT", "PATCH"}
            and seen.path.endswith("/scale")
            and (name is None or seen.path.endswith(f"/{name}/scale"))
            and (not applied or seen.status == 200)
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        who = request.headers.get("Authorization", "").removeprefix("Bearer ")
        at = time.time()
        holders = self.lease_holders()
        body: Any = None
        before: int | None = None
        if request.method in {"PUT", "PATCH", "POST"}:
            try:
                body = json.loads(await request.read() or b"null")  # aiohttp caches the body
            except ValueError:
                body = None
        if request.path.endswith("/scale") and request.method in {"PUT", "PATCH"}:
            before = self._spec_replicas(request.path)
        response = await self._chaos(request)
        if response is None:
            response = await super()._handle(request)
        self.log.append(
            Seen(who, request.method, request.path, response.status, body, before, at, holders)
        )
        return response

    def lease_holders(self) -> tuple[str, ...]:
        """``holderIdentity`` of every Lease now (``""``: released)."""
        return tuple(
            str((obj.get("spec") or {}).get("holderIdentity") or "")
            for (plural, _, _), obj in sorted(self.objects.items())
            if plural == "leases"
        )

    def _spec_replicas(self, path: str) -> int | None:
        parts = path.split("/")
        # .../namespaces/{ns}/{plural}/{name}/scale
        try:
            namespace, plural, name = parts[-4], parts[-3], parts[-2]
        except IndexError:
            return None
        obj = self.objects.get((plural, namespace, name))
        return int(obj["spec"]["replicas"]) if obj is not None else None

    async def _chaos(self, request: web.Request) -> web.Response | None:
        if request.query.get("watch") in {"true", "1"}:
            return None  # watches have their own faults (cut_watches, compact)
        for rule in self.chaos_rules:
            if not re.search(rule.path, request.path):
                continue
            if rule.rng.random() >= rule.rate:
                return None
            kinds = [
                k for k in rule.kinds if k != "409" or request.method in {"PUT", "PATCH", "POST"}
            ]
            kind = rule.rng.choice(kinds)
            rule.fired[kind] = rule.fired.get(kind, 0) + 1
            if kind == "timeout":
                await asyncio.sleep(rule.delay)
                return web.json_response(status_body(504, "injected timeout"), status=504)
            if kind == "429":
                return web.json_response(
                    status_body(429, "injected: too many requests"),
                    status=429,
                    headers={"Retry-After": "1"},
                )
            if kind == "409":
                return web.json_response(
                    status_body(409, "injected: the object has been modified", "Conflict"),
                    status=409,
                )
            return web.json_response(status_body(500, "injected internal error"), status=500)
        return None
