"""Per-replica capacity read from a GenAI-Perf / AIPerf concurrency sweep.

A load test of one replica at rising concurrency (NVIDIA's NIM benchmarking guide runs GenAI-Perf
at concurrency 1, 2, 5, 10, 50, 100 and 250, one run each) shows how request throughput and the
latency quantiles grow with load. :func:`capacity_at_slo` reads from such a sweep the highest
request throughput one replica serves while the TTFT and ITL objectives of the policy's
``spec.slo`` still hold. The loader (:mod:`autoscaler.policy.loader`) calls it for
``spec.capacity.profile`` and hands the figure to the decision core as the capacity seed.

Formats read (one export per run; a sweep is several files or a directory of them):

* GenAI-Perf ``*_genai_perf.json`` (``profile_export_genai_perf.json`` by default): one object per
  metric (``time_to_first_token``, ``inter_token_latency``, ``request_latency``,
  ``request_throughput``, ``input_sequence_length``, ``output_sequence_length``...) with a
  ``unit`` and the statistics ``avg``, ``p1``..``p99``, ``min``, ``max``, ``std``; the run's
  arguments under ``input_config`` (``concurrency``, or ``perf_analyzer.stimulus.concurrency`` in
  the newer configuration layout).
* AIPerf ``profile_export_aiperf.json``: the same metric objects; the concurrency under
  ``input_config.loadgen.concurrency``.
* The CSV exports of both (``*_genai_perf.csv``, ``profile_export_aiperf.csv``): a table
  ``Metric,avg,min,max,p99,...`` with the unit in the metric's name (``Time To First Token (ms)``)
  and a table ``Metric,Value`` (``Request Throughput (requests/sec)``). The CSV holds no run
  arguments: the concurrency comes from the path (the artifact directory GenAI-Perf and AIPerf
  name ``...-concurrency10``) or, failing that, from Little's law (concurrency = throughput x
  mean request latency), which is what a closed-loop concurrency run keeps in flight.
* The GenAI-Perf ``analyze`` summary ``analyze_export_genai_perf.csv``: one row per run with a
  ``Concurrency`` column and p99 latencies.

Everything here is pure arithmetic over parsed values except :func:`read_sweep`, which reads the
files. Every problem is a :class:`ProfileError` naming the file and the JSON key or CSV
row/column; nothing else is raised for bad input.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.errors import AutoscalerError

MAX_PROFILE_BYTES = 16 * 1024 * 1024
"""Largest export file read (16 MiB; a GenAI-Perf summary with telemetry is a few kB)."""

MAX_PROFILE_FILES = 1000
"""Most export files read from one directory."""

MAX_PROFILE_DIRECTORIES = 1000
"""Most directories searched under one profile directory."""

EXPORT_SUFFIXES = ("genai_perf.json", "genai_perf.csv", "aiperf.json", "aiperf.csv")
"""File name endings read when the profile is a directory (searched recursively)."""

_TIME_UNITS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "usec": 1e-6,
    "microseconds": 1e-6,
    "ns": 1e-9,
    "nsec": 1e-9,
    "nanoseconds": 1e-9,
}
"""Time units of the exports, in seconds."""

_RATE_UNITS: dict[str, float] = dict.fromkeys(
    (
        "per sec",
        "per second",
        "requests/sec",
        "requests/s",
        "request/sec",
        "request/s",
        "req/s",
        "req/sec",
        "request per sec",
        "requests per sec",
        "requests per second",
        "rps",
    ),
    1.0,
) | {"requests/min": 1 / 60, "req/min": 1 / 60, "requests per minute": 1 / 60}
"""Request-rate units of the exports, in requests per second."""

_METRIC_ALIASES: dict[str, str] = {
    "time_to_first_token": "ttft",
    "ttft": "ttft",
    "inter_token_latency": "itl",
    "itl": "itl",
    "request_latency": "latency",
    "request_throughput": "throughput",
    "input_sequence_length": "input_tokens",
    "num_input_token": "input_tokens",
    "num_input_tokens": "input_tokens",
    "isl": "input_tokens",
    "output_sequence_length": "output_tokens",
    "num_output_token": "output_tokens",
    "num_output_tokens": "output_tokens",
}
"""Export metric names (normalised) -> what this module calls them."""

_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")
_CONCURRENCY_IN_PATH = re.compile(r"concurrency[_\-=]?(\d+)", re.IGNORECASE)
_CSV_UNIT = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]*)\)\s*$")
_CSV_STAT_PREFIX = re.compile(r"^(?:(?P<p>p\d+(?:\.\d+)?)|avg\.?|mean)\s+", re.IGNORECASE)


class ProfileError(AutoscalerError):
    """A profile export that cannot be used: names the file and the key or row/column."""

    def __init__(self, file: str, message: str, where: str = "") -> None:
        self.file = file
        self.where = where
        self.message = message
        super().__init__(f"{file}: {where}: {message}" if where else f"{file}: {message}")


# --------------------------------------------------------------------------------------------
# Sweep points
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: the load it was driven at and what one replica did."""

    concurrency: float
    """Requests kept in flight by the load generator."""
    concurrency_from: str
    """Where the concurrency was read: ``config``, ``path``, ``column`` or ``little`` (estimated
    as throughput x mean request latency)."""
    requests_per_second: float
    """Completed requests per second."""
    ttft: Mapping[float, float]
    """Time to first token by quantile (0.5, 0.9, 0.95, 0.99, ...), seconds; empty if absent."""
    itl: Mapping[float, float]
    """Inter-token latency by quantile, seconds; empty if absent (non-streaming run)."""
    input_tokens: float | None
    """Mean input (prompt) tokens per request."""
    output_tokens: float | None
    """Mean output (generated) tokens per request."""
    file: str
    """The export the point was read from."""
    rank: int = 0
    """Richness of the format (JSON 2 > per-run CSV 1 > summary CSV 0): when two exports hold the
    same concurrency, the richer one is kept."""


