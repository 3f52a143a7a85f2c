"""The autoscalers compared by the scaling-quality benchmark, as simulator configurations.

A contender is a policy plus the metric pipeline it sees (scrape interval, extra delay, recording
rule period, controller tick, KEDA's empty-as-zero). Everything else (load, profile, cold start,
seed, SLO) is the scenario's and identical for every contender. Every contender gets the same
``minReplicas``/``maxReplicas`` (the scenario's bounds), so none is capped where another is not;
each policy's own bounds are replaced and the change is recorded in ``adapted``.

* ``hpa-kv-published``: ``algorithm: hpa`` on per-pod KV-cache usage, ``AverageValue`` 100m (0.1),
  exactly the HPA NVIDIA's NIM autoscaling blog deploys (``shared/examples/hpa-gpu-cache.yaml``;
  no ``behavior``, so the legacy HPA rules). Pipeline as deployed: Prometheus scrape 30 s,
  prometheus-adapter recording rule every 30 s plus 30 s adapter/cache lag
  (``MetricDelay.parse("hpa-adapter")``), HPA sync 15 s.
* ``hpa-queue``: the same HPA and pipeline on ``num_requests_waiting`` ``AverageValue`` 5 (GKE's
  queue-size guidance: start at 3-5).
* ``keda-queue``: KEDA's Prometheus scaler on waiting requests, threshold 5 (the vLLM
  production-stack tutorial): null/empty read as 0 (``ignoreNullValues`` default), polling 15 s
  (the tutorial's ``pollingInterval``; the value is refreshed every 15 s), scrape 15 s, HPA sync
  15 s, legacy HPA rules (KEDA generates an HPA without ``behavior``).
* ``llm-metrics``: ``algorithm: llm`` on saturating signals only (KV 0.3 + queue 4 + p95 ITL
  guard 100 ms, no ``slo``: the former demo policy), as the product runs it: scrape 15 s, tick
  15 s, no recording rule. Its capacity floor (learned against the implied objectives) is what
  keeps it from collapsing when KV usage and the queue read near zero.
* ``llm-itl-guard``: ``policies/itl-guard.yaml`` (queue 4 + p95 ITL guard 50 ms).
* ``llm-slo``: ``policies/slo.yaml``: only the SLO (p95 TTFT 0.5 s, p95 ITL 50 ms, the
  benchmark's own objectives), no metric, no capacity: the same file for every scenario.
* ``llm-tuned``: the policy chosen on the tuning scenarios (other seeds and loads than the
  reported ones; see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy.loader import load_text
from autoscaler.policy.models import ScalingPolicy
from autoscaler.sim.metrics import MetricDelay

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Contender:
    """One autoscaler: a policy document and the pipeline it reads metrics through."""

    name: str
    label: str
    document: dict[str, Any]
    """The policy (as loaded from YAML, before bounds are applied)."""
    interval: float = 15.0
    """Controller tick (HPA sync, KEDA-driven HPA sync or our loop), seconds."""
    scrape_interval: float = 15.0
    metric_delay: MetricDelay = field(default_factory=MetricDelay)
    empty_as_zero: bool = False
    adapted: str = ""
    """What was changed from the published policy."""
    keep_slo: bool = False
    """Keep the policy's ``spec.slo`` (the objective it sizes for); else it is dropped and the
    scenario's SLO is only measured."""
    capacity_share: float = 0.0
    """If > 0: every ``requestRate`` target becomes this share of the scenario's per-replica
    capacity (requests/s one replica serves within the SLO, from a load test at the scenario's
    request lengths: how an SRE sizes a rate target before deploying)."""

    def policy(
        self, min_replicas: int, max_replicas: int, per_replica: float | None = None
    ) -> ScalingPolicy:
        """The policy with the scenario's replica bounds (and capacity-relative rate targets)."""
        document = dict(self.document)
        spec = dict(document["spec"])
        spec["minReplicas"] = min_replicas
        spec["maxReplicas"] = max_replicas
        if self.capacity_share > 0:
            if per_replica is None:
                msg = f"contender {self.name}: a capacity-relative target needs the capacity"
                raise ValueError(msg)
            spec["metrics"] = [
                _rate_target(m, self.capacity_share * per_replica) for m in spec["metrics"]
            ]
        if not self.keep_slo:
            spec.pop("slo", None)  # the scenario's SLO is the one measured
        spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"}
        document["spec"] = spec
        document["metadata"] = {"name": self.name, "namespace": "bench"}
        loaded = load_text(yaml.safe_dump(document, sort_keys=False), f"contender {self.name}")
        if loaded.errors:
            msg = f"contender {self.name}: {loaded.errors}"
            raise ValueError(msg)
        return loaded.policies[0].policy


def _rate_target(metric: dict[str, Any], value: float) -> dict[str, Any]:
    if "requestRate" not in metric:
        return metric
    inner = dict(metric["requestRate"])
    inner["target"] = {"type": "AverageValue", "averageValue": round(value, 3)}
    return {"requestRate": inner}


