"""The workflow the golden journals in ``tests/golden/`` were recorded from."""

from __future__ import annotations

from surestep import WorkflowContext, function, workflow


@function
async def reserve(item: str) -> str:
    return f"reserved-{item}"


@function
async def pay(amount: int) -> str:
    return f"paid-{amount}"


@workflow(name="checkout", version="1")
async def checkout(ctx: WorkflowContext, items: list, amount: int) -> dict:
    reservations = [await ctx.step(reserve, item) for item in items]
    if ctx.patched("receipt-step"):
        await ctx.step("receipt", lambda: f"receipt-{amount}")
    payment = await ctx.step(pay, amount)
    note = await ctx.wait_for_event("note", timeout=3600) if amount > 100 else None
    return {"reservations": reservations, "payment": payment, "note": note}
