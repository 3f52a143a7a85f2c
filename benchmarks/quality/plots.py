"""PNG plots of the scaling-quality benchmark (matplotlib, Agg backend).

One figure per plotted scenario, at the first cold start: the arrival rate in replicas of load
(rate / per-replica SLO capacity), the replicas (ready + starting) of every contender and the
oracle's plan, and the minutes where the headline contender violated the SLO.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.quality.scenarios import Scenario


def draw(doc: dict[str, Any], chosen: list[Scenario], out: Path) -> list[str]:
    """Draw every plotted scenario; return the file names written."""
    written: list[str] = []
    cold = doc["coldStarts"][0]
    for scenario in chosen:
        if not scenario.plot:
            continue
        info = doc["scenarios"][scenario.name]
        mu = info["perReplicaCapacity"]
        fig, ax = plt.subplots(figsize=(9, 3.6), dpi=80)
        minutes = range(len(info["rates"]))
        ax.fill_between(
            minutes,
            [r / mu for r in info["rates"]],
            step="post",
            color="0.85",
            label="load (replicas of SLO capacity)",
        )
        plan = doc["oracle"][f"{scenario.name}@{cold:g}"]["need"]
        ax.step(minutes, plan, where="post", color="black", lw=1.2, ls="--", label="oracle")
        for run in doc["runs"]:
            if run["scenario"] != scenario.name or run["coldStart"] != cold:
                continue
            headline = run["contender"] == "llm-tuned"
            ax.step(
                range(len(run["replicas"])),
                run["replicas"],
                where="post",
                lw=2.0 if headline else 0.9,
                color="crimson" if headline else None,
                zorder=3 if headline else 2,
                label=f"{run['contender']} ({run['sloViolationMinutes']} SLO min)",
            )
            if run["contender"] == "llm-tuned":
                bad = [m for m, v in enumerate(run["violating"]) if v]
                ax.scatter(bad, [0] * len(bad), marker="|", color="red", s=60, label="llm SLO miss")
        ax.set_xlabel("minute")
        ax.set_ylabel("replicas")
        ax.set_title(f"{scenario.name}, cold start {cold:g} s", fontsize=9)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        name = f"quality-{scenario.name}.png"
        fig.savefig(out / name)
        plt.close(fig)
        written.append(name)
    return written
