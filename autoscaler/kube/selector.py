"""Kubernetes label selectors: parse the string form and match label sets.

The string is what a ``/scale`` subresource publishes in ``status.selector`` (and what a policy
may give in ``spec.selector``), e.g. ``app=llm,tier in (gpu, a100),!canary``. Semantics follow
``k8s.io/apimachinery/pkg/labels``: requirements are ANDed; ``!=`` and ``notin`` also match
when the key is absent; an empty selector matches everything. Used by
:mod:`autoscaler.kube.pods` to filter the cached pods; pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from autoscaler.errors import AutoscalerError


class SelectorError(AutoscalerError):
    """A label selector string that cannot be parsed."""


class Operator(StrEnum):
    """Requirement operators."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ANDed term of a selector."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if ``labels`` satisfy this requirement."""
        present = self.key in labels
        match self.operator:
            case Operator.EQUALS | Operator.IN:
                return present and labels[self.key] in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or labels[self.key] not in self.values
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed label selector (a conjunction of requirements)."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True if every requirement is satisfied (an empty selector matches everything)."""
        return all(req.matches(labels) for req in self.requirements)


_KEY_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_TOKEN_RE = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None:  # pragma: no cover - the pattern accepts any non-space character
            msg = f"cannot parse label selector {text!r} at {pos}"
            raise SelectorError(msg)
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def _check_key(key: str, text: str) -> str:
    if len(key) > 317 or not _KEY_RE.match(key):
        msg = f"invalid label key {key!r} in selector {text!r}"
        raise SelectorError(msg)
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        msg = f"invalid label value {value!r} in selector {text!r}"
        raise SelectorError(msg)
    return value


@lru_cache(maxsize=512)
def parse_selector(text: str) -> Selector:
    """Parse a label selector string.

    Args:
        text: e.g. ``app=llm,env!=dev,tier in (a,b),gpu,!canary``.

    Raises:
        SelectorError: with the offending part named.
    """
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    index = 0

    def peek() -> str | None:
        return tokens[index] if index < len(tokens) else None

    while index < len(tokens):
        current = tokens[index]
        if current == "!":
            index += 1
            key = peek()
            if key is None or key in {",", "(", ")", "=", "==", "!=", "!"}:
                msg = f"expected a key after '!' in selector {text!r}"
                raise SelectorError(msg)
            requirements.append(Requirement(_check_key(key, text), Operator.DOES_NOT_EXIST))
            index += 1
        else:
            key = _check_key(current, text)
            index += 1
            op = peek()
            if op is None or op == ",":
                requirements.append(Requirement(key, Operator.EXISTS))
            elif op in {"=", "==", "!="}:
                index += 1
                value = peek()
                if value is None or value == ",":
                    value_text = ""  # "key=" selects an empty value, as in Kubernetes
                else:
                    value_text = _check_value(value, text)
                    index += 1
                operator = Operator.NOT_EQUALS if op == "!=" else Operator.EQUALS
                requirements.append(Requirement(key, operator, frozenset({value_text})))
            elif op in {"in", "notin"}:
                index += 1
                if peek() != "(":
                    msg = f"expected '(' after {op!r} in selector {text!r}"
                    raise SelectorError(msg)
                index += 1
                values: set[str] = set()
                expect_value = True
                while True:
                    item = peek()
                    if item is None:
                        msg = f"unclosed '(' in selector {text!r}"
                        raise SelectorError(msg)
                    index += 1
                    if item == ")":
                        if expect_value and values:
                            values.add("")  # trailing comma: an empty value, as Kubernetes
                        break
                    if item == ",":
                        if expect_value:
                            values.add("")
                        expect_value = True
                        continue
                    if not expect_value:
                        msg = f"expected ',' or ')' in selector {text!r}"
                        raise SelectorError(msg)
                    values.add(_check_value(item, text))
                    expect_value = False
                if not values:
                    msg = f"{op!r} needs at least one value in selector {text!r}"
                    raise SelectorError(msg)
                operator = Operator.IN if op == "in" else Operator.NOT_IN
                requirements.append(Requirement(key, operator, frozenset(values)))
            else:
                msg = f"unexpected {op!r} after key {key!r} in selector {text!r}"
                raise SelectorError(msg)
        if index < len(tokens):
            if tokens[index] != ",":
                msg = f"expected ',' before {tokens[index]!r} in selector {text!r}"
                raise SelectorError(msg)
            index += 1
            if index == len(tokens):
                msg = f"trailing ',' in selector {text!r}"
                raise SelectorError(msg)
    return Selector(tuple(requirements))


def selector_from_label_selector(label_selector: Mapping[str, object]) -> str:
    """The string form of a structured ``LabelSelector`` (``matchLabels``/``matchExpressions``).

    Args:
        label_selector: e.g. a Deployment's ``spec.selector``.
    """
    parts: list[str] = []
    match_labels = label_selector.get("matchLabels") or {}
    if isinstance(match_labels, Mapping):
        parts.extend(f"{key}={value}" for key, value in sorted(match_labels.items()))
    expressions = label_selector.get("matchExpressions") or []
    if isinstance(expressions, list):
        for expr in expressions:
            if not isinstance(expr, Mapping):
                continue
            key, operator = str(expr.get("key", "")), str(expr.get("operator", ""))
            values = ",".join(sorted(str(v) for v in expr.get("values") or []))
            if operator == "In":
                parts.append(f"{key} in ({values})")
            elif operator == "NotIn":
                parts.append(f"{key} notin ({values})")
            elif operator == "Exists":
                parts.append(key)
            elif operator == "DoesNotExist":
                parts.append(f"!{key}")
    return ",".join(parts)
