"""Kubernetes side: client configuration, /scale, pod cache, events, status, leases, history."""

from autoscaler.kube import lazy as _lazy

# Before any module here imports the client library: its generated models stay unloaded.
_lazy.install()
