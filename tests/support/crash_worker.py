"""A worker process for the crash tests: runs or recovers ``chain`` and reports.

    python crash_worker.py start STORE LEDGER N    # start a run of N steps
    python crash_worker.py recover STORE LEDGER    # resume unfinished runs
    python crash_worker.py nap STORE LEDGER SECONDS  # a run that sleeps durably
    python crash_worker.py ask STORE LEDGER        # a run that waits for a person
    python crash_worker.py fan STORE LEDGER N      # a batch of N items, 2 at a time

Each step appends its effect to LEDGER (JSON lines, fsynced) before returning,
with its idempotency key. ``COMMIT=log``: the engine's ``commit`` option;
``APPLY_INTERVAL=<seconds>``: how long its commit log's applies may wait for an LMDB
commit. ``PAUSE_AT=<where>:<k>`` makes the process print
``paused <where> <k>`` and wait to be killed: ``between:k`` after step k
returned, ``inside:k`` inside step k after its effect, ``replay:k`` after step
k was replayed from the journal.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from surestep import Engine, FunctionContext, WorkflowContext, function, workflow
from surestep.engine import run_loop
from surestep.store import lmdb_env

LEDGER = ""
PAUSE = os.environ.get("PAUSE_AT", "")


def record_effect(ctx: FunctionContext) -> None:
    """The step's side effect: a line in the ledger, on disk before the step returns."""
    line = {"run": ctx.run_id, "seq": ctx.seq, "key": ctx.idempotency_key, "pid": os.getpid()}
    with open(LEDGER, "a", encoding="utf-8") as ledger:
        ledger.write(json.dumps(line) + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())


async def pause(where: str, k: int) -> None:
    if f"{where}:{k}" == PAUSE:
        print(f"paused {where} {k}", flush=True)
        await asyncio.sleep(3600)


@function
async def work(ctx: FunctionContext, k: int, acc: int) -> int:
    record_effect(ctx)
    await pause("inside", k)
    return acc * 31 % 1_000_003 + k


@workflow
async def chain(ctx: WorkflowContext, n: int) -> int:
    acc = 1
    for k in range(n):
        replaying = ctx.is_replaying
        acc = await ctx.step(work, k, acc)
        await pause("replay" if replaying else "between", k)
    return acc


@workflow
async def nap(ctx: WorkflowContext, seconds: float) -> float:
    await ctx.step("before", lambda: print("before-sleep", flush=True))
    await ctx.sleep(seconds)
    return await ctx.step("after", time.time)


@function
async def squared_effect(ctx: FunctionContext, k: int) -> int:
    record_effect(ctx)
    await pause("inside", k)
    return k * k


@workflow
async def ask_to_ship(ctx: WorkflowContext) -> dict:
    await ctx.step(squared_effect, -1)
    answer = await ctx.wait_for_user(
        "Ship it?", input_type="approval", allow_custom=True, skippable=True
    )
    await ctx.step(squared_effect, -2)
    return {"answer": answer}


@workflow
async def batch_of_effects(ctx: WorkflowContext, n: int) -> list:
    result = await ctx.batch(squared_effect, range(n), max_concurrency=2)
    return result.outputs


def expected(n: int) -> int:
    acc = 1
    for k in range(n):
        acc = acc * 31 % 1_000_003 + k
    return acc


async def main(argv: list[str]) -> None:
    global LEDGER
    command, store, LEDGER = argv[0], argv[1], argv[2]
    inline = float(os.environ.get("INLINE_SLEEP", "1.0"))
    options = {"commit": os.environ["COMMIT"]} if "COMMIT" in os.environ else {}
    if "APPLY_INTERVAL" in os.environ:  # how long the commit log's applies may wait
        lmdb_env.APPLY_INTERVAL = float(os.environ["APPLY_INTERVAL"])
    async with Engine(
        store, durability=os.environ.get("DURABILITY", "fsync"), inline_sleep=inline, **options
    ) as engine:
        if command in ("ask", "fan"):
            target = ask_to_ship if command == "ask" else batch_of_effects
            handle = await engine.start(target, *(int(a) for a in argv[3:]))
            print(f"started {handle.run_id}", flush=True)
            handles = [handle]
        elif command == "nap":
            handle = await engine.start(nap, float(argv[3]))
            print(f"started {handle.run_id}", flush=True)
            handles = [handle]
        elif command == "start":
            handle = await engine.start(chain, int(argv[3]))
            print(f"started {handle.run_id}", flush=True)
            handles = [handle]
        else:
            handles = await engine.recover()
        for handle in handles:
            print(f"result {handle.run_id} {json.dumps(await handle.result())}", flush=True)


if __name__ == "__main__":
    run_loop(main(sys.argv[1:]))
