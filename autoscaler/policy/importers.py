"""Convert manifests users already have into ScalingPolicy documents (``algorithm: hpa``).

Supported inputs:

* ``autoscaling/v2`` (and ``v2beta2``) ``HorizontalPodAutoscaler``;
* NIM Operator ``apps.nvidia.com/v1alpha1`` ``NIMService`` with ``spec.scale.hpa`` (the policy
  scales the NIMService itself through its ``/scale`` subresource);
* KEDA ``keda.sh/v1alpha1`` ``ScaledObject`` with ``prometheus`` triggers.

Metric names recognised as NIM/vLLM metrics become presets (``gpu_cache_usage_perc`` ->
``kvCache`` ...); other Pods metrics become a per-pod ``prometheus`` query, Object/External
metrics a whole-target query. Anything that cannot be expressed (CPU/memory ``Resource``
metrics, KEDA activation, polling and cool-down, ...) is listed in :attr:`ImportResult.notes`,
never dropped silently. A manifest that yields no valid policy raises
:class:`~autoscaler.errors.ImportConversionError` with every reason.

The output is validated with :mod:`autoscaler.policy.models` before it is returned. The
``import`` command (:mod:`autoscaler.commands.import_`) prints it with :func:`render_yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from autoscaler.errors import ImportConversionError
from autoscaler.policy.models import API_VERSION, KIND, ScalingPolicy, parse_quantity

HPA_API_VERSIONS = frozenset({"autoscaling/v2", "autoscaling/v2beta2"})
NIMSERVICE_API_VERSION = "apps.nvidia.com/v1alpha1"
KEDA_API_VERSION = "keda.sh/v1alpha1"

_BEHAVIOR_RULE_KEYS = ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance")
_BEHAVIOR_POLICY_KEYS = ("type", "value", "periodSeconds")
_BARE_METRIC = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*$")
_LATENCY_QUANTILE = re.compile(r"(?:^|[_:])p(\d{2,3})(?:$|[_:])")

# (suffix of a metric name, preset). Suffix matching covers NIM (unprefixed), vLLM (``vllm:``)
# and prometheus-adapter renames (``vllm_...``).
_GAUGE_PRESETS: tuple[tuple[str, str], ...] = (
    ("gpu_cache_usage_perc", "kvCache"),
    ("kv_cache_usage_perc", "kvCache"),
    ("num_requests_waiting", "queueDepth"),
    ("num_requests_running", "runningRequests"),
)
_LATENCY_PRESETS: tuple[tuple[str, str], ...] = (
    ("inter_token_latency", "interTokenLatency"),
    ("time_per_output_token", "interTokenLatency"),
    ("time_to_first_token", "timeToFirstToken"),
    ("e2e_request_latency", "e2eLatency"),
)


@dataclass(frozen=True)
class ImportResult:
    """A converted policy and everything that could not be carried over."""

    policy: ScalingPolicy
    """The validated policy."""
    document: dict[str, Any]
    """The policy as a YAML-ready mapping (camelCase keys, only what was set)."""
    notes: tuple[str, ...]
    """What was not converted or was converted with an assumption, one sentence each."""
    source: str
    """``Kind namespace/name`` of the input manifest."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _number(value: float) -> int | float:
    """An int when the value is integral (nicer YAML), else the float."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _quantity(value: object, where: str, reasons: list[str]) -> float | None:
    try:
        return parse_quantity(value)
    except ValueError as exc:
        reasons.append(f"{where}: {exc}")
        return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _metric_id(raw: str) -> str:
    """A policy metric name from a Prometheus/HPA metric name (``:`` and others become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", raw)
    if not name or not (name[0].isalpha() or name[0] == "_"):
        name = f"m_{name}"
    return name[:63]


def _label_matchers(selector: Mapping[str, Any], where: str, notes: list[str]) -> list[str]:
    """PromQL matchers from a label selector's ``matchLabels`` (other parts are reported)."""
    matchers = [
        f'{key}="{_escape_label(str(value))}"'
        for key, value in sorted(_mapping(selector.get("matchLabels")).items())
    ]
    if selector.get("matchExpressions"):
        notes.append(f"{where}: selector.matchExpressions not converted; add them to the query")
    return matchers


def _escape_label(value: str) -> str:
    """A PromQL string literal body, also safe inside a policy query template."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return _escape_template(escaped)


def _escape_template(query: str) -> str:
    """Literal PromQL text as a policy query template (braces doubled)."""
    return query.replace("{", "{{").replace("}", "}}")


def _preset_for(name: str) -> tuple[str, float | None] | None:
    """The preset for a metric name, and the quantile for latency names (``..._p95``)."""
    lowered = name.lower()
    for suffix, preset in _GAUGE_PRESETS:
        if lowered.endswith(suffix):
            return preset, None
    for stem, preset in _LATENCY_PRESETS:
        if stem in lowered:
            match = _LATENCY_QUANTILE.search(lowered)
            quantile = int(match.group(1)) / (10 ** len(match.group(1))) if match else None
            return preset, quantile
    return None


def _target(target: Mapping[str, Any], where: str, reasons: list[str]) -> dict[str, Any] | None:
    kind = target.get("type")
    if kind == "Value":
        value = _quantity(target.get("value"), f"{where}.target.value", reasons)
        return None if value is None else {"type": "Value", "value": _number(value)}
    if kind == "AverageValue":
        value = _quantity(target.get("averageValue"), f"{where}.target.averageValue", reasons)
        return None if value is None else {"type": "AverageValue", "averageValue": _number(value)}
    reasons.append(
        f"{where}: target type {kind!r} cannot be converted (Value or AverageValue only)"
    )
    return None


def _preset_entry(
    preset: str, quantile: float | None, target: dict[str, Any], metric: str, notes: list[str]
) -> dict[str, Any]:
    inner: dict[str, Any] = {"target": target}
    if preset in {"interTokenLatency", "timeToFirstToken", "e2eLatency"}:
        if quantile is None:
            notes.append(
                f"metric {metric!r}: mapped to the {preset} preset with its default quantile 0.95; "
                "check that this is the statistic your adapter served"
            )
        else:
            inner["quantile"] = quantile
        notes.append(
            f"metric {metric!r}: the {preset} preset computes the quantile across the target's "
            "pods from histogram buckets; latency is not proportional to load, consider "
            "algorithm: llm (where latency is a guard)"
        )
    elif target["type"] == "Value":
        aggregation = "avg" if preset == "kvCache" else "sum"
        inner["aggregation"] = aggregation
        notes.append(
            f"metric {metric!r}: Value target on the {preset} preset uses the {aggregation} of "
            "the per-pod values; check that your metrics adapter served the same aggregate"
        )
    return {preset: inner}


# --------------------------------------------------------------------------------------------
# HPA metric specs and behavior
# --------------------------------------------------------------------------------------------


def _hpa_metric(
    index: int, spec: Mapping[str, Any], reasons: list[str], notes: list[str]
) -> dict[str, Any] | None:
    """One HPA v2 MetricSpec as a policy metric entry, or None (with a note saying why)."""
    where = f"metrics[{index}]"
    kind = spec.get("type")
    if kind in {"Resource", "ContainerResource"}:
        body = _mapping(spec.get("resource") or spec.get("containerResource"))
        notes.append(
            f"{where}: {kind} metric {body.get('name', '?')!r} not converted: CPU/memory "
            "utilisation comes from metrics-server with HPA-specific readiness rules that a "
            "Prometheus query cannot reproduce faithfully; the policy does not scale on it"
        )
        return None
    if kind not in {"Pods", "Object", "External"}:
        notes.append(f"{where}: metric type {kind!r} not converted (unknown type)")
        return None
    body = _mapping(spec.get(kind.lower()))
    metric = _mapping(body.get("metric"))
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        reasons.append(f"{where}.{kind.lower()}.metric.name is missing")
        return None
    problems: list[str] = []
    target = _target(_mapping(body.get("target")), f"{where}.{kind.lower()}", problems)
    if target is None:
        notes.extend(f"{where}: metric {name!r} not converted: {problem}" for problem in problems)
        return None
    selector = _mapping(metric.get("selector"))
    preset = _preset_for(name)
    if preset is not None and not selector:
        return _preset_entry(preset[0], preset[1], target, name, notes)
    matchers = _label_matchers(selector, where, notes)
    if kind == "Pods":
        labels = ",".join([*matchers, 'namespace="{namespace}"', 'pod=~"{pods}"'])
        query = f"sum by (pod) ({name}{{{{{labels}}}}})"
        notes.append(
            f"{where}: Pods metric {name!r} as a per-pod query assuming prometheus-adapter's "
            "default 'sum by (pod)'; check your adapter rule"
        )
        inner: dict[str, Any] = {"name": _metric_id(name), "query": query, "returns": "perPod"}
    else:
        extra = list(matchers)
        if kind == "Object":
            described = _mapping(body.get("describedObject"))
            label = str(described.get("kind", "")).lower()
            if label and described.get("name"):
                extra.append(f'{label}="{_escape_label(str(described["name"]))}"')
            extra.insert(0, 'namespace="{namespace}"')
        labels = ",".join(extra)
        selector_text = f"{{{{{labels}}}}}" if labels else ""
        query = f"sum({name}{selector_text})"
        notes.append(
            f"{where}: {kind} metric {name!r} as the whole-target query {query!r} (assumes the "
            "adapter's label mapping and 'sum'); check your adapter rule"
        )
        inner = {"name": _metric_id(name), "query": query, "returns": "target"}
    inner["target"] = target
    return {"prometheus": inner}


def _behavior(raw: object, where: str, notes: list[str], reasons: list[str]) -> dict[str, Any]:
    """HPA ``behavior`` copied field by field (present-but-empty stays present)."""
    out: dict[str, Any] = {}
    for direction, rules in _mapping(raw).items():
        if direction not in {"scaleUp", "scaleDown"}:
            notes.append(f"{where}.{direction}: not converted (unknown behavior field)")
            continue
        rules_map = _mapping(rules)
        converted: dict[str, Any] = {}
        for key, value in rules_map.items():
            if key not in _BEHAVIOR_RULE_KEYS:
                notes.append(f"{where}.{direction}.{key}: not converted (unknown field)")
            elif key == "policies":
                converted[key] = [
                    {k: v for k, v in _mapping(item).items() if k in _BEHAVIOR_POLICY_KEYS}
                    for item in (value if isinstance(value, list) else [])
                ]
            elif key == "tolerance":
                number = _quantity(value, f"{where}.{direction}.tolerance", reasons)
                if number is not None:
                    converted[key] = _number(number)
            else:
                converted[key] = value
        out[direction] = converted
    return out


def _hpa_spec(
    spec: Mapping[str, Any], reasons: list[str], notes: list[str], *, where: str
) -> dict[str, Any]:
    """The policy ``spec`` fields from an HPA-shaped spec (min/max, metrics, behavior)."""
    out: dict[str, Any] = {"minReplicas": spec.get("minReplicas", 1)}
    if "maxReplicas" not in spec:
        reasons.append(f"{where}.maxReplicas is missing")
    else:
        out["maxReplicas"] = spec["maxReplicas"]
    raw_metrics = spec.get("metrics")
    metrics: list[dict[str, Any]] = []
    if not raw_metrics:
        reasons.append(
            f"{where}.metrics is empty: the HPA then scales on 80% CPU utilisation, which "
            "cannot be converted"
        )
    else:
        for index, item in enumerate(raw_metrics if isinstance(raw_metrics, list) else []):
            entry = _hpa_metric(index, _mapping(item), reasons, notes)
            if entry is not None:
                metrics.append(entry)
        if not metrics:
            reasons.append(f"{where}.metrics: none of the metrics can be converted")
        elif len(metrics) < len(raw_metrics):
            notes.append(
                "the policy scales only on the converted metrics; the HPA took the largest "
                "proposal of all its metrics"
            )
    out["metrics"] = metrics
    if "behavior" in spec:
        out["behavior"] = _behavior(spec["behavior"], f"{where}.behavior", notes, reasons)
    return out


# --------------------------------------------------------------------------------------------
# The three sources
# --------------------------------------------------------------------------------------------


def _metadata(manifest: Mapping[str, Any], reasons: list[str]) -> dict[str, Any]:
    meta = _mapping(manifest.get("metadata"))
    if not meta.get("name"):
        reasons.append("metadata.name is missing")
    return {"name": meta.get("name", ""), "namespace": meta.get("namespace") or "default"}


def _from_hpa(manifest: Mapping[str, Any], reasons: list[str], notes: list[str]) -> dict[str, Any]:
    spec = _mapping(manifest.get("spec"))
    ref = _mapping(spec.get("scaleTargetRef"))
    if not ref.get("name") or not ref.get("kind"):
        reasons.append("spec.scaleTargetRef needs kind and name")
    target_ref = {
        "apiVersion": ref.get("apiVersion") or "apps/v1",
        "kind": ref.get("kind", ""),
        "name": ref.get("name", ""),
    }
    return {"scaleTargetRef": target_ref, **_hpa_spec(spec, reasons, notes, where="spec")}


def _from_nimservice(
    manifest: Mapping[str, Any], reasons: list[str], notes: list[str]
) -> dict[str, Any]:
    spec = _mapping(manifest.get("spec"))
    scale = _mapping(spec.get("scale"))
    enabled = scale.get("enabled") is True
    if not enabled:
        reasons.append("spec.scale.enabled is not true: the NIMService does not autoscale")
    if enabled and spec.get("multiNode"):
        reasons.append(
            "spec.multiNode is set with spec.scale.enabled: the NIM Operator does not allow "
            "autoscaling a multi-node NIMService"
        )
    if enabled and spec.get("replicas") is not None:
        reasons.append(
            "spec.replicas is set with spec.scale.enabled: the NIM Operator does not allow a "
            "fixed replica count on an autoscaled NIMService"
        )
    if "hpa" not in scale:
        reasons.append("spec.scale.hpa is missing")
    name = _mapping(manifest.get("metadata")).get("name", "")
    target_ref = {"apiVersion": NIMSERVICE_API_VERSION, "kind": "NIMService", "name": name}
    hpa = _mapping(scale.get("hpa"))
    return {"scaleTargetRef": target_ref, **_hpa_spec(hpa, reasons, notes, where="spec.scale.hpa")}


_KEDA_NOT_CONVERTIBLE = (
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "fallback",
)


def _keda_trigger(
    index: int, trigger: Mapping[str, Any], reasons: list[str], notes: list[str]
) -> dict[str, Any] | None:
    where = f"spec.triggers[{index}]"
    kind = trigger.get("type")
    if kind != "prometheus":
        notes.append(f"{where}: trigger type {kind!r} not converted (only prometheus triggers)")
        return None
    meta = _mapping(trigger.get("metadata"))
    query = meta.get("query")
    if not isinstance(query, str) or not query.strip():
        reasons.append(f"{where}.metadata.query is missing")
        return None
    metric_type = trigger.get("metricType") or "AverageValue"
    problems: list[str] = []
    threshold = _quantity(meta.get("threshold"), f"{where}.metadata.threshold", problems)
    if threshold is None or threshold <= 0:
        problems.append(f"threshold must be a number > 0, got {meta.get('threshold')!r}")
        notes.append(f"{where}: trigger not converted: {problems[0]}")
        return None
    if metric_type not in {"AverageValue", "Value"}:
        notes.append(f"{where}: metricType {metric_type!r} not converted")
        return None
    key = "averageValue" if metric_type == "AverageValue" else "value"
    target = {"type": metric_type, key: _number(threshold)}
    for option in ("activationThreshold", "namespace", "customHeaders", "queryParameters"):
        if option in meta:
            notes.append(f"{where}.metadata.{option} not converted")
    if "serverAddress" in meta:
        notes.append(
            f"{where}: serverAddress {meta['serverAddress']!r} is not part of a policy; the "
            "controller queries the Prometheus it is configured with"
        )
    if "authenticationRef" in trigger:
        notes.append(f"{where}.authenticationRef not converted (configure the controller)")
    ignore_null = str(meta.get("ignoreNullValues", "true")).lower() != "false"
    bare = _BARE_METRIC.match(query)
    preset = _preset_for(bare.group(1)) if bare else None
    if bare and preset is not None and preset[0] in {"kvCache", "queueDepth", "runningRequests"}:
        notes.append(
            f"{where}: the bare query {query.strip()!r} became the {preset[0]} preset over the "
            "target's pods (KEDA fails with 'multiple elements' once 2+ pods export it)"
        )
        return _preset_entry(preset[0], None, target, bare.group(1), notes)
    name = trigger.get("name") or meta.get("metricName") or f"s{index}-prometheus"
    inner: dict[str, Any] = {
        "name": _metric_id(str(name)),
        "query": _escape_template(query.strip()),
        "returns": "target",
    }
    if ignore_null:
        inner["emptyAs"] = 0
        notes.append(
            f"{where}: ignoreNullValues (KEDA default true) kept as emptyAs: 0; an empty result "
            "then reads as 0 and can scale down during a Prometheus outage; KEDA's NaN-as-0 is "
            "not reproduced (NaN is no signal)"
        )
    inner["target"] = target
    return {"prometheus": inner}


def _from_scaledobject(
    manifest: Mapping[str, Any], reasons: list[str], notes: list[str]
) -> dict[str, Any]:
    spec = _mapping(manifest.get("spec"))
    ref = _mapping(spec.get("scaleTargetRef"))
    if not ref.get("name"):
        reasons.append("spec.scaleTargetRef.name is missing")
    target_ref = {
        "apiVersion": ref.get("apiVersion") or "apps/v1",
        "kind": ref.get("kind") or "Deployment",
        "name": ref.get("name", ""),
    }
    min_count = spec.get("minReplicaCount", 0)
    if min_count == 0:
        notes.append(
            "minReplicaCount is 0: KEDA's 0<->1 activation (scale to zero and back) is not "
            "reproduced; the policy keeps at least 1 replica, like the HPA KEDA generates"
        )
    out: dict[str, Any] = {
        "scaleTargetRef": target_ref,
        "minReplicas": max(1, min_count) if isinstance(min_count, int) else min_count,
        "maxReplicas": spec.get("maxReplicaCount", 100),
    }
    for option in _KEDA_NOT_CONVERTIBLE:
        if option in spec:
            notes.append(f"spec.{option} ({spec[option]!r}) is not convertible")
    advanced = _mapping(spec.get("advanced"))
    for option in advanced:
        if option != "horizontalPodAutoscalerConfig":
            notes.append(f"spec.advanced.{option} is not convertible")
    hpa_config = _mapping(advanced.get("horizontalPodAutoscalerConfig"))
    if "behavior" in hpa_config:
        out["behavior"] = _behavior(
            hpa_config["behavior"],
            "spec.advanced.horizontalPodAutoscalerConfig.behavior",
            notes,
            reasons,
        )
    triggers = spec.get("triggers")
    metrics: list[dict[str, Any]] = []
    for index, trigger in enumerate(triggers if isinstance(triggers, list) else []):
        entry = _keda_trigger(index, _mapping(trigger), reasons, notes)
        if entry is not None:
            metrics.append(entry)
    if not metrics:
        reasons.append("spec.triggers: no prometheus trigger can be converted")
    out["metrics"] = metrics
    return out


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------


def _describe(manifest: Mapping[str, Any]) -> str:
    meta = _mapping(manifest.get("metadata"))
    namespace = meta.get("namespace") or "default"
    return f"{manifest.get('kind', '?')} {namespace}/{meta.get('name', '?')}"


def _validation_reasons(exc: pydantic.ValidationError) -> list[str]:
    reasons = []
    for item in exc.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"])
        reasons.append(f"resulting policy field {path}: {item['msg']}")
    return reasons


def import_manifest(manifest: object, source: str = "<manifest>") -> ImportResult:
    """Convert one HPA, NIMService or ScaledObject manifest into a policy.

    Args:
        manifest: the parsed YAML document.
        source: name of the input, used in error messages.

    Returns:
        The validated policy, its YAML-ready document and the notes on what was not converted.

    Raises:
        ImportConversionError: no valid policy can be produced; lists every reason.
    """
    if not isinstance(manifest, Mapping):
        raise ImportConversionError(source, ["the document is not a mapping"])
    api_version = manifest.get("apiVersion")
    kind = manifest.get("kind")
    reasons: list[str] = []
    notes: list[str] = []
    if kind == "HorizontalPodAutoscaler" and api_version in HPA_API_VERSIONS:
        spec = _from_hpa(manifest, reasons, notes)
    elif kind == "NIMService" and api_version == NIMSERVICE_API_VERSION:
        spec = _from_nimservice(manifest, reasons, notes)
    elif kind == "ScaledObject" and api_version == KEDA_API_VERSION:
        spec = _from_scaledobject(manifest, reasons, notes)
    else:
        raise ImportConversionError(
            source,
            [
                f"unsupported manifest {api_version}/{kind}: expected autoscaling/v2 "
                f"HorizontalPodAutoscaler, {NIMSERVICE_API_VERSION} NIMService or "
                f"{KEDA_API_VERSION} ScaledObject"
            ],
        )
    metadata = _metadata(manifest, reasons)
    if reasons:
        raise ImportConversionError(f"{source} ({_describe(manifest)})", reasons)
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {**spec, "algorithm": "hpa"},
    }
    try:
        policy = ScalingPolicy.model_validate(document)
    except pydantic.ValidationError as exc:
        raise ImportConversionError(
            f"{source} ({_describe(manifest)})", _validation_reasons(exc)
        ) from exc
    return ImportResult(policy, document, tuple(notes), _describe(manifest))


def import_text(text: str, source: str = "<manifest>") -> list[ImportResult]:
    """Convert every non-empty YAML document of ``text``.

    Raises:
        ImportConversionError: the YAML cannot be read, or any document cannot be converted;
            the reasons of all failing documents are listed.
    """
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise ImportConversionError(source, [f"invalid YAML: {exc}"]) from exc
    except RecursionError as exc:
        raise ImportConversionError(source, ["YAML nesting is too deep"]) from exc
    if not documents:
        raise ImportConversionError(source, ["no YAML document found"])
    results: list[ImportResult] = []
    reasons: list[str] = []
    for index, document in enumerate(documents):
        name = source if len(documents) == 1 else f"{source} document {index + 1}"
        try:
            results.append(import_manifest(document, name))
        except ImportConversionError as exc:
            reasons.extend(f"{exc.source}: {reason}" for reason in exc.reasons)
    if reasons:
        raise ImportConversionError(source, reasons)
    return results


def render_yaml(results: list[ImportResult], source: str) -> str:
    """The policies as YAML, each preceded by comments listing what was not converted."""
    parts: list[str] = []
    for result in results:
        lines = [f"# Imported by 'nim-autoscaler import' from {source} ({result.source})."]
        if result.notes:
            lines.append("# Not converted, or converted with an assumption:")
            lines.extend(f"#   - {note}" for note in result.notes)
        body = yaml.safe_dump(result.document, sort_keys=False, default_flow_style=False)
        parts.append("\n".join(lines) + "\n" + body)
    return "---\n".join(parts)
