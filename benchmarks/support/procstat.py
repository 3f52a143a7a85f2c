"""CPU time and memory of a process, from ``/proc`` (Linux) and ``resource``."""

from __future__ import annotations

import os
import resource
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads); default: this process."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields after the command name: state is index 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def memory_mb(pid: int | None = None) -> dict[str, float]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) in MB (MiB), from /proc."""
    target = "self" if pid is None else str(pid)
    values: dict[str, float] = {}
    for line in Path(f"/proc/{target}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MB (MiB): the peak resident set since it started."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return os.getloadavg()
