"""Why the ``process`` step's overhead (``run_goals.py``'s ``sequential_process``) flips
between two modes from one repetition to the next: each round runs the goal's workload
and takes, beside its figures, what the goal's figures cannot tell apart.

- ``cycle``: the median step cycle from the clock (the time between two of the store's
  inline commits starting), where the goal's median op reads the journal's start
  stamps, whole microseconds: its median moves by a whole microsecond at a time.
- ``commit``: the mean time inside the store's inline commit (``Env._commit_one``).
- ``off_cpu``: wall-clock time per step that the loop's thread did not run (the region's
  wall time less its ``thread_time``), and its context switches: ``blocked`` (it waited
  in the kernel: a lock, the GIL, a page being written) and ``preempted`` (the kernel
  gave its CPU to another task); ``others``: the other CPUs' busy share meanwhile.
- ``stall``: time per step in cycles over 50 us, beyond the median.
- ``ref``: a fixed loop of plain Python, the interpreter's speed at that moment.

    .venv/bin/python benchmarks/diagnostics/process_modes.py --rounds 20
    .venv/bin/python benchmarks/diagnostics/process_modes.py --rounds 20 --pwrite

Rounds run in one process (a mode that never changed within a process but differed
between processes would point at its layout: addresses, the hash seed); ``--pwrite``:
the store writes its pages with system calls instead of through the map.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import workloads
from surestep.store import lmdb_env

REFERENCE_ITERATIONS = 200_000
STALL = 50e-6


def reference_ns() -> float:
    """Nanoseconds per iteration of a fixed loop of plain Python (arithmetic, a dict, a
    call): the interpreter's speed on this CPU at this moment."""
    table: dict[int, int] = {}

    def bump(i: int) -> int:
        return i * 3 + 1

    started = time.perf_counter_ns()
    for i in range(REFERENCE_ITERATIONS):
        table[i & 1023] = bump(i)
    return (time.perf_counter_ns() - started) / REFERENCE_ITERATIONS


def busy_jiffies() -> list[tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                out.append((sum(v) - v[3] - v[4], sum(v)))
    return out


def thread_state() -> tuple[int, int, int]:
    """This thread's voluntary and involuntary context switches so far, and the CPU it
    last ran on."""
    tid = threading.get_native_id()
    with open(f"/proc/self/task/{tid}/status") as f:
        counts = dict(line.split(":", 1) for line in f if "ctxt_switches" in line)
    with open(f"/proc/self/task/{tid}/stat") as f:
        cpu = int(f.read().rsplit(")", 1)[1].split()[36])
    return int(counts["voluntary_ctxt_switches"]), int(counts["nonvoluntary_ctxt_switches"]), cpu


class CommitClock:
    """The start and the length of every inline commit of the store (``Env._commit_one``,
    wrapped for the process's lifetime)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ns = 0
        original = lmdb_env.Env._commit_one
        clock = time.perf_counter_ns

        def timed(env: Any, op: Any) -> Any:
            started = clock()
            try:
                return original(env, op)
            finally:
                self.starts.append(started)
                self.ns += clock() - started

        lmdb_env.Env._commit_one = timed  # type: ignore[method-assign]

    def reset(self) -> None:
        self.starts, self.ns = [], 0


COLUMNS = (  # name, width, format
    ("overhead", 8, ".2f"),
    ("op", 5, ".2f"),
    ("cycle", 6, ".2f"),
    ("commit", 6, ".2f"),
    ("stall", 6, ".2f"),
    ("off_cpu", 7, ".2f"),
    ("blocked", 7, "d"),
    ("preempted", 9, "d"),
    ("others%", 7, ".0f"),
    ("cpu", 3, "d"),
    ("raw", 5, ".2f"),
    ("ref_ns", 6, ".0f"),
    ("collections", 11, "d"),
)


def one_round(loop: Any, commits: CommitClock, collected: list[int]) -> dict[str, Any]:
    ref = reference_ns()
    work = workloads.SequentialSteps(loop, "process")
    try:
        work.setup()
        busy_before, (blocked, preempted, _), gcs = busy_jiffies(), thread_state(), collected[0]
        commits.reset()
        started, on_cpu = time.perf_counter(), time.thread_time()
        work.measured()
        elapsed, on_cpu = time.perf_counter() - started, time.thread_time() - on_cpu
        blocked_after, preempted_after, cpu = thread_state()
        busy_after, gcs = busy_jiffies(), collected[0] - gcs
        work.teardown()
    finally:
        work.cleanup()
    figures = work.figures(elapsed)
    steps = work.steps
    cycles = [(b - a) / 1e9 for a, b in zip(commits.starts, commits.starts[1:], strict=False)]
    typical = statistics.median(cycles)
    others = [
        (after[0] - before[0], after[1] - before[1])
        for n, (before, after) in enumerate(zip(busy_before, busy_after, strict=True))
        if n != cpu
    ]
    return {
        "overhead": figures["overhead_us"],
        "op": figures["overhead_op_us"],
        "cycle": (typical - figures["plain_await_us"] / 1e6) * 1e6,
        "commit": commits.ns / len(commits.starts) / 1e3,
        "stall": sum(c - typical for c in cycles if c > STALL) / steps * 1e6,
        "off_cpu": (elapsed - on_cpu) / steps * 1e6,
        "blocked": blocked_after - blocked,
        "preempted": preempted_after - preempted,
        "others%": 100 * sum(b for b, _ in others) / (sum(t for _, t in others) or 1),
        "cpu": cpu,
        "raw": figures["base_us"],
        "ref_ns": (ref + reference_ns()) / 2,
        "collections": gcs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--pwrite", action="store_true", help="the store writes pages with pwrite, not the map"
    )
    args = parser.parse_args()
    if args.pwrite:
        lmdb_env.WRITEMAP = False
    loop = workloads.new_loop()
    collected = [0]
    gc.callbacks.append(
        lambda phase, info: collected.__setitem__(0, collected[0] + (phase == "start"))
    )
    commits = CommitClock()
    print(f"us per step; {os.cpu_count()} CPUs")
    print("  ".join(f"{name:>{width}}" for name, width, _ in COLUMNS))
    rows = []
    for _ in range(args.rounds):
        row = one_round(loop, commits, collected)
        rows.append(row)
        print("  ".join(f"{row[name]:>{width}{fmt}}" for name, width, fmt in COLUMNS), flush=True)
    loop.close()
    column = {name: [r[name] for r in rows] for name, _, _ in COLUMNS}
    slow = [r["overhead"] - r["cycle"] for r in rows]
    cycle = column["cycle"]

    def corr(xs: list[float], ys: list[float]) -> str:
        return f"{statistics.correlation(xs, ys):.2f}" if len(set(xs)) > 1 < len(set(ys)) else "-"

    print(
        f"median cycle {statistics.median(cycle):.2f} us ({min(cycle):.2f}..{max(cycle):.2f}); "
        f"its correlation with the raw no-sync commit {corr(cycle, column['raw'])}, with the "
        f"pure-Python reference {corr(cycle, column['ref_ns'])}, with off-CPU time "
        f"{corr(cycle, column['off_cpu'])}\n"
        f"overhead (mean) less the median cycle: {statistics.median(slow):.2f} us "
        f"({min(slow):.2f}..{max(slow):.2f}); its correlation with off-CPU time "
        f"{corr(slow, column['off_cpu'])}, with the stalls {corr(slow, column['stall'])}"
    )


if __name__ == "__main__":
    main()
