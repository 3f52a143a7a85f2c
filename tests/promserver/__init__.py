"""Test harness: a real Prometheus server on 127.0.0.1 and emulated NIM/vLLM pod exporters.

Reusable by any test suite (metrics integration tests, end-to-end controller tests):

* :mod:`tests.promserver.prometheus` starts, stops, restarts and reconfigures a real
  ``prometheus`` binary with a temporary config and data directory.
* :mod:`tests.promserver.exporter` emulates pods: one ``prometheus_client`` HTTP server per pod
  (:class:`~tests.promserver.exporter.EmulatedPod`) or one server exposing many pods' series by
  label (:class:`~tests.promserver.exporter.FleetExporter`, scraped with ``honor_labels``).
* :mod:`tests.promserver.proxy` is an HTTP proxy in front of Prometheus that checks headers and
  auth, strips a path prefix, counts requests and can delay, fail or corrupt answers.
* :mod:`tests.promserver.fixtures` has pytest fixtures built on them.
"""
