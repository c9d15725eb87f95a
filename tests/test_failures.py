"""Retries, backoff, timeouts, bad input, a full store and a lost lease."""

from __future__ import annotations

import asyncio
import inspect
import sys

import pytest

from support.calls import calls
from support.store_edit import expire_lease
from surestep import (
    ConfigurationError,
    DefinitionError,
    Engine,
    LeaseLostError,
    RunNotFoundError,
    SerializationError,
    StepFailedError,
    StepTimeoutError,
    StoreFullError,
    UnknownWorkflowError,
    WorkflowContext,
    WorkflowFailedError,
    function,
    workflow,
)
from surestep.decorators import BackoffPolicy, FunctionSpec, RetryPolicy

# -- decorators


def test_decorated_functions_keep_signature_and_docstring() -> None:
    @function(retries=2)
    async def documented(ctx, order_id: str, qty: int = 1) -> str:  # type: ignore[no-untyped-def]
        """Charge the card."""
        return order_id

    assert documented.__doc__ == "Charge the card."
    assert list(inspect.signature(documented).parameters) == ["ctx", "order_id", "qty"]
    assert documented.__surestep__.takes_ctx and documented.__surestep__.retry.max_attempts == 2


def test_duplicate_names_raise_at_decoration() -> None:
    @function(name="dup")
    async def one() -> None: ...

    with pytest.raises(DefinitionError, match="already registered"):

        @function(name="dup")
        async def two() -> None: ...

    @workflow(name="wdup")
    async def w1(ctx: WorkflowContext) -> None: ...

    with pytest.raises(DefinitionError, match="already registered"):

        @workflow(name="wdup")
        async def w2(ctx: WorkflowContext) -> None: ...


@pytest.mark.parametrize(
    "options",
    [
        {"retries": 0},
        {"retries": -1},
        {"retries": 1.5},
        {"retries": {"max_attempts": 2, "initial_interval_ms": -1}},
        {"retries": {"initial_interval_ms": 500, "max_interval_ms": 100}},
        {"timeout_ms": 0},
        {"timeout_ms": -5},
        {"backoff": "fibonacci"},
        {"backoff": {"type": "linear", "multiplier": 0}},
    ],
)
def test_invalid_function_options(options: dict) -> None:
    with pytest.raises(ConfigurationError):
        function(**options)


def test_workflow_must_be_a_function() -> None:
    with pytest.raises(DefinitionError, match="decorates a function"):

        @workflow
        def generator_wf(ctx):  # type: ignore[no-untyped-def]
            yield 1

    with pytest.raises(DefinitionError, match="decorates a function"):
        workflow(len)


def test_backoff_schedules() -> None:
    def spec(kind: str, multiplier: float = 2.0) -> FunctionSpec:
        retry = RetryPolicy(max_attempts=9, initial_interval_ms=100, max_interval_ms=1000)
        return FunctionSpec("s", print, retry, BackoffPolicy(kind, multiplier), None, False)

    assert [spec("constant").delay(n) for n in (0, 1, 2)] == [0.1, 0.1, 0.1]
    assert [spec("linear").delay(n) for n in (0, 1, 2)] == [0.1, 0.2, 0.3]
    assert [spec("exponential").delay(n) for n in (0, 1, 2, 4, 8)] == [0.1, 0.2, 0.4, 1.0, 1.0]
    assert [spec("exponential", 3).delay(n) for n in (0, 1, 2)] == [0.1, 0.3, 0.9]


def test_retry_options_take_the_agnt5_shapes() -> None:
    @function(retries=5, backoff="LINEAR")
    async def by_int() -> None: ...

    @function(retries={"max_attempts": 2, "initial_interval_ms": 10}, backoff={"type": "constant"})
    async def by_dict() -> None: ...

    @function
    async def by_default() -> None: ...

    assert by_int.__surestep__.retry == RetryPolicy(max_attempts=5)
    assert by_int.__surestep__.backoff == BackoffPolicy("linear")
    assert by_dict.__surestep__.retry == RetryPolicy(2, 10, 60_000)
    assert by_default.__surestep__.retry == RetryPolicy(3, 1000, 60_000)
    assert by_default.__surestep__.backoff == BackoffPolicy("exponential", 2.0)


# -- retries and timeouts


async def test_retries_until_success_record_attempts(store_url: str) -> None:
    @function(retries={"max_attempts": 4, "initial_interval_ms": 1}, backoff="exponential")
    async def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("try again")
        return "ok"

    @workflow
    async def retrying(ctx: WorkflowContext) -> str:
        return await ctx.step(flaky)

    async with Engine(store_url) as engine:
        handle = await engine.start(retrying)
        assert await handle.result() == "ok"
        (entry,) = await engine.journal(handle.run_id)
    assert calls["flaky"] == 3 and entry.attempt == 3


