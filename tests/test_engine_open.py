"""Opening an engine: concurrent first calls share one opening (one store opened, one
set of background tasks), and an opening that failed is tried again by the next call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from surestep import Engine, StoreError, WorkflowContext, function, workflow

BACKGROUND = ("surestep-timers", "surestep-schedules", "surestep-purge", "surestep-presence")


@function(name="engine_open.double")
async def double(x: int) -> int:
    return 2 * x


@workflow(name="engine_open.doubled")
async def doubled(ctx: WorkflowContext, n: int) -> int:
    return int(await ctx.step(double, n))


def background_tasks() -> list[str]:
    return sorted(task.get_name() for task in asyncio.all_tasks() if task.get_name() in BACKGROUND)


def count_opens(engine: Engine, fail_first: bool = False) -> list[int]:
    """Count the calls of the engine's ``store.open`` (the first one failing if asked)."""
    opens: list[int] = []
    real_open: Callable[[], Awaitable[None]] = engine.store.open

    async def counted() -> None:
        opens.append(1)
        await asyncio.sleep(0)  # the callers after the first arrive while it is in flight
        if fail_first and len(opens) == 1:
            raise StoreError("the store cannot be opened now")
        await real_open()

    engine.store.open = counted  # type: ignore[method-assign]
    return opens


async def test_concurrent_first_starts_open_the_engine_once(store_url: str) -> None:
    engine = Engine(store_url)
    opens = count_opens(engine)
    try:
        handles = await asyncio.gather(*(engine.start(doubled, n) for n in range(40)))
        assert len(opens) == 1
        assert background_tasks() == sorted(BACKGROUND)
        assert await asyncio.gather(*(h.result() for h in handles)) == [2 * n for n in range(40)]
        # Every start passed the same admission: all places are given back.
        assert engine.in_flight == 0
    finally:
        await engine.close()
    assert background_tasks() == []


async def test_a_failed_opening_fails_its_callers_and_the_next_call_opens(
    store_url: str,
) -> None:
    engine = Engine(store_url)
    opens = count_opens(engine, fail_first=True)
    try:
        outcomes = await asyncio.gather(
            *(engine.start(doubled, n) for n in range(8)), return_exceptions=True
        )
        assert len(opens) == 1
        assert all(isinstance(outcome, StoreError) for outcome in outcomes)
        assert background_tasks() == []
        handle = await engine.start(doubled, 21)
        assert len(opens) == 2
        assert await handle.result() == 42
        assert background_tasks() == sorted(BACKGROUND)
    finally:
        await engine.close()


async def test_a_cancelled_caller_leaves_the_opening_to_the_others(store_url: str) -> None:
    engine = Engine(store_url)
    opens = count_opens(engine)
    try:
        first = asyncio.ensure_future(engine.open())
        second = asyncio.ensure_future(engine.open())
        await asyncio.sleep(0)
        first.cancel()
        assert await second is engine
        with pytest.raises(asyncio.CancelledError):
            await first
        assert len(opens) == 1
        assert await (await engine.start(doubled, 5)).result() == 10
    finally:
        await engine.close()


async def test_close_during_the_opening_closes_what_it_opened(store_url: str) -> None:
    engine = Engine(store_url)
    opening = asyncio.ensure_future(engine.open())
    await asyncio.sleep(0)
    await engine.close()
    await opening
    assert background_tasks() == []
    # Closed, it opens again.
    async with engine:
        assert await (await engine.start(doubled, 1)).result() == 2
