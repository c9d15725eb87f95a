"""Child workflows: a batch ingest that runs one child workflow per document, each
with steps of its own, and reports what the children returned."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def extract_text(ctx: FunctionContext, doc_id: str) -> str:
    world.effect("extract", doc_id)
    return f"text of {doc_id}"


@function
async def index_document(ctx: FunctionContext, doc_id: str, text: str) -> int:
    world.effect("index", doc_id, chars=len(text))
    return len(text.split())


@workflow
async def process_document(ctx: WorkflowContext, doc_id: str) -> dict:
    text = await ctx.step(extract_text, doc_id)
    words = await ctx.step(index_document, doc_id, text)
    return {"doc_id": doc_id, "words": words}


@function
async def publish_report(ctx: FunctionContext, batch: str, total: int) -> str:
    world.effect("publish", batch, total=total)
    return f"report-{batch}"


@workflow
async def ingest_batch(ctx: WorkflowContext, batch: str, doc_ids: list[str]) -> dict:
    documents = [await ctx.step(process_document, doc_id) for doc_id in doc_ids]
    total = sum(doc["words"] for doc in documents)
    report = await ctx.step(publish_report, batch, total)
    return {"documents": documents, "total_words": total, "report": report}
