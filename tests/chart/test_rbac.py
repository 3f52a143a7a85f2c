"""The rendered RBAC grants exactly the documented least-privilege set, no more, no less.

Rules are expanded into atomic permissions ``(namespace, apiGroup, resource, verb,
resourceName)`` so the comparison does not depend on how the rules are grouped; ``namespace`` is
``None`` for ClusterRole permissions. The expected set is written out from docs/deploy.md.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from .conftest import FULLNAME, NAMESPACE, find, render

Permission = tuple[str | None, str, str, str, str | None]

DEFAULT_TARGETS = [
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps.nvidia.com", "nimservices"),
]
POLICY_GROUP = "autoscaling.nim-autoscaler.io"
LEASE = FULLNAME
HISTORY = f"{FULLNAME}-history"
SHARDS = 8
HISTORY_NAMES = [f"{HISTORY}-{i}" for i in range(SHARDS)] + [HISTORY]
"""The history shards, then the single ConfigMap of earlier versions (migrated, then deleted)."""
CRDS = ["nimservices.apps.nvidia.com"]
"""Definitions of the custom target kinds, read for their scale paths."""


def crd_permissions(crds: list[str] = CRDS) -> set[Permission]:
    """Read, by name, the CustomResourceDefinitions of custom target kinds (cluster-scoped)."""
    return {(None, "apiextensions.k8s.io", "customresourcedefinitions", "get", n) for n in crds}


def target_permissions(
    namespace: str | None,
    targets: list[tuple[str, str]],
    *,
    dry_run: bool = False,
    drain_aware: bool = True,
) -> set[Permission]:
    """Pods and targets read and watched; each target annotated; its /scale read + written;
    Events recorded; ScalingPolicy resources read and watched, their status (only) written;
    pods patched (deletion cost) when drain-aware scale-down is on.

    A dry run writes nothing: pods, targets, /scale and ScalingPolicies are only read, no status
    is written and no Event is recorded.
    """
    perms: set[Permission] = {(namespace, "", "pods", v, None) for v in ("get", "list", "watch")}
    perms |= {
        (namespace, POLICY_GROUP, "scalingpolicies", v, None) for v in ("get", "list", "watch")
    }
    if dry_run:
        for group, resource in targets:
            perms |= {(namespace, group, resource, v, None) for v in ("get", "list", "watch")}
            perms |= {(namespace, group, f"{resource}/scale", "get", None)}
        return perms
    for group, resource in targets:
        perms |= {(namespace, group, resource, v, None) for v in ("get", "list", "watch", "patch")}
        perms |= {
            (namespace, group, f"{resource}/scale", v, None) for v in ("get", "update", "patch")
        }
    perms |= {
        (namespace, POLICY_GROUP, "scalingpolicies/status", v, None) for v in ("update", "patch")
    }
    perms |= {(namespace, "", "events", v, None) for v in ("create", "patch")}
    if drain_aware:
        perms.add((namespace, "", "pods", "patch", None))
    return perms


def state_permissions(*, leader_election: bool = True, dry_run: bool = False) -> set[Permission]:
    """The Lease and the history ConfigMaps, in the release namespace only.

    A dry run elects no leader and only reads the history.
    """
    if dry_run:
        return {(NAMESPACE, "", "configmaps", "get", name) for name in HISTORY_NAMES}
    perms: set[Permission] = {
        (NAMESPACE, "", "configmaps", "create", None),
        (NAMESPACE, "", "configmaps", "delete", HISTORY),
        *(
            (NAMESPACE, "", "configmaps", v, name)
            for v in ("get", "update", "patch")
            for name in HISTORY_NAMES
        ),
    }
    if leader_election:
        perms |= {
            (NAMESPACE, "coordination.k8s.io", "leases", "create", None),
            *((NAMESPACE, "coordination.k8s.io", "leases", v, LEASE) for v in ("get", "update")),
        }
    return perms


def granted(objects: list[dict[str, Any]]) -> set[Permission]:
    """Expand every Role/ClusterRole that is bound to the controller's ServiceAccount."""
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    perms: set[Permission] = set()
    bound: set[tuple[str, str | None, str]] = set()
    for binding in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
        ref = binding["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        namespace = binding["metadata"].get("namespace")
        key = (ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])
        assert key in roles, f"{binding['metadata']['name']} binds a missing {key}"
        bound.add(key)
    assert bound == set(roles), "every role is bound, and only once"
    for (kind, namespace, _name), role in roles.items():
        scope = namespace if kind == "Role" else None
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
            names = rule.get("resourceNames") or [None]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in names:
                            perms.add((scope, group, resource, verb, name))
    return perms


