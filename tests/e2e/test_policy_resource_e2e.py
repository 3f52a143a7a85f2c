"""A policy given as a ScalingPolicy resource, end to end: watch, decide, scale, /status, Events.

The same world as the controller e2e test (fake API server with its pod reconciler, emulated
exporters, a real Prometheus), but the policy is an object of the CRD, not a file. Beside it an
invalid resource is reported on its own status and the valid one scales; a resource and a file
with the same name hold each other until one is removed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy.status import ScalingPolicyStatus
from tests.e2e.harness import (
    NAMESPACE,
    POLICY,
    World,
    start_controller,
    stop_controller,
)
from tests.e2e.harness import (
    wait_until as wait_for,
)
from tests.fakekube.server import FakeKube
from tests.promserver.fixtures import fleet_target

PLURAL = "scalingpolicies"


def policy_resource(**spec: Any) -> dict[str, Any]:
    """The harness's policy file as a resource (canonical apiVersion)."""
    document = yaml.safe_load(POLICY)
    document["apiVersion"] = "autoscaling.nim-autoscaler.io/v1alpha1"
    document["spec"].update(spec)
    return document


def status_of(fake: FakeKube, name: str) -> dict[str, Any]:
    obj = fake.get(PLURAL, NAMESPACE, name)
    return dict((obj or {}).get("status") or {})


def condition(fake: FakeKube, name: str, kind: str) -> dict[str, Any]:
    return next((c for c in status_of(fake, name).get("conditions", []) if c["type"] == kind), {})


def events_about(fake: FakeKube, name: str) -> list[dict[str, Any]]:
    return [
        obj
        for (plural, _, _), obj in fake.objects.items()
        if plural == "events"
        and obj["involvedObject"].get("kind") == "ScalingPolicy"
        and obj["involvedObject"].get("name") == name
    ]


async def _ready_world(fake: FakeKube, fleet: Any, tmp_path: Path) -> World:
    world = World(fake, fleet, tmp_path)
    # 0.5 per pod: exactly the target
    await world.launch(replicas=2, demand=1.0, schedule_after=0.2, ready_after=1.0)
    return world


async def test_policy_resource_scales_and_reports_status(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """Resource only: scale-out to 4, status current/desired/lastDecision, Events on the policy."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        world = await _ready_world(fake, fleet, tmp_path)
        (tmp_path / "policies" / "llama.yaml").unlink()  # no file: the resource is the policy
        fake.put(PLURAL, policy_resource())
        broken = policy_resource(minReplicas=6, maxReplicas=3)
        broken["metadata"]["name"] = "broken"
        fake.put(PLURAL, broken)
        controller, task = await start_controller(world.settings(prometheus.url))
        try:
            await wait_for(
                lambda: status_of(fake, "llama").get("currentReplicas") == 2, 10, "status"
            )
            assert world.scale_writes() == 0
            world.demand = 2.0  # twice the target
            await wait_for(lambda: world.replicas() == 4, 20, "scale-out to 4")
            await wait_for(
                lambda: status_of(fake, "llama").get("desiredReplicas") == 4, 10, "desired 4"
            )
            # The invalid neighbour: reported where and why, never run.
            await wait_for(lambda: condition(fake, "broken", "Valid") != {}, 10, "broken status")
        finally:
            await stop_controller(controller, task)
            await world.stop()

        status = status_of(fake, "llama")
        ScalingPolicyStatus.model_validate(status)
        assert status["observedGeneration"] == 1
        assert status["lastScaleTime"]
        assert status["lastDecision"]["desiredReplicas"] == 4
        assert status["lastDecision"]["metrics"][0]["name"] == "kvCache"
        assert condition(fake, "llama", "Valid")["status"] == "True"
        reasons = {e["reason"] for e in events_about(fake, "llama")}
        assert "SuccessfulRescale" in reasons
        target_events = [
            obj
            for (plural, _, _), obj in fake.objects.items()
            if plural == "events" and obj["involvedObject"].get("kind") == "Deployment"
        ]
        assert target_events == []  # a resource's story is told on the resource

        valid = condition(fake, "broken", "Valid")
        assert valid["status"] == "False"
        assert "spec.maxReplicas" in valid["message"]
        assert condition(fake, "broken", "ScalingActive")["reason"] == "InvalidPolicy"
        assert [e["reason"] for e in events_about(fake, "broken")] == ["InvalidPolicy"]
        assert "currentReplicas" not in status_of(fake, "broken")


async def test_file_and_resource_with_one_name_hold_until_one_goes(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """Neither silently wins: no write while both exist; removing the file lets the resource run."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        world = await _ready_world(fake, fleet, tmp_path)
        fake.put(PLURAL, policy_resource(maxReplicas=6))
        world.demand = 2.0  # the file's policy alone would scale out at once
        controller, task = await start_controller(world.settings(prometheus.url))
        try:
            await wait_for(
                lambda: (
                    condition(fake, "llama", "ScalingActive").get("reason")
                    == "ConflictingPolicyFile"
                ),
                10,
                "conflict reported",
            )
            await asyncio.sleep(3)
            assert world.replicas() == 2
            assert world.scale_writes() == 0
            message = condition(fake, "llama", "ScalingActive")["message"]
            assert "llama.yaml" in message
            errors = controller.registry.get_sample_value("nim_autoscaler_policy_errors")
            assert errors == 1.0

            (tmp_path / "policies" / "llama.yaml").unlink()
            await wait_for(lambda: world.replicas() == 4, 20, "the resource scales once alone")
            await wait_for(
                lambda: condition(fake, "llama", "ScalingActive").get("status") == "True",
                10,
                "conflict cleared",
            )
        finally:
            await stop_controller(controller, task)
            await world.stop()


async def test_dry_run_reads_resources_and_writes_nothing(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """Dry-run decides for a resource policy but writes no status, Event or scale."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    async with FakeKube() as fake:
        world = await _ready_world(fake, fleet, tmp_path)
        (tmp_path / "policies" / "llama.yaml").unlink()
        fake.put(PLURAL, policy_resource())
        broken = policy_resource(minReplicas=6, maxReplicas=3)
        broken["metadata"]["name"] = "broken"
        fake.put(PLURAL, broken)
        world.demand = 2.0
        controller, task = await start_controller(world.settings(prometheus.url, dry_run=True))

        def desired() -> float | None:
            return controller.registry.get_sample_value(
                "nim_autoscaler_desired_replicas",
                {"policy": "llama", "namespace": NAMESPACE, "target": "Deployment/llama"},
            )

        try:
            await wait_for(lambda: desired() == 4, 15, "a dry-run decision for 4")
            await asyncio.sleep(1)
        finally:
            await stop_controller(controller, task)
            await world.stop()
        assert fake.status_writes == 0
        writes = [m for m, _ in fake.requests if m in {"POST", "PUT", "PATCH", "DELETE"}]
        assert writes == []
