"""The project's exception hierarchy.

::

    AutoscalerError
     +-- PolicyError          bad policy input (carries file, line, column, field path)
     |    +-- PolicyFileError one file with one or more located PolicyErrors
     +-- ImportConversionError  a manifest that cannot be converted to a policy
     +-- MetricsUnavailable   a metric could not be read (query error, timeout, bad response)
     +-- ActuationError       the cluster refused or failed a write/read
          +-- TargetNotFound  404 on the scale target
          +-- Forbidden       403: the RBAC rule that is missing is named in the message
          +-- Conflict        409 after all retries

Exceptions are for real faults. "No signal" from a metric and "hold" decisions are values
(:class:`autoscaler.decision.types.NoSignal`, :class:`autoscaler.decision.types.Decision`), not
exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass


class AutoscalerError(Exception):
    """Base class of every error raised on purpose by nim-autoscaler."""


@dataclass(frozen=True)
class Location:
    """Where in a policy source something is: file, 1-based line and column, field path."""

    file: str
    line: int | None = None
    column: int | None = None
    field: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}" if self.field else where


class PolicyError(AutoscalerError):
    """One problem in a policy document, with its location."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class PolicyFileError(PolicyError):
    """All problems found in one file, reported together."""

    def __init__(self, file: str, errors: list[PolicyError]) -> None:
        self.file = file
        self.errors = errors
        lines = "\n".join(str(e) for e in errors)
        super().__init__(f"{len(errors)} error(s) in {file}:\n{lines}", Location(file))


class ImportConversionError(AutoscalerError):
    """A manifest (HPA, NIMService, ScaledObject) cannot be converted; carries every reason."""

    def __init__(self, source: str, reasons: list[str]) -> None:
        self.source = source
        self.reasons = reasons
        super().__init__(f"cannot import {source}: " + "; ".join(reasons))


class MetricsUnavailable(AutoscalerError):
    """A metric query failed (error status, timeout, malformed body)."""


class ActuationError(AutoscalerError):
    """A Kubernetes read or write on a target failed."""


class TargetNotFound(ActuationError):
    """The scale target (or its /scale subresource) does not exist (HTTP 404)."""


class Forbidden(ActuationError):
    """The controller's service account lacks an RBAC rule (HTTP 403)."""


class Conflict(ActuationError):
    """A write lost a resourceVersion race more times than the retry budget allows (HTTP 409)."""
