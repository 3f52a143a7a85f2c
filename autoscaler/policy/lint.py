"""Policy linter: warnings for known autoscaling pitfalls in otherwise valid policies.

Validation (:mod:`autoscaler.policy.models`, :mod:`autoscaler.policy.loader`) rejects policies
that cannot work; the linter flags policies that will work badly. Each :class:`Finding` has a rule
id, a located message (``FILE:LINE:COL: field``) and a fix hint. The rules come from the pitfalls
seen in other autoscalers (KEDA, llm-d, the vLLM production stack) and in NIM/vLLM metrics; see
``docs/policy.md`` for the list. ``nim-autoscaler lint`` (:mod:`autoscaler.commands.lint`) prints
the findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from autoscaler.errors import Location
from autoscaler.policy.loader import LoadedPolicy
from autoscaler.policy.models import (
    API_VERSION,
    LEGACY_API_VERSION,
    Algorithm,
    LatencyMetricSpec,
    MetricKind,
    MetricNames,
    MetricSpec,
    PrometheusMetricSpec,
    TargetType,
)

DEFAULT_TOLERANCE = 0.1
"""The HPA's default tolerance (both directions) when a policy sets none."""
DEFAULT_SCALE_DOWN_WINDOW = 300
"""The HPA's default scale-down stabilization window, seconds."""

# First histogram bucket (seconds) of each latency preset, per metric-name family. NIM and vLLM V0
# share the V0 buckets; vLLM V1 adds lower e2e buckets (see docs/policy.md).
_FIRST_BUCKET: dict[MetricKind, dict[MetricNames, float]] = {
    MetricKind.INTER_TOKEN_LATENCY: dict.fromkeys(MetricNames, 0.01),
    MetricKind.TIME_TO_FIRST_TOKEN: dict.fromkeys(MetricNames, 0.001),
    MetricKind.E2E_LATENCY: {
        MetricNames.AUTO: 0.3,
        MetricNames.NIM: 1.0,
        MetricNames.VLLM: 0.3,
        MetricNames.VLLM_LEGACY: 0.3,
    },
}

_AGGREGATION = re.compile(r"\b(sum|avg|count|min|max|quantile|scalar)\s*(?:by|without)?\s*\(")
_MAX_AGG = re.compile(r"\bmax\b\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(")
_RATE = re.compile(r"\b(rate|irate|increase)\s*\(")
_OR_VECTOR = re.compile(r"\bor\s+vector\s*\(")


