"""The ``algorithm: llm`` hot path's shortcuts: lazy rule texts and state shared between ticks."""

from __future__ import annotations

import json

from autoscaler.decision.explain import LAZY, resolve_text
from autoscaler.decision.types import History, Observation, PodInfo, PodPhase, PodSamples

from .helpers import decide, policy, record_rescale

QUEUE = {"queueDepth": {"target": {"type": "AverageValue", "averageValue": 4}}}
KV = {"kvCache": {"target": {"type": "AverageValue", "averageValue": 0.7}}}


def test_lazy_text_is_the_f_string() -> None:
    """``(LAZY, template, *args)`` formats as the f-string would, nested texts included."""
    ratio, need = 1.23456, 7
    inner = (LAZY, "need {} at {:.4g}", need, ratio)
    detail = {"need": need, "rule": (LAZY, "outer {:.3g}; {}", ratio, inner), "other": (1, 2)}
    assert resolve_text(detail) == {
        "need": need,
        "rule": f"outer {ratio:.3g}; need {need} at {ratio:.4g}",
        "other": (1, 2),
    }
    assert list(resolve_text(detail)) == ["need", "rule", "other"]


def test_histories_are_never_modified() -> None:
    """Later ticks share unchanged queue state with earlier histories but never modify them."""
    pol = policy([QUEUE, KV], algorithm="llm", max_replicas=50)
    history = History()
    kept: list[tuple[History, str]] = []
    current = 4
    for tick in range(40):
        now = 15.0 * tick
        pods = tuple(
            PodInfo(f"p{i}", PodPhase.RUNNING, ready=True, created_at=0.0, ready_at=100.0)
            for i in range(current)
        )
        queue = 2.0 + 3.0 * (tick % 7)  # rising (growth points) and falling
        metrics = {
            "queueDepth": PodSamples({p.name: queue for p in pods}, now),
            "kvCache": PodSamples({p.name: 0.5 for p in pods}, now),
        }
        result = decide(pol, Observation(current, current, pods, metrics), history, now)
        history = result.history
        kept.append((history, json.dumps(history.to_json())))
        desired = result.decision.desired_replicas
        if desired != current:
            history = record_rescale(pol, history, now, current, desired)
            current = desired
    assert history.queue.growth  # points were learned
    for old, dumped in kept:
        assert json.dumps(old.to_json()) == dumped
