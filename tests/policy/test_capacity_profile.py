"""Capacity profiles: GenAI-Perf/AIPerf exports parsed; the capacity at the SLO from a sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from autoscaler.policy.capacity_profile import (
    ProfileError,
    SweepPoint,
    capacity_at_slo,
    parse_csv_export,
    parse_json_export,
    read_sweep,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "profiles"
GENAI_PERF = DATA / "genai-perf-8b-h100"
"""Llama-3.1-8B on one H100, 1000/128 tokens, concurrency 1..250: JSON and CSV per run."""
AIPERF = DATA / "aiperf-8b-h100-concurrency10"
ANALYZE = DATA / "analyze_export_genai_perf.csv"
LEVELS = (1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 250.0)


def run_dir(concurrency: int) -> Path:
    return GENAI_PERF / f"meta_llama-3.1-8b-instruct-openai-chat-concurrency{concurrency}"


def point(
    concurrency: float,
    rps: float,
    ttft: dict[float, float] | None = None,
    itl: dict[float, float] | None = None,
    *,
    file: str = "sweep.json",
    input_tokens: float | None = 1000.0,
    output_tokens: float | None = 128.0,
) -> SweepPoint:
    return SweepPoint(
        concurrency=concurrency,
        concurrency_from="config",
        requests_per_second=rps,
        ttft=ttft or {},
        itl=itl or {},
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        file=file,
    )


def export(**overrides: Any) -> dict[str, Any]:
    """A minimal GenAI-Perf JSON export (ms units), with top-level keys replaced."""
    data: dict[str, Any] = {
        "time_to_first_token": {"unit": "ms", "avg": 90.0, "p50": 80.0, "p90": 150.0, "p99": 240},
        "inter_token_latency": {"unit": "ms", "avg": 7.0, "p50": 7.0, "p90": 8.0, "p99": 9.0},
        "request_latency": {"unit": "ms", "avg": 1000.0, "p50": 990.0, "p99": 1300.0},
        "request_throughput": {"unit": "requests/sec", "avg": 10.0},
        "input_sequence_length": {"unit": "tokens", "avg": 500.0},
        "output_sequence_length": {"unit": "tokens", "avg": 100.0},
        "input_config": {"concurrency": 10, "streaming": True},
    }
    data.update(overrides)
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


class TestGenAIPerfJson:
    def test_sweep_directory_reads_every_run_in_seconds(self) -> None:
        """A directory of runs gives one point per concurrency, latencies converted ms -> s."""
        sweep = read_sweep(GENAI_PERF)
        assert tuple(p.concurrency for p in sweep.points) == LEVELS
        assert {"config"} == {p.concurrency_from for p in sweep.points}
        ten = sweep.points[3]
        assert ten.requests_per_second == 9.8
        assert pytest.approx(ten.ttft[0.95]) == 0.1689
        assert pytest.approx(ten.ttft[0.5]) == 0.0882
        assert pytest.approx(ten.itl[0.95]) == 0.00831
        assert pytest.approx(ten.itl[0.99]) == 0.00905
        assert ten.input_tokens == 1000.3
        assert ten.output_tokens == 127.6

    def test_json_preferred_over_csv_of_the_same_run(self) -> None:
        """GenAI-Perf writes JSON and CSV per run; only the JSON of each run is read."""
        sweep = read_sweep(GENAI_PERF)
        assert len(sweep.files) == 7
        assert all(f.endswith("profile_export_genai_perf.json") for f in sweep.files)

    def test_newer_layout_concurrency_under_perf_analyzer_stimulus(self, tmp_path: Path) -> None:
        """GenAI-Perf's configuration layout keeps the load under perf_analyzer.stimulus."""
        data = export(input_config={"perf_analyzer": {"stimulus": {"concurrency": 50}}})
        assert parse_json_export(json.dumps(data), "x.json").concurrency == 50.0

    @pytest.mark.parametrize(
        ("unit", "factor"),
        [("ms", 1e-3), ("s", 1.0), ("sec", 1.0), ("ns", 1e-9), ("us", 1e-6)],
        ids=["milliseconds", "seconds", "sec", "nanoseconds", "microseconds"],
    )
    def test_time_units(self, unit: str, factor: float) -> None:
        """Every latency is converted to seconds by its own unit."""
        data = export(time_to_first_token={"unit": unit, "p95": 250.0, "avg": "200"})
        parsed = parse_json_export(json.dumps(data), "x.json")
        assert 250.0 * factor == pytest.approx(parsed.ttft[0.95])

    def test_unknown_time_unit_names_file_and_key(self) -> None:
        """An unknown unit is an error naming the file and the JSON key."""
        data = export(inter_token_latency={"unit": "ticks", "p95": 3.0})
        with pytest.raises(ProfileError) as caught:
            parse_json_export(json.dumps(data), "run.json")
        assert "run.json: inter_token_latency.unit: unknown time unit 'ticks'" in str(caught.value)

    def test_missing_time_unit_is_an_error(self) -> None:
        """A latency without a unit is not guessed (ms and s differ a thousandfold)."""
        data = export(time_to_first_token={"p95": 3.0})
        with pytest.raises(ProfileError, match=r"time_to_first_token\.unit: no time unit"):
            parse_json_export(json.dumps(data), "run.json")

    def test_bad_number_names_key(self) -> None:
        """A value that is not a number names its key."""
        data = export(time_to_first_token={"unit": "ms", "p95": "fast"})
        with pytest.raises(ProfileError, match=r"time_to_first_token\.p95: expected a number"):
            parse_json_export(json.dumps(data), "run.json")

    def test_throughput_in_requests_per_minute(self) -> None:
        """A request rate per minute is converted to per second."""
        data = export(request_throughput={"unit": "requests/min", "avg": 600})
        assert parse_json_export(json.dumps(data), "x.json").requests_per_second == 10.0

    def test_not_json(self) -> None:
        """Broken JSON names the file, line and column."""
        with pytest.raises(ProfileError, match=r"^run\.json: line 2 column 1: not valid JSON"):
            parse_json_export('{"a": 1,\n}', "run.json")

    def test_not_an_export(self) -> None:
        """A JSON object without request throughput is not taken for a summary export."""
        with pytest.raises(ProfileError, match="no 'request_throughput' object"):
            parse_json_export('{"experiments": []}', "profile_export.json")

    def test_per_request_records_rejected(self, tmp_path: Path) -> None:
        """AIPerf's per-request .jsonl is refused with the file to give instead."""
        path = tmp_path / "profile_export.jsonl"
        path.write_text('{"metadata": {}}\n')
        with pytest.raises(ProfileError, match=r"profile_export_aiperf\.json"):
            read_sweep(path)