@dataclass(frozen=True)
class Finding:
    """One lint warning."""

    rule: str
    """Stable rule id, e.g. ``kv-target-range``."""
    message: str
    """What is wrong, naming the field and its value."""
    hint: str
    """How to fix it."""
    location: Location
    """Where: file, line, column and field path."""

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [{self.rule}]\n    hint: {self.hint}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready object."""
        return {
            "rule": self.rule,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "field": self.location.field,
            "message": self.message,
            "hint": self.hint,
        }


def _metric_path(index: int, metric: MetricSpec, *rest: str) -> tuple[int | str, ...]:
    return ("spec", "metrics", index, metric.kind.value, *rest)


def _target_path(index: int, metric: MetricSpec) -> tuple[int | str, ...]:
    key = "value" if metric.target.type is TargetType.VALUE else "averageValue"
    return _metric_path(index, metric, "target", key)


def _query(metric: MetricSpec) -> PrometheusMetricSpec | None:
    return metric.prometheus


# --------------------------------------------------------------------------------------------
# Rules (each yields findings for one loaded policy)
# --------------------------------------------------------------------------------------------

Rule = Callable[[LoadedPolicy], Iterator[Finding]]


def _per_pod_under_value(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        query = _query(metric)
        if query is None or metric.target.type is not TargetType.VALUE:
            continue
        if query.returns == "perPod" and query.aggregation is None:
            yield Finding(
                "per-pod-under-value",
                f"metric {metric.name!r} returns one series per pod under a whole-target "
                f"Value target ({metric.target.threshold:g}); the per-pod values are summed "
                "implicitly",
                "use type: AverageValue for a per-pod target, or set 'aggregation' explicitly",
                loaded.locate(_metric_path(index, metric, "returns")),
            )


def _target_query_not_aggregated(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        query = _query(metric)
        if query is None or query.returns != "target":
            continue
        if not _AGGREGATION.search(query.query):
            yield Finding(
                "target-query-not-aggregated",
                f"metric {metric.name!r} has returns: target but its query has no sum()/avg(): "
                "it returns one series per pod once there are 2 or more pods",
                "wrap the query in sum(...) (or avg(...)), or set returns: perPod",
                loaded.locate(_metric_path(index, metric, "query")),
            )


def _max_under_average_value(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        query = _query(metric)
        if query is None or metric.target.type is not TargetType.AVERAGE_VALUE:
            continue
        if _MAX_AGG.search(query.query):
            yield Finding(
                "max-under-average-value",
                f"metric {metric.name!r} uses max() under an AverageValue target: AverageValue "
                "divides by the pod count, so a max caps the replica count",
                "use sum() under AverageValue, or keep max() with type: Value",
                loaded.locate(_metric_path(index, metric, "query")),
            )


def _latency_average_value(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        if metric.is_latency and metric.target.type is TargetType.AVERAGE_VALUE:
            yield Finding(
                "latency-average-value",
                f"latency metric {metric.name!r} has an AverageValue target: latency is not a "
                "per-pod amount of work that divides across pods",
                "use type: Value with the latency bound in seconds",
                loaded.locate(_metric_path(index, metric, "target", "type")),
            )


def _kv_bound(metric: MetricSpec) -> float | None:
    """The largest value the KV metric can reach (1.0), or None when it is a sum across pods."""
    if metric.kind is not MetricKind.KV_CACHE:
        return None
    if metric.target.type is TargetType.VALUE and metric.aggregation.value == "sum":
        return None
    return 1.0


def _kv_target_range(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        bound = _kv_bound(metric)
        threshold = metric.target.threshold
        if bound is not None and (threshold > bound or threshold <= 0):
            yield Finding(
                "kv-target-range",
                f"KV-cache target {threshold:g} is outside (0, 1]: KV-cache usage is a "
                "fraction of the cache, so the target can never be reached",
                "write the target as a fraction, e.g. 0.7 for 70 %",
                loaded.locate(_target_path(index, metric)),
            )


def _window(rules: Any, default: int) -> int:
    if rules is None or rules.stabilization_window_seconds is None:
        return default
    return int(rules.stabilization_window_seconds)


def _scale_down_window_shorter(loaded: LoadedPolicy) -> Iterator[Finding]:
    behavior = loaded.policy.spec.behavior
    if behavior is None:
        return
    up = _window(behavior.scale_up, 0)
    down = _window(behavior.scale_down, DEFAULT_SCALE_DOWN_WINDOW)
    if down < up:
        yield Finding(
            "scale-down-window-shorter",
            f"scale-down stabilization window ({down} s) is shorter than the scale-up window "
            f"({up} s): the policy reacts faster to falling load than to rising load, which "
            "flaps on GPU pods that take minutes to start",
            "make scaleDown.stabilizationWindowSeconds at least the scale-up window",
            loaded.locate(("spec", "behavior", "scaleDown", "stabilizationWindowSeconds")),
        )


def _min_replicas(loaded: LoadedPolicy) -> Iterator[Finding]:
    minimum = loaded.policy.spec.min_replicas
    if loaded.policy.spec.idle_for is not None:
        return  # scale to zero: a model offline while idle is the point (docs/fleet.md)
    if minimum < 2:
        yield Finding(
            "min-replicas-production",
            f"minReplicas is {minimum}: one pod restart or node drain takes the model offline "
            "for the whole cold start (minutes on GPUs)",
            "use minReplicas: 2 or more in production (ignore this rule for dev with "
            "--ignore min-replicas-production)",
            loaded.locate(("spec", "minReplicas")),
        )


def _tolerances(loaded: LoadedPolicy) -> tuple[float, float]:
    behavior = loaded.policy.spec.behavior
    up = down = DEFAULT_TOLERANCE
    if behavior is not None and behavior.scale_up and behavior.scale_up.tolerance is not None:
        up = behavior.scale_up.tolerance
    if behavior is not None and behavior.scale_down and behavior.scale_down.tolerance is not None:
        down = behavior.scale_down.tolerance
    return up, down


def _tolerance(loaded: LoadedPolicy) -> Iterator[Finding]:
    up, down = _tolerances(loaded)
    for direction, value in (("scaleUp", up), ("scaleDown", down)):
        if value >= 1:
            effect = (
                "the metric must exceed twice its target before any scale-up"
                if direction == "scaleUp"
                else "the policy never scales down (the band reaches 0)"
            )
            yield Finding(
                "tolerance",
                f"{direction}.tolerance is {value:g} (>= 1): {effect}",
                "a tolerance is a fraction of the target; typical values are 0.05 to 0.2",
                loaded.locate(("spec", "behavior", direction, "tolerance")),
            )
    for index, metric in enumerate(loaded.policy.spec.metrics):
        bound = _kv_bound(metric)
        threshold = metric.target.threshold
        if bound is None or threshold > bound:
            continue
        trigger = threshold * (1 + up)
        if trigger > bound:
            yield Finding(
                "tolerance",
                f"metric {metric.name!r}: target {threshold:g} with scale-up tolerance {up:g} "
                f"scales up only above {trigger:.3g}, but the metric cannot exceed {bound:g}",
                f"lower the target below {bound / (1 + up):.3g} or lower scaleUp.tolerance",
                loaded.locate(_target_path(index, metric)),
            )


def _latency_below_first_bucket(loaded: LoadedPolicy) -> Iterator[Finding]:
    names = loaded.policy.spec.metric_names
    for index, metric in enumerate(loaded.policy.spec.metrics):
        spec = metric.spec
        if not isinstance(spec, LatencyMetricSpec) or spec.statistic != "quantile":
            continue
        first = _FIRST_BUCKET[metric.kind][names]
        if metric.target.threshold < first:
            yield Finding(
                "latency-below-first-bucket",
                f"latency target {metric.target.threshold:g} s is below the histogram's first "
                f"bucket ({first:g} s): a quantile from buckets cannot resolve it",
                "use statistic: mean (from _sum/_count), or a target above the first bucket",
                loaded.locate(_target_path(index, metric)),
            )


def _latency_with_hpa(loaded: LoadedPolicy) -> Iterator[Finding]:
    if loaded.policy.spec.algorithm is not Algorithm.HPA:
        return
    for index, metric in enumerate(loaded.policy.spec.metrics):
        if metric.is_latency:
            yield Finding(
                "latency-with-hpa",
                f"latency metric {metric.name!r} is used with algorithm: hpa, whose ratio math "
                "assumes the metric is proportional to load per pod; latency is not",
                "use algorithm: llm (latency becomes a guard), or scale on queue depth/KV cache",
                loaded.locate(_metric_path(index, metric)),
            )


def _missing_or_vector(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        query = _query(metric)
        if query is None or query.empty_as is not None or not _RATE.search(query.query):
            continue
        if not _OR_VECTOR.search(query.query):
            yield Finding(
                "missing-or-vector",
                f"metric {metric.name!r} is a rate query without 'or vector(0)' and without "
                "emptyAs: before any request it returns no series, which is 'no signal'",
                "if no series means 0, append 'or vector(0)' to a sum(...) or set emptyAs: 0",
                loaded.locate(_metric_path(index, metric, "query")),
            )


def _or_vector_without_sum(loaded: LoadedPolicy) -> Iterator[Finding]:
    for index, metric in enumerate(loaded.policy.spec.metrics):
        query = _query(metric)
        if query is None or not _OR_VECTOR.search(query.query):
            continue
        if not _AGGREGATION.search(query.query):
            yield Finding(
                "or-vector-without-sum",
                f"metric {metric.name!r} uses 'or vector(0)' without an aggregation: the "
                "labelled series and the unlabelled 0 are both returned",
                "write sum(...) or vector(0)",
                loaded.locate(_metric_path(index, metric, "query")),
            )


def _fallback_out_of_range(loaded: LoadedPolicy) -> Iterator[Finding]:
    spec = loaded.policy.spec
    replicas = spec.on_metric_failure.replicas
    if spec.on_metric_failure.action != "fallback" or replicas is None:
        return
    if not spec.min_replicas <= replicas <= spec.max_replicas:
        yield Finding(
            "fallback-out-of-range",
            f"onMetricFailure.replicas is {replicas}, outside [minReplicas, maxReplicas] = "
            f"[{spec.min_replicas}, {spec.max_replicas}]; it would be clamped",
            "choose fallback replicas between minReplicas and maxReplicas",
            loaded.locate(("spec", "onMetricFailure", "replicas")),
        )


def _no_scaling(loaded: LoadedPolicy) -> Iterator[Finding]:
    spec = loaded.policy.spec
    if spec.min_replicas == spec.max_replicas:
        yield Finding(
            "no-scaling-range",
            f"minReplicas equals maxReplicas ({spec.max_replicas}): the policy never scales",
            "raise maxReplicas, or remove the policy",
            loaded.locate(("spec", "maxReplicas")),
        )


_SATURATING = frozenset({MetricKind.KV_CACHE, MetricKind.QUEUE_DEPTH})


def _no_slo(loaded: LoadedPolicy) -> Iterator[Finding]:
    spec = loaded.policy.spec
    if spec.algorithm is not Algorithm.LLM or spec.slo is not None:
        return
    yield Finding(
        "llm-without-slo",
        "algorithm llm without 'slo': the fleet is sized only on the metrics' targets. The "
        "capacity model learns against implied objectives (the latency metrics' targets, else "
        "p95 TTFT 2 s / ITL 100 ms) only to stop a collapse; there is no SLO sizing, no "
        "forecast over the start-up time and no scale-down window fitted to the cold start",
        "add spec.slo (ttft and/or itl: quantile and target in seconds); the metrics may stay",
        loaded.locate(("spec", "algorithm")),
    )


def _saturating_only(loaded: LoadedPolicy) -> Iterator[Finding]:
    spec = loaded.policy.spec
    # algorithm hpa is the HPA exactly (imported policies): this rule is for llm policies.
    if spec.algorithm is not Algorithm.LLM or not spec.metrics or spec.slo is not None:
        return
    if all(metric.kind in _SATURATING for metric in spec.metrics):
        yield Finding(
            "saturating-signals-only",
            "every metric saturates or lags (KV-cache usage caps at 1.0 and reads near zero on "
            "a fleet large enough for its load; the queue is empty until the pods are full): "
            "on their own they cannot tell how much capacity the load needs, so the count "
            "swings between too few and too many replicas",
            "add spec.slo (algorithm llm) or a requestRate metric sized from a load test",
            loaded.locate(("spec", "metrics")),
        )


def _legacy_api_version(loaded: LoadedPolicy) -> Iterator[Finding]:
    if loaded.policy.api_version == LEGACY_API_VERSION:
        yield Finding(
            "legacy-api-version",
            f"apiVersion {LEGACY_API_VERSION!r} is the old name of {API_VERSION!r}; it still "
            "loads, but resources and new tools use the new one",
            f"replace the line with 'apiVersion: {API_VERSION}' (sed -i "
            f"'s#^apiVersion: {LEGACY_API_VERSION}$#apiVersion: {API_VERSION}#' FILE)",
            loaded.locate(("apiVersion",)),
        )


RULES: dict[str, Rule] = {
    "legacy-api-version": _legacy_api_version,
    "per-pod-under-value": _per_pod_under_value,
    "target-query-not-aggregated": _target_query_not_aggregated,
    "max-under-average-value": _max_under_average_value,
    "latency-average-value": _latency_average_value,
    "kv-target-range": _kv_target_range,
    "scale-down-window-shorter": _scale_down_window_shorter,
    "min-replicas-production": _min_replicas,
    "tolerance": _tolerance,
    "latency-below-first-bucket": _latency_below_first_bucket,
    "latency-with-hpa": _latency_with_hpa,
    "missing-or-vector": _missing_or_vector,
    "or-vector-without-sum": _or_vector_without_sum,
    "fallback-out-of-range": _fallback_out_of_range,
    "no-scaling-range": _no_scaling,
    "llm-without-slo": _no_slo,
    "saturating-signals-only": _saturating_only,
}
"""Every rule by id, in report order."""


def lint_policy(loaded: LoadedPolicy, ignore: Iterable[str] = ()) -> list[Finding]:
    """All findings for one policy, except the rules in ``ignore``.

    Raises:
        ValueError: ``ignore`` names a rule that does not exist.
    """
    skipped = set(ignore)
    unknown = skipped - set(RULES)
    if unknown:
        msg = f"unknown lint rule(s): {', '.join(sorted(unknown))}; known: {', '.join(RULES)}"
        raise ValueError(msg)
    findings: list[Finding] = []
    for rule_id, rule in RULES.items():
        if rule_id not in skipped:
            findings.extend(rule(loaded))
    return findings


def lint_policies(loaded: Iterable[LoadedPolicy], ignore: Iterable[str] = ()) -> list[Finding]:
    """All findings for several policies (see :func:`lint_policy`)."""
    skipped = tuple(ignore)
    return [finding for item in loaded for finding in lint_policy(item, skipped)]
