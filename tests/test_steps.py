"""ctx.step in its three forms, the legacy ctx.task, and what the journal records."""

from __future__ import annotations

import asyncio
import enum
import random
import warnings
from collections import Counter

import pytest

from support.calls import calls
from surestep import (
    DefinitionError,
    Engine,
    FunctionContext,
    StepFailedError,
    WorkflowContext,
    function,
    testing,
    workflow,
)


@function
async def double(x: int) -> int:
    calls["double"] += 1
    return 2 * x


@function
async def who(ctx: FunctionContext, tag: str) -> dict:
    calls["who"] += 1
    return {
        "tag": tag,
        "run": ctx.run_id,
        "seq": ctx.seq,
        "key": ctx.idempotency_key,
        "attempt": ctx.attempt,
    }


async def test_three_forms_and_their_journal(store_url: str) -> None:
    async def fetch(x: int) -> int:
        calls["fetch"] += 1
        return x + 1

    @workflow
    async def forms(ctx: WorkflowContext, x: int) -> list:
        a = await ctx.step(double, x)  # handler form
        b = await ctx.step("fetch", fetch(a))  # name + awaitable
        c = await ctx.step("stamp", lambda: f"s{b}")  # name + sync callable
        d = await ctx.step("async-callable", fetch, b)  # name + callable returning an awaitable
        return [a, b, c, d]

    async with Engine(store_url) as engine:
        handle = await engine.start(forms, 5)
        assert await handle.result() == [10, 11, "s11", 12]
        journal = await engine.journal(handle.run_id)
    assert [(e.seq, e.name, e.kind) for e in journal] == [
        (0, "double", "step"),
        (1, "fetch", "step"),
        (2, "stamp", "step"),
        (3, "async-callable", "step"),
    ]
    assert journal[0].input == [[5], {}] and journal[0].output == 10
    assert journal[1].input is None and journal[1].output == 11
    assert journal[3].input == [[11], {}]
    assert all(e.attempt == 1 and e.finished_at >= e.started_at > 0 for e in journal)


async def test_function_context(store_url: str) -> None:
    @workflow
    async def ctxwf(ctx: WorkflowContext) -> dict:
        return await ctx.step(who, "t")

    async with Engine(store_url) as engine:
        handle = await engine.start(ctxwf)
        out = await handle.result()
    assert out == {
        "tag": "t",
        "run": handle.run_id,
        "seq": 0,
        "key": f"{handle.run_id}:0",
        "attempt": 0,
    }


async def test_ten_steps_in_a_loop_are_ten_steps(store_url: str) -> None:
    @workflow
    async def loop10(ctx: WorkflowContext) -> int:
        total = 0
        for i in range(10):
            total += await ctx.step("x", lambda i=i: i)
        assert ctx.step_count == 10
        return total

    async with Engine(store_url) as engine:
        handle = await engine.start(loop10)
        assert await handle.result() == 45
        journal = await engine.journal(handle.run_id)
    assert [e.seq for e in journal] == list(range(10))
    assert [e.output for e in journal] == list(range(10))


async def test_key_is_part_of_the_identity_and_idempotency_key(store_url: str) -> None:
    @workflow
    async def keyed(ctx: WorkflowContext) -> dict:
        return await ctx.step(who, "k", key="order-7")

    async with Engine(store_url) as engine:
        handle = await engine.start(keyed)
        out = await handle.result()
        journal = await engine.journal(handle.run_id)
    assert out["key"] == f"{handle.run_id}:order-7"
    assert journal[0].key == "order-7"


class Shelf(enum.IntEnum):
    TOP = 1


async def test_keys_of_int_and_str_subclasses_keep_their_identity_on_replay(
    store_url: str,
) -> None:
    """A bool or an IntEnum key is an int (as in 0.1): recorded by the text its step's
    identity and idempotency key use, and matched by it on replay."""
    runs: Counter[str] = Counter()

    @function
    async def stock(ctx: FunctionContext) -> str:
        runs[ctx.idempotency_key.rsplit(":", 1)[1]] += 1
        return ctx.idempotency_key

    @workflow
    async def shelved(ctx: WorkflowContext) -> list:
        return [await ctx.step(stock, key=True), await ctx.step(stock, key=Shelf.TOP)]

    async with Engine(store_url) as engine:
        handle = await engine.start(shelved)
        first = await handle.result()
        journal = await engine.journal(handle.run_id)
        recorded = await testing.recorded_run(engine, handle.run_id)
    assert first == [f"{handle.run_id}:True", f"{handle.run_id}:{Shelf.TOP}"]
    assert [e.key for e in journal] == ["True", f"{Shelf.TOP}"]
    report = await testing.replay_async(shelved, recorded)  # the identities match again
    assert report.compatible and report.replayed == 2, report.describe()
    assert runs == {"True": 1, f"{Shelf.TOP}": 1}


async def test_task_is_a_deprecated_alias(store_url: str) -> None:
    @workflow
    async def legacy(ctx: WorkflowContext) -> int:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            value = await ctx.task(double, 4)
        assert [w.category for w in seen] == [DeprecationWarning]
        assert "ctx.step" in str(seen[0].message)
        return value

    async with Engine(store_url) as engine:
        assert await engine.run(legacy) == 8


async def test_gather_numbers_steps_at_the_call(store_url: str) -> None:
    @function
    async def slow(tag: str) -> str:
        await asyncio.sleep(random.random() / 100)
        return tag

    @workflow
    async def fan(ctx: WorkflowContext) -> list:
        return list(await asyncio.gather(*(ctx.step(slow, f"t{i}") for i in range(8))))

    async with Engine(store_url) as engine:
        handle = await engine.start(fan)
        assert await handle.result() == [f"t{i}" for i in range(8)]
        journal = await engine.journal(handle.run_id)
    assert [(e.seq, e.input) for e in journal] == [(i, [[f"t{i}"], {}]) for i in range(8)]


async def test_returned_value_is_the_journaled_value(store_url: str) -> None:
    @workflow
    async def tup(ctx: WorkflowContext) -> list:
        return await ctx.step("pair", lambda: (1, 2))

    async with Engine(store_url) as engine:
        assert await engine.run(tup) == [1, 2]  # a tuple is stored, and returned, as a list


async def test_undecorated_callable_needs_a_name(store_url: str) -> None:
    async def plain(x: int) -> int:
        return x

    @workflow
    async def bad(ctx: WorkflowContext) -> None:
        with pytest.raises(DefinitionError, match="needs a @function"):
            ctx.step(plain, 1)
        with pytest.raises(DefinitionError, match="needs an awaitable or a callable"):
            ctx.step("name-only")
        with pytest.raises(DefinitionError, match="must be an awaitable or a callable"):
            ctx.step("n", 42)

    async with Engine(store_url) as engine:
        handle = await engine.start(bad)
        await handle.result()
        assert await engine.journal(handle.run_id) == []


async def test_failed_step_is_catchable_and_journaled(store_url: str) -> None:
    @function
    async def boom() -> None:
        calls["boom"] += 1
        raise ValueError("no stock")

    @workflow
    async def careful(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(boom)
        except StepFailedError as exc:
            assert exc.error_type == "ValueError" and exc.message == "no stock" and exc.seq == 0
            assert "ValueError: no stock" in exc.traceback
            return "compensated"
        return "unreachable"

    async with Engine(store_url) as engine:
        handle = await engine.start(careful)
        assert await handle.result() == "compensated"
        (entry,) = await engine.journal(handle.run_id)
    assert entry.kind == "step_error" and entry.output is None
    assert entry.error is not None and entry.error["type"] == "ValueError"
