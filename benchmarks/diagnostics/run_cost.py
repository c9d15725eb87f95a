"""A short workflow's own cost, counted per workflow: Python calls (coroutine resumptions
included), hand-offs to the writer thread, its group commits and inline commits,
collections, memory held per run in flight, CPU by thread.

    .venv/bin/python benchmarks/diagnostics/run_cost.py --steps 0 --durability process
    .venv/bin/python benchmarks/diagnostics/run_cost.py --steps 1 --durability fsync --cprofile

``clients`` clients each start a workflow of ``steps`` steps and wait for its result
``rounds`` times, as ``run_goals.py``'s short goals do (``ShortWorkflows``), after a
warm-up. ``--cprofile`` counts Python calls (a resumed coroutine counts as one):
cProfile on the loop's thread, a profile hook on the others. Counts are the same from
run to run on any machine (the group commits move with how the writer and the loop
interleave); CPU times are not: compare trees in turn, without ``--cprofile``. The
traced memory's peak depends on the moment the wave peaks: read it loosely.
Runs on any tree that has ``Engine`` (point ``PYTHONPATH`` at its ``src``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import workloads
from surestep import Engine


class Counts:
    """What one measured region did, summed."""

    def __init__(self) -> None:
        self.queued = 0  # ops handed to the writer thread
        self.batches = 0  # the writer's group commits
        self.inline = 0  # ops committed on the loop's thread
        self.collections = [0, 0, 0]
        self.writer_calls = 0  # Python calls on the writer thread, with --cprofile
        self.counting_writer = False

    def count_writer_call(self, frame: Any, event: str, arg: Any) -> None:
        if self.counting_writer and event in ("call", "c_call"):
            self.writer_calls += 1


def instrument(engine: Engine, counts: Counts) -> None:
    """Count the store's hand-offs, batches and inline commits (LMDB only)."""
    env: Any = engine.store.env  # type: ignore[attr-defined]
    queue, commit, commit_one = env._queue, env._commit, env._commit_one

    class Queue:
        def __getattr__(self, name: str) -> Any:
            return getattr(queue, name)

        def put(self, item: Any) -> None:
            if item is not None and item[1] is not None:
                counts.queued += 1
            queue.put(item)

    def counted_commit(batch: list[Any]) -> Any:
        counts.batches += 1
        return commit(batch)

    def counted_one(op: Any) -> Any:
        counts.inline += 1
        return commit_one(op)

    env._queue = Queue()
    env._commit = counted_commit
    env._commit_one = counted_one


async def clients(engine: Engine, n: int, rounds: int, steps: int) -> int:
    async def client() -> None:
        for _ in range(rounds):
            handle = await engine.start(workloads.chain, steps)
            assert await handle.result() == steps

    await asyncio.gather(*[client() for _ in range(n)])
    return n * rounds


async def measure(args: argparse.Namespace) -> None:
    counts = Counts()
    if args.cprofile:  # the writer thread starts when the engine opens
        threading.setprofile(counts.count_writer_call)
    with tempfile.TemporaryDirectory() as path:
        async with Engine(path, durability=args.durability) as engine:
            threading.setprofile(None)  # type: ignore[arg-type]
            await clients(engine, args.clients, 1, args.steps)  # warm-up
            instrument(engine, counts)
            gc.collect()

            def collected(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    counts.collections[info["generation"]] += 1

            gc.callbacks.append(collected)
            profile = cProfile.Profile() if args.cprofile else None
            cpu, loop_cpu = time.process_time(), time.thread_time()
            if profile is not None:
                counts.counting_writer = True
                profile.enable()
            try:
                runs = await clients(engine, args.clients, args.rounds, args.steps)
            finally:
                if profile is not None:
                    profile.disable()
                    counts.counting_writer = False
                cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
                gc.callbacks.remove(collected)
            queued, batches, inline = counts.queued, counts.batches, counts.inline
            # Memory a run in flight holds: one wave of clients, traced.
            tracemalloc.start()
            await clients(engine, args.clients, 1, args.steps)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    per = 1 / runs
    print(
        f"{runs} workflows of {args.steps} step(s), {args.clients} clients, "
        f"durability={args.durability}"
    )
    if profile is not None:
        stats = pstats.Stats(profile)
        print(f"  Python calls (loop thread)   {stats.total_calls * per:8.1f} per workflow")  # type: ignore[attr-defined]
        print(f"  Python calls (other threads) {counts.writer_calls * per:8.1f} per workflow")
    print(f"  ops handed to the writer     {queued * per:8.2f} per workflow")
    print(f"  the writer's group commits   {batches * per:8.3f} per workflow")
    print(f"  commits on the loop's thread {inline * per:8.2f} per workflow")
    gens = "/".join(f"{c / runs * 10_000:.0f}" for c in counts.collections)
    print(f"  collections gen 0/1/2        {gens} per 10,000 workflows")
    other = (cpu - loop_cpu) * per * 1e6
    print(
        f"  loop CPU, other threads' CPU {loop_cpu * per * 1e6:6.1f} + {other:.1f} us per workflow"
    )
    print(f"  traced memory at the peak    {peak / args.clients:8.0f} B per run in flight")
    if profile is not None and args.top:
        stats.sort_stats("ncalls").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--durability", default="process", choices=("fsync", "process"))
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cprofile", action="store_true", help="count Python calls")
    parser.add_argument("--top", type=int, default=0, help="with --cprofile: the most called")
    args = parser.parse_args()
    loop = workloads.new_loop()
    try:
        loop.run_until_complete(measure(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
