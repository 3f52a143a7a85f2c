"""Human-readable output of a simulation: the per-minute table, the summary and the plot.

Used by ``nim-autoscaler simulate`` and ``demo`` (:mod:`autoscaler.commands`) on a
:class:`~autoscaler.sim.run.SimulationResult`. The plot uses matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import math
from pathlib import Path

from autoscaler.sim.run import MinuteRow, SimulationResult, SloTargets


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.0f}"


def table_header() -> str:
    """The column header of :func:`table_row`."""
    return (
        f"{'min':>4} {'req/s':>7} {'ready':>5} {'start':>5} {'kv%':>5} {'queue':>6} "
        f"{'p95ttft_ms':>10} {'p95itl_ms':>9}  actions"
    )


def table_row(row: MinuteRow, slo: SloTargets) -> str:
    """One per-minute line; ``!`` marks a minute that violates the SLO."""
    kv = "-" if math.isnan(row.kv_usage) else f"{row.kv_usage * 100:.1f}"
    flag = "!" if row.violates(slo) else " "
    return (
        f"{row.minute:>4} {row.arrival_rate:>7.2f} {row.ready:>5} {row.starting:>5} {kv:>5} "
        f"{row.waiting:>6} {_ms(row.ttft_p):>10} {_ms(row.itl_p):>9}{flag} {row.actions}"
    )


def summary_lines(result: SimulationResult) -> list[str]:
    """The summary block printed after the table."""
    s = result.summary
    settings = result.settings
    slo = settings["slo"]
    attainment = s["sloAttainment"]
    lines = [
        f"load:        {settings['load']}",
        f"profile:     {settings['profile']}   cold start: {settings['coldStart']}   "
        f"policy: {settings['policy'] or '(fixed replicas)'}",
        f"requests:    {s['requests']} ({s['finished']} finished), within SLO "
        f"(ttft<={slo['ttft']} s, itl<={slo['itl']} s): {s['requestsWithinSlo']}"
        + (f" ({attainment * 100:.2f}%)" if attainment is not None else ""),
        f"SLO-violating minutes (p{slo['quantile'] * 100:g} TTFT or ITL over target): "
        f"{s['sloViolationMinutes']} of {s['simulatedMinutes']}",
        f"GPU-hours:   {s['gpuHours']:.3f}   scale events: {s['scaleEvents']}   "
        f"peak replicas: {s['peakReplicas']}   preemptions: {s['preemptions']}",
        f"TTFT p50/p95/p99 s: {_fmt(s['ttft'])}   ITL (per request) p50/p95/p99 s: "
        f"{_fmt(s['itl'])}",
    ]
    if "requestsInterrupted" in s:
        lines.append(
            f"scale-down:  requests interrupted {s['requestsInterrupted']} (in flight on removed "
            f"pods: {s['requestsOnRemovedPods']}; grace {settings.get('terminationGrace')} s; "
            f"drain-aware {'on' if settings.get('drainAware') else 'off'}, "
            f"{s['podDeletionCostWrites']} deletion-cost writes)"
        )
    if s.get("requestsHeldAtGateway"):
        lines.append(
            f"gateway:     {s['requestsHeldAtGateway']} requests held while no replica was ready "
            f"(longest wait {s['longestGatewayWaitSeconds']:.1f} s, in their TTFT)"
        )
    if settings.get("mode") == "advisory":
        lines.append("mode:        advisory: decisions reported, the fleet never changed")
    if "oracleGpuHours" in s:
        oracle = s["oracle"]
        ratio = s["gpuHoursOverOracle"]
        lines.append(
            f"oracle:      {s['oracleGpuHours']:.3f} GPU-hours ("
            + (f"this run: {ratio:.2f}x; " if ratio is not None else "")
            + f"{oracle['perReplicaRequestsPerSecond']:.2f} req/s per replica within the SLO, "
            f"peak {oracle['peakReplicas']} replicas)"
        )
    return lines


def _fmt(block: dict[str, float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.3f}" for v in block.values())


PLOT_UNAVAILABLE = (
    "plots need matplotlib, which the controller image leaves out: "
    "pip install 'nim-autoscaler[sim]'"
)


class PlotUnavailable(RuntimeError):
    """matplotlib (the ``sim`` extra) is not installed."""


def plot(result: SimulationResult, path: Path) -> Path:
    """Write a PNG of load, replicas (ready, starting) and p95 latency against the SLO.

    Raises:
        PlotUnavailable: matplotlib (the ``sim`` extra) is not installed.
    """
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional heavy import, only when plotting
    except ImportError as exc:
        raise PlotUnavailable(PLOT_UNAVAILABLE) from exc

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - must follow the backend choice

    rows = result.rows
    minutes = [r.minute + 1 for r in rows]
    slo = result.settings["slo"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    load_ax, replica_ax, latency_ax = axes
    load_ax.plot(minutes, [r.arrival_rate for r in rows], color="tab:blue")
    load_ax.set_ylabel("arrivals (req/s)")
    title = f"{result.settings['policy'] or 'fixed replicas'} on {result.settings['load']}"
    load_ax.set_title(title if len(title) <= 90 else title[:87] + "...", fontsize="medium")
    replica_ax.step(minutes, [r.ready for r in rows], where="post", label="ready")
    replica_ax.step(
        minutes, [r.ready + r.starting for r in rows], where="post", label="ready + starting"
    )
    replica_ax.set_ylabel("replicas")
    replica_ax.legend(loc="upper left")
    quantile = f"p{slo['quantile'] * 100:g}"
    latency_ax.plot(minutes, [r.ttft_p for r in rows], label=f"{quantile} TTFT", color="tab:red")
    latency_ax.plot(minutes, [r.itl_p for r in rows], label=f"{quantile} ITL", color="tab:green")
    if slo["ttft"] is not None:
        latency_ax.axhline(slo["ttft"], color="tab:red", linestyle="--", label="TTFT SLO")
    if slo["itl"] is not None:
        latency_ax.axhline(slo["itl"], color="tab:green", linestyle="--", label="ITL SLO")
    latency_ax.set_yscale("log")
    latency_ax.set_ylabel("seconds")
    latency_ax.set_xlabel("simulated minute")
    latency_ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