async def test_exhausted_retries_fail_the_run(store_url: str) -> None:
    @function(retries={"max_attempts": 3, "initial_interval_ms": 1}, backoff="constant")
    async def broken() -> None:
        calls["broken"] += 1
        raise RuntimeError("card declined")

    @workflow
    async def uncaught(ctx: WorkflowContext) -> None:
        await ctx.step(broken)

    async with Engine(store_url) as engine:
        handle = await engine.start(uncaught)
        with pytest.raises(WorkflowFailedError) as failed:
            await handle.result()
        run = await engine.get_run(handle.run_id)
    assert calls["broken"] == 3
    # The run fails with the step's own exception; the traceback says which step and how often.
    assert failed.value.error_type == "RuntimeError"
    assert failed.value.message == "card declined"
    assert run.status == "failed" and run.error is not None
    assert "RuntimeError: card declined" in run.error["traceback"]
    if sys.version_info >= (3, 11):  # exception notes
        assert "step 0 (broken) failed after 3 attempt(s)" in run.error["traceback"]


async def test_each_attempt_runs_clear_of_the_last_ones_error(store_url: str) -> None:
    """A retry is not run while the previous error is being handled: the body sees no
    exception in flight, and the journaled traceback is the last attempt's alone."""
    seen: list[object] = []

    @function(retries={"max_attempts": 3, "initial_interval_ms": 1}, backoff="constant")
    async def flaky() -> None:
        seen.append(sys.exc_info()[1])
        raise ValueError(f"boom {len(seen)}")

    @workflow
    async def retried(ctx: WorkflowContext) -> None:
        await ctx.step(flaky)

    async with Engine(store_url) as engine:
        handle = await engine.start(retried)
        with pytest.raises(WorkflowFailedError):
            await handle.result()
        (entry,) = await engine.journal(handle.run_id)
    assert seen == [None, None, None]
    assert entry.attempt == 3 and entry.error is not None
    trace = entry.error["traceback"]
    assert "ValueError: boom 3" in trace and "boom 1" not in trace and "boom 2" not in trace


