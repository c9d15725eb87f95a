"""A run's progress (``ctx.progress``): validated, coalesced, stored with the run.

Progress is for people watching a run, never read back by the run, so it is not
journaled: a report a second would grow the journal of a long run without bound and
make every replay walk it. It is one value per run, overwritten: at most one write a
second (the latest report wins), the last report always written before the run finishes
or gives its worker back, and never backwards (a lower or equal report is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from . import serde
from .errors import ConfigurationError, LeaseLostError, StoreError

if TYPE_CHECKING:
    from .store.base import Store

log = logging.getLogger("surestep.progress")

INTERVAL = 1.0  # seconds between two writes of one run's progress
MAX_MESSAGE = 1000  # characters of a report's message kept


def report(progress: object, total: object = None, message: object = None) -> dict[str, Any]:
    """A report as stored (``n``, ``total``, ``message``, ``t``), or ``ConfigurationError``
    for numbers that are not finite (or a total that is not > 0) and a message not a str."""
    for name, value in (("progress", progress), ("total", total)):
        if value is None and name == "total":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(f"{name} is a number, not {value!r}")
        if not math.isfinite(value):
            raise ConfigurationError(f"{name} is a finite number, not {value!r}")
    if total is not None and total <= 0:  # type: ignore[operator]
        raise ConfigurationError(f"total is > 0, not {total!r}")
    if message is not None and not isinstance(message, str):
        raise ConfigurationError(f"message is a str, not {message!r}")
    return {
        "n": progress,
        "total": total,
        "message": None if message is None else message[:MAX_MESSAGE],
        "t": time.time(),
    }


class Progress:
    """One run's progress writer (made on the run's first report)."""

    def __init__(self, store: Store, run_id: str, fence: int) -> None:
        self.store = store
        self.run_id = run_id
        self.fence = fence
        self.last: dict[str, Any] | None = None  # the last report accepted
        self.due: dict[str, Any] | None = None  # accepted, not written yet
        self.written_at = -math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.writing: asyncio.Task[None] | None = None  # the last write, done or not

    def report(self, new: dict[str, Any]) -> None:
        last = self.last
        if last is not None and (
            new["n"] < last["n"]
            or (new["n"], new["total"], new["message"])
            == (last["n"], last["total"], last["message"])
        ):
            return  # never backwards, nothing repeated
        self.last = self.due = new
        wait = self.written_at + INTERVAL - time.monotonic()
        if wait <= 0:
            self._write_due()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(wait, self._write_due)

    def _write_due(self) -> None:
        self.timer = None
        if self.due is None:
            return
        due, self.due = self.due, None
        self.written_at = time.monotonic()
        self.writing = asyncio.ensure_future(self._write(due, self.writing))

    async def _write(self, due: dict[str, Any], previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous  # one at a time: a later report never lands before an earlier one
        try:
            await self.store.set_progress(
                self.run_id, self.fence, serde.dumps(due, "a progress report")
            )
        except (LeaseLostError, StoreError) as exc:  # advisory: the run goes on
            log.warning("run %s: its progress was not stored: %s", self.run_id, exc)

    async def settle(self) -> None:
        """Write the report still due and wait for the writes under way."""
        if self.timer is not None:
            self.timer.cancel()
        self._write_due()
        if self.writing is not None:
            await self.writing
