"""The controller's C-heap measures, on this machine's glibc (CI runs Debian: glibc)."""

from __future__ import annotations

import gc
from pathlib import Path

from autoscaler.controller import heap


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_trim_gives_freed_heap_memory_back() -> None:
    """Memory freed in the middle of the heap is returned to the system by trim()."""
    assert heap.tune_allocator()  # glibc: applies (and is harmless for the test process)
    blocks = [bytearray(2048) for _ in range(40_000)]  # ~80 MB of malloc'd (not mmap'd) blocks
    keep = blocks[-1]  # pins the top of the heap: freed pages below it stay without a trim
    del blocks
    before = _rss_kib()
    assert heap.trim()
    after = _rss_kib()
    assert before - after > 40_000, (before, after)  # KiB: most of the ~80 MB came back
    assert len(keep) == 2048


def test_tune_collector_raises_the_young_threshold_only() -> None:
    """Young collections get rarer; the older generations and a higher setting stay as set."""
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        heap.tune_collector()
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(heap.YOUNG_THRESHOLD * 2, 5, 7)
        heap.tune_collector()
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD * 2, 5, 7)
        gc.set_threshold(0)  # collection disabled by the embedding program: left disabled
        heap.tune_collector()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)


class _Node:
    """A weakly referenceable object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def test_collect_young_reclaims_cycles_and_keeps_the_older_schedule() -> None:
    """A reference cycle made since the last collection is reclaimed; every ``threshold[1]``
    young collections the middle generation is collected too (as the interpreter would)."""
    import weakref

    saved = gc.get_threshold()
    generations: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    try:
        gc.set_threshold(1_000_000, 3, 1_000)  # no automatic collection during the test
        gc.collect()
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        assert gone() is not None  # a cycle: reference counting alone keeps it
        gc.callbacks.append(record)
        heap.collect_young()
        assert gone() is None
        for _ in range(5):
            heap.collect_young()
        assert generations == [0, 0, 0, 1, 0, 0]
    finally:
        if record in gc.callbacks:
            gc.callbacks.remove(record)
        gc.set_threshold(*saved)
