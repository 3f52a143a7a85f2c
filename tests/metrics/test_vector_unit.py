"""The streaming decoder of instant-query bodies agrees with a full JSON decode on any body."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.metrics.vector import (
    KeyedRow,
    LabelStrings,
    QueryFailed,
    Series,
    _columns,
    _scan,
    decode_keyed,
    decode_series,
    parse_vector,
)

KEYS = ("namespace", "pod", "le")


def _body(series: list[dict[str, Any]], **extra: Any) -> bytes:
    """A body as Prometheus writes it: compact, label names sorted."""
    result = [{"metric": dict(sorted(s["metric"].items())), "value": s["value"]} for s in series]
    doc: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": result}}
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def _reference(body: bytes) -> list[Series]:
    return parse_vector(json.loads(body)["data"]["result"])


def _same(a: list[Series], b: list[Series]) -> bool:
    def key(s: Series) -> tuple[Any, ...]:
        value = "nan" if math.isnan(s.value) else s.value
        return (dict(s.labels), s.timestamp, value)

    return [key(s) for s in a] == [key(s) for s in b]


def _rows(body: bytes) -> list[KeyedRow]:
    return decode_keyed(body, "prom", KEYS, list)


def test_bucket_rows_in_the_canonical_layout() -> None:
    body = _body(
        [
            {"metric": {"le": "+Inf", "namespace": "a", "pod": "p-0"}, "value": [1.5, "3"]},
            {"metric": {"le": "0.1", "namespace": "a", "pod": "p-0"}, "value": [1.5, "NaN"]},
            {"metric": {"namespace": "a", "pod": "p-1"}, "value": [1.5, "-Inf"]},
            {"metric": {"job": "x", "namespace": "b"}, "value": [1.5, "2e-3"]},
        ]
    )
    rows = _rows(body)
    assert [r[0] for r in rows] == [
        ("a", "p-0", "+Inf"),
        ("a", "p-0", "0.1"),
        ("a", "p-1", None),
        ("b", None, None),
    ]
    assert rows[0][1] == 3.0
    assert math.isnan(rows[1][1])
    assert rows[2][1] == -math.inf
    assert rows[3][1] == 0.002
    assert _same(decode_series(body, "prom"), _reference(body))


def test_named_series_of_a_plain_selector_take_the_fast_path() -> None:
    """A recorded series read as is carries ``__name__``: skipped, not a slow fallback."""
    name = "namespace_pod_le:itl_bucket:rate2m"
    body = _body(
        [
            {
                "metric": {"__name__": name, "le": "+Inf", "namespace": "a", "pod": "p"},
                "value": [1, "3"],
            },
            {
                "metric": {"__name__": name, "le": "0.1", "namespace": "a", "pod": "p"},
                "value": [1, "1"],
            },
        ]
    )
    fast = [row for row, _, _ in _scan(body, KEYS)]  # raises _NotCanonical if not the fast path
    assert fast == [("a", "p", "+Inf"), ("a", "p", "0.1")]
    assert _rows(body) == [(("a", "p", "+Inf"), 3.0), (("a", "p", "0.1"), 1.0)]
    # Asked for, the name is a key like any other.
    assert decode_keyed(body, "prom", ("__name__", "le"), list)[0] == ((name, "+Inf"), 3.0)


def test_strings_are_shared_across_rows() -> None:
    body = _body(
        [{"metric": {"le": le, "namespace": "ns", "pod": "p"}, "value": [1, "1"]} for le in "123"]
    )
    rows = _rows(body)
    assert rows[0][0][1] is rows[2][0][1]


def test_label_strings_serve_several_bodies_and_start_over_when_full() -> None:
    """One ``LabelStrings`` (a client's) serves every body, and still decodes once full."""
    strings = LabelStrings(limit=3)
    first = _body([{"metric": {"namespace": "ns", "pod": "p-1"}, "value": [1, "1"]}])
    second = _body([{"metric": {"namespace": "ns", "pod": "p-1"}, "value": [2, "2"]}])
    ((row_a, _),) = decode_keyed(first, "prom", ("namespace", "pod"), list, strings=strings)
    ((row_b, value),) = decode_keyed(second, "prom", ("namespace", "pod"), list, strings=strings)
    assert row_b == ("ns", "p-1")
    assert value == 2.0
    assert row_a == row_b
    for name in (b"x", b"y", b"z"):
        strings.get(name)
    assert strings.get(b"p-2") == "p-2"
    assert strings.get(b"x") == "x"


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"success","data":{"resultType":"vector","result":[]}}',
        b'{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}',
        b'{"status":"success","data":{"resultType":"vector","result":[]},"warnings":["w"]}',
        b'{ "status": "success", "data": {"resultType": "vector", "result": ['
        b'{"value": [1, "2"], "metric": {"pod": "p"}}]}}',
        b'{"status":"success","data":{"resultType":"vector","result":['
        b'{"metric":{"pod":"p\\"}{\\u00e9"},"value":[1,"2"]}]}}',
        b'{"status":"success","data":{"resultType":"vector","result":['
        b'{"metric":{"pod":"a","pod":"b"},"value":[1,"2"]}]}}',
    ],
)
def test_other_layouts_fall_back_to_the_json_decoder(body: bytes) -> None:
    assert _same(decode_series(body, "prom"), _reference(body))
    expected = [(tuple(s.labels.get(k) for k in KEYS), s.value) for s in _reference(body)]
    assert _rows(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"p"},'
        b'"value":[1,"2"]},{"metric":{"pod":"q"},"val',
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"p"},'
        b'"value":[1,"2"]}]}}trailing',
        b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"p"},'
        b'"value":[1,"x"]}]}}',
        b'{"status":"success"}',
    ],
)
def test_malformed_bodies_are_query_errors(body: bytes) -> None:
    for decode in (lambda: decode_series(body, "prom"), lambda: _rows(body)):
        with pytest.raises(QueryFailed) as info:
            decode()
        assert "malformed response" in info.value.detail


