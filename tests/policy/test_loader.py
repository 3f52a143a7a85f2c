"""The loader: exact error locations, multi-document files, directories and hot reload."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autoscaler.errors import PolicyError, PolicyFileError
from autoscaler.policy.loader import (
    LoadResult,
    PolicyDirectory,
    errors_to_json,
    format_errors,
    load_path,
    load_paths,
    load_text,
)
from tests.policy.helpers import POLICIES, base_doc, changed, dump

GOOD = """\
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: good, namespace: ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}
  minReplicas: 2
  maxReplicas: 4
  metrics:
    - queueDepth: {target: {type: AverageValue, averageValue: 4}}
"""

BAD_VALUE = """\
apiVersion: autoscaling.nim-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: bad, namespace: ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}
  maxReplicas: 4
  metrics:
    - queueDepth: {target: {type: AverageValue, averageValue: 4}}
    - kvCache:
        target:
          type: AverageValue
          averageValue: -0.5
"""


def where(error: PolicyError) -> tuple[int | None, int | None, str]:
    """(line, column, field) of an error."""
    assert error.location is not None
    return error.location.line, error.location.column, error.location.field


def only_file_error(text: str) -> PolicyFileError:
    result = load_text(text, "f.yaml")
    assert len(result.errors) == 1
    return result.errors[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            BAD_VALUE,
            [(12, 25, "spec.metrics[1].kvCache.target.averageValue")],
            id="bad-value-points-at-value",
        ),
        pytest.param(
            GOOD.replace("  maxReplicas: 4\n", ""),
            [(5, 3, "spec.maxReplicas")],
            id="missing-key-points-at-parent-mapping",
        ),
        pytest.param(
            GOOD.replace("  minReplicas: 2\n", "  minReplicas: 2\n  replicas: 3\n"),
            [(7, 3, "spec.replicas")],
            id="extra-key-points-at-key",
        ),
        pytest.param(
            GOOD.replace("  minReplicas: 2\n", "  minReplicas: 2\n  minReplicas: 3\n"),
            [(7, 3, "spec.minReplicas")],
            id="duplicate-key-points-at-second",
        ),
        pytest.param(
            GOOD.replace("kind: ScalingPolicy", "kind: [ScalingPolicy"),
            [(3, 9, "")],
            id="syntax-error-has-mark",
        ),
        pytest.param("- a\n- b\n", [(1, 1, "")], id="list-document"),
        pytest.param("just text\n", [(1, 1, "")], id="scalar-document"),
        pytest.param("~\n", [(1, 1, "")], id="explicit-null-document"),
        pytest.param(
            GOOD.replace("    - queueDepth", "    - queueDepth: 1\n      kvCache"),
            [(9, 7, "spec.metrics[0]")],
            id="metric-with-two-kinds",
        ),
    ],
)
def test_error_locations(text: str, expected: list[tuple[int, int, str]]) -> None:
    """Each kind of error is reported at the exact line and column (1-based)."""
    file_error = only_file_error(text)
    assert expected == [where(e) for e in file_error.errors]
    assert file_error.file == "f.yaml"


def test_all_errors_of_all_documents_are_reported() -> None:
    """A multi-document file reports every document's errors, located within the file."""
    second = GOOD.replace("name: good", "name: other").replace("maxReplicas: 4", "maxReplicas: 0")
    text = BAD_VALUE + "---\n" + second + "---\n" + "kind: Nope\n"
    file_error = only_file_error(text)
    assert [where(e) for e in file_error.errors] == [
        (12, 25, "spec.metrics[1].kvCache.target.averageValue"),
        (20, 16, "spec.maxReplicas"),
        (24, 1, "apiVersion"),
        (24, 1, "metadata"),
        (24, 1, "spec"),
        (24, 7, "kind"),
    ]


def test_file_with_an_error_contributes_no_policy() -> None:
    """A file is all-or-nothing: its valid documents are not loaded when another is bad."""
    result = load_text(GOOD + "---\n" + BAD_VALUE, "f.yaml")
    assert result.policies == ()
    assert not result.ok


