"""The kube-controller-manager flags the HPA decides with, and the commands that honour them.

``--horizontal-pod-autoscaler-tolerance`` (``AUTOSCALER_HPA_TOLERANCE``) and
``--horizontal-pod-autoscaler-downscale-stabilization`` (``AUTOSCALER_HPA_DOWNSCALE_STABILIZATION``)
reach the decision core as :class:`~autoscaler.decision.resolved.HpaFlags`; a policy's own
``behavior`` values win over them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from autoscaler.cli import main
from autoscaler.decision.resolved import DEFAULT_FLAGS, HpaFlags, resolve
from autoscaler.decision.types import History, Recommendation
from autoscaler.settings import HpaSettings, Settings

from .helpers import decide, observe, pods_metric, policy, rules, running_pods, samples

NOW = 1000.0


def _decide(pol: Any, current: int, value: float, flags: HpaFlags, history: History) -> int:
    obs = observe(current, running_pods(current), {"qps": samples(*[value] * current)})
    return decide(pol, obs, history, NOW, flags=flags).decision.desired_replicas


class TestTolerance:
    """``AUTOSCALER_HPA_TOLERANCE``: the dead band unless ``behavior`` sets one."""

    def test_default_band_holds_an_eight_percent_excess(self) -> None:
        """Ratio 1.08 is inside the default 10 % band: no change."""
        pol = policy([pods_metric("qps", 10)])
        assert _decide(pol, 4, 10.8, DEFAULT_FLAGS, History()) == 4

    def test_narrower_flag_scales_up(self) -> None:
        """With the flag at 5 %, ratio 1.08 scales 4 -> ceil(1.08 x 4) = 5."""
        pol = policy([pods_metric("qps", 10)])
        assert _decide(pol, 4, 10.8, HpaFlags(tolerance=0.05), History()) == 5

    def test_flag_applies_to_both_directions_with_empty_behavior(self) -> None:
        """``behavior: {}`` takes the flag for both directions' tolerance."""
        rp = resolve(policy([pods_metric("qps", 10)], behavior={}), HpaFlags(tolerance=0.2))
        assert (rp.tolerance_up, rp.tolerance_down) == (0.2, 0.2)

    def test_behavior_tolerance_wins_for_its_direction(self) -> None:
        """scaleUp.tolerance 0.1 overrides a 5 % flag (no scale-up); scaleDown keeps the flag."""
        behavior = {"scaleUp": {"tolerance": "0.1"}}
        pol = policy([pods_metric("qps", 10)], behavior=behavior)
        assert _decide(pol, 4, 10.8, HpaFlags(tolerance=0.05), History()) == 4
        rp = resolve(pol, HpaFlags(tolerance=0.05))
        assert (rp.tolerance_up, rp.tolerance_down) == (0.1, 0.05)


def _held_history() -> History:
    """A recommendation of 8 made 200 s ago (inside 300 s, outside 120 s)."""
    return History(initialized=True, recommendations=(Recommendation(NOW - 200, 8),))


class TestDownscaleStabilization:
    """``AUTOSCALER_HPA_DOWNSCALE_STABILIZATION``: the legacy window and the unset default."""

    def test_legacy_default_window_holds(self) -> None:
        """Without behavior, the 300 s window keeps the recommendation of 8 from 200 s ago."""
        pol = policy([pods_metric("qps", 10)])
        assert _decide(pol, 8, 5.0, DEFAULT_FLAGS, _held_history()) == 8

    def test_legacy_shorter_flag_scales_down(self) -> None:
        """With a 120 s flag the 200 s-old recommendation is outside: 8 -> 4."""
        pol = policy([pods_metric("qps", 10)])
        assert _decide(pol, 8, 5.0, HpaFlags(downscale_stabilization=120), _held_history()) == 4

    def test_behavior_without_window_takes_the_flag(self) -> None:
        """scaleDown without stabilizationWindowSeconds: the flag's 120 s applies."""
        behavior = {
            "scaleDown": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
        }
        pol = policy([pods_metric("qps", 10)], behavior=behavior)
        flags = HpaFlags(downscale_stabilization=120)
        assert resolve(pol, flags).down.window == 120
        assert _decide(pol, 8, 5.0, flags, _held_history()) == 4

    def test_behavior_window_wins(self) -> None:
        """An explicit scaleDown window of 300 s holds whatever the flag says."""
        pol = policy(
            [pods_metric("qps", 10)],
            behavior={"scaleDown": rules(window=300, percent=100, percent_period=15)},
        )
        assert _decide(pol, 8, 5.0, HpaFlags(downscale_stabilization=0), _held_history()) == 8


