"""spec.capacity.profile in the loader: relative paths, located errors, hot reload, CLI output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.policy.loader import PolicyDirectory, load_path
from tests.policy.helpers import POLICIES

SWEEP = Path(__file__).resolve().parents[1] / "data" / "profiles" / "genai-perf-8b-h100"
C50 = "meta_llama-3.1-8b-instruct-openai-chat-concurrency50/profile_export_genai_perf.json"
EXPECTED = 9.8 + (0.5 - 0.1689) / (1.543 - 0.1689) * (16.4 - 9.8)
"""Capacity of the test sweep at p95 TTFT 0.5 s / p95 ITL 0.05 s (TTFT reached first)."""

POLICY = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: ns}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: d}}
  minReplicas: 2
  maxReplicas: 20
  algorithm: llm
  slo:
    ttft: {{quantile: 0.95, target: 0.5}}
    itl: {{quantile: 0.95, target: 0.05}}
  capacity:
    profile: {profile}
"""


def policy_text(profile: str, name: str = "p") -> str:
    return POLICY.format(name=name, profile=profile)


@pytest.fixture
def setup(tmp_path: Path) -> Path:
    """A policy directory with the sweep copied under profiles/sweep."""
    policies = tmp_path / "policies"
    shutil.copytree(SWEEP, policies / "profiles" / "sweep")
    (policies / "p.yaml").write_text(policy_text("profiles/sweep"))
    return policies


