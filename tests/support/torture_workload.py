"""The torture test's workflows: steps, a durable sleep, an event and a child.

Every step appends ``start``/``end`` lines to ``SURESTEP_TEST_LEDGER`` (one
write each) with the run, step, worker pid and wall-clock time. Results depend
only on ``n``, so each run's expected result is known in advance.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from surestep import FunctionContext, WorkflowContext, function, workflow


def _log(phase: str, ctx: FunctionContext) -> None:
    line = {"phase": phase, "run": ctx.run_id, "seq": ctx.seq, "pid": os.getpid(), "t": time.time()}
    fd = os.open(os.environ["SURESTEP_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@function(retries=1)
async def churn(ctx: FunctionContext, n: int, k: int) -> int:
    _log("start", ctx)
    await asyncio.sleep(0.01 + (n * 7 + k) % 31 / 1000)
    _log("end", ctx)
    return (n * 31 + k * 17) % 1009


@workflow
async def leaf(ctx: WorkflowContext, n: int) -> int:
    return await ctx.step(churn, n, 100)


@workflow
async def mixed(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for k in range(3):
        total += await ctx.step(churn, n, k)
    if n % 3 == 0:
        await ctx.sleep(0.05 if n % 2 else 1.5)  # in place, or suspended on a timer
    if n % 4 == 0:
        total += int(await ctx.wait_for_event("go"))
    if n % 5 == 0:
        total += await ctx.step(leaf, n)
    total += await ctx.step(churn, n, 3)
    return total


def steps(n: int) -> int:
    """How many ``churn`` steps run ``n`` makes, its child's included."""
    return 4 + (n % 5 == 0)


def expected(n: int) -> int:
    def value(k: int) -> int:
        return (n * 31 + k * 17) % 1009

    total = sum(value(k) for k in range(3)) + value(3)
    if n % 4 == 0:
        total += n  # the event's payload
    if n % 5 == 0:
        total += value(100)
    return total
