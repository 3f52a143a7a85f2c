"""Pure tests of PromQL escaping, selectors and custom query templates."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.promql import (
    TemplateError,
    escape_regex,
    fill_template,
    format_duration,
    namespace_matcher,
    quote_string,
    regex_alternation,
    selector_matchers,
    string_literal,
    validate_template,
)

label_values = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(deadline=None)  # a loaded CI machine must not turn into a failure
@given(label_values)
def test_string_literal_round_trips(value: str) -> None:
    """Any label value decodes back to itself (JSON decoding is a subset of Go's Unquote)."""
    literal = string_literal(value)
    assert value == json.loads(literal)
    # Structure: the only unescaped quote characters are the two delimiters.
    assert re.fullmatch(r'"(?:[^"\\\n\r]|\\.)*"', literal, flags=re.DOTALL)


@settings(deadline=None)  # a loaded CI machine must not turn into a failure
@given(st.lists(label_values, min_size=1, max_size=5))
def test_regex_alternation_matches_exactly_the_values(values: list[str]) -> None:
    """The escaped alternation matches each value and nothing built from its metacharacters."""
    pattern = re.compile(f"^(?:{regex_alternation(values)})$", flags=re.DOTALL)
    for value in values:
        assert pattern.fullmatch(value)
    assert not pattern.fullmatch("\x00never-a-pod\x00") or "\x00never-a-pod\x00" in values


@settings(deadline=None)  # a loaded CI machine must not turn into a failure
@given(label_values)
def test_escaped_regex_matches_only_itself(value: str) -> None:
    """A regex-escaped value matches itself literally, e.g. '.' does not match 'x'."""
    pattern = re.compile(escape_regex(value), flags=re.DOTALL)
    assert pattern.fullmatch(value)
    if "." in value:
        assert not pattern.fullmatch(value.replace(".", "x"))


def test_no_pods_matches_nothing() -> None:
    """An empty pod list gives a regex that matches no value (not everything)."""
    pattern = re.compile(f"^(?:{regex_alternation([])})$")
    assert not pattern.fullmatch("")
    assert not pattern.fullmatch("a")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=x", 'app="x"'),
        ("app==x,tier!=db", 'app="x",tier!="db"'),
        ("tier in (a, b),env notin (dev)", 'tier=~"a|b",env!~"dev"'),
        ("gpu,!canary", 'gpu!="",canary=""'),
        ("app.kubernetes.io/name=nim", 'app_kubernetes_io_name="nim"'),
        ('app=a"}b', 'app="a\\"}b"'),
        ("tier in (a.b)", 'tier=~"a\\\\.b"'),
    ],
)
def test_selector_matchers(selector: str, expected: str) -> None:
    """Kubernetes selectors become escaped PromQL matchers."""
    assert expected == selector_matchers(selector)


@pytest.mark.parametrize("selector", ["", "a in b", "!a in (b)", "=x"])
def test_bad_selectors_raise(selector: str) -> None:
    """Unparseable selectors are template errors."""
    with pytest.raises(TemplateError):
        selector_matchers(selector)


def test_fill_template_escapes_every_placeholder() -> None:
    """{namespace}, {pods}, {selector} are escaped; {{ }} are literal braces."""
    query = fill_template(
        'sum(x{namespace="{namespace}",pod=~"{pods}",{selector}}) + count({{a="b"}})',
        namespace="ns",
        pods=['p"1', "p.2"],
        selector="app=web",
    )
    assert query == 'sum(x{namespace="ns",pod=~"p\\"1|p\\\\.2",app="web"}) + count({a="b"})'


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ('x{pod=~"{podz}"}', "unknown placeholder {podz}"),
        ("x{namespace={namespace}}", "must be inside a double-quoted string"),
        ("x{pod=~'{pods}'}", "must be inside a double-quoted string"),
        ('x{a="{selector}"}', "must be outside strings"),
        ('x{a="b}', "unterminated string"),
    ],
)
def test_validate_template_reports_problems(template: str, fragment: str) -> None:
    """Template problems are reported for the linter and refused when filling."""
    errors = validate_template(template)
    assert any(fragment in error for error in errors), errors
    with pytest.raises(TemplateError):
        fill_template(template, namespace="n", pods=["p"], selector="a=b")


def test_valid_template_has_no_errors() -> None:
    """The design document's example is a valid template."""
    assert validate_template('sum(rate(request_success_total{namespace="{namespace}"}[1m]))') == []


def test_selector_placeholder_without_selector_is_an_error() -> None:
    """{selector} needs the target's selector."""
    with pytest.raises(TemplateError, match="no label selector"):
        fill_template(
            "x{{selector}}".replace("{{selector}}", "{ {selector} }"), namespace="n", pods=[]
        )


def test_misc_helpers() -> None:
    """Durations and namespace matchers."""
    assert format_duration(60) == "60s"
    assert format_duration(1.5) == "1500ms"
    assert namespace_matcher(["a", "a"]) == 'namespace="a"'
    assert namespace_matcher(["b.c", "a"]) == 'namespace=~"a|b\\\\.c"'
    assert quote_string("a\x01") == "a\\u0001"
    with pytest.raises(ValueError, match="surrogate"):
        quote_string("\ud800")


@settings(deadline=None)  # a loaded CI machine must not turn into a failure
@given(st.lists(label_values, min_size=1, max_size=4), label_values)
def test_filled_template_keeps_its_structure(pods: list[str], value: str) -> None:
    """Whatever the pod names and selector value, the query keeps exactly its own literals."""
    template = 'sum(x{namespace="{namespace}",pod=~"{pods}",{selector}})'
    # Selector syntax cannot carry ',', '(' or ')' in a value, nor start one with '='.
    safe_value = value.replace(",", "").replace("(", "").replace(")", "").strip()
    while safe_value.startswith("="):
        safe_value = safe_value[1:].strip()
    selector = f"app={safe_value}" if safe_value else "app"
    query = fill_template(template, namespace="ns", pods=pods, selector=selector)
    literals = re.findall(r'"(?:[^"\\]|\\.)*"', query, flags=re.DOTALL)
    # Outside the string literals, the text is exactly the template's own.
    skeleton = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query, flags=re.DOTALL)
    expected_op = '!=""' if not safe_value else '=""'
    assert skeleton == f'sum(x{{namespace="",pod=~"",app{expected_op}}})'
    assert json.loads(literals[0]) == "ns"
    pattern = re.compile(f"^(?:{json.loads(literals[1])})$", flags=re.DOTALL)
    assert all(pattern.fullmatch(pod) for pod in pods)
    if safe_value:
        assert json.loads(literals[2]) == safe_value
