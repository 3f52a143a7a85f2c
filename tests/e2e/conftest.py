"""Fixtures of the end-to-end tests: the real-Prometheus harness."""

from tests.promserver.fixtures import (  # noqa: F401 - pytest fixtures, used by name
    fleet_factory,
    prometheus_factory,
)
