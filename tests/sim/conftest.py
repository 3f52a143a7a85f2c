"""Shared fixtures of the simulator tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TRACES = Path(__file__).resolve().parents[2].parent / "shared" / "traces"
"""``shared/traces`` beside the clone (as in CI)."""


@pytest.fixture
def traces() -> Path:
    """The shared trace directory; fails when it is absent (CI has shared/ beside the clone)."""
    if not TRACES.is_dir():
        pytest.fail(f"shared traces not found at {TRACES}: clone the repo beside shared/")
    return TRACES
