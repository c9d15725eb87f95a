"""An ETL pipeline in the style of AGNT5's ``ctx.run`` examples: extract, transform
each partition (the same function repeated, told apart by ``key=``), load."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


@function
async def extract_data(ctx: FunctionContext, dataset: str) -> dict:
    world.effect("extract", dataset)
    return {"dataset": dataset, "partitions": {"p1": [1, 2, 3], "p2": [4, 5], "p3": [6]}}


@function(retries=3)
async def transform_partition(ctx: FunctionContext, name: str, rows: list[int]) -> dict:
    world.effect("transform", name, rows=len(rows))
    return {"name": name, "rows": [row * 10 for row in rows]}


@function
async def load_data(ctx: FunctionContext, dataset: str, target: str, rows: int) -> str:
    world.effect("load", f"{dataset}->{target}", rows=rows)
    return f"{target}.{dataset}"


@workflow
async def etl_workflow(ctx: WorkflowContext, dataset: str, target: str = "warehouse") -> dict:
    extracted = await ctx.run(extract_data, dataset)
    transformed = []
    for name, rows in sorted(extracted["partitions"].items()):
        transformed.append(await ctx.run(transform_partition, name, rows, key=name))
    total = sum(len(part["rows"]) for part in transformed)
    table = await ctx.run(load_data, dataset, target, total)
    return {"table": table, "rows": total, "partitions": [p["name"] for p in transformed]}
