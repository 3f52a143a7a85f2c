"""The pure decision core: policy + observation + history + now -> decision + new history.

No I/O, no clock, no globals beyond memo caches of pure functions. Entry points:
:func:`autoscaler.decision.core.decide` and :func:`autoscaler.decision.core.record_rescale`;
:func:`autoscaler.decision.explain.render_text` prints a decision's arithmetic. The data contract
is :mod:`autoscaler.decision.types`; callers are the control loop (:mod:`autoscaler.controller`),
the simulator (:mod:`autoscaler.sim`) and the replay (:mod:`autoscaler.replay`).
"""
