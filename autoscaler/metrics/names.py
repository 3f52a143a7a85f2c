"""Metric names of the presets in each exporter family (NIM, vLLM, legacy vLLM), and buckets.

Read by :mod:`autoscaler.metrics.prometheus` to build queries and to auto-detect which family a
namespace's pods export (``metricNames: auto``), and by the policy linter
(:func:`coarse_bucket_warning`). Sources: ``/work/shared/reference/serving.md`` section 2 (vLLM
``vllm/engine/metrics.py`` and ``vllm/v1/metrics/loggers.py``; NIM for LLMs observability docs).

Families:

* ``nim``: NIM for LLMs, unprefixed (``gpu_cache_usage_perc``, ``time_per_output_token_seconds``).
* ``vllm``: vLLM >= 0.10 (``vllm:kv_cache_usage_perc``, ``vllm:inter_token_latency_seconds``).
* ``vllm-legacy``: vLLM < 0.10 (``vllm:gpu_cache_usage_perc``,
  ``vllm:time_per_output_token_seconds``).

Colons are legal in Prometheus metric names, so ``vllm:kv_cache_usage_perc{...}`` is valid PromQL
as written (checked against the real server in ``tests/metrics``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from autoscaler.policy.models import LATENCY_KINDS, MetricKind, MetricNames


class SeriesKind(StrEnum):
    """What kind of Prometheus series a preset reads."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


PRESET_SERIES: Mapping[MetricKind, SeriesKind] = {
    MetricKind.KV_CACHE: SeriesKind.GAUGE,
    MetricKind.QUEUE_DEPTH: SeriesKind.GAUGE,
    MetricKind.RUNNING_REQUESTS: SeriesKind.GAUGE,
    MetricKind.REQUEST_RATE: SeriesKind.COUNTER,
    MetricKind.PROMPT_TOKEN_RATE: SeriesKind.COUNTER,
    MetricKind.GENERATION_TOKEN_RATE: SeriesKind.COUNTER,
    MetricKind.INTER_TOKEN_LATENCY: SeriesKind.HISTOGRAM,
    MetricKind.TIME_TO_FIRST_TOKEN: SeriesKind.HISTOGRAM,
    MetricKind.E2E_LATENCY: SeriesKind.HISTOGRAM,
}
"""Series type read by each preset (``prometheus`` custom queries are not presets)."""

FAMILIES: tuple[MetricNames, ...] = (MetricNames.VLLM, MetricNames.VLLM_LEGACY, MetricNames.NIM)
"""Concrete families, in auto-detection preference order (ties go to the first)."""

_NAMES: Mapping[MetricNames, Mapping[MetricKind, str]] = {
    MetricNames.NIM: {
        MetricKind.KV_CACHE: "gpu_cache_usage_perc",
        MetricKind.QUEUE_DEPTH: "num_requests_waiting",
        MetricKind.RUNNING_REQUESTS: "num_requests_running",
        MetricKind.REQUEST_RATE: "request_success_total",
        MetricKind.PROMPT_TOKEN_RATE: "prompt_tokens_total",
        MetricKind.GENERATION_TOKEN_RATE: "generation_tokens_total",
        MetricKind.INTER_TOKEN_LATENCY: "time_per_output_token_seconds",
        MetricKind.TIME_TO_FIRST_TOKEN: "time_to_first_token_seconds",
        MetricKind.E2E_LATENCY: "e2e_request_latency_seconds",
    },
    MetricNames.VLLM: {
        MetricKind.KV_CACHE: "vllm:kv_cache_usage_perc",
        MetricKind.QUEUE_DEPTH: "vllm:num_requests_waiting",
        MetricKind.RUNNING_REQUESTS: "vllm:num_requests_running",
        MetricKind.REQUEST_RATE: "vllm:request_success_total",
        MetricKind.PROMPT_TOKEN_RATE: "vllm:prompt_tokens_total",
        MetricKind.GENERATION_TOKEN_RATE: "vllm:generation_tokens_total",
        MetricKind.INTER_TOKEN_LATENCY: "vllm:inter_token_latency_seconds",
        MetricKind.TIME_TO_FIRST_TOKEN: "vllm:time_to_first_token_seconds",
        MetricKind.E2E_LATENCY: "vllm:e2e_request_latency_seconds",
    },
    MetricNames.VLLM_LEGACY: {
        MetricKind.KV_CACHE: "vllm:gpu_cache_usage_perc",
        MetricKind.QUEUE_DEPTH: "vllm:num_requests_waiting",
        MetricKind.RUNNING_REQUESTS: "vllm:num_requests_running",
        MetricKind.REQUEST_RATE: "vllm:request_success_total",
        MetricKind.PROMPT_TOKEN_RATE: "vllm:prompt_tokens_total",
        MetricKind.GENERATION_TOKEN_RATE: "vllm:generation_tokens_total",
        MetricKind.INTER_TOKEN_LATENCY: "vllm:time_per_output_token_seconds",
        MetricKind.TIME_TO_FIRST_TOKEN: "vllm:time_to_first_token_seconds",
        MetricKind.E2E_LATENCY: "vllm:e2e_request_latency_seconds",
    },
}

