"""Waiting for an outside decision: an expense is submitted, the workflow waits for the
manager's decision as an event, then pays or notifies."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def submit_expense(ctx: FunctionContext, expense_id: str, amount: float) -> str:
    world.effect("submit", expense_id, amount=amount)
    return f"ticket-{expense_id}"


@function(retries=3)
async def pay_expense(ctx: FunctionContext, expense_id: str, amount: float) -> str:
    world.effect("pay", expense_id, amount=amount, idempotency_key=ctx.idempotency_key)
    return f"paid-{expense_id}"


@function
async def notify_rejection(ctx: FunctionContext, expense_id: str, reason: str) -> str:
    world.effect("reject", expense_id, reason=reason)
    return f"rejected-{expense_id}"


@workflow
async def expense_approval(ctx: WorkflowContext, expense_id: str, amount: float) -> dict:
    ticket = await ctx.step(submit_expense, expense_id, amount)
    ctx.logger.info("waiting for a manager", ticket=ticket)
    decision = await ctx.wait_for_event("manager_decision", timeout=3600)
    if decision["approved"]:
        outcome = await ctx.step(pay_expense, expense_id, amount)
    else:
        outcome = await ctx.step(notify_rejection, expense_id, decision.get("reason", ""))
    return {"ticket": ticket, "outcome": outcome, "decided_by": decision["by"]}
