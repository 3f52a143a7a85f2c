"""Kubernetes side: client configuration, /scale, pod cache, events, status, leases, history."""
