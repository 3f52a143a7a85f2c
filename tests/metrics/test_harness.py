"""The real-Prometheus harness itself: reload with new targets, restart on the same data."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.policy.models import MetricKind
from tests.promserver.fixtures import pod_target

pytestmark = pytest.mark.prometheus


def test_reconfigure_adds_and_removes_targets(prometheus_factory: Any, pod_factory: Any) -> None:
    """/-/reload picks up a new target; dropping it makes its series go stale at once."""
    first = pod_factory("harness", "h-0", "vllm")
    second = pod_factory("harness", "h-1", "vllm")
    first.set(MetricKind.QUEUE_DEPTH, 3)
    second.set(MetricKind.QUEUE_DEPTH, 4)
    server = prometheus_factory([pod_target(first)])
    query = 'sum(vllm:num_requests_waiting{namespace="harness"})'
    server.wait_for(query, lambda r: bool(r) and r[0]["value"][1] == "3")
    server.reconfigure([pod_target(first), pod_target(second)])
    server.wait_for(query, lambda r: bool(r) and r[0]["value"][1] == "7")
    server.reconfigure([pod_target(second)])
    server.wait_for(query, lambda r: bool(r) and r[0]["value"][1] == "4")
    targets = server.active_targets()
    assert [t["labels"]["pod"] for t in targets] == ["h-1"]


def test_restart_keeps_the_data(prometheus_factory: Any, pod_factory: Any) -> None:
    """stop() then start() reuses the port and the TSDB: old samples are still there."""
    pod = pod_factory("harness2", "r-0", "nim")
    pod.set(MetricKind.KV_CACHE, 0.5)
    server = prometheus_factory([pod_target(pod)])
    server.wait_for('gpu_cache_usage_perc{namespace="harness2"}', bool)
    url = server.url
    server.stop()
    assert not server.running
    server.start()
    assert server.url == url
    result = server.query('count_over_time(gpu_cache_usage_perc{namespace="harness2"}[10m])')
    assert result
    assert float(result[0]["value"][1]) >= 1