def _hpa(metric: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "nim-autoscaler/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "x", "namespace": "bench"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "algorithm": "hpa",
            "metricNames": "nim",
            "metrics": [metric],
        },
    }


def _file(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        msg = f"{path}: not a policy document"
        raise ValueError(msg)
    return document


METRICS: dict[str, Any] = {
    "apiVersion": "autoscaling.nim-autoscaler.io/v1alpha1",
    "kind": "ScalingPolicy",
    "metadata": {"name": "metrics", "namespace": "bench"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
        "minReplicas": 2,
        "maxReplicas": 12,
        "algorithm": "llm",
        "metrics": [
            {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.3}}},
            {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}},
            {
                "interTokenLatency": {
                    "quantile": 0.95,
                    "window": "60s",
                    "target": {"type": "Value", "value": 0.1},
                }
            },
        ],
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 60}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 120,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            },
        },
        "llm": {"startupSeconds": 90},
    },
}
"""An ``algorithm: llm`` policy on saturating signals only (the demo policy before SLO sizing)."""


TUNED: dict[str, Any] = {
    "apiVersion": "nim-autoscaler/v1alpha1",
    "kind": "ScalingPolicy",
    "metadata": {"name": "tuned", "namespace": "bench"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llm"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "algorithm": "llm",
        "metrics": [
            {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 2}}},
            # placeholder target: TUNED_SHARE x the scenario's per-replica capacity
            {
                "requestRate": {
                    "window": "1m",
                    "target": {"type": "AverageValue", "averageValue": 1},
                }
            },
            {"runningRequests": {"target": {"type": "AverageValue", "averageValue": 32}}},
            {
                "interTokenLatency": {
                    "quantile": 0.95,
                    "window": "1m",
                    "target": {"type": "Value", "value": 0.05},
                }
            },
        ],
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 30},
                    {"type": "Pods", "value": 4, "periodSeconds": 30},
                ],
                "selectPolicy": "Max",
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
            },
        },
        "llm": {"startupSeconds": 90},
    },
}
"""The tuned ``algorithm: llm`` policy: the grid point ``rate85-itl-down300`` that
:mod:`benchmarks.quality.tuning` chose on its own loads and seed (``docs/benchmarks.md``); its
request-rate target is ``TUNED_SHARE`` x the scenario's per-replica capacity."""


TUNED_SHARE = 0.85
"""Request-rate target of ``llm-tuned`` as a share of the scenario's per-replica capacity."""


def contenders(tuned: dict[str, Any] | None = None) -> list[Contender]:
    """Every contender, in report order."""
    adapter = MetricDelay.parse("hpa-adapter")
    bounds = "min/max replicas set to the scenario's bounds"
    return [
        Contender(
            "hpa-kv-published",
            "HPA, KV cache 100m (NVIDIA example)",
            _hpa(
                {
                    "kvCache": {
                        "target": {"type": "AverageValue", "averageValue": 0.1},
                    }
                }
            ),
            interval=15.0,
            scrape_interval=30.0,
            metric_delay=adapter,
            adapted=bounds,
        ),
        Contender(
            "hpa-queue",
            "HPA, queue depth 5",
            _hpa({"queueDepth": {"target": {"type": "AverageValue", "averageValue": 5}}}),
            interval=15.0,
            scrape_interval=30.0,
            metric_delay=adapter,
            adapted=bounds,
        ),
        Contender(
            "keda-queue",
            "KEDA-like, queue depth 5",
            _hpa({"queueDepth": {"target": {"type": "AverageValue", "averageValue": 5}}}),
            interval=15.0,
            scrape_interval=15.0,
            metric_delay=MetricDelay(0.0, 15.0),
            empty_as_zero=True,
            adapted=bounds,
        ),
        Contender(
            "llm-metrics",
            "llm, KV 0.3 + queue 4 + p95 ITL guard, no SLO",
            METRICS,
            adapted=bounds,
        ),
        Contender(
            "llm-itl-guard",
            "llm, policies/itl-guard.yaml",
            _file(ROOT / "policies" / "itl-guard.yaml"),
            adapted=bounds + "; spec.slo dropped",
        ),
        Contender(
            "llm-slo",
            "llm, policies/slo.yaml (SLO only)",
            _file(ROOT / "policies" / "slo.yaml"),
            adapted=bounds + "; spec.slo kept (it is the scenario's SLO)",
            keep_slo=True,
        ),
        Contender(
            "hpa-rate",
            f"HPA math on request rate at {TUNED_SHARE:g} x capacity (our pipeline)",
            _hpa(
                {
                    "requestRate": {
                        "window": "1m",
                        "target": {"type": "AverageValue", "averageValue": 1},
                    }
                }
            ),
            adapted=bounds + "; the request-rate target of llm-tuned",
            capacity_share=TUNED_SHARE,
        ),
        Contender(
            "llm-tuned",
            "llm, tuned policy",
            tuned if tuned is not None else TUNED,
            adapted=bounds + "; request-rate target from the scenario's load-tested capacity",
            capacity_share=TUNED_SHARE,
        ),
    ]
