"""The SLO sizing and its capacity model are exported as controller metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from autoscaler.decision.slo import (
    SIGNAL_GENERATION_TOKENS,
    SIGNAL_ITL,
    SIGNAL_PROMPT_TOKENS,
    SIGNAL_RATE,
    SIGNAL_RUNNING,
    SIGNAL_TTFT,
    SIGNAL_WAITING,
)
from autoscaler.decision.types import PodSamples, TargetSample
from autoscaler.policy.models import ScalingPolicy
from tests.controller.test_loop import World


def slo_policy(name: str = "llama") -> ScalingPolicy:
    return ScalingPolicy.model_validate(
        {
            "apiVersion": "autoscaling.nim-autoscaler.io/v1alpha1",
            "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": "nim"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "algorithm": "llm",
                "minReplicas": 1,
                "maxReplicas": 20,
                "slo": {
                    "ttft": {"quantile": 0.95, "target": 0.5},
                    "itl": {"quantile": 0.95, "target": 0.05},
                },
            },
        }
    )


def feed(
    world: World, policy: ScalingPolicy, now: float, per_pod_rate: float, *, itl: bool = True
) -> None:
    """Three ready pods serving ``per_pod_rate`` each (900 in / 150 out tokens per request),
    well within the SLO (``itl`` False: no ITL signal)."""
    pods = world.target(policy.spec.scale_target_ref.name).pods

    def per_pod(value: float) -> PodSamples:
        return PodSamples({p.name: value for p in pods}, now, len(pods))

    signals = {
        SIGNAL_RATE: per_pod(per_pod_rate),
        SIGNAL_WAITING: per_pod(0.0),
        SIGNAL_RUNNING: per_pod(2.0),
        SIGNAL_TTFT: TargetSample(0.2, now),
        SIGNAL_ITL: TargetSample(0.02, now),
        SIGNAL_PROMPT_TOKENS: per_pod(per_pod_rate * 900.0),
        SIGNAL_GENERATION_TOKENS: per_pod(per_pod_rate * 150.0),
    }
    if not itl:
        del signals[SIGNAL_ITL]
    world.source.set(policy.key, signals)


async def test_capacity_and_slo_figures_are_exported_and_forgotten() -> None:
    policy = slo_policy()
    world = World(policy)
    registry = CollectorRegistry()
    loop = world.loop(registry=registry)
    for tick in range(40):  # ten minutes of steady load: enough for a learned figure
        now = 15.0 * tick
        feed(world, policy, now, 4.0)
        await loop.tick(now)
    labels = {"policy": "llama", "namespace": "nim"}

    def value(name: str, **extra: str) -> float | None:
        return registry.get_sample_value(name, labels | extra)

    assert value("nim_autoscaler_capacity_source", source="learned") == 1.0
    assert value("nim_autoscaler_capacity_source", source="prior") is None
    estimate = value("nim_autoscaler_capacity_requests_per_second", figure="estimate")
    met = value("nim_autoscaler_capacity_requests_per_second", figure="met")
    assert estimate is not None
    assert met is not None
    assert met >= 4.0 * 0.9  # the load each replica carried within the SLO
    assert value("nim_autoscaler_capacity_requests_per_second", figure="violated") is None
    samples = value("nim_autoscaler_capacity_samples")
    assert samples is not None
    assert samples >= 1
    arrivals = value("nim_autoscaler_slo_requests_per_second", kind="arrivals")
    assert arrivals is not None
    assert abs(arrivals - 12.0) < 0.5  # 3 pods x 4 req/s
    assert value("nim_autoscaler_slo_objective_seconds", objective="ttft") == 0.5
    assert value("nim_autoscaler_slo_latency_seconds", objective="itl") == 0.02
    assert value("nim_autoscaler_slo_replicas_needed") is not None
    assert value("nim_autoscaler_request_length_tokens", kind="prompt") == 900.0
    assert value("nim_autoscaler_request_length_tokens", kind="output") == 150.0

    world.policies = []
    await loop.tick(15.0 * 40)
    assert value("nim_autoscaler_capacity_requests_per_second", figure="estimate") is None
    assert value("nim_autoscaler_slo_requests_per_second", kind="arrivals") is None
    assert value("nim_autoscaler_capacity_source", source="learned") is None
    assert value("nim_autoscaler_request_length_tokens", kind="prompt") is None


async def test_sizing_series_are_exported_again_after_no_signal_and_after_a_removal() -> None:
    """A sizing series dropped for want of a value, or with its policy, comes back with one."""
    policy = slo_policy()
    world = World(policy)
    registry = CollectorRegistry()
    loop = world.loop(registry=registry)
    labels = {"policy": "llama", "namespace": "nim", "objective": "itl"}

    def itl() -> float | None:
        return registry.get_sample_value("nim_autoscaler_slo_latency_seconds", labels)

    feed(world, policy, 0.0, 4.0)
    await loop.tick(0.0)
    assert itl() == 0.02
    feed(world, policy, 15.0, 4.0, itl=False)
    await loop.tick(15.0)
    assert itl() is None
    feed(world, policy, 30.0, 4.0, itl=False)
    await loop.tick(30.0)
    assert itl() is None
    feed(world, policy, 45.0, 4.0)
    await loop.tick(45.0)
    assert itl() == 0.02

    world.policies = []
    await loop.tick(60.0)
    assert itl() is None
    world.policies = [policy]
    feed(world, policy, 75.0, 4.0)
    await loop.tick(75.0)
    assert itl() == 0.02
