"""PromQL text building: safe escaping, label selectors and custom query templates.

Pure string functions used by :mod:`autoscaler.metrics.prometheus` (which builds the batched preset
queries and fills the custom ``prometheus`` query templates of policies) and by the policy model
and linter (:func:`validate_template`). Nothing here does I/O, and it imports nothing of the
project: it sits below both :mod:`autoscaler.policy` and :mod:`autoscaler.metrics`.

Escaping rules (the point of this module): a value is never pasted into PromQL as is.

* A label value goes inside a double-quoted PromQL string literal. :func:`quote_string` escapes
  ``\\``, ``"`` and every control character (``\\n``, ``\\r``, ``\\t``, ``\\uXXXX``), so the
  literal always ends where we mean it to and decodes back to exactly the value.
* A value used in a regex matcher (``=~``) is first regex-escaped (:func:`escape_regex`, RE2
  metacharacters) and then string-escaped, so ``.`` or ``|`` in a pod name matches itself only.
* Template placeholders ``{namespace}`` and ``{pods}`` must sit inside a double-quoted string;
  ``{selector}`` must sit outside strings (inside a ``{...}`` matcher list). Anything else is a
  template error, reported by :func:`validate_template` before the policy is used.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PLACEHOLDERS = frozenset({"namespace", "pods", "selector"})
"""Placeholders a custom query template may use."""

_IN_STRING = frozenset({"namespace", "pods"})
_OUTSIDE_STRING = frozenset({"selector"})

_REGEX_META = frozenset("\\.+*?()|[]{}^$")
_LABEL_NAME_INVALID = re.compile(r"[^A-Za-z0-9_]")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ValueError):
    """A custom query template cannot be filled (unknown placeholder, misplaced, bad selector)."""


# --------------------------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------------------------


def quote_string(value: str) -> str:
    """Escape ``value`` for use inside a double-quoted PromQL string literal (no quotes added).

    Args:
        value: Any text (a label value, a regex).

    Returns:
        The escaped text; ``'"' + result + '"'`` decodes (Go ``strconv.Unquote``, as PromQL
        does, and also JSON) to exactly ``value``.

    Raises:
        ValueError: ``value`` contains a lone surrogate, which no label value can hold (label
            values are UTF-8).
    """
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            msg = f"label values are UTF-8 text; got a lone surrogate U+{code:04X}"
            raise ValueError(msg)
        else:
            out.append(char)
    return "".join(out)


def string_literal(value: str) -> str:
    """A complete double-quoted PromQL string literal holding ``value``."""
    return f'"{quote_string(value)}"'


def escape_regex(value: str) -> str:
    """Escape RE2 metacharacters so the regex matches ``value`` literally (PromQL ``=~``)."""
    return "".join(f"\\{char}" if char in _REGEX_META else char for char in value)


def regex_alternation(values: Iterable[str]) -> str:
    """A regex matching exactly the given values: ``a|b|c`` with each value escaped.

    An empty input gives a regex that matches no label value at all (``$^x``: PromQL anchors
    regexes, and nothing follows the end of the text), so a query for "no pods" selects
    nothing rather than everything.
    """
    escaped = sorted({escape_regex(value) for value in values})
    if not escaped:
        # An anchored regex that cannot match any string: '$' followed by a character.
        return "$^x"
    return "|".join(escaped)


def label_name(key: str) -> str:
    """A Prometheus label name from a Kubernetes label key, as Kubernetes SD ``labelmap`` does.

    ``app.kubernetes.io/name`` becomes ``app_kubernetes_io_name``: every character outside
    ``[A-Za-z0-9_]`` becomes ``_``, and a leading digit gets a ``_`` prefix.
    """
    name = _LABEL_NAME_INVALID.sub("_", key)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def format_duration(seconds: float) -> str:
    """A PromQL duration (``60s``, ``1500ms``) for a positive number of seconds."""
    if not math.isfinite(seconds) or seconds <= 0:
        msg = f"a PromQL duration must be positive and finite, got {seconds!r}"
        raise ValueError(msg)
    millis = round(seconds * 1000)
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{max(millis, 1)}ms"


def namespace_matcher(namespaces: Iterable[str]) -> str:
    """``namespace=~"ns1|ns2"`` (escaped), or ``namespace="ns"`` for a single namespace."""
    return _namespace_matcher(frozenset(namespaces))


@functools.lru_cache(maxsize=32)
def _namespace_matcher(namespaces: frozenset[str]) -> str:
    """The matcher of a set of namespaces: the batches of a tick (and of the next) share one."""
    unique = sorted(namespaces)
    if len(unique) == 1:
        return f"namespace={string_literal(unique[0])}"
    return f"namespace=~{string_literal(regex_alternation(unique))}"


# --------------------------------------------------------------------------------------------
# Kubernetes label selectors -> PromQL matchers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a Kubernetes label selector."""

    key: str
    operator: str
    """One of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!``."""
    values: tuple[str, ...] = ()


_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s+(in|notin)\s*\((.*)\)\s*$", re.DOTALL)
_EQ_RE = re.compile(r"^\s*([^\s!=(),]+)\s*(==|!=|=)(.*)$", re.DOTALL)
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def _split_selector(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_selector(selector: str) -> list[Requirement]:
    """Parse a Kubernetes label selector string (``app=x,tier in (a,b),!canary``).

    Args:
        selector: The selector, as in ``kubectl get pods -l``.

    Returns:
        Its requirements, in order.

    Raises:
        TemplateError: The selector is not valid selector syntax.
    """
    requirements: list[Requirement] = []
    for part in _split_selector(selector):
        if match := _SET_RE.match(part):
            if match.group(1):
                msg = f"label selector {part.strip()!r}: '!' cannot be combined with in/notin"
                raise TemplateError(msg)
            values = tuple(v.strip() for v in match.group(4).split(",") if v.strip())
            requirements.append(Requirement(match.group(2), match.group(3), values))
        elif match := _EQ_RE.match(part):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), operator, (match.group(3).strip(),)))
        elif match := _EXISTS_RE.match(part):
            operator = "!" if match.group(1) else "exists"
            requirements.append(Requirement(match.group(2), operator))
        else:
            msg = f"label selector: cannot parse {part.strip()!r}"
            raise TemplateError(msg)
    return requirements


