"""Workflows for the multi-process worker tests, served by ``surestep worker``.

Every step appends a ``start`` and an ``end`` line (run, seq, pid, wall-clock
time) to the ledger file named by ``SURESTEP_TEST_LEDGER``, so the test can
prove from side effects that no completed step ran twice and that no two
workers executed one run at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

from surestep import FunctionContext, WorkflowContext, function, workflow

STEPS = 5


def _log(phase: str, ctx: FunctionContext) -> None:
    line = {"phase": phase, "run": ctx.run_id, "seq": ctx.seq, "pid": os.getpid(), "t": time.time()}
    fd = os.open(os.environ["SURESTEP_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines never interleave
    finally:
        os.close(fd)


@function(retries=1)
async def visit(ctx: FunctionContext, n: int, k: int) -> int:
    _log("start", ctx)
    await asyncio.sleep(random.uniform(0.005, 0.03))
    _log("end", ctx)
    return n * 7 + k


@workflow
async def tour(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for k in range(STEPS):
        total += await ctx.step(visit, n, k)
    return total


def expected(n: int) -> int:
    return sum(n * 7 + k for k in range(STEPS))
