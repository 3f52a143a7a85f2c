"""Benchmark of the whole controller's cost per tick: 10, 100 and 1,000 policies of 10 pods.

Everything real except the cluster and the pods:

* a real Prometheus (``tests.promserver``) scraping one fleet exporter that emulates every pod
  (:mod:`benchmarks.support.fleetenv`, in a child process, ``honor_labels``, shared with
  :mod:`benchmarks.bench_metrics`);
* the fake Kubernetes API server (:mod:`benchmarks.support.kubeproc`, a child process): one
  Deployment with ``/scale`` and 10 Running, Ready pods per policy;
* the controller as ``nim-autoscaler run`` assembles it (:func:`autoscaler.app.build_controller`:
  policy directory with one file per policy, Prometheus source, kubernetes-asyncio adapters with
  a cluster-wide pod watch, Events/status recorder, history ConfigMap), leader election off,
  JSON logs at ``info`` (to /dev/null), in **its own child process** per size, so its CPU time
  and memory are its own and each size starts from a fresh interpreter.

Per size: start watches, wait for the pod cache, then give every policy the decision history
of a controller that has been running (:func:`_fast_forward`: the ten minutes of past ticks its
longest window keeps, at those past times, on the metrics one real fetch observed), two warm-up
ticks (name-detection probe, connections), then several measured ticks, started
``TICK_SPACING`` (15 s, the controller's default interval) apart: the history ConfigMaps are
rewritten as often per tick as in production, and Prometheus's periodic work (the recording
rule group every 15 s, the fleet's scrape every 20 s) falls on the ticks as on a controller at
its own pace. As the runner does (:func:`autoscaler.controller.runner.aligned`), ticks that read
recorded series start just after their rule group has evaluated (the group's timing is read
from ``/api/v1/rules`` with the recording-rule probe); each tick records how long after.
Each measured tick is the runner's work
(``feed.refresh()`` then ``loop.tick(now)``): wall time, the process's CPU time
(``time.process_time``: all threads, including the Prometheus client's worker threads), PromQL
queries counted at Prometheus (its own ``prometheus_http_requests_total{handler="/api/v1/query"}``),
Kubernetes requests counted at the fake API server, and resident memory (``VmRSS``/``VmHWM``).

Each policy has the four metrics of ``bench_metrics`` (kvCache, queueDepth, requestRate 2 m,
p95 inter-token latency 2 m; quick runs: 30 s windows) with targets equal to the emulated load,
so the steady state makes no scale writes: the figures are the cost of watching, not of acting.
Nothing is measured before every pod's series cover a whole rate window
(:mod:`benchmarks.support.fleetenv`; in a ``python -m benchmarks`` run the fleet and its
Prometheus are shared with ``bench_metrics`` and warm up while other benchmarks run).

Goals (issue 17), at 1,000 policies x 10 pods: controller CPU per tick <= 0.5 s, tick wall time
<= 1 s with recording rules (reported without them), peak RSS <= 150 MB, Kubernetes requests per
steady tick <= 10.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.support import fleetenv, layout, procstat
from benchmarks.support.kubeproc import KubeProcess, request_log

RESULTS = Path(__file__).resolve().parent / "results" / "controller.json"
WARMUP_TICKS = 2
TICKS = 8
FEW_TICKS = 3
"""Measured ticks at the smaller sizes and in quick runs (``TICKS`` at the largest: 8 ticks
15 s apart span two minutes, eight rule-group evaluations and six scrapes; a full ``make bench``
stays within its 30 minutes)."""
TICK_SPACING = 15.0
"""Seconds from one measured tick's start to the next (at least 0.5 s between them): the
controller's default interval, so that the history ConfigMaps are rewritten as often per tick
as in production (each every 60 s), and Prometheus's periodic work (the chart's rule group every
15 s, the fleet's scrape every 20 s) falls on the ticks as on a controller at its own pace."""
QUICK_SPACING = 3.0
"""Quick runs (a smoke test of the smaller sizes, no goal judged): ticks 3 s apart."""
HISTORY_SECONDS = 600.0
"""Past ticks replayed before measuring (:func:`_fast_forward`): the longest window a decision
history keeps."""
SCALE_TICKS = 5
"""Measured ticks at 10,000 policies (each 8-25 s: Prometheus's periodic work is spread
already)."""
INTERVAL = 60.0
"""Controller interval: sets the phase budgets (metric fetch: 60 % of it), not the pace here."""
MEASURE_BUDGET = 480.0
"""Seconds of measured ticks per size at most (at least one tick is always measured)."""
PROMETHEUS_TIMEOUT = 20.0
"""Per-query timeout: large enough that the 1,000-policy queries are not cut."""