def selector_matchers(selector: str) -> str:
    """PromQL label matchers for a Kubernetes label selector, comma-separated.

    ``app=x,tier in (a,b),!canary,gpu`` becomes
    ``app="x",tier=~"a|b",canary="",gpu!=""``. Keys become Prometheus label names as
    :func:`label_name` describes; every value is escaped.

    Raises:
        TemplateError: The selector cannot be parsed or is empty.
    """
    matchers: list[str] = []
    for req in parse_selector(selector):
        name = label_name(req.key)
        if req.operator == "=":
            matchers.append(f"{name}={string_literal(req.values[0])}")
        elif req.operator == "!=":
            matchers.append(f"{name}!={string_literal(req.values[0])}")
        elif req.operator == "in":
            matchers.append(f"{name}=~{string_literal(regex_alternation(req.values))}")
        elif req.operator == "notin":
            matchers.append(f"{name}!~{string_literal(regex_alternation(req.values))}")
        elif req.operator == "exists":
            matchers.append(f'{name}!=""')
        else:
            matchers.append(f'{name}=""')
    if not matchers:
        msg = "the label selector is empty"
        raise TemplateError(msg)
    return ",".join(matchers)


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    text: str
    placeholder: str | None = None
    in_string: bool = False


def _scan(template: str) -> tuple[list[_Piece], list[str]]:
    """Split a template into literal text and placeholders, tracking PromQL string state."""
    pieces: list[_Piece] = []
    errors: list[str] = []
    literal: list[str] = []
    quote: str | None = None
    i = 0
    n = len(template)
    while i < n:
        char = template[i]
        if char == "{" and template.startswith("{{", i):
            literal.append("{")
            i += 2
            continue
        if char == "}" and template.startswith("}}", i):
            literal.append("}")
            i += 2
            continue
        if char == "{" and (match := _PLACEHOLDER.match(template, i)):
            name = match.group(1)
            if literal:
                pieces.append(_Piece("".join(literal)))
                literal = []
            if name not in PLACEHOLDERS:
                errors.append(
                    f"unknown placeholder {{{name}}} at offset {i}; known: "
                    + ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
                    + " (write {{ and }} for literal braces)"
                )
            elif name in _IN_STRING and quote != '"':
                errors.append(
                    f"{{{name}}} at offset {i} must be inside a double-quoted string, "
                    f'e.g. {name}=~"{{{name}}}"'
                    if name == "pods"
                    else f"{{{name}}} at offset {i} must be inside a double-quoted string, "
                    f'e.g. namespace="{{{name}}}"'
                )
            elif name in _OUTSIDE_STRING and quote is not None:
                errors.append(
                    f"{{{name}}} at offset {i} must be outside strings, inside a matcher list, "
                    'e.g. my_metric{namespace="{namespace}",{selector}}'
                )
            pieces.append(_Piece(match.group(0), name, quote == '"'))
            i = match.end()
            continue
        literal.append(char)
        if quote is None:
            if char in "\"'`":
                quote = char
        elif char == "\\" and quote != "`" and i + 1 < n:
            literal.append(template[i + 1])
            i += 1
        elif char == quote:
            quote = None
        i += 1
    if literal:
        pieces.append(_Piece("".join(literal)))
    if quote is not None:
        errors.append(f"unterminated string literal (opened with {quote})")
    return pieces, errors


def validate_template(query: str) -> list[str]:
    """Problems that prevent filling a custom query template; empty when it is usable.

    Checks unknown placeholders, placeholders in the wrong place (``{namespace}``/``{pods}``
    outside a double-quoted string, ``{selector}`` inside one) and unterminated strings. It
    does not parse the PromQL itself (Prometheus does, on the first query).
    """
    return _scan(query)[1]


def template_placeholders(query: str) -> set[str]:
    """The known placeholders used by a template."""
    return {piece.placeholder for piece in _scan(query)[0] if piece.placeholder in PLACEHOLDERS}


def fill_template(
    query: str,
    *,
    namespace: str,
    pods: Sequence[str],
    selector: str | None = None,
) -> str:
    """Fill a custom query template with escaped values.

    Args:
        query: The template (``{namespace}``, ``{pods}``, ``{selector}``; ``{{``/``}}``).
        namespace: The policy's namespace.
        pods: The target's pod names (``{pods}`` becomes their escaped regex alternation; no pods
            gives a regex that matches nothing).
        selector: The target's label selector, needed only if the template uses ``{selector}``.

    Returns:
        The PromQL text.

    Raises:
        TemplateError: The template is invalid, or uses ``{selector}`` without a selector.
    """
    pieces, errors = _scan(query)
    if errors:
        raise TemplateError("; ".join(errors))
    values: Mapping[str, str | None] = {
        "namespace": quote_string(namespace),
        "pods": quote_string(regex_alternation(pods)),
        "selector": selector_matchers(selector) if selector else None,
    }
    out: list[str] = []
    for piece in pieces:
        if piece.placeholder is None:
            out.append(piece.text)
            continue
        value = values[piece.placeholder]
        if value is None:
            msg = "the query uses {selector} but the target has no label selector"
            raise TemplateError(msg)
        out.append(value)
    return "".join(out)
