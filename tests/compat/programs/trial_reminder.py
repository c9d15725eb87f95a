"""Durable sleep: welcome a trial user, wait, then follow up. The wait outlives the
process (the wake-up time is journaled), as AGNT5's ``ctx.sleep`` promises."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def send_welcome(ctx: FunctionContext, email: str) -> str:
    world.effect("welcome", email)
    return f"welcome sent to {email}"


@function
async def send_follow_up(ctx: FunctionContext, email: str, days_left: int) -> str:
    world.effect("follow-up", email, days_left=days_left)
    return f"{days_left} days left, sent to {email}"


@workflow
async def trial_reminder(ctx: WorkflowContext, email: str, wait_seconds: float) -> list[str]:
    sent = [await ctx.step(send_welcome, email)]
    await ctx.sleep(wait_seconds, name="trial_wait")  # days in production; here enough to suspend
    sent.append(await ctx.step(send_follow_up, email, 7))
    return sent
