"""What a queued write waits for under open-loop load: the LMDB writer's group commits
(their duration and how many ops each carries), the time from an op's hand-off to the
writer until the event loop settles its future, and a raw single-record sync commit of
the same environment (the latency floor's unit), measured before the load.

Workflows of ``--steps`` steps start at ``--rate`` a second (scheduled in this process,
each on its own schedule: a late one does not delay the next) for ``--seconds``; their
latency counts from the scheduled start to the result.

    .venv/bin/python benchmarks/diagnostics/commit_wait.py --rate 5000 --steps 3
    .venv/bin/python benchmarks/diagnostics/commit_wait.py --rate 100 --steps 1

The load generator shares the engine's process and loop (``latency.py`` keeps it in a
process of its own): read the breakdown, and take latencies from ``latency.py``.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import flows
import workloads
from surestep import Engine
from surestep.store import lmdb_env

COMMITS: list[tuple[float, int]] = []  # (seconds, ops) of each commit of the writer's
HANDED: dict[Any, float] = {}  # a queued op's future -> when it was handed over
WAITED: list[float] = []  # hand-over to settled, seconds, per queued op


def instrument() -> None:
    env = lmdb_env.Env
    enqueue, commit, settle = env.enqueue, env._commit_noting, lmdb_env._settle

    def handed(self: Any, op: Any, *args: Any) -> Any:
        fut = enqueue(self, op, *args)
        HANDED[fut] = time.perf_counter()
        return fut

    def committed(self: Any, log: Any, ops: list[Any]) -> Any:
        began = time.perf_counter()
        try:
            return commit(self, log, ops)
        finally:
            COMMITS.append((time.perf_counter() - began, len(ops)))

    def settled(futs: list[Any], *rest: Any) -> None:
        now = time.perf_counter()
        for fut in futs:
            began = HANDED.pop(fut, None)
            if began is not None:
                WAITED.append(now - began)
        settle(futs, *rest)

    env.enqueue = handed  # type: ignore[method-assign]
    env._commit_noting = committed  # type: ignore[method-assign]
    lmdb_env._settle = settled


def raw_commits(engine: Engine, n: int) -> list[float]:
    """``n`` single-record sync commits into a database of the store's own environment."""
    env: Any = engine.store.env  # type: ignore[attr-defined]
    db = env.env.open_db(b"commit-wait-floor")
    times = []
    with env._writing:  # the writer thread waits meanwhile
        for i in range(n):
            began = time.perf_counter()
            txn = env.env.begin(write=True)
            txn.put(i.to_bytes(8, "big"), b"x" * 100, db)
            txn.commit()
            times.append(time.perf_counter() - began)
    return times


async def load(engine: Engine, rate: float, seconds: float, steps: int) -> list[float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def one(at: float) -> None:
        assert await engine.run(flows.chain, steps) == steps
        latencies.append(time.perf_counter() - at)

    tasks = []
    first = time.perf_counter() + 0.01
    for i in range(int(rate * seconds)):
        at = first + i / rate
        ahead = at - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)
        tasks.append(loop.create_task(one(at)))
    await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[round(p * (len(ordered) - 1))]


async def measure(args: argparse.Namespace) -> None:
    path = tempfile.mkdtemp(prefix="surestep-commit-wait-")
    try:
        async with Engine(path) as engine:
            await engine.run(flows.chain, args.steps)  # the commit log made, the map warm
            floor = statistics.median(raw_commits(engine, 200))
            instrument()
            latencies = await load(engine, args.rate, args.seconds, args.steps)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    durations = [seconds for seconds, _ in COMMITS]
    ops = [n for _, n in COMMITS]
    busy = sum(durations) / args.seconds
    print(
        f"{args.steps}-step workflows at {args.rate:,.0f}/s for {args.seconds:g} s "
        f"({os.cpu_count()} cpus; load generator in this process)"
    )
    print(f"  raw single-record sync commit   {floor * 1e6:8.0f} us (median of 200)")
    print(
        f"  the writer's commits            {len(COMMITS):8,} : {pct(durations, 0.5) * 1e6:.0f} us "
        f"p50, {pct(durations, 0.9) * 1e6:.0f} us p90, {statistics.mean(ops):.1f} ops each "
        f"(p50 {pct(ops, 0.5)}), busy {busy:.0%} of the time"
    )
    print(
        f"  hand-over to settled, per op    {len(WAITED):8,} : {pct(WAITED, 0.5) * 1e6:.0f} us "
        f"p50, {pct(WAITED, 0.9) * 1e6:.0f} us p90"
    )
    print(
        f"  workflow latency                {len(latencies):8,} : "
        f"{pct(latencies, 0.5) * 1e3:.2f} ms p50, {pct(latencies, 0.99) * 1e3:.2f} ms p99; "
        f"{args.steps + 2} raw commits: {(args.steps + 2) * floor * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    workloads.new_loop().run_until_complete(measure(args))


if __name__ == "__main__":
    main()
