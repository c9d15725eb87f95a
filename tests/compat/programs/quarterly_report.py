"""Synchronous code: blocking ``def`` functions as steps (run in a thread pool, as
AGNT5 runs them) and a synchronous ``@workflow`` body, which AGNT5 also accepts."""

from __future__ import annotations

import time

import world

from surestep import FunctionContext, WorkflowContext, function, workflow

SALES = {"north": [120, 80, 95], "south": [60, 70, 65]}


@function
def load_sales(ctx: FunctionContext, region: str) -> list[int]:
    time.sleep(0.01)  # a blocking database driver
    return SALES[region]


@function(retries=2)
def render_pdf(ctx: FunctionContext, quarter: str, totals: dict) -> str:
    time.sleep(0.01)
    world.effect("pdf", quarter, totals=totals)
    return f"reports/{quarter}.pdf"


@function
def email_report(ctx: FunctionContext, quarter: str, path: str) -> bool:
    world.effect("email", quarter, path=path)
    return True


@workflow
async def quarterly_report(ctx: WorkflowContext, quarter: str, regions: list[str]) -> dict:
    totals = {}
    for region in regions:
        totals[region] = sum(await ctx.step(load_sales, region))
    path = await ctx.step(render_pdf, quarter, totals)
    await ctx.step(email_report, quarter, path)
    return {"quarter": quarter, "totals": totals, "path": path}


@workflow
def classify_ticket(ctx: WorkflowContext, subject: str) -> dict:
    """A synchronous body: no steps to await, state and logging only."""
    label = "billing" if "invoice" in subject.lower() else "general"
    ctx.state.set("label", label)
    ctx.logger.info("classified", subject=subject, label=label)
    return {"label": ctx.state.get("label"), "run": bool(ctx.run_id)}
