"""Where a sequential step's time goes when it goes through the commit log (a run
stepping alone at ``fsync``, the default): one workflow of ``--steps`` steps, each
stamped (``time.perf_counter_ns``) where the step begins, where the store's ``append``
is called, where the log's mode is entered, after its check (fence, step not recorded
yet), around ``CommitLog.append`` (the record framed, written and ``fdatasync``ed), where
the mode returns, and where the step's ``await`` returns. Prints the median of each
interval and of the whole step, beside a raw append + ``fdatasync`` of a file written
with zeros beforehand (``workloads.raw_log_flushes``, the ``sequential_log`` goal's
floor), measured right before.

    .venv/bin/python benchmarks/diagnostics/log_step.py --steps 1000 --rounds 3

The wrappers cost a few tenths of a microsecond per stamp: compare intervals with each
other and trees with this same script, not its total with ``run_goals.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import workloads
from surestep import Engine, WorkflowContext, function, workflow
from surestep.store import commit_log, lmdb, lmdb_log

STAMPS: dict[str, int] = {}
ROWS: list[dict[str, int]] = []
INTERVALS = (
    ("step", "store", "step to the store's append (the step's input and record encoded)"),
    ("store", "mode", "the store's append to the log's mode"),
    ("mode", "checked", "routing and the check (one read of LMDB and the overlay)"),
    ("checked", "flush", "the check to the log's append"),
    ("flush", "flushed", "CommitLog.append: framed, written, fdatasync"),
    ("flushed", "left", "handed to LMDB's next commit, the lease's clock read"),
    ("left", "done", "back in the workflow (one turn of the loop, the step's result)"),
    ("step", "done", "the whole step"),
)


def stamped(fn: Callable[..., Any], before: str | None, after: str | None) -> Callable[..., Any]:
    def wrapper(*args: Any) -> Any:
        if before is not None:
            STAMPS[before] = time.perf_counter_ns()
        result = fn(*args)
        if after is not None:
            STAMPS[after] = time.perf_counter_ns()
        return result

    return wrapper


lmdb.LmdbStore.append = stamped(lmdb.LmdbStore.append, "store", None)  # type: ignore[method-assign]
lmdb_log.LogMode.append = stamped(lmdb_log.LogMode.append, "mode", "left")  # type: ignore[method-assign]
lmdb_log.LogMode._check = stamped(lmdb_log.LogMode._check, None, "checked")  # type: ignore[method-assign]
commit_log.CommitLog.append = stamped(commit_log.CommitLog.append, "flush", "flushed")  # type: ignore[method-assign]


@function
async def inc(x: int) -> int:
    return x + 1


@workflow(name="diagnostics.log_step")
async def chain(ctx: WorkflowContext, n: int) -> int:
    x = 0
    for _ in range(n):
        STAMPS.clear()
        STAMPS["step"] = time.perf_counter_ns()
        x = await ctx.step(inc, x)
        STAMPS["done"] = time.perf_counter_ns()
        if "flushed" in STAMPS:  # (a step that went through the log)
            ROWS.append(dict(STAMPS))
    return x


async def one_round(path: str, steps: int) -> None:
    async with Engine(path, commit="log") as engine:
        await engine.run(chain, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for n in range(args.rounds):
        raw = workloads.raw_log_flushes(args.steps)[1] * 1e6
        directory = tempfile.mkdtemp(dir=os.environ.get("BENCH_DIR"))
        try:
            ROWS.clear()
            asyncio.run(one_round(os.path.join(directory, "store"), args.steps))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        steps = len(ROWS)
        print(f"round {n + 1}: {steps} steps through the log; raw append + fdatasync {raw:.1f} us")
        for start, end, what in INTERVALS:
            median = statistics.median(row[end] - row[start] for row in ROWS) / 1e3
            print(f"  {median:7.1f} us  {what}")


if __name__ == "__main__":
    main()
