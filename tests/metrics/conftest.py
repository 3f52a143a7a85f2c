"""Fixtures of the metrics tests (the real-Prometheus harness and the LLM environment)."""

from tests.metrics.env import llm_env  # noqa: F401 - pytest fixture, used by name
from tests.promserver.fixtures import (  # noqa: F401 - pytest fixtures, used by name
    fleet_factory,
    pod_factory,
    prometheus_factory,
    proxy_factory,
)
