"""Fan-out research with ``ctx.parallel`` and ``ctx.gather``: several sources searched
at once, results in call order (or by name), then one synthesis step."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function(retries=2)
async def search_source(ctx: FunctionContext, source: str, topic: str) -> list[str]:
    world.effect("search", f"{source}:{topic}")
    return [f"{source} finding {n} on {topic}" for n in range(2)]


@function
async def count_mentions(ctx: FunctionContext, topic: str, channel: str) -> int:
    world.effect("mentions", f"{channel}:{topic}")
    return len(topic) * (3 if channel == "news" else 5)


@function
async def synthesize(ctx: FunctionContext, topic: str, findings: list[str], mentions: dict) -> str:
    world.effect("synthesize", topic, findings=len(findings))
    return f"{topic}: {len(findings)} findings, {sum(mentions.values())} mentions"


@workflow
async def market_scan(ctx: WorkflowContext, topic: str, sources: list[str]) -> dict:
    per_source = await ctx.parallel(*(ctx.step(search_source, s, topic) for s in sources))
    mentions = await ctx.gather(
        news=ctx.step(count_mentions, topic, "news"),
        social=ctx.step(count_mentions, topic, "social"),
    )
    findings = [item for found in per_source for item in found]
    report = await ctx.step(synthesize, topic, findings, mentions)
    return {"report": report, "sources": len(per_source), "mentions": mentions}