class TestAIPerf:
    def test_json_export(self) -> None:
        """AIPerf's summary: concurrency under input_config.loadgen, units requests/sec and ms."""
        (parsed,) = read_sweep(AIPERF / "profile_export_aiperf.json").points
        assert parsed.concurrency == 10.0
        assert parsed.concurrency_from == "config"
        assert parsed.requests_per_second == 9.8
        assert pytest.approx(parsed.ttft[0.95]) == 0.1689
        assert pytest.approx(parsed.itl[0.95]) == 0.00831
        assert pytest.approx(parsed.itl[0.1]) == 0.00672
        assert parsed.input_tokens == 1000.3

    def test_csv_export_same_values_as_json(self) -> None:
        """AIPerf's CSV (two tables, unit in the metric name) reads as its JSON does."""
        text = (AIPERF / "profile_export_aiperf.csv").read_text()
        (parsed,) = parse_csv_export(
            text, "artifacts/llama-concurrency10/profile_export_aiperf.csv"
        )
        (from_json,) = read_sweep(AIPERF / "profile_export_aiperf.json").points
        assert from_json.requests_per_second == parsed.requests_per_second
        assert from_json.ttft == pytest.approx(parsed.ttft)
        assert from_json.itl == pytest.approx(parsed.itl)
        assert parsed.concurrency == 10.0
        assert parsed.concurrency_from == "path"

    def test_nested_records(self) -> None:
        """Metrics nested under 'records' are found too."""
        inner = export()
        del inner["input_config"]
        data = {"records": inner, "input_config": {"loadgen": {"concurrency": 5}}}
        parsed = parse_json_export(json.dumps(data), "x.json")
        assert (parsed.concurrency, parsed.requests_per_second) == (5.0, 10.0)


