"""The chart renders, lints and produces valid, hardened Kubernetes objects for every value set.

Rendering and linting use the real Helm engine (``helm_python`` embeds the Helm SDK); built-in
kinds are validated with ``kubernetes-validate`` in strict mode against Kubernetes 1.29 (the
chart's minimum) and the newest schemas it bundles; the Prometheus Operator kinds against the
JSON Schemas in :mod:`tests.chart.crd_schemas`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from autoscaler.settings import Settings

from .conftest import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    container,
    controller_env,
    find,
    one,
    render,
)
from .crd_schemas import CRD_SCHEMAS

KUBERNETES_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
POLICY_DIR = "/etc/nim-autoscaler/policies"


def _values(name: str) -> dict[str, Any]:
    return VALUE_SETS[name]


def validate_object(obj: dict[str, Any], version: str) -> None:
    """Fail the test unless ``obj`` is valid for Kubernetes ``version`` (strict schemas).

    Built-in kinds use kubernetes-validate; the Prometheus Operator kinds the JSON Schemas of
    :mod:`tests.chart.crd_schemas`. Any other kind, or an API version the schemas of that
    Kubernetes version do not have, is a failure.
    """
    label = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    crd_schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd_schema is not None:
        try:
            jsonschema.validate(obj, crd_schema)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{label}: {exc.message} at {list(exc.absolute_path)}")
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except SchemaNotFoundError as exc:
        pytest.fail(f"{label}: {exc.message}")
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{label} on Kubernetes {version}: {exc.message} at {list(exc.path)}")


class TestRenderAndLint:
    """Every value set renders and passes ``helm lint --strict``."""

    @pytest.mark.parametrize("name", VALUE_SETS)
    def test_lint_strict_is_clean(self, name: str) -> None:
        """Strict lint reports no warning and no error (informational notes are allowed)."""
        report = helm_python.lint(CHART_DIR, _values(name), strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert problems == []
        assert report["errors"] == []

    def test_newest_kubernetes_is_more_recent_than_the_minimum(self) -> None:
        """The second validation target really is a newer Kubernetes than 1.29."""
        major, minor = kubernetes_validate.latest_version().split(".")[:2]
        assert (int(major), int(minor)) > (1, 29)

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("name", VALUE_SETS)
    def test_objects_validate_against_kubernetes_schemas(
        self, chart: helm_python.Chart, name: str, version: str
    ) -> None:
        """Strict schema validation of every object; an unknown kind or API version fails."""
        objects = render(chart, _values(name))
        assert objects
        for obj in objects:
            validate_object(obj, version)

    @pytest.mark.parametrize(
        "obj",
        [
            pytest.param(
                {
                    "apiVersion": "policy/v1beta1",
                    "kind": "PodDisruptionBudget",
                    "metadata": {"name": "x"},
                    "spec": {"maxUnavailable": 1},
                },
                id="api-version-removed-in-1.25",
            ),
            pytest.param(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "x"},
                    "date": {"a": "b"},
                },
                id="misspelt-field",
            ),
            pytest.param(
                {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}},
                id="unknown-custom-resource",
            ),
            pytest.param(
                {
                    "apiVersion": "monitoring.coreos.com/v1",
                    "kind": "ServiceMonitor",
                    "metadata": {"name": "x", "namespace": "y"},
                    "spec": {"selector": {}, "endpoints": [{"port": "m", "interval": "30 s"}]},
                },
                id="bad-crd-duration",
            ),
        ],
    )
    def test_validation_has_teeth(self, obj: dict[str, Any]) -> None:
        """Removed API versions, unknown fields and unknown kinds are all failures."""
        with pytest.raises(pytest.fail.Exception):
            validate_object(obj, "1.29")

    @pytest.mark.parametrize("name", VALUE_SETS)
    def test_names_unique_and_namespaces_set(self, chart: helm_python.Chart, name: str) -> None:
        """No two objects collide; namespaced kinds carry a namespace, cluster kinds none."""
        objects = render(chart, _values(name))
        keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
        assert len(keys) == len(set(keys))
        for obj in objects:
            has_namespace = "namespace" in obj["metadata"]
            assert has_namespace == (obj["kind"] not in CLUSTER_SCOPED), obj["metadata"]["name"]

    def test_defaults_render_the_expected_objects(self, chart: helm_python.Chart) -> None:
        """Defaults: controller, its config, RBAC for all namespaces, Service, PDB, dashboard."""
        kinds = sorted(o["kind"] for o in render(chart))
        assert kinds == [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]

    def test_notes_warn_about_dry_run_and_missing_policies(self, chart: helm_python.Chart) -> None:
        """The post-install notes say when nothing will be scaled, and why."""

        def notes(values: dict[str, Any]) -> str:
            return chart.render(values, name=RELEASE, namespace=NAMESPACE)[
                "nim-autoscaler/templates/NOTES.txt"
            ]

        assert "DRY-RUN" in notes({"dryRun": True})
        assert "DRY-RUN" not in notes({})
        assert "No policy is configured" in notes({})
        assert "No policy is configured" not in notes(_values("ci/kv-cache"))
        assert "get lease" not in notes(_values("single-replica-no-leader-election"))

    def test_optional_objects_are_off_by_default(self, chart: helm_python.Chart) -> None:
        """ServiceMonitor, PrometheusRule and NetworkPolicy only render when enabled."""
        objects = render(chart)
        for kind in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy"):
            assert find(objects, kind) == []
        assert find(render(chart, _values("service-monitor")), "ServiceMonitor")
        assert find(render(chart, _values("prometheus-rule")), "PrometheusRule")
        assert find(render(chart, _values("network-policy")), "NetworkPolicy")


class TestDeployment:
    """The controller Deployment: replicas, hardening, probes, mounts, scheduling."""

    def test_two_replicas_with_leader_election_by_default(self, chart: helm_python.Chart) -> None:
        """Two pods, one Lease in the release namespace, identity from the pod name."""
        objects = render(chart)
        assert one(objects, "Deployment")["spec"]["replicas"] == 2
        env = controller_env(objects)
        assert env["AUTOSCALER_LEADER_ELECTION"] == "true"
        assert env["AUTOSCALER_LEADER_ELECTION_LEASE_NAME"] == FULLNAME
        assert env["AUTOSCALER_LEADER_ELECTION_NAMESPACE"] == {
            "fieldRef": {"fieldPath": "metadata.namespace"}
        }
        assert env["AUTOSCALER_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    @pytest.mark.parametrize("name", VALUE_SETS)
    def test_security_context_is_hardened(self, chart: helm_python.Chart, name: str) -> None:
        """Non-root numeric user, read-only root, no escalation, no capabilities, seccomp."""
        objects = render(chart, _values(name))
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        ctr = container(objects)["securityContext"]
        for context in (pod["securityContext"], ctr):
            assert context["runAsNonRoot"] is True
            assert isinstance(context["runAsUser"], int)
            assert context["runAsUser"] > 0
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert ctr["readOnlyRootFilesystem"] is True
        assert ctr["allowPrivilegeEscalation"] is False
        assert ctr["privileged"] is False
        assert ctr["capabilities"] == {"drop": ["ALL"]}
        assert pod["automountServiceAccountToken"] is True
        assert pod["enableServiceLinks"] is False

    def test_probes_use_the_health_endpoints(self, chart: helm_python.Chart) -> None:
        """Liveness and startup on /healthz, readiness on /readyz, all on the metrics port."""
        ctr = container(render(chart, {"metricsPort": 9100}))
        assert ctr["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
        assert ctr["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert ctr["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert (
            controller_env(render(chart, {"metricsPort": 9100}))["AUTOSCALER_METRICS_PORT"]
            == "9100"
        )

    def test_runs_the_controller_with_resources(self, chart: helm_python.Chart) -> None:
        """The container runs ``nim-autoscaler run`` (the image entrypoint) with resources."""
        ctr = container(render(chart))
        assert ctr["args"] == ["run"]
        assert "command" not in ctr
        app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
        assert f"nim-autoscaler:{app_version}" == ctr["image"]
        assert ctr["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
        assert ctr["resources"]["limits"] == {"memory": "512Mi"}

    def test_image_digest_wins_over_tag(self, chart: helm_python.Chart) -> None:
        """A digest pins the image by content."""
        ctr = container(render(chart, _values("digest-and-extras")))
        assert ctr["image"] == "nim-autoscaler@sha256:" + "ab" * 32

    @pytest.mark.parametrize("name", VALUE_SETS)
    def test_policies_mounted_as_a_directory(self, chart: helm_python.Chart, name: str) -> None:
        """Policies are a whole-directory mount (no subPath, so updates arrive) and /tmp is
        the only writable path."""
        objects = render(chart, _values(name))
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
        assert all("subPath" not in m and "subPathExpr" not in m for m in mounts.values())
        assert mounts["policies"]["mountPath"] == POLICY_DIR
        assert mounts["policies"]["readOnly"] is True
        assert mounts["tmp"]["mountPath"] == "/tmp"
        writable = [m["mountPath"] for m in mounts.values() if not m.get("readOnly")]
        assert writable == ["/tmp"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes["tmp"]
        expected_cm = _values(name).get("existingPolicyConfigMap") or f"{FULLNAME}-policies"
        assert expected_cm == volumes["policies"]["configMap"]["name"]
        env = controller_env(objects)
        assert env["AUTOSCALER_POLICY_DIR"] == POLICY_DIR
        assert "MPLCONFIGDIR" not in env  # matplotlib is not in the image (the sim extra)

    def test_preferred_anti_affinity_across_nodes(self, chart: helm_python.Chart) -> None:
        """By default replicas prefer different nodes; a user affinity replaces the default."""
        pod = one(render(chart), "Deployment")["spec"]["template"]["spec"]
        terms = pod["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert len(terms) == 1
        term = terms[0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "nim-autoscaler",
            "app.kubernetes.io/instance": RELEASE,
        }
        match = {"key": "pool", "operator": "In", "values": ["system"]}
        required = {"nodeSelectorTerms": [{"matchExpressions": [match]}]}
        custom = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
        pod = one(render(chart, {"affinity": custom}), "Deployment")["spec"]["template"]["spec"]
        assert custom == pod["affinity"]

    def test_checksum_only_tracks_settings(self, chart: helm_python.Chart) -> None:
        """Settings changes roll the pods; policy changes do not (they hot-reload)."""

        def checksum(values: dict[str, Any]) -> str:
            template = one(render(chart, values), "Deployment")["spec"]["template"]
            annotations = template["metadata"]["annotations"]
            assert [k for k in annotations if k.startswith("checksum/")] == ["checksum/config"]
            return str(annotations["checksum/config"])

        base = checksum({})
        assert base == checksum(VALUE_SETS["ci/kv-cache"] | {"watchNamespaces": []})
        assert base != checksum({"logLevel": "debug"})
        assert base != checksum({"dryRun": True})
        assert base != checksum({"prometheus": {"url": "http://other:9090"}})

    def test_pod_disruption_budget(self, chart: helm_python.Chart) -> None:
        """One pod may be evicted at a time by default; minAvailable can replace it."""
        objects = render(chart)
        pdb = one(objects, "PodDisruptionBudget")
        assert {k: v for k, v in pdb["spec"].items() if k != "selector"} == {"maxUnavailable": 1}
        pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        sharded = one(render(chart, {"replicaCount": 4, "shards": 8}), "PodDisruptionBudget")
        assert sharded["spec"]["maxUnavailable"] == 1  # one replica's shards move at a time
        pdb = one(render(chart, _values("digest-and-extras")), "PodDisruptionBudget")
        assert pdb["spec"]["minAvailable"] == "50%"
        assert "maxUnavailable" not in pdb["spec"]
        assert find(render(chart, _values("no-pdb-no-dashboard")), "PodDisruptionBudget") == []


class TestSettings:
    """The environment the chart gives the controller is what ``Settings`` reads."""

    # Settings the chart deliberately leaves at their defaults: the in-cluster service account
    # replaces a kubeconfig, and the health server must listen on the pod IP.
    NOT_EXPOSED = {"kubeconfig", "kube_context", "metrics_bind_address"}

    @staticmethod
    def _settings_env(env: dict[str, Any]) -> dict[str, str]:
        """Plain values as the kubelet would set them (downward API resolved to examples)."""
        resolved = {"metadata.name": f"{FULLNAME}-5d9c7-abcde", "metadata.namespace": NAMESPACE}
        plain: dict[str, str] = {}
        for key, value in env.items():
            if isinstance(value, str):
                plain[key] = value
            elif "fieldRef" in value:
                plain[key] = resolved[value["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in value:
                plain[key] = f"secret-{value['secretKeyRef']['key']}"
        return plain

    @pytest.mark.parametrize("name", VALUE_SETS)
    def test_environment_parses_into_settings(
        self, chart: helm_python.Chart, name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every rendered AUTOSCALER_* variable is a Settings field and parses to the value."""
        env = self._settings_env(controller_env(render(chart, _values(name))))
        fields = {f"AUTOSCALER_{field.upper()}" for field in Settings.model_fields}
        ours = {key for key in env if key.startswith("AUTOSCALER_")}
        assert ours - fields == set()
        for key in list(os.environ):
            if key.startswith("AUTOSCALER_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert env["AUTOSCALER_PROMETHEUS_URL"] == settings.prometheus_url
        assert env["AUTOSCALER_DRY_RUN"] == str(settings.dry_run).lower()
        assert env["AUTOSCALER_IDENTITY"] == settings.identity
        assert env["AUTOSCALER_HISTORY_CONFIGMAP"] == settings.history_configmap
        assert settings.leader_election_namespace == NAMESPACE
        assert settings.leader_election_lease_duration > settings.leader_election_renew_deadline
        assert str(settings.policy_dir) == POLICY_DIR
        expected_ns = _values(name).get("watchNamespaces", [])
        assert expected_ns == settings.namespaces
        headers = _values(name).get("prometheus", {}).get("headers", {})
        assert headers == settings.prometheus_headers

    def test_every_setting_is_exposed(self, chart: helm_python.Chart) -> None:
        """Each Settings field is set by the chart in some value set, or knowingly left out."""
        seen: set[str] = set()
        for values in VALUE_SETS.values():
            seen |= set(controller_env(render(chart, values)))
        for field in Settings.model_fields:
            if field in self.NOT_EXPOSED:
                continue
            assert f"AUTOSCALER_{field.upper()}" in seen, f"Settings.{field} has no chart value"

    def test_dry_run_value(self, chart: helm_python.Chart) -> None:
        """``dryRun: true`` reaches the controller."""
        assert controller_env(render(chart))["AUTOSCALER_DRY_RUN"] == "false"
        assert controller_env(render(chart, _values("dry-run")))["AUTOSCALER_DRY_RUN"] == "true"

    def test_prometheus_token_from_secret_file(self, chart: helm_python.Chart) -> None:
        """The token Secret key is mounted as a file that the token-file setting points at."""
        objects = render(chart, _values("token-secret"))
        env = controller_env(objects)
        path = env["AUTOSCALER_PROMETHEUS_BEARER_TOKEN_FILE"]
        mount = next(
            m for m in container(objects)["volumeMounts"] if m["name"] == "prometheus-token"
        )
        assert mount["readOnly"] is True
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "prometheus-token")
        secret = volume["secret"]
        assert secret["secretName"] == "prom-token"
        assert secret["defaultMode"] == 0o440
        (item,) = secret["items"]
        assert item["key"] == "tk"
        assert f"{mount['mountPath']}/{item['path']}" == path
        assert "AUTOSCALER_PROMETHEUS_BEARER_TOKEN_FILE" not in controller_env(render(chart))

    def test_basic_auth_and_ca_from_existing_objects(self, chart: helm_python.Chart) -> None:
        """Basic-auth credentials come from secretKeyRefs, never from values; CA is a file."""
        objects = render(chart, _values("basic-auth-and-ca-secret"))
        env = controller_env(objects)
        assert env["AUTOSCALER_PROMETHEUS_USERNAME"] == {
            "secretKeyRef": {"name": "prom-basic", "key": "username"}
        }
        assert env["AUTOSCALER_PROMETHEUS_PASSWORD"] == {
            "secretKeyRef": {"name": "prom-basic", "key": "password"}
        }
        pod = one(objects, "Deployment")["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "prometheus-ca")
        assert (volume["secret"]) == {
            "secretName": "prom-ca",
            "items": [{"key": "bundle.pem", "path": "ca.crt"}],
        }
        mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "prometheus-ca")
        assert f"{mount['mountPath']}/ca.crt" == env["AUTOSCALER_PROMETHEUS_CA_FILE"]
        config = one(objects, "ConfigMap", f"{FULLNAME}-config")["data"]
        assert not any("PASSWORD" in key for key in config)

    def test_headers_in_name_value_form(self, chart: helm_python.Chart) -> None:
        """Extra headers become ``Name=value,Other=value``."""
        values = {"prometheus": {"headers": {"X-Scope-OrgID": "tenant-a", "X-Extra": "1"}}}
        env = controller_env(render(chart, values))
        assert env["AUTOSCALER_PROMETHEUS_HEADERS"] == "X-Extra=1,X-Scope-OrgID=tenant-a"


