"""Pod deletion costs in the simulated cluster (the ``PodAnnotator`` port).

The control loop writes ``controller.kubernetes.io/pod-deletion-cost`` before a drain-aware
scale-down (:mod:`autoscaler.decision.drain`); here the value lands on the
:class:`~autoscaler.sim.cluster.SimPod`, and :func:`autoscaler.sim.cluster.removal_order` honours
it as the ReplicaSet controller does.
"""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.sim.cluster import PodState
from autoscaler.sim.fleet import Fleet


class SimPodAnnotator:
    """Sets the deletion cost of the simulated Deployment's pods."""

    def __init__(self, fleet: Fleet, namespace: str) -> None:
        self.fleet = fleet
        self.namespace = namespace
        self.writes = 0
        """Annotation writes made (for reports and tests)."""

    async def set_deletion_costs(
        self, namespace: str, costs: Mapping[str, int | None]
    ) -> Mapping[str, str]:
        """Set each named pod's cost; pods that do not exist (any more) are reported."""
        pods = {p.name: p for p in self.fleet.pods if p.state is not PodState.GONE}
        failed: dict[str, str] = {}
        for name, cost in costs.items():
            pod = pods.get(name) if namespace == self.namespace else None
            if pod is None:
                failed[name] = f"pod {namespace}/{name} not found"
                continue
            pod.deletion_cost = cost
            self.writes += 1
        return failed
