"""A chat workflow: each run is one turn of a conversation, the history kept in the
session's state (``@workflow(chat=True)``), as AGNT5's chat templates keep it."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow

CANNED = {
    "where is my order": "It shipped yesterday.",
    "can i change the address": "Yes, until it leaves the depot.",
}


@function
async def moderate(ctx: FunctionContext, conversation: str, turn: int, text: str) -> bool:
    world.effect("moderate", f"{conversation}:{turn}")
    return "forbidden" not in text


@function(retries=2)
async def generate_reply(ctx: FunctionContext, conversation: str, history: list[dict]) -> str:
    world.effect("llm", f"{conversation}:{len(history)}")
    question = history[-1]["content"].lower().rstrip("?")
    return CANNED.get(question, f"Noted ({len(history) // 2 + 1} messages so far).")


@workflow(chat=True)
async def support_chat(ctx: WorkflowContext, message: str) -> dict:
    history = await ctx.session.state.get("messages", [])
    turn = len(history) // 2 + 1
    allowed = await ctx.step(moderate, ctx.session_id, turn, message)
    history.append({"role": "user", "content": message})
    reply = await ctx.step(generate_reply, ctx.session_id, history) if allowed else "Sorry."
    history.append({"role": "assistant", "content": reply})
    await ctx.session.state.set("messages", history)
    return {"reply": reply, "turn": turn, "session": ctx.session_id}