class TestSettings:
    """The environment variables and the commands that read them."""

    def test_defaults_are_the_controller_managers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Unset: 0.1 and 300 s, as kube-controller-manager."""
        monkeypatch.delenv("AUTOSCALER_HPA_TOLERANCE", raising=False)
        monkeypatch.delenv("AUTOSCALER_HPA_DOWNSCALE_STABILIZATION", raising=False)
        hpa = HpaSettings()
        assert (DEFAULT_FLAGS.tolerance, DEFAULT_FLAGS.downscale_stabilization) == (
            hpa.hpa_tolerance,
            hpa.hpa_downscale_stabilization,
        )

    def test_environment_is_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Both variables reach the controller's settings."""
        monkeypatch.setenv("AUTOSCALER_HPA_TOLERANCE", "0.05")
        monkeypatch.setenv("AUTOSCALER_HPA_DOWNSCALE_STABILIZATION", "120")
        settings = Settings()
        assert (settings.hpa_tolerance, settings.hpa_downscale_stabilization) == (0.05, 120)

    def test_negative_tolerance_is_rejected(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A negative value is a settings error naming the field."""
        monkeypatch.setenv("AUTOSCALER_HPA_TOLERANCE", "-0.1")
        with pytest.raises(ValueError, match="hpa_tolerance"):
            HpaSettings()


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A legacy (no behavior) policy and a one-tick timeline asking 4 -> 2."""
    doc = {
        "apiVersion": "nim-autoscaler/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "flags", "namespace": "ns"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [pods_metric("qps", 10)],
        },
    }
    pol = tmp_path / "policy.yaml"
    pol.write_text(yaml.safe_dump(doc), encoding="utf-8")
    pods = [
        {"name": f"p{i}", "phase": "Running", "ready": True, "metrics": {"qps": 5}}
        for i in range(4)
    ]
    timeline = tmp_path / "timeline.json"
    timeline.write_text(
        json.dumps({"ticks": [{"t": 0, "currentReplicas": 4, "pods": pods}]}), encoding="utf-8"
    )
    return pol, timeline


class TestReplayCommand:
    """``replay`` decides with the flags from the environment."""

    def _desired(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> int:
        pol, timeline = _write_inputs(tmp_path)
        code = main(["replay", "--policy", str(pol), "--timeline", str(timeline), "-o", "json"])
        assert code == 0
        rows = json.loads(capsys.readouterr().out)
        desired: int = rows[0]["desiredReplicas"]
        return desired

    def test_default_window_holds_first_sight(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """First sight seeds (0, 4); the 300 s window keeps 4."""
        monkeypatch.delenv("AUTOSCALER_HPA_DOWNSCALE_STABILIZATION", raising=False)
        assert self._desired(tmp_path, capsys) == 4

    def test_zero_window_scales_down(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the window at 0 s nothing holds: 4 -> 2."""
        monkeypatch.setenv("AUTOSCALER_HPA_DOWNSCALE_STABILIZATION", "0")
        assert self._desired(tmp_path, capsys) == 2

    def test_bad_value_exits_1_naming_the_variable(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A non-numeric value is reported, not a traceback."""
        monkeypatch.setenv("AUTOSCALER_HPA_TOLERANCE", "ten percent")
        pol, timeline = _write_inputs(tmp_path)
        assert main(["replay", "--policy", str(pol), "--timeline", str(timeline)]) == 1
        assert "hpa_tolerance" in capsys.readouterr().err


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    """``simulate`` configures structlog for its stderr; give the next tests the defaults back."""
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("_restore_logging")
def test_simulate_decides_with_the_environments_flags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``simulate`` reads both variables and reports them with its settings."""
    monkeypatch.setenv("AUTOSCALER_HPA_TOLERANCE", "0.05")
    monkeypatch.setenv("AUTOSCALER_HPA_DOWNSCALE_STABILIZATION", "120")
    policy_file = Path(__file__).resolve().parents[2] / "autoscaler" / "data" / "demo-policy.yaml"
    code = main(
        ["simulate", "--policy", str(policy_file), "--trace", "synthetic:step:rates=6/18,every=60",
         "--duration", "120", "--output", "json"]
    )  # fmt: skip
    assert code == 0
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert (settings["hpaTolerance"], settings["hpaDownscaleStabilization"]) == (0.05, 120)
