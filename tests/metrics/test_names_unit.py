"""Pure tests of metric names per family, bucket bounds and the coarse-bucket warning."""

from __future__ import annotations

import pytest

from autoscaler.metrics.names import (
    all_probe_names,
    bucket_bounds,
    candidates,
    coarse_bucket_warning,
    metric_name,
    probe_name,
)
from autoscaler.policy.models import MetricKind, MetricNames


@pytest.mark.parametrize(
    ("kind", "family", "expected"),
    [
        (MetricKind.KV_CACHE, MetricNames.NIM, "gpu_cache_usage_perc"),
        (MetricKind.KV_CACHE, MetricNames.VLLM, "vllm:kv_cache_usage_perc"),
        (MetricKind.KV_CACHE, MetricNames.VLLM_LEGACY, "vllm:gpu_cache_usage_perc"),
        (MetricKind.INTER_TOKEN_LATENCY, MetricNames.NIM, "time_per_output_token_seconds"),
        (MetricKind.INTER_TOKEN_LATENCY, MetricNames.VLLM, "vllm:inter_token_latency_seconds"),
        (
            MetricKind.INTER_TOKEN_LATENCY,
            MetricNames.VLLM_LEGACY,
            "vllm:time_per_output_token_seconds",
        ),
        (MetricKind.QUEUE_DEPTH, MetricNames.NIM, "num_requests_waiting"),
        (MetricKind.REQUEST_RATE, MetricNames.VLLM, "vllm:request_success_total"),
        (MetricKind.E2E_LATENCY, MetricNames.NIM, "e2e_request_latency_seconds"),
    ],
)
def test_metric_names(kind: MetricKind, family: MetricNames, expected: str) -> None:
    """Names per family, as serving.md section 2 lists them."""
    assert metric_name(kind, family) == expected


def test_probe_names_cover_every_family_and_use_count_for_histograms() -> None:
    """The probe looks for every candidate; histograms through their _count series."""
    names = all_probe_names()
    assert "vllm:inter_token_latency_seconds_count" in names
    assert "gpu_cache_usage_perc" in names
    assert probe_name(MetricKind.TIME_TO_FIRST_TOKEN, MetricNames.NIM) == (
        "time_to_first_token_seconds_count"
    )
    assert [(c.family, c.name) for c in candidates(MetricKind.KV_CACHE)] == [
        (MetricNames.VLLM, "vllm:kv_cache_usage_perc"),
        (MetricNames.VLLM_LEGACY, "vllm:gpu_cache_usage_perc"),
        (MetricNames.NIM, "gpu_cache_usage_perc"),
        (MetricNames.VLLM, "vllm_kv_cache_usage_perc"),
        (MetricNames.VLLM_LEGACY, "vllm_gpu_cache_usage_perc"),
    ]
    # Same name in both vLLM families: listed once per spelling.
    assert [c.name for c in candidates(MetricKind.QUEUE_DEPTH)] == [
        "vllm:num_requests_waiting",
        "num_requests_waiting",
        "vllm_num_requests_waiting",
    ]
    assert "vllm_inter_token_latency_seconds_count" in names


def test_auto_and_custom_have_no_fixed_name() -> None:
    """'auto' must be resolved first; custom queries have no preset name."""
    with pytest.raises(ValueError, match="resolved"):
        metric_name(MetricKind.KV_CACHE, MetricNames.AUTO)
    with pytest.raises(ValueError, match="fixed metric name"):
        metric_name(MetricKind.PROMETHEUS, MetricNames.NIM)


def test_bucket_bounds_are_the_real_ones() -> None:
    """First ITL bucket 10 ms everywhere; vLLM V1 extends to 80 s."""
    assert bucket_bounds(MetricKind.INTER_TOKEN_LATENCY, MetricNames.NIM)[:2] == (0.01, 0.025)
    assert bucket_bounds(MetricKind.INTER_TOKEN_LATENCY, MetricNames.VLLM)[-1] == 80.0
    assert bucket_bounds(MetricKind.E2E_LATENCY, MetricNames.VLLM)[0] == 0.3
    assert bucket_bounds(MetricKind.E2E_LATENCY, MetricNames.NIM)[0] == 1.0


@pytest.mark.parametrize(
    ("kind", "target", "statistic", "warns"),
    [
        pytest.param(MetricKind.INTER_TOKEN_LATENCY, 0.008, "quantile", True, id="ITL 8ms"),
        pytest.param(MetricKind.INTER_TOKEN_LATENCY, 0.015, "quantile", True, id="ITL 15ms"),
        pytest.param(MetricKind.INTER_TOKEN_LATENCY, 0.030, "quantile", False, id="ITL 30ms"),
        pytest.param(MetricKind.INTER_TOKEN_LATENCY, 0.008, "mean", False, id="mean: no bucket"),
        pytest.param(MetricKind.TIME_TO_FIRST_TOKEN, 0.5, "quantile", False, id="TTFT 500ms"),
        pytest.param(MetricKind.E2E_LATENCY, 0.8, "quantile", True, id="e2e below 1s"),
        pytest.param(MetricKind.INTER_TOKEN_LATENCY, 3.0, "quantile", True, id="above last"),
        pytest.param(MetricKind.KV_CACHE, 0.001, "quantile", False, id="not a histogram"),
    ],
)
def test_coarse_bucket_warning(
    kind: MetricKind, target: float, statistic: str, warns: bool
) -> None:
    """Targets the buckets cannot resolve get a warning suggesting statistic: mean."""
    warning = coarse_bucket_warning(kind, MetricNames.NIM, target, statistic)
    assert (warning is not None) is warns
    if warns and target < 2.5:
        assert "statistic: mean" in (warning or "")