def _number(value: object, file: str, where: str) -> float:
    """A finite float from a JSON number or numeric string."""
    if isinstance(value, bool):
        raise ProfileError(file, f"expected a number, got {value!r}", where)
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.replace(",", "").strip())
        except ValueError:
            raise ProfileError(file, f"expected a number, got {value!r}", where) from None
    else:
        raise ProfileError(file, f"expected a number, got {type(value).__name__}", where)
    if not math.isfinite(number):
        raise ProfileError(file, f"expected a finite number, got {value!r}", where)
    return number


def _time_scale(unit: object, file: str, where: str) -> float:
    if not isinstance(unit, str) or not unit.strip():
        msg = "no time unit given; expected one of s, ms, us, ns"
        raise ProfileError(file, msg, where)
    scale = _TIME_UNITS.get(unit.strip().lower()) or _TIME_UNITS.get(unit.strip())
    if scale is None:
        msg = f"unknown time unit {unit!r}; expected one of s, ms, us, ns"
        raise ProfileError(file, msg, where)
    return scale


def _rate_scale(unit: object, file: str, where: str) -> float:
    if unit is None or (isinstance(unit, str) and not unit.strip()):
        return 1.0  # GenAI-Perf and AIPerf always give requests per second
    text = str(unit).strip().lower()
    scale = _RATE_UNITS.get(text)
    if scale is None:
        msg = f"unknown request-rate unit {unit!r}; expected requests/sec"
        raise ProfileError(file, msg, where)
    return scale


def _quantile_of(stat: str) -> float | None:
    """``p95`` -> 0.95, ``p99.9`` -> 0.999, ``p50``/``median`` -> 0.5; None for avg/min/max."""
    if stat.lower() == "median":
        return 0.5
    match = _PERCENTILE.match(stat.lower())
    if match is None:
        return None
    percent = float(match.group(1))
    if not 0 < percent < 100:
        return None
    return round(percent / 100, 6)


def _normalise_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _loaded_concurrency(path: str) -> float | None:
    """The concurrency written in an artifact path (``...-concurrency10/``), the last one wins."""
    found = _CONCURRENCY_IN_PATH.findall(path)
    return float(found[-1]) if found else None


def _little(throughput: float, latency_s: float | None) -> float | None:
    if latency_s is None or latency_s <= 0 or throughput <= 0:
        return None
    return throughput * latency_s


# --------------------------------------------------------------------------------------------
# JSON exports
# --------------------------------------------------------------------------------------------


