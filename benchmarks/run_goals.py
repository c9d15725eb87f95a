"""Run every goal workload several times and print one table of medians.

    .venv/bin/python benchmarks/run_goals.py                 # 5 repetitions of each
    .venv/bin/python benchmarks/run_goals.py --repeat 7 --only replay,recovery
    .venv/bin/python benchmarks/run_goals.py --json figures.json

Each repetition builds a fresh store (the replay and recovery stores are rebuilt
too) and measures the workload's baseline in the same process just before the
workload itself (see ``workloads.py``), so every repetition yields a ratio. The
table shows the median of the goal figure, its spread, and the median of the
per-repetition ratios. The machine is a shared, noisy VM: read the medians and
the ratios, never one absolute time.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable

import surestep
import workloads
from workloads import Workload


def run_once(make: Callable[[], Workload]) -> dict[str, float]:
    work = make()
    try:
        work.setup()
        gc.collect()
        started = time.perf_counter()
        work.measured()
        elapsed = time.perf_counter() - started
        work.teardown()  # checks correctness first
    finally:
        work.cleanup()
    return work.figures(elapsed)


def goal_rows(name: str, repeat: int) -> list[dict[str, float]]:
    loop = workloads.new_loop()
    rows: list[dict[str, float]] = []
    try:
        for _ in range(repeat):
            if name == "sequential_fsync":
                rows.append(run_once(lambda: workloads.SequentialSteps(loop, "fsync")))
            elif name == "sequential_process":
                rows.append(run_once(lambda: workloads.SequentialSteps(loop, "process")))
            elif name == "concurrent_fsync":
                rows.append(run_once(lambda: workloads.ConcurrentSteps(loop)))
            elif name in ("short1_fsync", "short0_fsync"):
                steps = int(name[5])
                rows.append(run_once(lambda s=steps: workloads.ShortWorkflows(loop, s)))
            elif name == "replay":
                built = workloads.build_replay_store(loop)
                try:
                    rows.append(run_once(lambda b=built: workloads.Replay(loop, b)))
                finally:
                    built.remove()
            elif name == "recovery":
                built = workloads.build_recovery_store(loop)
                try:
                    rows.append(run_once(lambda b=built: workloads.Recovery(loop, b)))
                finally:
                    built.remove()
            elif name == "journal_bytes":
                rows.append(run_once(lambda: workloads.JournalBytes(loop)))
            elif name == "parked_rss":
                engine = workloads.parked_rss("engine")
                tasks = workloads.parked_rss("tasks")
                rows.append(workloads.rss_figures(engine, tasks, workloads.PARKED_RUNS))
            else:
                raise SystemExit(f"unknown goal {name!r}; known: {', '.join(workloads.GOALS)}")
            print(f"  {name} {len(rows)}/{repeat}", file=sys.stderr, flush=True)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per goal (>= 5)")
    parser.add_argument("--only", default="", help="comma-separated goal names")
    parser.add_argument("--json", default="", help="also write every repetition's figures here")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(workloads.GOALS)

    started = time.time()
    results: dict[str, tuple[int, dict[str, float], list[dict[str, float]]]] = {}
    for name in names:
        rows = goal_rows(name, args.repeat)
        results[name] = (len(rows), workloads.medians(rows), rows)

    about = {"surestep": surestep.__version__, **workloads.machine()}
    print("; ".join(f"{k}: {v}" for k, v in about.items()))
    print(f"{args.repeat} repetitions per goal, {time.time() - started:.0f} s in all\n")
    print(workloads.format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": about, "goals": {k: v[2] for k, v in results.items()}}, f, indent=1
            )


if __name__ == "__main__":
    main()
