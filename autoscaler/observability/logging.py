"""structlog configuration: JSON lines in-cluster, readable console output on a terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR


class _Stderr:
    """``sys.stderr`` as it is at each write: it may be replaced after logging is configured
    (output capture, an embedding program), and a replaced one may be closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop values of keys that look like secrets, wherever they come from."""
    for key in list(event_dict):
        lowered = key.lower()
        if any(word in lowered for word in ("token", "password", "secret", "authorization")):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog once for the process.

    Args:
        log_format: ``json``, ``console`` or ``auto`` (console when ``stream`` is a terminal).
        level: minimum level name (debug, info, warning, error).
        stream: where to write; default stderr.
    """
    out: Any = stream if stream is not None else _Stderr()
    use_console = log_format == "console" or (
        log_format == "auto" and hasattr(out, "isatty") and out.isatty()
    )
    renderer: structlog.typing.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
