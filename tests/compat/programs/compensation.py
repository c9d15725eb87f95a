"""A checkout saga: the workflow catches its steps' own exception types (as AGNT5 code
does) and compensates: a sold-out item refunds the charge, a bad address is reported."""

from __future__ import annotations

import world

from surestep import FunctionContext, StepFailedError, WorkflowContext, function, workflow


class OutOfStockError(Exception):
    """A SKU cannot be reserved."""


@function(retries=1)
async def charge_card(ctx: FunctionContext, order_id: str, amount: float) -> str:
    world.effect("charge", order_id, amount=amount)
    return f"ch-{order_id}"


@function(retries=1)
async def reserve_item(ctx: FunctionContext, order_id: str, sku: str) -> str:
    if sku.startswith("sold-out"):
        raise OutOfStockError(f"{sku} is out of stock")
    world.effect("reserve", f"{order_id}:{sku}")
    return f"r-{sku}"


@function(retries=1)
async def verify_address(ctx: FunctionContext, address: str) -> str:
    if not address[-5:].isdigit():
        raise ValueError(f"bad postcode in {address!r}")
    return address


@function
async def refund_charge(ctx: FunctionContext, order_id: str, charge_id: str) -> str:
    world.effect("refund", order_id, charge=charge_id)
    return f"rf-{charge_id}"


@workflow
async def checkout_saga(
    ctx: WorkflowContext, order_id: str, skus: list[str], amount: float, address: str
) -> dict:
    try:
        await ctx.step(verify_address, address)
    except ValueError as exc:
        return {"status": "rejected", "reason": str(exc)}
    charge = await ctx.step(charge_card, order_id, amount)
    reserved = []
    try:
        for sku in skus:
            reserved.append(await ctx.step(reserve_item, order_id, sku))
    except OutOfStockError as exc:
        refund = await ctx.step(refund_charge, order_id, charge)
        # the surestep handlers written before keep catching it too
        return {
            "status": "refunded",
            "reason": str(exc),
            "refund": refund,
            "reserved": reserved,
            "also_step_failed": isinstance(exc, StepFailedError),
        }
    return {"status": "placed", "charge": charge, "reserved": reserved}
