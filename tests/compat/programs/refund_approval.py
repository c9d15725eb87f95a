"""Human in the loop, approval: a refund above the limit waits for a person to approve
or reject it (``ctx.wait_for_user(..., input_type="approval")``), across crashes."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow

LIMIT = 100.0


@function
async def assess_refund(ctx: FunctionContext, order_id: str, amount: float) -> dict:
    world.effect("assess", order_id, amount=amount)
    return {"order_id": order_id, "amount": amount, "needs_approval": amount > LIMIT}


@function(retries=3)
async def issue_refund(ctx: FunctionContext, order_id: str, amount: float) -> str:
    world.effect("refund", order_id, amount=amount, idempotency_key=ctx.idempotency_key)
    return f"rf-{order_id}"


@function
async def tell_customer(ctx: FunctionContext, order_id: str, outcome: str) -> bool:
    world.effect("notify", order_id, outcome=outcome)
    return True


@workflow
async def refund_approval(ctx: WorkflowContext, order_id: str, amount: float) -> dict:
    assessment = await ctx.step(assess_refund, order_id, amount)
    decision = "approve"
    if assessment["needs_approval"]:
        decision = await ctx.wait_for_user(
            f"Refund {amount:.2f} for order {order_id}?",
            input_type="approval",
            options=[{"id": "approve", "label": "Approve"}, {"id": "reject", "label": "Reject"}],
        )
    outcome = (
        await ctx.step(issue_refund, order_id, amount) if decision == "approve" else "rejected"
    )
    await ctx.step(tell_customer, order_id, outcome)
    return {"order_id": order_id, "decision": decision, "outcome": outcome}
