"""PromQL of the gateway presets (``gatewayQueue``, ``gatewayRequestRate``).

The Gateway API Inference Extension (GIE) endpoint picker (EPP) sits in front of the model
servers; its series exist while no pod of the target runs, which makes them activation signals
for ``minReplicas: 0``. Names, from the GIE source (``pkg/epp/metrics/metrics.go``) and its
guides (``site-src/guides/flow-control.md``, "Autoscaling: KEDA and Scale-to-Zero";
``site-src/guides/metrics-and-observability.md``):

* ``inference_extension_flow_control_queue_size`` (gauge; labels ``fairness_id``, ``priority``,
  ``inference_pool``, ``model_name``, ``target_model_name``): requests held in the EPP's
  flow-control queue. llm-d's EPP exports it as ``llm_d_epp_flow_control_queue_size`` (the
  ``inference_extension_`` name is deprecated there); both are read, the llm-d name first.
* ``inference_objective_request_total`` (counter; labels ``model_name``, ``target_model_name``):
  requests received per model. Earlier GIE releases call it ``inference_model_request_total``;
  llm-d ``llm_d_epp_request_total``.
* ``inference_extension_info`` (gauge): present whenever the EPP is scraped. An EPP that is up but
  holds no queue or request series for the model reads 0 through it; an EPP that is not scraped
  gives an empty result, which is no signal, never 0.

Each family is tried in order with PromQL ``or`` (the first present wins: an EPP exporting both
a name and its deprecated alias is not counted twice). Used by :mod:`.prometheus`.
"""

from __future__ import annotations

from autoscaler.policy.models import GatewayMetricSpec, MetricKind
from autoscaler.promql import format_duration, string_literal

QUEUE_SERIES = ("llm_d_epp_flow_control_queue_size", "inference_extension_flow_control_queue_size")
"""Flow-control queue gauges, in preference order."""
REQUEST_SERIES = (
    "llm_d_epp_request_total",
    "inference_objective_request_total",
    "inference_model_request_total",
)
"""Request counters, in preference order."""
EPP_INFO = "inference_extension_info"
"""The EPP's build-info gauge: present while the EPP is scraped."""


def gateway_query(kind: MetricKind, spec: GatewayMetricSpec, namespace: str) -> str:
    """The PromQL of a gateway preset: one series for the whole target.

    Args:
        kind: ``gatewayQueue`` or ``gatewayRequestRate``.
        spec: The preset's fields (pool, model, namespace, window).
        namespace: The policy's namespace (used when ``spec.namespace`` is not given).

    Returns:
        The query (its result: requests held, or requests/second).
    """
    ns = spec.namespace or namespace
    matchers = [f"namespace={string_literal(ns)}"]
    if spec.pool is not None:
        matchers.append(f"inference_pool={string_literal(spec.pool)}")
    if spec.model is not None:
        matchers.append(f"model_name={string_literal(spec.model)}")
    selector = "{" + ",".join(matchers) + "}"
    if kind is MetricKind.GATEWAY_QUEUE:
        parts = [f"sum({name}{selector})" for name in QUEUE_SERIES]
    elif kind is MetricKind.GATEWAY_REQUEST_RATE:
        window = format_duration(spec.window)
        parts = [f"sum(rate({name}{selector}[{window}]))" for name in REQUEST_SERIES]
    else:
        msg = f"{kind.value} is not a gateway preset"
        raise ValueError(msg)
    alive = f"(0 * max({EPP_INFO}{{namespace={string_literal(ns)}}}))"
    return " or ".join([*parts, alive])
