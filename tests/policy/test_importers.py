"""Importers: every example manifest, and the edge cases of each source kind."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from autoscaler.errors import ImportConversionError
from autoscaler.policy.importers import import_manifest, import_text, render_yaml
from autoscaler.policy.loader import load_text
from tests.policy.helpers import FIXTURES

VALID_FIXTURES = sorted(p for p in FIXTURES.glob("*.yaml") if "invalid" not in p.name)


def convert(name: str) -> dict[str, Any]:
    """The imported policy document of a fixture."""
    (result,) = import_text((FIXTURES / name).read_text(), name)
    return result.document


@pytest.mark.parametrize("path", VALID_FIXTURES, ids=[p.name for p in VALID_FIXTURES])
def test_every_valid_fixture_imports_into_a_valid_policy(path: Any) -> None:
    """The rendered YAML of each fixture loads with the policy loader, unchanged."""
    results = import_text(path.read_text(), path.name)
    rendered = render_yaml(results, path.name)
    loaded = load_text(rendered, "imported.yaml")
    assert loaded.ok, [str(e) for e in loaded.all_errors()]
    assert [p.policy for p in loaded.policies] == [r.policy for r in results]
    assert all(p.policy.spec.algorithm.value == "hpa" for p in loaded.policies)


def test_invalid_multinode_nimservice_is_rejected_with_both_reasons() -> None:
    """Multi-node and spec.replicas with scaling enabled are both reported."""
    with pytest.raises(ImportConversionError) as caught:
        import_text((FIXTURES / "nimservice-invalid-multinode.yaml").read_text(), "bad.yaml")
    reasons = " | ".join(caught.value.reasons)
    assert "spec.multiNode is set" in reasons
    assert "spec.replicas is set" in reasons


def test_hpa_gpu_cache_maps_to_kv_preset_with_quantity() -> None:
    """NVIDIA's blog HPA: gpu_cache_usage_perc becomes kvCache, '100m' becomes 0.1."""
    doc = convert("hpa-gpu-cache.yaml")
    assert doc["metadata"] == {"name": "gpu-hpa-cache", "namespace": "nim-service"}
    assert doc["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "meta-llama3-8b",
    }
    assert doc["spec"]["metrics"] == [
        {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.1}}}
    ]
    assert (doc["spec"]["minReplicas"], doc["spec"]["maxReplicas"]) == (1, 10)
    assert "behavior" not in doc["spec"]


def test_unrecognised_pods_metric_becomes_per_pod_query() -> None:
    """The GTC lab's recording rule is not a preset: a per-pod query selecting ns and pods."""
    doc = convert("hpa-gpu-util-lab.yaml")
    (metric,) = doc["spec"]["metrics"]
    assert metric["prometheus"]["returns"] == "perPod"
    assert metric["prometheus"]["query"] == (
        'sum by (pod) (nemollm_gpu_util_avg{{namespace="{namespace}",pod=~"{pods}"}})'
    )
    assert metric["prometheus"]["target"] == {"type": "AverageValue", "averageValue": 50}
    assert doc["spec"]["behavior"] == {
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
        }
    }


def test_nimservice_targets_itself_and_reports_resource_metrics() -> None:
    """A NIMService scales itself; CPU/memory metrics are reported, KV cache kept."""
    (result,) = import_text((FIXTURES / "nimservice-aggressive-multi.yaml").read_text(), "n")
    spec = result.document["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps.nvidia.com/v1alpha1",
        "kind": "NIMService",
        "name": "llama-3-8b",
    }
    assert spec["metrics"] == [
        {"kvCache": {"target": {"type": "Value", "value": 0.75}, "aggregation": "avg"}}
    ]
    notes = " | ".join(result.notes)
    assert "Resource metric 'cpu' not converted" in notes
    assert "Resource metric 'memory' not converted" in notes
    assert spec["behavior"]["scaleUp"]["policies"] == [
        {"type": "Percent", "value": 100, "periodSeconds": 30}
    ]


def test_keda_scaledobject_defaults_and_notes() -> None:
    """KEDA: bare queue metric becomes queueDepth; polling and cool-down are reported."""
    (result,) = import_text((FIXTURES / "keda-vllm-queue.yaml").read_text(), "k")
    spec = result.document["spec"]
    assert spec["metrics"] == [
        {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 5}}}
    ]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "vllm-llama3-deployment-vllm",
    }
    notes = " | ".join(result.notes)
    assert "pollingInterval (15) is not convertible" in notes
    assert "cooldownPeriod (360) is not convertible" in notes
    assert "behavior" not in spec


def hpa(metrics: list[dict[str, Any]] | None, **spec: Any) -> dict[str, Any]:
    """A minimal autoscaling/v2 HPA manifest."""
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
        "maxReplicas": 5,
        **spec,
    }
    if metrics is not None:
        body["metrics"] = metrics
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "namespace": "ns"},
        "spec": body,
    }


