"""A policy directory of 1,000 files, some broken: the good ones load, errors are located, and a
reload of an unchanged directory parses nothing.

Broken files cover the ways a file goes wrong in practice: YAML syntax, a typo'd key, a wrong
type, a rule across fields, a duplicate policy, binary garbage and an empty document list. Each
error names ``FILE:LINE:COL``; the line is where the problem is.
"""

from __future__ import annotations

import re
from pathlib import Path

from autoscaler.policy.loader import PolicyDirectory, format_errors

GOOD = """\
apiVersion: nim-autoscaler/v1alpha1
kind: ScalingPolicy
metadata: {{name: p-{index:04d}, namespace: ns-{group}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: d-{index:04d}}}
  maxReplicas: {max}
  metrics:
    - kvCache: {{target: {{type: AverageValue, averageValue: 0.7}}}}
"""

# file index -> (content, expected 1-based line of the first error)
BROKEN: dict[int, tuple[str, int]] = {
    # An unclosed flow sequence: the parser notices on the next line.
    7: (GOOD.format(index=7, group=0, max=4).replace("maxReplicas: 4", "maxReplicas: [4"), 7),
    # A typo'd key: "unknown key" at the key (line 6), "required" at the mapping (line 5).
    70: (GOOD.format(index=70, group=0, max=4).replace("maxReplicas", "maxReplica"), 5),
    123: (GOOD.format(index=123, group=1, max=4).replace("maxReplicas: 4", "maxReplicas: many"), 6),
    456: (
        GOOD.format(index=456, group=4, max=4).replace(
            "maxReplicas: 4", "maxReplicas: 4\n  minReplicas: 9"
        ),
        6,
    ),
    # Same namespace/name as file 0: the later file's document is the duplicate.
    789: (GOOD.format(index=0, group=0, max=4), 1),
    901: ("\x00\x01\x02 not yaml at all \xff", 1),
    999: ("- just\n- a list\n", 1),
}


def write_directory(root: Path) -> Path:
    """1,000 policy files (``p-0000.yaml`` .. ``p-0999.yaml``), :data:`BROKEN` among them."""
    root.mkdir()
    for index in range(1000):
        content = BROKEN[index][0] if index in BROKEN else None
        path = root / f"p-{index:04d}.yaml"
        if content is None:
            path.write_text(GOOD.format(index=index, group=index % 10, max=4 + index % 5))
        else:
            path.write_bytes(content.encode("utf-8", "surrogateescape"))
    (root / ".hidden.yaml").write_text("not: a policy")  # skipped, as a ConfigMap's ..data
    (root / "README.txt").write_text("not yaml")  # not *.yaml: ignored
    return root


def test_thousand_files_good_ones_load_errors_located(tmp_path: Path) -> None:
    """990+ good policies load; each broken file is one error entry naming FILE:LINE:COL."""
    directory = PolicyDirectory(write_directory(tmp_path / "policies"))
    result = directory.reload()
    assert directory.parse_count == 1000
    assert len(result.policies) == 1000 - len(BROKEN)
    assert {e.file for e in result.errors} == {
        str(tmp_path / "policies" / f"p-{index:04d}.yaml") for index in BROKEN
    }
    for file_error in result.errors:
        index = int(Path(file_error.file).stem.split("-")[1])
        lines = format_errors(file_error.errors)
        assert lines, file_error
        pattern = re.compile(rf"^{re.escape(file_error.file)}:(\d+):(\d+): ")
        locations = [pattern.match(line) for line in lines]
        assert all(locations), lines
        first_line = min(int(m.group(1)) for m in locations if m is not None)
        assert first_line == BROKEN[index][1], lines


def test_reload_of_unchanged_directory_parses_nothing(tmp_path: Path) -> None:
    """A second reload parses no file; editing one file re-parses exactly that file."""
    root = write_directory(tmp_path / "policies")
    directory = PolicyDirectory(root)
    first = directory.reload()
    assert directory.parse_count == 1000
    again = directory.reload()
    assert directory.parse_count == 1000
    assert again.by_key() == first.by_key()
    # Fix a broken file: only it is parsed again, and its policy joins the others.
    (root / "p-0070.yaml").write_text(GOOD.format(index=70, group=0, max=6))
    fixed = directory.reload()
    assert directory.parse_count == 1001
    assert len(fixed.policies) == len(first.policies) + 1
    assert fixed.by_key()["ns-0/p-0070"].spec.max_replicas == 6
