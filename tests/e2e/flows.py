"""Workflows for the dashboard's end-to-end tests and screenshots (``surestep run flows.py:...``).

Steps take a few milliseconds each (``asyncio.sleep``) so that the timeline's
bars have a width a person can see; nothing measures them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def validate_order(order_id: str, items: list[str]) -> dict[str, Any]:
    await asyncio.sleep(0.02)
    return {"valid": bool(items), "item_count": len(items)}


@function
async def reserve_stock(order_id: str, items: list[str]) -> list[str]:
    await asyncio.sleep(0.03)
    return [f"{item}-reserved" for item in items]


@function(retries={"max_attempts": 3, "initial_interval_ms": 20}, backoff="constant")
async def charge_card(ctx: FunctionContext, order_id: str, amount: float) -> str:
    await asyncio.sleep(0.02)
    if ctx.attempt == 0:  # the payment service times out once, then answers
        raise TimeoutError("payment gateway timed out")
    return f"txn-{order_id}"


@function
async def create_shipment(order_id: str, txn: str) -> str:
    await asyncio.sleep(0.04)
    return f"track-{order_id}"


@function
async def send_receipt(order_id: str, tracking: str) -> bool:
    await asyncio.sleep(0.01)
    return True


@workflow
async def order_fulfillment(
    ctx: WorkflowContext, order_id: str, items: list[str]
) -> dict[str, Any]:
    """Five steps; the charge is retried once."""
    await ctx.step(validate_order, order_id, items)
    await ctx.step(reserve_stock, order_id, items)
    txn = await ctx.step(charge_card, order_id, 42.5)
    tracking = await ctx.step(create_shipment, order_id, txn)
    await ctx.step(send_receipt, order_id, tracking)
    return {"order_id": order_id, "txn": txn, "tracking": tracking}


@workflow
async def greet(ctx: WorkflowContext, name: str) -> str:
    """One step."""
    greeting: str = await ctx.step("greeting", lambda: f"hello {name}")
    return greeting


@function(retries={"max_attempts": 3, "initial_interval_ms": 10}, backoff="constant")
async def charge_declined(order_id: str) -> str:
    await asyncio.sleep(0.01)
    raise ValueError(f"card declined for {order_id}: insufficient funds")


@workflow
async def declined_payment(ctx: WorkflowContext, order_id: str) -> dict[str, Any]:
    """Fails: its second step raises on all three attempts."""
    await ctx.step(validate_order, order_id, ["book"])
    txn = await ctx.step(charge_declined, order_id)
    return {"txn": txn}


@function
async def wait_for_file(path: str) -> str:
    # Holds the run open until the test creates the file (bounded: a test that
    # forgot it fails after a minute rather than hanging).
    gate = Path(path)
    for _ in range(6000):
        if gate.exists():  # noqa: ASYNC240 - a stat() of a test's file
            return "released"
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{path} never appeared")


@workflow
async def held_open(ctx: WorkflowContext, path: str) -> str:
    """Running until ``path`` exists, then one more step."""
    await ctx.step(validate_order, "held", ["x"])
    released = await ctx.step(wait_for_file, path)
    await ctx.step("after", lambda: "done")
    return str(released)


@workflow
async def approval(ctx: WorkflowContext, request: str) -> dict[str, Any]:
    """A step, a short durable sleep, then waits for the event ``approved``."""
    await ctx.step(validate_order, request, ["document"])
    await ctx.sleep(0.1)
    decision = await ctx.wait_for_event("approved", timeout=120)
    await ctx.step("record_decision", lambda: f"{request}: {decision}")
    return {"request": request, "decision": decision}


@workflow
async def family(ctx: WorkflowContext, name: str) -> dict[str, Any]:
    """A step, then a child workflow (``greet``)."""
    await ctx.step(validate_order, name, ["gift"])
    greeting = await ctx.step(greet, name)
    return {"greeting": greeting}


@workflow
async def long_nap(ctx: WorkflowContext, note: str) -> str:
    """A step, then a durable sleep of an hour: the run waits, holding no worker."""
    await ctx.step(validate_order, note, ["pillow"])
    await ctx.sleep(3600)
    return note


@workflow
async def refund_review(ctx: WorkflowContext, order_id: str) -> dict[str, Any]:
    """Reports its progress, then waits for a person to approve the refund."""
    ctx.progress(2, total=5, message="checked the order")
    decision = await ctx.wait_for_user(f"Refund {order_id}?", input_type="approval")
    return {"order_id": order_id, "decision": decision}


@function(
    retries={"max_attempts": 5, "initial_interval_ms": 3_600_000, "max_interval_ms": 3_600_000},
    backoff="constant",
)
async def call_partner(order_id: str) -> str:
    raise ConnectionError(f"partner API refused {order_id}: HTTP 503")


@workflow
async def retry_later(ctx: WorkflowContext, order_id: str) -> str:
    """A step, then one that fails and is retried in an hour: the run waits, retrying."""
    await ctx.step(validate_order, order_id, ["cable"])
    return str(await ctx.step(call_partner, order_id))


@workflow
async def many_steps(ctx: WorkflowContext, n: int) -> int:
    """``n`` quick steps under three names."""
    total = 0
    for i in range(n):
        name = ("fetch", "parse", "store")[i % 3]
        total += await ctx.step(name, lambda i=i: i)
    return total


@workflow
async def fan_out(ctx: WorkflowContext, n: int) -> int:
    """``n`` child runs of ``greet``, one after another."""
    for i in range(n):
        await ctx.step(greet, f"child-{i}", key=i)
    return n


@workflow
async def stamped(ctx: WorkflowContext, note: str) -> str:
    """A journaled time, then a step."""
    at = ctx.now()
    return str(await ctx.step("label", lambda: f"{note} at {at.isoformat()}"))


@workflow(retention="30d")
async def monthly_report(ctx: WorkflowContext, month: str) -> str:
    """One step; its runs are kept for 30 days, whatever the store's default."""
    return str(await ctx.step("summarise", lambda: f"report for {month}"))