def test_a_consumer_restarts_cleanly_when_the_fast_path_gives_up() -> None:
    """The fast path reads the first series, then meets a layout it does not handle."""
    body = (
        b'{"status":"success","data":{"resultType":"vector","result":['
        b'{"metric":{"pod":"a"},"value":[1,"1"]},{"metric":{"pod":"b"}, "value":[1,"2"]}]}}'
    )
    calls: list[int] = []

    def consume(rows: Any) -> dict[str | None, float]:
        calls.append(1)
        return {labels[1]: value for labels, value in rows}

    assert decode_keyed(body, "prom", KEYS, consume) == {"a": 1.0, "b": 2.0}
    assert len(calls) == 2


_label = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)


@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(["le", "namespace", "pod", "x_y", "__name__"]), _label),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=6,
    )
)
def test_any_body_decodes_as_the_json_decoder_does(
    items: list[tuple[dict[str, str], float]],
) -> None:
    series = [
        {"metric": labels, "value": [1700000000.5, _prom_float(value)]} for labels, value in items
    ]
    body = _body(series)
    assert _same(decode_series(body, "prom"), _reference(body))
    fast = _rows(body)
    slow = [(tuple(s.labels.get(k) for k in KEYS), s.value) for s in _reference(body)]
    assert [r[0] for r in fast] == [r[0] for r in slow]
    assert all(
        (math.isnan(a[1]) and math.isnan(b[1])) or a[1] == b[1]
        for a, b in zip(fast, slow, strict=True)
    )


def _prom_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _series(pod: str, value: str, name: str | None = None) -> bytes:
    named = f'"__name__":"{name}",' if name else ""
    return (
        f'{{"metric":{{{named}"le":"0.1","namespace":"ns","pod":"{pod}"}},'
        f'"value":[1700000000.5,"{value}"]}}'
    ).encode()


_HEAD = b'{"status":"success","data":{"resultType":"vector","result":['


@pytest.mark.parametrize("name", [None, "x_bucket"])
def test_whole_answers_read_at_once_match_the_json_decoder(name: str | None) -> None:
    """Many series with exactly the keyed labels (named or not), values of every form."""
    forms = ["0.5", "NaN", "+Inf", "-Inf", "1e-05", "12"]
    series = b",".join(_series(f"p{i}", forms[i % len(forms)], name) for i in range(600))
    body = _HEAD + series + b']},"warnings":["w"]}'
    assert _columns(body, KEYS, LabelStrings()) is not None  # read at once, not series by series
    slow = [(tuple(s.labels.get(k) for k in KEYS), s.value) for s in _reference(body)]
    fast = _rows(body)
    assert [r[0] for r in fast] == [r[0] for r in slow]
    assert [repr(r[1]) for r in fast] == [repr(r[1]) for r in slow]


@pytest.mark.parametrize(
    "between",
    [b"]},", b", ", b";", b",,"],
    ids=["stray bracket and brace", "space", "semicolon", "two commas"],
)
def test_anything_but_one_comma_between_series_is_refused(between: bytes) -> None:
    """Series that each match, separated by anything else: the JSON decoder decides (it
    refuses these, or reads them as it reads them)."""
    body = _HEAD + _series("a", "1") + between + _series("b", "2") + b"]}}"
    assert _columns(body, KEYS, LabelStrings()) is None
    try:
        expected: Any = [(tuple(s.labels.get(k) for k in KEYS), s.value) for s in _reference(body)]
    except ValueError:
        expected = QueryFailed
    if expected is QueryFailed:
        with pytest.raises(QueryFailed):
            _rows(body)
    else:
        assert _rows(body) == expected


def test_an_escaped_label_is_read_series_by_series() -> None:
    """A backslash anywhere: not read at once (the whole-answer pattern has no escapes), and
    the series are read as the JSON decoder reads them."""
    body = _HEAD + _series("a", "1") + b"," + _series('b\\"x', "2") + b"]}}"
    assert _columns(body, KEYS, LabelStrings()) is None
    rows = _rows(body)
    assert [r[0] for r in rows] == [("ns", "a", "0.1"), ("ns", 'b"x', "0.1")]
    assert rows == [(tuple(s.labels.get(k) for k in KEYS), s.value) for s in _reference(body)]


@pytest.mark.parametrize(
    ("stamp", "canonical"),
    [
        (b"0", True),
        (b"0.25", True),
        (b"-1.5e+3", True),
        (b"1700000000", True),
        (b"1E9", True),
        (b"01", False),
        (b"1.", False),
        (b".5", False),
        (b"1e", False),
    ],
)
def test_a_timestamp_is_a_json_number(stamp: bytes, canonical: bool) -> None:
    """The whole-answer pattern takes exactly JSON's numbers as timestamps; anything else
    goes to the JSON decoder, which refuses it."""
    series = _series("a", "1").replace(b"1700000000.5", stamp)
    body = _HEAD + series + b"," + _series("b", "2") + b"]}}"
    assert (_columns(body, KEYS, LabelStrings()) is not None) is canonical
    if canonical:
        assert _rows(body) == [(("ns", "a", "0.1"), 1.0), (("ns", "b", "0.1"), 2.0)]
    else:
        with pytest.raises(QueryFailed):
            _rows(body)
