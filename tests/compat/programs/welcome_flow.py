"""An event-triggered flow: ``@workflow(triggers=[event("user.signed_up")])`` starts
one run per event, with the event's payload as keyword arguments."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow
from surestep.types import event


@function
async def create_workspace(ctx: FunctionContext, user_id: str) -> str:
    world.effect("workspace", user_id)
    return f"ws-{user_id}"


@function(retries=3)
async def send_welcome_email(ctx: FunctionContext, email: str, workspace: str) -> bool:
    world.effect("welcome", email, workspace=workspace)
    return True


@workflow(triggers=[event("user.signed_up")])
async def welcome_flow(ctx: WorkflowContext, user_id: str, email: str) -> dict:
    workspace = await ctx.step(create_workspace, user_id)
    sent = await ctx.step(send_welcome_email, email, workspace)
    return {"workspace": workspace, "welcomed": sent}
