"""Repeat one goal's measured region for a profiler (py-spy, callgrind, cProfile).

    .venv/bin/python benchmarks/diagnostics/profile_goal.py sequential_process --rounds 40
    py-spy record --format raw --rate 2000 --threads -o seq.txt -- \\
        .venv/bin/python benchmarks/diagnostics/profile_goal.py sequential_process --rounds 40
    .venv/bin/python benchmarks/diagnostics/profile_goal.py replay --cprofile

Setup and teardown (the baseline, building the store, the checks) run between
rounds as in ``run_goals.py``; with ``--cprofile`` only the measured regions are
profiled and the top functions (by own time and by cumulated time) are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import workloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    short = [f"short{steps}_{d}" for steps in (0, 1) for d in ("fsync", "process")]
    parser.add_argument(
        "goal",
        choices=[g for g in workloads.GOALS if g not in ("parked_rss", "journal_bytes")]
        + [g for g in short if g not in workloads.GOALS],
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cprofile", action="store_true", help="profile the measured regions")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    loop = workloads.new_loop()
    built = None
    if args.goal == "replay":
        built = workloads.build_replay_store(loop)
    elif args.goal == "recovery":
        built = workloads.build_recovery_store(loop)
    makers = {
        "sequential_fsync": lambda: workloads.SequentialSteps(loop, "fsync"),
        "sequential_process": lambda: workloads.SequentialSteps(loop, "process"),
        "concurrent_fsync": lambda: workloads.ConcurrentSteps(loop),
        **{
            f"short{steps}_{durability}": lambda s=steps, d=durability: workloads.ShortWorkflows(
                loop, s, d
            )
            for steps in (0, 1)
            for durability in ("fsync", "process")
        },
        "replay": lambda: workloads.Replay(loop, built),
        "recovery": lambda: workloads.Recovery(loop, built),
    }
    profile = cProfile.Profile() if args.cprofile else None
    measured = 0.0
    try:
        for _ in range(args.rounds):
            work = makers[args.goal]()
            try:
                work.setup()
                started = time.perf_counter()
                if profile is not None:
                    profile.runcall(work.measured)
                else:
                    work.measured()
                measured += time.perf_counter() - started
                work.teardown()
            finally:
                work.cleanup()
    finally:
        if built is not None:
            built.remove()
        loop.close()
    print(f"{args.rounds} rounds of {args.goal}: {measured:.3f} s measured")
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
