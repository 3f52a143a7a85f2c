"""nim-autoscaler: a Kubernetes autoscaler for GPU LLM inference servers.

The package is laid out around one pure decision core (:mod:`autoscaler.decision`) shared by the
live controller, dry-run, replay and the simulator. Adapters live beside it:
:mod:`autoscaler.metrics` (Prometheus), :mod:`autoscaler.kube` (Kubernetes) and
:mod:`autoscaler.sim` (simulated fleet).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
