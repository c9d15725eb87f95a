"""Payouts with idempotency keys, checkpointed awaitables and journaled values: the
transfer passes its step's idempotency key to the bank; the payout id (``ctx.uuid4()``)
and the FX quote (``ctx.step("name", awaitable)``) are the same on every replay."""

from __future__ import annotations

import asyncio

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


async def fetch_fx_quote(currency: str) -> float:
    await asyncio.sleep(0)  # stands for an HTTP call
    return {"USD": 1.0, "EUR": 0.92}[currency]


@function(retries=4, backoff="constant")
async def transfer_funds(ctx: FunctionContext, payout_id: str, vendor: str, amount: float) -> str:
    world.effect("transfer", vendor, payout_id=payout_id, idempotency_key=ctx.idempotency_key)
    return f"wire-{vendor}"


@function
async def record_payout(ctx: FunctionContext, payout_id: str, vendor: str, wire: str) -> bool:
    world.effect("record", vendor, payout_id=payout_id, wire=wire)
    return True


@workflow
async def vendor_payout(ctx: WorkflowContext, vendor: str, amount: float, currency: str) -> dict:
    payout_id = str(ctx.uuid4())
    started = ctx.now()
    rate = await ctx.step("fx_quote", fetch_fx_quote(currency))
    wire = await ctx.step(transfer_funds, payout_id, vendor, round(amount * rate, 2))
    await ctx.step(record_payout, payout_id, vendor, wire)
    return {
        "wire": wire,
        "amount": round(amount * rate, 2),
        "payout_id_is_uuid": len(payout_id) == 36,
        "started_is_aware": started.tzinfo is not None,
    }
