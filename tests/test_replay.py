"""Replay after an interruption: completed steps are skipped, divergence is refused.

These tests stop an engine in the middle of a run (``close()`` gives the run's
lease back, as a stopped process would after its lease ran out) and resume it
in a new engine over the same store. ``test_crash.py`` does the same with
real processes killed by SIGKILL.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from support.calls import calls
from support.polling import until_journaled
from support.store_edit import rewrite_record, with_version
from surestep import (
    Engine,
    JournalCorruptError,
    NonDeterminismError,
    StepFailedError,
    UnsupportedFormatError,
    WorkflowContext,
    WorkflowFailedError,
    _core,
    decorators,
    function,
    workflow,
)

gate: dict[str, asyncio.Event] = {}
entered: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    gate.clear()
    entered.clear()


@function
async def step_a(x: int) -> int:
    calls["a"] += 1
    return x + 1


@function
async def step_b(x: int) -> int:
    calls["b"] += 1
    return x * 10


@function
async def step_c(x: int) -> int:
    calls["c"] += 1
    if "c" in entered:
        entered["c"].set()
    if "c" in gate:  # the first engine parks here until it is closed
        await gate["c"].wait()
    return x - 3


@workflow(version="1")  # the changed-code tests below keep this version on purpose
async def abc(ctx: WorkflowContext, x: int) -> list:
    a = await ctx.step(step_a, x)
    b = await ctx.step(step_b, a)
    c = await ctx.step(step_c, b)
    return [a, b, c]


async def interrupt_in_c(store_url: str, *args: int) -> str:
    """Run ``abc`` until it is inside step_c, then stop the engine."""
    gate["c"] = asyncio.Event()
    engine = Engine(store_url)
    entered["c"] = asyncio.Event()
    handle = await engine.start(abc, *args)
    await entered["c"].wait()
    await engine.close()
    del gate["c"]
    return handle.run_id


async def test_resume_skips_completed_steps(store_url: str) -> None:
    run_id = await interrupt_in_c(store_url, 1)
    assert calls == Counter(a=1, b=1, c=1)
    async with Engine(store_url) as engine:
        assert (await engine.get_run(run_id)).status == "pending"
        handles = await engine.recover()
        assert [h.run_id for h in handles] == [run_id]
        assert await handles[0].result() == [2, 20, 17]
        run = await engine.get_run(run_id)
    assert calls == Counter(a=1, b=1, c=2)  # c was interrupted, so it ran once more
    assert run.status == "completed" and run.attempt == 2 and run.result == [2, 20, 17]


async def test_recover_finds_nothing_when_all_finished(store_url: str) -> None:
    async with Engine(store_url) as engine:
        assert await engine.run(abc, 1) == [2, 20, 17]
        assert await engine.recover() == []


async def test_replay_of_awaitable_form_closes_it_unrun(store_url: str) -> None:
    async def effect(tag: str) -> str:
        calls[tag] += 1
        if tag in entered:
            entered[tag].set()
        return tag

    @workflow
    async def awaits(ctx: WorkflowContext) -> list:
        first = await ctx.step("first", effect("first"))
        second = await ctx.step("second", effect("second"))
        if "stop" in gate:
            await gate["stop"].wait()
        return [first, second]

    gate["stop"] = asyncio.Event()
    entered["second"] = asyncio.Event()
    engine = Engine(store_url)
    handle = await engine.start(awaits)
    await entered["second"].wait()
    await until_journaled(engine, handle.run_id, 2)
    await engine.close()
    del gate["stop"]
    async with Engine(store_url) as engine:
        (resumed,) = await engine.recover()
        assert await resumed.result() == ["first", "second"]
    # The coroutines handed to ctx.step on replay were closed without running
    # (an unawaited coroutine would also warn, and warnings are errors here).
    assert calls == Counter(first=1, second=1)
    assert resumed.run_id == handle.run_id


async def test_replayed_failure_raises_the_same_error_without_running(store_url: str) -> None:
    @function(retries={"max_attempts": 2, "initial_interval_ms": 1})
    async def always_fails() -> None:
        calls["fail"] += 1
        raise KeyError("sku-9")

    @workflow
    async def fails_then_waits(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(always_fails)
        except StepFailedError as exc:
            note = f"{exc.error_type}:{exc.attempts}"
        await ctx.step(step_c, 10)
        return note

    gate["c"] = asyncio.Event()
    entered["c"] = asyncio.Event()
    engine = Engine(store_url)
    handle = await engine.start(fails_then_waits)
    await entered["c"].wait()
    await engine.close()
    del gate["c"]
    assert calls["fail"] == 2  # first attempt + one retry
    async with Engine(store_url) as engine:
        (resumed,) = await engine.recover()
        assert await resumed.result() == "KeyError:2"
    assert calls["fail"] == 2 and resumed.run_id == handle.run_id


async def test_changed_code_is_refused_and_the_journal_kept(store_url: str) -> None:
    run_id = await interrupt_in_c(store_url, 1)
    before = await _raw_journal(store_url, run_id)

    @function
    async def step_b_v2(x: int) -> int:
        return x * 100

    decorators._workflows.pop("abc")

    @workflow(name="abc", version="1")
    async def abc_v2(ctx: WorkflowContext, x: int) -> list:
        a = await ctx.step(step_a, x)
        b = await ctx.step(step_b_v2, a)  # was step_b
        return [a, b]

    async with Engine(store_url) as engine:
        (handle,) = await engine.recover()
        with pytest.raises(WorkflowFailedError) as failed:
            await handle.result()
        run = await engine.get_run(run_id)
    assert failed.value.error_type == "surestep.errors.NonDeterminismError"
    message = failed.value.message
    assert f"run {run_id}: step 1" in message
    assert "'name': 'step_b'" in message and "'name': 'step_b_v2'" in message
    assert run.status == "failed"
    assert await _raw_journal(store_url, run_id) == before  # untouched


async def test_changed_input_is_refused(store_url: str) -> None:
    run_id = await interrupt_in_c(store_url, 1)
    decorators._workflows.pop("abc")

    @workflow(name="abc", version="1")
    async def abc_other_input(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step(step_a, x + 1)

    async with Engine(store_url) as engine:
        (handle,) = await engine.recover()
        with pytest.raises(WorkflowFailedError, match="NonDeterminismError") as failed:
            await handle.result()
    assert (
        "'input': [[1], {}]" in failed.value.message
        and "'input': [[2], {}]" in failed.value.message
    )
    assert run_id in failed.value.message


async def test_fewer_steps_than_recorded_is_divergence(store_url: str) -> None:
    run_id = await interrupt_in_c(store_url, 1)
    decorators._workflows.pop("abc")

    @workflow(name="abc", version="1")
    async def abc_short(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step(step_a, x)

    async with Engine(store_url) as engine:
        (handle,) = await engine.recover()
        with pytest.raises(WorkflowFailedError, match=r"without taking") as failed:
            await handle.result()
    assert f"run {run_id}: step 1" in failed.value.message


async def test_non_determinism_error_is_structured() -> None:
    err = NonDeterminismError(3, {"name": "a"}, {"name": "b"}, run_id="r1")
    assert (err.run_id, err.seq, err.recorded, err.requested) == (
        "r1",
        3,
        {"name": "a"},
        {"name": "b"},
    )
    assert isinstance(err, RuntimeError)


async def test_corrupt_record_names_run_and_step_and_spares_other_runs(store_url: str) -> None:
    run_id = await interrupt_in_c(store_url, 1)
    other = await interrupt_in_c(store_url, 5)
    rewrite_record(store_url, run_id, 1, lambda rec: rec[:-1] + bytes([rec[-1] ^ 0x55]))

    async with Engine(store_url) as engine:
        with pytest.raises(JournalCorruptError) as corrupt:
            await engine.journal(run_id)
        assert corrupt.value.run_id == run_id and corrupt.value.seq == 1
        handles = {h.run_id: h for h in await engine.recover()}
        with pytest.raises(WorkflowFailedError, match="JournalCorruptError") as failed:
            await handles[run_id].result()
        assert run_id in failed.value.message and "step 1" in failed.value.message
        assert await handles[other].result() == [6, 60, 57]


async def test_newer_format_version_is_a_typed_error(store_url: str) -> None:
    run_id = await interrupt_in_c(store_url, 1)
    rewrite_record(store_url, run_id, 0, lambda rec: with_version(rec, _core.FORMAT_VERSION + 1))
    async with Engine(store_url) as engine:
        with pytest.raises(UnsupportedFormatError, match="newer"):
            await engine.journal(run_id)


async def _raw_journal(store_url: str, run_id: str) -> list[bytes]:
    async with Engine(store_url) as engine:
        return await engine.store.journal(run_id)