class TestLeastPrivilege:
    """Exact permission sets per mode."""

    def test_cluster_wide_when_no_namespaces_are_listed(self, chart: helm_python.Chart) -> None:
        """Watching all namespaces: target rules in a ClusterRole, state in a Role."""
        objects = render(chart)
        expected = (
            target_permissions(None, DEFAULT_TARGETS) | state_permissions() | crd_permissions()
        )
        assert granted(objects) == expected
        assert len(find(objects, "ClusterRole")) == 2  # target rules; CRD definitions by name
        assert [r["metadata"]["namespace"] for r in find(objects, "Role")] == [NAMESPACE]

    def test_namespaced_when_namespaces_are_listed(self, chart: helm_python.Chart) -> None:
        """Listed namespaces: one Role + RoleBinding each; cluster-wide only the reading of the
        custom target kinds' definitions, by name."""
        objects = render(chart, {"watchNamespaces": ["nim-service", "llm-batch"]})
        expected = (
            target_permissions("nim-service", DEFAULT_TARGETS)
            | target_permissions("llm-batch", DEFAULT_TARGETS)
            | state_permissions()
            | crd_permissions()
        )
        assert granted(objects) == expected
        assert [r["metadata"]["name"] for r in find(objects, "ClusterRole")] == [f"{FULLNAME}-crds"]
        namespaces = sorted(r["metadata"]["namespace"] for r in find(objects, "Role"))
        assert namespaces == sorted(["nim-service", "llm-batch", NAMESPACE])

    def test_release_namespace_can_also_be_watched(self, chart: helm_python.Chart) -> None:
        """Watching the controller's own namespace adds target rules there without clashing."""
        objects = render(chart, {"watchNamespaces": [NAMESPACE]})
        expected = (
            target_permissions(NAMESPACE, DEFAULT_TARGETS) | state_permissions() | crd_permissions()
        )
        assert granted(objects) == expected

    @pytest.mark.parametrize("namespaces", [[], ["nim-service"]], ids=["cluster", "namespaced"])
    def test_target_kinds_follow_values(
        self, chart: helm_python.Chart, namespaces: list[str]
    ) -> None:
        """Only the configured kinds are granted (no custom kind: no CRD is read)."""
        kinds = [{"apiGroup": "apps", "resource": "deployments"}]
        objects = render(chart, {"targetKinds": kinds, "watchNamespaces": namespaces})
        scope = namespaces[0] if namespaces else None
        expected = target_permissions(scope, [("apps", "deployments")]) | state_permissions()
        assert granted(objects) == expected

    @pytest.mark.parametrize("namespaces", [[], ["nim-service"]], ids=["cluster", "namespaced"])
    def test_dry_run_is_read_only(self, chart: helm_python.Chart, namespaces: list[str]) -> None:
        """Side by side with an HPA, RBAC itself guarantees the controller cannot interfere."""
        objects = render(chart, {"dryRun": True, "watchNamespaces": namespaces})
        scope = namespaces[0] if namespaces else None
        expected = (
            target_permissions(scope, DEFAULT_TARGETS, dry_run=True)
            | state_permissions(dry_run=True)
            | crd_permissions()
        )
        assert granted(objects) == expected
        assert {p[3] for p in granted(objects)} == {"get", "list", "watch"}

    @pytest.mark.parametrize("namespaces", [[], ["nim-service"]], ids=["cluster", "namespaced"])
    def test_pod_patch_only_when_drain_aware(
        self, chart: helm_python.Chart, namespaces: list[str]
    ) -> None:
        """drainAware: false takes 'patch' on pods away (and the controller stops marking)."""
        objects = render(chart, {"drainAware": False, "watchNamespaces": namespaces})
        scope = namespaces[0] if namespaces else None
        expected = target_permissions(scope, DEFAULT_TARGETS, drain_aware=False)
        assert granted(objects) == expected | state_permissions() | crd_permissions()
        assert (scope, "", "pods", "patch", None) not in granted(objects)
        assert (scope, "", "pods", "patch", None) in granted(
            render(chart, {"watchNamespaces": namespaces})
        )

    @pytest.mark.parametrize("dry_run", [False, True], ids=["live", "dry-run"])
    def test_policy_resources_read_status_written_only(
        self, chart: helm_python.Chart, dry_run: bool
    ) -> None:
        """ScalingPolicies are never created, changed or deleted; only their status is written."""
        perms = granted(render(chart, {"dryRun": dry_run}))
        policy = {(p[2], p[3]) for p in perms if p[1] == POLICY_GROUP}
        expected = {("scalingpolicies", v) for v in ("get", "list", "watch")}
        if not dry_run:
            expected |= {("scalingpolicies/status", v) for v in ("update", "patch")}
        assert policy == expected

    def test_no_lease_rules_without_leader_election(self, chart: helm_python.Chart) -> None:
        """A single replica without leader election gets no Lease permission."""
        objects = render(chart, {"replicaCount": 1, "leaderElection": {"enabled": False}})
        expected = (
            target_permissions(None, DEFAULT_TARGETS)
            | state_permissions(leader_election=False)
            | crd_permissions()
        )
        assert granted(objects) == expected

    def test_custom_lease_and_history_names(self, chart: helm_python.Chart) -> None:
        """resourceNames follow the configured names, which the controller receives too."""
        values = {"leaderElection": {"leaseName": "my-lease"}, "historyConfigMapName": "my-hist"}
        perms = granted(render(chart, values))
        assert (NAMESPACE, "coordination.k8s.io", "leases", "update", "my-lease") in perms
        assert (NAMESPACE, "", "configmaps", "update", "my-hist-0") in perms
        assert (NAMESPACE, "", "configmaps", "delete", "my-hist") in perms
        assert not {p for p in perms if p[4] in (LEASE, *HISTORY_NAMES)}

    def test_history_names_follow_the_shard_count(self, chart: helm_python.Chart) -> None:
        """Each history shard ConfigMap is granted by name, and no other."""
        perms = granted(render(chart, {"historyShards": 3}))
        names = {p[4] for p in perms if p[2] == "configmaps" and p[3] == "update"}
        assert names == {f"{HISTORY}-0", f"{HISTORY}-1", f"{HISTORY}-2", HISTORY}

    def test_sharded_replicas_get_the_shard_and_membership_leases(
        self, chart: helm_python.Chart
    ) -> None:
        """shards > 1: Leases created, read, listed and renewed in the release namespace (the
        membership Leases are named after pods), and history names rounded up to a multiple."""
        perms = granted(render(chart, {"replicaCount": 3, "shards": 4, "historyShards": 6}))
        leases = {p for p in perms if p[2] == "leases"}
        assert leases == {
            (NAMESPACE, "coordination.k8s.io", "leases", v, None)
            for v in ("create", "get", "list", "update")
        }
        names = {p[4] for p in perms if p[2] == "configmaps" and p[3] == "update"}
        assert names == {f"{HISTORY}-{i}" for i in range(8)} | {HISTORY}
        # One shard: the single named Lease, exactly as without the setting.
        assert granted(render(chart, {"shards": 1})) == granted(render(chart))

    def test_no_wildcards_and_no_secrets(self, chart: helm_python.Chart) -> None:
        """No '*' anywhere, and the controller can never read Secrets."""
        for values in ({}, {"watchNamespaces": ["nim-service"]}):
            for perm in granted(render(chart, values)):
                assert "*" not in perm
                assert perm[2] != "secrets"

    def test_rbac_can_be_left_to_the_cluster_admin(self, chart: helm_python.Chart) -> None:
        """rbac.create=false renders no Role, ClusterRole or binding."""
        objects = render(chart, {"rbac": {"create": False}})
        kinds = {o["kind"] for o in objects}
        assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