def _dig(data: Mapping[str, Any], *keys: str) -> object:
    node: object = data
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _json_metrics(data: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Known metrics of an export: our name -> (the export's key, its statistics object)."""
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    sources: list[tuple[str, Mapping[str, Any]]] = [("", data)]
    records = data.get("records")
    if isinstance(records, Mapping):  # some AIPerf versions nest the metrics
        sources.append(("records.", records))
    for prefix, source in sources:
        for key, value in source.items():
            ours = _METRIC_ALIASES.get(_normalise_name(str(key)))
            if ours is not None and isinstance(value, Mapping) and ours not in found:
                found[ours] = (f"{prefix}{key}", value)
    return found


def _latency_quantiles(
    stats: tuple[str, Mapping[str, Any]] | None, file: str
) -> tuple[dict[float, float], float | None]:
    """(quantile -> seconds, mean seconds) of a latency metric object."""
    if stats is None:
        return {}, None
    key, values = stats
    scale = _time_scale(values.get("unit"), file, f"{key}.unit")
    quantiles: dict[float, float] = {}
    mean: float | None = None
    for stat, raw in values.items():
        if raw is None:
            continue
        q = _quantile_of(str(stat))
        if q is not None:
            value = _number(raw, file, f"{key}.{stat}")
            if value < 0:
                raise ProfileError(file, f"a latency must be >= 0, got {raw!r}", f"{key}.{stat}")
            quantiles[q] = value * scale
        elif stat in {"avg", "mean"}:
            mean = _number(raw, file, f"{key}.{stat}") * scale
    return quantiles, mean


def _mean_of(stats: tuple[str, Mapping[str, Any]] | None, file: str) -> float | None:
    if stats is None:
        return None
    key, values = stats
    for stat in ("avg", "mean"):
        if values.get(stat) is not None:
            return _number(values[stat], file, f"{key}.{stat}")
    return None


def _json_concurrency(data: Mapping[str, Any], file: str) -> float | None:
    config = data.get("input_config")
    if not isinstance(config, Mapping):
        return None
    for keys in (
        ("concurrency",),
        ("perf_analyzer", "stimulus", "concurrency"),
        ("loadgen", "concurrency"),
    ):
        value = _dig(config, *keys)
        if value is not None:
            where = "input_config." + ".".join(keys)
            number = _number(value, file, where)
            if number <= 0:
                raise ProfileError(file, f"concurrency must be > 0, got {value!r}", where)
            return number
    return None


def parse_json_export(text: str, file: str) -> SweepPoint:
    """One run from a GenAI-Perf ``*_genai_perf.json`` or AIPerf ``profile_export_aiperf.json``.

    Args:
        text: The file's text.
        file: The file's name (for errors and the concurrency in its path).

    Raises:
        ProfileError: Not JSON, not an export, or a value or unit that cannot be used.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ProfileError(file, f"not valid JSON: {exc.msg}", where) from None
    except RecursionError:
        raise ProfileError(file, "JSON nesting is too deep") from None
    if not isinstance(data, Mapping):
        msg = "expected a JSON object (a GenAI-Perf or AIPerf profile export)"
        raise ProfileError(file, msg)
    metrics = _json_metrics(data)
    if "throughput" not in metrics:
        msg = (
            "no 'request_throughput' object: this is not a GenAI-Perf *_genai_perf.json or "
            "AIPerf profile_export_aiperf.json summary (per-request files such as "
            "profile_export.json or profile_export.jsonl are not read)"
        )
        raise ProfileError(file, msg)
    key, stats = metrics["throughput"]
    rate = stats.get("avg", stats.get("mean"))
    if rate is None:
        raise ProfileError(file, "no 'avg' value", key)
    throughput = _number(rate, file, f"{key}.avg") * _rate_scale(
        stats.get("unit"), file, f"{key}.unit"
    )
    if throughput < 0:
        raise ProfileError(file, f"request throughput must be >= 0, got {rate!r}", f"{key}.avg")
    ttft, _ = _latency_quantiles(metrics.get("ttft"), file)
    itl, _ = _latency_quantiles(metrics.get("itl"), file)
    _, mean_latency = _latency_quantiles(metrics.get("latency"), file)
    input_tokens = _mean_of(metrics.get("input_tokens"), file)
    output_tokens = _mean_of(metrics.get("output_tokens"), file)
    concurrency = _json_concurrency(data, file)
    origin = "config"
    if concurrency is None:
        concurrency, origin = _loaded_concurrency(file), "path"
    if concurrency is None:
        concurrency, origin = _little(throughput, mean_latency), "little"
    if concurrency is None or concurrency <= 0:
        msg = (
            "cannot tell the concurrency of this run: no input_config concurrency, no "
            "'concurrency<N>' (N > 0) in the path, no request_latency to estimate it from"
        )
        raise ProfileError(file, msg)
    return SweepPoint(
        concurrency=concurrency,
        concurrency_from=origin,
        requests_per_second=throughput,
        ttft=ttft,
        itl=itl,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        file=file,
        rank=2,
    )


# --------------------------------------------------------------------------------------------
# CSV exports
# --------------------------------------------------------------------------------------------


def _csv_sections(rows: list[list[str]]) -> list[tuple[int, list[list[str]]]]:
    """Blank-line separated tables: (1-based row number of the header, rows)."""
    sections: list[tuple[int, list[list[str]]]] = []
    current: list[list[str]] = []
    start = 0
    for index, row in enumerate(rows, start=1):
        if not any(cell.strip() for cell in row):
            if current:
                sections.append((start, current))
            current = []
            continue
        if not current:
            start = index
        current.append(row)
    if current:
        sections.append((start, current))
    return sections


def _split_csv_metric(label: str) -> tuple[str, str | None, str | None]:
    """``p99 Time To First Token (ms)`` -> (``time_to_first_token``, ``ms``, ``p99``)."""
    text = label.strip()
    unit: str | None = None
    match = _CSV_UNIT.match(text)
    if match is not None:
        text, unit = match.group("name"), match.group("unit").strip()
    stat: str | None = None
    prefix = _CSV_STAT_PREFIX.match(text)
    if prefix is not None:
        stat = (prefix.group("p") or "avg").lower()
        text = text[prefix.end() :]
    return _normalise_name(text), unit, stat


@dataclass
class _CsvRun:
    """Values of one run gathered from CSV cells, with where each came from."""

    file: str
    ttft: dict[float, float] = field(default_factory=dict)
    itl: dict[float, float] = field(default_factory=dict)
    mean_latency: float | None = None
    throughput: float | None = None
    input_tokens: float | None = None
    output_tokens: float | None = None
    concurrency: float | None = None


def _csv_cell(cell: str, file: str, where: str) -> float | None:
    text = cell.strip()
    if not text or text.lower() in {"n/a", "na", "nan", "-", "none"}:
        return None
    return _number(text, file, where)


def _add_csv_value(
    run: _CsvRun, name: str, unit: str | None, *, stat: str, value: float, where: str
) -> None:
    ours = _METRIC_ALIASES.get(name)
    if ours in {"ttft", "itl", "latency"}:
        if value < 0:
            raise ProfileError(run.file, f"a latency must be >= 0, got {value:g}", where)
        seconds = value * _time_scale(unit, run.file, where)
        quantile = _quantile_of(stat)
        if ours == "latency":
            if stat in {"avg", "mean"}:
                run.mean_latency = seconds
        elif quantile is not None:
            (run.ttft if ours == "ttft" else run.itl)[quantile] = seconds
    elif ours == "throughput" and stat in {"avg", "value", "mean"}:
        run.throughput = value * _rate_scale(unit, run.file, where)
    elif ours == "input_tokens" and stat in {"avg", "value", "mean"}:
        run.input_tokens = value
    elif ours == "output_tokens" and stat in {"avg", "value", "mean"}:
        run.output_tokens = value


def _parse_metric_table(run: _CsvRun, start: int, table: list[list[str]]) -> None:
    """A ``Metric,avg,...`` or ``Metric,Value`` table of a per-run CSV export."""
    header = [cell.strip().lower() for cell in table[0]]
    for offset, row in enumerate(table[1:], start=1):
        if not row:
            continue
        name, unit, _ = _split_csv_metric(row[0])
        if name not in _METRIC_ALIASES:
            continue
        for column, cell in enumerate(row[1:], start=1):
            if column >= len(header):
                break
            where = f"row {start + offset}, column {column + 1} ({header[column]})"
            value = _csv_cell(cell, run.file, where)
            if value is not None:
                _add_csv_value(run, name, unit, stat=header[column], value=value, where=where)


def _summary_points(file: str, start: int, table: list[list[str]]) -> list[SweepPoint]:
    """The GenAI-Perf ``analyze`` summary: one row per run, the load in a ``Concurrency`` column."""
    header = table[0]
    columns = [_split_csv_metric(cell) for cell in header]
    names = [name for name, _, _ in columns]
    if "concurrency" not in names:
        msg = (
            "this analyze summary has no 'Concurrency' column (a request-rate sweep?); give "
            "a concurrency sweep"
        )
        raise ProfileError(file, msg, f"row {start}")
    points: list[SweepPoint] = []
    for offset, row in enumerate(table[1:], start=1):
        run = _CsvRun(file)
        line = start + offset
        for column, cell in enumerate(row):
            if column >= len(columns):
                break
            name, unit, stat = columns[column]
            where = f"row {line}, column {column + 1} ({header[column].strip()})"
            if name == "concurrency":
                run.concurrency = _csv_cell(cell, file, where)
                continue
            if name not in _METRIC_ALIASES:
                continue
            value = _csv_cell(cell, file, where)
            if value is not None:
                _add_csv_value(run, name, unit, stat=stat or "avg", value=value, where=where)
        points.append(_csv_point(run, f"row {line}", from_column=True))
    return points


def _csv_point(run: _CsvRun, where: str, *, from_column: bool = False) -> SweepPoint:
    if run.throughput is None:
        msg = "no 'Request Throughput' value (a GenAI-Perf or AIPerf CSV export has one)"
        raise ProfileError(run.file, msg, where)
    if run.throughput < 0:
        msg = f"request throughput must be >= 0, got {run.throughput:g}"
        raise ProfileError(run.file, msg, where)
    concurrency, origin = run.concurrency, "column"
    if concurrency is None and not from_column:
        concurrency, origin = _loaded_concurrency(run.file), "path"
    if concurrency is None:
        concurrency, origin = _little(run.throughput, run.mean_latency), "little"
    if concurrency is None or concurrency <= 0:
        msg = (
            "cannot tell the concurrency of this run: no 'concurrency<N>' in the path and no "
            "mean request latency to estimate it from"
        )
        raise ProfileError(run.file, msg, where)
    return SweepPoint(
        concurrency=concurrency,
        concurrency_from=origin,
        requests_per_second=run.throughput,
        ttft=dict(run.ttft),
        itl=dict(run.itl),
        input_tokens=run.input_tokens,
        output_tokens=run.output_tokens,
        file=run.file,
        rank=0 if from_column else 1,
    )


def parse_csv_export(text: str, file: str) -> list[SweepPoint]:
    """The run of a per-run CSV export, or every run of an ``analyze`` summary CSV.

    Args:
        text: The file's text.
        file: The file's name (for errors and the concurrency in its path).

    Raises:
        ProfileError: Not a GenAI-Perf/AIPerf CSV export, or a cell that cannot be used.
    """
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ProfileError(file, f"not valid CSV: {exc}") from None
    sections = _csv_sections(rows)
    if not sections:
        raise ProfileError(file, "the file is empty")
    first = _normalise_name(sections[0][1][0][0])
    if first == "config_name":
        return _summary_points(file, *sections[0])
    run = _CsvRun(file)
    for start, table in sections:
        if _normalise_name(table[0][0]) == "metric":
            _parse_metric_table(run, start, table)
    return [_csv_point(run, "")]


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """The runs of a sweep, one per concurrency level, lowest first."""

    points: tuple[SweepPoint, ...]
    """The runs, sorted by concurrency."""
    files: tuple[str, ...]
    """Every export file read."""
    directories: tuple[str, ...] = ()
    """Directories searched (their change means files may have come or gone)."""
    notes: tuple[str, ...] = ()
    """What the reader had to decide (exports dropped as duplicates, estimated concurrency)."""


def _export_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """Export files under ``directory`` (recursively, sorted) and the directories walked."""
    files: list[Path] = []
    directories: list[Path] = []
    visited: set[tuple[int, int]] = set()
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            info = current.stat()
            entries = sorted(current.iterdir())
        except OSError as exc:
            raise ProfileError(str(current), f"cannot list directory: {exc.strerror}") from None
        if (info.st_dev, info.st_ino) in visited:  # a symbolic link back up the tree
            continue
        visited.add((info.st_dev, info.st_ino))
        directories.append(current)
        if len(directories) > MAX_PROFILE_DIRECTORIES:
            msg = f"more than {MAX_PROFILE_DIRECTORIES} directories; point at one sweep"
            raise ProfileError(str(directory), msg)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                stack.append(entry)
            elif entry.name.lower().endswith(EXPORT_SUFFIXES) and entry.is_file():
                twin = entry.with_suffix(".json")
                if entry.suffix.lower() == ".csv" and twin != entry and twin.is_file():
                    continue  # the same run exported as JSON too: the JSON is richer
                files.append(entry)
        if len(files) > MAX_PROFILE_FILES:
            msg = f"more than {MAX_PROFILE_FILES} export files; point at one sweep"
            raise ProfileError(str(directory), msg)
    return sorted(files), directories


def _read_text(path: Path) -> str:
    file = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            msg = f"file is {size} bytes, more than the {MAX_PROFILE_BYTES} bytes allowed"
            raise ProfileError(file, msg)
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(file, f"cannot read file: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        raise ProfileError(file, msg) from None


def parse_export(text: str, file: str) -> list[SweepPoint]:
    """The runs of one export file, by its content (JSON object or CSV)."""
    if file.lower().endswith(".jsonl"):
        msg = (
            "a .jsonl file holds per-request records; give the run's summary "
            "(profile_export_aiperf.json or *_genai_perf.json)"
        )
        raise ProfileError(file, msg)
    if text.lstrip().startswith("{") or file.lower().endswith(".json"):
        return [parse_json_export(text, file)]
    return parse_csv_export(text, file)


def _deduplicate(points: list[SweepPoint]) -> tuple[list[SweepPoint], list[str]]:
    """One point per concurrency: the richest export wins; two equally rich ones are an error."""
    kept: dict[float, SweepPoint] = {}
    notes: list[str] = []
    for point in points:
        other = kept.get(point.concurrency)
        if other is None:
            kept[point.concurrency] = point
            continue
        if other.rank == point.rank:
            msg = (
                f"concurrency {point.concurrency:g} is also measured by {other.file}; keep one "
                "run per concurrency level in the sweep"
            )
            raise ProfileError(point.file, msg)
        winner, loser = (point, other) if point.rank > other.rank else (other, point)
        kept[point.concurrency] = winner
        notes.append(f"concurrency {point.concurrency:g}: read {winner.file}, not {loser.file}")
    return sorted(kept.values(), key=lambda p: p.concurrency), notes


def _is_pattern(path: Path) -> bool:
    """True for a path with glob wildcards that does not exist as written."""
    return glob.has_magic(str(path)) and not path.exists()


def _matches(pattern: Path) -> list[Path]:
    root = _pattern_root(pattern)
    relative = pattern.relative_to(root)
    return sorted(p for p in root.glob(str(relative)) if p.is_file())


def _pattern_root(pattern: Path) -> Path:
    """The deepest directory of a pattern without wildcards."""
    parts: list[str] = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path()


def read_sweep(paths: str | Path | Sequence[str | Path]) -> Sweep:
    """Read a sweep from one export file, several files, directories or glob patterns.

    A directory is searched recursively for ``*genai_perf.json``, ``*genai_perf.csv``,
    ``*aiperf.json`` and ``*aiperf.csv``. When a run is exported as both JSON and CSV (GenAI-Perf
    and AIPerf write both), the JSON is read. A path with wildcards (``llama-c*_genai_perf.json``,
    ``runs/*/profile_export_aiperf.json``) that does not exist as written reads every file it
    matches: a sweep kept as flat files, as in a Kubernetes ConfigMap.

    Raises:
        ProfileError: A file is missing or bad, no run was found, or two exports of the same kind
            measure the same concurrency.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    directories: list[Path] = []
    for raw in items:
        path = Path(raw)
        if _is_pattern(path):
            matched = _matches(path)
            if not matched:
                raise ProfileError(str(path), "no file matches this pattern")
            files.extend(matched)
            directories.extend(sorted({_pattern_root(path), *(m.parent for m in matched)}))
        elif path.is_dir():
            found, walked = _export_files(path)
            if not found:
                msg = "no GenAI-Perf or AIPerf export in this directory (looked for " + ", ".join(
                    f"*{suffix}" for suffix in EXPORT_SUFFIXES
                )
                raise ProfileError(str(path), msg + ")")
            files.extend(found)
            directories.extend(walked)
        elif path.is_file():
            files.append(path)
        else:
            raise ProfileError(str(path), "no such file or directory")
    points: list[SweepPoint] = []
    for path in files:
        points.extend(parse_export(_read_text(path), str(path)))
    if not points:
        raise ProfileError(str(items[0]) if items else "", "no run found")
    unique, notes = _deduplicate(points)
    estimated = [p for p in unique if p.concurrency_from == "little"]
    if estimated:
        notes.append(
            f"{len(estimated)} run(s) state no concurrency; estimated as throughput x mean "
            "request latency (Little's law)"
        )
    return Sweep(
        points=tuple(unique),
        files=tuple(str(f) for f in files),
        directories=tuple(str(d) for d in directories),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# Capacity at the SLO
# --------------------------------------------------------------------------------------------


Objective = tuple[float, float]
"""``(quantile, target seconds)`` of a latency objective."""


@dataclass(frozen=True)
class ObjectiveReading:
    """One latency objective read from the sweep at the capacity point."""

    name: str
    """``ttft`` or ``itl``."""
    quantile: float
    """The SLO's quantile."""
    quantile_used: float
    """The export's quantile read (the SLO's, or the nearest higher one available)."""
    target: float
    """The SLO's target, seconds."""
    value: float
    """The latency at the capacity point (interpolated), seconds."""

    @property
    def margin(self) -> float:
        """How far under the target the latency is at the capacity point, fraction of target."""
        return (self.target - self.value) / self.target


@dataclass(frozen=True)
class ProfileCapacity:
    """What one replica carries within the SLO according to the sweep."""

    requests_per_second: float
    """Highest request throughput with every objective within its target."""
    concurrency: float
    """Concurrency at that point (interpolated between the runs around it)."""
    limited_by: str
    """``ttft`` or ``itl`` (the objective reached first), or ``sweep`` when every run met the SLO
    (the capacity is then the highest throughput measured, and may be higher)."""
    objectives: tuple[ObjectiveReading, ...]
    """Each objective at the capacity point."""
    input_tokens: float | None
    """Mean input tokens per request of the sweep (None: the exports do not say)."""
    output_tokens: float | None
    """Mean output tokens per request of the sweep."""
    levels: tuple[float, ...]
    """The concurrency levels of the sweep."""
    notes: tuple[str, ...] = ()
    """Substitutions made (a higher quantile used, estimated concurrency, duplicates dropped)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (camelCase keys, seconds)."""
        return {
            "requestsPerSecond": self.requests_per_second,
            "concurrency": self.concurrency,
            "limitedBy": self.limited_by,
            "objectives": {
                o.name: {
                    "quantile": o.quantile,
                    "quantileUsed": o.quantile_used,
                    "target": o.target,
                    "value": o.value,
                    "margin": o.margin,
                }
                for o in self.objectives
            },
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "concurrencyLevels": list(self.levels),
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        """One line for people: the figure, what limits it, the margins and the lengths."""
        parts = [f"{self.requests_per_second:.3g} req/s per replica"]
        if self.limited_by == "sweep":
            parts.append("(every run met the SLO: highest throughput measured, may be higher)")
        else:
            parts.append(f"at concurrency {self.concurrency:.3g} (limited by {self.limited_by})")
        for o in self.objectives:
            used = "" if o.quantile_used == o.quantile else f", p{_pct(o.quantile_used)} read"
            parts.append(
                f"{o.name} p{_pct(o.quantile)} {o.value:.3g} s <= {o.target:g} s "
                f"(margin {o.margin:.0%}{used})"
            )
        lengths = _lengths(self.input_tokens, self.output_tokens)
        parts.append(f"lengths {lengths}")
        levels = ", ".join(f"{c:g}" for c in self.levels)
        parts.append(f"concurrency levels {levels}")
        return "; ".join(parts)


def _pct(quantile: float) -> str:
    return f"{quantile * 100:g}"


def _lengths(input_tokens: float | None, output_tokens: float | None) -> str:
    def fmt(value: float | None) -> str:
        return "?" if value is None else f"{value:.0f}"

    return f"{fmt(input_tokens)} in / {fmt(output_tokens)} out tokens"


def _quantile_at(
    point: SweepPoint, name: str, quantile: float, notes: set[str]
) -> tuple[float, float]:
    """(quantile read, seconds) for ``name`` at ``point``: the SLO's quantile or the next above."""
    values = point.ttft if name == "ttft" else point.itl
    label = "time_to_first_token" if name == "ttft" else "inter_token_latency"
    if not values:
        hint = " (run the load test with --streaming)" if name == "itl" else ""
        msg = f"no {label} quantiles, needed for the {name} objective{hint}"
        raise ProfileError(point.file, msg, label)
    above = [q for q in values if q >= quantile - 1e-9]
    if not above:
        have = ", ".join(f"p{_pct(q)}" for q in sorted(values))
        msg = (
            f"no {label} quantile at or above the SLO's p{_pct(quantile)} (have {have}); a "
            "lower quantile would overstate the capacity"
        )
        raise ProfileError(point.file, msg, label)
    used = min(above)
    if abs(used - quantile) > 1e-9:
        notes.add(
            f"{name}: p{_pct(quantile)} is not in the export; p{_pct(used)} read instead "
            "(conservative)"
        )
    return used, values[used]


def _mean_length(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def capacity_at_slo(
    points: Sequence[SweepPoint],
    *,
    ttft: Objective | None = None,
    itl: Objective | None = None,
) -> ProfileCapacity:
    """Highest request throughput of one replica with TTFT and ITL within their objectives.

    The runs are taken in order of concurrency. Up to the first run that misses an objective,
    every run is within the SLO; between that run and the one before it, latencies and throughput
    are interpolated linearly in concurrency and the capacity is the throughput where the first
    objective reaches its target (or the previous run's throughput, if higher: past saturation
    throughput can fall while latency rises). Runs above the first miss are not used, even if
    they meet the SLO again (measurement noise should make the figure lower, never higher). When
    the SLO quantile is not in the export, the nearest higher quantile is read (conservative).

    Args:
        points: The sweep's runs (any order; one per concurrency).
        ttft: ``(quantile, target seconds)`` of the time-to-first-token objective, or None.
        itl: ``(quantile, target seconds)`` of the inter-token latency objective, or None.

    Raises:
        ProfileError: No objective given, no runs, a needed latency missing from an export, or
            the SLO missed already at the lowest concurrency of the sweep.
    """
    objectives = [(name, o) for name, o in (("ttft", ttft), ("itl", itl)) if o is not None]
    if not points:
        raise ProfileError("", "the sweep has no runs")
    ordered = sorted(points, key=lambda p: p.concurrency)
    if not objectives:
        msg = "the capacity at the SLO needs a ttft or itl objective in spec.slo"
        raise ProfileError(ordered[0].file, msg)
    notes: set[str] = set()
    readings: list[dict[str, tuple[float, float]]] = [
        {name: _quantile_at(point, name, o[0], notes) for name, o in objectives}
        for point in ordered
    ]
    input_tokens = _mean_length(p.input_tokens for p in ordered)
    output_tokens = _mean_length(p.output_tokens for p in ordered)
    levels = tuple(p.concurrency for p in ordered)

    def missed(index: int) -> list[str]:
        return [name for name, o in objectives if readings[index][name][1] > o[1]]

    def result(
        rps: float, concurrency: float, limited_by: str, values: dict[str, float]
    ) -> ProfileCapacity:
        if rps <= 0:
            msg = "no request completed within the SLO in the sweep (request throughput 0)"
            raise ProfileError(ordered[0].file, msg)
        return ProfileCapacity(
            requests_per_second=rps,
            concurrency=concurrency,
            limited_by=limited_by,
            objectives=tuple(
                ObjectiveReading(name, o[0], max(r[name][0] for r in readings), o[1], values[name])
                for name, o in objectives
            ),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            levels=levels,
            notes=tuple(sorted(notes)),
        )

    first_miss = next((i for i in range(len(ordered)) if missed(i)), None)
    if first_miss == 0:
        point = ordered[0]
        detail = ", ".join(
            f"{name} p{_pct(readings[0][name][0])} {readings[0][name][1]:.3g} s > {o[1]:g} s"
            for name, o in objectives
            if readings[0][name][1] > o[1]
        )
        msg = (
            f"the SLO is missed already at the lowest concurrency of the sweep "
            f"({point.concurrency:g}: {detail}); one replica cannot meet it at these request "
            "lengths, or the sweep needs lower concurrency levels"
        )
        raise ProfileError(point.file, msg)
    if first_miss is None:
        best = max(range(len(ordered)), key=lambda i: ordered[i].requests_per_second)
        values = {name: readings[best][name][1] for name, _ in objectives}
        return result(ordered[best].requests_per_second, ordered[best].concurrency, "sweep", values)
    low, high = first_miss - 1, first_miss
    # Fraction of the way from `low` to `high` at which each missed objective reaches its target.
    crossings: dict[str, float] = {}
    for name in missed(high):
        target = dict(objectives)[name][1]
        a, b = readings[low][name][1], readings[high][name][1]
        crossings[name] = (target - a) / (b - a) if b > a else 0.0
    limited_by = min(crossings, key=lambda n: crossings[n])
    t = min(max(crossings[limited_by], 0.0), 1.0)
    x_low, x_high = ordered[low].requests_per_second, ordered[high].requests_per_second
    interpolated = x_low + t * (x_high - x_low)
    best_before = max(range(high), key=lambda i: ordered[i].requests_per_second)
    if ordered[best_before].requests_per_second >= interpolated:
        values = {name: readings[best_before][name][1] for name, _ in objectives}
        return result(
            ordered[best_before].requests_per_second,
            ordered[best_before].concurrency,
            limited_by,
            values,
        )
    values = {
        name: readings[low][name][1] + t * (readings[high][name][1] - readings[low][name][1])
        for name, _ in objectives
    }
    c_low, c_high = ordered[low].concurrency, ordered[high].concurrency
    return result(interpolated, c_low + t * (c_high - c_low), limited_by, values)


def profile_dependencies(path: str | Path) -> list[str]:
    """Paths whose change can change what :func:`read_sweep` reads from ``path``.

    The path itself, and for a directory every sub-directory and export file under it. Never
    raises: a path that cannot be listed is still returned, so a watcher sees it appear.
    """
    root = Path(path)
    found = [str(root)]
    if _is_pattern(root):
        matched = _matches(root)
        parents = sorted({_pattern_root(root), *(m.parent for m in matched)})
        return [*found, *(str(d) for d in parents), *(str(m) for m in matched)]
    if not root.is_dir():
        return found
    try:
        files, directories = _export_files(root)
    except ProfileError:
        return found
    found.extend(str(d) for d in directories if d != root)
    found.extend(str(f) for f in files)
    return found
