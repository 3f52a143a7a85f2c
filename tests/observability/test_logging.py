"""Log configuration: where lines go when standard error is replaced after configuration."""

from __future__ import annotations

import io
import json
import sys

import pytest
import structlog

from autoscaler.observability.logging import configure_logging


def test_lines_follow_stderr_replaced_after_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Configured on one stderr, logging writes to the one in place at each line (a closed
    earlier one, as output capture leaves it, is not written to)."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("json", "info")
    try:
        first.close()
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        structlog.get_logger("test").warning("tick", policy="nim/a")
        line = json.loads(second.getvalue())
        assert (line["event"], line["policy"], line["level"]) == ("tick", "nim/a", "warning")
    finally:
        structlog.reset_defaults()
