"""The compiled engine (mypyc build of ``engine.py``) gives the reference engine's results exactly.

The build is made here when missing or stale (``make native`` does the same), so these tests
always compare the two engines, on loads that exercise every path: each balancer, a GPU limit,
scale-ups and drained scale-downs, heavy preemption, the extended step-time model, 70B pods and
tiny arrival chunks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoscaler.commands.demo import demo_policy
from autoscaler.sim import engine as python_engine
from autoscaler.sim import native
from autoscaler.sim.cluster import ColdStart
from autoscaler.sim.fleet import Fleet
from autoscaler.sim.load import load_workload
from autoscaler.sim.profiles import get_profile
from autoscaler.sim.run import SimulationConfig, run_simulation

SURGE = "synthetic:step:rates=6/30/30/60/10/6,every=60,in=lognormal:2000:0.5,out=lognormal:250:0.5"
HEAVY = "synthetic:poisson:rate=30,duration=240,in=lognormal:8000:0.6,out=lognormal:600:0.5"


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    """A current compiled build (built now if missing or stale)."""
    if native.status() != "compiled":
        native.build()
    assert native.status() == "compiled"


def both(cfg: SimulationConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON documents of the Python and the compiled engine on ``cfg``."""
    runs = []
    for engine in ("python", "compiled"):
        doc = run_simulation(SimulationConfig(**{**_fields(cfg), "engine": engine})).to_json()
        runs.append(json.loads(json.dumps(doc)))
    return runs[0], runs[1]


def _fields(cfg: SimulationConfig) -> dict[str, Any]:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


class TestSameResults:
    """Same seed, same JSON, whichever engine runs."""

    @pytest.mark.parametrize("balancer", ["least", "round-robin", "random"])
    @pytest.mark.parametrize("gpus", [None, 5], ids=["unlimited", "5-gpus"])
    def test_autoscaled_surge(self, balancer: str, gpus: int | None) -> None:
        """The demo policy on a surge: scale-ups, cold starts, drained scale-downs."""
        cfg = SimulationConfig(
            workload=load_workload(SURGE, seed=3),
            profile=get_profile("8b-fp8-h100"),
            policy=demo_policy(),
            seed=3,
            cold_start=ColdStart.parse("uniform:20:40"),
            balancer=balancer,
            gpu_capacity=gpus,
            drain=30.0,
        )
        python, compiled = both(cfg)
        assert python == compiled
        assert python["scaleEvents"] >= 2

    @pytest.mark.parametrize("profile", ["8b-fp8-h100", "8b-fp8-h100-extended", "70b-fp8-h100-tp2"])
    def test_heavy_preemption(self, profile: str) -> None:
        """Long prompts on two pods: KV exhaustion and preemption on every step model."""
        cfg = SimulationConfig(
            workload=load_workload(HEAVY, seed=5),
            profile=get_profile(profile),
            initial_replicas=2,
            seed=5,
        )
        python, compiled = both(cfg)
        assert python == compiled
        assert python["preemptions"] > 0

    def test_small_arrival_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Chunk refills inside the compiled loop give the same run."""
        monkeypatch.setattr(Fleet, "_CHUNK", 97)
        cfg = SimulationConfig(
            workload=load_workload(SURGE, seed=4),
            profile=get_profile("8b-fp8-h100"),
            initial_replicas=4,
            seed=4,
        )
        python, compiled = both(cfg)
        assert python == compiled


class TestChoice:
    """Which engine runs, and what happens to a stale build."""

    def test_compiled_is_another_module(self) -> None:
        """The build does not shadow the reference: both modules load side by side."""
        module = native.engine_module("compiled")
        assert module is not python_engine
        assert module.__file__ is not None
        assert module.__file__.endswith(".so")
        assert native.engine_module("python") is python_engine

    def test_stale_build_is_never_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """After an edit of engine.py: ``auto`` falls back to Python, ``compiled`` is refused."""
        monkeypatch.setattr(native, "source_digest", lambda: "edited")
        assert native.engine_module("auto") is python_engine
        with pytest.raises(native.NativeUnavailable, match="rebuild it with `make native`"):
            native.engine_module("compiled")

    def test_unknown_engine(self) -> None:
        """A typo is an error naming the choices."""
        with pytest.raises(ValueError, match="auto, python, compiled"):
            native.engine_module("fast")
