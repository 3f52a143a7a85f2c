"""The validate, lint, schema and import commands, run in-process through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.policy.loader import load_path
from autoscaler.policy.schema import policy_schema
from tests.policy.helpers import FIXTURES, POLICIES, base_doc, changed, dump

# dump(base_doc()) writes minReplicas on line 11 and maxReplicas on line 12, values at column 16.


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(dump(changed(base_doc(), "spec.maxReplicas", 0)))
    return path


@pytest.fixture
def linty_file(tmp_path: Path) -> Path:
    path = tmp_path / "linty.yaml"
    path.write_text(dump(changed(base_doc(), "spec.minReplicas", 1)))
    return path


class TestValidate:
    """nim-autoscaler validate."""

    def test_examples_are_valid(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 0 and one OK line per policy."""
        assert main(["validate", str(POLICIES)]) == 0
        out = capsys.readouterr().out
        assert out.count("OK    ") == len(load_path(POLICIES).policies)

    def test_error_exit_one_with_location(
        self, bad_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Exit 1; the error line names file, line, column and field."""
        assert main(["validate", str(bad_file), str(POLICIES)]) == 1
        out = capsys.readouterr().out
        assert f"ERROR {bad_file}:12:16: spec.maxReplicas: " in out

    def test_json_output(self, bad_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--output json gives valid, policies and located errors."""
        assert main(["validate", "--output", "json", str(bad_file)]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["valid"] is False
        assert report["policies"] == []
        assert [(e["line"], e["column"], e["field"]) for e in report["errors"]] == [
            (12, 16, "spec.maxReplicas")
        ]

    def test_json_output_valid(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A valid set reports valid: true and the policy keys."""
        assert main(["validate", "-o", "json", str(POLICIES / "kv-cache.yaml")]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["valid"] is True
        assert [p["key"] for p in report["policies"]] == ["nim-service/llama-3-1-8b-kv-cache"]


class TestLint:
    """nim-autoscaler lint."""

    def test_examples_are_clean(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 0 with no warning."""
        assert main(["lint", str(POLICIES)]) == 0
        assert "0 warning(s)" in capsys.readouterr().out

    def test_warning_exit_one(self, linty_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A finding gives exit 1 and a located warning with rule and hint."""
        assert main(["lint", str(linty_file)]) == 1
        out = capsys.readouterr().out
        assert f"WARNING {linty_file}:11:16: spec.minReplicas: " in out
        assert "[min-replicas-production]" in out
        assert "hint:" in out

    def test_ignore(self, linty_file: Path) -> None:
        """--ignore silences a rule."""
        assert main(["lint", "--ignore", "min-replicas-production", str(linty_file)]) == 0

    def test_json_output(self, linty_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--output json lists findings with rule, location and hint."""
        assert main(["lint", "-o", "json", str(linty_file)]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["clean"] is False
        assert [(f["rule"], f["line"]) for f in report["findings"]] == [
            ("min-replicas-production", 11)
        ]

    def test_invalid_file_fails_lint(
        self, bad_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An invalid file cannot be linted clean."""
        assert main(["lint", str(bad_file)]) == 1
        assert "ERROR" in capsys.readouterr().out


class TestSchema:
    """nim-autoscaler schema."""

    def test_prints_schema(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The printed JSON is the generated schema."""
        assert main(["schema"]) == 0
        assert json.loads(capsys.readouterr().out) == policy_schema()

    def test_writes_file(self, tmp_path: Path) -> None:
        """--output writes the schema to a file."""
        target = tmp_path / "s.json"
        assert main(["schema", "--output", str(target)]) == 0
        assert json.loads(target.read_text()) == policy_schema()


class TestImport:
    """nim-autoscaler import."""

    def test_fixture_with_notes(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Exit 0; the policy goes to stdout, notes to stderr and as comments."""
        assert main(["import", str(FIXTURES / "keda-vllm-queue.yaml")]) == 0
        captured = capsys.readouterr()
        assert "kind: ScalingPolicy" in captured.out
        assert "# Not converted" in captured.out
        assert "pollingInterval" in captured.err

    def test_output_file_validates(self, tmp_path: Path) -> None:
        """--output writes a policy that validates."""
        target = tmp_path / "policy.yaml"
        assert main(["import", str(FIXTURES / "hpa-gpu-cache.yaml"), "-o", str(target)]) == 0
        assert main(["validate", str(target)]) == 0

    def test_invalid_exit_one(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A manifest that cannot be converted gives exit 1 and every reason on stderr."""
        assert main(["import", str(FIXTURES / "nimservice-invalid-multinode.yaml")]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "spec.multiNode" in captured.err
        assert "spec.replicas" in captured.err

    def test_missing_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A missing input file is a clear error, exit 1."""
        assert main(["import", str(tmp_path / "nope.yaml")]) == 1
        assert "cannot read" in capsys.readouterr().err

    def test_not_utf8(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Binary input is rejected, exit 1."""
        path = tmp_path / "bin.yaml"
        path.write_bytes(b"\xff\xfe\x00")
        assert main(["import", str(path)]) == 1
        assert "not UTF-8" in capsys.readouterr().err
