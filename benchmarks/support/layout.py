"""Names of the generated fleet: policy ``i`` scales Deployment ``p-<i>`` owning 10 pods.

The pod names and namespaces are those of :mod:`benchmarks.bench_metrics` (10 policies per
namespace ``bench-<i // 10>``, pods ``p<i>-<j>``), so its fleet exporter serves their series.
"""

from __future__ import annotations

from pathlib import Path

PODS_PER_POLICY = 10
POLICIES_PER_NAMESPACE = 10


def namespace(index: int) -> str:
    """Namespace of policy ``index``."""
    return f"bench-{index // POLICIES_PER_NAMESPACE:04d}"


def name(index: int) -> str:
    """Name of policy ``index`` and of the Deployment it scales."""
    return f"p-{index:04d}"


def pod_names(index: int, pods: int = PODS_PER_POLICY) -> list[str]:
    """Names of the pods of policy ``index``'s Deployment."""
    return [f"p{index:04d}-{j}" for j in range(pods)]


def write_policies(directory: Path, count: int, body: str) -> Path:
    """Write ``count`` policy files; ``body`` is the ``spec`` after ``scaleTargetRef``.

    ``body`` is YAML indented by two spaces (``minReplicas``, ``metrics``, ``behavior``...).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        text = (
            "apiVersion: nim-autoscaler/v1alpha1\n"
            "kind: ScalingPolicy\n"
            f"metadata: {{name: {name(index)}, namespace: {namespace(index)}}}\n"
            "spec:\n"
            f"  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name(index)}}}\n"
            f"{body}"
        )
        (directory / f"{name(index)}.yaml").write_text(text, encoding="utf-8")
    return directory