class TestCsv:
    def test_genai_perf_csv_sweep_matches_json(self) -> None:
        """The CSV exports of the sweep give the JSON's figures (concurrency from the path)."""
        csv_files = sorted(GENAI_PERF.glob("*/profile_export_genai_perf.csv"))
        from_csv = read_sweep(csv_files).points
        from_json = read_sweep(GENAI_PERF).points
        assert tuple(p.concurrency for p in from_csv) == LEVELS
        assert {"path"} == {p.concurrency_from for p in from_csv}
        for c, j in zip(from_csv, from_json, strict=True):
            assert j.requests_per_second == c.requests_per_second
            assert j.ttft[0.95] == pytest.approx(c.ttft[0.95])
            assert j.itl[0.99] == pytest.approx(c.itl[0.99])
            assert j.input_tokens == c.input_tokens  # "1,000.30": thousands separator

    def test_concurrency_estimated_by_littles_law(self, tmp_path: Path) -> None:
        """Without a concurrency in the path, throughput x mean latency estimates it (noted)."""
        source = run_dir(50) / "profile_export_genai_perf.csv"
        target = tmp_path / "run-a" / "profile_export_genai_perf.csv"
        target.parent.mkdir()
        shutil.copy(source, target)
        sweep = read_sweep(target)
        (only,) = sweep.points
        assert only.concurrency_from == "little"
        assert pytest.approx(only.concurrency, rel=1e-3) == 16.4 * 3.0713
        assert any("Little's law" in note for note in sweep.notes)

    def test_bad_cell_names_row_and_column(self, tmp_path: Path) -> None:
        """A cell that is not a number names the file, row and column."""
        text = (run_dir(10) / "profile_export_genai_perf.csv").read_text()
        text = text.replace("168.90", "oops", 1)
        with pytest.raises(ProfileError) as caught:
            parse_csv_export(text, "c10.csv")
        assert str(caught.value) == "c10.csv: row 2, column 6 (p95): expected a number, got 'oops'"

    def test_csv_without_throughput(self) -> None:
        """A CSV that is not an export says what is missing."""
        with pytest.raises(ProfileError, match="no 'Request Throughput' value"):
            parse_csv_export("Metric,avg\nTime To First Token (ms),3\n", "x.csv")

    def test_analyze_summary_is_a_whole_sweep(self) -> None:
        """GenAI-Perf's analyze summary CSV holds every run: one point per row, p99 only."""
        sweep = read_sweep(ANALYZE)
        assert tuple(p.concurrency for p in sweep.points) == LEVELS
        assert {"column"} == {p.concurrency_from for p in sweep.points}
        assert {0.99} == set(sweep.points[0].ttft)
        assert pytest.approx(sweep.points[3].ttft[0.99]) == 0.236
        assert sweep.points[3].input_tokens == 1000.0


class TestCapacityAtSlo:
    def test_interpolates_between_adjacent_levels(self) -> None:
        """Between the last run within the SLO and the first over it, values are interpolated."""
        points = [
            point(1, 2.0, ttft={0.95: 0.1}),
            point(2, 4.0, ttft={0.95: 0.3}),
            point(4, 6.0, ttft={0.95: 0.9}),
        ]
        result = capacity_at_slo(points, ttft=(0.95, 0.2))
        assert pytest.approx(result.requests_per_second) == 3.0
        assert pytest.approx(result.concurrency) == 1.5
        assert result.limited_by == "ttft"
        (reading,) = result.objectives
        assert pytest.approx(reading.margin) == 0.0

    def test_first_objective_reached_limits_and_other_margin_reported(self) -> None:
        """With two objectives the one reached first sets the capacity; the other shows margin."""
        points = [
            point(10, 10.0, ttft={0.95: 0.2}, itl={0.95: 0.02}),
            point(50, 20.0, ttft={0.95: 0.4}, itl={0.95: 0.06}),
        ]
        result = capacity_at_slo(points, ttft=(0.95, 0.5), itl=(0.95, 0.04))
        assert result.limited_by == "itl"
        assert pytest.approx(result.requests_per_second) == 15.0  # itl at 0.04: halfway
        ttft, itl = result.objectives
        assert pytest.approx(ttft.value) == 0.3
        assert pytest.approx(ttft.margin) == 0.4
        assert pytest.approx(itl.margin) == 0.0

    def test_every_run_within_slo(self) -> None:
        """When every run meets the SLO the highest throughput is taken, and it says so."""
        points = [point(1, 2.0, ttft={0.95: 0.1}), point(2, 3.5, ttft={0.95: 0.2})]
        result = capacity_at_slo(points, ttft=(0.95, 1.0))
        assert (result.requests_per_second, result.limited_by) == (3.5, "sweep")
        assert "may be higher" in result.describe()

    def test_past_saturation_keeps_the_best_run(self) -> None:
        """When throughput falls past saturation, the earlier run's throughput is the capacity."""
        points = [point(100, 17.5, itl={0.95: 0.04}), point(250, 17.1, itl={0.95: 0.11})]
        result = capacity_at_slo(points, itl=(0.95, 0.05))
        assert result.requests_per_second == 17.5
        assert result.concurrency == 100

    def test_runs_after_the_first_miss_are_not_used(self) -> None:
        """A noisy run that meets the SLO again above the first miss cannot raise the figure."""
        points = [
            point(1, 2.0, ttft={0.95: 0.1}),
            point(2, 4.0, ttft={0.95: 0.3}),
            point(4, 8.0, ttft={0.95: 0.15}),
        ]
        assert pytest.approx(capacity_at_slo(points, ttft=(0.95, 0.2)).requests_per_second) == 3.0

    def test_order_of_points_does_not_matter(self) -> None:
        """Runs are ordered by concurrency whatever order the files came in."""
        points = [point(2, 4.0, ttft={0.95: 0.3}), point(1, 2.0, ttft={0.95: 0.1})]
        assert pytest.approx(capacity_at_slo(points, ttft=(0.95, 0.2)).requests_per_second) == 3.0

    def test_missed_at_lowest_concurrency(self) -> None:
        """An SLO missed at the lowest load is an error that shows the value and the target."""
        points = [point(1, 2.0, ttft={0.95: 0.6}, file="c1.json"), point(2, 4.0, ttft={0.95: 0.9})]
        with pytest.raises(ProfileError) as caught:
            capacity_at_slo(points, ttft=(0.95, 0.5))
        message = str(caught.value)
        assert message.startswith("c1.json: the SLO is missed already at the lowest concurrency")
        assert "ttft p95 0.6 s > 0.5 s" in message

    def test_example_sweep(self) -> None:
        """The shipped 8B sweep: p95 TTFT 0.5 s is reached between concurrency 10 and 50."""
        result = capacity_at_slo(read_sweep(GENAI_PERF).points, ttft=(0.95, 0.5), itl=(0.95, 0.05))
        t = (0.5 - 0.1689) / (1.543 - 0.1689)
        assert 9.8 + t * (16.4 - 9.8) == pytest.approx(result.requests_per_second)
        assert 10 + t * 40 == pytest.approx(result.concurrency)
        assert result.limited_by == "ttft"
        assert pytest.approx((result.input_tokens, result.output_tokens)) == (1000.3, 127.6)
        assert result.levels == LEVELS
        itl = result.objectives[1]
        assert 0.00831 + t * (0.0204 - 0.00831) == pytest.approx(itl.value)


