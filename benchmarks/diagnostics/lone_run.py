"""Where a lone workflow's time goes at ``fsync``: runs started one at a time, 10 ms
apart (a light open-loop load), each stamped (``time.perf_counter_ns``) where it is
handed to the store (``Env.submit``, by op), where the writer thread picks a batch up,
begins and ends its commit, where the other processes are sent wake-ups, where the event
loop settles the commit's futures, and where an inline commit begins and ends; then
``start`` returning and the result. Prints, for the sequence of stamps most runs share,
the median time from the stamp before and from the start; and, over every run, the
median of its time inside commits and of the rest (hand-offs, wake-ups, Python).

    .venv/bin/python benchmarks/diagnostics/lone_run.py --runs 300 --steps 1

The wrappers cost a few microseconds per stamp: compare two trees with this same
script, not its figures with ``latency.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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

STAMPS: list[tuple[str, int]] = []
INSIDE = [0]  # ns inside commits, this run


def stamp(name: str) -> None:
    STAMPS.append((name, time.perf_counter_ns()))


def instrument() -> None:
    env = lmdb_env.Env
    submit, commit, commit_one, drain = env.submit, env._commit, env._commit_one, env._drain
    # The datagrams to other processes (a tree before them: every wake-up the writer sent).
    sends = "notify_others" if hasattr(lmdb_env.WakeSender, "notify_others") else "notify"
    settle, notify_others = lmdb_env._settle, getattr(lmdb_env.WakeSender, sends)

    def submitted(self: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
        stamp(f"submit {type(op).__name__}")
        return submit(self, op, *args, **kwargs)

    def timed(fn: Any, begin: str, end: str) -> Any:
        def wrapper(*args: Any) -> Any:
            stamp(begin)
            began = time.perf_counter_ns()
            try:
                return fn(*args)
            finally:
                INSIDE[0] += time.perf_counter_ns() - began
                stamp(end)

        return wrapper

    def drained(self: Any, batch: Any) -> None:
        stamp("writer picks up")
        drain(self, batch)

    def settled(*args: Any) -> None:
        stamp("loop settles")
        settle(*args)

    def notified(self: Any) -> None:
        stamp("other processes sent wake-ups")
        notify_others(self)

    env.submit = submitted  # type: ignore[method-assign]
    env._commit = timed(commit, "writer commit begins", "writer commit ends")  # type: ignore[method-assign]
    env._commit_one = timed(commit_one, "inline commit begins", "inline commit ends")  # type: ignore[method-assign]
    env._drain = drained  # type: ignore[method-assign]
    lmdb_env._settle = settled
    setattr(lmdb_env.WakeSender, sends, notified)


async def lone_runs(runs: int, steps: int) -> list[tuple[list[tuple[str, int]], int]]:
    temp = tempfile.mkdtemp(prefix="lone-run-")
    out = []
    try:
        async with Engine(os.path.join(temp, "store"), durability="fsync") as engine:
            for _ in range(30):
                await engine.run(flows.chain, steps)
            for _ in range(runs):
                await asyncio.sleep(0.01)
                STAMPS.clear()
                INSIDE[0] = 0
                stamp("start called")
                handle = await engine.start(flows.chain, steps)
                stamp("start returns")
                workloads.check(await handle.result() == steps, "the workflow's result")
                stamp("result")
                out.append((list(STAMPS), INSIDE[0]))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=1)
    args = parser.parse_args()
    instrument()
    loop = workloads.new_loop()
    try:
        runs = loop.run_until_complete(lone_runs(args.runs, args.steps))
    finally:
        loop.close()
    shapes = collections.Counter(tuple(name for name, _ in stamps) for stamps, _ in runs)
    shape, count = shapes.most_common(1)[0]
    same = [stamps for stamps, _ in runs if tuple(name for name, _ in stamps) == shape]
    print(
        f"{count} of {len(runs)} runs in this order "
        "(us: median from the stamp before, from the start)"
    )
    for i, name in enumerate(shape):
        since = statistics.median(s[i][1] - s[max(i - 1, 0)][1] for s in same) / 1e3
        total = statistics.median(s[i][1] - s[0][1] for s in same) / 1e3
        print(f"  {name:30s} +{since:9.1f} {total:10.1f}")
    whole = [stamps[-1][1] - stamps[0][1] for stamps, _ in runs]
    inside = [ns for _, ns in runs]
    print(
        f"every run: median {statistics.median(whole) / 1e3:.0f} us, of it inside commits "
        f"{statistics.median(inside) / 1e3:.0f} us, the rest "
        f"{statistics.median(w - i for w, i in zip(whole, inside, strict=True)) / 1e3:.0f} us"
    )


if __name__ == "__main__":
    main()
