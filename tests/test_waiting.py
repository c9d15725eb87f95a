"""What a run waits for, told truthfully: the timer loop does not spin on timers that
are not its own, recovery answers for every run it takes (and names those it
leaves), a start that will wait for another version says so, and a run's status
says what it waits for. On both backends."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from surestep import Engine, RunFinishedError, WorkflowContext, workflow
from surestep.store.base import RunInfo


async def _stranded_sleep(engine: Engine, workflow_name: str, version: str, ago: float) -> str:
    """A run of ``version`` sleeping until ``ago`` seconds ago, as an engine serving that
    version leaves it."""
    run = RunInfo(
        run_id=f"{time.time_ns() // 1_000_000:012x}{'ab' * 10}",
        workflow=workflow_name,
        version=version,
        args=[],
        kwargs={},
    )
    fence = await engine.store.create_run(run, "elsewhere:1:x", 60.0)
    await engine.store.suspend(run.run_id, fence, time.time() - ago)
    return run.run_id


async def test_an_overdue_sleep_of_another_version_does_not_make_the_timer_loop_spin(
    store_url: str,
) -> None:
    """The timer loop sleeps until the next timer of a version it serves: a timer of a
    version served elsewhere, overdue, made that wait 0 s, and the loop spun."""

    @workflow(version="new")
    async def spin_nap(ctx: WorkflowContext) -> None:
        await ctx.sleep(3)

    waits: list[float] = []
    waited = asyncio.Event()
    async with Engine(store_url, execute=False) as client:
        await _stranded_sleep(client, "spin_nap", "old", ago=5)
    engine = Engine(store_url)
    wait_changed = engine.store.wait_changed

    async def counted(timeout: float) -> None:
        waits.append(timeout)
        waited.set()
        await wait_changed(timeout)

    engine.store.wait_changed = counted  # type: ignore[method-assign]
    async with engine:
        await asyncio.wait_for(waited.wait(), 30)
        assert waits[0] == 60.0  # no timer of its own: it waits for a change, or a minute
        assert await engine.store.next_wake({"spin_nap": "new"}) is None


async def test_recover_returns_a_handle_for_a_run_left_to_its_timer(store_url: str) -> None:
    @workflow
    async def nap_then_answer(ctx: WorkflowContext) -> str:
        await ctx.sleep(1.5)
        return "awake"

    async with Engine(store_url, inline_sleep=0.1) as first:
        started = await first.start(nap_then_answer)
        while (await first.get_run(started.run_id)).status != "waiting":
            await first.store.wait_changed(0.2)
    async with Engine(store_url, inline_sleep=0.1) as second:
        handles = await second.recover()
        assert [h.run_id for h in handles] == [started.run_id]
        assert await handles[0].result() == "awake"


async def test_recover_names_the_runs_it_leaves_for_another_version(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(version="v2")
    async def versioned_nap(ctx: WorkflowContext) -> None:
        await ctx.sleep(1)

    async with Engine(store_url) as engine:
        stranded = await _stranded_sleep(engine, "versioned_nap", "v1", ago=1)
        with caplog.at_level(logging.WARNING, logger="surestep.engine"):
            assert await engine.recover() == []
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert stranded in message
    assert "versioned_nap version v1" in message and "serves v2" in message
    assert "surestep runs --workflow versioned_nap" in message


async def test_a_start_that_waits_for_the_deployed_version_warns_at_once(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(version="edited")
    async def deployed_flow(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine:
        await engine.deploy(deployed_flow, version="deployed")
        with caplog.at_level(logging.WARNING, logger="surestep.engine"):
            handle = await engine.start(deployed_flow)
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert handle.run_id in warning
        assert "deployed_flow version deployed" in warning and "version edited" in warning
        run = await handle.info()
        assert run.status_text == "waiting: a worker serving deployed_flow deployed"


async def test_a_run_status_says_what_it_waits_for(store_url: str) -> None:
    @workflow
    async def long_sleep(ctx: WorkflowContext) -> None:
        await ctx.sleep(3600)

    @workflow
    async def approval(ctx: WorkflowContext) -> Any:
        return await ctx.wait_for_event("approved", timeout=3600)

    async with Engine(store_url, inline_sleep=0.1) as engine:
        sleeping = await engine.start(long_sleep)
        waiting = await engine.start(approval)
        for handle in (sleeping, waiting):
            while (await handle.info()).status != "waiting":
                await engine.store.wait_changed(0.2)
        run = await sleeping.info()
        assert run.wake_at is not None
        wakes = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.wake_at))
        assert run.status_text == f"waiting: sleep until {wakes}"
        assert (await waiting.info()).status_text.startswith("waiting: event approved (until ")
        await engine.send_event(waiting.run_id, "approved", True)
        assert await waiting.result() is True
        assert (await waiting.info()).status_text == "completed"
        with pytest.raises(RunFinishedError, match="has finished"):
            await engine.send_event(waiting.run_id, "approved", True)


async def test_a_client_start_warns_when_no_live_engine_serves_its_version(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(version="v7")
    async def served_flow(ctx: WorkflowContext) -> int:
        return 7

    async with Engine(store_url, execute=False) as client:
        with caplog.at_level(logging.WARNING, logger="surestep.engine"):
            first = await client.start(served_flow)
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert first.run_id in warning and "served_flow version v7" in warning
        assert "no live engine serves served_flow" in warning
        caplog.clear()
        async with Engine(store_url) as worker:  # live, serving v7, from its open
            (live,) = await client.live_engines()
            assert live.owner == worker.owner and live.serves("served_flow", "v7")
            await asyncio.sleep(1.1)  # past the client's one-second memory of the registry
            with caplog.at_level(logging.WARNING, logger="surestep.engine"):
                await client.start(served_flow)
            assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        assert await client.live_engines() == []  # withdrawn as it closed


async def test_a_start_on_code_other_than_the_deployed_version_says_who_runs_it(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @workflow(version="v2")
    async def moved_on(ctx: WorkflowContext) -> int:
        return 2

    async with Engine(store_url, execute=False) as client:
        await client.deploy(moved_on, version="v1")
        # An older worker, live and serving the deployed version, as its process announces it.
        await client.store.announce("elsewhere:1:old", {"moved_on": "v1"}, 60.0)
        with caplog.at_level(logging.WARNING, logger="surestep.engine"):
            handle = await client.start(moved_on)
        (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert handle.run_id in warning
        assert "moved_on version v1, the one deployed, not this code's version v2" in warning
        assert (await client.get_run(handle.run_id)).version == "v1"