class TestQuantiles:
    def test_exact_quantile_used_without_note(self) -> None:
        """The SLO's quantile in the export is read as is."""
        points = [point(1, 2.0, ttft={0.9: 0.1, 0.99: 0.2}), point(2, 4.0, ttft={0.9: 0.3})]
        result = capacity_at_slo(points, ttft=(0.9, 0.2))
        assert result.objectives[0].quantile_used == 0.9
        assert result.notes == ()

    def test_nearest_higher_quantile_used_and_said(self) -> None:
        """p95 absent, p90 and p99 present: p99 is read (conservative) and a note says so."""
        points = [
            point(1, 2.0, ttft={0.9: 0.05, 0.99: 0.1}),
            point(2, 4.0, ttft={0.9: 0.1, 0.99: 0.3}),
        ]
        result = capacity_at_slo(points, ttft=(0.95, 0.2))
        assert pytest.approx(result.requests_per_second) == 3.0  # from p99, not p90
        assert result.objectives[0].quantile_used == 0.99
        assert result.notes == ("ttft: p95 is not in the export; p99 read instead (conservative)",)
        assert "p99 read" in result.describe()

    def test_analyze_summary_p99_for_a_p95_slo(self) -> None:
        """The analyze summary has p99 only: a p95 SLO is read at p99 (lower capacity)."""
        p99 = capacity_at_slo(read_sweep(ANALYZE).points, ttft=(0.95, 0.5), itl=(0.95, 0.05))
        p95 = capacity_at_slo(read_sweep(GENAI_PERF).points, ttft=(0.95, 0.5), itl=(0.95, 0.05))
        assert p99.requests_per_second < p95.requests_per_second
        assert p99.objectives[0].quantile_used == 0.99

    def test_no_quantile_high_enough(self) -> None:
        """A quantile above every one in the export is an error listing what there is."""
        points = [point(1, 2.0, ttft={0.5: 0.1, 0.9: 0.2}, file="c1.json")]
        with pytest.raises(ProfileError) as caught:
            capacity_at_slo(points, ttft=(0.95, 1.0))
        assert "c1.json: time_to_first_token: no time_to_first_token quantile at or above " in str(
            caught.value
        )
        assert "(have p50, p90)" in str(caught.value)

    def test_non_streaming_run_has_no_itl(self) -> None:
        """An ITL objective against a run without ITL (non-streaming) says how to fix it."""
        points = [point(1, 2.0, ttft={0.95: 0.1}, file="c1.json")]
        with pytest.raises(ProfileError, match="--streaming"):
            capacity_at_slo(points, itl=(0.95, 0.05))


