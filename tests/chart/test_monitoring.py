"""Alerts, scrape config and dashboard: valid PromQL on the controller's own metric names.

``promtool`` (from Debian's ``prometheus`` package, which ``make test`` installs) checks the rule
syntax and runs unit tests of the alerts on synthetic series; the dashboard's queries are checked
by the same parser, wrapped as recording rules.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from autoscaler.metrics import names as preset_names
from autoscaler.metrics import rules as recording
from autoscaler.policy.models import LATENCY_KINDS, MetricKind

from .conftest import CHART_DIR, FULLNAME, NAMESPACE, one, render

# The controller's own metrics (the contract the observability module implements).
CONTROLLER_METRICS = {
    "nim_autoscaler_desired_replicas",
    "nim_autoscaler_current_replicas",
    "nim_autoscaler_metric_value",
    "nim_autoscaler_metric_target",
    "nim_autoscaler_max_replicas",
    "nim_autoscaler_min_replicas",
    "nim_autoscaler_decisions_total",
    "nim_autoscaler_scale_total",
    "nim_autoscaler_errors_total",
    "nim_autoscaler_tick_duration_seconds",
    "nim_autoscaler_last_successful_tick_timestamp_seconds",
    "nim_autoscaler_is_leader",
    "nim_autoscaler_policies_loaded",
    "nim_autoscaler_policy_errors",
    "nim_autoscaler_slo_at_risk",
    "nim_autoscaler_capacity_requests_per_second",
    "nim_autoscaler_capacity_source",
    "nim_autoscaler_capacity_samples",
    "nim_autoscaler_slo_requests_per_second",
    "nim_autoscaler_slo_replicas_needed",
    "nim_autoscaler_slo_latency_seconds",
    "nim_autoscaler_slo_objective_seconds",
}
HISTOGRAMS = {"nim_autoscaler_tick_duration_seconds"}
JOB = f'job="{FULLNAME}"'
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "le",
}

PROMTOOL = shutil.which("promtool")


def _require_promtool() -> str:
    """promtool's path; a missing tool fails the test (it never skips)."""
    if PROMTOOL is None:
        pytest.fail("promtool missing: run `make prometheus` (Debian's prometheus package)")
    return PROMTOOL


needs_promtool = pytest.mark.usefixtures("promtool")


@pytest.fixture
def promtool() -> str:
    """The promtool binary (fails when absent)."""
    return _require_promtool()


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels excluded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"[0-9.e]+", word):
            continue
        names.add(word)
    return names


def allowed(name: str) -> bool:
    """A listed metric, or a series of a listed histogram."""
    if name in CONTROLLER_METRICS:
        return True
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return base in HISTOGRAMS


def rules(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The alerting rules of the rendered PrometheusRule."""
    rule = one(
        render(chart, {"prometheusRule": {"enabled": True}} | (values or {})), "PrometheusRule"
    )
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON shipped with the chart."""
    data: dict[str, Any] = json.loads(
        (CHART_DIR / "dashboards" / "nim-autoscaler.json").read_text()
    )
    return data


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    """Every query of every panel (rows included) and of the template variables."""
    exprs: list[str] = []

    def visit(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []))
            visit(panel.get("panels", []))

    visit(board["panels"])
    return exprs


