"""How many runs an engine's ``start`` lets in at once: the :class:`Admission` bound.

A start takes a place before its run is stored and gives it back once the run is no
longer executing here (finished, suspended, handed to a worker) or was not started. Past
the bound a start waits for a place, first come first served, or, when the engine was
configured to refuse, raises :class:`~surestep.errors.OverloadedError` at once.

Taking and giving back a place is O(1): a counter, and a queue of futures made only for
the starts that actually wait (``asyncio.Semaphore`` scans its waiters on every release,
quadratic under a burst of starts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from .errors import ConfigurationError, OverloadedError

WAIT = "wait"
REFUSE = "refuse"
ON_FULL = (WAIT, REFUSE)


class Admission:
    """At most ``limit`` places taken at once; ``on_full`` says what a start does past it
    (:data:`WAIT` or :data:`REFUSE`). Bound to the event loop its first waiter runs on."""

    __slots__ = ("_waiters", "limit", "on_full", "taken")

    def __init__(self, limit: int, on_full: str = WAIT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"max_in_flight must be a whole number >= 1, not {limit!r}")
        if on_full not in ON_FULL:
            raise ConfigurationError(f"on_full must be 'wait' or 'refuse', not {on_full!r}")
        self.limit = limit
        self.on_full = on_full
        self.taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """How many starts wait for a place now."""
        return len(self._waiters)

    def take_now(self) -> bool:
        """Take a place if there is one and nobody waits before: whether it was taken
        (the common case, without a coroutine)."""
        if self.taken < self.limit and not self._waiters:
            self.taken += 1
            return True
        return False

    async def take(self) -> None:
        """Take a place: at once while there is one and nobody waits before; else wait
        for one (``OverloadedError`` instead when configured to refuse)."""
        if self.take_now():
            return
        if self.on_full == REFUSE:
            raise OverloadedError.at_bound(self.taken, self.limit)
        place = asyncio.get_running_loop().create_future()
        self._waiters.append(place)
        try:
            await place  # give_back() counted the place as taken for it
        except asyncio.CancelledError:
            if not place.cancelled():
                self.give_back()  # handed a place, then cancelled: the next one gets it
            else:  # (give_back may have dropped it already)
                with contextlib.suppress(ValueError):
                    self._waiters.remove(place)  # rare: O(n) is fine here
            raise

    def give_back(self, _done: object = None) -> None:
        """Give a place back: to the first start waiting, if any. (``_done``: a task
        whose end gives it back, as a done callback.)"""
        while self._waiters:
            place = self._waiters.popleft()
            if not place.done():
                place.set_result(None)  # the place passes on: ``taken`` stays
                return
        self.taken -= 1
