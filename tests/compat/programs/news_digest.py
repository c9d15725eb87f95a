"""User-scoped state across runs: each digest run merges the topics the user asked
for into their saved preferences (``ctx.user.state``) and sends a digest."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def build_digest(ctx: FunctionContext, topics: list[str]) -> list[str]:
    return [f"Top story on {topic}" for topic in topics]


@function
async def send_digest(ctx: FunctionContext, user_id: str, stories: list[str]) -> int:
    world.effect("digest", f"{user_id}:{len(stories)}", stories=stories)
    return len(stories)


@workflow
async def personal_digest(ctx: WorkflowContext, topics: list[str]) -> dict:
    assert ctx.user is not None, "start the digest with user_id="
    saved = await ctx.user.state.get("topics", [])
    merged = sorted(set(saved) | set(topics))
    await ctx.user.state.set("topics", merged)
    stories = await ctx.step(build_digest, merged)
    sent = await ctx.step(send_digest, ctx.user_id, stories)
    return {"user": ctx.user_id, "topics": merged, "sent": sent}
