"""The simulated serving fleet: one Deployment's pods, a Service-like balancer, the event heap.

:class:`Fleet` is a discrete-event simulation. Request arrivals come from a
:class:`~autoscaler.sim.load.Workload`; everything else is an event on one heap, processed in time
order: replica boundaries (end of an engine step or macro-step, :mod:`autoscaler.sim.engine`), pod
scheduling and readiness (:mod:`autoscaler.sim.cluster`), and metric scrapes
(:mod:`autoscaler.sim.metrics`). :meth:`Fleet.run_until` advances the world; the control loop runs
between two calls (:mod:`autoscaler.sim.run`), reading and writing the fleet through
:class:`SimScaleClient` and :class:`SimPodSource`, the simulator's implementations of the
controller's ports.
"""

from __future__ import annotations

import math
from collections import deque
from types import ModuleType

import numpy as np
import structlog

from autoscaler.controller.ports import ScaleReading, ScaleWrite, WriteResult
from autoscaler.decision.types import PodInfo
from autoscaler.errors import TargetNotFound
from autoscaler.policy.models import ScaleTargetRef
from autoscaler.sim import engine as python_engine
from autoscaler.sim.cluster import ColdStart, PodState, SimPod, removal_order
from autoscaler.sim.engine import BOUNDARY, EventLoop, Replica, Request, Sink
from autoscaler.sim.load import Workload
from autoscaler.sim.metrics import GatewaySample, MetricStore, Snapshot
from autoscaler.sim.profiles import HardwareProfile

log = structlog.get_logger(__name__)

_SCHEDULED = 1
_READY = 2
_SCRAPE = 3
_KILL = 4

BALANCERS = ("least", "round-robin", "random")
"""``least``: least outstanding requests (ties: the pod ready longest); ``round-robin``;
``random`` (kube-proxy iptables mode)."""