def pods_metric(name: str, value: str = "4") -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": value},
        },
    }


def keda(triggers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "s"},
        "spec": {"scaleTargetRef": {"name": "d"}, "triggers": triggers, **spec},
    }


def prom_trigger(query: str, threshold: str = "10", **extra: Any) -> dict[str, Any]:
    return {"type": "prometheus", "metadata": {"query": query, "threshold": threshold}, **extra}


@pytest.mark.parametrize(
    ("name", "preset"),
    [
        pytest.param("gpu_cache_usage_perc", "kvCache", id="nim-kv"),
        pytest.param("vllm:kv_cache_usage_perc", "kvCache", id="vllm-kv"),
        pytest.param("vllm_gpu_cache_usage_perc", "kvCache", id="adapter-renamed-kv"),
        pytest.param("num_requests_waiting", "queueDepth", id="queue"),
        pytest.param("num_requests_running", "runningRequests", id="running"),
        pytest.param("inter_token_latency_p95", "interTokenLatency", id="itl-p95"),
        pytest.param("time_to_first_token_seconds", "timeToFirstToken", id="ttft"),
    ],
)
def test_metric_names_map_to_presets(name: str, preset: str) -> None:
    """Recognisable NIM/vLLM metric names become presets."""
    result = import_manifest(hpa([pods_metric(name, "0.5")]))
    assert [m.kind.value for m in result.policy.spec.metrics] == [preset]


def test_latency_quantile_from_name() -> None:
    """'_p95' in a latency metric name sets the preset's quantile."""
    result = import_manifest(hpa([pods_metric("inter_token_latency_p99", "0.05")]))
    assert result.document["spec"]["metrics"][0]["interTokenLatency"]["quantile"] == 0.99


def test_empty_behavior_stays_present_and_absent_stays_absent() -> None:
    """behavior: {} keeps HPA defaults (present); no behavior stays absent."""
    with_empty = import_manifest(hpa([pods_metric("num_requests_waiting")], behavior={}))
    assert with_empty.document["spec"]["behavior"] == {}
    assert with_empty.policy.spec.behavior is not None
    without = import_manifest(hpa([pods_metric("num_requests_waiting")]))
    assert "behavior" not in without.document["spec"]
    assert without.policy.spec.behavior is None


def test_behavior_tolerance_quantity_and_select_policy() -> None:
    """Behavior fields are copied; a quantity tolerance is converted."""
    behavior = {"scaleUp": {"tolerance": "50m", "selectPolicy": "Disabled"}}
    result = import_manifest(hpa([pods_metric("num_requests_waiting")], behavior=behavior))
    assert result.document["spec"]["behavior"] == {
        "scaleUp": {"tolerance": 0.05, "selectPolicy": "Disabled"}
    }


def test_default_min_replicas_is_one() -> None:
    """An HPA without minReplicas gets the Kubernetes default 1."""
    assert import_manifest(hpa([pods_metric("num_requests_waiting")])).policy.spec.min_replicas == 1


def test_object_metric_unrecognised_is_whole_target_query() -> None:
    """An Object metric on a Service becomes a whole-target query selecting that service."""
    metric = {
        "type": "Object",
        "object": {
            "metric": {"name": "requests_per_second"},
            "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "svc"},
            "target": {"type": "Value", "value": "20"},
        },
    }
    prom = import_manifest(hpa([metric])).document["spec"]["metrics"][0]["prometheus"]
    assert prom["returns"] == "target"
    assert prom["query"] == 'sum(requests_per_second{{namespace="{namespace}",service="svc"}})'
    assert prom["target"] == {"type": "Value", "value": 20}


def test_external_metric_with_selector() -> None:
    """External metrics keep their matchLabels and report matchExpressions."""
    metric = {
        "type": "External",
        "external": {
            "metric": {
                "name": "queue_messages",
                "selector": {
                    "matchLabels": {"queue": "jobs"},
                    "matchExpressions": [{"key": "a", "operator": "Exists"}],
                },
            },
            "target": {"type": "AverageValue", "averageValue": "30"},
        },
    }
    result = import_manifest(hpa([metric]))
    prom = result.document["spec"]["metrics"][0]["prometheus"]
    assert prom["query"] == 'sum(queue_messages{{queue="jobs"}})'
    assert any("matchExpressions not converted" in note for note in result.notes)


def test_only_resource_metrics_cannot_be_imported() -> None:
    """An HPA on CPU only yields nothing valid: error listing why."""
    cpu = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
    with pytest.raises(ImportConversionError) as caught:
        import_manifest(hpa([cpu]))
    assert any("none of the metrics can be converted" in r for r in caught.value.reasons)


def test_hpa_without_metrics_is_default_cpu() -> None:
    """No metrics means the HPA's default 80% CPU, which is not convertible."""
    with pytest.raises(ImportConversionError) as caught:
        import_manifest(hpa(None))
    assert any("80% CPU" in r for r in caught.value.reasons)


