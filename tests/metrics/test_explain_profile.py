"""``nim-autoscaler explain`` shows the capacity read from a policy's GenAI-Perf sweep."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from autoscaler.cli import main
from tests.metrics.env import LlmEnv

pytestmark = pytest.mark.prometheus

SWEEP = Path(__file__).resolve().parents[1] / "data" / "profiles" / "genai-perf-8b-h100"

POLICY = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {name: llama, namespace: nim-a}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: llama}
  minReplicas: 1
  maxReplicas: 10
  algorithm: llm
  slo:
    ttft: {quantile: 0.95, target: 0.5}
    itl: {quantile: 0.95, target: 0.05}
  capacity:
    profile: sweep
  metrics:
    - kvCache: {target: {type: AverageValue, averageValue: 0.25}}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The command configures structlog for its stderr; give the next tests the defaults back."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """The policy next to its sweep directory."""
    shutil.copytree(SWEEP, tmp_path / "sweep")
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def explain(llm_env: LlmEnv, policy_file: Path, *extra: str) -> list[str]:
    return [
        "explain",
        "--policy",
        str(policy_file),
        "--prometheus-url",
        llm_env.server.url,
        "--pods",
        "a-0,a-1,a-2",
        "--replicas",
        "3",
        "--at",
        str(time.time() - 2),
        *extra,
    ]


def test_text_shows_capacity_margin_and_lengths(
    llm_env: LlmEnv, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text report ends with the capacity per replica, what limits it and the lengths."""
    code = main(explain(llm_env, policy_file))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"capacity profile {policy_file.parent / 'sweep'}:" in out
    assert "11.4 req/s per replica" in out
    assert "limited by ttft" in out
    assert "itl p95 0.0112 s <= 0.05 s (margin 78%)" in out
    assert "lengths 1000 in / 128 out tokens" in out


def test_json_has_capacity_profile(
    llm_env: LlmEnv, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON report carries a capacityProfile object beside the decision."""
    code = main(explain(llm_env, policy_file, "--output", "json"))
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    capacity = report["capacityProfile"]
    assert capacity["source"] == "profile"
    assert capacity["limitedBy"] == "ttft"
    assert capacity["requestsPerSecond"] == pytest.approx(11.39, abs=0.01)
    assert capacity["concurrencyLevels"] == [1, 2, 5, 10, 50, 100, 250]
    assert report["desiredReplicas"] >= 1


def test_bad_profile_fails_with_located_error(
    policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy whose profile is missing is refused before anything is queried."""
    shutil.rmtree(policy_file.parent / "sweep")
    code = main(["explain", "--policy", str(policy_file), "--prometheus-url", "http://127.0.0.1:9"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"{policy_file}:13:14: spec.capacity.profile: capacity profile" in err
