"""Prometheus exposition of the simulated pods, served over HTTP (real-time mode).

:func:`render` writes every live pod's metrics in the Prometheus text format, one series per pod
with a ``pod`` label (scrape it with ``honor_labels: true``), under NIM names (unprefixed, V0
bucket lists) or vLLM names (``vllm:``, V1 buckets). :class:`ExpositionServer` serves it at
``/metrics`` with aiohttp while :func:`autoscaler.sim.run.run_simulation_async` paces the
simulation against the wall clock, so a real Prometheus (and a controller reading it) can be
pointed at a simulated fleet for end-to-end tests; the gateway's series (GIE endpoint-picker
names: requests held while no replica is ready, requests received) come with them, so the gateway
presets work too. Reads :mod:`autoscaler.sim.fleet` state.
"""

from __future__ import annotations

import math

import structlog
from aiohttp import web

from autoscaler.sim.cluster import PodState
from autoscaler.sim.engine import E2E_BUCKETS, ITL_BUCKETS, TTFT_BUCKETS, Histogram
from autoscaler.sim.fleet import Fleet
from autoscaler.sim.metrics import NIM_E2E_BUCKETS, NIM_ITL_BUCKETS, NIM_TTFT_BUCKETS

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAMES = {
    "nim": {
        "running": "num_requests_running",
        "waiting": "num_requests_waiting",
        "kv": "gpu_cache_usage_perc",
        "prompt": "prompt_tokens",
        "generation": "generation_tokens",
        "success": "request_success",
        "preemptions": "num_preemptions",
        "ttft": "time_to_first_token_seconds",
        "itl": "time_per_output_token_seconds",
        "e2e": "e2e_request_latency_seconds",
    },
    "vllm": {
        "running": "vllm:num_requests_running",
        "waiting": "vllm:num_requests_waiting",
        "kv": "vllm:kv_cache_usage_perc",
        "prompt": "vllm:prompt_tokens",
        "generation": "vllm:generation_tokens",
        "success": "vllm:request_success",
        "preemptions": "vllm:num_preemptions",
        "ttft": "vllm:time_to_first_token_seconds",
        "itl": "vllm:inter_token_latency_seconds",
        "e2e": "vllm:e2e_request_latency_seconds",
    },
}


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _histogram_lines(
    name: str, labels: str, hist: Histogram, bounds: tuple[float, ...]
) -> list[str]:
    cumulative = hist.cumulative()
    index = {b: i for i, b in enumerate(hist.bounds)}
    lines = [f'{name}_bucket{{{labels},le="{_fmt(b)}"}} {cumulative[index[b]]}' for b in bounds]
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {cumulative[-1]}')
    lines.append(f"{name}_sum{{{labels}}} {_fmt(hist.total)}")
    lines.append(f"{name}_count{{{labels}}} {hist.count}")
    return lines


def render(
    fleet: Fleet, *, flavor: str = "nim", namespace: str = "default", model: str = "sim"
) -> str:
    """The exposition text of every pod serving (ready or draining) at the fleet's time."""
    names = _NAMES[flavor]
    if flavor == "nim":
        bounds = {"ttft": NIM_TTFT_BUCKETS, "itl": NIM_ITL_BUCKETS, "e2e": NIM_E2E_BUCKETS}
    else:
        bounds = {"ttft": TTFT_BUCKETS, "itl": ITL_BUCKETS, "e2e": E2E_BUCKETS}
    serving = [
        p
        for p in fleet.pods
        if p.replica is not None and p.state in (PodState.READY, PodState.TERMINATING)
    ]
    families: dict[str, tuple[str, list[str]]] = {}

    def add(key: str, kind: str, lines: list[str]) -> None:
        # Counters are declared under their exposed name (``..._total``), as prometheus_client
        # writes them in the 0.0.4 text format.
        name = names[key] + "_total" if kind == "counter" else names[key]
        families.setdefault(name, (kind, []))[1].extend(lines)

    for pod in serving:
        replica = pod.replica
        assert replica is not None
        replica.sync(fleet.now)
        labels = f'namespace="{namespace}",pod="{pod.name}",model_name="{model}"'
        add("running", "gauge", [f"{names['running']}{{{labels}}} {len(replica.running)}"])
        add("waiting", "gauge", [f"{names['waiting']}{{{labels}}} {len(replica.waiting)}"])
        add("kv", "gauge", [f"{names['kv']}{{{labels}}} {_fmt(replica.kv_usage())}"])
        for key, value in (
            ("prompt", replica.prompt_tokens),
            ("generation", replica.generation_tokens),
            ("success", replica.success),
            ("preemptions", replica.preemptions_total),
        ):
            add(key, "counter", [f"{names[key]}_total{{{labels}}} {value}"])
        for key, hist in (
            ("ttft", replica.ttft_hist),
            ("itl", replica.itl_hist),
            ("e2e", replica.e2e_hist),
        ):
            add(key, "histogram", _histogram_lines(names[key], labels, hist, bounds[key]))
    out: list[str] = []
    for name, (kind, lines) in families.items():
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    out.extend(_gateway_lines(fleet, namespace, model))
    return "\n".join(out) + "\n"


def _gateway_lines(fleet: Fleet, namespace: str, model: str) -> list[str]:
    """The gateway in front of the fleet, as the GIE endpoint picker exports it: requests held
    while no replica is ready (pool = the Deployment), requests received, build info."""
    ns = f'namespace="{namespace}"'
    pool = f'{ns},inference_pool="{fleet.deployment}",model_name="{model}"'
    return [
        "# TYPE inference_extension_flow_control_queue_size gauge",
        f'inference_extension_flow_control_queue_size{{{pool},priority="0"}} {fleet.held}',
        "# TYPE inference_objective_request_total counter",
        f'inference_objective_request_total{{{ns},model_name="{model}",'
        f'target_model_name="{model}"}} {fleet.arrived}',
        "# TYPE inference_extension_info gauge",
        f'inference_extension_info{{{ns},commit="sim",build_ref="sim"}} 1',
    ]


class ExpositionServer:
    """One aiohttp server exposing every simulated pod at ``/metrics`` (``pod`` label)."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        flavor: str = "nim",
        namespace: str = "default",
        model: str = "sim",
    ) -> None:
        self.fleet = fleet
        self.host = host
        self.port = port
        self.flavor = flavor
        self.namespace = namespace
        self.model = model
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        del request
        body = render(self.fleet, flavor=self.flavor, namespace=self.namespace, model=self.model)
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> int:
        """Start serving; returns the bound port (useful with ``port=0``)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("serving simulated pod metrics", host=self.host, port=self.port)
        return self.port

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
