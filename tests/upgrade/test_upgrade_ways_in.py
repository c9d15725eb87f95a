"""Schedules and event triggers on a store made by surestep 0.2: its LMDB directory
gains their databases, its PostgreSQL schema their tables, and both work at once."""

from __future__ import annotations

import asyncio

from test_upgrade import old_store  # noqa: F401 - the fixture

from surestep import Engine, WorkflowContext, event, workflow


async def test_a_0_2_store_takes_schedules_and_event_triggers(
    old_store: tuple[str, dict[str, str]],  # noqa: F811
) -> None:
    store, ids = old_store

    @workflow(name="upgraded_ticker", every=1)
    async def ticker(ctx: WorkflowContext) -> int:
        return 1

    @workflow(name="upgraded_welcome", triggers=[event("user.created")])
    async def welcome(ctx: WorkflowContext, user_id: str) -> str:
        return f"welcome {user_id}"

    async with Engine(store) as engine:
        [schedule] = await engine.schedules()
        assert schedule["workflow"] == "upgraded_ticker"
        [handle] = await engine.emit("user.created", {"user_id": "u-1"}, id="e-1")
        assert await handle.result() == "welcome u-1"

        async def ticked() -> None:
            while not await engine.store.idempotency_keys("schedule:upgraded_ticker:"):
                await engine.store.wait_changed(1.0)

        await asyncio.wait_for(ticked(), 60)
        for run_id in ids.values():  # the old runs are still there
            await engine.get_run(run_id)
