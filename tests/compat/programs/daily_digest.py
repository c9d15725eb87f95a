"""A scheduled digest, as AGNT5's ``@workflow(cron=...)`` declares it: every morning,
gather the day's numbers and send them."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def gather_metrics(ctx: FunctionContext, team: str) -> dict:
    world.effect("metrics", team)
    return {"signups": 42, "churned": 3}


@function(retries=3)
async def send_digest_email(ctx: FunctionContext, team: str, metrics: dict) -> str:
    world.effect("email", team, metrics=metrics)
    return f"digest for {team}: +{metrics['signups']} / -{metrics['churned']}"


@workflow(cron="0 9 * * *", timezone="Europe/Paris")
async def daily_digest(ctx: WorkflowContext, team: str = "growth") -> str:
    metrics = await ctx.step(gather_metrics, team)
    return await ctx.step(send_digest_email, team, metrics)
