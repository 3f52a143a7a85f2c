"""Writing ``benchmarks/results/*.json``: portable, with no path of the machine that ran it.

A result may name files (a trace a scenario replays, a plot it drew). Paths under the
repository are written relative to its root, and paths beside it (the shared traces) relative
to the root too (``../shared/traces/...``), so the committed files read the same on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def portable(value: Any, root: Path = ROOT) -> Any:
    """``value`` (a JSON document) with the paths under ``root`` or its parent made relative."""
    if isinstance(value, str):
        text = value.replace(f"{root}/", "")
        return text.replace(f"{root.parent}/", "../")
    if isinstance(value, dict):
        return {portable(k, root): portable(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [portable(v, root) for v in value]
    return value


def write_json(path: Path, doc: Any, *, indent: int = 2) -> None:
    """Write ``doc`` to ``path`` as JSON with :func:`portable` paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(portable(doc), indent=indent) + "\n", encoding="utf-8")