def test_empty_documents_are_skipped() -> None:
    """Truly empty documents (only '---' or comments) are not errors."""
    result = load_text("---\n# nothing\n---\n" + GOOD + "---\n", "f.yaml")
    assert result.ok
    assert [p.key for p in result.policies] == ["ns/good"]
    assert result.policies[0].location.line == 4


def test_empty_file_has_no_policy_and_no_error() -> None:
    """An empty file is valid and empty."""
    result = load_text("", "f.yaml")
    assert result.ok
    assert result.policies == ()


def test_same_policy_twice_in_one_file() -> None:
    """Two documents with the same namespace/name are an error at the second one."""
    file_error = only_file_error(GOOD + "---\n" + GOOD)
    assert [where(e) for e in file_error.errors] == [(13, 11, "metadata")]
    assert "defined twice" in file_error.errors[0].message


def test_undecodable_bytes_are_a_located_policy_error() -> None:
    """Invalid UTF-8 gives a PolicyError with the line and column of the bad byte."""
    result = load_text(b"apiVersion: x\nkind: \xff\xfe\n", "f.yaml")
    assert [where(e) for e in result.all_errors()] == [(2, 7, "")]
    assert "not UTF-8" in result.all_errors()[0].message


def test_control_character_is_located() -> None:
    """Characters YAML forbids are reported with their position."""
    result = load_text("a: 1\nb: \x07\n", "f.yaml")
    assert [where(e) for e in result.all_errors()] == [(2, 4, "")]


def test_unhashable_key_is_an_error_not_a_crash() -> None:
    """A mapping used as a key is reported, not raised."""
    result = load_text("? {a: 1}\n: b\n", "f.yaml")
    assert not result.ok
    assert "cannot read value" in result.all_errors()[0].message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    """Pathologically nested YAML is reported as an error."""
    result = load_text("a: " + "[" * 5000 + "]" * 5000 + "\n", "f.yaml")
    assert not result.ok


def test_format_and_json_report() -> None:
    """Errors render as FILE:LINE:COL: field: message and as JSON objects."""
    result = load_text(BAD_VALUE, "f.yaml")
    assert format_errors(result.errors) == [
        "f.yaml:12:25: spec.metrics[1].kvCache.target.averageValue: "
        "must be greater than 0, got -0.5"
    ]
    assert json.loads(json.dumps(errors_to_json(result.errors))) == [
        {
            "file": "f.yaml",
            "line": 12,
            "column": 25,
            "field": "spec.metrics[1].kvCache.target.averageValue",
            "message": "must be greater than 0, got -0.5",
        }
    ]


def test_directory_one_bad_file_does_not_stop_others(tmp_path: Path) -> None:
    """Files load in sorted order; a bad file is reported and the good ones still load."""
    (tmp_path / "b.yaml").write_text(GOOD)
    (tmp_path / "a.yml").write_text(BAD_VALUE)
    (tmp_path / "c.yaml").write_bytes(b"\x00\xff garbage")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.yaml").write_text("ignored: [")
    result = load_path(tmp_path)
    assert [p.key for p in result.policies] == ["ns/good"]
    assert [Path(e.file).name for e in result.errors] == ["a.yml", "c.yaml"]


def test_duplicate_policy_across_files(tmp_path: Path) -> None:
    """The later file (sorted) is rejected with a pointer to the first definition."""
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    result = load_path(tmp_path)
    assert [p.location.file for p in result.policies] == [str(tmp_path / "a.yaml")]
    (error,) = result.all_errors()
    assert error.location is not None
    assert error.location.file == str(tmp_path / "b.yaml")
    assert f"already defined in {tmp_path / 'a.yaml'}:1:1" in error.message


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    """A path that does not exist is reported as an error for that path."""
    result = load_paths([tmp_path / "nope.yaml"])
    assert [str(e) for e in result.all_errors()] == [
        f"{tmp_path / 'nope.yaml'}: no such file or directory"
    ]


def test_example_policies_load() -> None:
    """Every example in policies/ validates."""
    result = load_path(POLICIES)
    assert result.ok, format_errors(result.errors)
    assert len(result.policies) >= 7


def bump(path: Path, text: str) -> None:
    """Rewrite a file and move its mtime forward so the change is visible whatever the clock."""
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))


