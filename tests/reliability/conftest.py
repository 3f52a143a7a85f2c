"""Fixtures of the fault suite: the real-Prometheus harness (server, fleet exporter, proxy)."""

from tests.promserver.fixtures import (  # noqa: F401 - pytest fixtures, used by name
    fleet_factory,
    prometheus_factory,
    proxy_factory,
)
