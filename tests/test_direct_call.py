"""A @workflow awaited without an engine runs in memory (surestep.local), and a
synchronous @workflow body runs, in an engine and directly."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import pytest

from surestep import (
    ChildWorkflowError,
    Context,
    DefinitionError,
    DirectCallError,
    Engine,
    FunctionContext,
    SerializationError,
    WorkflowContext,
    decorators,
    function,
    workflow,
)

CALLS: list[str] = []


@dataclass
class Receipt:
    order_id: str
    total: float


@function(retries={"max_attempts": 3, "initial_interval_ms": 1}, backoff="constant")
async def direct_charge(ctx: FunctionContext, order_id: str, amount: float) -> Receipt:
    CALLS.append(f"direct_charge {order_id} attempt {ctx.attempt}")
    if ctx.attempt == 0:
        raise ConnectionError("gateway busy")
    ctx.logger.info("charged", order_id=order_id)
    return Receipt(order_id, amount)


@workflow
async def direct_invoice(ctx: WorkflowContext, receipt: Receipt) -> str:
    CALLS.append(f"direct_invoice {receipt.order_id}")
    return f"INV-{receipt.order_id}"


@workflow
async def direct_checkout(ctx: WorkflowContext, order_id: str, amount: float = 10.0) -> dict:
    """Charge an order and invoice it."""
    ctx.state.set("status", "charging")
    receipt = await ctx.step(direct_charge, order_id, amount)
    await ctx.session.state.set("last_order", order_id)
    await ctx.sleep(0.05)
    number = await ctx.step(direct_invoice, receipt)
    ctx.state.set("status", "done")
    return {
        "receipt": receipt.total,
        "typed": isinstance(receipt, Receipt),
        "direct_invoice": number,
        "status": ctx.state.get("status"),
        "last_order": await ctx.session.state.get("last_order"),
        "run_id": ctx.run_id,
        "session_id": ctx.session_id,
        "user_id": ctx.user_id,
        "attempt": ctx.attempt,
    }


async def test_a_workflow_awaited_without_an_engine_runs_in_memory(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    CALLS.clear()
    monkeypatch.chdir(tmp_path)  # a store opened by mistake would appear here
    with caplog.at_level(logging.INFO):
        result = await direct_checkout(order_id="o-1")
    assert result["receipt"] == 10.0 and result["typed"] and result["direct_invoice"] == "INV-o-1"
    assert result["status"] == "done" and result["last_order"] == "o-1"
    assert result["session_id"] == result["run_id"] and result["user_id"] is None
    assert result["attempt"] == 0
    # the step's retry policy applied; the child ran inline with its typed argument
    assert CALLS == [
        "direct_charge o-1 attempt 0",
        "direct_charge o-1 attempt 1",
        "direct_invoice o-1",
    ]
    assert any(getattr(r, "order_id", None) == "o-1" for r in caplog.records)
    assert os.listdir(tmp_path) == []  # nothing journaled


async def test_a_context_given_first_names_the_run() -> None:
    given = Context(run_id="t-1", session_id="s-1", user_id="u-1", attempt=2)
    result = await direct_checkout(given, order_id="o-2", amount=3.5)
    assert (result["run_id"], result["session_id"], result["user_id"]) == ("t-1", "s-1", "u-1")
    assert result["attempt"] == 2 and result["receipt"] == 3.5
    # positional arguments bind as in engine.start (AGNT5 would drop them)
    assert (await direct_checkout("o-3", 1.0))["receipt"] == 1.0


async def test_a_workflow_called_with_a_run_context_is_the_body_itself(store_url: str) -> None:
    @workflow
    async def outer(ctx: WorkflowContext, order_id: str) -> dict:
        return await direct_checkout(ctx, order_id)  # plain code inside this run

    CALLS.clear()
    async with Engine(store_url) as engine:
        handle = await engine.start(outer, "o-4")
        result = await handle.result()
        steps = [entry.name for entry in await engine.journal(handle.run_id)]
    assert result["run_id"] == handle.run_id
    assert steps[:2] == ["@state.set", "direct_charge"]  # journaled in outer's run


def test_the_decorated_workflow_keeps_its_name_signature_and_docstring() -> None:
    assert (
        direct_checkout.__name__ == "direct_checkout"
        and direct_checkout.__doc__ == "Charge an order and invoice it."
    )
    assert list(inspect.signature(direct_checkout).parameters) == ["ctx", "order_id", "amount"]
    assert inspect.iscoroutinefunction(direct_checkout)
    spec = decorators.find_workflow(direct_checkout)
    assert direct_checkout.__wrapped__ is spec.fn  # type: ignore[attr-defined]
    assert decorators.find_workflow("direct_checkout") is spec


async def test_the_engine_calls_the_body_not_the_direct_call(store_url: str) -> None:
    called: list[bool] = []

    @workflow
    async def probe(ctx: WorkflowContext) -> int:
        called.append(isinstance(ctx, WorkflowContext))
        return 1

    spec = decorators.find_workflow(probe)
    assert spec.fn is not probe and probe.__wrapped__ is spec.fn  # type: ignore[attr-defined]
    async with Engine(store_url) as engine:
        assert await engine.run(probe) == 1
    assert called == [True]


async def test_waiting_for_an_event_is_refused_with_what_to_do() -> None:
    @workflow
    async def approval(ctx: WorkflowContext, order_id: str) -> Any:
        await ctx.step("prepare", lambda: order_id)
        return await ctx.wait_for_event("approved")

    with pytest.raises(DirectCallError, match=r"waits for event 'approved'.*engine\.start"):
        await approval(order_id="o-5")


async def test_a_failing_child_is_a_child_workflow_error_and_steps_raise_their_type() -> None:
    @function(retries=1)
    async def reserve_stock(sku: str) -> None:
        raise LookupError(f"no stock for {sku}")

    @workflow
    async def picker(ctx: WorkflowContext, sku: str) -> None:
        await ctx.step(reserve_stock, sku)

    @workflow
    async def order(ctx: WorkflowContext, sku: str) -> str:
        try:
            await ctx.step(picker, sku)
        except ChildWorkflowError as exc:
            return f"child failed: {exc.error_type}"
        return "ok"

    with pytest.raises(LookupError, match="no stock for a-1"):
        await picker(sku="a-1")
    assert await order(sku="a-1") == "child failed: LookupError"


async def test_bad_arguments_and_results_are_refused_as_in_a_run() -> None:
    @workflow
    async def echo(ctx: WorkflowContext, value: Any) -> Any:
        return value

    with pytest.raises(TypeError, match=r"echo.*cannot take these arguments"):
        await echo(1, 2)
    with pytest.raises(SerializationError):
        await echo(value=object())

    @workflow
    async def leaky(ctx: WorkflowContext) -> Any:
        return object()

    with pytest.raises(SerializationError, match="result of workflow 'leaky'"):
        await leaky()


async def test_direct_calls_run_side_by_side() -> None:
    @workflow
    async def napper(ctx: WorkflowContext, name: str) -> str:
        ctx.state.set("name", name)
        await ctx.sleep(0.05)
        return str(ctx.state.get("name"))

    names = [f"n{i}" for i in range(20)]
    assert await asyncio.gather(*(napper(name=n) for n in names)) == names


def test_context_arguments_are_checked() -> None:
    from surestep import ConfigurationError

    with pytest.raises(ConfigurationError, match="run_id"):
        Context(run_id="")
    with pytest.raises(ConfigurationError, match="attempt"):
        Context(attempt=-1)
    made = Context("r-1", "c-1", "p-1")
    assert (made.run_id, made.correlation_id, made.parent_correlation_id) == ("r-1", "c-1", "p-1")


# ---------------------------------------------------------------- synchronous bodies


async def test_a_synchronous_workflow_runs_in_an_engine_and_directly(store_url: str) -> None:
    @workflow
    def tally(ctx: WorkflowContext, items: list[int]) -> dict:
        ctx.state.set("count", len(items))
        ctx.logger.info("tallied", count=len(items))
        return {"total": sum(items), "count": ctx.state.get("count"), "at": ctx.now().year > 2000}

    assert not inspect.iscoroutinefunction(tally.__wrapped__)  # type: ignore[attr-defined]
    assert await tally(items=[1, 2, 3]) == {"total": 6, "count": 3, "at": True}
    async with Engine(store_url) as engine:
        handle = await engine.start(tally, [4, 5])
        assert await handle.result() == {"total": 9, "count": 2, "at": True}
        names = [entry.name for entry in await engine.journal(handle.run_id)]
    assert names == ["@state.set", "@now"]


@pytest.mark.parametrize(
    "call",
    [
        "ctx.step(fetch, 1)",
        "ctx.sleep(5)",
        "ctx.wait_for_event('go')",
        "ctx.session.state.set('k', 1)",
        "ctx.gather(a=fetch(1))",
    ],
)
def test_a_synchronous_body_that_must_await_is_refused_at_decoration(
    tmp_path: Any, call: str
) -> None:
    source = (
        "from surestep import workflow\n"
        "async def fetch(n): return n\n"
        "@workflow\n"
        "def waiter(ctx, n):\n"
        "    x = 1\n"
        f"    value = {call}\n"
        "    return n\n"
    )
    path = tmp_path / "sync_flows.py"
    path.write_text(source)
    with pytest.raises(DefinitionError) as raised:
        exec(compile(source, str(path), "exec"), {"__name__": "sync_flows"})
    message = str(raised.value)
    assert f"{path}:6" in message and "async def" in message and "never happen" in message


def test_a_synchronous_body_may_define_coroutines_of_its_own() -> None:
    @workflow
    def planner(ctx: WorkflowContext, n: int) -> int:
        async def later() -> Any:
            return await ctx.step("x", lambda: n)

        del later
        return n

    assert decorators.find_workflow(planner).name == "planner"


# ---------------------------------------------------------------- @function called directly


async def test_a_function_taking_ctx_called_without_one_runs_as_a_step_in_memory() -> None:
    CALLS.clear()
    receipt = await direct_charge(order_id="o-8", amount=4.0)  # as AGNT5's unit tests call it
    assert receipt == Receipt("o-8", 4.0)
    assert CALLS == [
        "direct_charge o-8 attempt 0",
        "direct_charge o-8 attempt 1",
    ]  # its retry policy
    assert direct_charge.__wrapped__ is decorators.spec_of(direct_charge).fn  # type: ignore[attr-defined, union-attr]
    assert list(inspect.signature(direct_charge).parameters) == ["ctx", "order_id", "amount"]

    @function
    def stamp_label(ctx: FunctionContext, label: str) -> str:  # a def: awaited, as in AGNT5
        return f"{label}@{ctx.run_id[:4]}:{ctx.attempt}"

    stamped = await stamp_label("x")
    assert stamped.startswith("x@") and stamped.endswith(":0")
    with pytest.raises(TypeError, match=r"stamp_label\(\) cannot take these arguments"):
        await stamp_label()


async def test_a_function_called_with_a_context_is_the_function(store_url: str) -> None:
    seen: list[str] = []

    @function
    async def audit(ctx: FunctionContext, what: str) -> str:
        seen.append(type(ctx).__name__)
        return what

    @function
    def plain(a: int, b: int) -> int:
        return a + b

    @workflow
    async def shell(ctx: WorkflowContext) -> str:
        return await audit(ctx, "inline")  # plain code in the run, as AGNT5 passes its ctx

    async with Engine(store_url) as engine:
        assert await engine.run(shell) == "inline"
    assert seen == ["WorkflowContext"]
    assert plain(1, 2) == 3 and plain is decorators.spec_of(plain).fn  # type: ignore[union-attr]


async def test_waiting_for_a_person_is_refused_and_progress_is_kept_quiet() -> None:
    @workflow
    async def approve_it(ctx: WorkflowContext) -> Any:
        ctx.progress(1, total=2, message="asking")
        return await ctx.wait_for_user("Ship it?", input_type="approval")

    with pytest.raises(DirectCallError, match=r"a person's answer \(ctx.wait_for_user\)"):
        await approve_it()

    @workflow
    async def counted(ctx: WorkflowContext, n: int) -> int:
        for i in range(n):
            ctx.progress(i + 1, total=n)
        return n

    assert await counted(n=3) == 3