class TestPolicyDirectory:
    """Hot reload: cheap re-reads and last-good versions."""

    def test_unchanged_files_are_not_parsed_again(self, tmp_path: Path) -> None:
        """A second reload with no change parses nothing."""
        (tmp_path / "a.yaml").write_text(GOOD)
        directory = PolicyDirectory(tmp_path)
        first = directory.reload()
        second = directory.reload()
        assert directory.parse_count == 1
        assert first.by_key().keys() == second.by_key().keys() == {"ns/good"}

    def test_the_result_is_kept_until_a_file_changes(self, tmp_path: Path) -> None:
        """Nothing changed: the last result itself (not combined again, once a combination
        left the policies' owners as they were); a changed, added or removed file, or the
        directory gone and back, gives a new one with the change."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD)
        directory = PolicyDirectory(tmp_path)

        def steady() -> LoadResult:
            result = directory.reload()
            kept = directory.reload()  # the owners now stand
            assert kept.by_key().keys() == result.by_key().keys()
            assert directory.reload() is kept
            assert directory.reload() is kept
            return kept

        first = steady()
        bump(path, GOOD.replace("maxReplicas: 4", "maxReplicas: 6"))
        changed = directory.reload()
        assert changed is not first
        assert changed.by_key()["ns/good"].spec.max_replicas == 6
        assert directory.reload() is changed  # same owners: kept at once
        other = tmp_path / "b.yaml"
        other.write_text(GOOD.replace("name: good", "name: other"))
        assert directory.reload().by_key().keys() == {"ns/good", "ns/other"}
        added = steady()
        assert added.by_key().keys() == {"ns/good", "ns/other"}
        other.unlink()
        assert directory.reload().by_key().keys() == {"ns/good"}
        moved = tmp_path.with_name(tmp_path.name + "-moved")
        tmp_path.rename(moved)
        assert not directory.reload().ok
        moved.rename(tmp_path)
        back = directory.reload()
        assert back.ok
        assert back.by_key().keys() == {"ns/good"}
        assert steady().by_key().keys() == {"ns/good"}

    def test_a_kept_result_keeps_the_incumbent(self, tmp_path: Path) -> None:
        """Two files with one key: every later reload without a change gives the same answer
        (the file that served the key keeps it), kept or combined again."""
        (tmp_path / "b.yaml").write_text(GOOD)
        directory = PolicyDirectory(tmp_path)
        directory.reload()
        (tmp_path / "a.yaml").write_text(GOOD.replace("maxReplicas: 4", "maxReplicas: 9"))
        results = [directory.reload() for _ in range(3)]
        for result in results:
            assert result.by_key()["ns/good"].spec.max_replicas == 4
            assert [Path(e.file).name for e in result.errors] == ["a.yaml"]
        assert results[2] is results[1]

    def test_without_node_trees_errors_still_locate_fields(self, tmp_path: Path) -> None:
        """The controller's directory drops node trees (memory); bad files keep FILE:LINE:field."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD)
        directory = PolicyDirectory(tmp_path, keep_nodes=False)
        loaded = directory.reload().policies[0]
        assert loaded.node is None
        where = loaded.locate(("spec", "maxReplicas"))
        assert (where.file, where.line, where.field) == (
            str(path),
            loaded.location.line,
            "spec.maxReplicas",
        )
        bump(path, GOOD.replace("maxReplicas: 4", "maxReplicas: -4"))
        errors = directory.reload().all_errors()
        assert [(e.location.field, e.location.line) for e in errors if e.location] == [
            ("spec.maxReplicas", GOOD.splitlines().index("  maxReplicas: 4") + 1)
        ]

    def test_changed_file_is_parsed_again(self, tmp_path: Path) -> None:
        """A change to a file is picked up on the next reload."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD)
        directory = PolicyDirectory(tmp_path)
        directory.reload()
        bump(path, GOOD.replace("maxReplicas: 4", "maxReplicas: 6"))
        result = directory.reload()
        assert directory.parse_count == 2
        assert result.by_key()["ns/good"].spec.max_replicas == 6

    def test_invalid_file_keeps_last_good_version(self, tmp_path: Path) -> None:
        """A file that becomes invalid keeps serving its last good policy and reports errors."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD)
        directory = PolicyDirectory(tmp_path)
        directory.reload()
        bump(path, GOOD.replace("maxReplicas: 4", "maxReplicas: -4"))
        result = directory.reload()
        assert result.by_key()["ns/good"].spec.max_replicas == 4
        assert result.stale == {"ns/good"}
        assert [e.location.field for e in result.all_errors() if e.location] == ["spec.maxReplicas"]
        bump(path, GOOD.replace("maxReplicas: 4", "maxReplicas: 5"))
        fixed = directory.reload()
        assert fixed.ok
        assert fixed.stale == frozenset()
        assert fixed.by_key()["ns/good"].spec.max_replicas == 5

    def test_new_invalid_file_has_no_last_good(self, tmp_path: Path) -> None:
        """A file that was never valid contributes nothing, only errors."""
        (tmp_path / "a.yaml").write_text(BAD_VALUE)
        result = PolicyDirectory(tmp_path).reload()
        assert result.policies == ()
        assert len(result.errors) == 1

    def test_deleted_file_drops_its_policies(self, tmp_path: Path) -> None:
        """Removing a file removes its policies."""
        path = tmp_path / "a.yaml"
        path.write_text(GOOD)
        directory = PolicyDirectory(tmp_path)
        directory.reload()
        path.unlink()
        assert directory.reload().policies == ()

    def test_incumbent_keeps_a_duplicated_key(self, tmp_path: Path) -> None:
        """A new file that sorts first cannot take over a policy another file already serves."""
        (tmp_path / "b.yaml").write_text(GOOD)
        directory = PolicyDirectory(tmp_path)
        directory.reload()
        (tmp_path / "a.yaml").write_text(GOOD.replace("maxReplicas: 4", "maxReplicas: 9"))
        result = directory.reload()
        assert result.by_key()["ns/good"].spec.max_replicas == 4
        assert [Path(e.file).name for e in result.errors] == ["a.yaml"]

    def test_missing_directory_is_an_error(self, tmp_path: Path) -> None:
        """A directory that does not exist is reported, not raised."""
        result = PolicyDirectory(tmp_path / "nope").reload()
        assert not result.ok
        assert result.policies == ()


def test_changed_helper_document_round_trips() -> None:
    """The YAML produced by the helpers keeps values (sanity check of the test helpers)."""
    doc = changed(base_doc(), "spec.maxReplicas", 7)
    assert load_text(dump(doc), "x").by_key()["ns/p"].spec.max_replicas == 7


def test_oversized_file_is_rejected(tmp_path: Path) -> None:
    """A file above the ConfigMap size limit is an error, not parsed."""
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "#" * (1024 * 1024) + "\n")
    result = load_path(path)
    assert result.policies == ()
    assert "more than the 1048576 bytes allowed" in result.all_errors()[0].message


def test_policy_directory_on_a_single_file_as_provider(tmp_path: Path) -> None:
    """A PolicyDirectory can watch one file; policies() returns the models in force."""
    path = tmp_path / "one.yaml"
    path.write_text(GOOD)
    directory = PolicyDirectory(path)
    assert [p.key for p in directory.policies()] == ["ns/good"]
    assert [p.key for p in directory.policies()] == ["ns/good"]
    assert directory.parse_count == 1
