"""The ScalingPolicy model: what SREs write in ``policies/*.yaml``.

Pydantic v2, ``extra="forbid"``, frozen. YAML keys are camelCase (as in Kubernetes); Python
attributes are snake_case. Every field documents its units. The loader
(:mod:`autoscaler.policy.loader`) maps validation errors back to file, line and column.

Shape (one YAML document)::

    apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
    kind: ScalingPolicy
    metadata: {name: llama-3-1-8b, namespace: nim-service}
    spec:
      scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: meta-llama3-8b}
      minReplicas: 1
      maxReplicas: 10
      metrics:
        - kvCache: {target: {type: AverageValue, averageValue: 0.7}}
        - interTokenLatency: {quantile: 0.95, target: {type: Value, value: 0.030}}
      behavior: {...}            # HPA v2 semantics; absent = HPA without behavior
      onMetricFailure: {action: hold}
"""

from __future__ import annotations

import functools
import math
import re
import weakref
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from autoscaler.promql import validate_template

API_GROUP = "autoscaling.nim-autoscaler.io"
"""API group of the policy kinds, as files and as Kubernetes resources."""
API_VERSION = f"{API_GROUP}/v1alpha1"
"""The canonical ``apiVersion`` of policy documents and ScalingPolicy resources."""
LEGACY_API_VERSION = "nim-autoscaler/v1alpha1"
"""The ``apiVersion`` of files written before the API group existed: still loaded unchanged,
with a ``lint`` warning (rule ``legacy-api-version``) naming the one-line migration."""
API_VERSIONS = (API_VERSION, LEGACY_API_VERSION)
"""Every ``apiVersion`` a policy document may carry."""
KIND = "ScalingPolicy"

# --------------------------------------------------------------------------------------------
# Scalar types
# --------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+\s*$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a Prometheus-style duration (``30s``, ``1m30s``)."""
    if isinstance(value, bool):
        msg = f"expected a duration such as 60, '30s' or '1m', got {value!r}"
        raise ValueError(msg)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_RE.match(value):
        seconds = sum(
            float(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART_RE.findall(value)
        )
    else:
        msg = f"expected a duration such as 60, '30s' or '1m', got {value!r}"
        raise ValueError(msg)
    if not math.isfinite(seconds) or seconds <= 0:
        msg = f"a duration must be positive and finite, got {value!r}"
        raise ValueError(msg)
    return seconds


_QUANTITY_RE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]*)\s*$")
_QUANTITY_SUFFIX = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(value: object) -> float:
    """A float from a number or a Kubernetes quantity string (``100m``, ``0.75``, ``2k``)."""
    if isinstance(value, bool):
        msg = f"expected a number or a Kubernetes quantity such as '100m', got {value!r}"
        raise ValueError(msg)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY_RE.match(value)
        if not match or match.group(2) not in _QUANTITY_SUFFIX:
            msg = f"expected a number or a Kubernetes quantity such as '100m', got {value!r}"
            raise ValueError(msg)
        number = float(match.group(1)) * _QUANTITY_SUFFIX[match.group(2)]
    else:
        msg = f"expected a number or a Kubernetes quantity such as '100m', got {value!r}"
        raise ValueError(msg)
    if not math.isfinite(number):
        msg = f"a quantity must be finite, got {value!r}"
        raise ValueError(msg)
    return number


def _positive(value: float) -> float:
    if value <= 0:
        msg = f"must be greater than 0, got {value}"
        raise ValueError(msg)
    return value


def _non_negative(value: float) -> float:
    if value < 0:
        msg = f"must be 0 or more, got {value}"
        raise ValueError(msg)
    return value


CRD_KEY = "x-crd"
"""JSON Schema key carrying what the Kubernetes CRD says differently from the JSON Schema.

The CRD generator (:mod:`autoscaler.policy.crd`) merges its value over the node (a ``None``
value deletes a key; a ``type`` or ``x-kubernetes-int-or-string`` replaces an ``anyOf``), and
the JSON Schema export (:mod:`autoscaler.policy.schema`) removes it. This is how the CEL rules
(``x-kubernetes-validations``) sit next to the validators they mirror."""


