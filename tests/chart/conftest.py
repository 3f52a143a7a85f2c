"""Shared helpers: render the chart with the real Helm engine and parse what it produced.

Everything here is offline: ``helm_python`` embeds the Helm SDK, so no ``helm`` binary and no
cluster are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "nim-autoscaler"
RELEASE = "rel"
NAMESPACE = "nim-system"
FULLNAME = f"{RELEASE}-nim-autoscaler"

Manifest = dict[str, Any]


def ci_values(name: str) -> dict[str, Any]:
    """One of the example value files under the chart's ``ci/`` directory."""
    data = yaml.safe_load((CHART_DIR / "ci" / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# Named value sets rendered by most tests; each exercises a different branch of the templates.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["nim-service", "llm-batch"]},
    "cluster-wide": {"watchNamespaces": []},
    "service-monitor": {"serviceMonitor": {"enabled": True}},
    "prometheus-rule": {"prometheusRule": {"enabled": True}},
    "existing-configmap": {"existingPolicyConfigMap": "my-policies"},
    "token-secret": {"prometheus": {"bearerToken": {"existingSecret": "prom-token", "key": "tk"}}},
    "basic-auth-and-ca-secret": {
        "prometheus": {
            "basicAuth": {"existingSecret": "prom-basic"},
            "ca": {"secret": "prom-ca", "key": "bundle.pem"},
        }
    },
    "network-policy": {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]}}},
    "network-policy-no-metrics-peers": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [],
            "apiServer": {"cidrs": ["10.0.0.1/32"]},
        }
    },
    "dry-run": {"dryRun": True},
    "single-replica-no-leader-election": {"replicaCount": 1, "leaderElection": {"enabled": False}},
    "digest-and-extras": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"nvidia.com/gpu.present": "false"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
        "priorityClassName": "platform-critical",
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "podDisruptionBudget": {"maxUnavailable": "", "minAvailable": "50%"},
        "serviceAccount": {"annotations": {"example.com/role": "autoscaler"}},
    },
    "no-pdb-no-dashboard": {
        "podDisruptionBudget": {"enabled": False},
        "dashboard": {"enabled": False},
    },
    "ci/kv-cache": ci_values("kv-cache-values.yaml"),
    "ci/monitoring": ci_values("monitoring-values.yaml"),
    "ci/dry-run": ci_values("dry-run-values.yaml"),
    "ci/network-policy": ci_values("network-policy-values.yaml"),
}


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    """The chart, loaded once."""
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> list[Manifest]:
    """Render with Helm (as ``helm template``) and parse every non-empty YAML document."""
    rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"{path}: a document is not a mapping"
                objects.append(doc)
    return objects


def find(objects: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """The objects of ``kind`` (and ``name``, when given)."""
    return [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single object of ``kind`` (and ``name``)."""
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: list[Manifest]) -> Manifest:
    """The controller container of the Deployment."""
    containers: list[Manifest] = one(objects, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


def controller_env(objects: list[Manifest]) -> dict[str, Any]:
    """The container's environment: the settings ConfigMap (envFrom) overlaid by ``env``."""
    env: dict[str, Any] = dict(one(objects, "ConfigMap", f"{FULLNAME}-config")["data"])
    for var in container(objects).get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env
