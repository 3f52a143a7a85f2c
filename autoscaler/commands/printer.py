"""The dry-run output: each decision printed with its explanation.

Readable blocks on a terminal (:func:`autoscaler.decision.explain.render_text`), JSON lines
otherwise (one :func:`~autoscaler.decision.record.decision_record` per decision, the schema of
``docs/decision-schema.md``, explanation included). Used by
``nim-autoscaler run --dry-run`` and by the demo, so both show decisions the same way.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from autoscaler.decision.explain import render_text
from autoscaler.decision.record import decision_record
from autoscaler.decision.types import Decision

PrintFormat = Literal["text", "json", "auto"]


class DecisionPrinter:
    """Callable that prints decisions (pass it as the loop's ``on_decision``)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        fmt: PrintFormat = "auto",
        *,
        changes_only: bool = False,
        clock_label: Literal["wall", "relative"] = "wall",
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        if fmt == "auto":
            fmt = "text" if self._stream.isatty() else "json"
        self._fmt = fmt
        self._changes_only = changes_only
        self._clock_label = clock_label
        self.printed = 0

    def _when(self, timestamp: float) -> str:
        if self._clock_label == "relative":
            minutes, seconds = divmod(int(timestamp), 60)
            hours, minutes = divmod(minutes, 60)
            return f"t+{hours:02d}:{minutes:02d}:{seconds:02d}"
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def __call__(self, decision: Decision) -> None:
        """Print one decision."""
        if self._changes_only and not decision.scale:
            return
        if self._fmt == "json":
            line = json.dumps(decision_record(decision), default=str, separators=(",", ":"))
            self._stream.write(line + "\n")
        else:
            arrow = (
                f"{decision.current_replicas} -> {decision.desired_replicas}"
                if decision.scale
                else f"{decision.current_replicas} (no change)"
            )
            header = f"[{self._when(decision.timestamp)}] {decision.policy}: {arrow}"
            self._stream.write(f"{header}  {decision.reason}\n")
            if decision.scale or not self._changes_only:
                body = render_text(decision)
                self._stream.write("".join(f"    {line}\n" for line in body.splitlines()))
        self._stream.flush()
        self.printed += 1
