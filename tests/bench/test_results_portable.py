"""Committed benchmark results carry no path of the machine that produced them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.support.results import ROOT, portable, write_json

RESULTS = ROOT / "benchmarks" / "results"
ABSOLUTE = re.compile(r"(?:^|[\s=:,;(\"'])/(?!dev/)[A-Za-z0-9_.-]+/")
"""An absolute POSIX path inside a string: ``/dir/...`` at the start or after a separator
(``/dev/null`` and the like name no machine)."""


def strings(value: Any) -> list[str]:
    """Every string of a JSON document, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*strings(k), *strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_committed_result_has_no_absolute_path(path: Path) -> None:
    """No string in the file (value or key) holds an absolute path."""
    found = [s for s in strings(json.loads(path.read_text(encoding="utf-8"))) if ABSOLUTE.search(s)]
    assert found == []


def test_writer_makes_paths_relative_to_the_repository(tmp_path: Path) -> None:
    """Paths in the repository lose the root; the shared traces beside it become ``../``."""
    root = tmp_path / "repo"
    doc = {
        f"lengths={tmp_path}/shared/traces/conv.csv": [f"{root}/benchmarks/results/a.png", 3],
        "other": "req/s 1.5",
    }
    assert portable(doc, root) == {
        "lengths=../shared/traces/conv.csv": ["benchmarks/results/a.png", 3],
        "other": "req/s 1.5",
    }


def test_write_json_writes_the_portable_form(tmp_path: Path) -> None:
    """``write_json`` applies the rewrite to what it writes."""
    out = tmp_path / "out.json"
    write_json(out, {"trace": f"{ROOT.parent}/shared/traces/x.csv"})
    assert json.loads(out.read_text(encoding="utf-8")) == {"trace": "../shared/traces/x.csv"}