class TestPolicies:
    """Policies from values become files that the project's own model accepts."""

    def test_values_policies_validate_with_the_policy_model(self, chart: helm_python.Chart) -> None:
        """The example policy survives Helm's YAML round trip and validates."""
        from .policy_check import validate_policy_files

        objects = render(chart, _values("ci/kv-cache"))
        data = one(objects, "ConfigMap", f"{FULLNAME}-policies")["data"]
        assert sorted(data) == ["llama-3-1-8b.yaml"]
        policies = validate_policy_files(data)
        assert [p.key for p in policies] == ["nim-service/llama-3-1-8b"]
        (policy,) = policies
        assert policy.spec.max_replicas == 4
        assert policy.spec.metrics[0].target.average_value == 0.7

    def test_loader_reads_the_configmap_volume_layout(
        self, chart: helm_python.Chart, tmp_path: Path
    ) -> None:
        """The kubelet's ConfigMap layout (``..data`` symlink swap) loads each policy once."""
        from autoscaler.policy.loader import load_path

        data = one(render(chart, _values("ci/kv-cache")), "ConfigMap", f"{FULLNAME}-policies")
        version = tmp_path / "..2026_11_21_15_00_00.000000001"
        version.mkdir()
        for name, text in data["data"].items():
            (version / name).write_text(text, encoding="utf-8")
            (tmp_path / name).symlink_to(Path("..data") / name)
        (tmp_path / "..data").symlink_to(version.name)
        result = load_path(tmp_path)
        assert result.ok
        assert [loaded.key for loaded in result.policies] == ["nim-service/llama-3-1-8b"]

    def test_budget_documents_beside_policies(self, chart: helm_python.Chart) -> None:
        """``budgets`` render beside the policies into files the loader reads as budgets."""
        from autoscaler.policy.loader import load_text

        values = _values("ci/kv-cache")
        values["watchNamespaces"] = ["nim-service"]
        values["budgets"] = {}
        values["budgets"]["h100-pool.yaml"] = {
            "apiVersion": "nim-autoscaler/v1alpha1",
            "kind": "ScalingBudget",
            "metadata": {"name": "h100-pool"},
            "spec": {"maxGpus": 16, "namespaces": ["nim-service"]},
        }
        data = one(render(chart, values), "ConfigMap", f"{FULLNAME}-policies")["data"]
        result = load_text(data["h100-pool.yaml"], "h100-pool.yaml")
        assert result.ok
        assert [(b.key, b.budget.spec.max_gpus) for b in result.budgets] == [("h100-pool", 16)]

    def test_no_policies_by_default(self, chart: helm_python.Chart) -> None:
        """Defaults install no policy: nothing is scaled until the user adds one."""
        assert one(render(chart), "ConfigMap", f"{FULLNAME}-policies")["data"] == {}

    def test_existing_configmap_replaces_values(self, chart: helm_python.Chart) -> None:
        """With existingPolicyConfigMap the chart renders no policy ConfigMap of its own."""
        objects = render(chart, _values("existing-configmap"))
        assert find(objects, "ConfigMap", f"{FULLNAME}-policies") == []
