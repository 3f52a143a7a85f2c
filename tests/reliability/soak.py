"""Long fuzz soak for ``make bench``: the same properties as the test suite, many more examples.

``soak(max_examples)`` runs, each with ``max_examples`` examples:

- the policy loader fuzz of :mod:`tests.policy.test_fuzz` (mutated documents and random bytes:
  valid policies or located ``PolicyError``\\ s, never another exception), reusing its strategies
  and property rather than copying them;
- malformed pod objects into :func:`autoscaler.kube.pods.pod_info` (a well-typed ``PodInfo``).

Not collected by pytest (no ``test_`` prefix); call it from the benchmark runner, e.g.
``python -c "from tests.reliability.soak import soak; soak(10_000)"``.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.policy.test_fuzz import assert_only_policies_or_located_errors, mutated_texts
from tests.reliability.strategies import GOOD_POD, mangled
from tests.reliability.test_bad_objects import check_pod


def soak(max_examples: int = 10_000) -> dict[str, float]:
    """Run every fuzz property with ``max_examples`` examples; returns seconds per property.

    Raises:
        AssertionError: (hypothesis' falsifying example) when a property fails.
    """
    config = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )

    @config
    @given(mutated_texts())
    def policy_texts(text: str) -> None:
        assert_only_policies_or_located_errors(text)

    @config
    @given(st.binary(max_size=300))
    def policy_bytes(data: bytes) -> None:
        assert_only_policies_or_located_errors(data)

    @config
    @given(mangled(GOOD_POD))
    def pods(obj: Any) -> None:
        check_pod(obj)

    timings: dict[str, float] = {}
    for name, prop in (
        ("policy_texts", policy_texts),
        ("policy_bytes", policy_bytes),
        ("pods", pods),
    ):
        started = time.perf_counter()
        prop()
        timings[name] = time.perf_counter() - started
    return timings


if __name__ == "__main__":
    print(soak())
