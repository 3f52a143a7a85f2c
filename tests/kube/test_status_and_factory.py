"""The ``status`` command and the ``connect`` factory, against the fake API server."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from autoscaler.clock import VirtualClock
from autoscaler.commands.status import format_age, status
from autoscaler.controller.ports import Outcome
from autoscaler.kube.factory import AlwaysLeader, connect
from autoscaler.kube.leader import LeaderElector
from autoscaler.kube.recorder import KubeRecorder
from autoscaler.kube.scale import Discovery
from autoscaler.policy.models import ScaleTargetRef
from autoscaler.settings import Settings
from tests.fakekube import FakeKube
from tests.kube.conftest import eventually
from tests.kube.test_recorder import T0, decision, policy


def _write_policies(directory: Path) -> None:
    docs = [
        policy().model_dump(by_alias=True, mode="json", exclude_none=True),
        {
            **policy("NIMService", "apps.nvidia.com/v1alpha1").model_dump(
                by_alias=True, mode="json", exclude_none=True
            ),
            "metadata": {"name": "nim-policy", "namespace": "other"},
        },
    ]
    (directory / "policies.yaml").write_text(yaml.safe_dump_all(docs))
    (directory / "broken.yaml").write_text("kind: ScalingPolicy\napiVersion: nope\n")


class TestStatusCommand:
    async def test_table_like_kubectl_get_hpa(
        self, fake: FakeKube, settings: Settings, tmp_path: Path
    ) -> None:
        """Rows show reference, metric value/target from the annotation, bounds and replicas."""
        fake.add_deployment("llm", "llama", replicas=4)
        from autoscaler.kube.client import KubeApi

        api = await KubeApi.from_settings(settings)
        try:
            await KubeRecorder(api, Discovery(api), clock=VirtualClock(T0)).record(
                policy(), decision(2, 4), Outcome.SCALED
            )
        finally:
            await api.close()
        _write_policies(tmp_path)
        out, err = io.StringIO(), io.StringIO()
        code = await status(settings.model_copy(update={"policy_dir": tmp_path}), None, out, err)
        assert code == 0
        lines = out.getvalue().splitlines()
        assert lines[0].split() == [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ]
        llama = next(line for line in lines if line.startswith("llama-policy"))
        assert llama.split() == [
            "llama-policy",
            "Deployment/llama",
            "kvCache:",
            "0.93/0.7",
            "1",
            "8",
            "4",
            llama.split()[-1],
        ]
        assert llama.split()[-1].endswith("s")  # the target was created seconds ago
        nim = next(line for line in lines if line.startswith("nim-policy"))
        assert "NIMService/llama" in nim
        assert "kvCache: <unknown>/0.7" in nim
        assert "<unknown>" in nim.split()[-2]  # target missing in namespace 'other'
        assert "broken.yaml" in err.getvalue()
        assert "other/nim-policy" in err.getvalue()

    async def test_namespace_filter(
        self, fake: FakeKube, settings: Settings, tmp_path: Path
    ) -> None:
        """--namespace keeps only that namespace's policies."""
        fake.add_deployment("llm", "llama", replicas=1)
        _write_policies(tmp_path)
        out = io.StringIO()
        await status(
            settings.model_copy(update={"policy_dir": tmp_path}), "llm", out, io.StringIO()
        )
        assert [line.split()[0] for line in out.getvalue().splitlines()] == ["NAME", "llama-policy"]

    def test_age_format(self) -> None:
        """Ages read like kubectl's."""
        assert [format_age(s) for s in (5, 119, 600, 4 * 3600, 3 * 86400, None)] == [
            "5s",
            "119s",
            "10m",
            "4h",
            "3d",
            "<unknown>",
        ]


class TestFactory:
    async def test_connect_builds_working_adapters(
        self, fake: FakeKube, settings: Settings
    ) -> None:
        """connect() wires every port to the cluster; start/close run and release the Lease."""
        fake.add_deployment("llm", "llama", replicas=2)
        fake.add_pod("llm", "llama-1", labels={"app": "llama"})
        fast = settings.model_copy(
            update={
                "namespaces": ["llm"],
                "identity": "pod-a",
                "leader_election_lease_duration": 1.0,
                "leader_election_renew_deadline": 0.6,
                "leader_election_retry_period": 0.2,
            }
        )
        context = await connect(fast)
        try:
            assert isinstance(context.leader, LeaderElector)
            context.start()
            assert await context.pods.wait_synced(5.0)
            assert [p.name for p in context.pods.pods("llm", "app=llama")] == ["llama-1"]
            await eventually(context.leader.is_leader, timeout=3.0)
            ref = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name="llama")
            await context.scale.set_scale("llm", ref, 3)
            assert (await context.scale.get_scale("llm", ref)).spec_replicas == 3
        finally:
            await context.close()
        lease = fake.get("leases", "nim-system", "nim-autoscaler")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == ""

    async def test_scale_then_pods_follow_in_the_cache(
        self, fake: FakeKube, settings: Settings
    ) -> None:
        """Scale through the ScaleClient; the reconciling fake creates pods; the cache sees them
        (with the /scale selector) and their readiness as the fake steps them."""
        fake.enable_reconcile(schedule_after=0.0, ready_after=3600.0)
        fake.add_deployment("llm", "llama", replicas=1)
        context = await connect(settings.model_copy(update={"namespaces": ["llm"]}))
        try:
            context.start()
            assert await context.pods.wait_synced(5.0)
            ref = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name="llama")
            await context.scale.set_scale("llm", ref, 3)
            reading = await context.scale.get_scale("llm", ref)
            assert reading.selector is not None
            await eventually(lambda: len(context.pods.pods("llm", reading.selector or "")) == 3)
            assert [p.ready for p in context.pods.pods("llm", reading.selector)] == [False] * 3
            fake.enable_reconcile(schedule_after=0.0, ready_after=0.0)
            fake.step()
            await eventually(
                lambda: all(p.ready for p in context.pods.pods("llm", reading.selector or ""))
            )
            assert (await context.scale.get_scale("llm", ref)).status_replicas == 3
        finally:
            await context.close()

    async def test_dry_run_has_no_election(self, settings: Settings) -> None:
        """A dry run never writes, not even the Lease."""
        context = await connect(settings.model_copy(update={"dry_run": True}))
        try:
            assert isinstance(context.leader, AlwaysLeader)
            assert context.leader.is_leader()
        finally:
            await context.close()
