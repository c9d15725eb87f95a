"""What ``ctx.batch`` returns: the AGNT5 SDK's batch result shapes, filled from steps.

Each item of a batch is one journaled step, so a replayed batch rebuilds the same
result from the journal: an item that completed has its output, one that failed has
its error (and the step's own exception), in input order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

COMPLETED = "completed"
FAILED = "failed"
PARTIAL_FAILURE = "partial_failure"


@dataclass
class BatchItemError:
    """Why an item failed: ``code`` is the exception's type name, ``message`` its text."""

    code: str | None = None
    message: str | None = None


@dataclass
class BatchItemResult:
    """One item: its position in the input, ``completed`` or ``failed``, its output (None
    when it failed), and its error and exception when it failed."""

    index: int
    run_id: str
    status: str
    item_id: str | None = None
    output: Any = None
    error: BatchItemError | None = None
    exception: BaseException | None = field(default=None, repr=False)

    @property
    def is_success(self) -> bool:
        return self.status == COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.status == FAILED


@dataclass
class BatchStats:
    """How many items the batch had, and how many completed and failed."""

    total_items: int = 0
    completed_items: int = 0
    failed_items: int = 0
    cancelled_items: int = 0
    pending_items: int = 0


@dataclass
class BatchResult:
    """The outcome of ``ctx.batch``: ``completed`` (every item), ``partial_failure``
    (some failed) or ``failed`` (all failed); the items in input order."""

    batch_id: str
    status: str
    results: list[BatchItemResult] = field(default_factory=list)
    stats: BatchStats = field(default_factory=BatchStats)

    @property
    def is_success(self) -> bool:
        return self.status == COMPLETED

    @property
    def is_partial_failure(self) -> bool:
        return self.status == PARTIAL_FAILURE

    @property
    def outputs(self) -> list[Any]:
        """Every item's output in input order; None for a failed item."""
        return [item.output for item in self.results]

    def successful_outputs(self) -> list[Any]:
        """The outputs of the items that completed, in input order."""
        return [item.output for item in self.results if item.is_success]

    def failed_items(self) -> list[BatchItemResult]:
        """The items that failed, in input order."""
        return [item for item in self.results if item.is_failed]


async def run_bounded(
    steps: Sequence[Awaitable[Any]],
    max_concurrency: int,
    stop_on_failure: bool,
    recorded: Callable[[int], bool],
) -> list[tuple[Any, Exception | None]]:
    """Await ``steps`` (each numbered already, in input order) at most ``max_concurrency``
    at a time, started in input order; each one's result or exception.

    With ``stop_on_failure``, once an item failed the items not started yet are dropped
    unrun, except those the journal has a record of (``recorded(index)``: they ran
    before a restart and replay as they ran), and the failure of the lowest index is
    raised: the same one on the first run and on replay, whichever failed first."""
    outcomes: list[tuple[Any, Exception | None]] = [(None, None)] * len(steps)
    gate = asyncio.Semaphore(max_concurrency)
    failures: dict[int, Exception] = {}

    async def one(index: int, step: Awaitable[Any]) -> None:
        async with gate:
            if failures and stop_on_failure and not recorded(index):
                _drop(step)
                return
            try:
                outcomes[index] = (await step, None)
            except Exception as exc:
                outcomes[index] = (None, exc)
                failures[index] = exc

    await asyncio.gather(*(one(i, step) for i, step in enumerate(steps)))
    if failures and stop_on_failure:
        raise failures[min(failures)]
    return outcomes


def _drop(step: Awaitable[Any]) -> None:
    """A step that will not run: its coroutine closed unstarted."""
    close = getattr(step, "close", None)
    if close is not None:
        close()