class Fleet:
    """Pods of one simulated Deployment serving a workload."""

    def __init__(
        self,
        profile: HardwareProfile,
        workload: Workload,
        sink: Sink,
        store: MetricStore,
        *,
        deployment: str = "llm",
        initial_replicas: int = 1,
        cold_start: ColdStart | None = None,
        scheduling_delay: float = 2.0,
        gpu_capacity: int | None = None,
        gpus_per_node: int = 8,
        balancer: str = "least",
        seed: int = 0,
        termination_grace: float = 30.0,
        engine: ModuleType | None = None,
    ) -> None:
        """Create the fleet with ``initial_replicas`` pods Ready at time 0.

        Args:
            profile: hardware profile of every pod.
            workload: the requests to replay.
            sink: receives per-request and per-step observations.
            store: where scrapes go (its ``scrape_interval`` sets the scrape period).
            deployment: name of the simulated Deployment (``scaleTargetRef.name``).
            initial_replicas: pods Ready at time 0.
            cold_start: model-load time distribution (default: the profile's).
            scheduling_delay: seconds from pod creation to binding when a GPU is free.
            gpu_capacity: GPUs in the cluster (None: unlimited).
            gpus_per_node: GPUs per node, for the Unschedulable message.
            balancer: one of :data:`BALANCERS`.
            seed: seeds the cold starts and the random balancer.
            termination_grace: seconds a removed Ready pod may finish its requests
                (``terminationGracePeriodSeconds``); what is still in flight then is interrupted.
            engine: the engine module, :mod:`autoscaler.sim.engine` (default) or its compiled
                build (:func:`autoscaler.sim.native.engine_module`).
        """
        if balancer not in BALANCERS:
            msg = f"unknown balancer {balancer!r} (one of {', '.join(BALANCERS)})"
            raise ValueError(msg)
        self.profile = profile
        self.deployment = deployment
        self.sink = sink
        self.store = store
        self.cold_start = cold_start or ColdStart.parse(profile.cold_start)
        self.scheduling_delay = scheduling_delay
        self.gpu_capacity = gpu_capacity
        self.gpus_per_node = gpus_per_node
        self.balancer = balancer
        self.termination_grace = termination_grace
        self.requests_interrupted = 0
        """Requests still in flight on removed pods when their grace period ended."""
        self.requests_on_removed = 0
        """Requests in flight on pods at the moment they were removed (drained or not)."""
        self.requests_held = 0
        """Requests that arrived while no replica was ready and waited at the gateway."""
        self.longest_hold = 0.0
        """Longest time a request waited at the gateway for a ready replica, seconds."""
        self._rng = np.random.default_rng([seed, 7])
        self._choice = np.empty(0)
        self._choice_i = 0
        self._rr = 0
        self._engine = engine if engine is not None else python_engine
        self._loop: EventLoop = self._engine.EventLoop(
            self, least=balancer == "least", chunk=self._CHUNK
        )
        self.pods: list[SimPod] = []
        self._ready: list[SimPod] = []
        self._ready_replicas: list[Replica] = self._loop.ready
        self._loads: list[int] = self._loop.loads
        """Outstanding requests of each ready replica (``_ready_replicas`` order)."""
        self._unschedulable: deque[SimPod] = deque()
        self._gpus_used = 0
        self._gateway: deque[Request] = deque()
        self._workload = workload
        self._load_chunk(0)
        self.desired = 0
        self.scale_events: list[tuple[float, int, int]] = []
        """(time, from, to) of every change of the desired replica count."""
        self._push(store.scrape_interval, _SCRAPE, None, 0)
        for _ in range(initial_replicas):
            pod = self._create()
            pod.scheduled_at = pod.ready_at = 0.0
            self._gpus_used += profile.gpus
            self._make_ready(pod)
        self.desired = initial_replicas

    # ---- the event loop --------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Simulated time, seconds (the event loop's)."""
        return self._loop.now

    @now.setter
    def now(self, value: float) -> None:
        self._loop.now = value

    @property
    def arrived(self) -> int:
        """Requests that have arrived so far."""
        return self._loop.next

    _CHUNK = 65_536
    """Arrivals converted from numpy to Python floats at a time (bounded memory on long runs)."""

    def _load_chunk(self, start: int) -> None:
        end = start + self._CHUNK
        workload = self._workload
        loop = self._loop
        loop.base = start
        loop.arrivals = workload.arrivals[start:end].tolist()
        loop.prompts = workload.prompt[start:end].tolist()
        loop.outputs = workload.output[start:end].tolist()

    def close_arrivals(self) -> None:
        """Inject no more arrivals (the load ended); events still run (draining)."""
        loop = self._loop
        loop.arrivals, loop.prompts, loop.outputs = [], [], []
        loop.base = loop.next

    def run_until(self, t_stop: float) -> None:
        """Process every arrival and event up to and including ``t_stop``."""
        self._loop.run_until(t_stop)

    # ---- callbacks of the event loop (``engine.FleetEvents``) ------------------------------

    def on_event(self, kind: int, target: object, version: int) -> None:
        """A scrape, or a pod's scheduling, readiness or end of grace period, is due now."""
        if target is None:
            self._scrape()
            return
        assert isinstance(target, SimPod)
        if version != target.version:
            return  # the pod went away since
        if kind == _SCHEDULED:
            self._scheduled(target)
        elif kind == _KILL:
            self._kill(target)
        else:
            self._make_ready(target)

    def on_drained(self, replica: Replica) -> None:
        """A terminating pod finished its last request: it goes."""
        pod = self.pods[replica.tag]
        if pod.state is PodState.TERMINATING:
            self._gone(pod)

    def route(self, request: Request) -> Replica | None:
        """Pick a replica for an arrival (other balancers), or hold it at the gateway."""
        ready = self._ready_replicas
        if not ready:
            self._hold(request)
            return None
        return self._pick(ready)

    def on_chunk_end(self) -> None:
        """Load the next chunk of arrivals."""
        self._load_chunk(self._loop.next)

    def flush(self) -> None:
        """Hand every replica's buffered observations to the sink and its histograms.

        Replicas buffer observations for a bulk sink (:class:`~autoscaler.sim.engine.BulkSink`)
        and flush them at every scrape and when their pod goes away; call this before reading
        the sink's totals.
        """
        for pod in self.pods:
            if pod.replica is not None:
                pod.replica.flush()

    def _push(self, t: float, kind: int, pod: SimPod | None, version: int) -> None:
        self._loop.push(t, kind, pod, version)

    def _hold(self, request: Request) -> None:
        """No replica is ready: the gateway holds the request (its TTFT includes the wait)."""
        self._gateway.append(request)
        self.requests_held += 1

    @property
    def held(self) -> int:
        """Requests waiting at the gateway now (no replica was ready when they arrived)."""
        return len(self._gateway)

    def gateway_wait(self) -> float:
        """Longest wait at the gateway so far, the requests still held included, seconds."""
        if not self._gateway:
            return self.longest_hold
        return max(self.longest_hold, self.now - self._gateway[0].arrival)

    def _arrive(self, request: Request) -> None:
        ready = self._ready_replicas
        if not ready:
            self._gateway.append(request)  # already counted when it was first held
            return
        replica = self._pick(ready)
        request.pod = replica.tag
        t_end = replica.enqueue(request, self.now)
        self._loads[replica.slot] += 1
        if t_end is not None:
            replica.version += 1
            self._loop.push(t_end, BOUNDARY, replica, replica.version)

    def _pick(self, ready: list[Replica]) -> Replica:
        if len(ready) == 1:
            return ready[0]
        if self.balancer == "least":
            loads = self._loads
            return ready[loads.index(min(loads))]  # ties: the pod ready longest (first)
        if self.balancer == "round-robin":
            self._rr = (self._rr + 1) % len(ready)
            return ready[self._rr]
        if self._choice_i >= self._choice.size:
            self._choice = self._rng.random(4096)
            self._choice_i = 0
        pick = int(self._choice[self._choice_i] * len(ready))
        self._choice_i += 1
        return ready[pick]

    def _scrape(self) -> None:
        now = self.now
        for pod in self.pods:
            if pod.state in (PodState.READY, PodState.TERMINATING) and pod.replica is not None:
                pod.replica.sync(now)
                self.store.add(pod.name, Snapshot.of(now, pod.replica))
        self.store.add_gateway(GatewaySample(now, len(self._gateway), self.arrived))
        self._push(now + self.store.scrape_interval, _SCRAPE, None, 0)

    # ---- pods ------------------------------------------------------------------------------

    def _create(self) -> SimPod:
        pod = SimPod(f"{self.deployment}-{len(self.pods):04d}", len(self.pods), self.now)
        self.pods.append(pod)
        return pod

    def _try_schedule(self, pod: SimPod) -> bool:
        gpus = self.profile.gpus
        if self.gpu_capacity is not None and self._gpus_used + gpus > self.gpu_capacity:
            nodes = max(1, math.ceil(self.gpu_capacity / self.gpus_per_node))
            pod.unschedulable = (
                f"0/{nodes} nodes are available: {nodes} Insufficient nvidia.com/gpu. "
                f"preemption: 0/{nodes} nodes are available: {nodes} No preemption victims "
                "found for incoming pod."
            )
            return False
        self._gpus_used += gpus
        pod.unschedulable = None
        self._push(self.now + self.scheduling_delay, _SCHEDULED, pod, pod.version)
        return True

    def _scheduled(self, pod: SimPod) -> None:
        pod.scheduled_at = self.now
        pod.state = PodState.LOADING
        pod.load_seconds = self.cold_start.sample(self._rng)
        self._push(self.now + pod.load_seconds, _READY, pod, pod.version)

    def _make_ready(self, pod: SimPod) -> None:
        pod.state = PodState.READY
        pod.ready_at = self.now
        replica: Replica = self._engine.Replica(self.profile, self.sink, pod.index)
        pod.replica = replica
        self._ready.append(pod)
        replica.slot = len(self._ready_replicas)
        self._ready_replicas.append(replica)
        self._loads.append(0)
        if self._gateway:
            self.longest_hold = max(self.longest_hold, self.now - self._gateway[0].arrival)
        while self._gateway:
            self._arrive(self._gateway.popleft())

    def _gone(self, pod: SimPod) -> None:
        held = pod.scheduled_at is not None or pod.state is not PodState.PENDING
        reserved = pod.state is PodState.PENDING and pod.unschedulable is None
        pod.state = PodState.GONE
        pod.ended_at = self.now
        pod.version += 1
        if pod.replica is not None:
            pod.replica.flush()
        if held or reserved:
            self._gpus_used -= self.profile.gpus
        while self._unschedulable:
            if not self._try_schedule(self._unschedulable[0]):
                break
            self._unschedulable.popleft()

    def _terminate(self, pod: SimPod) -> None:
        if pod.state is PodState.PENDING:
            if pod in self._unschedulable:
                self._unschedulable.remove(pod)
                pod.state = PodState.GONE
                pod.ended_at = self.now
                pod.version += 1
                return
            self._gone(pod)
        elif pod.state is PodState.LOADING:
            self._gone(pod)
        elif pod.state is PodState.READY:
            self._ready.remove(pod)
            assert pod.replica is not None
            slot = pod.replica.slot
            del self._ready_replicas[slot]
            del self._loads[slot]
            pod.replica.slot = -1
            pod.replica.draining = True
            for later in self._ready_replicas[slot:]:
                later.slot -= 1
            pod.state = PodState.TERMINATING
            pod.terminating_at = self.now
            pod.replica.sync(self.now)
            self.requests_on_removed += pod.replica.outstanding
            if pod.replica.idle:
                self._gone(pod)
            elif self.termination_grace <= 0:
                self._kill(pod)
            else:
                self._push(self.now + self.termination_grace, _KILL, pod, pod.version)

    def _kill(self, pod: SimPod) -> None:
        """The grace period ended: requests still in flight on the pod are interrupted."""
        if pod.state is not PodState.TERMINATING or pod.replica is None:
            return
        pod.replica.sync(self.now)
        self.requests_interrupted += pod.replica.outstanding
        pod.replica.version += 1  # its pending boundary no longer happens
        self._gone(pod)

    def live(self) -> list[SimPod]:
        """Pods that count as replicas (not terminating, not gone)."""
        return [p for p in self.pods if p.state < PodState.TERMINATING]

    def set_replicas(self, replicas: int) -> None:
        """Set ``spec.replicas``: create pods, or delete them in ReplicaSet order (drain)."""
        if replicas < 0:
            msg = f"replicas must be >= 0, got {replicas}"
            raise ValueError(msg)
        live = self.live()
        if replicas != self.desired:
            self.scale_events.append((self.now, self.desired, replicas))
        self.desired = replicas
        if replicas > len(live):
            for _ in range(replicas - len(live)):
                pod = self._create()
                if not self._try_schedule(pod):
                    self._unschedulable.append(pod)
        elif replicas < len(live):
            for victim in removal_order(live)[: len(live) - replicas]:
                self._terminate(victim)

    # ---- observations ----------------------------------------------------------------------

    def counts(self) -> tuple[int, int, int]:
        """(ready, starting = pending + loading, terminating) pods now."""
        ready = starting = terminating = 0
        for pod in self.pods:
            if pod.state is PodState.READY:
                ready += 1
            elif pod.state in (PodState.PENDING, PodState.LOADING):
                starting += 1
            elif pod.state is PodState.TERMINATING:
                terminating += 1
        return ready, starting, terminating

    def queue_and_kv(self) -> tuple[int, int, float]:
        """(waiting requests incl. the gateway, running requests, mean KV usage of ready pods)."""
        waiting = len(self._gateway)
        running = 0
        kv = 0.0
        ready = 0
        for pod in self.pods:
            replica = pod.replica
            if replica is None or pod.state not in (PodState.READY, PodState.TERMINATING):
                continue
            replica.sync(self.now)
            waiting += len(replica.waiting)
            running += len(replica.running)
            if pod.state is PodState.READY:
                kv += replica.kv_usage()
                ready += 1
        return waiting, running, (kv / ready if ready else math.nan)

    def in_flight(self) -> int:
        """Requests received and not finished: at the gateway, queued or running on a replica."""
        total = len(self._gateway)
        for pod in self.pods:
            if pod.replica is not None:
                total += len(pod.replica.waiting) + len(pod.replica.running)
        return total

    def replica_seconds(self, until: float) -> float:
        """Pod-seconds from scheduling to end (loading included) up to ``until``."""
        return sum(pod.gpu_seconds(until) for pod in self.pods)