class TestPrometheusRule:
    """The alerts."""

    def test_expected_alerts(self, chart: helm_python.Chart) -> None:
        """Controller down, failing or stale ticks, policy errors, stuck at max, SLO at risk."""
        assert [r["alert"] for r in rules(chart)] == [
            "NimAutoscalerDown",
            "NimAutoscalerTicksStale",
            "NimAutoscalerErrors",
            "NimAutoscalerPolicyErrors",
            "NimAutoscalerAtMaxReplicas",
            "NimAutoscalerSloAtRisk",
        ]

    def test_expressions_use_only_controller_metrics(self, chart: helm_python.Chart) -> None:
        """Each expression selects only the controller's metrics, always scoped to its job."""
        for rule in rules(chart):
            names = metric_names(rule["expr"])
            assert names, rule["alert"]
            assert {n for n in names if not allowed(n)} == set(), rule["alert"]
            selectors = re.findall(r"nim_autoscaler_\w+(\{[^}]*\})?", rule["expr"])
            assert all(JOB in s for s in selectors), rule["alert"]

    def test_metric_name_extraction(self) -> None:
        """The extractor sees through functions, matchers, grouping and ranges."""
        expr = 'sum by (le, policy) (rate(foo_bucket{a="b{c}"}[5m])) > on (x) bar unless baz'
        assert metric_names(expr) == {"foo_bucket", "bar", "baz"}

    def test_durations_and_labels_follow_values(self, chart: helm_python.Chart) -> None:
        """``for`` durations and extra alert labels come from values."""
        values = {
            "prometheusRule": {
                "enabled": True,
                "atMaxReplicasFor": "1h",
                "alertLabels": {"team": "ml"},
            }
        }
        by_name = {r["alert"]: r for r in rules(chart, values)}
        assert by_name["NimAutoscalerAtMaxReplicas"]["for"] == "1h"
        assert all(r["labels"]["team"] == "ml" for r in by_name.values())
        assert {r["labels"]["severity"] for r in by_name.values()} <= {"warning", "critical"}

    @needs_promtool
    def test_promtool_check_rules(self, chart: helm_python.Chart, tmp_path: Path) -> None:
        """Prometheus' own parser accepts the rule file (syntax, durations, templates)."""
        spec = one(render(chart, {"prometheusRule": {"enabled": True}}), "PrometheusRule")["spec"]
        path = tmp_path / "rules.yaml"
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        result = subprocess.run(
            [str(PROMTOOL), "check", "rules", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    @needs_promtool
    def test_alerts_fire_on_synthetic_series(
        self, chart: helm_python.Chart, tmp_path: Path
    ) -> None:
        """``promtool test rules``: each alert fires when it should and stays quiet otherwise."""
        spec = one(render(chart, {"prometheusRule": {"enabled": True}}), "PrometheusRule")["spec"]
        for group in spec["groups"]:
            for rule in group["rules"]:
                # Annotations are text for humans, checked by `promtool check rules` above;
                # comparing them here would only repeat the template.
                rule.pop("annotations", None)
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
        pol = f'{JOB},namespace="nim-service",policy="llama"'
        tick = f"nim_autoscaler_last_successful_tick_timestamp_seconds{{{JOB}}}"
        slo = f'nim_autoscaler_slo_at_risk{{{pol},metric="interTokenLatency"}}'
        tests = {
            "rule_files": ["rules.yaml"],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [
                        # Two instances, neither leading: the controller is effectively down.
                        {"series": f'nim_autoscaler_is_leader{{{JOB},pod="a"}}', "values": "0x20"},
                        {"series": f'nim_autoscaler_is_leader{{{JOB},pod="b"}}', "values": "0x20"},
                        # The last successful tick stopped at t=0.
                        {
                            "series": tick,
                            "values": "0x20",
                        },
                        {
                            "series": f'nim_autoscaler_errors_total{{{pol},kind="prometheus"}}',
                            "values": "0+1x20",
                        },
                    ],
                    "alert_rule_test": [
                        {"eval_time": "3m", "alertname": "NimAutoscalerDown", "exp_alerts": []},
                        {
                            "eval_time": "10m",
                            "alertname": "NimAutoscalerDown",
                            "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                        },
                        {
                            "eval_time": "10m",
                            "alertname": "NimAutoscalerTicksStale",
                            "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                        },
                        {
                            "eval_time": "15m",
                            "alertname": "NimAutoscalerErrors",
                            "exp_alerts": [
                                {
                                    "exp_labels": {
                                        "severity": "warning",
                                        "namespace": "nim-service",
                                        "policy": "llama",
                                        "kind": "prometheus",
                                    }
                                }
                            ],
                        },
                    ],
                },
                {
                    "interval": "1m",
                    "input_series": [
                        {"series": f'nim_autoscaler_is_leader{{{JOB},pod="a"}}', "values": "1x60"},
                        {
                            "series": tick,
                            "values": "0+60x60",
                        },
                        {
                            "series": f'nim_autoscaler_current_replicas{{{pol},target="llm"}}',
                            "values": "4x60",
                        },
                        {"series": f"nim_autoscaler_max_replicas{{{pol}}}", "values": "4x60"},
                        {
                            "series": f'nim_autoscaler_desired_replicas{{{pol},target="llm"}}',
                            "values": "6x60",
                        },
                        {
                            "series": slo,
                            "values": "0x5 1x55",
                        },
                        {
                            "series": f'nim_autoscaler_errors_total{{{pol},kind="prometheus"}}',
                            "values": "3x60",
                        },
                    ],
                    "alert_rule_test": [
                        {"eval_time": "30m", "alertname": "NimAutoscalerDown", "exp_alerts": []},
                        {
                            "eval_time": "30m",
                            "alertname": "NimAutoscalerTicksStale",
                            "exp_alerts": [],
                        },
                        {"eval_time": "30m", "alertname": "NimAutoscalerErrors", "exp_alerts": []},
                        {
                            "eval_time": "20m",
                            "alertname": "NimAutoscalerAtMaxReplicas",
                            "exp_alerts": [],
                        },
                        {
                            "eval_time": "45m",
                            "alertname": "NimAutoscalerAtMaxReplicas",
                            "exp_alerts": [
                                {
                                    "exp_labels": {
                                        "severity": "warning",
                                        "namespace": "nim-service",
                                        "policy": "llama",
                                    }
                                }
                            ],
                        },
                        {
                            "eval_time": "10m",
                            "alertname": "NimAutoscalerSloAtRisk",
                            "exp_alerts": [],
                        },
                        {
                            "eval_time": "20m",
                            "alertname": "NimAutoscalerSloAtRisk",
                            "exp_alerts": [
                                {
                                    "exp_labels": {
                                        "severity": "warning",
                                        "namespace": "nim-service",
                                        "policy": "llama",
                                        "metric": "interTokenLatency",
                                    }
                                }
                            ],
                        },
                    ],
                },
            ],
        }
        (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
        result = subprocess.run(
            [str(PROMTOOL), "test", "rules", "tests.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def recording_group(chart: helm_python.Chart, **recording: Any) -> dict[str, Any]:
    """The rendered recording-rule group (``prometheusRule.recordingRules``)."""
    values = {"prometheusRule": {"enabled": True, "recordingRules": {"enabled": True} | recording}}
    groups = one(render(chart, values), "PrometheusRule")["spec"]["groups"]
    found = [g for g in groups if g["name"] == "nim-autoscaler.recording"]
    assert len(found) == 1
    return found[0]


class TestRecordingRules:
    """The per-pod rates the metric presets can read instead of the raw series."""

    def test_off_by_default(self, chart: helm_python.Chart) -> None:
        """Enabling the alerts alone adds no recording rule."""
        assert all("record" not in rule for rule in rules(chart))

    def test_names_are_what_the_controller_reads(self, chart: helm_python.Chart) -> None:
        """Every spelling of every latency and counter preset, under the controller's names."""
        group = recording_group(chart, windows=["1m", "90s"])  # per-workload sums: by default
        recorded = {rule["record"] for rule in group["rules"]}
        expected = set()
        counters = (
            MetricKind.REQUEST_RATE,
            MetricKind.PROMPT_TOKEN_RATE,
            MetricKind.GENERATION_TOKEN_RATE,
        )
        for kind in (*sorted(LATENCY_KINDS), *counters):
            batches = ("buckets", "sum", "count") if kind in LATENCY_KINDS else ("rate",)
            for candidate in preset_names.candidates(kind):
                for batch in batches:
                    for window in (60.0, 90.0):
                        expected.add(recording.recorded_name(batch, candidate.name, window))
                        if batch == "buckets":
                            expected.add(recording.workload_name(candidate.name, window))
        per_pod = {n for n in expected if n.startswith(recording.POD_BUCKETS_PREFIX)}
        workload = {n for n in expected if n.startswith(recording.WORKLOAD_PREFIX)}
        # By default no per-pod bucket rates: the controller needs the workload sums only.
        assert expected - per_pod == recorded
        assert group["interval"] == "15s"
        both = recording_group(chart, windows=["1m", "90s"], podHistograms=True)
        assert {rule["record"] for rule in both["rules"]} == expected
        plain = recording_group(
            chart, windows=["1m", "90s"], workloadHistograms=False, podHistograms=True
        )
        assert {rule["record"] for rule in plain["rules"]} == expected - workload
        neither = recording_group(chart, windows=["1m", "90s"], workloadHistograms=False)
        assert {rule["record"] for rule in neither["rules"]} == expected - workload - per_pod

    @needs_promtool
    @pytest.mark.parametrize("pod_histograms", [False, True], ids=["from-raw", "from-pod-rates"])
    def test_promtool_recorded_values(
        self, chart: helm_python.Chart, tmp_path: Path, pod_histograms: bool
    ) -> None:
        """``promtool test rules``: per-pod sums of the rates, one series per (pod, le).

        And the per-workload histograms: pods ``llm-7f9c-a`` and ``llm-7f9c-b`` are summed
        under ``workload="llm-7f9c"`` (the name without its last segment, as the controller's
        :func:`~autoscaler.metrics.rules.workload_of`), from the raw bucket rates or from the
        recorded per-pod ones (``podHistograms``), with the same values.
        """
        group = recording_group(
            chart,
            windows=["2m"],
            interval="1m",
            selector='job="nim"',
            workloadHistograms=True,
            podHistograms=pod_histograms,
        )
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [group]}), "utf-8")
        pod = 'job="nim",namespace="llm",pod="a"'
        bucket = "time_per_output_token_seconds_bucket"
        pod_a = 'job="nim",namespace="llm",pod="llm-7f9c-a"'
        pod_b = 'job="nim",namespace="llm",pod="llm-7f9c-b"'
        workload = "namespace_workload_le:time_per_output_token_seconds_bucket:rate2m"
        tests = {
            "rule_files": ["rules.yaml"],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [
                        # Two series of one pod (two containers): summed per pod and le.
                        {"series": f'{bucket}{{{pod},c="1",le="0.1"}}', "values": "0+30x10"},
                        {"series": f'{bucket}{{{pod},c="2",le="0.1"}}', "values": "0+60x10"},
                        {"series": f'{bucket}{{{pod},c="1",le="+Inf"}}', "values": "0+60x10"},
                        {"series": f'{bucket}{{{pod},c="2",le="+Inf"}}', "values": "0+120x10"},
                        {"series": f"request_success_total{{{pod}}}", "values": "0+120x10"},
                        {"series": f'{bucket}{{{pod_a},le="+Inf"}}', "values": "0+120x10"},
                        {"series": f'{bucket}{{{pod_b},le="+Inf"}}', "values": "0+240x10"},
                        # Another job: outside the selector.
                        {
                            "series": 'request_success_total{job="x",namespace="llm",pod="b"}',
                            "values": "0+60x10",
                        },
                        {
                            "series": f'{bucket}{{job="x",namespace="llm",pod="llm-7f9c-c",'
                            'le="+Inf"}',
                            "values": "0+600x10",
                        },
                    ],
                    "promql_expr_test": [
                        {
                            "expr": "namespace_pod_le:time_per_output_token_seconds_bucket:rate2m"
                            '{pod="a"}',
                            "eval_time": "5m",
                            "exp_samples": [
                                {
                                    "labels": "namespace_pod_le:time_per_output_token_seconds_"
                                    'bucket:rate2m{namespace="llm",pod="a",le="0.1"}',
                                    "value": 1.5,
                                },
                                {
                                    "labels": "namespace_pod_le:time_per_output_token_seconds_"
                                    'bucket:rate2m{namespace="llm",pod="a",le="+Inf"}',
                                    "value": 3,
                                },
                            ]
                            if pod_histograms
                            else [],
                        },
                        {
                            "expr": f'{workload}{{workload="llm-7f9c"}}',
                            "eval_time": "5m",
                            "exp_samples": [
                                {
                                    "labels": f'{workload}{{namespace="llm",workload="llm-7f9c",'
                                    'le="+Inf"}',
                                    "value": 6,
                                },
                            ],
                        },
                        {
                            "expr": "namespace_pod:request_success_total:rate2m",
                            "eval_time": "5m",
                            "exp_samples": [
                                {
                                    "labels": "namespace_pod:request_success_total:rate2m"
                                    '{namespace="llm",pod="a"}',
                                    "value": 2,
                                }
                            ],
                        },
                    ],
                }
            ],
        }
        (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests), encoding="utf-8")
        result = subprocess.run(
            [str(PROMTOOL), "test", "rules", "tests.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr


class TestServiceMonitor:
    """Scraping the controller."""

    def test_selects_the_metrics_service(self, chart: helm_python.Chart) -> None:
        """The ServiceMonitor selects the Service, which selects the pods, on port 'metrics'."""
        objects = render(chart, {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
        monitor = one(objects, "ServiceMonitor")
        service = one(objects, "Service")
        pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert monitor["metadata"]["labels"]["release"] == "kps"
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
        assert endpoint["path"] == "/metrics"
        # The policy's own "namespace" label must survive the scrape (not exported_namespace).
        assert endpoint["honorLabels"] is True
        # The alerts select job="<Service name>", which is the job the operator assigns.
        assert service["metadata"]["name"] == FULLNAME


class TestDashboard:
    """The Grafana dashboard."""

    def test_configmap_for_the_sidecar(self, chart: helm_python.Chart) -> None:
        """A ConfigMap labelled grafana_dashboard=1 holding the JSON file verbatim."""
        cm = one(render(chart), "ConfigMap", f"{FULLNAME}-dashboard")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"]["nim-autoscaler.json"]) == dashboard()
        other = one(
            render(chart, {"dashboard": {"namespace": "grafana"}}),
            "ConfigMap",
            f"{FULLNAME}-dashboard",
        )
        assert other["metadata"]["namespace"] == "grafana"

    def test_queries_use_only_controller_metrics(self) -> None:
        """Every panel query selects only the controller's metrics."""
        exprs = dashboard_exprs(dashboard())
        assert len(exprs) >= 10
        for expr in exprs:
            names = metric_names(expr)
            assert names, expr
            assert {n for n in names if not allowed(n)} == set(), expr

    def test_shows_what_operators_need_per_policy(self) -> None:
        """Per policy: desired vs current replicas, values vs targets, decisions by reason."""
        board = dashboard()
        assert {v["name"] for v in board["templating"]["list"]} >= {"datasource", "policy"}
        repeated = [p for p in board["panels"] if p.get("repeat") == "policy"]
        assert len(repeated) == 1
        joined = "\n".join(dashboard_exprs(board))
        for needed in (
            "nim_autoscaler_desired_replicas",
            "nim_autoscaler_current_replicas",
            "nim_autoscaler_metric_value",
            "nim_autoscaler_metric_target",
            "nim_autoscaler_decisions_total",
        ):
            assert needed in joined
        assert "sum by (reason)" in joined
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))

    @needs_promtool
    def test_queries_parse(self, tmp_path: Path) -> None:
        """Prometheus' parser accepts every query (Grafana variables replaced by examples)."""
        substitutions = {"$__rate_interval": "1m", "$job": ".*", "$namespace": ".*", "$policy": "x"}
        recorded = []
        for number, expr in enumerate(dashboard_exprs(dashboard())):
            for variable, example in substitutions.items():
                expr = expr.replace(variable, example)
            recorded.append({"record": f"dashboard:query_{number}", "expr": expr})
        path = tmp_path / "dashboard-queries.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
        result = subprocess.run(
            [str(PROMTOOL), "check", "rules", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