def bump(path: Path) -> None:
    """Move a file's modification time forward (coarse file-system clocks)."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


class TestLoader:
    def test_capacity_filled_in_from_profile(self, setup: Path) -> None:
        """The policy comes back with the capacity at its SLO as the seed."""
        result = load_path(setup / "p.yaml")
        assert result.ok, result.errors
        (loaded,) = result.policies
        capacity = loaded.policy.spec.capacity
        assert capacity is not None
        assert pytest.approx(capacity.seed_requests_per_second) == EXPECTED
        assert loaded.profile is not None
        assert str(setup / "profiles" / "sweep") == loaded.profile.path
        assert loaded.profile.capacity.limited_by == "ttft"

    def test_relative_to_policy_file_not_working_directory(
        self, setup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The profile path is resolved from the policy file's directory."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        result = load_path(os.path.relpath(setup / "p.yaml", elsewhere))
        assert result.ok, result.errors

    def test_absolute_path(self, setup: Path, tmp_path: Path) -> None:
        """An absolute profile path is used as is."""
        (setup / "p.yaml").write_text(policy_text(str(setup / "profiles" / "sweep")))
        assert load_path(setup / "p.yaml").ok

    def test_single_export_file(self, setup: Path) -> None:
        """A profile may be one export file (one run: its throughput if it meets the SLO)."""
        (setup / "p.yaml").write_text(policy_text(f"profiles/sweep/{C50}"))
        result = load_path(setup / "p.yaml")
        assert not result.ok  # concurrency 50 misses p95 TTFT 0.5 s: nothing lower to go to
        (error,) = result.all_errors()
        assert "the SLO is missed already at the lowest concurrency" in error.message

    def test_missing_profile_located_at_the_field(self, setup: Path) -> None:
        """A missing profile is an error at spec.capacity.profile; other files still load."""
        (setup / "p.yaml").write_text(policy_text("profiles/none"))
        (setup / "q.yaml").write_text(policy_text("profiles/sweep", name="q"))
        result = load_path(setup)
        assert [loaded.key for loaded in result.policies] == ["ns/q"]
        (error,) = result.all_errors()
        assert error.location is not None
        assert (str(setup / "p.yaml"), 13, 14, "spec.capacity.profile") == (
            error.location.file,
            error.location.line,
            error.location.column,
            error.location.field,
        )
        assert f"capacity profile {setup / 'profiles' / 'none'}: no such file" in error.message

    def test_bad_export_named_in_the_error(self, setup: Path) -> None:
        """A bad value inside the sweep names the export file and the key."""
        bad = setup / "profiles" / "sweep" / C50
        data = json.loads(bad.read_text())
        data["time_to_first_token"]["unit"] = "minutes"
        bad.write_text(json.dumps(data))
        (error,) = load_path(setup / "p.yaml").all_errors()
        assert f"{bad}: time_to_first_token.unit: unknown time unit 'minutes'" in error.message
        assert error.location is not None
        assert error.location.field == "spec.capacity.profile"

    def test_requests_per_second_seed_reads_no_file(self, setup: Path) -> None:
        """A numeric seed needs no profile and carries no reading."""
        text = policy_text("x").replace("profile: x", "requestsPerSecond: 7.5")
        (setup / "p.yaml").write_text(text)
        (loaded,) = load_path(setup / "p.yaml").policies
        assert loaded.profile is None
        assert loaded.policy.spec.capacity is not None
        assert loaded.policy.spec.capacity.seed_requests_per_second == 7.5


class TestHotReload:
    def test_profile_change_reparses_the_policy(self, setup: Path) -> None:
        """Editing an export of the sweep re-reads the policy and changes its capacity."""
        directory = PolicyDirectory(setup)
        (first,) = directory.reload().policies
        count = directory.parse_count
        directory.reload()
        assert count == directory.parse_count  # nothing changed: nothing parsed
        export = setup / "profiles" / "sweep" / C50
        data = json.loads(export.read_text())
        data["time_to_first_token"]["p95"] = 831.0  # reached later: higher capacity
        export.write_text(json.dumps(data))
        bump(export)
        (second,) = directory.reload().policies
        assert count + 1 == directory.parse_count
        before = first.policy.spec.capacity
        after = second.policy.spec.capacity
        assert before is not None
        assert after is not None
        assert after.seed_requests_per_second is not None
        assert before.seed_requests_per_second is not None
        assert after.seed_requests_per_second > before.seed_requests_per_second

    def test_profile_appearing_loads_the_policy(self, setup: Path, tmp_path: Path) -> None:
        """A policy rejected for a missing profile loads once the profile is there."""
        (setup / "p.yaml").write_text(policy_text("profiles/later"))
        directory = PolicyDirectory(setup)
        assert not directory.reload().policies
        shutil.copytree(SWEEP, setup / "profiles" / "later")
        result = directory.reload()
        assert result.ok, result.errors
        assert [loaded.key for loaded in result.policies] == ["ns/p"]

    def test_broken_profile_keeps_last_good_policy(self, setup: Path) -> None:
        """A profile broken after loading keeps the last good policy in force (stale)."""
        directory = PolicyDirectory(setup)
        assert directory.reload().ok
        export = setup / "profiles" / "sweep" / C50
        export.write_text("{")
        bump(export)
        result = directory.reload()
        assert not result.ok
        assert frozenset({"ns/p"}) == result.stale
        assert [loaded.key for loaded in result.policies] == ["ns/p"]

    def test_run_added_to_sweep_directory(self, setup: Path) -> None:
        """A new run directory in the sweep is seen (the directory changed)."""
        directory = PolicyDirectory(setup)
        (before,) = directory.reload().policies
        assert before.profile is not None
        extra = setup / "profiles" / "sweep" / "run-concurrency20"
        extra.mkdir()
        data = json.loads((setup / "profiles" / "sweep" / C50).read_text())
        data["input_config"]["concurrency"] = 20
        data["request_throughput"]["avg"] = 12.0
        data["time_to_first_token"]["p95"] = 300.0
        (extra / "profile_export_genai_perf.json").write_text(json.dumps(data))
        (after,) = directory.reload().policies
        assert after.profile is not None
        assert 20.0 in after.profile.capacity.levels
        assert 20.0 not in before.profile.capacity.levels


class TestCommands:
    def test_example_policy_validates_with_its_capacity(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """policies/slo-profile.yaml validates and shows the capacity read from its sweep."""
        assert main(["validate", str(POLICIES / "slo-profile.yaml")]) == 0
        out = capsys.readouterr().out
        assert "capacity from" in out
        assert "req/s per replica" in out
        assert "limited by ttft" in out
        assert "lengths 1000 in / 128 out tokens" in out

    def test_validate_json_has_capacity(
        self, setup: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate -o json carries the capacity object of a policy with a profile."""
        assert main(["validate", "-o", "json", str(setup / "p.yaml")]) == 0
        (policy,) = json.loads(capsys.readouterr().out)["policies"]
        capacity = policy["capacity"]
        assert capacity["source"] == "profile"
        assert pytest.approx(capacity["requestsPerSecond"]) == EXPECTED
        assert capacity["limitedBy"] == "ttft"
        assert capacity["objectives"]["itl"]["quantileUsed"] == 0.95
        assert capacity["objectives"]["itl"]["margin"] > 0.5
        assert pytest.approx(capacity["inputTokens"]) == 1000.3

    def test_validate_reports_missing_profile(
        self, setup: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """validate exits 1 and prints the located error of a missing profile."""
        (setup / "p.yaml").write_text(policy_text("profiles/none"))
        assert main(["validate", str(setup / "p.yaml")]) == 1
        out = capsys.readouterr().out
        assert f"ERROR {setup / 'p.yaml'}:13:14: spec.capacity.profile: capacity profile" in out


class TestFlatSweep:
    def test_pattern_next_to_the_policy_and_hot_reload(self, tmp_path: Path) -> None:
        """A ConfigMap-style flat sweep: a pattern in the policy dir; a new run is picked up."""
        for c in (1, 10, 50):
            source = SWEEP / C50.replace("50", str(c), 1)
            shutil.copy(source, tmp_path / f"llama-c{c}_genai_perf.json")
        (tmp_path / "p.yaml").write_text(policy_text("'llama-c*_genai_perf.json'"))
        directory = PolicyDirectory(tmp_path)
        (before,) = directory.reload().policies
        assert before.profile is not None
        assert before.profile.capacity.levels == (1.0, 10.0, 50.0)
        shutil.copy(SWEEP / C50.replace("50", "5", 1), tmp_path / "llama-c5_genai_perf.json")
        (after,) = directory.reload().policies
        assert after.profile is not None
        assert after.profile.capacity.levels == (1.0, 5.0, 10.0, 50.0)