class SimScaleClient:
    """The ``/scale`` subresource of the simulated Deployment (``ScaleClient`` port)."""

    def __init__(self, fleet: Fleet, namespace: str) -> None:
        self.fleet = fleet
        self.namespace = namespace

    def _check(self, namespace: str, ref: ScaleTargetRef) -> None:
        if namespace != self.namespace or ref.name != self.fleet.deployment:
            msg = (
                f"{ref.kind} {namespace}/{ref.name} not found (the simulation has "
                f"{self.namespace}/{self.fleet.deployment})"
            )
            raise TargetNotFound(msg)

    async def get_scale(self, namespace: str, ref: ScaleTargetRef) -> ScaleReading:
        """``spec.replicas``, ``status.replicas`` (pods not terminating) and the selector."""
        self._check(namespace, ref)
        return ScaleReading(
            spec_replicas=self.fleet.desired,
            status_replicas=len(self.fleet.live()),
            selector=f"app={self.fleet.deployment}",
        )

    async def set_scale(
        self,
        namespace: str,
        ref: ScaleTargetRef,
        replicas: int,
        *,
        expected: ScaleReading | None = None,  # the loop is the only writer: no race to guard
    ) -> ScaleWrite:
        """Set ``spec.replicas`` now."""
        self._check(namespace, ref)
        previous = self.fleet.desired
        self.fleet.set_replicas(replicas)
        result = WriteResult.NO_OP if previous == replicas else WriteResult.SCALED
        return ScaleWrite(result, previous)


class SimPodSource:
    """Pods of the simulated Deployment (``PodSource`` port); includes terminating pods."""

    def __init__(self, fleet: Fleet, namespace: str) -> None:
        self.fleet = fleet
        self.namespace = namespace

    def pods(self, namespace: str, selector: str) -> tuple[PodInfo, ...]:
        """Every pod that still exists, when ``selector`` selects the Deployment."""
        if namespace != self.namespace or selector != f"app={self.fleet.deployment}":
            return ()
        return tuple(p.info() for p in self.fleet.pods if p.state is not PodState.GONE)

    def synced(self) -> bool:
        """Always synced."""
        return True
