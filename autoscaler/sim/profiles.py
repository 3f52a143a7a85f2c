"""Hardware profiles: the per-step cost model of one simulated inference replica.

A profile holds the engine limits (``max_num_seqs``, the per-step token budget, KV-cache blocks)
and the coefficients of the step-time model used by :mod:`autoscaler.sim.engine`. Every profile
names the reference points it was calibrated to (``/work/shared/reference/serving.md`` §3);
``tests/sim/test_calibration.py`` drives each one with a closed-loop client and checks it against
those points.

Step time, with ``P`` prefill tokens and ``D`` decoding sequences in the step (``T = P + D``) and
``C`` the summed context of the decoding sequences:

* roofline form (default): ``t = max(m + k*T, b*T)``: a memory-bound floor that grows slowly with
  the batch, and a compute-bound branch linear in the tokens of the step;
* extended form (``extended=True``): ``t = max(m + k*T, s*(b_p*P + d0*D + d1*C))``: the
  compute branch charges prefill tokens, decoding sequences and the attention over their context
  separately, which matters for long prompts (Mooncake-like traces).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

BLOCK_SIZE: Final = 16
"""KV-cache block size in tokens (vLLM default)."""


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    """Engine limits and step-time coefficients of one replica (one pod)."""

    name: str
    description: str
    source: str
    """Where the coefficients come from (reference points they were fitted to)."""
    m: float
    """Fixed per-step time (memory-bound floor), seconds."""
    k: float
    """Per-token increment of the memory-bound branch, seconds/token."""
    b: float
    """Per-token time of the compute-bound branch, seconds/token (roofline form)."""
    overhead: float = 0.0
    """Fixed API overhead ``o`` added to TTFT and E2E, seconds."""
    frontend_per_running: float = 0.0
    """Front-end queueing added to TTFT and E2E per running request at arrival (``q``), s."""
    max_num_seqs: int = 256
    """Most sequences in the running batch."""
    max_num_batched_tokens: int = 8192
    """Token budget of one engine step (decode tokens + prefill chunk tokens)."""
    kv_blocks: int = 27_793
    """KV-cache capacity in blocks of :data:`BLOCK_SIZE` tokens."""
    gpus: int = 1
    """GPUs per pod (``nvidia.com/gpu`` request)."""
    extended: bool = False
    """Use the extended step-time form with the coefficients below."""
    s: float = 1.0
    """Extended form: scale of the compute branch."""
    b_p: float = 0.0
    """Extended form: seconds per prefill token."""
    d0: float = 0.0
    """Extended form: seconds per decoding sequence."""
    d1: float = 0.0
    """Extended form: seconds per context token of the decoding sequences."""
    cold_start: str = "uniform:60:120"
    """Default cold-start spec of pods of this profile (see :mod:`autoscaler.sim.cluster`)."""

    def step_time(self, prefill: int, decode: int, context: float = 0.0) -> float:
        """Duration of one engine step, seconds.

        Args:
            prefill: prefill tokens scheduled in the step.
            decode: decoding sequences in the step (one token each).
            context: summed context length (tokens) of the decoding sequences.
        """
        tokens = prefill + decode
        memory = self.m + self.k * tokens
        if self.extended:
            compute = self.s * (self.b_p * prefill + self.d0 * decode + self.d1 * context)
        else:
            compute = self.b * tokens
        return memory if memory > compute else compute

    def with_kv_blocks(self, blocks: int) -> HardwareProfile:
        """A copy with another KV capacity (for experiments with long contexts)."""
        return replace(self, kv_blocks=blocks)


PROFILES: dict[str, HardwareProfile] = {
    "8b-fp8-h100": HardwareProfile(
        name="8b-fp8-h100",
        description="Llama-3.1-8B-Instruct, FP8, 1x H100 80GB (NIM 1.3.0 table)",
        source=(
            "serving.md §3.1 NIM 1.3.0 llama-3.1-8b-instruct table (ISL/OSL 200/200 inferred); "
            "parameter set A of serving.md §4 (m=4.2 ms, k=24 us, b=48 us, o=0); "
            "KV: 27,793 BF16 blocks "
            "(NIM 1.0.0 log, §3.4) x2 for FP8 KV"
        ),
        m=4.2e-3,
        k=24e-6,
        b=48e-6,
        overhead=0.0,
        frontend_per_running=0.0,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        kv_blocks=55_586,
        gpus=1,
        cold_start="uniform:60:120",
    ),
    "8b-h100-slow": HardwareProfile(
        name="8b-h100-slow",
        description="Llama-3.1-8B, slower deployment (c=10: TTFT 85 ms, ITL 8.8 ms, 5.41 req/s)",
        source=(
            "serving.md §4 parameter set B (m=8.3 ms, k=24 us, b=49 us, o=65 ms), fitted to the "
            "reference point c=10: TTFT ~85 ms, ITL ~8.8 ms, ~5.4 req/s at 200/200 tokens; "
            "KV: 27,793 BF16 blocks (NIM 1.0.0 vllm-fp16-tp1 log, §3.4)"
        ),
        m=8.3e-3,
        k=24e-6,
        b=49e-6,
        overhead=65e-3,
        frontend_per_running=0.0,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        kv_blocks=27_793,
        gpus=1,
        cold_start="uniform:60:120",
    ),
    "70b-fp8-h100-tp2": HardwareProfile(
        name="70b-fp8-h100-tp2",
        description="Llama-3.1-70B-Instruct, FP8, 2x H100 80GB TP2 (NIM 1.3.0 table)",
        source=(
            "serving.md §3.1 NIM 1.3.0 llama-3.1-70b-instruct table (200/200 inferred); linear "
            "fit t = 12.6 ms + 49.5 us x tokens per step (§4); hardware/TP not visible in the "
            "source, TP2 assumed; KV: (2x80 GB x 0.9 - 70 GB weights) / 160 KiB per FP8 token "
            "~ 470k tokens"
        ),
        m=12.6e-3,
        k=49.5e-6,
        b=0.0,
        overhead=0.0,
        frontend_per_running=0.0,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        kv_blocks=29_400,
        gpus=2,
        cold_start="uniform:120:240",
    ),
    "8b-fp8-h100-extended": HardwareProfile(
        name="8b-fp8-h100-extended",
        description="Llama-3.1-8B FP8 H100, extended step form for long prompts",
        source=(
            "serving.md §4 parameter sets C and D: m=4.2 ms, k=24 us; compute branch "
            "s=2.47 x (15.1 us/prefill token + 16.5 us/decoding sequence + 24.3 ns/context "
            "token), C fitted to TensorRT-LLM perf-overview offline maxima (§3.2) and scaled "
            "to the NIM 1.3.0 served throughput"
        ),
        m=4.2e-3,
        k=24e-6,
        b=0.0,
        overhead=0.0,
        frontend_per_running=0.0,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        kv_blocks=55_586,
        gpus=1,
        extended=True,
        s=2.47,
        b_p=15.1e-6,
        d0=16.5e-6,
        d1=24.3e-9,
        cold_start="uniform:60:120",
    ),
}
"""Bundled profiles by name."""

DEFAULT_PROFILE = "8b-fp8-h100"


def get_profile(name: str) -> HardwareProfile:
    """The bundled profile called ``name``; ``KeyError`` names the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        msg = f"unknown hardware profile {name!r} (known: {known})"
        raise KeyError(msg) from None
