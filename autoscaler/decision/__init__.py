"""The pure decision core: policy + observation + history + now -> decision + new history.

No I/O, no clock, no globals; see :mod:`autoscaler.decision.types` for the data contract.
"""
