"""``nim-autoscaler explain`` end to end against the real Prometheus (read-only)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from autoscaler.cli import main
from autoscaler.commands.explain import explain_once, ready_pods
from autoscaler.decision.types import NoSignal, PodSamples
from autoscaler.metrics.client import PrometheusClient
from autoscaler.metrics.prometheus import PrometheusSource
from tests.decision.schema import assert_valid
from tests.metrics.env import LlmEnv, make_policy

pytestmark = pytest.mark.prometheus

POLICY = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {name: llama, namespace: nim-a}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llama}
  minReplicas: 1
  maxReplicas: 10
  algorithm: hpa
  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.25}}
    - queueDepth: {target: {type: AverageValue, averageValue: 100}}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command configures structlog for its stderr; give the next tests the defaults back."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The policy on the nim-a pods (KV average 0.5, target 0.25)."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def test_explain_json_discovers_pods_and_decides(
    llm_env: LlmEnv, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --pods, the namespace's exporting pods are the target; KV 0.5 vs 0.25 doubles."""
    code = main(
        [
            "explain",
            "--policy",
            str(policy_file),
            "--prometheus-url",
            llm_env.server.url,
            "--at",
            str(time.time() - 2),
            "--output",
            "json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert_valid(report)
    assert report["observation"]["pods"] == ["a-0", "a-1", "a-2"]
    assert report["currentReplicas"] == 3
    kv = report["observation"]["metrics"]["kvCache"]
    assert kv["values"] == {"a-0": 0.2, "a-1": 0.5, "a-2": 0.8}
    # HPA AverageValue: ceil(3 * 0.5 / 0.25) = 6 (queueDepth proposes fewer).
    assert report["desiredReplicas"] == 6
    assert report["explanation"]


def test_explain_text_with_pods_and_replicas(
    llm_env: LlmEnv, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--pods and --replicas are used as given; the text report names the policy."""
    code = main(
        [
            "explain",
            "--policy",
            str(policy_file),
            "--prometheus-url",
            llm_env.server.url,
            "--pods",
            "a-0,a-2",
            "--replicas",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "nim-a/llama" in out
    assert "metric inputs:" in out
    assert '"a-1"' not in out


@pytest.mark.parametrize(("tolerance", "desired"), [(None, 3), ("0.05", 4)])
def test_explain_decides_with_the_hpa_tolerance_flag(
    *,
    llm_env: LlmEnv,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tolerance: str | None,
    desired: int,
) -> None:
    """KV average 0.5 against 0.47 (ratio 1.064): held by the default 10 % band, scaled by 5 %."""
    if tolerance is None:
        monkeypatch.delenv("AUTOSCALER_HPA_TOLERANCE", raising=False)
    else:
        monkeypatch.setenv("AUTOSCALER_HPA_TOLERANCE", tolerance)
    path = tmp_path / "policy.yaml"
    text = POLICY.replace("averageValue: 0.25", "averageValue: 0.47")
    path.write_text(
        text.replace("    - queueDepth: {target: {type: AverageValue, averageValue: 100}}\n", "")
    )
    code = main(
        ["explain", "--policy", str(path), "--prometheus-url", llm_env.server.url,
         "--pods", "a-0,a-1,a-2", "--replicas", "3", "--output", "json"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert report["desiredReplicas"] == desired
    [metric] = report["explanation"]["metrics"]
    assert metric["tolerance"]["up"] == (0.1 if tolerance is None else 0.05)


def test_explain_without_prometheus_and_pods_fails_clearly(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening: pods cannot be listed, exit 1 with a message (nothing invented)."""
    code = main(["explain", "--policy", str(policy_file), "--prometheus-url", "http://127.0.0.1:9"])
    assert code == 1
    assert "cannot list pods from Prometheus" in capsys.readouterr().err


async def test_explain_once_keeps_no_signal(llm_env: LlmEnv) -> None:
    """A metric without data stays no-signal in the observation handed to decide."""
    policy = make_policy(
        "nim-a",
        [
            {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.5}}},
            {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 1}}},
        ],
        names="vllm",
    )
    source = PrometheusSource(PrometheusClient(llm_env.server.url))
    decision, observation = await explain_once(
        source, policy, now=time.time() - 2, pods=ready_pods(["a-0"]), replicas=4
    )
    await source.close()
    assert decision.current_replicas == 4
    assert isinstance(observation.metrics["kvCache"], NoSignal)
    assert not isinstance(observation.metrics["kvCache"], PodSamples)
    assert decision.desired_replicas == 4  # no signal: hold, never scale down on missing data
