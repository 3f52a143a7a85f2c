"""Whole simulations: the real control loop on the fleet, reproducibility, CLI and demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.commands.demo import demo_policy
from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.load import load_workload
from autoscaler.sim.metrics import MetricDelay
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, SloTargets, run_simulation

POLICY = Path(__file__).resolve().parents[2] / "autoscaler" / "data" / "demo-policy.yaml"
SURGE = "synthetic:step:rates=6/6/18/18/18/6,every=60,in=lognormal:2000:0.5,out=lognormal:250:0.5"

METRICS_POLICY = """\
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata:
  name: llama-3-1-8b-metrics
  namespace: nim-service
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: meta-llama3-8b
  minReplicas: 2
  maxReplicas: 12
  algorithm: llm
  metrics:
    - kvCache:
        target: {type: AverageValue, averageValue: 0.3}
    - queueDepth:
        target: {type: AverageValue, averageValue: 4}
    - interTokenLatency:
        quantile: 0.95
        window: 60s
        target: {type: Value, value: 0.1}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 4, periodSeconds: 60}]
    scaleDown:
      stabilizationWindowSeconds: 120
      policies: [{type: Pods, value: 1, periodSeconds: 60}]
"""
"""KV cache, queue depth and a p95 ITL guard, no SLO: sized on the metrics alone."""


def _load_policy(text: str) -> ScalingPolicy:
    loaded = load_text(text, "metrics-policy.yaml")
    assert not loaded.errors
    return loaded.policies[0].policy


def config(seed: int = 3, **kwargs: object) -> SimulationConfig:
    options: dict[str, object] = {
        "workload": load_workload(SURGE, seed=seed),
        "profile": get_profile("8b-fp8-h100"),
        "policy": demo_policy(),
        "seed": seed,
    }
    options.update(kwargs)
    return SimulationConfig(**options)  # type: ignore[arg-type]


class TestClosedLoop:
    """The controller's loop and decision core drive the simulated fleet."""

    def test_surge_scales_up_and_pods_start_cold(self) -> None:
        """A 3x surge triggers scale-ups; new pods are ready only after their cold start."""
        decisions = []
        result = run_simulation(config(), on_decision=lambda t, d: decisions.append((t, d)))
        assert result.summary["scaleEvents"] >= 1
        assert result.summary["peakReplicas"] > 2
        first_up = min(t for t, d in decisions if d.desired_replicas > d.current_replicas)
        assert first_up >= 120.0  # the surge starts at minute 2
        ready_rows = [r for r in result.rows if r.ready > 2]
        assert ready_rows
        assert ready_rows[0].minute * 60 + 60 >= first_up + 60  # 60-120 s load
        assert len(decisions) == 6 * 60 / 15
        assert result.decisions  # the scale changes are kept

    def test_fixed_fleet_without_policy(self) -> None:
        """No policy: no controller, the fleet keeps its size."""
        result = run_simulation(config(policy=None, initial_replicas=3))
        assert result.summary["scaleEvents"] == 0
        assert {r.ready for r in result.rows} == {3}
        assert result.summary["gpuHours"] == pytest.approx(3 * 6 / 60)

    def test_same_seed_same_json(self) -> None:
        """Bit-for-bit reproducible summary and rows; another seed differs."""
        a = json.dumps(run_simulation(config(seed=5)).to_json(), sort_keys=True)
        b = json.dumps(run_simulation(config(seed=5)).to_json(), sort_keys=True)
        c = json.dumps(run_simulation(config(seed=6)).to_json(), sort_keys=True)
        assert a == b
        assert a != c

    def test_slo_accounting(self) -> None:
        """A loose SLO is always met; an impossible one never."""
        loose = run_simulation(
            config(policy=None, initial_replicas=12, slo=SloTargets(ttft=60.0, itl=10.0))
        )
        assert loose.summary["requestsWithinSlo"] == loose.summary["requests"]
        assert loose.summary["sloViolationMinutes"] == 0
        tight = run_simulation(
            config(policy=None, initial_replicas=12, slo=SloTargets(ttft=1e-4, itl=None))
        )
        assert tight.summary["requestsWithinSlo"] == 0
        assert tight.summary["sloViolationMinutes"] == 6

    def test_metric_delay_slows_the_reaction(self) -> None:
        """The HPA + adapter pipeline delay makes the first scale-up later (on the policy's
        metrics alone: without the SLO sizing's forecast)."""
        metrics_only = _load_policy(METRICS_POLICY)
        fast = run_simulation(config(cold_start=ColdStart.parse("60"), policy=metrics_only))
        slow = run_simulation(
            config(
                cold_start=ColdStart.parse("60"),
                metric_delay=MetricDelay(60.0, 30.0),
                policy=metrics_only,
            )
        )
        assert fast.summary["scaleEvents"]
        assert slow.summary["scaleEvents"]
        assert fast.decisions[0].timestamp < slow.decisions[0].timestamp


