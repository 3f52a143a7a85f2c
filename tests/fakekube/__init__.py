"""A fake Kubernetes API server for tests; see :mod:`tests.fakekube.server`."""

from tests.fakekube.server import FakeKube, Fault, status_body, write_kubeconfig

__all__ = ["FakeKube", "Fault", "status_body", "write_kubeconfig"]
