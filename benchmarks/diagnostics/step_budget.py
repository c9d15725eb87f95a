"""The budget of a step of 1,000 x 10 (or of one run stepping alone), at either
durability: CPU by thread, group commits and the loop's wake-ups from the writer thread,
writes not queued for it, collections, and (``--calls``) Python calls on
the loop's thread, each per step.

    .venv/bin/python benchmarks/diagnostics/step_budget.py --durability process --rounds 5
    .venv/bin/python benchmarks/diagnostics/step_budget.py --durability fsync --calls
    .venv/bin/python benchmarks/diagnostics/step_budget.py --runs 1 --steps 1000 \\
        --durability process

It runs on this tree or, with PYTHONPATH, on another one's ``src`` (it only reads the
store's module attributes it counts through, and wraps them for the run). A diagnostic:
wall-clock figures on a shared machine are for comparing two trees in alternation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import pstats
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import flows
import workloads
from surestep import Engine
from surestep.store import lmdb_env


class Counts:
    """What one round counted, through wrappers put around the store's module."""

    def __init__(self) -> None:
        self.settles = 0  # calls into the loop from the writer thread (one per group commit)
        self.settled = 0  # futures those calls settled
        self.queued = 0  # writes queued for the writer thread
        self.collections = [0, 0, 0]

    def install(self) -> list[tuple[Any, str, Any]]:
        """Wrap the counted functions; what to put back."""
        # Writes handed to the writer thread: Env.enqueue (every queued op goes through it)
        queue_name = "enqueue" if hasattr(lmdb_env.Env, "enqueue") else "submit"
        undo = [
            (lmdb_env, "_settle", lmdb_env._settle),
            (lmdb_env.Env, queue_name, getattr(lmdb_env.Env, queue_name)),
        ]
        settle, queue = lmdb_env._settle, getattr(lmdb_env.Env, queue_name)

        def counted_settle(settled: list[Any], *rest: list[Any]) -> None:  # futures first
            self.settles += 1
            self.settled += len(settled)
            settle(settled, *rest)

        def counted_queue(env: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
            self.queued += 1
            return queue(env, op, *args, **kwargs)

        lmdb_env._settle = counted_settle  # type: ignore[assignment]
        setattr(lmdb_env.Env, queue_name, counted_queue)
        gc.callbacks.append(self._collected)
        return undo

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.collections[info["generation"]] += 1


async def _workload(engine: Engine, runs: int, steps: int) -> list[Any]:
    handles = await asyncio.gather(*[engine.start(flows.chain, steps) for _ in range(runs)])
    return await asyncio.gather(*[h.result() for h in handles])


def thread_times() -> dict[int, tuple[int, int]]:
    """(user, system) clock ticks of each thread of this process, by thread id."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]), int(fields[12]))
    return out


def one_round(
    loop: asyncio.AbstractEventLoop, args: argparse.Namespace, profile: cProfile.Profile | None
) -> dict[str, float]:
    path = workloads.temp_dir("budget")
    engine = Engine(path, durability=args.durability)
    counts = Counts()
    try:
        loop.run_until_complete(engine.open())
        loop.run_until_complete(_workload(engine, 10, 2))  # warm: code paths, the map
        undo = counts.install()
        try:
            ticks = thread_times()
            wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
            work = _workload(engine, args.runs, args.steps)
            if profile is not None:
                results = profile.runcall(loop.run_until_complete, work)
            else:
                results = loop.run_until_complete(work)
            loop_cpu = time.thread_time() - loop_cpu
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
            after = thread_times()
        finally:
            for owner, name, value in undo:
                setattr(owner, name, value)
            gc.callbacks.remove(counts._collected)
        workloads.check(results == [args.steps] * args.runs, "every workflow returned its count")
    finally:
        loop.run_until_complete(engine.close())
        shutil.rmtree(path, ignore_errors=True)
    n = args.runs * args.steps
    me = threading.get_native_id()
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / n
    others = [
        (after[t][0] - ticks.get(t, (0, 0))[0], after[t][1] - ticks.get(t, (0, 0))[1])
        for t in after
        if t != me
    ]
    return {
        "steps/s": n / wall,
        "us wall/step": wall / n * 1e6,
        "us CPU/step, loop thread": loop_cpu / n * 1e6,
        "us CPU/step, other threads": (cpu - loop_cpu) / n * 1e6,
        "  loop thread's system time (ticks: 10 ms)": (after[me][1] - ticks[me][1]) * tick_us,
        "  others' user time": sum(u for u, _ in others) * tick_us,
        "  others' system time": sum(s for _, s in others) * tick_us,
        "group commits (loop wake-ups from the writer)": counts.settles,
        "futures settled per group commit": counts.settled / max(counts.settles, 1),
        "writes queued for the writer thread": counts.queued,
        # the others (a run's creation, its steps, its finish): inline, or the commit log's
        "writes not queued (inline, or the commit log's)": args.runs * (args.steps + 2)
        - counts.queued,
        "gen-0 collections/1,000 steps": counts.collections[0] / n * 1000,
        "gen-1/2 collections": counts.collections[1] + counts.collections[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durability", choices=("fsync", "process"), default="process")
    parser.add_argument("--runs", type=int, default=workloads.CONC_RUNS)
    parser.add_argument("--steps", type=int, default=workloads.CONC_STEPS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", action="store_true", help="cProfile the loop's thread")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval: how long a thread waiting for the GIL waits at most (s)",
    )
    parser.add_argument("--top", type=int, default=0, help="with --calls: print the top N")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)

    loop = workloads.new_loop()
    profile = cProfile.Profile() if args.calls else None
    rows = [one_round(loop, args, profile) for _ in range(args.rounds)]
    loop.close()
    print(f"{args.runs} x {args.steps} steps, durability={args.durability}, {args.rounds} rounds")
    for key in rows[0]:
        values = [row[key] for row in rows]
        spread = f"{min(values):,.2f}..{max(values):,.2f}"
        print(f"  {key:48} median {statistics.median(values):>10,.2f}   ({spread})")
    if profile is not None:
        stats = pstats.Stats(profile)
        steps = args.rounds * args.runs * args.steps
        calls = stats.total_calls  # type: ignore[attr-defined]
        print(f"  Python calls/step, loop thread: {calls / steps:.1f}")
        if args.top:
            stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
