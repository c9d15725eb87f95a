"""Durable primitives: sleep, events, child workflows, parallel steps,
journaled values and run logs; each across an interruption."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from datetime import datetime

import pytest

from support.calls import calls
from support.polling import until, until_journaled
from surestep import (
    ChildWorkflowError,
    ConfigurationError,
    Engine,
    EventTimeoutError,
    StateConflictError,
    WorkflowContext,
    function,
    workflow,
)
from surestep.decorators import served_versions

# -- sleep


async def test_sleep_wakes_at_the_journaled_time_after_a_restart(store_url: str) -> None:
    @workflow
    async def napper(ctx: WorkflowContext) -> float:
        await ctx.step("before", lambda: calls.update(["before"]))
        await ctx.sleep(3.0)
        return await ctx.step("after", time.time)

    first = Engine(store_url, inline_sleep=0.1)
    handle = await first.start(napper)
    await until(lambda: _status(first, handle.run_id, "waiting"))
    await first.close()  # the process goes away while the run sleeps
    await asyncio.sleep(1.0)
    restarted_at = time.time()
    async with Engine(store_url, inline_sleep=0.1) as second:
        assert (await second.get_run(handle.run_id)).status == "waiting"  # not due yet
        woke = await second.handle(handle.run_id).result()
        journal = await second.journal(handle.run_id)
    wake_at = journal[1].output
    assert journal[1].kind == "sleep"
    assert wake_at <= woke < restarted_at + 3.0  # the original time, not 3 s after the restart
    assert calls["before"] == 1


async def test_short_sleeps_are_slept_in_place_and_replayed_without_waiting(
    store_url: str,
) -> None:
    @workflow
    async def short(ctx: WorkflowContext) -> int:
        for _ in range(3):
            await ctx.sleep(0.01)
        return ctx.step_count

    async with Engine(store_url) as engine:
        handle = await engine.start(short)
        assert await handle.result() == 3
        assert [e.kind for e in await engine.journal(handle.run_id)] == ["sleep"] * 3


async def test_sleeping_runs_hold_no_task(store_url: str) -> None:
    @workflow
    async def long_nap(ctx: WorkflowContext) -> None:
        await ctx.sleep(3600)

    async with Engine(store_url, inline_sleep=0.1) as engine:
        handles = [await engine.start(long_nap) for _ in range(300)]
        await until(lambda: _all_status(engine, "waiting", 300))
        await until(lambda: _idle(engine))  # each task ends right after its suspension commits
        assert len(asyncio.all_tasks()) < 10  # the test, the engine's timer loop; no task per run
        assert await engine.store.next_wake(served_versions()) == pytest.approx(
            time.time() + 3600, abs=60
        )
        assert len({h.run_id for h in handles}) == 300


# -- events


async def test_event_sent_while_waiting_and_before_waiting(store_url: str) -> None:
    @workflow
    async def approval(ctx: WorkflowContext) -> list:
        first = await ctx.wait_for_event("approve")
        second = await ctx.wait_for_event("approve")
        return [first, second]

    async with Engine(store_url) as engine:
        handle = await engine.start(approval)
        await until(lambda: _status(engine, handle.run_id, "waiting"))
        await engine.send_event(handle.run_id, "approve", {"by": "ann"})
        await engine.send_event(handle.run_id, "approve", {"by": "bob"})  # kept for the next wait
        assert await handle.result() == [{"by": "ann"}, {"by": "bob"}]
        kinds = [(e.kind, e.output) for e in await engine.journal(handle.run_id)]
    assert kinds == [("event", {"by": "ann"}), ("event", {"by": "bob"})]


async def test_event_from_another_engine_wakes_the_run(store_url: str) -> None:
    @workflow
    async def gate(ctx: WorkflowContext) -> str:
        return str(await ctx.wait_for_event("go"))

    async with Engine(store_url) as engine, Engine(store_url, execute=False) as client:
        handle = await engine.start(gate)
        await until(lambda: _status(engine, handle.run_id, "waiting"))
        await client.send_event(handle.run_id, "go", "now")
        assert await client.handle(handle.run_id).result() == "now"


async def test_event_timeout_is_a_typed_error_in_the_workflow(store_url: str) -> None:
    @workflow
    async def impatient(ctx: WorkflowContext) -> str:
        try:
            await ctx.wait_for_event("never", timeout=0.2)
        except EventTimeoutError:
            return "timed out"
        return "got it"

    async with Engine(store_url, inline_sleep=0.05) as engine:
        handle = await engine.start(impatient)
        assert await handle.result() == "timed out"
        entries = await engine.journal(handle.run_id)
    assert [e.kind for e in entries] == ["value", "event"]  # the deadline, then the timeout


async def test_send_event_to_unknown_run(store_url: str) -> None:
    from surestep import RunNotFoundError

    async with Engine(store_url) as engine:
        with pytest.raises(RunNotFoundError):
            await engine.send_event("0" * 32, "x", 1)
        with pytest.raises(ConfigurationError):
            await engine.send_event("0" * 32, "", 1)


# -- child workflows


@function
async def add(a: int, b: int) -> int:
    calls["add"] += 1
    return a + b


@workflow
async def child_sum(ctx: WorkflowContext, a: int, b: int) -> int:
    return await ctx.step(add, a, b)


@workflow
async def child_fails(ctx: WorkflowContext) -> None:
    raise ValueError("bad child")


async def test_child_workflow_result_and_link(store_url: str) -> None:
    @workflow
    async def parent(ctx: WorkflowContext) -> list:
        one = await ctx.step(child_sum, 1, 2)
        two = await ctx.step(child_sum, 3, 4)
        return [one, two]

    async with Engine(store_url) as engine:
        handle = await engine.start(parent)
        assert await handle.result() == [3, 7]
        entries = await engine.journal(handle.run_id)
        children = [await engine.get_run(e.child) for e in entries if e.child is not None]
    assert [e.kind for e in entries] == ["child", "child"]
    assert all(c.parent_id == handle.run_id and c.status == "completed" for c in children)
    assert len({c.run_id for c in children}) == 2


async def test_child_failure_surfaces_as_a_typed_error(store_url: str) -> None:
    @workflow
    async def parent_of_failure(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(child_fails)
        except ChildWorkflowError as exc:
            return f"{exc.workflow}:{exc.error_type}:{exc.message}"
        return "unreachable"

    async with Engine(store_url) as engine:
        assert await engine.run(parent_of_failure) == "child_fails:ValueError:bad child"


async def test_parent_and_child_resume_after_an_interruption(store_url: str) -> None:
    release = asyncio.Event()

    @function
    async def slow_child_step() -> str:
        calls["slow"] += 1
        if calls["slow"] == 1:
            await release.wait()
        return "child done"

    @workflow
    async def slow_child(ctx: WorkflowContext) -> str:
        await ctx.step(add, 1, 1)
        return await ctx.step(slow_child_step)

    @workflow
    async def waiting_parent(ctx: WorkflowContext) -> str:
        await ctx.step(add, 0, 0)
        return await ctx.step(slow_child)

    first = Engine(store_url)
    handle = await first.start(waiting_parent)
    await until(lambda: _count(calls, "slow", 1))
    await first.close()  # parent and child both interrupted
    async with Engine(store_url) as second:
        resumed = {h.run_id for h in await second.recover()}
        assert handle.run_id in resumed
        assert await second.handle(handle.run_id).result() == "child done"
        runs = await second.runs()
    assert len(runs) == 2  # the parent found its child again rather than starting another
    assert calls["add"] == 2 and calls["slow"] == 2


# -- parallel steps and journaled values


async def test_parallel_steps_replay_whatever_finished_first(store_url: str) -> None:
    release = asyncio.Event()

    @function
    async def jitter(i: int) -> int:
        calls[f"j{i}"] += 1
        await asyncio.sleep(random.random() / 50)
        if i == 5 and not release.is_set():
            await release.wait()
        return i * i

    @workflow
    async def fan_out(ctx: WorkflowContext) -> dict:
        squares = await ctx.parallel(*(ctx.step(jitter, i) for i in range(6)))
        named = await ctx.gather(a=ctx.step(jitter, 10), b=ctx.step(jitter, 11))
        return {"squares": squares, "named": named}

    first = Engine(store_url)
    handle = await first.start(fan_out)
    await until_journaled(first, handle.run_id, 5)
    await first.close()
    release.set()
    async with Engine(store_url) as second:
        (resumed,) = await second.recover()
        assert await resumed.result() == {
            "squares": [0, 1, 4, 9, 16, 25],
            "named": {"a": 100, "b": 121},
        }
    assert all(calls[f"j{i}"] == 1 for i in range(5)) and calls["j5"] == 2


async def test_now_random_uuid_are_recorded(store_url: str) -> None:
    release = asyncio.Event()

    @workflow
    async def values(ctx: WorkflowContext) -> list:
        stamp, draw, ident = ctx.now(), ctx.random(), ctx.uuid4()
        assert isinstance(stamp, datetime) and stamp.tzinfo is not None
        assert isinstance(ident, uuid.UUID) and 0 <= draw < 1
        await ctx.step("hold", _hold(release))
        return [stamp.isoformat(), draw, str(ident)]

    first = Engine(store_url)
    handle = await first.start(values)
    await until_journaled(first, handle.run_id, 3)
    recorded = [e.output for e in await first.journal(handle.run_id)]
    await first.close()
    release.set()
    async with Engine(store_url) as second:
        (resumed,) = await second.recover()
        stamp, draw, ident = await resumed.result()
    assert draw == recorded[1] and ident == str(uuid.UUID(recorded[2]))
    assert datetime.fromisoformat(stamp).timestamp() == pytest.approx(recorded[0])


async def test_logs_are_stored_once(store_url: str) -> None:
    release = asyncio.Event()

    @workflow
    async def chatty(ctx: WorkflowContext) -> None:
        ctx.logger.info("starting %s", "order")
        await ctx.step(add, 1, 2)
        ctx.logger.warning("charged")
        await ctx.step("hold", _hold(release))
        ctx.logger.info("done")

    first = Engine(store_url)
    handle = await first.start(chatty)
    await until_journaled(first, handle.run_id, 1)
    await asyncio.sleep(0.01)
    await first.close()
    release.set()
    async with Engine(store_url) as second:
        (resumed,) = await second.recover()
        await resumed.result()
        lines = await second.logs(handle.run_id)
    assert [(line["level"], line["message"]) for line in lines] == [
        ("INFO", "starting order"),
        ("WARNING", "charged"),
        ("INFO", "done"),
    ]


# -- helpers


def _hold(event: asyncio.Event):  # type: ignore[no-untyped-def]
    async def wait() -> str:
        await event.wait()
        return "held"

    return wait()


async def _status(engine: Engine, run_id: str, status: str) -> bool:
    return (await engine.get_run(run_id)).status == status


async def _all_status(engine: Engine, status: str, count: int) -> bool:
    return len(await engine.runs(status=status)) == count


async def _idle(engine: Engine) -> bool:
    return engine.executing == 0


async def _count(counter: Counter[str], key: str, n: int) -> bool:
    return counter[key] >= n


# -- scoped state


async def test_run_state_survives_an_interruption(store_url: str) -> None:
    release = asyncio.Event()

    @workflow
    async def stateful(ctx: WorkflowContext) -> dict:
        ctx.state.set("count", 1)
        ctx.state.set("gone", True)
        ctx.state.delete("gone")
        await ctx.session.state.set("shared", 5)  # the session's, not the run's
        await ctx.step("hold", _hold(release))
        ctx.state.set("count", ctx.state.get("count") + 1)
        return dict(ctx.state.items())

    first = Engine(store_url)
    handle = await first.start(stateful)
    await until_journaled(first, handle.run_id, 4)
    await first.close()
    release.set()
    async with Engine(store_url) as second:
        (resumed,) = await second.recover()
        assert await resumed.result() == {"count": 2}
        assert await second.state(run_id=handle.run_id) == {"count": 2}
        session = (await second.get_run(handle.run_id)).session_id or handle.run_id
        assert await second.state(session_id=session) == {"shared": 5}


async def test_concurrent_runs_of_a_session_lose_no_update(store_url: str) -> None:
    @workflow
    async def bump(ctx: WorkflowContext, times: int) -> None:
        for _ in range(times):
            await ctx.session.state.update("visits", lambda n: n + 1, default=0)
            await asyncio.sleep(0)

    async with Engine(store_url) as engine:
        handles = [await engine.start(bump, 15, session_id="s-1") for _ in range(4)]
        await asyncio.gather(*(h.result() for h in handles))
        assert await engine.state(session_id="s-1") == {"visits": 60}
        assert await engine.state(session_id="s-2") == {}


async def test_replay_sees_the_value_read_even_if_it_changed(store_url: str) -> None:
    release = asyncio.Event()

    @workflow
    async def reader(ctx: WorkflowContext) -> list:
        seen = await ctx.user.state.get("plan")
        await ctx.step("hold", _hold(release))
        try:
            await ctx.user.state.set("plan", f"{seen}+")
        except StateConflictError:
            return [seen, "conflict", await ctx.user.state.get("plan")]
        return [seen, "written"]

    @workflow
    async def writer(ctx: WorkflowContext, plan: str) -> None:
        await ctx.user.state.set("plan", plan)

    async with Engine(store_url) as engine:
        await engine.run(writer, "basic", user_id="u-1")
    first = Engine(store_url)
    handle = await first.start(reader, user_id="u-1")
    await until_journaled(first, handle.run_id, 1)
    await first.close()
    async with Engine(store_url) as other:
        await other.run(writer, "pro", user_id="u-1")  # changes the key meanwhile
    release.set()
    async with Engine(store_url) as second:
        (resumed,) = await second.recover()
        assert await resumed.result() == ["basic", "conflict", "pro"]
        assert await second.state(user_id="u-1") == {"plan": "pro"}


async def test_user_scope_needs_a_user(store_url: str) -> None:
    @workflow
    async def anonymous(ctx: WorkflowContext) -> list:
        return [ctx.user is None, ctx.session.id == ctx.run_id]

    async with Engine(store_url) as engine:
        assert await engine.run(anonymous) == [True, True]
        with pytest.raises(ConfigurationError):
            await engine.state()
