"""The cyclic garbage collector's threshold while an engine executes runs here.

Each run in flight holds a task, coroutines, futures and contexts: containers the
collector walks at every collection of the youngest generation (after 700 net
allocations by default) while they live, and again in the older generations. With a
thousand short workflows in flight that walk was a quarter to a third of the event
loop's CPU per workflow (benchmarks/RESULTS.md). A larger first threshold lets most of a
run's objects die before the collector ever sees them.

While at least one executing engine is open, the first threshold is at least the
engine's ``gc_threshold`` (``GC_THRESHOLD`` by default); the later ones are kept. When the
last such engine closes, the thresholds from before come back, unless the application
changed them meanwhile. ``Engine(gc_threshold=None)`` leaves the collector alone.
Garbage in reference cycles then waits for more allocations before it is freed: at most
``gc_threshold`` container objects' worth.
"""

from __future__ import annotations

import gc
import threading

from .errors import ConfigurationError

GC_THRESHOLD = 10_000  # net container allocations between collections of the youngest

_lock = threading.Lock()
_holders: list[int] = []  # the threshold each open engine asked for
_before: tuple[int, ...] | None = None  # the thresholds before the first holder
_set: tuple[int, ...] | None = None  # the thresholds last set here


def check_threshold(threshold: object) -> int | None:
    """``threshold`` if it is a count > 0 or None; else ``ConfigurationError``."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
        raise ConfigurationError(
            f"gc_threshold must be a whole number > 0, or None to leave the garbage "
            f"collector alone, not {threshold!r}"
        )
    return threshold


def hold(threshold: int) -> None:
    """Keep the first threshold at least ``threshold`` until ``release(threshold)``."""
    global _before, _set
    with _lock:
        current = gc.get_threshold()
        if not _holders:
            _before = current
        _holders.append(threshold)
        first = max(max(_holders), current[0])
        if first != current[0]:
            _set = (first, *current[1:])
            gc.set_threshold(*_set)


def release(threshold: int) -> None:
    """Undo one ``hold(threshold)``; the last one puts the thresholds from before back,
    unless they were changed since this module set them."""
    global _before, _set
    with _lock:
        _holders.remove(threshold)
        if _holders or _before is None:
            return
        if _set is not None and gc.get_threshold() == _set:
            gc.set_threshold(*_before)
        _before = _set = None
