"""A webhook-triggered flow: the payment provider POSTs a signed event to
``/webhooks/on_payment`` (``@workflow(webhook=True, webhook_secret=...)``, served by
``surestep serve``), and the workflow fulfils the paid order."""

from __future__ import annotations

import os

import world

from surestep import FunctionContext, WorkflowContext, function, workflow

SECRET = os.environ.get("PAYMENTS_WEBHOOK_SECRET", "whsec-compat-0123456789")


@function
async def mark_paid(ctx: FunctionContext, order_id: str, amount_cents: int) -> str:
    world.effect("paid", order_id, amount_cents=amount_cents)
    return f"receipt-{order_id}"


@function(retries=3)
async def ship_order(ctx: FunctionContext, order_id: str) -> str:
    world.effect("ship", order_id, idempotency_key=ctx.idempotency_key)
    return f"trk-{order_id}"


@workflow(webhook=True, webhook_secret=SECRET)
async def on_payment(ctx: WorkflowContext, order_id: str, amount_cents: int, status: str) -> dict:
    if status != "succeeded":
        return {"order_id": order_id, "status": "ignored"}
    receipt = await ctx.step(mark_paid, order_id, amount_cents)
    tracking = await ctx.step(ship_order, order_id)
    return {"order_id": order_id, "status": "shipped", "receipt": receipt, "tracking": tracking}
