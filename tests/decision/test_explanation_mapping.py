"""``Decision.explanation`` is built on first read and then reads exactly like its dict."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from autoscaler.decision.explain import Explanation, render_text
from autoscaler.decision.types import History

from .helpers import (
    decide,
    object_metric,
    observe,
    pods_metric,
    policy,
    running_pods,
    samples,
    target,
)


def _decision_explanation() -> Mapping[str, Any]:
    pol = policy([pods_metric("qps", 10.0), object_metric("rate", 100.0)], behavior={})
    obs = observe(4, running_pods(4), {"qps": samples(30.0, 25.0, 20.0, 25.0), "rate": target(1.0)})
    return decide(pol, obs, History(), 100.0).decision.explanation


class TestLaziness:
    """Nothing is built until the explanation is read, and it is built once."""

    def test_built_once_on_first_read(self) -> None:
        """The builder runs on the first access only."""
        calls: list[int] = []

        def build(source: int) -> dict[str, Any]:
            calls.append(source)
            return {"a": source, "b": [1, 2]}

        exp = Explanation(build, 7)
        assert calls == []
        assert exp["a"] == 7
        assert exp.get("b") == [1, 2]
        assert dict(exp) == {"a": 7, "b": [1, 2]}
        assert calls == [7]

    def test_every_read_sees_the_same_objects(self) -> None:
        """Nested values are the same objects on every read (one dict, not rebuilt)."""
        exp = _decision_explanation()
        assert exp["metrics"] is exp["metrics"]
        assert dict(exp)["limits"] is exp["limits"]


class TestReadsLikeADict:
    """Every way the callers read it gives what the dict gives."""

    def test_dict_and_json(self) -> None:
        """``dict(...)`` is a plain dict that ``json.dumps`` takes and round-trips."""
        exp = _decision_explanation()
        plain = dict(exp)
        assert type(plain) is dict
        assert json.loads(json.dumps(plain)) == plain
        assert list(plain) == list(exp)

    def test_mapping_protocol(self) -> None:
        """Indexing, ``get``, ``in``, ``len``, iteration and the views match the dict."""
        exp = _decision_explanation()
        plain = dict(exp)
        assert len(exp) == len(plain)
        assert list(exp) == list(plain)
        assert list(exp.keys()) == list(plain.keys())
        assert list(exp.items()) == list(plain.items())
        assert list(exp.values()) == list(plain.values())
        assert "limits" in exp
        assert "nope" not in exp
        assert exp.get("nope") is None
        assert exp.get("nope", 3) == 3
        assert exp["desiredReplicas"] == plain["desiredReplicas"]
        assert isinstance(exp, Mapping)

    def test_missing_key_raises_key_error(self) -> None:
        """A missing key raises ``KeyError`` as a dict does."""
        exp = _decision_explanation()
        with pytest.raises(KeyError, match="nope"):
            exp["nope"]

    def test_equality(self) -> None:
        """Equal to its dict (both ways), to an equal explanation, and not to others."""
        exp = _decision_explanation()
        plain = dict(exp)
        assert exp == plain
        assert plain == exp
        assert exp == _decision_explanation()
        assert exp != {**plain, "reason": "other"}
        assert exp != Explanation(lambda _: {}, 0)
        other: object = 1
        assert exp != other

    def test_repr_pickle_copy(self) -> None:
        """``repr`` shows the dict; pickling and copying give the plain dict."""
        exp = _decision_explanation()
        plain = dict(exp)
        assert repr(exp) == repr(plain)
        assert pickle.loads(pickle.dumps(exp)) == plain  # noqa: S301 - our own data
        assert copy.deepcopy(exp) == plain
        assert type(copy.copy(exp)) is dict

    def test_render_text_reads_it(self) -> None:
        """``render_text`` prints the same block from the lazy record as from its dict."""
        pol = policy([pods_metric("qps", 10.0)], behavior={})
        obs = observe(2, running_pods(2), {"qps": samples(30.0, 30.0)})
        decision = decide(pol, obs, History(), 50.0).decision
        eager = replace(decision, explanation=dict(decision.explanation))
        assert render_text(decision) == render_text(eager)
        assert "clamp [1, 10]" in render_text(decision)
