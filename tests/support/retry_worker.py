"""A worker process for the durable-retry crash test: runs or recovers ``shaky``.

    python retry_worker.py start STORE LEDGER     # start a run, print "started <id>"
    python retry_worker.py recover STORE LEDGER   # resume unfinished runs

The step appends its attempt number (from 0) to LEDGER, fsynced, then fails on its
first three attempts; its backoff (3 s) is taken inline (``inline_sleep`` is 30 s), so
a process killed during it holds the run when it dies.
"""

from __future__ import annotations

import os
import sys

from surestep import Engine, FunctionContext, WorkflowContext, function, workflow
from surestep.engine import run_loop

LEDGER = ""


@function(retries={"max_attempts": 5, "initial_interval_ms": 3000}, backoff="constant")
def shaky(ctx: FunctionContext) -> str:
    with open(LEDGER, "a", encoding="utf-8") as ledger:
        ledger.write(f"{ctx.attempt}\n")
        ledger.flush()
        os.fsync(ledger.fileno())
    if ctx.attempt < 3:
        raise ConnectionError(f"refused at attempt {ctx.attempt}")
    return f"succeeded at attempt {ctx.attempt}"


@workflow
async def shaky_flow(ctx: WorkflowContext) -> str:
    return str(await ctx.step(shaky))


async def main(argv: list[str]) -> None:
    global LEDGER
    command, store, LEDGER = argv
    async with Engine(store, inline_sleep=30.0, lease_seconds=2.0) as engine:
        if command == "start":
            handle = await engine.start(shaky_flow)
            print(f"started {handle.run_id}", flush=True)
            handles = [handle]
        else:
            handles = await engine.recover()
        for handle in handles:
            print(f"result {handle.run_id} {await handle.result()}", flush=True)


if __name__ == "__main__":
    run_loop(main(sys.argv[1:]))


@function(retries={"max_attempts": 3, "initial_interval_ms": 1500}, backoff="constant")
def once_refused(ctx: FunctionContext) -> str:
    if ctx.attempt == 0:
        raise ConnectionError("refused, once")
    return "accepted"


@workflow
async def refused_once(ctx: WorkflowContext) -> str:
    """For ``surestep run``: a backoff past the default inline_sleep (1 s) suspends the run."""
    return str(await ctx.step(once_refused))


@function(
    retries={"max_attempts": 4, "initial_interval_ms": 3_600_000, "max_interval_ms": 3_600_000},
    backoff="constant",
)
def partner_down() -> str:
    raise ConnectionError("partner API answered HTTP 503")


@workflow
async def retried_in_an_hour(ctx: WorkflowContext) -> str:
    """For ``surestep runs`` / ``show``: a run left retrying."""
    await ctx.step("first", lambda: 1)
    return str(await ctx.step(partner_down))
