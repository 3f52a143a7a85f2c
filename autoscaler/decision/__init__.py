"""The pure decision core: policy + observation + history + now -> decision + new history.

No I/O, no clock, no globals. A policy is flattened once, when it is loaded
(:func:`autoscaler.decision.resolved.resolve`); the entry points take that resolved form:
:func:`autoscaler.decision.core.decide` and :func:`autoscaler.decision.core.record_rescale`;
:func:`autoscaler.decision.explain.render_text` prints a decision's arithmetic. The data contract
is :mod:`autoscaler.decision.types`; callers are the control loop (:mod:`autoscaler.controller`),
the simulator (:mod:`autoscaler.sim`) and the replay (:mod:`autoscaler.commands.replay`).
"""