class TestReadSweep:
    def test_missing_path(self, tmp_path: Path) -> None:
        """A missing file or directory is named."""
        with pytest.raises(ProfileError, match="nope: no such file or directory"):
            read_sweep(tmp_path / "nope")

    def test_directory_without_exports(self, tmp_path: Path) -> None:
        """A directory with nothing to read says which names were looked for."""
        (tmp_path / "notes.txt").write_text("x")
        with pytest.raises(
            ProfileError, match=r"no GenAI-Perf or AIPerf export .*genai_perf\.json"
        ):
            read_sweep(tmp_path)

    def test_same_concurrency_twice(self, tmp_path: Path) -> None:
        """Two runs of the same kind at one concurrency are an error naming both files."""
        write(tmp_path / "a" / "profile_export_genai_perf.json", export())
        write(tmp_path / "b" / "profile_export_genai_perf.json", export())
        with pytest.raises(ProfileError) as caught:
            read_sweep(tmp_path)
        assert "concurrency 10 is also measured by" in str(caught.value)
        assert str(tmp_path / "a") in str(caught.value)
        assert str(tmp_path / "b") in str(caught.value)

    def test_several_files(self) -> None:
        """A list of files is one sweep."""
        files = [run_dir(c) / "profile_export_genai_perf.json" for c in (1, 10, 50)]
        assert tuple(p.concurrency for p in read_sweep(files).points) == (1.0, 10.0, 50.0)

    def test_bad_file_in_directory_named(self, tmp_path: Path) -> None:
        """One bad export in a sweep directory is named."""
        shutil.copytree(GENAI_PERF, tmp_path / "sweep")
        bad = tmp_path / "sweep" / run_dir(5).name / "profile_export_genai_perf.json"
        bad.write_text("{")
        with pytest.raises(ProfileError, match=f"^{bad}: line 1 column 2: not valid JSON"):
            read_sweep(tmp_path / "sweep")

    def test_glob_pattern_reads_a_flat_sweep(self, tmp_path: Path) -> None:
        """A pattern reads a sweep kept as flat files (as in a ConfigMap)."""
        for c in (1, 10, 50):
            source = run_dir(c) / "profile_export_genai_perf.json"
            shutil.copy(source, tmp_path / f"llama-c{c}_genai_perf.json")
        (tmp_path / "other-c5_genai_perf.json").write_text("{")  # not matched
        sweep = read_sweep(tmp_path / "llama-c*_genai_perf.json")
        assert tuple(p.concurrency for p in sweep.points) == (1.0, 10.0, 50.0)

    def test_glob_pattern_over_run_directories(self) -> None:
        """Wildcards in directory names pick one export per run directory."""
        sweep = read_sweep(GENAI_PERF / "*concurrency*" / "profile_export_genai_perf.csv")
        assert tuple(p.concurrency for p in sweep.points) == LEVELS
        assert all(f.endswith(".csv") for f in sweep.files)

    def test_glob_pattern_without_match(self, tmp_path: Path) -> None:
        """A pattern that matches nothing is an error naming it."""
        with pytest.raises(ProfileError, match="no file matches this pattern"):
            read_sweep(tmp_path / "*.json")


class TestBadValues:
    def test_negative_latency(self) -> None:
        """A negative latency is refused with its key."""
        data = export(time_to_first_token={"unit": "ms", "p95": -3})
        with pytest.raises(ProfileError, match=r"time_to_first_token\.p95: a latency must be >= 0"):
            parse_json_export(json.dumps(data), "run.json")

    def test_non_finite_value(self) -> None:
        """NaN is not a measurement."""
        data = export(request_throughput={"unit": "requests/sec", "avg": "nan"})
        with pytest.raises(ProfileError, match=r"request_throughput\.avg: expected a finite"):
            parse_json_export(json.dumps(data), "run.json")

    def test_zero_throughput_sweep(self) -> None:
        """A sweep where nothing completed gives no capacity (never a zero seed)."""
        points = [point(1, 0.0, ttft={0.95: 0.1}, file="c1.json")]
        with pytest.raises(ProfileError, match="no request completed within the SLO"):
            capacity_at_slo(points, ttft=(0.95, 1.0))

    def test_concurrency_zero_in_path(self, tmp_path: Path) -> None:
        """A path saying concurrency0 is not a load level."""
        data = export()
        del data["input_config"]
        del data["request_latency"]
        path = write(tmp_path / "x-concurrency0" / "profile_export_genai_perf.json", data)
        with pytest.raises(ProfileError, match="cannot tell the concurrency"):
            read_sweep(path)
