"""Label selector parsing and matching (table tests, Kubernetes semantics)."""

from __future__ import annotations

import pytest

from autoscaler.kube.selector import SelectorError, parse_selector, selector_from_label_selector

LABELS = {"app": "llama", "tier": "gpu", "canary": "", "version": "v2"}

CASES = [
    ("", True, "empty selector matches everything"),
    ("app=llama", True, "equality"),
    ("app==llama", True, "double-equals equality"),
    ("app=mistral", False, "equality, other value"),
    ("app!=mistral", True, "inequality, other value"),
    ("app!=llama", False, "inequality, same value"),
    ("missing!=x", True, "inequality matches an absent key"),
    ("tier in (gpu, cpu)", True, "set membership with spaces"),
    ("tier in (cpu)", False, "set membership, not a member"),
    ("tier notin (cpu,tpu)", True, "set exclusion"),
    ("tier notin (gpu)", False, "set exclusion of own value"),
    ("missing notin (a)", True, "notin matches an absent key"),
    ("missing in (a)", False, "in needs the key"),
    ("tier", True, "existence"),
    ("missing", False, "existence of absent key"),
    ("!missing", True, "non-existence"),
    ("!tier", False, "non-existence of a present key"),
    ("canary=", True, "empty value equality"),
    ("app=llama,tier in (gpu),!missing,version!=v1", True, "conjunction all true"),
    ("app=llama,tier in (cpu)", False, "conjunction one false"),
    ("example.com/team=x", False, "prefixed key absent"),
    (" app = llama , tier ", True, "whitespace around tokens"),
]


class TestMatching:
    @pytest.mark.parametrize(("text", "expected", "annotation"), CASES, ids=[c[2] for c in CASES])
    def test_matches(self, text: str, expected: bool, annotation: str) -> None:
        """Each row: selector text against a fixed label set."""
        assert expected == parse_selector(text).matches(LABELS), annotation

    def test_prefixed_key_matches(self) -> None:
        """Keys with a DNS prefix are supported."""
        assert parse_selector("example.com/team=x").matches({"example.com/team": "x"})


class TestErrors:
    @pytest.mark.parametrize(
        "text",
        [
            "app in",
            "app in (a",
            "app in ()",
            "=x",
            "app=a b",
            "app=llama,",
            "!",
            "app ~ x",
            "app=a=b",
            "app=-bad-",
        ],
    )
    def test_invalid(self, text: str) -> None:
        """Malformed selectors raise SelectorError."""
        with pytest.raises(SelectorError):
            parse_selector(text)


class TestFromLabelSelector:
    def test_structured_to_string_round_trip(self) -> None:
        """matchLabels and matchExpressions render to a string that parses to the same meaning."""
        text = selector_from_label_selector(
            {
                "matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [
                    {"key": "t", "operator": "In", "values": ["y", "x"]},
                    {"key": "u", "operator": "NotIn", "values": ["z"]},
                    {"key": "e", "operator": "Exists"},
                    {"key": "d", "operator": "DoesNotExist"},
                ],
            }
        )
        assert text == "a=1,b=2,t in (x,y),u notin (z),e,!d"
        selector = parse_selector(text)
        assert selector.matches({"a": "1", "b": "2", "t": "x", "e": ""})
        assert not selector.matches({"a": "1", "b": "2", "t": "x", "e": "", "d": "1"})
