"""A decision as JSON: the one record every output of the project is built on.

:func:`decision_record` is the serialised form of a :class:`~autoscaler.decision.types.Decision`,
described by ``docs/schema/decision.schema.json`` and ``docs/decision-schema.md``. Each output
adds only its own context to it, under names the schema also lists:

* ``run --dry-run`` JSON lines (:mod:`autoscaler.commands.printer`): the record with its
  explanation;
* ``explain --output json`` (:mod:`autoscaler.commands.explain`): plus ``observation`` (the pods
  and the metric samples it decided from);
* ``replay --output json`` (:mod:`autoscaler.commands.replay`): one record per tick, plus ``t``;
* the target's status annotation (:mod:`autoscaler.kube.recorder`): without the explanation, plus
  the target, bounds, outcome and fleet fields.

Pure: reads the decision (and its explanation, which builds it on first read).
"""

from __future__ import annotations

import math
from typing import Any

from autoscaler.decision.types import Condition, Decision

SCHEMA_ID = "https://nim-autoscaler.io/schema/decision.schema.json"
"""``$id`` of the JSON Schema the records follow."""


def condition_record(condition: Condition) -> dict[str, str]:
    """A condition as Kubernetes writes one (``status`` is ``"True"`` or ``"False"``)."""
    return {
        "type": condition.type.value,
        "status": "True" if condition.status else "False",
        "reason": condition.reason,
        "message": condition.message,
    }


def finite(value: float | None) -> float | None:
    """``value``, or None when it is missing or not finite (JSON has no NaN or Infinity)."""
    if value is None or not math.isfinite(value):
        return None
    return value


def decision_record(
    decision: Decision, *, explanation: bool = True, metrics: bool = True
) -> dict[str, Any]:
    """The JSON-ready record of a decision.

    Args:
        decision: The decision.
        explanation: Include the full arithmetic (``explanation``); building it costs more than
            the rest of the decision, so outputs that do not show it leave it out.
        metrics: Include ``metrics`` (a caller writing its own list leaves it out).

    Returns:
        ``policy``, ``time``, ``currentReplicas``, ``desiredReplicas``, ``scale``, ``reason``,
        ``conditions``, ``metrics`` (name, value, proposal per metric) and, if asked,
        ``explanation``.
    """
    values, proposals = decision.metric_values, decision.metric_proposals
    record: dict[str, Any] = {
        "policy": decision.policy,
        "time": decision.timestamp,
        "currentReplicas": decision.current_replicas,
        "desiredReplicas": decision.desired_replicas,
        "scale": decision.scale,
        "reason": decision.reason,
        "conditions": [condition_record(c) for c in decision.conditions],
    }
    if metrics:
        record["metrics"] = [
            {"name": name, "value": finite(values.get(name)), "proposal": proposals.get(name)}
            for name in dict.fromkeys([*values, *proposals])
        ]
    if explanation:
        record["explanation"] = dict(decision.explanation)
    return record