POLICY_BODY = """\
  minReplicas: 1
  maxReplicas: 100
  metrics:
    - kvCache: {{target: {{type: AverageValue, averageValue: 0.275}}}}
    - queueDepth: {{target: {{type: AverageValue, averageValue: 4.5}}}}
    - requestRate: {{window: {window}, target: {{type: AverageValue, averageValue: 5.5}}}}
    - interTokenLatency: {{quantile: 0.95, window: {window}, target: {{type: Value, value: 0.2}}}}
"""
"""Targets equal to the fleet's averages (kv 0.05..0.5, queue 0..9, 1..10 req/s per pod);
``{window}``: the rate window (:func:`benchmarks.support.fleetenv.window`)."""


def sizes(quick: bool) -> list[int]:
    """Policy counts measured."""
    return [10, 100] if quick else [10, 100, 1000]


def fleet_policies(quick: bool) -> int:
    """Policies of the emulated fleet this benchmark needs (``python -m benchmarks`` shares it)."""
    return sizes(quick)[-1]


_QUERY_RE = re.compile(
    r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query"[^}]*\}\s+(\S+)'
)


def _prometheus_queries(url: str) -> int:
    """Instant queries Prometheus has answered so far (its own counter, all status codes)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310 - fixed http URL on 127.0.0.1
        text = response.read().decode()
    return int(sum(float(m.group(1)) for m in map(_QUERY_RE.match, text.splitlines()) if m))


def _kind(method: str, path: str) -> str:
    """A short name of a Kubernetes request: ``GET deployments/scale``, ``WATCH pods``..."""
    base, _, query = path.partition("?")
    parts = [p for p in base.split("/") if p]
    if "namespaces" in parts:
        index = parts.index("namespaces")
        parts = parts[:index] + parts[index + 2 :]
    # /api/v1/<plural>[/name[/sub]] or /apis/<group>/<version>/<plural>[/name[/sub]]
    rest = parts[2:] if parts and parts[0] == "api" else parts[3:]
    if not rest:
        return f"{method} discovery"
    plural = rest[0]
    sub = f"/{rest[2]}" if len(rest) > 2 else ""
    if method == "GET" and "watch=true" in query:
        return f"WATCH {plural}"
    if method == "GET" and len(rest) == 1:
        return f"LIST {plural}"
    return f"{method} {plural}{sub}"


def _measure_child(config: dict[str, Any], conn: Any) -> None:
    """Child process: build the controller, tick, send the measurements back."""
    rss_start = procstat.memory_mb()["VmRSS"]
    from autoscaler.app import build_controller  # noqa: F401 - imported here to measure its RSS
    from autoscaler.observability.logging import configure_logging

    rss_imported = procstat.memory_mb()["VmRSS"]
    try:
        with Path(os.devnull).open("w", encoding="utf-8") as sink:
            configure_logging("json", "info", stream=sink)
            result = asyncio.run(_measure(config))
        result["rss_mb"] = {
            "interpreter": rss_start,
            "after_imports": rss_imported,
            **result["rss_mb"],
        }
        conn.send(result)
    except Exception as exc:  # reported by the parent with its message
        barrier = config.get("barrier")
        if barrier is not None:
            barrier.abort()  # the other replicas stop waiting for this one
        import traceback

        conn.send({"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"})
    finally:
        conn.close()


async def _measure(config: dict[str, Any]) -> dict[str, Any]:
    from autoscaler.app import build_controller
    from autoscaler.controller.runner import aligned
    from autoscaler.decision.types import PodSamples, TargetSample
    from autoscaler.kube.shards import ShardManager
    from autoscaler.settings import Settings

    shards = int(config.get("shards", 1))
    settings = Settings(
        prometheus_url=config["prometheus"],
        prometheus_timeout=PROMETHEUS_TIMEOUT,
        policy_dir=Path(config["policy_dir"]),
        interval=INTERVAL,
        kubeconfig=Path(config["kubeconfig"]),
        leader_election=shards > 1,
        leader_election_namespace="nim-autoscaler",
        shards=shards,
        identity=str(config.get("identity", "bench")),
        # The fake API server is one Python process without API Priority and Fairness (which
        # gives Lease traffic its own priority level in a real cluster): a tick's burst of
        # 10,000 status PATCHes queues the renewals for tens of seconds. Longer Leases keep the
        # split stable through those bursts.
        **(SHARDED_LEASE if shards > 1 else {}),
        metrics_port=0,
        log_format="json",
        log_level="info",
    )
    barrier = config.get("barrier")
    kube_pid = int(config["kube_pid"])
    kube_url = str(config["kube_url"])

    controller = await build_controller(settings)
    started = time.perf_counter()
    await controller.start()
    synced = await controller.kube.pods.wait_synced(within=300.0)
    sync_seconds = time.perf_counter() - started
    if not synced:
        msg = "pod cache not synced after 300 s"
        raise RuntimeError(msg)
    rss_synced = procstat.memory_mb()["VmRSS"]
    try:
        if shards > 1:
            await _wait_for_share(controller, shards, int(config["replicas"]))
        if barrier is not None:
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
        history_ticks = await _fast_forward(controller, float(config.get("history_seconds", 0.0)))
        for _ in range(WARMUP_TICKS):
            controller.feed.refresh()
            await controller.loop.tick(time.time())
            await asyncio.sleep(0.5)
        if barrier is not None:  # the replicas' measured ticks overlap
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
        ticks: list[dict[str, Any]] = []
        kinds_total: Counter[str] = Counter()
        measure_until = time.monotonic() + config["budget_seconds"]
        spacing = float(config.get("spacing", TICK_SPACING))
        # The runner's rhythm (autoscaler.controller.runner): ticks ``spacing`` apart, moved
        # once onto the phase of the recording rule group they read, if any.
        phase = controller.metrics.tick_phase if settings.align_to_rules else (lambda: None)
        next_at = aligned(time.time() + 0.5, spacing, phase(), time.time())
        await asyncio.sleep(max(0.0, next_at - time.time()))
        for _ in range(config["ticks"]):
            if ticks and time.monotonic() > measure_until:
                break  # bounded in time: fewer ticks at very large sizes (recorded)
            tick_phase = phase()
            kube_before, _ = request_log(kube_url, 10**12)
            kube_cpu_before = procstat.cpu_seconds(kube_pid)
            prom_before = _prometheus_queries(config["prometheus"])
            cpu0, wall0 = time.process_time(), time.perf_counter()
            controller.feed.refresh()
            cpu1, wall1 = time.process_time(), time.perf_counter()
            start = time.time()
            results = await controller.loop.tick(start)
            cpu2, wall2 = time.process_time(), time.perf_counter()
            prom_after = _prometheus_queries(config["prometheus"])
            _, requests = request_log(kube_url, kube_before)
            kube_cpu = procstat.cpu_seconds(kube_pid) - kube_cpu_before
            kinds = Counter(_kind(method, path) for _, method, path, _ in requests)
            conflicts = Counter(
                _kind(method, path) for _, method, path, status in requests if status == 409
            )
            # The open pod watch is one long request: it started before this tick.
            kinds_total.update(kinds)
            stats = controller.metrics.last_stats
            outcomes = Counter(r.outcome.value for r in results)
            owned = [r for r in results if r.outcome.value != "not_leader"]
            valid = sum(
                1
                for r in results
                if r.observation is not None
                for obs in r.observation.metrics.values()
                if isinstance(obs, PodSamples | TargetSample)
            )
            ticks.append(
                {
                    "wall_seconds": round(wall2 - wall0, 4),
                    "cpu_seconds": round(cpu2 - cpu0, 4),
                    "refresh_wall_seconds": round(wall1 - wall0, 4),
                    "refresh_cpu_seconds": round(cpu1 - cpu0, 4),
                    "fetch_seconds": round(stats.seconds, 4) if stats else None,
                    "slowest_query_seconds": (
                        round(stats.slowest_query_seconds, 4) if stats else None
                    ),
                    "queries_client": stats.queries if stats else None,
                    "name_probe_queries": stats.probe_queries if stats else 0,
                    "rules_probe_queries": stats.rules_probe_queries if stats else 0,
                    "recorded_batch_queries": stats.recorded_batch_queries if stats else 0,
                    "queries_at_prometheus": prom_after - prom_before,
                    "kube_requests": len(requests),
                    "kube_requests_by_kind": dict(sorted(kinds.items())),
                    "kube_409_conflicts_by_kind": dict(sorted(conflicts.items())),
                    "kube_server_cpu_seconds": round(kube_cpu, 3),
                    "outcomes": dict(outcomes),
                    "policies_owned": len(owned),
                    "valid_metrics": valid,
                    # Seconds from the rule group's values being ready to this tick's start
                    # (None: no phase; ticks keep their own).
                    "after_rules_ready_seconds": (
                        round((start - tick_phase.ready) % tick_phase.period, 3)
                        if tick_phase is not None
                        else None
                    ),
                }
            )
            del results, owned  # as the runner: not alive beside the next tick's
            nominal, now = next_at + spacing, time.time()
            next_at = aligned(nominal, spacing, phase(), now)
            next_at = max(next_at, now + 0.5)  # at least 0.5 s apart (after an overrun: that)
            await asyncio.sleep(next_at - now)
        # The pod-cache lookups of one tick on their own (step 3 of a tick; no I/O).
        lookup_started = time.perf_counter()
        for policy in controller.feed.policies():
            controller.kube.pods.pods(policy.metadata.namespace, f"app={policy.metadata.name}")
        lookup_seconds = time.perf_counter() - lookup_started
        if barrier is not None:  # the ownership of every replica, seen while all still run
            await asyncio.to_thread(barrier.wait, BARRIER_TIMEOUT)
        counter = controller.registry.get_sample_value("nim_autoscaler_prometheus_queries_total")
        owned_shards = (
            sorted(controller.kube.leader.owned())
            if isinstance(controller.kube.leader, ShardManager)
            else None
        )
        memory = procstat.memory_mb()
    finally:
        await controller.close()
    return {
        "ticks": ticks,
        "history_ticks": history_ticks,
        "pod_cache_sync_seconds": round(sync_seconds, 3),
        "pod_cache_lookups_seconds_all_policies": round(lookup_seconds, 4),
        "rss_mb": {
            "after_pod_cache_sync": rss_synced,
            "after_ticks": memory["VmRSS"],
            "peak": memory["VmHWM"],
            "ru_maxrss": procstat.maxrss_mb(),
        },
        "prometheus_queries_counter": counter,
        "kube_requests_by_kind_total": dict(sorted(kinds_total.items())),
        "shards_owned": owned_shards,
    }


async def _fast_forward(controller: Any, seconds: float) -> int:
    """Give every policy the decision history of a controller that has run for a while.

    A policy's history keeps windows of past ticks (the SLO sizing's arrivals over 10 minutes,
    the HPA's scale-down stabilization over 5) whose cost per tick grows with them, and a
    history ConfigMap is rewritten every ``history_save_interval``: fresh from start-up, a
    few ticks cost less than every later one. So ``seconds`` of past ticks, one every
    ``TICK_SPACING``, are run first at those past times (the fleet was already there: pods
    ready for an hour), each reading the metrics one real fetch observed just now, their
    sample times moved back by as much. Returns the number of ticks run (0: ``seconds`` <= 0).
    """
    from dataclasses import replace

    from autoscaler.decision.types import PodSamples, TargetSample

    source = controller.metrics
    fetch = source.fetch
    observed: list[tuple[float, Any]] = []

    async def replay(requests: Any, now: float) -> Any:
        if not observed:
            at = time.time()
            observed.append((at, await fetch(requests, at)))
        at, metrics = observed[0]
        shift = now - at

        def moved(observation: Any) -> Any:
            if not isinstance(observation, PodSamples | TargetSample):
                return observation
            oldest = observation.oldest_sample
            return replace(
                observation,
                timestamp=observation.timestamp + shift,
                oldest_sample=None if oldest is None else oldest + shift,
            )

        return {
            key: {name: moved(obs) for name, obs in per_policy.items()}
            for key, per_policy in metrics.items()
        }

    count = int(seconds // TICK_SPACING)
    if count <= 0:
        return 0
    start = time.time() - seconds
    source.fetch = replay  # this process's source only, for these ticks
    try:
        for index in range(count):
            controller.feed.refresh()
            await controller.loop.tick(start + index * TICK_SPACING)
    finally:
        del source.fetch
    return count


async def _wait_for_share(controller: Any, shards: int, replicas: int) -> None:
    """Wait until this replica sees every member and owns exactly its fair share."""
    from autoscaler.kube.shards import ShardManager

    manager = controller.kube.leader
    assert isinstance(manager, ShardManager)
    share = shards // replicas
    deadline = time.monotonic() + 300.0
    while not (manager.members == replicas and len(manager.owned()) == share):
        if time.monotonic() > deadline:
            msg = f"{manager.identity}: owns {sorted(manager.owned())} of {manager.members} members"
            raise RuntimeError(msg)
        await asyncio.sleep(0.5)


def _run_size(
    size: int,
    prometheus: str,
    workdir: Path,
    ticks: int,
    window: str,
    *,
    pods: int = layout.PODS_PER_POLICY,
    history_seconds: float = 0.0,
    spacing: float = TICK_SPACING,
) -> dict[str, Any]:
    body = POLICY_BODY.format(window=window)
    policy_dir = layout.write_policies(workdir / f"policies-{size}", size, body)
    with KubeProcess(size, pods) as kube:
        kubeconfig = kube.kubeconfig(workdir / f"kubeconfig-{size}")
        config = {
            "prometheus": prometheus,
            "policy_dir": str(policy_dir),
            "kubeconfig": str(kubeconfig),
            "kube_pid": kube.pid,
            "kube_url": kube.url,
            "ticks": ticks,
            "budget_seconds": MEASURE_BUDGET,
            "history_seconds": history_seconds,
            "spacing": spacing,
        }
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_measure_child, args=(config, child))
        load_before = procstat.load_average()
        process.start()
        child.close()
        raw = parent.recv()
        process.join(30)
        load_after = procstat.load_average()
    if "error" in raw:
        msg = f"{size} policies: {raw['error']}"
        raise RuntimeError(msg)
    return _summary(size, pods, raw, load_before, load_after)


def _summary(
    size: int,
    pods: int,
    raw: dict[str, Any],
    load_before: tuple[float, ...] | list[float],
    load_after: tuple[float, ...] | list[float],
) -> dict[str, Any]:
    """One controller process's measurements, summarised."""
    ticks_data = raw["ticks"]
    walls = [t["wall_seconds"] for t in ticks_data]
    cpus = [t["cpu_seconds"] for t in ticks_data]
    fetches = [t["fetch_seconds"] or 0.0 for t in ticks_data]
    slowest = [t["slowest_query_seconds"] or 0.0 for t in ticks_data]
    return {
        "policies": size,
        "pods": size * pods,
        "measured_ticks": len(ticks_data),
        "tick_wall_seconds_median": round(statistics.median(walls), 4),
        "tick_wall_seconds_max": round(max(walls), 4),
        "tick_cpu_seconds_median": round(statistics.median(cpus), 4),
        "tick_cpu_seconds_max": round(max(cpus), 4),
        "metric_fetch_seconds_median": round(statistics.median(fetches), 4),
        "slowest_promql_seconds_median": round(statistics.median(slowest), 4),
        "tick_wall_without_metric_fetch_median": round(
            statistics.median(w - f for w, f in zip(walls, fetches, strict=True)), 4
        ),
        "promql_queries_per_tick_at_prometheus": max(
            t["queries_at_prometheus"] for t in ticks_data
        ),
        "promql_queries_per_tick_without_name_probe": max(
            t["queries_at_prometheus"] - t["name_probe_queries"] - t["rules_probe_queries"]
            for t in ticks_data
        ),
        "recorded_batch_queries_per_tick": max(t["recorded_batch_queries"] for t in ticks_data),
        "name_probe_ticks": sum(1 for t in ticks_data if t["name_probe_queries"]),
        "promql_queries_per_tick_client": max(t["queries_client"] or 0 for t in ticks_data),
        "kube_requests_per_tick_median": statistics.median(t["kube_requests"] for t in ticks_data),
        "kube_requests_per_tick_max": max(t["kube_requests"] for t in ticks_data),
        "kube_server_cpu_seconds_per_tick_median": round(
            statistics.median(t["kube_server_cpu_seconds"] for t in ticks_data), 3
        ),
        "valid_metrics_last_tick": ticks_data[-1]["valid_metrics"],
        "ticks_on_rule_phase": sum(
            1 for t in ticks_data if t.get("after_rules_ready_seconds") is not None
        ),
        "metrics_requested": size * 4,
        "outcomes_last_tick": ticks_data[-1]["outcomes"],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        **{k: v for k, v in raw.items() if k != "ticks"},
        "ticks": ticks_data,
    }


