"""The metrics tests' environment: one real Prometheus scraping emulated NIM/vLLM pods.

The session-scoped :func:`llm_env` starts, once for the whole suite:

* ``nim-a``: 3 NIM pods, ``vllm-b``: 2 vLLM (>= 0.10) pods, ``legacy-c``: 2 vLLM < 0.10 pods,
  each with known gauges, finished requests and latency observations;
* ``idle-d``: 1 NIM pod that never serves a request (latency NaN);
* ``stale-e``: 2 NIM pods, one of which a test stops;
* a fleet exporter with 200 NIM pods in ``fleet`` and pods with hostile names in ``hostile``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from autoscaler.decision.types import PodInfo, PodPhase
from autoscaler.metrics.names import bucket_bounds
from autoscaler.policy.models import MetricKind, MetricNames, ScalingPolicy
from tests.promserver.exporter import EmulatedPod, FleetExporter, FleetPod
from tests.promserver.fixtures import fleet_target, pod_target
from tests.promserver.prometheus import PrometheusServer

WINDOW = "5m"
"""Rate window of the latency/rate metrics in tests: it spans the whole test module, so the
observations made at set-up stay inside it."""

HOSTILE_PODS = (
    'evil"} or vector(1) #',
    "back\\slash\\",
    "new\nline",
    "re.+gex|x",
    "brace}{",
)
FLEET_PODS = 200


@dataclass
class LlmEnv:
    """The running environment."""

    server: PrometheusServer
    pods: dict[str, EmulatedPod]
    """``namespace/pod`` -> emulated pod."""
    fleet: FleetExporter


def pods_of(env: LlmEnv, namespace: str) -> tuple[PodInfo, ...]:
    """PodInfo (running, ready) for the emulated pods of a namespace."""
    return tuple(
        PodInfo(name=p.pod, phase=PodPhase.RUNNING, ready=True)
        for p in env.pods.values()
        if p.namespace == namespace
    )


def pod_infos(names: list[str] | tuple[str, ...]) -> tuple[PodInfo, ...]:
    """Running, ready PodInfo for each name."""
    return tuple(PodInfo(name=name, phase=PodPhase.RUNNING, ready=True) for name in names)


def make_policy(
    namespace: str,
    metrics: list[dict[str, Any]],
    *,
    name: str = "p",
    names: str = "auto",
) -> ScalingPolicy:
    """A policy on a Deployment in ``namespace`` with these metric entries."""
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "maxReplicas": 10,
                "metricNames": names,
                "metrics": metrics,
            },
        }
    )


ALL_PRESETS: list[dict[str, Any]] = [
    {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}},
    {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}},
    {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 8}}},
    {"requestRate": {"window": WINDOW, "target": {"type": "AverageValue", "averageValue": 5}}},
    {
        "promptTokenRate": {
            "window": WINDOW,
            "target": {"type": "AverageValue", "averageValue": 4000},
        }
    },
    {
        "generationTokenRate": {
            "window": WINDOW,
            "target": {"type": "AverageValue", "averageValue": 600},
        }
    },
    {
        "interTokenLatency": {
            "quantile": 0.95,
            "window": WINDOW,
            "target": {"type": "Value", "value": 0.05},
        }
    },
    {
        "timeToFirstToken": {
            "quantile": 0.9,
            "window": WINDOW,
            "target": {"type": "Value", "value": 0.5},
        }
    },
    {"e2e_latency": {"quantile": 0.5, "window": WINDOW, "target": {"type": "Value", "value": 10}}},
]

# Gauges per namespace/pod: (kv, waiting, running)
GAUGES = {
    "nim-a/a-0": (0.2, 1, 4),
    "nim-a/a-1": (0.5, 2, 5),
    "nim-a/a-2": (0.8, 3, 6),
    "vllm-b/b-0": (0.3, 7, 9),
    "vllm-b/b-1": (0.6, 8, 10),
    "legacy-c/c-0": (0.15, 11, 13),
    "legacy-c/c-1": (0.45, 12, 14),
    "idle-d/d-0": (0.0, 0, 0),
    "stale-e/e-0": (0.25, 1, 1),
    "stale-e/e-1": (0.35, 2, 2),
}
FAMILY = {
    "nim-a": "nim",
    "vllm-b": "vllm",
    "legacy-c": "vllm-legacy",
    "idle-d": "nim",
    "stale-e": "nim",
}


def _observe_batch(pod: EmulatedPod, index: int, rng: random.Random) -> None:
    """Observations with a different distribution on each pod (some beyond the last bucket)."""
    scale = 1.0 + index
    pod.observe(
        MetricKind.INTER_TOKEN_LATENCY, [rng.uniform(0.012, 0.045) * scale for _ in range(40)]
    )
    pod.observe(MetricKind.INTER_TOKEN_LATENCY, [rng.uniform(0.2, 3.5) for _ in range(index * 3)])
    pod.observe(MetricKind.TIME_TO_FIRST_TOKEN, [rng.expovariate(8.0 / scale) for _ in range(30)])
    pod.observe(MetricKind.E2E_LATENCY, [rng.uniform(0.5, 30.0) * scale for _ in range(25)])
    finished = 10 * (index + 1)
    pod.finish_requests(finished, prompt=finished * 800 * (index + 1), generated=finished * 120)


def fleet_bucket_rates(kind: MetricKind, family: MetricNames, seed: int) -> list[float]:
    """Deterministic non-cumulative per-bucket observation rates for a fleet pod."""
    rng = random.Random(seed)
    count = len(bucket_bounds(kind, family)) + 1
    return [rng.choice((0.0, 0.0, 0.5, 1.0, 2.0, 4.0)) for _ in range(count)]


@pytest.fixture(scope="session")
def llm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmEnv]:
    """Prometheus scraping the emulated pods and fleet, with data for every preset.

    Session scope: started once for the whole metrics suite (about 10 s). Tests must not change
    it, except ``stale-e/e-1``, which the staleness test stops.
    """
    started: list[EmulatedPod | FleetExporter | PrometheusServer] = []
    try:
        yield _start_env(tmp_path_factory, started)
    finally:
        for item in reversed(started):
            item.stop()


def _start_env(
    tmp_path_factory: pytest.TempPathFactory,
    started: list[EmulatedPod | FleetExporter | PrometheusServer],
) -> LlmEnv:
    pods: dict[str, EmulatedPod] = {}
    for key, (kv, waiting, running) in GAUGES.items():
        namespace, name = key.split("/")
        pod = EmulatedPod(namespace, name, FAMILY[namespace])
        pod.start()
        started.append(pod)
        pod.set(MetricKind.KV_CACHE, kv)
        pod.set(MetricKind.QUEUE_DEPTH, waiting)
        pod.set(MetricKind.RUNNING_REQUESTS, running)
        pods[key] = pod
    fleet = FleetExporter("nim")
    fleet.start()
    started.append(fleet)
    for i in range(FLEET_PODS):
        fleet.add(
            FleetPod(
                "fleet",
                f"f-{i:03d}",
                gauges={
                    MetricKind.KV_CACHE: round(0.001 * i, 6),
                    MetricKind.QUEUE_DEPTH: float(i % 7),
                    MetricKind.RUNNING_REQUESTS: float(i % 11),
                },
                request_rate=1.0 + (i % 5),
                bucket_rates={
                    MetricKind.INTER_TOKEN_LATENCY: fleet_bucket_rates(
                        MetricKind.INTER_TOKEN_LATENCY, MetricNames.NIM, i
                    )
                },
                extra_labels={"app": "fleet"},
            )
        )
    for i, hostile in enumerate(HOSTILE_PODS):
        fleet.add(
            FleetPod(
                "hostile",
                hostile,
                gauges={MetricKind.QUEUE_DEPTH: float(100 + i)},
                extra_labels={"app": f'we"ird}}{i}|.*'},
            )
        )
    targets = [pod_target(p) for p in pods.values()] + [fleet_target(fleet)]
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    started.append(server)
    server.start(targets)
    server.wait_targets_up()
    rng = random.Random(42)
    active = [p for key, p in pods.items() if not key.startswith("idle-d/")]
    for index, pod in enumerate(active):
        _observe_batch(pod, index % 3, rng)
    server.wait_for(
        'count(time_per_output_token_seconds_count{namespace="nim-a"} > 0)',
        lambda r: bool(r) and float(r[0]["value"][1]) == 3,
    )
    for index, pod in enumerate(active):
        _observe_batch(pod, index % 3, rng)
    # Wait until the second batch is scraped everywhere (counts doubled), plus one scrape.
    active_names = ".*(inter_token_latency|time_per_output_token)_seconds_count"
    server.wait_for(
        # offset: the tests evaluate 2 s in the past (all scrapes ingested); the data must be
        # complete there too.
        f'count({{__name__=~"{active_names}",namespace!~"fleet|hostile|idle-d"}} offset 3s >= 80)',
        lambda r: bool(r) and float(r[0]["value"][1]) == len(active),
    )
    server.wait_for(
        'count(count_over_time(num_requests_waiting{namespace="fleet"}[1m] offset 3s) >= 3)',
        lambda r: bool(r) and float(r[0]["value"][1]) == FLEET_PODS,
    )
    return LlmEnv(server, pods, fleet)