def test_unsupported_kind() -> None:
    """Other manifests are rejected naming what is supported."""
    with pytest.raises(ImportConversionError) as caught:
        import_manifest({"apiVersion": "apps/v1", "kind": "Deployment"})
    assert "HorizontalPodAutoscaler" in caught.value.reasons[0]


def test_nimservice_scaling_disabled() -> None:
    """A NIMService without scale.enabled does not autoscale: nothing to import."""
    manifest = {
        "apiVersion": "apps.nvidia.com/v1alpha1",
        "kind": "NIMService",
        "metadata": {"name": "n"},
        "spec": {"scale": {"enabled": False, "hpa": {"maxReplicas": 2}}},
    }
    with pytest.raises(ImportConversionError) as caught:
        import_manifest(manifest)
    assert any("spec.scale.enabled is not true" in r for r in caught.value.reasons)


def test_keda_query_is_escaped_and_null_values_kept() -> None:
    """Braces in a KEDA query are escaped for the template; ignoreNullValues maps to emptyAs."""
    query = 'sum(rate(vllm:request_success_total{model_name="m"}[1m]))'
    result = import_manifest(keda([prom_trigger(query, "20", metricType="Value")]))
    prom = result.document["spec"]["metrics"][0]["prometheus"]
    assert prom["query"] == 'sum(rate(vllm:request_success_total{{model_name="m"}}[1m]))'
    assert prom["emptyAs"] == 0
    assert prom["target"] == {"type": "Value", "value": 20}


def test_keda_ignore_null_values_false() -> None:
    """ignoreNullValues: false keeps empty results as no signal."""
    trigger = prom_trigger("sum(x)")
    trigger["metadata"]["ignoreNullValues"] = "false"
    prom = import_manifest(keda([trigger])).document["spec"]["metrics"][0]["prometheus"]
    assert "emptyAs" not in prom


def test_keda_min_zero_and_defaults() -> None:
    """minReplicaCount defaults to 0 (activation noted, policy keeps 1); max defaults to 100."""
    result = import_manifest(keda([prom_trigger("sum(x)")]))
    assert (result.policy.spec.min_replicas, result.policy.spec.max_replicas) == (1, 100)
    assert any("activation" in note for note in result.notes)
    assert result.document["spec"]["metrics"][0]["prometheus"]["target"]["type"] == "AverageValue"


def test_keda_behavior_from_advanced_config() -> None:
    """The HPA behavior KEDA generates is carried over exactly."""
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 120}}
    result = import_manifest(
        keda(
            [prom_trigger("sum(x)")],
            minReplicaCount=2,
            advanced={
                "horizontalPodAutoscalerConfig": {"behavior": behavior},
                "restoreToOriginalReplicaCount": True,
            },
        )
    )
    assert result.document["spec"]["behavior"] == behavior
    assert any("restoreToOriginalReplicaCount" in note for note in result.notes)


def test_keda_non_prometheus_triggers_reported() -> None:
    """Other trigger types are reported; with none left the import fails."""
    cpu = {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
    result = import_manifest(keda([cpu, prom_trigger("sum(x)")]))
    assert any("trigger type 'cpu' not converted" in note for note in result.notes)
    with pytest.raises(ImportConversionError):
        import_manifest(keda([cpu]))


def test_multi_document_input_reports_every_failure() -> None:
    """Every failing document is listed."""
    text = yaml.safe_dump_all([hpa(None), {"kind": "Deployment"}])
    with pytest.raises(ImportConversionError) as caught:
        import_text(text, "two.yaml")
    assert any("document 1" in r for r in caught.value.reasons)
    assert any("document 2" in r for r in caught.value.reasons)


def test_render_lists_notes_as_comments() -> None:
    """Notes appear as comments at the top of the YAML."""
    results = import_text((FIXTURES / "keda-vllm-queue.yaml").read_text(), "k.yaml")
    text = render_yaml(results, "k.yaml")
    assert text.startswith("# Imported by 'nim-autoscaler import' from k.yaml")
    assert "#   - spec.pollingInterval (15) is not convertible" in text


def test_invalid_yaml_input() -> None:
    """Unreadable YAML is an ImportConversionError, not another exception."""
    with pytest.raises(ImportConversionError, match="invalid YAML"):
        import_text("a: [", "broken.yaml")


SHARED_EXAMPLES = FIXTURES.parents[2].parent / "shared" / "examples"


def test_fixtures_are_byte_identical_to_shared_examples() -> None:
    """The copied fixtures have not drifted from the public manifests in shared/examples."""
    assert SHARED_EXAMPLES.is_dir(), f"{SHARED_EXAMPLES} missing: clone the repo beside shared/"
    for shared in sorted(SHARED_EXAMPLES.glob("*.yaml")):
        assert (FIXTURES / shared.name).read_bytes() == shared.read_bytes(), shared.name