def readme_rows(
    runs: list[dict[str, Any]],
    quick_window: str | None = None,
    rules_run: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """README rows: goals are for 1,000 policies (not judged at smaller sizes).

    ``quick_window``: the rate window of a quick run (named in the first row), else None.
    ``rules_run``: the largest size measured again with the chart's recording rules loaded.
    """
    first, biggest = runs[0], runs[-1]
    ruled = rules_run or {}
    largest = biggest["policies"]
    at_goal = largest >= 1000
    suffix = "" if at_goal else " (goal is for 1,000)"
    span = f"{first['policies']} -> {largest} policies"
    quick = f" (quick run, {quick_window} rate windows)" if quick_window else ""
    queries = [run["promql_queries_per_tick_without_name_probe"] for run in runs]
    probes = sum(run["name_probe_ticks"] for run in runs)

    def wall(run: dict[str, Any]) -> str:
        return (
            f"{run['tick_wall_seconds_median']:.2f} s / {run['tick_wall_seconds_max']:.2f} s "
            f"(of which metric fetch {run['metric_fetch_seconds_median']:.2f} s)"
        )

    cpu = " -> ".join(f"{run['tick_cpu_seconds_median']:.2f} s" for run in runs)
    peak = biggest["rss_mb"]["peak"]
    rows: list[dict[str, Any]] = [
        {
            "benchmark": "controller",
            "figure": f"tick wall time, {largest} policies x 10 pods, raw series (median / max)"
            f"{quick}",
            "value": wall(biggest),
            "goal": "reported",
            "met": None,
        },
    ]
    if ruled:
        rows.append(
            {
                "benchmark": "controller",
                "figure": f"tick wall time, {largest} policies x 10 pods, with the chart's "
                f"recording rules (median / max){quick}"
                + (
                    f"; {ruled['ticks_on_rule_phase']} of {ruled['measured_ticks']} ticks "
                    "started just after the rule group evaluated"
                    if ruled.get("ticks_on_rule_phase")
                    else ""
                ),
                "value": wall(ruled),
                "goal": f"<= 1 s{suffix}",
                "met": ruled["tick_wall_seconds_median"] <= 1.0 if at_goal else None,
            }
        )
        cpu += f" (with recording rules: {ruled['tick_cpu_seconds_median']:.2f} s)"
        peak = max(peak, ruled["rss_mb"]["peak"])
    rows += [
        {
            "benchmark": "controller",
            "figure": f"controller CPU time per tick (median), {span}",
            "value": cpu,
            "goal": f"<= 0.5 s at 1,000{'' if at_goal else ' (not measured)'}",
            # Both runs: the controller's CPU must not depend on how Prometheus is set up.
            "met": max(biggest["tick_cpu_seconds_median"], ruled.get("tick_cpu_seconds_median", 0))
            <= 0.5
            if at_goal
            else None,
        },
        {
            "benchmark": "controller",
            "figure": f"controller peak RSS, {largest} policies",
            "value": f"{peak:.0f} MB",
            "goal": f"<= 150 MB{suffix}",
            "met": peak <= 150 if at_goal else None,
        },
        {
            "benchmark": "controller",
            "figure": f"PromQL queries per tick, counted at Prometheus, {span}",
            "value": " -> ".join(str(q) for q in queries)
            + (f" (+1 metric-name re-probe in {probes} tick(s))" if probes else ""),
            "goal": "constant",
            "met": len(set(queries)) == 1,
        },
        {
            "benchmark": "controller",
            "figure": f"Kubernetes API requests per tick (median), {span}",
            "value": " -> ".join(f"{run['kube_requests_per_tick_median']:g}" for run in runs),
            "goal": "<= 10 (steady tick)",
            "met": all(run["kube_requests_per_tick_max"] <= 10 for run in runs),
        },
    ]
    return rows


def main(quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write ``benchmarks/results/controller.json`` and return the results."""
    measured = sizes(quick)
    largest = measured[-1]
    ticks = {size: TICKS if size == largest and not quick else FEW_TICKS for size in measured}
    spacing = QUICK_SPACING if quick else TICK_SPACING
    window = fleetenv.window(quick)
    workdir = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with fleetenv.environment(largest, window) as env:
            fleet = {
                **env.wait_ready(),
                "shared": env.shared,
                "seconds_this_benchmark_waited": round(time.monotonic() - started, 1),
            }
            for size in measured:
                runs.append(
                    _run_size(
                        size,
                        env.url,
                        workdir,
                        ticks[size],
                        window,
                        history_seconds=HISTORY_SECONDS,
                        spacing=spacing,
                    )
                )
            # The largest size again, Prometheus evaluating the chart's recording rules.
            rules = env.enable_recording_rules()
            try:
                rules_run = _run_size(
                    largest,
                    env.url,
                    workdir,
                    ticks[largest],
                    window,
                    history_seconds=HISTORY_SECONDS,
                    spacing=spacing,
                )
                rules["rule_group_last_duration_seconds_after"] = env.rule_group_duration()
            finally:
                env.disable_recording_rules()
            rules_run["recording_rules"] = rules
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "controller",
        "quick": quick,
        "scrape_interval": fleet["scrape_interval"],
        "rate_window": window,
        "fleet": fleet,
        "controller_interval_seconds": INTERVAL,
        "prometheus_timeout_seconds": PROMETHEUS_TIMEOUT,
        "warmup_ticks": WARMUP_TICKS,
        "ticks_per_size": ticks,
        "tick_spacing_seconds": spacing,
        "history_seconds": HISTORY_SECONDS,
        "measure_budget_seconds": MEASURE_BUDGET,
        "cpu_count": os.cpu_count(),
        "seconds_total": round(time.monotonic() - started, 1),
        "prometheus_queries_counter_wired": any(
            (run["prometheus_queries_counter"] or 0) > 0 for run in runs
        ),
        "runs": runs,
        "run_with_recording_rules": rules_run,
        "readme_rows": readme_rows(runs, window if quick else None, rules_run),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


SCALE_RESULTS = RESULTS.with_name("controller-scale.json")
SCALE_POLICIES = 10_000
SCALE_PODS = 1
"""10,000 policies of 1 pod: the same 10,000 pods' series as 1,000 x 10 (what fits this machine)."""


SHARDED_LEASE = {
    "leader_election_lease_duration": 60.0,
    "leader_election_renew_deadline": 40.0,
    "leader_election_retry_period": 5.0,
}
"""Lease timings of the sharded runs (see ``_measure``)."""
BARRIER_TIMEOUT = 600.0
"""Seconds a replica waits for the others at a barrier."""
SCALE_REPLICAS = 2
SCALE_SHARDS = 16
"""Shards of the sharded run: 8 per replica (``crc32(namespace) % 16`` over 1,000 namespaces)."""


def _run_replicas(
    size: int,
    prometheus: str,
    workdir: Path,
    ticks: int,
    window: str,
    *,
    pods: int,
    replicas: int,
    shards: int,
) -> dict[str, Any]:
    """``replicas`` controller processes sharing ``shards`` shards, against one fake API server.

    Each child waits until it sees every member and owns its fair share, then the children tick
    together (a barrier before the warm-up and one before the measured ticks), as replicas do.
    """
    body = POLICY_BODY.format(window=window)
    policy_dir = layout.write_policies(workdir / f"policies-{size}", size, body)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(replicas)
    with KubeProcess(size, pods) as kube:
        kubeconfig = kube.kubeconfig(workdir / f"kubeconfig-{size}-sharded")
        children = []
        load_before = procstat.load_average()
        for index in range(replicas):
            config = {
                "prometheus": prometheus,
                "policy_dir": str(policy_dir),
                "kubeconfig": str(kubeconfig),
                "kube_pid": kube.pid,
                "kube_url": kube.url,
                "ticks": ticks,
                "budget_seconds": MEASURE_BUDGET,
                "shards": shards,
                "replicas": replicas,
                "identity": f"replica-{index}",
                "barrier": barrier,
            }
            parent, child = context.Pipe()
            process = context.Process(target=_measure_child, args=(config, child))
            process.start()
            child.close()
            children.append((process, parent))
        raws = [parent.recv() for _, parent in children]
        for process, _ in children:
            process.join(30)
        load_after = procstat.load_average()
    errors = [raw["error"] for raw in raws if "error" in raw]
    if errors:
        msg = f"{size} policies on {replicas} replicas: {errors}"
        raise RuntimeError(msg)
    per_replica = [_summary(size, pods, raw, load_before, load_after) for raw in raws]
    owned = [run["shards_owned"] for run in per_replica]
    covered = sorted(shard for shards_of in owned for shard in shards_of)
    per_tick = [
        sum(run["ticks"][i]["policies_owned"] for run in per_replica)
        for i in range(min(len(run["ticks"]) for run in per_replica))
    ]
    policies = [run["ticks"][-1]["policies_owned"] for run in per_replica]
    return {
        "split_exactly_once_at_the_end": covered == list(range(shards)),
        "policies_decided_per_tick_all_replicas": per_tick,
        "lease_timings": SHARDED_LEASE,
        "replicas": replicas,
        "shards": shards,
        "policies": size,
        "pods": size * pods,
        "policies_per_replica": policies,
        "shards_per_replica": owned,
        "tick_wall_seconds_median_per_replica": [
            run["tick_wall_seconds_median"] for run in per_replica
        ],
        "tick_cpu_seconds_median_per_replica": [
            run["tick_cpu_seconds_median"] for run in per_replica
        ],
        "metric_fetch_seconds_median_per_replica": [
            run["metric_fetch_seconds_median"] for run in per_replica
        ],
        "peak_rss_mb_per_replica": [run["rss_mb"]["peak"] for run in per_replica],
        "rss_after_pod_cache_sync_mb_per_replica": [
            run["rss_mb"]["after_pod_cache_sync"] for run in per_replica
        ],
        "kube_requests_per_tick_median_both_replicas": [
            run["kube_requests_per_tick_median"] for run in per_replica
        ],
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "runs": per_replica,
    }


def scale_out_replicas(replicas: int = SCALE_REPLICAS) -> dict[str, Any]:
    """10,000 policies x 1 pod: one process, then ``replicas`` sharded replicas, same session.

    The same fleet, Prometheus and machine load for both, so the comparison is fair. Adds
    ``measured_10000_policies_x_1_pod_sharded`` (and the one-process run of the same session) to
    ``benchmarks/results/controller-scale.json``, keeping its other figures.
    """
    window = fleetenv.window(quick=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-controller-shards-"))
    started = time.monotonic()
    try:
        with fleetenv.environment(SCALE_POLICIES, window, SCALE_PODS) as env:
            fleet = env.wait_ready()
            single = _run_size(
                SCALE_POLICIES, env.url, workdir, SCALE_TICKS, window, pods=SCALE_PODS
            )
            sharded = _run_replicas(
                SCALE_POLICIES,
                env.url,
                workdir,
                SCALE_TICKS,
                window,
                pods=SCALE_PODS,
                replicas=replicas,
                shards=SCALE_SHARDS,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = json.loads(SCALE_RESULTS.read_text(encoding="utf-8")) if SCALE_RESULTS.exists() else {}
    slowest = max(sharded["tick_wall_seconds_median_per_replica"])
    result["sharded"] = {
        "fleet": fleet,
        "seconds_total": round(time.monotonic() - started, 1),
        "note": "one process, then the sharded replicas, in one session (same fleet and load); "
        "the replicas run concurrently on the same 2 cores, so their wall times include "
        "waiting for each other and for Prometheus answering both",
        "measured_10000_policies_x_1_pod_one_process": single,
        "measured_10000_policies_x_1_pod_sharded": sharded,
        "what_a_second_replica_buys": {
            "tick_wall_seconds_one_process": single["tick_wall_seconds_median"],
            "tick_wall_seconds_slowest_replica": slowest,
            "tick_cpu_seconds_one_process": single["tick_cpu_seconds_median"],
            "tick_cpu_seconds_per_replica": sharded["tick_cpu_seconds_median_per_replica"],
            "peak_rss_mb_one_process": single["rss_mb"]["peak"],
            "peak_rss_mb_per_replica": sharded["peak_rss_mb_per_replica"],
        },
    }
    SCALE_RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result["sharded"]


def _fit(points: list[tuple[int, int, float]]) -> tuple[float, float, float]:
    """``cost = a * policies + b * pods + c`` through three (policies, pods, cost) points."""
    import numpy as np

    matrix = np.array([[p, n, 1.0] for p, n, _ in points], dtype=float)
    costs = np.array([c for _, _, c in points], dtype=float)
    a, b, c = np.linalg.solve(matrix, costs)
    return float(a), float(b), float(c)


def scale_out() -> dict[str, Any]:
    """10,000 policies in one process (1 pod each), raw and with recording rules; projections.

    Needs ``benchmarks/results/controller.json`` from a full run (100 and 1,000 policies of 10
    pods) for the projection to 10,000 x 10 (a fleet of 100,000 emulated pods and ~2 million
    series does not fit this shared machine). Writes ``benchmarks/results/controller-scale.json``.
    """
    full = json.loads(RESULTS.read_text(encoding="utf-8"))
    if full.get("quick"):
        msg = "controller.json is from a quick run: run the full benchmark first"
        raise RuntimeError(msg)
    window = fleetenv.window(quick=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-controller-scale-"))
    started = time.monotonic()
    try:
        with fleetenv.environment(SCALE_POLICIES, window, SCALE_PODS) as env:
            fleet = env.wait_ready()
            raw = _run_size(SCALE_POLICIES, env.url, workdir, SCALE_TICKS, window, pods=SCALE_PODS)
            rules = env.enable_recording_rules()
            try:
                ruled = _run_size(
                    SCALE_POLICIES, env.url, workdir, SCALE_TICKS, window, pods=SCALE_PODS
                )
                rules["rule_group_last_duration_seconds_after"] = env.rule_group_duration()
            finally:
                env.disable_recording_rules()
            ruled["recording_rules"] = rules
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    by_size = {run["policies"]: run for run in full["runs"]}
    projections: dict[str, Any] = {}
    for figure in ("tick_cpu_seconds_median", "tick_wall_seconds_median"):
        points = [
            (100, 1_000, by_size[100][figure]),
            (1_000, 10_000, by_size[1000][figure]),
            (SCALE_POLICIES, SCALE_POLICIES * SCALE_PODS, raw[figure]),
        ]
        a, b, c = _fit(points)
        projections[figure] = {
            "per_policy": a,
            "per_pod": b,
            "fixed": c,
            "10000_policies_x_10_pods": a * 10_000 + b * 100_000 + c,
            "per_replica_of_2_sharded_by_namespace": a * 5_000 + b * 50_000 + c,
            "per_replica_of_2_sharded_by_policy": a * 5_000 + b * 100_000 + c,
        }
    rss = [
        (100, 1_000, by_size[100]["rss_mb"]["peak"]),
        (1_000, 10_000, by_size[1000]["rss_mb"]["peak"]),
        (SCALE_POLICIES, SCALE_POLICIES * SCALE_PODS, raw["rss_mb"]["peak"]),
    ]
    a, b, c = _fit(rss)
    projections["peak_rss_mb"] = {
        "per_policy": a,
        "per_pod": b,
        "fixed": c,
        "10000_policies_x_10_pods": a * 10_000 + b * 100_000 + c,
        "per_replica_of_2_sharded_by_namespace_cluster_wide_pod_watch": a * 5_000 + b * 100_000 + c,
    }
    result = {
        "benchmark": "controller-scale",
        "fleet": fleet,
        "seconds_total": round(time.monotonic() - started, 1),
        "measured_10000_policies_x_1_pod": raw,
        "measured_10000_policies_x_1_pod_with_recording_rules": ruled,
        "projection_model": "cost = a * policies + b * pods + c through (100, 1,000), "
        "(1,000, 10,000) of controller.json and the measured (10,000, 10,000)",
        "projections": projections,
    }
    SCALE_RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="10,000 policies in one process (after a full run): controller-scale.json",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="with --scale-out: 10,000 policies on one process, then on this many sharded "
        "replicas (same session); adds 'sharded' to controller-scale.json",
    )
    args = parser.parse_args()
    if args.scale_out and args.replicas > 1:
        output = scale_out_replicas(args.replicas)
    elif args.scale_out:
        output = scale_out()
    else:
        output = main(quick=args.quick)
    print(json.dumps(output, indent=2))
