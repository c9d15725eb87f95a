"""Waiting for what no event announces (a commit by another engine, a status change)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait for ``await condition()`` to be true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


async def until_journaled(engine: Any, run_id: str, records: int) -> None:
    """Wait until the run's journal holds at least ``records`` records."""

    async def journaled() -> bool:
        return len(await engine.journal(run_id)) >= records

    await until(journaled)