def cel_rule(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry: a CEL ``rule`` and the ``message`` shown on failure.

    Args:
        rule: CEL expression over ``self`` (the object the rule sits on) that must be true.
        message: what the API server answers when it is false (written for an SRE).
        field_path: the field to blame (``.maxReplicas``), relative to ``self``.
    """
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


_DURATION_PATTERN = r"^\s*(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+\s*$"
_DURATION_JSON_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": _DURATION_PATTERN},
        ],
        "description": "Seconds, or a duration string such as '30s', '1m30s', '2h'.",
        # A resource takes whole seconds or a duration string (the API server's int-or-string).
        CRD_KEY: {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 1,
            "pattern": _DURATION_PATTERN,
            "maxLength": 64,
            "description": "Whole seconds, or a duration string such as '30s', '1m30s', '2h'.",
        },
    }
)
_QUANTITY_PATTERN = (
    r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*(?:[numkMGTPE]|[KMGTPE]i)?\s*$"
)


def _quantity_json_schema(minimum: dict[str, float]) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", **minimum},
                {"type": "string", "pattern": _QUANTITY_PATTERN},
            ],
            "description": "A number, or a Kubernetes quantity string such as '100m' (= 0.1).",
            # A resource's schema must type every node: there a quantity is a plain number.
            CRD_KEY: {
                "type": "number",
                **minimum,
                "description": "A number (in a resource, write 0.1 rather than '100m').",
            },
        }
    )


Duration = Annotated[float, BeforeValidator(parse_duration), _DURATION_JSON_SCHEMA]
"""Seconds; YAML accepts a number of seconds or a string like ``30s``, ``1m``, ``1h``."""
Quantity = Annotated[float, BeforeValidator(parse_quantity), _quantity_json_schema({})]
"""A number; YAML accepts plain numbers or Kubernetes quantities (``100m`` = 0.1)."""
PositiveQuantity = Annotated[
    float,
    BeforeValidator(parse_quantity),
    AfterValidator(_positive),
    _quantity_json_schema({"exclusiveMinimum": 0}),
]
"""A quantity greater than 0."""
NonNegativeQuantity = Annotated[
    float,
    BeforeValidator(parse_quantity),
    AfterValidator(_non_negative),
    _quantity_json_schema({"minimum": 0}),
]
"""A quantity of 0 or more."""

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


def _dns1123_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        msg = (
            f"{value!r} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters)"
        )
        raise ValueError(msg)
    return value


def _dns1123_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        msg = (
            f"{value!r} is not a DNS-1123 label (lower-case letters, digits and '-', starting "
            "and ending with a letter or digit, at most 63 characters)"
        )
        raise ValueError(msg)
    return value


SIGNAL_PREFIX = "__"
"""Metric names starting with this are reserved for the signals the controller adds itself."""


def _metric_name(value: str, info: ValidationInfo) -> str:
    if value.startswith(SIGNAL_PREFIX) and not (info.context or {}).get("signals"):
        msg = f"{value!r}: metric names starting with {SIGNAL_PREFIX!r} are reserved"
        raise ValueError(msg)
    if not _METRIC_NAME.match(value):
        msg = (
            f"{value!r} is not a valid metric name (a letter or '_' then letters, digits, '_' "
            "or '-', at most 63 characters)"
        )
        raise ValueError(msg)
    return value


DnsSubdomain = Annotated[
    str, AfterValidator(_dns1123_subdomain), Field(json_schema_extra={"maxLength": 253})
]
DnsLabel = Annotated[
    str, AfterValidator(_dns1123_label), Field(json_schema_extra={"maxLength": 63})
]
MetricName = Annotated[
    str, AfterValidator(_metric_name), Field(json_schema_extra={"maxLength": 63})
]


class _Model(BaseModel):
    """Common configuration: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


# --------------------------------------------------------------------------------------------
# Metadata and target
# --------------------------------------------------------------------------------------------


class Metadata(_Model):
    """Identity of the policy, as Kubernetes object metadata."""

    name: DnsSubdomain
    """Policy name (DNS-1123 subdomain). Unique per namespace."""
    namespace: DnsLabel = "default"
    """Namespace of the scale target and its pods (DNS-1123 label)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Free-form labels; copied to the controller's own metrics as ``policy_labels`` only."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Free-form annotations; not interpreted."""


class ScaleTargetRef(_Model):
    """The object to scale: any resource with a ``/scale`` subresource."""

    api_version: str = Field(min_length=1, max_length=317)
    """API group/version, e.g. ``apps/v1`` or ``apps.nvidia.com/v1alpha1``."""
    kind: str = Field(min_length=1, max_length=63)
    """Kind, e.g. ``Deployment``, ``StatefulSet``, ``NIMService``."""
    name: DnsSubdomain
    """Name of the object in the policy's namespace."""


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


class TargetType(StrEnum):
    """How a metric's value is compared with its target (HPA v2 ``MetricTarget.type``)."""

    VALUE = "Value"
    """The value for the whole target (one number) is compared with ``value``."""
    AVERAGE_VALUE = "AverageValue"
    """The per-pod average is compared with ``averageValue``."""


class MetricTarget(_Model):
    """Target of a metric, as HPA v2: ``{type: Value, value: X}`` or ``AverageValue``."""

    model_config = ConfigDict(
        json_schema_extra={
            CRD_KEY: {
                "x-kubernetes-validations": [
                    cel_rule(
                        "self.type != 'Value' || (has(self.value) && !has(self.averageValue))",
                        "a target of type Value takes 'value' (and no 'averageValue')",
                    ),
                    cel_rule(
                        "self.type != 'AverageValue' || "
                        "(has(self.averageValue) && !has(self.value))",
                        "a target of type AverageValue takes 'averageValue' (and no 'value')",
                    ),
                ]
            }
        }
    )

    type: TargetType
    """``Value`` (whole target) or ``AverageValue`` (per pod)."""
    value: PositiveQuantity | None = None
    """Target for the whole scale target, in the metric's unit. Required with ``type: Value``."""
    average_value: PositiveQuantity | None = None
    """Target per pod, in the metric's unit. Required with ``type: AverageValue``."""

    @model_validator(mode="after")
    def _one_value(self) -> MetricTarget:
        if self.type is TargetType.VALUE:
            if self.value is None:
                msg = "type Value needs 'value'"
                raise ValueError(msg)
            if self.average_value is not None:
                msg = "type Value takes 'value', not 'averageValue'"
                raise ValueError(msg)
        else:
            if self.average_value is None:
                msg = "type AverageValue needs 'averageValue'"
                raise ValueError(msg)
            if self.value is not None:
                msg = "type AverageValue takes 'averageValue', not 'value'"
                raise ValueError(msg)
        return self

    @property
    def threshold(self) -> float:
        """The target number, whichever the type."""
        result = self.value if self.type is TargetType.VALUE else self.average_value
        assert result is not None
        return result


class Aggregation(StrEnum):
    """How per-pod values become one whole-target value under ``type: Value``."""

    AVG = "avg"
    SUM = "sum"
    MAX = "max"


class MetricKind(StrEnum):
    """The metric presets, plus ``prometheus`` for a custom PromQL query."""

    KV_CACHE = "kvCache"
    INTER_TOKEN_LATENCY = "interTokenLatency"  # noqa: S105 - not a secret
    TIME_TO_FIRST_TOKEN = "timeToFirstToken"  # noqa: S105 - not a secret
    E2E_LATENCY = "e2eLatency"
    QUEUE_DEPTH = "queueDepth"
    RUNNING_REQUESTS = "runningRequests"
    REQUEST_RATE = "requestRate"
    PROMPT_TOKEN_RATE = "promptTokenRate"  # noqa: S105 - not a secret
    GENERATION_TOKEN_RATE = "generationTokenRate"  # noqa: S105 - not a secret
    PROMETHEUS = "prometheus"
    GATEWAY_QUEUE = "gatewayQueue"
    GATEWAY_REQUEST_RATE = "gatewayRequestRate"


LATENCY_KINDS = frozenset(
    {MetricKind.INTER_TOKEN_LATENCY, MetricKind.TIME_TO_FIRST_TOKEN, MetricKind.E2E_LATENCY}
)
"""Histogram-based latency presets: their value is a quantile (or mean) in seconds."""

GATEWAY_KINDS = frozenset({MetricKind.GATEWAY_QUEUE, MetricKind.GATEWAY_REQUEST_RATE})
"""Presets read from the gateway in front of the model (the Gateway API Inference Extension's
endpoint picker): one value for the whole target, present while no pod runs."""


class _MetricSpecBase(_Model):
    name: MetricName | None = None
    """Name of this metric in the policy (unique); defaults to the preset's key."""
    target: MetricTarget
    """The target; see each preset for its unit."""
    max_staleness: Duration | None = None
    """Samples older than this many seconds are 'no signal' (default: 3 x window, at least 2 m)."""


class GaugeMetricSpec(_MetricSpecBase):
    """A per-pod gauge preset (KV cache, queue depth, running requests)."""

    aggregation: Aggregation | None = None
    """Per-pod values to one value under ``type: Value`` (default: avg for KV, sum otherwise)."""


class LatencyMetricSpec(_MetricSpecBase):
    """A histogram latency preset; the value is in seconds."""

    quantile: float = Field(0.95, gt=0, lt=1)
    """Quantile of the latency distribution across the target's pods (0 < q < 1)."""
    window: Duration = 60.0
    """Rate window for the histogram buckets, seconds (PromQL ``rate(...[window])``)."""
    statistic: Literal["quantile", "mean"] = "quantile"
    """``quantile`` (from buckets, as ``histogram_quantile``) or ``mean`` (``_sum``/``_count``)."""


class RateMetricSpec(_MetricSpecBase):
    """Request arrival rate (requests/second), per pod or for the whole target."""

    window: Duration = 60.0
    """Rate window, seconds."""
    aggregation: Aggregation | None = None
    """Per-pod values to one value under ``type: Value`` (default: sum)."""


class PrometheusMetricSpec(_MetricSpecBase):
    """A custom PromQL query.

    The query is a template: ``{namespace}``, ``{pods}`` (a regex alternation of the target's
    pod names, already escaped) and ``{selector}`` (label matchers from the pod selector) are
    substituted with safely escaped values. Literal braces are written ``{{`` and ``}}``.
    """

    name: MetricName  # required here, optional for presets
    """Name of this metric in the policy (required for custom queries)."""
    query: str = Field(min_length=1, max_length=16384)
    """PromQL template."""

    @field_validator("query")
    @classmethod
    def _usable_template(cls, value: str) -> str:
        problems = validate_template(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    returns: Literal["target", "perPod"] = "target"
    """``target``: one series for the whole target; ``perPod``: one series per pod (``pod``)."""
    empty_as: float | None = None
    """Value to use when the query returns no series (e.g. 0 for a counter rate). Default: no
    signal."""
    role: Literal["proportional", "latencyGuard"] = "proportional"
    """How ``algorithm: llm`` uses it: ratio math (``proportional``) or as a latency guard."""
    aggregation: Aggregation | None = None
    """Per-pod values to one value under ``type: Value`` when ``returns: perPod`` (default: sum)."""


class GatewayMetricSpec(_MetricSpecBase):
    """A Gateway API Inference Extension endpoint-picker (EPP) series, one value for the target.

    The EPP sits in front of the model servers, so its series exist while no pod of the target
    runs: they are activation signals for ``minReplicas: 0``. ``pool`` and ``model`` select the
    series (label ``inference_pool`` and ``model_name``); ``namespace`` is the EPP's namespace
    (default: the policy's). An EPP that is scraped but holds no series for them reads 0; an EPP
    that is not scraped at all is no signal.
    """

    pool: str | None = Field(None, min_length=1, max_length=253)
    """InferencePool name (label ``inference_pool``); only for ``gatewayQueue``."""
    model: str | None = Field(None, min_length=1, max_length=1024)
    """Model name the clients ask for (label ``model_name``)."""
    namespace: str | None = Field(None, min_length=1, max_length=63)
    """Namespace of the EPP's series (default: the policy's namespace)."""
    window: Duration = 60.0
    """Rate window of ``gatewayRequestRate``, seconds."""


class MetricSpec(_Model):
    """One metric entry: a one-key mapping naming its kind, e.g. ``{kvCache: {...}}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": 1,
            # In the CRD every kind is an optional property and CEL checks that exactly one is
            # set, so the API server's message names the kinds.
            CRD_KEY: {
                "minProperties": None,
                "maxProperties": None,
                "x-kubernetes-validations": [
                    cel_rule(
                        " + ".join(f"(has(self.{kind.value}) ? 1 : 0)" for kind in MetricKind)
                        + " == 1",
                        "each metrics entry sets exactly one metric kind, one of: "
                        + ", ".join(kind.value for kind in MetricKind),
                    )
                ],
            },
        }
    )

    kv_cache: GaugeMetricSpec | None = None
    """KV-cache usage per pod, 0..1 (NIM ``gpu_cache_usage_perc``, vLLM ``kv_cache_usage_perc``)."""
    inter_token_latency: LatencyMetricSpec | None = None
    """Inter-token latency (time per output token), seconds."""
    time_to_first_token: LatencyMetricSpec | None = None
    """Time to first token, seconds."""
    e2e_latency: LatencyMetricSpec | None = Field(None, alias="e2eLatency")
    """End-to-end request latency, seconds."""
    queue_depth: GaugeMetricSpec | None = None
    """Requests waiting per pod (``num_requests_waiting``), requests."""
    running_requests: GaugeMetricSpec | None = None
    """Requests in the running batch per pod (``num_requests_running``), requests."""
    request_rate: RateMetricSpec | None = None
    """Request completion rate (``request_success_total``), requests/second."""
    prompt_token_rate: RateMetricSpec | None = None
    """Prompt tokens processed (``prompt_tokens_total``), tokens/second."""
    generation_token_rate: RateMetricSpec | None = None
    """Tokens generated (``generation_tokens_total``), tokens/second."""
    prometheus: PrometheusMetricSpec | None = None
    """A custom PromQL query."""
    gateway_queue: GatewayMetricSpec | None = None
    """Requests held in the gateway's flow-control queue for the target (Gateway API Inference
    Extension ``inference_extension_flow_control_queue_size``), requests. Activation signal."""
    gateway_request_rate: GatewayMetricSpec | None = None
    """Requests/second reaching the gateway for the model (GIE
    ``inference_objective_request_total``). Activation signal."""

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            keys = list(data)
            if len(keys) != 1:
                allowed = ", ".join(k.value for k in MetricKind)
                msg = (
                    f"a metric entry is a mapping with exactly one key (one of {allowed}); "
                    f"got {len(keys)} keys: {', '.join(map(str, keys)) or 'none'}"
                )
                raise ValueError(msg)
            if data[keys[0]] is None:
                msg = f"metric {keys[0]!r} needs a mapping with at least 'target', got null"
                raise ValueError(msg)
        return data

    @model_validator(mode="after")
    def _gateway_selects_series(self) -> MetricSpec:
        queue, rate = self.gateway_queue, self.gateway_request_rate
        if queue is not None and queue.pool is None and queue.model is None:
            msg = (
                "gatewayQueue needs 'pool' (the InferencePool) or 'model' (the model name): "
                "without either it would read every model's queue in the namespace"
            )
            raise ValueError(msg)
        if rate is not None and rate.model is None:
            msg = (
                "gatewayRequestRate needs 'model' (label model_name of "
                "inference_objective_request_total)"
            )
            raise ValueError(msg)
        if rate is not None and rate.pool is not None:
            msg = (
                "gatewayRequestRate has no 'pool': the request counter carries only the model "
                "labels; give 'model'"
            )
            raise ValueError(msg)
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (pydantic's), without the cached kind, spec and name of the original."""
        copy = super().model_copy(update=update, deep=deep)
        for cached in ("kind", "spec", "name"):
            copy.__dict__.pop(cached, None)
        return copy

    # kind, spec and name are read many times per tick for every metric of every policy (the
    # model is frozen): each is computed once.
    @functools.cached_property
    def kind(self) -> MetricKind:
        """Which preset (or ``prometheus``) this entry is."""
        values = self.__dict__
        for kind, attr in _KIND_ATTR.items():
            if values[attr] is not None:
                return kind
        msg = "metric entry has no kind"  # unreachable after validation
        raise AssertionError(msg)

    @functools.cached_property
    def spec(
        self,
    ) -> (
        GaugeMetricSpec
        | LatencyMetricSpec
        | RateMetricSpec
        | PrometheusMetricSpec
        | GatewayMetricSpec
    ):
        """The inner specification of whichever kind is set."""
        inner = getattr(self, _KIND_ATTR[self.kind])
        assert inner is not None
        return inner  # type: ignore[no-any-return]

    @functools.cached_property
    def name(self) -> str:
        """The metric's name in the policy (explicit, or the preset key)."""
        return self.spec.name or self.kind.value

    @property
    def target(self) -> MetricTarget:
        """The metric's target."""
        return self.spec.target

    @property
    def aggregation(self) -> Aggregation:
        """How per-pod values combine under ``type: Value``."""
        explicit = getattr(self.spec, "aggregation", None)
        if explicit is not None:
            return explicit  # type: ignore[no-any-return]
        return Aggregation.AVG if self.kind is MetricKind.KV_CACHE else Aggregation.SUM

    @property
    def is_latency(self) -> bool:
        """True for latency presets and custom queries with ``role: latencyGuard``."""
        if self.kind in LATENCY_KINDS:
            return True
        return self.prometheus is not None and self.prometheus.role == "latencyGuard"

    @property
    def per_pod(self) -> bool:
        """True if the source returns one sample per pod (gauges, rates, perPod queries)."""
        if self.kind in LATENCY_KINDS or self.kind in GATEWAY_KINDS:
            return False
        if self.prometheus is not None:
            return self.prometheus.returns == "perPod"
        return True

    @property
    def is_activation(self) -> bool:
        """True for a whole-target signal that exists while no pod runs (an activation signal
        of ``minReplicas: 0``): the gateway presets and ``prometheus`` with ``returns: target``
        (not a latency guard). Its value > 0 means requests wait or arrive."""
        if self.kind in GATEWAY_KINDS:
            return True
        spec = self.prometheus
        return spec is not None and spec.returns == "target" and spec.role == "proportional"


_KIND_ATTR: dict[MetricKind, str] = {
    MetricKind.KV_CACHE: "kv_cache",
    MetricKind.INTER_TOKEN_LATENCY: "inter_token_latency",
    MetricKind.TIME_TO_FIRST_TOKEN: "time_to_first_token",
    MetricKind.E2E_LATENCY: "e2e_latency",
    MetricKind.QUEUE_DEPTH: "queue_depth",
    MetricKind.RUNNING_REQUESTS: "running_requests",
    MetricKind.REQUEST_RATE: "request_rate",
    MetricKind.PROMPT_TOKEN_RATE: "prompt_token_rate",
    MetricKind.GENERATION_TOKEN_RATE: "generation_token_rate",
    MetricKind.PROMETHEUS: "prometheus",
    MetricKind.GATEWAY_QUEUE: "gateway_queue",
    MetricKind.GATEWAY_REQUEST_RATE: "gateway_request_rate",
}


# --------------------------------------------------------------------------------------------
# Behavior (HPA v2)
# --------------------------------------------------------------------------------------------


class PolicyType(StrEnum):
    """Kind of rate limit (HPA v2 ``HPAScalingPolicyType``)."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which rate limit wins when several apply (HPA v2 ``ScalingPolicySelect``)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingRateLimit(_Model):
    """One rate limit: at most ``value`` pods (or percent) of change per ``periodSeconds``."""

    type: PolicyType
    """``Pods`` or ``Percent``."""
    value: int = Field(gt=0, le=2**31 - 1)
    """Pods or percent allowed per period (> 0)."""
    period_seconds: int = Field(gt=0, le=1800)
    """Length of the look-back period, seconds (1..1800)."""


def _cel_metric_name() -> str:
    """CEL for the name of metrics entry ``m``: its ``name``, else its kind (as the model)."""
    expression = "''"
    for kind in reversed(MetricKind):
        key = kind.value
        expression = f"has(m.{key}) ? (has(m.{key}.name) ? m.{key}.name : '{key}') : ({expression})"
    return f"({expression})"


_CEL_METRIC_NAME = _cel_metric_name()

MAX_RATE_LIMITS = 10
"""Most rate limits in one direction (bounds the API server's cost of checking a resource)."""
MAX_METRICS = 32
"""Most metrics in one policy (same reason)."""


class ScalingRules(_Model):
    """Rules for one direction (HPA v2 ``HPAScalingRules``); unset fields take HPA defaults."""

    stabilization_window_seconds: int | None = Field(None, ge=0, le=3600)
    """Look-back window over past recommendations, seconds (0..3600)."""
    select_policy: SelectPolicy | None = None
    """``Max`` (default), ``Min`` or ``Disabled`` (no scaling in this direction)."""
    policies: list[ScalingRateLimit] | None = Field(None, max_length=MAX_RATE_LIMITS)
    """Rate limits; a list given here replaces the default list whole (not merged)."""
    tolerance: NonNegativeQuantity | None = None
    """Dead band around the target as a fraction (default 0.1 = 10 %)."""


class Behavior(_Model):
    """Scaling behavior, HPA v2 semantics. Present (even empty) means HPA defaults per field."""

    scale_up: ScalingRules | None = None
    """Scale-up rules (defaults: window 0, Max of 4 Pods/15 s and 100 %/15 s)."""
    scale_down: ScalingRules | None = None
    """Scale-down rules (defaults: window 300 s, 100 %/15 s)."""


# --------------------------------------------------------------------------------------------
# Failure handling, SLO, LLM options
# --------------------------------------------------------------------------------------------


class OnMetricFailure(_Model):
    """What to do when metrics are missing: hold, or go to fixed replicas after K failed ticks."""

    model_config = ConfigDict(
        json_schema_extra={
            CRD_KEY: {
                "x-kubernetes-validations": [
                    cel_rule(
                        "!has(self.action) || self.action != 'fallback' || has(self.replicas)",
                        "onMetricFailure action fallback needs 'replicas'",
                    ),
                    cel_rule(
                        "(has(self.action) && self.action == 'fallback') || !has(self.replicas)",
                        "onMetricFailure 'replicas' only applies to action fallback",
                    ),
                ]
            }
        }
    )

    action: Literal["hold", "fallback"] = "hold"
    """``hold``: keep the current count (scale-up on valid metrics still allowed);
    ``fallback``: after ``afterFailures`` consecutive ticks without any valid metric, scale to
    ``replicas``."""
    replicas: int | None = Field(None, ge=0)
    """Fallback replica count (required with ``action: fallback``)."""
    after_failures: int = Field(3, ge=1, le=1000)
    """Consecutive failed ticks before the fallback applies."""

    @model_validator(mode="after")
    def _fallback_needs_replicas(self) -> OnMetricFailure:
        if self.action == "fallback" and self.replicas is None:
            msg = "action fallback needs 'replicas'"
            raise ValueError(msg)
        if self.action == "hold" and self.replicas is not None:
            msg = "'replicas' only applies to action fallback"
            raise ValueError(msg)
        return self


class SloObjective(_Model):
    """A latency objective: the ``quantile`` of the latency stays under ``target`` seconds."""

    quantile: float = Field(0.95, gt=0, lt=1)
    """Quantile (0 < q < 1)."""
    target: PositiveQuantity
    """Latency bound, seconds."""


class Slo(_Model):
    """Latency objectives. With ``algorithm: llm`` they are the objective the replica count is
    sized for (the capacity model learns how much load one replica carries within them); reports,
    lint and the simulator measure against them."""

    ttft: SloObjective | None = None
    """Time to first token objective."""
    itl: SloObjective | None = None
    """Inter-token latency objective."""
    e2e: SloObjective | None = None
    """End-to-end latency objective."""


class CapacitySeed(_Model):
    """What one replica carries within the SLO, known before the controller has learned it.

    Exactly one of ``requestsPerSecond`` (e.g. from your own load test) and ``profile`` (a
    GenAI-Perf / AIPerf concurrency sweep; the capacity at the SLO is read from it) is given.
    The controller starts from it and keeps learning from the fleet's own metrics.
    """

    model_config = ConfigDict(
        json_schema_extra={
            CRD_KEY: {
                "x-kubernetes-validations": [
                    cel_rule(
                        "has(self.requestsPerSecond) != has(self.profile)",
                        "give exactly one of 'requestsPerSecond' and 'profile'",
                    )
                ]
            }
        }
    )

    requests_per_second: PositiveQuantity | None = None
    """Requests/s one ready replica serves within the SLO."""
    profile: str | None = Field(None, min_length=1, max_length=4096)
    """Path of a GenAI-Perf/AIPerf profile export (JSON or CSV, one file per concurrency level,
    or a directory of them), relative to the policy file."""

    _profile_requests_per_second: float | None = PrivateAttr(None)
    _profile_lengths: tuple[float, float] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _exactly_one(self) -> CapacitySeed:
        if (self.requests_per_second is None) == (self.profile is None):
            msg = "give exactly one of 'requestsPerSecond' and 'profile'"
            raise ValueError(msg)
        return self

    @property
    def seed_requests_per_second(self) -> float | None:
        """The per-replica capacity this seed gives (None: a profile not read yet)."""
        if self.requests_per_second is not None:
            return self.requests_per_second
        return self._profile_requests_per_second

    @property
    def seed_lengths(self) -> tuple[float, float] | None:
        """Mean (prompt, output) tokens per request the profile was measured at (None: not a
        profile, or its exports do not say)."""
        return self._profile_lengths

    def with_profile_capacity(
        self, requests_per_second: float, lengths: tuple[float, float] | None = None
    ) -> CapacitySeed:
        """A copy carrying the capacity read from the profile file and the mean request lengths
        it was measured at (set by the loader)."""
        copy = self.model_copy()
        copy._profile_requests_per_second = requests_per_second
        copy._profile_lengths = lengths
        return copy


class LlmOptions(_Model):
    """Tuning of ``algorithm: llm``; the defaults suit NIM/vLLM on GPUs."""

    startup_seconds: Duration = 120.0
    """Expected pod start-up time (scheduling + model load) until one is learned, seconds."""
    startup_learning: bool = True
    """Learn the start-up time from pods seen becoming ready."""
    latency_scale_down_margin: float = Field(0.8, gt=0, le=1)
    """Scale-down is allowed only when every latency metric is below margin x target."""
    kv_saturation: float = Field(0.95, gt=0, le=1)
    """KV-cache usage at or above this is treated as saturated (demand is then unknown-high)."""


DEFAULT_IDLE_FOR = 900.0
"""``scaleToZero.idleFor`` default, seconds (15 minutes)."""


class ScaleToZero(_Model):
    """Scale to zero replicas after a time without a request (``algorithm: llm``,
    ``minReplicas: 0``), and back when requests wait at the gateway."""

    idle_for: Duration = Field(DEFAULT_IDLE_FOR, gt=0)
    """Scale to zero once every activation signal and the fleet's own request rate and requests
    in flight have read 0 for this long, seconds (default 15 m)."""


_CEL_ACTIVATION = (
    "has(self.metrics) && self.metrics.exists(m, has(m.gatewayQueue) || "
    "has(m.gatewayRequestRate) || (has(m.prometheus) && "
    "(has(m.prometheus.returns) ? m.prometheus.returns : 'target') == 'target' && "
    "(has(m.prometheus.role) ? m.prometheus.role : 'proportional') == 'proportional'))"
)
"""CEL: the policy has an activation signal (see :attr:`MetricSpec.is_activation`)."""

NO_ACTIVATION_MESSAGE = (
    "minReplicas 0 with algorithm llm needs an activation signal: a metric that exists while "
    "no pod runs (gatewayQueue or gatewayRequestRate from the gateway in front of the model, "
    "or prometheus with returns: target); without one the controller could never see the "
    "first request and would keep the model at zero"
)


class Algorithm(StrEnum):
    """Decision algorithm."""

    HPA = "hpa"
    """Exactly the Kubernetes HPA (v2) algorithm."""
    LLM = "llm"
    """HPA safety rules plus LLM-aware demand estimation and cold-start accounting."""


class MetricNames(StrEnum):
    """Which metric names the pods export."""

    AUTO = "auto"
    """Detect from what the pods export (and cache it)."""
    NIM = "nim"
    """NIM for LLMs: unprefixed (``gpu_cache_usage_perc``, ``time_per_output_token_seconds``)."""
    VLLM = "vllm"
    """vLLM >= 0.10: ``vllm:kv_cache_usage_perc``, ``vllm:inter_token_latency_seconds``."""
    VLLM_LEGACY = "vllm-legacy"
    """vLLM < 0.10: ``vllm:gpu_cache_usage_perc``, ``vllm:time_per_output_token_seconds``."""


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


class PolicyMode(StrEnum):
    """What the controller does with a policy's decisions."""

    ACTIVE = "active"
    """Decide and act: write ``/scale`` and pod deletion costs."""
    ADVISORY = "advisory"
    """Decide, explain, record and export, including what would be written; write nothing."""
    PAUSED = "paused"
    """Do not decide; keep the history."""


def _sizes_on_slo(data: dict[str, Any]) -> bool:
    """True when validated spec fields say ``algorithm: llm`` sized for a ttft/itl SLO."""
    slo = data.get("slo")
    return (
        data.get("algorithm") is Algorithm.LLM
        and isinstance(slo, Slo)
        and (slo.ttft is not None or slo.itl is not None)
    )


_SHARED_METRICS: weakref.WeakValueDictionary[str, MetricSpec] = weakref.WeakValueDictionary()
"""Metric entries by content: policies written from one template share one immutable object."""


def _shared_metric(metric: MetricSpec) -> MetricSpec:
    """The one instance of a metric entry with this content (entries are immutable).

    A thousand policies with the same metrics held a thousand copies of each entry, its target
    and its preset (and the metric source planned each copy's queries once): one in ten of the
    controller's megabytes at that size.
    """
    key = metric.model_dump_json(by_alias=True)
    shared = _SHARED_METRICS.get(key)
    if shared is None:
        _SHARED_METRICS[key] = shared = metric
    return shared


class PolicySpec(_Model):
    """What to scale, within which bounds, on which metrics, how fast."""

    model_config = ConfigDict(
        json_schema_extra={
            CRD_KEY: {
                "x-kubernetes-validations": [
                    cel_rule(
                        "!has(self.minReplicas) || self.minReplicas > 0 || "
                        "(has(self.algorithm) ? self.algorithm : 'llm') == 'hpa' || "
                        f"({_CEL_ACTIVATION})",
                        NO_ACTIVATION_MESSAGE,
                        ".minReplicas",
                    ),
                    cel_rule(
                        "!has(self.scaleToZero) || (has(self.minReplicas) && "
                        "self.minReplicas == 0 && "
                        "(has(self.algorithm) ? self.algorithm : 'llm') == 'llm')",
                        "scaleToZero applies to algorithm llm with minReplicas 0",
                        ".scaleToZero",
                    ),
                    cel_rule(
                        "!has(self.minReplicas) || self.maxReplicas >= self.minReplicas",
                        "maxReplicas must be greater than or equal to minReplicas",
                        ".maxReplicas",
                    ),
                    cel_rule(
                        "(has(self.metrics) && size(self.metrics) > 0) || "
                        "((has(self.algorithm) ? self.algorithm : 'llm') == 'llm' && "
                        "has(self.slo) && (has(self.slo.ttft) || has(self.slo.itl)))",
                        "give 'slo' (with a ttft or itl objective, algorithm llm) or at least one "
                        "entry in 'metrics': with neither there is nothing to size the fleet on",
                        ".metrics",
                    ),
                    cel_rule(
                        "!has(self.capacity) || ((has(self.algorithm) ? self.algorithm : 'llm') "
                        "== 'llm' && has(self.slo) && (has(self.slo.ttft) || has(self.slo.itl)))",
                        "capacity is the load one replica carries within the SLO: it needs "
                        "algorithm llm and an slo with a ttft or itl objective",
                        ".capacity",
                    ),
                    cel_rule(
                        "!has(self.metrics) || "
                        f"self.metrics.map(m, {_CEL_METRIC_NAME}).all(n, "
                        f"self.metrics.map(m, {_CEL_METRIC_NAME}).exists_one(x, x == n))",
                        "metric names must be unique: give each metrics entry a distinct 'name' "
                        "(a preset without 'name' is named after its kind)",
                        ".metrics",
                    ),
                ]
            }
        }
    )

    scale_target_ref: ScaleTargetRef
    """The object whose ``/scale`` subresource is written."""
    selector: str | None = Field(None, max_length=4096)
    """Pod label selector override (``app=x,tier in (a,b)``); default: from ``/scale``."""
    min_replicas: int = Field(1, ge=0)
    """Lower bound (>= 0). 0 with ``algorithm: llm``: scale to zero after ``scaleToZero.idleFor``
    without a request and back when requests wait (needs an activation signal among the
    metrics); with ``algorithm: hpa``: the HPA's rule (a target at 0 is not scaled)."""
    max_replicas: int = Field(ge=1)
    """Upper bound (>= 1, >= minReplicas)."""
    algorithm: Algorithm = Algorithm.LLM
    """``hpa`` (Kubernetes HPA exactly) or ``llm`` (LLM-aware; default)."""
    slo: Slo | None = None
    """Latency objectives. ``algorithm: llm`` sizes the fleet for them (the capacity model);
    also used by reports, lint and the simulator."""
    capacity: CapacitySeed | None = None
    """Per-replica capacity known in advance (``algorithm: llm`` with ``slo``); learned
    online from the fleet's metrics when absent."""
    metrics: list[MetricSpec] = Field(
        default_factory=list, max_length=MAX_METRICS, validate_default=True
    )
    """Metrics; the largest proposal wins (HPA semantics). With ``algorithm: llm`` and ``slo``
    they are optional: the SLO sizes the fleet and each metric given adds a proposal."""
    behavior: Behavior | None = None
    """Scaling behavior; absent means exactly an HPA without ``behavior``."""
    metric_names: MetricNames = MetricNames.AUTO
    """Metric name family exported by the pods."""
    on_metric_failure: OnMetricFailure = Field(default_factory=OnMetricFailure)
    """Behaviour when no metric gives a signal."""
    llm: LlmOptions = Field(default_factory=LlmOptions)
    """Options of ``algorithm: llm``."""
    mode: PolicyMode = PolicyMode.ACTIVE
    """``active`` (decide and act), ``advisory`` (decide, explain and record, never write
    ``/scale`` or pods) or ``paused`` (no decisions; history kept). The target's
    ``nim-autoscaler.io/mode`` annotation, when set, wins (maintenance)."""
    priority: int = 0
    """Rank in a ``ScalingBudget``: higher priorities are granted GPUs first."""
    gpus_per_replica: int | None = Field(None, ge=0)
    """GPUs one replica uses, for ``ScalingBudget`` accounting while the target has no pods
    (with pods: their ``nvidia.com/gpu`` limits)."""
    scale_to_zero: ScaleToZero | None = None
    """When to scale to zero (``algorithm: llm`` with ``minReplicas: 0``; default
    ``idleFor: 15m`` there)."""

    @model_validator(mode="after")
    def _zero_needs_activation(self) -> PolicySpec:
        if self.min_replicas != 0 or self.algorithm is not Algorithm.LLM:
            if self.scale_to_zero is not None:
                msg = "scaleToZero applies to algorithm llm with minReplicas 0"
                raise PydanticCustomError(
                    "scale_to_zero", "{message}", {"message": msg, "field": "scaleToZero"}
                )
            return self
        if not any(metric.is_activation for metric in self.metrics):
            raise PydanticCustomError(
                "activation_signal",
                "{message}",
                {"message": NO_ACTIVATION_MESSAGE, "field": "minReplicas"},
            )
        return self

    @property
    def idle_for(self) -> float | None:
        """Seconds without a request before scaling to zero (None: the policy never does)."""
        if self.min_replicas != 0 or self.algorithm is not Algorithm.LLM:
            return None
        return self.scale_to_zero.idle_for if self.scale_to_zero else DEFAULT_IDLE_FOR

    @field_validator("max_replicas")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("min_replicas")
        if minimum is not None and value < minimum:
            msg = f"maxReplicas ({value}) must be >= minReplicas ({minimum})"
            raise ValueError(msg)
        return value

    @field_validator("metrics")
    @classmethod
    def _unique_metric_names(
        cls, metrics: list[MetricSpec], info: ValidationInfo
    ) -> list[MetricSpec]:
        if not metrics and "slo" in info.data and not _sizes_on_slo(info.data):
            if info.data.get("algorithm") is Algorithm.HPA:
                msg = "algorithm hpa needs at least one metric"
            else:
                msg = (
                    "give 'slo' (with a ttft or itl objective) or at least one metric: with "
                    "neither there is nothing to size the fleet on"
                )
            raise ValueError(msg)
        seen: dict[str, int] = {}
        for index, metric in enumerate(metrics):
            if metric.name in seen:
                msg = (
                    f"metrics[{index}]: name {metric.name!r} is already used by "
                    f"metrics[{seen[metric.name]}]; give each metric a unique 'name'"
                )
                raise ValueError(msg)
            seen[metric.name] = index
        return [_shared_metric(metric) for metric in metrics]

    @field_validator("capacity")
    @classmethod
    def _capacity_needs_slo(
        cls, value: CapacitySeed | None, info: ValidationInfo
    ) -> CapacitySeed | None:
        if value is not None and not _sizes_on_slo(info.data):
            msg = (
                "a per-replica capacity is the load one replica carries within the SLO; it "
                "needs algorithm llm and an slo with a ttft or itl objective"
            )
            raise ValueError(msg)
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (pydantic's), without the cached metric lists of the original."""
        copy = super().model_copy(update=update, deep=deep)
        for cached in ("signal_metrics", "fetched_metrics"):
            copy.__dict__.pop(cached, None)
        return copy

    @functools.cached_property
    def signal_metrics(self) -> tuple[MetricSpec, ...]:
        """The capacity signals the controller fetches for an ``algorithm: llm`` policy.

        Completions, prompt and generated tokens, requests waiting and running per pod (the
        token rates give the mean request lengths), and the fleet's TTFT and ITL at the
        objectives' quantiles (``spec.slo``, else the latency metrics' quantiles, else p95). They
        feed the capacity model and the SLO sizing (:mod:`autoscaler.decision.slo`); they never
        make a proposal of their own. Empty for ``algorithm: hpa``.
        """
        if self.algorithm is not Algorithm.LLM:
            return ()
        ttft_q, itl_q = 0.95, 0.95
        for metric in self.metrics:
            spec = metric.spec
            if isinstance(spec, LatencyMetricSpec) and spec.statistic == "quantile":
                if metric.kind is MetricKind.TIME_TO_FIRST_TOKEN:
                    ttft_q = spec.quantile
                elif metric.kind is MetricKind.INTER_TOKEN_LATENCY:
                    itl_q = spec.quantile
        if self.slo is not None:
            ttft_q = self.slo.ttft.quantile if self.slo.ttft else ttft_q
            itl_q = self.slo.itl.quantile if self.slo.itl else itl_q
        return _capacity_signals(ttft_q, itl_q)

    @functools.cached_property
    def fetched_metrics(self) -> tuple[MetricSpec, ...]:
        """Every metric the controller fetches: ``metrics`` then :attr:`signal_metrics`."""
        return (*self.metrics, *self.signal_metrics)

    def metric(self, name: str) -> MetricSpec:
        """The metric entry called ``name``."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(name)


@functools.lru_cache(maxsize=64)
def _capacity_signals(ttft_q: float, itl_q: float) -> tuple[MetricSpec, ...]:
    """The capacity signals of ``algorithm: llm`` policies at these quantiles.

    One immutable tuple shared by every policy with the same quantiles: at a thousand policies
    seven model objects each (with their targets) were a tenth of the controller's memory.
    """
    per_pod = {"target": {"type": "AverageValue", "averageValue": 1}}
    documents: list[dict[str, Any]] = [
        {"requestRate": {"name": "__capacity_rate", "window": "1m", **per_pod}},
        {"promptTokenRate": {"name": "__capacity_prompt_tokens", "window": "1m", **per_pod}},
        {
            "generationTokenRate": {
                "name": "__capacity_generation_tokens",
                "window": "1m",
                **per_pod,
            }
        },
        {"queueDepth": {"name": "__capacity_waiting", **per_pod}},
        {"runningRequests": {"name": "__capacity_running", **per_pod}},
        {
            "timeToFirstToken": {
                "name": "__capacity_ttft",
                "quantile": ttft_q,
                "window": "1m",
                "target": {"type": "Value", "value": 1},
            }
        },
        {
            "interTokenLatency": {
                "name": "__capacity_itl",
                "quantile": itl_q,
                "window": "1m",
                "target": {"type": "Value", "value": 1},
            }
        },
    ]
    return tuple(MetricSpec.model_validate(d, context={"signals": True}) for d in documents)


class ScalingPolicy(_Model):
    """A complete policy document."""

    api_version: Literal[
        "autoscaling.nim-autoscaler.io/v1alpha1",
        "nim-autoscaler/v1alpha1",
    ]
    """``autoscaling.nim-autoscaler.io/v1alpha1`` (``nim-autoscaler/v1alpha1`` in older files)."""
    kind: Literal["ScalingPolicy"]
    """Always ``ScalingPolicy``."""
    metadata: Metadata
    """Name and namespace."""
    spec: PolicySpec
    """The policy."""

    @field_validator("api_version", mode="before")
    @classmethod
    def _known_api_version(cls, value: object) -> object:
        if value not in API_VERSIONS:
            msg = f"apiVersion must be {API_VERSION!r}, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: object) -> object:
        if value != KIND:
            hint = ""
            if isinstance(value, str) and value in {
                "HorizontalPodAutoscaler",
                "NIMService",
                "ScaledObject",
            }:
                hint = f"; convert a {value} with 'nim-autoscaler import'"
            msg = f"kind must be {KIND!r}, got {value!r}{hint}"
            raise ValueError(msg)
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (pydantic's), without the cached key of the original."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("key", None)
        return copy

    @functools.cached_property
    def key(self) -> str:
        """``namespace/name``: the policy's identity in the controller (read many times a
        tick: computed once, the model is frozen)."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
