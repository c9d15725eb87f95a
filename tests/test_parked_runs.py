"""What a run holds while it waits in its own code (parked): its task, its context and
its journal's state, not the row it was started from nor a copy of its arguments."""

from __future__ import annotations

import asyncio
import gc

from surestep import Engine, WorkflowContext, function, workflow
from surestep.store.base import RunInfo

RUNS = 20


@function(name="parked.inc")
async def inc(x: int) -> int:
    return x + 1


class Park:
    """Holds the runs of ``step_then_park`` until released; counts those inside."""

    inside = 0
    all_inside: asyncio.Event
    release: asyncio.Event


park = Park()


@workflow(name="parked.step_then_park")
async def step_then_park(ctx: WorkflowContext, i: int, payload: list[int]) -> int:
    x = await ctx.step(inc, i)
    park.inside += 1
    if park.inside == RUNS:
        park.all_inside.set()
    await park.release.wait()
    return x + len(payload)


async def test_a_parked_run_keeps_no_row_and_no_extra_task(store_url: str) -> None:
    park.inside, park.all_inside, park.release = 0, asyncio.Event(), asyncio.Event()
    async with Engine(store_url) as engine:
        before = asyncio.all_tasks()
        handles = [await engine.start(step_then_park, i, list(range(100))) for i in range(RUNS)]
        await park.all_inside.wait()
        gc.collect()
        ours = {h.run_id for h in handles}
        rows = [o for o in gc.get_objects() if type(o) is RunInfo and o.run_id in ours]
        assert rows == [], "a parked run's task keeps the row it was started from"
        # One task per run, and none besides (no waiter, timer or shield per run).
        added = asyncio.all_tasks() - before
        assert len([t for t in added if t.get_name().startswith("surestep-run-")]) == RUNS
        # Besides: the engine's lease heartbeat (started with the first run) and, on
        # PostgreSQL, the flush of a batched write in flight at this moment.
        others = sorted(t.get_name() for t in added if not t.get_name().startswith("surestep-run-"))
        assert len(others) <= 3, others
        assert all(n == "surestep-heartbeat" or n.startswith("surestep-pg-") for n in others)
        park.release.set()
        assert [await h.result() for h in handles] == [i + 1 + 100 for i in range(RUNS)]