class TestCommands:
    """The simulate and demo commands."""

    def test_simulate_json(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """--output json has the documented keys; --plot writes a PNG."""
        plot = tmp_path / "run.png"
        code = main(
            ["simulate", "--policy", str(POLICY), "--trace", SURGE, "--seed", "2",
             "--duration", "240", "--slo", "ttft=0.5,itl=0.05", "--output", "json",
             "--plot", str(plot), "--cold-start", "uniform:60:90"]
        )  # fmt: skip
        assert code == 0
        doc = json.loads(capsys.readouterr().out)
        for key in ("requests", "requestsWithinSlo", "sloViolationMinutes", "gpuHours",
                    "scaleEvents", "peakReplicas", "settings", "minutes"):  # fmt: skip
            assert key in doc
        assert doc["settings"]["seed"] == 2
        assert doc["settings"]["slo"] == {"ttft": 0.5, "itl": 0.05, "quantile": 0.95}
        assert doc["settings"]["coldStart"] == "uniform:60:90"
        assert len(doc["minutes"]) == 4
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_simulate_table(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The table has one row per minute and a summary."""
        code = main(["simulate", "--policy", str(POLICY), "--trace", SURGE, "--duration", "120"])
        assert code == 0
        out = capsys.readouterr().out
        assert "p95ttft_ms" in out
        assert "GPU-hours" in out

    def test_simulate_bad_trace(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A bad load spec exits 2 with a message."""
        code = main(["simulate", "--policy", str(POLICY), "--trace", "synthetic:wave:rate=1"])
        assert code == 2
        assert "unknown synthetic load kind" in capsys.readouterr().err

    def test_demo_short(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """The demo prints decisions with explanations, the summary and the plot path."""
        assert main(["demo", "--short", "--out-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "(no change)" in out
        assert " -> " in out  # at least one scale decision
        assert "=> desired" in out  # its explanation block
        assert "SLO-violating minutes" in out
        assert f"plot: {tmp_path / 'demo.png'}" in out
        assert (tmp_path / "demo.png").exists()


def test_arrival_chunks_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrivals are converted in chunks; the chunk size does not change the outcome."""
    from autoscaler.sim.fleet import Fleet

    cfg = config(policy=None, initial_replicas=4, duration=180.0)
    reference = json.dumps(run_simulation(cfg).to_json(), sort_keys=True)
    monkeypatch.setattr(Fleet, "_CHUNK", 97)
    assert json.dumps(run_simulation(cfg).to_json(), sort_keys=True) == reference


def test_realtime_mode_paces_and_serves() -> None:
    """--realtime paces against the wall clock; --serve-metrics starts and stops a server."""
    import time

    cfg = config(policy=None, initial_replicas=2, duration=60.0, realtime=300.0, serve_metrics=0)
    started = time.monotonic()
    result = run_simulation(cfg)
    assert time.monotonic() - started >= 60.0 / 300.0
    assert result.summary["finished"] == result.summary["requests"]
