"""Shared builders for the policy tests: a valid policy document and ways to change it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Byte-identical copies of /work/shared/examples (public manifests)."""

DELETE = object()
"""Sentinel for :func:`changed`: remove the key."""


def base_doc() -> dict[str, Any]:
    """A valid policy document (fresh copy each call)."""
    return {
        "apiVersion": "autoscaling.nim-autoscaler.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [{"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": 300},
            },
            "slo": {"itl": {"quantile": 0.95, "target": 0.05}},
        },
    }


def changed(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the dotted ``path`` (ints index lists) set to ``value``."""
    out = copy.deepcopy(doc)
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = out
    for part in parts[:-1]:
        if isinstance(node, dict) and part not in node:
            node[part] = {}
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    elif isinstance(node, list) and parts[-1] == len(node):
        node.append(value)
    else:
        node[parts[-1]] = value
    return out


def dump(doc: Any) -> str:
    """YAML text of a document (block style, keys in insertion order)."""
    return yaml.safe_dump(doc, sort_keys=False)
