"""Deep research fan-out with ``ctx.batch`` and ``ctx.map``: sub-questions researched
in parallel with bounded concurrency, a failed source tolerated, then one report."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def plan_questions(ctx: FunctionContext, topic: str) -> list[str]:
    return [f"{topic}: history", f"{topic}: market", f"{topic}: risks", f"{topic}: paywalled"]


@function(retries=1)
async def research(ctx: FunctionContext, question: str) -> dict:
    if question.endswith("paywalled"):
        raise PermissionError(f"{question} is behind a paywall")
    world.effect("research", question)
    return {"question": question, "notes": f"notes on {question}"}


@function
async def score_note(ctx: FunctionContext, note: str) -> int:
    return len(note)


@function
async def write_report(ctx: FunctionContext, topic: str, notes: list[str], failed: int) -> str:
    world.effect("report", topic, notes=len(notes), failed=failed)
    return f"{topic}: {len(notes)} sections, {failed} source(s) unavailable"


@workflow
async def deep_research(ctx: WorkflowContext, topic: str) -> dict:
    questions = await ctx.step(plan_questions, topic)
    batch = await ctx.batch(research, questions, max_concurrency=2, continue_on_failure=True)
    notes = [item["notes"] for item in batch.outputs if item is not None]
    scores = await ctx.map(score_note, notes, max_concurrency=3)
    report = await ctx.step(write_report, topic, notes, batch.stats.failed_items)
    return {
        "report": report,
        "completed": batch.stats.completed_items,
        "failed": batch.stats.failed_items,
        "scores": scores,
    }