async def test_timeout_is_enforced_per_attempt(store_url: str) -> None:
    @function(retries={"max_attempts": 2, "initial_interval_ms": 1}, timeout_ms=20)
    async def stuck() -> None:
        calls["stuck"] += 1
        await asyncio.sleep(30)

    @workflow
    async def waits(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(stuck)
        except StepFailedError as exc:
            return exc.error_type
        return "unreachable"

    async with Engine(store_url) as engine:
        assert await engine.run(waits) == "surestep.errors.StepTimeoutError"
    assert calls["stuck"] == 2
    assert issubclass(StepTimeoutError, TimeoutError)


# -- bad input: typed errors, nothing written


async def test_non_json_workflow_arguments_write_nothing(store_url: str) -> None:
    @workflow
    async def takes(ctx: WorkflowContext, value: object) -> None: ...

    async with Engine(store_url) as engine:
        with pytest.raises(
            SerializationError, match=r"input of workflow 'takes'.*\[0\]\[0\]\['when'\].*set"
        ):
            await engine.start(takes, {"when": {1, 2}})
        with pytest.raises(TypeError):  # SerializationError is a TypeError
            await engine.start(takes, object())
        assert await engine.runs() == []


async def test_wrong_arguments_and_unknown_workflows(store_url: str) -> None:
    @workflow
    async def two_args(ctx: WorkflowContext, a: int, b: int) -> int:
        return a + b

    @workflow
    async def no_ctx() -> int:  # no positional place for the context: no call can fit
        return 0

    @workflow
    async def ctx_by_keyword(*, ctx: WorkflowContext) -> int:
        return 0

    async with Engine(store_url) as engine:
        with pytest.raises(TypeError, match="cannot take these arguments"):
            await engine.start(two_args, 1)
        for unfit in (no_ctx, ctx_by_keyword):
            with pytest.raises(TypeError, match="cannot take these arguments"):
                await engine.start(unfit)
        assert await engine.runs() == []  # refused before anything was stored
        with pytest.raises(UnknownWorkflowError, match="no workflow named 'nope'"):
            await engine.start("nope")
        with pytest.raises(UnknownWorkflowError, match="not a @workflow"):
            await engine.start(print)
        with pytest.raises(RunNotFoundError):
            await engine.get_run("0" * 32)
        with pytest.raises(RunNotFoundError):
            await engine.journal("not-a-run-id")
        assert await engine.runs() == []
        assert await engine.run("two_args", 2, 3) == 5


async def test_non_json_step_input_and_result_write_nothing(store_url: str) -> None:
    @function
    async def echo(value: object) -> object:
        return value

    @workflow
    async def sloppy(ctx: WorkflowContext) -> list:
        errors = []
        for bad_input in [b"bytes", {1: "int key"}]:
            try:
                await ctx.step(echo, bad_input)
            except SerializationError as exc:
                errors.append(str(exc))
        try:
            await ctx.step("makes-a-set", lambda: {1, 2})
        except SerializationError as exc:
            errors.append(str(exc))
        return errors

    async with Engine(store_url) as engine:
        handle = await engine.start(sloppy)
        errors = await handle.result()
        assert await engine.journal(handle.run_id) == []
    assert "input of step 0 (echo)" in errors[0] and "bytes" in errors[0]
    assert "input of step 1 (echo)" in errors[1] and "(key)" in errors[1]
    assert "result of step 2 (makes-a-set)" in errors[2] and "set" in errors[2]


async def test_non_json_workflow_result_fails_the_run(store_url: str) -> None:
    @workflow
    async def returns_set(ctx: WorkflowContext) -> object:
        return {1}

    async with Engine(store_url) as engine:
        with pytest.raises(WorkflowFailedError, match="SerializationError"):
            await engine.run(returns_set)


def test_invalid_engine_options(store_url: str) -> None:
    with pytest.raises(ConfigurationError, match="durability"):
        Engine(store_url, durability="sometimes")
    with pytest.raises(ConfigurationError, match="unknown store URL"):
        Engine("redis://localhost")
    with pytest.raises(ConfigurationError, match="lease_seconds"):
        Engine(store_url, lease_seconds=0)


# -- the store


async def test_full_store_is_a_typed_error_and_loses_nothing(lmdb_path: str) -> None:
    """LMDB only: its memory map has a size limit (PostgreSQL's disk is the server's)."""

    @workflow
    async def big(ctx: WorkflowContext) -> str:
        done = 0
        try:
            for i in range(1000):
                await ctx.step("chunk", lambda i=i: "x" * 20_000 + str(i))
                done += 1
        except StoreFullError as exc:
            calls["full"] += 1
            assert "max_map_size" in str(exc)
        return "y" * 200_000  # a result larger than any room left: finishing fails too

    async with Engine(lmdb_path, map_size=256 * 1024, max_map_size=1024 * 1024) as engine:
        handle = await engine.start(big)
        with pytest.raises(StoreFullError, match="max_map_size"):  # nor can its result be
            await handle.result()
        assert (await engine.get_run(handle.run_id)).status == "running"  # still recoverable
        committed = await engine.journal(handle.run_id)
    assert calls["full"] == 1
    assert 10 < len(committed) < 1000
    assert [e.seq for e in committed] == list(range(len(committed)))
    assert all(e.output == "x" * 20_000 + str(e.seq) for e in committed)


async def test_unwritable_directory_is_a_typed_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    if os.geteuid() == 0:
        target = "/proc/surestep-cannot-be-here"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "store")
    from surestep import StoreError

    with pytest.raises(StoreError, match="cannot open the store"):
        async with Engine(target):
            pass


@pytest.mark.citus_forms
async def test_lost_lease_stops_the_run_without_writing(store_url: str) -> None:
    release, entered = asyncio.Event(), asyncio.Event()

    @function
    async def slow_step() -> str:
        calls["slow"] += 1
        entered.set()
        if calls["slow"] == 1:
            await release.wait()
        return "done"

    @workflow
    async def leased(ctx: WorkflowContext) -> str:
        return await ctx.step(slow_step)

    first = Engine(store_url, lease_seconds=3600)
    handle = await first.start(leased)
    await entered.wait()
    # The first engine stalls past its lease (simulated: the lease is expired
    # in place), and a second engine claims the run through the normal path.
    run = await first.store.get_run(handle.run_id)
    await expire_lease(store_url, first.store, handle.run_id)
    second = Engine(store_url)
    (taken,) = await second.recover()
    release.set()
    active = first.task(handle.run_id)
    assert active is not None
    with pytest.raises(LeaseLostError):
        await active
    assert await taken.result() == "done"
    (entry,) = await second.journal(handle.run_id)
    assert entry.output == "done" and calls["slow"] == 2
    assert (await second.get_run(handle.run_id)).fence == run.fence + 1
    await first.close()
    await second.close()
