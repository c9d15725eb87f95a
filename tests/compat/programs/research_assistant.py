"""Typed tools with pydantic models, as AGNT5's agent templates write them: the tools
take and return models, and the workflow returns one."""

from __future__ import annotations

import world
from pydantic import BaseModel, Field

from surestep import FunctionContext, WorkflowContext, function, workflow


class SearchQuery(BaseModel):
    text: str
    limit: int = Field(default=3, ge=1, le=10)


class SearchHit(BaseModel):
    title: str
    url: str
    score: float


class Answer(BaseModel):
    question: str
    summary: str
    sources: list[SearchHit]


CORPUS = {
    "durable execution": ["Journaled steps", "Replay after a crash", "Idempotency keys"],
}


@function(retries=2)
async def web_search(ctx: FunctionContext, query: SearchQuery) -> list[SearchHit]:
    world.effect("search", query.text, limit=query.limit)
    titles = CORPUS.get(query.text, [])[: query.limit]
    return [
        SearchHit(title=t, url=f"https://example.org/{i}", score=1.0 - i / 10)
        for i, t in enumerate(titles)
    ]


@function
async def summarize(ctx: FunctionContext, question: str, hits: list[SearchHit]) -> str:
    world.effect("summarize", question, sources=len(hits))
    best = max(hits, key=lambda hit: hit.score)  # models, not dicts, on replay too
    return f"{question}: {len(hits)} sources, best '{best.title}'"


@workflow
async def research_assistant(ctx: WorkflowContext, question: str, limit: int = 2) -> Answer:
    hits = await ctx.step(web_search, SearchQuery(text=question, limit=limit))
    summary = await ctx.step(summarize, question, hits)
    return Answer(question=question, summary=summary, sources=hits)
