"""Workflows the HTTP tests start through ``surestep serve`` (and a worker executes)."""

from __future__ import annotations

from typing import Any

from surestep import WorkflowContext, workflow


@workflow
async def add(ctx: WorkflowContext, a: int, b: int) -> int:
    total: int = await ctx.step("sum", lambda: a + b)
    return total


@workflow
async def approval(ctx: WorkflowContext, order: str) -> dict[str, Any]:
    await ctx.step("requested", lambda: order)
    decision = await ctx.wait_for_event("approved")
    return {"order": order, "by": decision["by"]}


@workflow
async def refuse(ctx: WorkflowContext, reason: str) -> None:
    await ctx.step("check", lambda: reason)
    raise ValueError(f"refused: {reason}")


@workflow(webhook=True, webhook_secret="whsec-test-0123456789")
async def paid(ctx: WorkflowContext, order: str, amount: int) -> dict[str, Any]:
    await ctx.step("record", lambda: [order, amount])
    return {"order": order, "amount": amount}


@workflow
async def pick_size(ctx: WorkflowContext, order: str) -> dict[str, Any]:
    size = await ctx.wait_for_user(
        f"Which size for {order}?", input_type="select", options=["s", "m"], skippable=True
    )
    return {"order": order, "size": size}


@workflow(retention="30d")
async def audit(ctx: WorkflowContext, entry: str) -> str:
    """Kept for 30 days, whatever the engine's default."""
    return str(await ctx.step("file", lambda: entry))
