"""The AGNT5 primitives: waiting for a person, batch and map, progress, named sleeps,
``ctx.task(fn, input=x)``, awaited run state and session keys; and a shared state write
of a changing value replayed after a suspension. Each on both stores, across a restart."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import Counter
from typing import Any

import pytest

from support.calls import calls
from support.polling import until
from surestep import (
    AnswerError,
    BatchResult,
    ConfigurationError,
    Engine,
    FunctionContext,
    StepTimeoutError,
    WorkflowContext,
    function,
    workflow,
)


def waiting(engine: Engine, run_id: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await engine.get_run(run_id)).status == "waiting"

    return check


# -- shared state written with a changing value, then a suspension


@pytest.mark.parametrize("scope", ["session", "user"])
async def test_a_changing_value_written_to_shared_state_replays_after_a_suspension(
    store_url: str, scope: str
) -> None:
    @workflow
    async def stamp(ctx: WorkflowContext) -> list:
        state = ctx.session.state if scope == "session" else ctx.user.state  # type: ignore[union-attr]
        await state.set("t", time.time())  # another value on every replay
        await ctx.sleep(0.5)  # longer than inline_sleep: the run is given back and replayed
        return [await state.get("t"), ctx.state.get("missing")]

    first = Engine(store_url, inline_sleep=0.0)
    handle = await first.start(stamp, session_id="s-1", user_id="u-1")
    await until(waiting(first, handle.run_id))
    await first.close()
    async with Engine(store_url, inline_sleep=0.0) as second:
        value, _ = await second.handle(handle.run_id).result()
        stored = await second.state(**{f"{scope}_id": f"{scope[0]}-1"})  # type: ignore[arg-type]
        write = (await second.journal(handle.run_id))[0]
    # The record is as surestep has always written it: the value is in its input.
    assert (write.name, write.input) == ("@state.set", [[f"{scope}:{scope[0]}-1", "t"], value])
    # The journaled write stands: the replayed run sees the value the store holds.
    assert value == stored["t"]
    assert value < time.time()


async def test_a_write_of_another_key_at_that_position_still_diverges(store_url: str) -> None:
    """The rule is scope, key and position: another key is another operation."""
    key = ["a"]

    @workflow
    async def writer(ctx: WorkflowContext) -> None:
        await ctx.session.state.set(key[0], 1)
        await ctx.sleep(0.5)

    first = Engine(store_url, inline_sleep=0.0)
    handle = await first.start(writer)
    await until(waiting(first, handle.run_id))
    await first.close()
    key[0] = "b"
    async with Engine(store_url, inline_sleep=0.0) as second:
        with pytest.raises(Exception, match="NonDeterminismError"):
            await second.handle(handle.run_id).result()


# -- waiting for a person


@workflow
async def review(ctx: WorkflowContext, kind: str) -> dict:
    await ctx.step("before", lambda: calls.update(["before"]))
    if not ctx._is_replay:  # AGNT5's guard: the person is notified once, not on resume
        calls["notify"] += 1
    if kind == "text":
        answer = await ctx.wait_for_user("Any notes?", skippable=True)
    elif kind == "approval":
        answer = await ctx.wait_for_user("Ship it?", input_type="approval")
    elif kind == "select":
        answer = await ctx.wait_for_user(
            "Which size?",
            input_type="select",
            options=[{"id": "s", "label": "Small"}, {"id": "m", "label": "Medium"}],
            allow_custom=True,
        )
    else:
        answer = await ctx.wait_for_user(
            "Which toppings?", input_type="multiselect", options=["ham", "olives", "basil"]
        )
    await ctx.step("after", lambda: calls.update(["after"]))
    return {"answer": answer}


@pytest.mark.parametrize(
    ("kind", "given", "received"),
    [
        ("text", "looks good", "looks good"),
        ("text", None, None),  # skipped
        ("approval", "approve", "approve"),
        ("select", "m", "m"),
        ("select", "extra large, please", "extra large, please"),  # the person's own words
        ("multiselect", ["olives", "ham"], "olives,ham"),
        ("multiselect", "basil,ham", "basil,ham"),
    ],
)
async def test_answer_formats_after_a_restart(
    store_url: str, kind: str, given: Any, received: Any
) -> None:
    first = Engine(store_url)
    handle = await first.start(review, kind)
    await until(waiting(first, handle.run_id))
    await first.close()  # nobody executes the run while it waits
    async with Engine(store_url) as second:
        run = await second.get_run(handle.run_id)
        assert run.question is not None and run.question["input_type"] == kind
        await second.answer(handle.run_id, given)
        assert await second.handle(handle.run_id).result() == {"answer": received}
        assert (await second.get_run(handle.run_id)).question is None
        names = [entry.name for entry in await second.journal(handle.run_id)]
    assert names == ["before", "@ask", "@answer", "after"]
    assert calls == Counter({"before": 1, "notify": 1, "after": 1})


async def test_the_question_is_shown_and_runs_waiting_for_a_person_are_listed(
    store_url: str,
) -> None:
    @workflow
    async def event_waiter(ctx: WorkflowContext) -> None:
        await ctx.wait_for_event("go")

    async with Engine(store_url) as engine:
        asked = await engine.start(review, "select")
        other = await engine.start(event_waiter)
        await until(waiting(engine, asked.run_id))
        await until(waiting(engine, other.run_id))
        run = await engine.get_run(asked.run_id)
        assert run.question == {
            "question": "Which size?",
            "input_type": "select",
            "options": [{"id": "s", "label": "Small"}, {"id": "m", "label": "Medium"}],
            "allow_custom": True,
            "skippable": False,
        }
        people = await engine.runs(waiting_for="person")
        assert [r.run_id for r in people] == [asked.run_id]
        assert people[0].question == run.question
        assert [r.run_id for r in await engine.runs(waiting_for="event")] == [other.run_id]
        assert await engine.runs(waiting_for="person", status="completed") == []
        with pytest.raises(ConfigurationError, match="waiting_for is one of"):
            await engine.runs(waiting_for="godot")


@pytest.mark.parametrize(
    ("kind", "given", "match"),
    [
        ("approval", "maybe", "not an option of this question"),
        ("approval", None, "cannot be skipped"),
        ("multiselect", ["ham", "pineapple"], "'pineapple' is not an option"),
        ("multiselect", [], "at least one"),
        ("text", 42, "takes a str"),
        ("select", ["s"], "takes an option id"),
    ],
)
async def test_an_answer_the_question_does_not_take_is_refused(
    store_url: str, kind: str, given: Any, match: str
) -> None:
    async with Engine(store_url) as engine:
        handle = await engine.start(review, kind)
        await until(waiting(engine, handle.run_id))
        with pytest.raises(AnswerError, match=match):
            await engine.answer(handle.run_id, given)
        run = await engine.get_run(handle.run_id)  # nothing was sent: it still waits
        assert run.status == "waiting" and run.question is not None


async def test_answering_a_run_that_waits_for_no_person(store_url: str) -> None:
    @workflow
    async def quick(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine:
        handle = await engine.start(quick)
        await handle.result()
        with pytest.raises(AnswerError, match="waits for no person"):
            await engine.answer(handle.run_id, "yes")


async def test_a_question_that_cannot_be_asked_fails_before_anything_is_journaled(
    store_url: str,
) -> None:
    bad: list[dict] = [
        {"question": ""},
        {"question": "?", "input_type": "essay"},
        {"question": "?", "input_type": "select"},
        {"question": "?", "input_type": "select", "options": [{"label": "no id"}]},
        {"question": "?", "input_type": "select", "options": ["a", "a"]},
        {"question": "?", "input_type": "multiselect", "options": ["a,b"]},
        {"question": "?", "options": ["a"]},
        {"question": "?", "skippable": "yes"},
    ]

    @workflow
    async def asks(ctx: WorkflowContext, i: int) -> None:
        await ctx.wait_for_user(**bad[i])

    async with Engine(store_url) as engine:
        for i in range(len(bad)):
            handle = await engine.start(asks, i)
            with pytest.raises(Exception, match="ConfigurationError"):
                await handle.result()
            assert await engine.journal(handle.run_id) == []


# -- batch and map


@function(retries=1)
async def square(ctx: FunctionContext, x: int) -> int:
    calls[f"square {x}"] += 1
    if x < 0:
        raise ValueError(f"negative: {x}")
    await asyncio.sleep(0.001 * (7 - x % 7))  # finish out of order
    return x * x


async def test_batch_results_in_input_order_with_failures_kept(store_url: str) -> None:
    @workflow
    async def squares(ctx: WorkflowContext) -> dict:
        result = await ctx.batch(square, [3, -1, 2, -4, 5], max_concurrency=2)
        assert isinstance(result, BatchResult)
        return {
            "status": result.status,
            "outputs": result.outputs,
            "ok": result.successful_outputs(),
            "stats": [result.stats.total_items, result.stats.completed_items,
                      result.stats.failed_items],
            "errors": [(i.index, i.error.code, i.error.message) for i in result.failed_items()
                       if i.error is not None],
            "exceptions": [type(i.exception).__name__ for i in result.failed_items()],
        }  # fmt: skip

    async with Engine(store_url) as engine:
        result = await engine.run(squares)
    assert result == {
        "status": "partial_failure",
        "outputs": [9, None, 4, None, 25],
        "ok": [9, 4, 25],
        "stats": [5, 3, 2],
        "errors": [[1, "ValueError", "negative: -1"], [3, "ValueError", "negative: -4"]],
        "exceptions": ["ValueError", "ValueError"],
    }


async def test_batch_bounds_its_concurrency(store_url: str) -> None:
    running = [0, 0]

    @function
    async def tracked(i: int) -> int:
        running[0] += 1
        running[1] = max(running)
        await asyncio.sleep(0.01)
        running[0] -= 1
        return i

    @workflow
    async def fan(ctx: WorkflowContext) -> list:
        return await ctx.map(tracked, range(12), max_concurrency=3)

    async with Engine(store_url) as engine:
        assert await engine.run(fan) == list(range(12))
    assert running[1] == 3


async def test_map_and_fail_fast_batch_raise_the_first_item_failure_and_run_no_more(
    store_url: str,
) -> None:
    @workflow
    async def fail_fast(ctx: WorkflowContext, how: str) -> str:
        try:
            if how == "map":
                await ctx.map(square, [1, -2, 3, -4, 5, 6], max_concurrency=1)
            else:
                await ctx.batch(square, [1, -2, 3, -4, 5, 6], max_concurrency=1,
                                continue_on_failure=False)  # fmt: skip
        except ValueError as exc:
            return str(exc)
        return "no failure"

    async with Engine(store_url) as engine:
        for how in ("map", "batch"):
            calls.clear()
            assert await engine.run(fail_fast, how) == "negative: -2"
            assert calls == Counter({"square 1": 1, "square -2": 1})


async def test_a_batch_replays_after_a_restart_without_running_items_again(
    store_url: str,
) -> None:
    @workflow
    async def then_wait(ctx: WorkflowContext) -> list:
        first = await ctx.batch(square, [1, -1, 2])
        await ctx.sleep(0.5)
        second = await ctx.map(square, [4, 5])
        return [first.outputs, first.stats.failed_items, second]

    one = Engine(store_url, inline_sleep=0.0)
    handle = await one.start(then_wait)
    await until(waiting(one, handle.run_id))
    await one.close()
    async with Engine(store_url, inline_sleep=0.0) as two:
        assert await two.handle(handle.run_id).result() == [[1, None, 4], 1, [16, 25]]
    assert set(calls.values()) == {1}  # every item ran exactly once


async def test_batch_timeout_per_item_is_the_items_own_journaled_timeout(
    store_url: str,
) -> None:
    @function(retries=1)
    async def slow(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    @workflow
    async def timed(ctx: WorkflowContext) -> list:
        result = await ctx.batch(slow, [0.0, 5.0], timeout_per_item=0.2)
        return [result.outputs, [type(i.exception).__name__ for i in result.failed_items()]]

    async with Engine(store_url) as engine:
        outputs, failed = await engine.run(timed)
    assert outputs == [0.0, None]
    assert failed[0] in ("StepTimeoutError", StepTimeoutError.__name__)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"timeout_per_item": -1}, "timeout_per_item"),
    ],
)
async def test_batch_options_out_of_range_are_refused(
    store_url: str, options: dict, match: str
) -> None:
    @workflow
    async def bad(ctx: WorkflowContext) -> None:
        await ctx.batch(square, [1], **options)

    async with Engine(store_url) as engine:
        with pytest.raises(Exception, match=match):
            await engine.run(bad)
    assert not calls


# -- progress


async def test_progress_is_stored_with_the_run_and_survives_a_restart(store_url: str) -> None:
    @workflow
    async def reporter(ctx: WorkflowContext, n: int) -> int:
        for i in range(1, n + 1):
            ctx.progress(i, total=n, message=f"item {i}")
        ctx.progress(1, total=n)  # backwards: dropped
        await ctx.wait_for_event("go")
        ctx.progress(n, total=n, message="done")
        return n

    first = Engine(store_url)
    handle = await first.start(reporter, 50)
    await until(waiting(first, handle.run_id))
    await first.close()
    async with Engine(store_url) as second:
        run = await second.get_run(handle.run_id)  # read by another engine
        assert run.progress is not None
        assert (run.progress["n"], run.progress["total"], run.progress["message"]) == (
            50, 50, "item 50",
        )  # fmt: skip
        listed = await second.runs()
        assert listed[0].progress == run.progress
        await second.send_event(handle.run_id, "go")
        assert await second.handle(handle.run_id).result() == 50
        final = (await second.get_run(handle.run_id)).progress
    assert final is not None and final["message"] == "done"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((True,), "progress is a number"),
        ((float("nan"),), "finite"),
        ((1, 0), "total is > 0"),
        ((1, None, 3), "message is a str"),
    ],
)
async def test_bad_progress_reports_are_refused(store_url: str, args: tuple, match: str) -> None:
    @workflow
    async def bad(ctx: WorkflowContext) -> None:
        ctx.progress(*args)

    async with Engine(store_url) as engine:
        with pytest.raises(Exception, match=match):
            await engine.run(bad)


# -- smaller pieces


async def test_named_sleep_task_input_awaited_state_and_session_keys(store_url: str) -> None:
    @function
    async def greet(ctx: FunctionContext, who: str) -> str:
        return f"hi {who}"

    @workflow
    async def small(ctx: WorkflowContext) -> dict:
        await ctx.sleep(0.5, name="cool_down")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            greeting = await ctx.task(greet, input="ada")
        await ctx.state.set_async("a", 1)
        await ctx.state.set_async("b", 2)
        await ctx.state.delete_async("a")
        await ctx.session.state.set("x", 1)
        await ctx.session.state.set("y", 2)
        keys = await ctx.session.state.keys()
        await ctx.session.state.clear()
        return {
            "greeting": greeting,
            "state": ctx.state.items(),
            "keys": keys,
            "after": await ctx.session.state.keys(),
        }

    first = Engine(store_url, inline_sleep=0.0)
    handle = await first.start(small, session_id="s-9")
    await until(waiting(first, handle.run_id))
    await first.close()
    async with Engine(store_url, inline_sleep=0.0) as second:
        assert await second.handle(handle.run_id).result() == {
            "greeting": "hi ada",
            "state": [["b", 2]],
            "keys": ["x", "y"],
            "after": [],
        }
        names = [entry.name for entry in await second.journal(handle.run_id)]
        assert await second.state(session_id="s-9") == {}
    assert names[0] == "@sleep:cool_down"
    assert "greet" in names and "@state.keys" in names


async def test_task_keeps_input_for_a_function_that_has_such_a_parameter(
    store_url: str,
) -> None:
    @function
    async def echo(input: str, suffix: str = "") -> str:
        return input + suffix

    @workflow
    async def uses_input(ctx: WorkflowContext) -> str:
        with pytest.warns(DeprecationWarning):
            return await ctx.task(echo, input="x", suffix="!")

    async with Engine(store_url) as engine:
        assert await engine.run(uses_input) == "x!"
