"""Memory of the long-running controller process: the collector's view and the C heap.

Each measure was measured at 1,000 policies x 10 pods (``benchmarks/bench_controller.py``):

* :func:`freeze`: after the first tick, what is alive is taken out of the cyclic garbage
  collector's view (see its docstring).
* :func:`tune_allocator`, at start-up, before worker threads exist:

  - the mmap threshold pinned at 128 KiB (as ``MALLOC_MMAP_THRESHOLD_`` would): the Prometheus
    answers (up to megabytes, read in worker threads) get mappings of their own, returned when
    freed. Left to itself glibc raises the threshold each time such a block is freed, after
    which the next ones come from a heap arena and stay: resident memory grew by 20-30 MB per
    tick without settling.
  - two arenas (``M_ARENA_MAX``, as ``MALLOC_ARENA_MAX=2`` would): a thread that allocates
    while another one does gets an arena of its own (up to eight per core) and what is freed
    there stays there. Six thread arenas held 13 MB with 1 MB in use; the GIL serialises the
    threads anyway.
* :func:`tune_collector` and :func:`collect_young`: a tick allocates about 200,000 container
  objects, nearly all freed by reference counting; at the default threshold (700) that was ~280
  young and 2 full collections per tick (0.06-0.07 s of CPU), at 50,000 two or three (each
  walking up to 50,000 objects still alive mid-tick: 0.04-0.13 s per tick). At
  :data:`YOUNG_THRESHOLD` none runs inside a 1,000-policy tick, and one young collection as the
  next tick starts (the older generations on the interpreter's schedule), when the last tick's
  objects are garbage, keeps cyclic garbage from piling up across ticks in a few milliseconds.
* :func:`trim`: after a tick the main heap kept ~18 MB free for reuse; ``malloc_trim`` gives the
  free pages back to the system.

Not glibc (musl, macOS): the C-heap measures do nothing. Only the live controller applies them;
tests and the simulator leave the process alone.
"""

from __future__ import annotations

import ctypes
import functools
import gc

MMAP_THRESHOLD = 128 * 1024
"""Allocations at least this large get their own mapping, returned to the system when freed."""
ARENAS = 2
"""The most malloc arenas the process may have."""
YOUNG_THRESHOLD = 200_000
"""Allocations of container objects, less deallocations, between two young collections (the
interpreter's default is 700): more than a 1,000-policy tick holds at once. Cyclic garbage
waits for the start of the next tick (:func:`collect_young`); everything else is freed as
before."""
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
"""``mallopt`` parameter numbers (glibc ``malloc.h``)."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``malloc_trim`` and ``mallopt``), else None."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


def tune_allocator() -> bool:
    """Pin the mmap threshold and cap the arenas (before worker threads start); whether both
    applied (False where the C library is not glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    pinned: bool = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    capped: bool = libc.mallopt(_M_ARENA_MAX, ARENAS) == 1
    return pinned and capped


def trim() -> bool:
    """Give the C heap's free pages back to the system; whether memory was released."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


def tune_collector() -> None:
    """Run young collections every :data:`YOUNG_THRESHOLD` allocations (never more often than
    the process was already set to); the older generations keep their thresholds."""
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def collect_young() -> None:
    """A young collection now (as a tick starts), or an older one when the interpreter's
    thresholds say it is due (as its own schedule would run them)."""
    _, middle, old = gc.get_count()
    _, every_middle, every_old = gc.get_threshold()
    generation = 0
    if middle >= every_middle:
        generation = 2 if old >= every_old else 1
    gc.collect(generation)


def freeze() -> None:
    """Take the objects alive now out of the cyclic garbage collector's view, once a process.

    After the first tick the heap mostly holds what lives as long as the process or is replaced
    and then freed by reference counting: policies, metric plans, the pod and target caches
    (about 400,000 container objects at 1,000 policies). The full collections that later ticks
    trigger walked all of them: 0.25 to 0.3 s of CPU, on most ticks; frozen, a full collection
    walks only what was allocated since. The price: a frozen object that ends up in a reference
    cycle is never reclaimed, so at most this one heap can leak. Nothing is done when something
    is frozen already (another loop in the process, or the program embedding it).
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
