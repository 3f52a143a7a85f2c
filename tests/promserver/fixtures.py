"""pytest fixtures for the real-Prometheus harness; import them into a test package's conftest.

Usage (in ``tests/<suite>/conftest.py``)::

    from tests.promserver.fixtures import (  # noqa: F401 - pytest fixtures, used by name
        pod_factory, prometheus_factory, proxy_factory, fleet_factory,
    )

Every factory stops what it started when its scope ends. Module scope keeps a suite fast: start
one Prometheus and the pods once per test module.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Sequence

import pytest

from autoscaler.policy.models import MetricNames
from tests.promserver.exporter import EmulatedPod, FleetExporter
from tests.promserver.prometheus import PrometheusServer, ScrapeTarget
from tests.promserver.proxy import PrometheusProxy

PrometheusFactory = Callable[[Sequence[ScrapeTarget]], PrometheusServer]


@pytest.fixture(scope="module")
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusFactory]:
    """Start real Prometheus servers scraping the given targets (ready, targets up)."""
    servers: list[PrometheusServer] = []

    def start(targets: Sequence[ScrapeTarget]) -> PrometheusServer:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
        servers.append(server)
        server.start(targets)
        if targets:
            server.wait_targets_up()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def pod_factory() -> Iterator[Callable[[str, str, str | MetricNames], EmulatedPod]]:
    """Start emulated pods (one ``prometheus_client`` server each)."""
    pods: list[EmulatedPod] = []

    def start(namespace: str, pod: str, family: str | MetricNames = "nim") -> EmulatedPod:
        emulated = EmulatedPod(namespace, pod, family)
        emulated.start()
        pods.append(emulated)
        return emulated

    yield start
    for emulated in pods:
        emulated.stop()


@pytest.fixture(scope="module")
def fleet_factory() -> Iterator[Callable[[str | MetricNames], FleetExporter]]:
    """Start fleet exporters (many pods behind one server, scraped with honor_labels)."""
    fleets: list[FleetExporter] = []

    def start(family: str | MetricNames = "nim") -> FleetExporter:
        fleet = FleetExporter(family)
        fleet.start()
        fleets.append(fleet)
        return fleet

    yield start
    for fleet in fleets:
        fleet.stop()


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., PrometheusProxy]]:
    """Start checking/misbehaving proxies in front of a Prometheus URL (optionally HTTPS)."""
    proxies: list[PrometheusProxy] = []

    def start(
        upstream: str, prefix: str = "", tls: ssl.SSLContext | None = None
    ) -> PrometheusProxy:
        proxy = PrometheusProxy(upstream, prefix, tls)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.stop()


def pod_target(pod: EmulatedPod) -> ScrapeTarget:
    """The scrape target of an emulated pod (``namespace``/``pod`` as target labels)."""
    return ScrapeTarget(pod.address, pod.labels)


def fleet_target(fleet: FleetExporter) -> ScrapeTarget:
    """The scrape target of a fleet exporter (labels from the exposition)."""
    return ScrapeTarget(fleet.address, honor_labels=True)
