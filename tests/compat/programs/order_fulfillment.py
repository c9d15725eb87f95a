"""Order fulfilment, as in AGNT5's order template: validate, reserve stock, charge,
ship and confirm, each a durable step, with the order's status in workflow state."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def validate_order(ctx: FunctionContext, order_id: str, items: list[dict]) -> dict:
    ctx.log("validating order", order_id=order_id, lines=len(items))
    if not items:
        raise ValueError(f"order {order_id} has no items")
    total = sum(item["qty"] * item["price"] for item in items)
    return {"order_id": order_id, "total": round(total, 2), "lines": len(items)}


@function(retries=3)
async def reserve_inventory(ctx: FunctionContext, order_id: str, items: list[dict]) -> str:
    world.effect("reserve", order_id, skus=[item["sku"] for item in items])
    return f"res-{order_id}"


@function(retries=5, backoff="exponential")
async def charge_payment(ctx: FunctionContext, order_id: str, amount: float) -> dict:
    world.effect("charge", order_id, amount=amount, idempotency_key=ctx.idempotency_key)
    return {"transaction_id": f"txn-{order_id}", "amount": amount}


@function
async def create_shipment(ctx: FunctionContext, order_id: str, address: str) -> str:
    world.effect("ship", order_id, address=address)
    return f"trk-{order_id}"


@function
def send_confirmation(ctx: FunctionContext, order_id: str, tracking: str) -> bool:
    world.effect("email", order_id, tracking=tracking)
    return True


@workflow
async def order_fulfillment(
    ctx: WorkflowContext, order_id: str, items: list[dict], address: str
) -> dict:
    """Fulfil one order end to end."""
    ctx.state.set("status", "validating")
    order = await ctx.step(validate_order, order_id, items)
    reservation = await ctx.step(reserve_inventory, order_id, items)
    ctx.state.set("status", "charging")
    payment = await ctx.step(charge_payment, order_id, order["total"])
    tracking = await ctx.step(create_shipment, order_id, address)
    emailed = await ctx.step(send_confirmation, order_id, tracking)
    ctx.state.set("status", "completed")
    ctx.logger.info("order fulfilled", order_id=order_id, total=order["total"])
    return {
        "order_id": order_id,
        "status": ctx.state.get("status"),
        "reservation": reservation,
        "transaction_id": payment["transaction_id"],
        "total": payment["amount"],
        "tracking": tracking,
        "emailed": emailed,
    }
