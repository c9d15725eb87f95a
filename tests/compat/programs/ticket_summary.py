"""The direct-call style of AGNT5's examples and unit tests: ``main()`` awaits the
workflow with keyword arguments and no engine; the same code also runs in an engine.

    python ticket_summary.py
"""

from __future__ import annotations

import asyncio

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def load_ticket(ctx: FunctionContext, ticket_id: str) -> dict:
    return {"id": ticket_id, "title": "Login fails", "comments": ["cannot log in", "works now"]}


@function
async def post_summary(ctx: FunctionContext, ticket_id: str, summary: str) -> bool:
    world.effect("post", ticket_id, summary=summary)
    return True


@workflow
async def summarize_ticket(ctx: WorkflowContext, ticket_id: str, max_words: int = 6) -> dict:
    ticket = await ctx.step(load_ticket, ticket_id)
    words = " ".join([ticket["title"], *ticket["comments"]]).split()[:max_words]
    summary = " ".join(words)
    ctx.state.set("summary", summary)
    posted = await ctx.step(post_summary, ticket_id, summary)
    return {"ticket_id": ticket_id, "summary": ctx.state.get("summary"), "posted": posted}


async def main() -> None:
    result = await summarize_ticket(ticket_id="T-100")
    print(f"summary: {result['summary']}")


if __name__ == "__main__":
    asyncio.run(main())
