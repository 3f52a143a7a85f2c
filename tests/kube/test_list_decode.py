"""Item-by-item decoding of list bodies (the pod cache's initial list)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.kube.client import decode_list


def _decode(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    fields = decode_list(text, items.append)
    return fields, items


def test_items_are_handed_over_one_by_one_and_other_fields_returned() -> None:
    doc = {
        "kind": "PodList",
        "metadata": {"resourceVersion": "7", "continue": "abc"},
        "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
    }
    for text in (
        json.dumps(doc),
        json.dumps(doc, indent=2),
        json.dumps(doc, separators=(",", ":")),
    ):
        fields, items = _decode(text)
        assert fields == {"kind": "PodList", "metadata": doc["metadata"]}
        assert items == doc["items"]


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ('{"items": []}', []),
        ('{"items": null, "metadata": {}}', []),
        ("{}", []),
        ('{"metadata": {}}', []),
        ('{"items": [1, "x", {"a": 1}]}', [{"a": 1}]),
    ],
)
def test_empty_missing_and_odd_items(text: str, items: list[Any]) -> None:
    assert _decode(text)[1] == items


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"items": [{"a": 1}',
        '{"items": [{"a": 1},]}',
        '{"items": [] "metadata": {}}',
        '{"items": []} extra',
        '{"items" []}',
        "{1: 2}",
    ],
)
def test_malformed_bodies_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        _decode(text)


@given(
    st.dictionaries(
        st.sampled_from(["kind", "apiVersion", "metadata", "x"]),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=5), lambda c: st.lists(c, max_size=3)
        ),
    ),
    st.lists(st.dictionaries(st.text(max_size=4), st.integers()), max_size=5),
)
def test_agrees_with_json_loads(fields: dict[str, Any], items: list[dict[str, Any]]) -> None:
    text = json.dumps({**fields, "items": items})
    assert _decode(text) == (fields, items)