# Histogram bucket upper bounds (without +Inf), serving.md 2.1. NIM uses the vLLM V0 lists.
_V0_BUCKETS: Mapping[MetricKind, tuple[float, ...]] = {
    MetricKind.TIME_TO_FIRST_TOKEN: (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ),
    MetricKind.INTER_TOKEN_LATENCY: (
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    ),
    MetricKind.E2E_LATENCY: (1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0),
}  # fmt: skip
_V1_BUCKETS: Mapping[MetricKind, tuple[float, ...]] = {
    MetricKind.TIME_TO_FIRST_TOKEN: (
        *_V0_BUCKETS[MetricKind.TIME_TO_FIRST_TOKEN], 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
    ),
    MetricKind.INTER_TOKEN_LATENCY: (
        *_V0_BUCKETS[MetricKind.INTER_TOKEN_LATENCY], 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    ),
    MetricKind.E2E_LATENCY: (
        0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
        120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
    ),
}  # fmt: skip
_BUCKETS: Mapping[MetricNames, Mapping[MetricKind, tuple[float, ...]]] = {
    MetricNames.NIM: _V0_BUCKETS,
    MetricNames.VLLM: _V1_BUCKETS,
    # vLLM < 0.10 spans V0 (0.6) and V1 (0.8.5); the coarser V0 lists are the safe assumption.
    MetricNames.VLLM_LEGACY: _V0_BUCKETS,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One spelling under which a preset may be exported."""

    family: MetricNames
    name: str
    """The exported name (histograms: the base name)."""

    def probe_name(self, kind: MetricKind) -> str:
        """The series that shows it is exported (histograms: ``<name>_count``)."""
        return f"{self.name}_count" if PRESET_SERIES[kind] is SeriesKind.HISTOGRAM else self.name


def metric_name(kind: MetricKind, family: MetricNames) -> str:
    """The exported metric name of a preset in a family (histograms: the base name).

    Raises:
        ValueError: ``family`` is ``auto`` or ``kind`` is ``prometheus`` (no fixed name).
    """
    if family is MetricNames.AUTO:
        msg = "metric names 'auto' must be resolved to a family first"
        raise ValueError(msg)
    if kind not in PRESET_SERIES:
        msg = f"{kind.value!r} is not a preset with a fixed metric name"
        raise ValueError(msg)
    return _NAMES[family][kind]


def probe_name(kind: MetricKind, family: MetricNames) -> str:
    """The series name that shows a preset is exported (histograms: ``<name>_count``)."""
    name = metric_name(kind, family)
    return f"{name}_count" if PRESET_SERIES[kind] is SeriesKind.HISTOGRAM else name


def escaped(name: str) -> str:
    """The name with ``:`` escaped to ``_``, as recent ``prometheus_client`` versions expose it.

    ``prometheus_client`` 0.26 answers an OpenMetrics scrape (Prometheus 2.x asks for OpenMetrics
    first) with ``vllm:kv_cache_usage_perc`` written ``vllm_kv_cache_usage_perc``.
    """
    return name.replace(":", "_")


def candidates(kind: MetricKind) -> tuple[Candidate, ...]:
    """Every spelling a preset may be exported as, in preference order.

    First the family names (vLLM, legacy vLLM, NIM), then the underscore-escaped spellings of
    names with a colon.
    """
    plain = [Candidate(family, metric_name(kind, family)) for family in FAMILIES]
    extra = [Candidate(c.family, escaped(c.name)) for c in plain if ":" in c.name]
    out: dict[str, Candidate] = {}
    for candidate in (*plain, *extra):
        out.setdefault(candidate.name, candidate)  # one entry per spelling, first family wins
    return tuple(out.values())


def all_probe_names() -> tuple[str, ...]:
    """Every series name the auto-detection probe looks for (sorted, unique)."""
    return tuple(sorted({c.probe_name(kind) for kind in PRESET_SERIES for c in candidates(kind)}))


def bucket_bounds(kind: MetricKind, family: MetricNames) -> tuple[float, ...]:
    """Finite bucket upper bounds of a latency preset in a family (``auto``: the coarsest)."""
    if kind not in LATENCY_KINDS:
        msg = f"{kind.value!r} is not a histogram preset"
        raise ValueError(msg)
    if family is MetricNames.AUTO:
        family = MetricNames.NIM
    return _BUCKETS[family][kind]


def coarse_bucket_warning(
    kind: MetricKind, names: MetricNames, target: float, statistic: str = "quantile"
) -> str | None:
    """A warning when a latency target is too fine for the exporter's histogram buckets.

    A quantile interpolated from buckets can only resolve the target if the bucket holding it is
    narrow compared with it. The warning is given when the target lies in the first bucket
    (between 0 and its bound everything is a straight-line guess: vLLM/NIM's first ITL bucket is
    10 ms while an 8B model on an H100 runs at 4-9 ms) or the bucket holding it is at least as wide
    as the target itself.

    Args:
        kind: The latency preset.
        names: The policy's ``metricNames`` (``auto``: the coarsest family is assumed).
        target: The latency target, seconds.
        statistic: ``quantile`` or ``mean`` (the mean of ``_sum/_count`` is not bucketed: no
            warning).

    Returns:
        The warning text, or None when the buckets are fine enough (or the kind is not a
        bucketed latency).
    """
    if kind not in LATENCY_KINDS or statistic != "quantile":
        return None
    if not math.isfinite(target) or target <= 0:
        return None
    bounds = bucket_bounds(kind, names)
    index = bisect.bisect_left(bounds, target)
    if index >= len(bounds):
        return (
            f"{kind.value} target {target:g}s is above the last finite bucket "
            f"({bounds[-1]:g}s): a quantile there can never exceed {bounds[-1]:g}s"
        )
    lower = 0.0 if index == 0 else bounds[index - 1]
    upper = bounds[index]
    if index == 0 or (upper - lower) >= target:
        return (
            f"{kind.value} target {target:g}s falls in the bucket ({lower:g}s, {upper:g}s] of "
            f"the exporter's histogram, too coarse to resolve it; use 'statistic: mean' "
            f"(from _sum/_count) or a larger target"
        )
    return None
