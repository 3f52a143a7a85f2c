"""``explain`` reading the target from the cluster: /scale, pods and saved history; no writes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

from autoscaler.cli import main
from autoscaler.policy.models import MetricKind
from tests.decision.schema import assert_valid
from tests.e2e.harness import NAMESPACE, POLICY, wait_until
from tests.fakekube.server import FakeKube, write_kubeconfig
from tests.promserver.exporter import FleetPod
from tests.promserver.fixtures import fleet_target


async def test_explain_reads_scale_pods_and_writes_nothing(
    tmp_path: Path, prometheus_factory, fleet_factory
) -> None:
    """The decision uses the cluster's replicas and pods; the fake API sees only reads."""
    fleet = fleet_factory("nim")
    prometheus = prometheus_factory([fleet_target(fleet)])
    policy_file = tmp_path / "llama.yaml"
    policy_file.write_text(POLICY)
    async with FakeKube() as fake:
        fake.add_deployment(NAMESPACE, "llama", replicas=3, labels={"app": "llama"})
        for i in range(3):
            fake.add_pod(NAMESPACE, f"llama-{i}", labels={"app": "llama"})
            fleet.add(FleetPod(NAMESPACE, f"llama-{i}", gauges={MetricKind.KV_CACHE: 0.9}))
        fleet.add(FleetPod(NAMESPACE, "other-0", gauges={MetricKind.KV_CACHE: 0.0}))
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
        await wait_until(lambda: fleet.scrapes >= 2, 15, "two scrapes")
        await asyncio.sleep(1.5)
        out = io.StringIO()
        argv = [
            "explain",
            "--policy",
            str(policy_file),
            "--prometheus-url",
            prometheus.url,
            "--kubeconfig",
            str(kubeconfig),
            "--output",
            "json",
        ]
        with contextlib.redirect_stdout(out):
            code = await asyncio.to_thread(main, argv)
        assert code == 0
        result = json.loads(out.getvalue())
        assert result["currentReplicas"] == 3
        assert_valid(result)
        pods = result["observation"]["pods"]
        assert sorted(pods) == ["llama-0", "llama-1", "llama-2"]  # not other-0
        # 0.9 per pod against 0.5: ceil(1.8 * 3) = 6 (legacy cap max(2*3, 4) = 6).
        assert result["desiredReplicas"] == 6
        writes = [(m, p) for m, p in fake.requests if m not in {"GET"}]
        assert writes == []
