"""Emulated NIM/vLLM pod exporters with values the test controls.

* :class:`EmulatedPod`: one pod = one HTTP server exposing a ``prometheus_client``
  ``CollectorRegistry`` of its own on 127.0.0.1, exposing the chosen name family (``nim``, ``vllm``,
  ``vllm-legacy``) with the real histogram bucket boundaries (``serving.md`` section 2). Prometheus
  attaches ``namespace``/``pod`` as target labels, as Kubernetes service discovery would.
* :class:`FleetExporter`: one HTTP server exposing the series of many pods, each carrying its own
  ``namespace``/``pod`` labels in the exposition (scraped with ``honor_labels: true``, as a
  federation endpoint would be). This is how 10,000 pods are emulated without 10,000 servers.
  Counters and histograms grow linearly in time from per-pod rates, so ``rate()`` is exact.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

from autoscaler.metrics.names import bucket_bounds, metric_name
from autoscaler.policy.models import LATENCY_KINDS, MetricKind, MetricNames

GAUGE_KINDS = (MetricKind.KV_CACHE, MetricKind.QUEUE_DEPTH, MetricKind.RUNNING_REQUESTS)
MODEL = "meta/llama-3.1-8b-instruct"


def _family(family: str | MetricNames) -> MetricNames:
    value = MetricNames(family)
    if value is MetricNames.AUTO:
        msg = "an emulated pod exports one concrete family, not 'auto'"
        raise ValueError(msg)
    return value


class EmulatedPod:
    """One emulated NIM/vLLM pod: a ``prometheus_client`` server on 127.0.0.1.

    Args:
        namespace: Value of the ``namespace`` target label.
        pod: Value of the ``pod`` target label.
        family: Metric-name family to export.
        negotiate: Serve with ``prometheus_client``'s own server, which negotiates OpenMetrics
            with Prometheus and then (``prometheus_client`` 0.26) writes ``vllm:x`` as
            ``vllm_x``, as a vLLM built on a recent client does.
    """

    def __init__(
        self,
        namespace: str,
        pod: str,
        family: str | MetricNames = "nim",
        *,
        negotiate: bool = False,
    ) -> None:
        self.namespace = namespace
        self.negotiate = negotiate
        self.pod = pod
        self.family = _family(family)
        self.registry = CollectorRegistry()
        self._gauges: dict[MetricKind, Any] = {}
        self._histograms: dict[MetricKind, Any] = {}
        for kind in GAUGE_KINDS:
            name = metric_name(kind, self.family)
            self._gauges[kind] = Gauge(
                name, f"emulated {kind.value}", ["model_name"], registry=self.registry
            ).labels(model_name=MODEL)
        counter_name = metric_name(MetricKind.REQUEST_RATE, self.family).removesuffix("_total")
        self._success = Counter(
            counter_name,
            "emulated finished requests",
            ["model_name", "finished_reason"],
            registry=self.registry,
        )
        # Both children exist from the start, as in vLLM (zero until requests finish).
        self._success_children = {
            reason: self._success.labels(model_name=MODEL, finished_reason=reason)
            for reason in ("stop", "length")
        }
        self._tokens = {
            kind: Counter(
                metric_name(kind, self.family).removesuffix("_total"),
                f"emulated {kind.value}",
                ["model_name"],
                registry=self.registry,
            ).labels(model_name=MODEL)
            for kind in (MetricKind.PROMPT_TOKEN_RATE, MetricKind.GENERATION_TOKEN_RATE)
        }
        for kind in sorted(LATENCY_KINDS):
            self._histograms[kind] = Histogram(
                metric_name(kind, self.family),
                f"emulated {kind.value}",
                ["model_name"],
                buckets=(*bucket_bounds(kind, self.family), float("inf")),
                registry=self.registry,
            ).labels(model_name=MODEL)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` (after :meth:`start`)."""
        assert self.port is not None, "start() the pod first"
        return f"127.0.0.1:{self.port}"

    @property
    def labels(self) -> dict[str, str]:
        """Target labels for the scrape config."""
        return {"namespace": self.namespace, "pod": self.pod}

    def start(self, port: int | None = None) -> str:
        """Serve ``/metrics``; ``port`` reuses a previous port (restart). Returns the address.

        The exposition is always the classic text format (``generate_latest``), as vLLM and NIM
        serve it to Prometheus 2.x: recent ``prometheus_client`` versions answer an OpenMetrics
        ``Accept`` header with colons escaped to underscores (``vllm_kv_cache_usage_perc``).
        """
        registry = self.registry
        bind_port = port if port is not None else (self.port or 0)
        if self.negotiate:
            negotiating, thread = start_http_server(bind_port, addr="127.0.0.1", registry=registry)
            self._server, self._thread = negotiating, thread
            self.port = int(negotiating.server_port)
            return self.address

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        server = ThreadingHTTPServer(("127.0.0.1", bind_port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        return self.address

    def stop(self) -> None:
        """Stop serving (the port stays recorded for a restart)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def set(self, kind: MetricKind, value: float) -> None:
        """Set a gauge preset (kvCache, queueDepth, runningRequests)."""
        self._gauges[kind].set(value)

    def observe(self, kind: MetricKind, values: Iterable[float]) -> None:
        """Record latency observations (seconds) in a histogram preset."""
        histogram = self._histograms[kind]
        for value in values:
            histogram.observe(value)

    def finish_requests(
        self, count: int, reason: str = "stop", prompt: int = 0, generated: int = 0
    ) -> None:
        """Count finished requests (``request_success_total``) and the prompt and generated
        tokens they processed (``prompt_tokens_total``, ``generation_tokens_total``)."""
        self._success_children[reason].inc(count)
        self._tokens[MetricKind.PROMPT_TOKEN_RATE].inc(prompt)
        self._tokens[MetricKind.GENERATION_TOKEN_RATE].inc(generated)


@dataclass
class FleetPod:
    """State of one pod in a :class:`FleetExporter`; edit it directly between scrapes."""

    namespace: str
    pod: str
    gauges: dict[MetricKind, float] = field(default_factory=dict)
    request_rate: float = 0.0
    """Finished requests per second."""
    bucket_rates: dict[MetricKind, Sequence[float]] = field(default_factory=dict)
    """Per latency preset: observations per second in each bucket (non-cumulative, the last
    one being the +Inf bucket), aligned with the family's bucket bounds."""
    extra_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class _Totals:
    """Accumulated counters of one fleet pod."""

    requests: float = 0.0
    buckets: dict[MetricKind, list[float]] = field(default_factory=dict)
    """Non-cumulative bucket counts."""
    sums: dict[MetricKind, float] = field(default_factory=dict)

    def copy(self) -> _Totals:
        return _Totals(
            self.requests, {k: list(v) for k, v in self.buckets.items()}, dict(self.sums)
        )


def _escape_label(value: str) -> str:
    """Escape a label value for the Prometheus text exposition format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class FleetExporter:
    """Many pods' series from one HTTP server (``pod``/``namespace`` labels in the exposition).

    Args:
        family: Metric-name family.
        kinds: Presets to expose (default: all).
    """

    def __init__(
        self, family: str | MetricNames = "nim", kinds: Sequence[MetricKind] | None = None
    ) -> None:
        self.family = _family(family)
        self.kinds = (
            tuple(kinds)
            if kinds is not None
            else (*GAUGE_KINDS, MetricKind.REQUEST_RATE, *sorted(LATENCY_KINDS))
        )
        self.pods: dict[tuple[str, str], FleetPod] = {}
        self._lock = threading.Lock()
        self._t0 = time.time()
        self._totals: dict[tuple[str, str], _Totals] = {}
        self._last = self._t0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.scrapes = 0

    def add(self, pod: FleetPod) -> FleetPod:
        """Add (or replace) a pod."""
        with self._lock:
            self.pods[(pod.namespace, pod.pod)] = pod
        return pod

    def remove(self, namespace: str, pod: str) -> None:
        """Remove a pod (its series disappear from the next scrape)."""
        with self._lock:
            self.pods.pop((namespace, pod), None)
            self._totals.pop((namespace, pod), None)

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        assert self.port is not None, "start() the exporter first"
        return f"127.0.0.1:{self.port}"

    def _advance(self, now: float) -> None:
        """Accumulate counters over the time since the last scrape at the current rates."""
        dt = max(0.0, now - self._last)
        self._last = now
        for key, pod in self.pods.items():
            totals = self._totals.get(key)
            if totals is None:
                totals = self._totals[key] = _Totals()
            totals.requests += pod.request_rate * dt
            for kind, rates in pod.bucket_rates.items():
                mids = self._midpoints(kind)
                counts = totals.buckets.get(kind)
                if counts is None:
                    counts = totals.buckets[kind] = [0.0] * len(rates)
                for index, rate in enumerate(rates):
                    counts[index] += rate * dt
                # _sum: observations of bucket i counted at the bucket's midpoint.
                totals.sums[kind] = totals.sums.get(kind, 0.0) + dt * sum(
                    rate * mid for rate, mid in zip(rates, mids, strict=False)
                )

    def _midpoints(self, kind: MetricKind) -> list[float]:
        bounds = bucket_bounds(kind, self.family)
        edges = [0.0, *bounds, bounds[-1] * 2]
        return [(edges[i] + edges[i + 1]) / 2 for i in range(len(bounds) + 1)]

    def render(self) -> bytes:
        """The text exposition of every pod at this instant."""
        out: list[str] = []
        with self._lock:
            self._advance(time.time())
            pods = list(self.pods.values())
            totals = {key: value.copy() for key, value in self._totals.items()}
        for kind in self.kinds:
            name = metric_name(kind, self.family)
            if kind in GAUGE_KINDS:
                out.append(f"# TYPE {name} gauge")
                out.extend(
                    f"{name}{{{self._labels(pod)}}} {pod.gauges[kind]!r}"
                    for pod in pods
                    if kind in pod.gauges
                )
            elif kind is MetricKind.REQUEST_RATE:
                out.append(f"# TYPE {name} counter")
                for pod in pods:
                    pod_totals = totals.get((pod.namespace, pod.pod))
                    value = pod_totals.requests if pod_totals else 0.0
                    out.append(f"{name}{{{self._labels(pod)}}} {value!r}")
            else:
                les = [f'le="{bound!r}"' for bound in bucket_bounds(kind, self.family)]
                les.append('le="+Inf"')
                out.append(f"# TYPE {name} histogram")
                for pod in pods:
                    if kind not in pod.bucket_rates:
                        continue
                    pod_totals = totals.get((pod.namespace, pod.pod))
                    counts = pod_totals.buckets.get(kind, []) if pod_totals else []
                    labels = self._labels(pod)
                    cumulative = 0.0
                    for index, le in enumerate(les):
                        cumulative += counts[index] if index < len(counts) else 0.0
                        out.append(f"{name}_bucket{{{labels},{le}}} {cumulative!r}")
                    out.append(f"{name}_count{{{labels}}} {cumulative!r}")
                    total = pod_totals.sums.get(kind, 0.0) if pod_totals else 0.0
                    out.append(f"{name}_sum{{{labels}}} {total!r}")
        out.append("")
        return "\n".join(out).encode()

    @staticmethod
    @functools.lru_cache(maxsize=65536)
    def _label_text(namespace: str, pod: str, extra: tuple[tuple[str, str], ...]) -> str:
        labels: Mapping[str, str] = {"namespace": namespace, "pod": pod, "model_name": MODEL}
        labels = {**labels, **dict(extra)}
        return ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())

    @staticmethod
    def _labels(pod: FleetPod) -> str:
        return FleetExporter._label_text(
            pod.namespace, pod.pod, tuple(sorted(pod.extra_labels.items()))
        )

    def start(self) -> str:
        """Serve ``/metrics`` on 127.0.0.1 (a free port). Returns the address."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render()
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port or 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
