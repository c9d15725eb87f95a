"""Torture: worker processes SIGKILLed at random while they run mixed workflows.

    python tests/support/torture.py --store DIR_OR_URL [--runs 1000] [--workers 3] [--kills 100]

Checks, from the side-effect ledger and the store: every run finishes with the
result of an uninterrupted run; no completed step ran again (only a worker
killed during a step may have left it to be redone); no run ever executed on
two workers at once. Prints the figures; exit status 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import torture_workload  # noqa: E402
from processes import sigkill, terminate_all  # noqa: E402

from surestep import Engine  # noqa: E402
from surestep.engine import run_loop  # noqa: E402
from surestep.store.base import FINISHED  # noqa: E402

SERVE = """
import sys
from surestep.engine import run_loop
from surestep.worker import serve
run_loop(serve(sys.argv[1], ["torture_workload"], concurrency=int(sys.argv[2]),
               lease_seconds=2.0, on_ready=lambda: print("ready", flush=True)))
"""
# While no worker can be caught in a step: how often the store is asked whether runs are
# left, and how long before the workers count as stuck (a hang guard, not a pace).
LOOK_EVERY = 1.0
STUCK_AFTER = 300.0


@dataclass
class Figures:
    runs: int
    kills: int
    kills_mid_step: int
    redone_steps: int
    steps: int
    seconds: float


def spawn(store: str, ledger: str, concurrency: int) -> subprocess.Popen[str]:
    """A worker process, started (:func:`ready` waits until it serves)."""
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, store, str(concurrency)],
        env={**os.environ, "SURESTEP_TEST_LEDGER": ledger, "PYTHONPATH": str(HERE)},
        stdout=subprocess.PIPE,
        text=True,
    )


def ready(proc: subprocess.Popen[str]) -> None:
    """Wait until the worker serves; fail if it exited first."""
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n", "worker failed to start"


class Ledger:
    """The side-effect ledger, read as it grows: the steps open, and how many ended."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.open: set[tuple[str, int, int]] = set()  # (run, step, pid)
        self.ended = 0

    def read(self) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written: next time
        for line in complete.splitlines(keepends=True):
            try:
                e = json.loads(line)
            except ValueError:
                # A read racing another process's append may see part of it (Linux does
                # not order the two): this line, and what follows, next time.
                return
            self.offset += len(line)
            key = (e["run"], e["seq"], e["pid"])
            if e["phase"] == "start":
                self.open.add(key)
            else:
                self.open.discard(key)
                self.ended += 1

    def in_a_step(self, pids: set[int]) -> set[int]:
        """Which of ``pids`` have a step started and not ended."""
        return {pid for _, _, pid in self.open} & pids


def caught_mid_step(
    store: str, ledger: Ledger, procs: list[subprocess.Popen[str]], after_steps: int
) -> set[int]:
    """Pids of ``procs`` in the middle of a step once ``after_steps`` steps have ended,
    waited for however long the workers take (on a loaded machine, a new worker takes
    seconds to start); empty once every run has finished, when no step is left to catch."""
    pids = {p.pid for p in procs}
    next_look = time.monotonic() + LOOK_EVERY
    give_up = time.monotonic() + STUCK_AFTER
    while True:
        ledger.read()
        if ledger.ended >= after_steps and (busy := ledger.in_a_step(pids)):
            return busy
        if time.monotonic() >= next_look:
            if run_loop(all_finished(store)):
                return set()
            assert time.monotonic() < give_up, (
                f"runs unfinished, no step caught in {STUCK_AFTER:g} s"
            )
            next_look = time.monotonic() + LOOK_EVERY
        time.sleep(0.005)


async def all_finished(store: str) -> bool:
    """Whether every run in the store has finished."""
    async with Engine(store, execute=False) as client:
        return all(run.status in FINISHED for run in await client.runs())


def torture(
    store: str, ledger: str, runs: int, workers: int, kills: int, seed: int, concurrency: int = 8
) -> Figures:
    rng = random.Random(seed)
    began = time.time()

    async def enqueue() -> list[str]:
        async with Engine(store, execute=False) as client:
            ids = [(await client.start(torture_workload.mixed, n)).run_id for n in range(runs)]
            for n, run_id in enumerate(ids):
                if n % 4 == 0:
                    await client.send_event(run_id, "go", n)  # before the wait: kept for it
            return ids

    run_ids = run_loop(enqueue())
    procs = [spawn(store, ledger, concurrency) for _ in range(workers)]
    for proc in procs:
        ready(proc)
    steps = sum(torture_workload.steps(n) for n in range(runs))
    seen = Ledger(ledger)
    starting: list[subprocess.Popen[str]] = []
    killed: dict[int, float] = {}
    mid_step = 0
    try:
        for k in range(kills):
            time.sleep(rng.uniform(0.0, 0.05))
            # The kills spread over the workload whatever the machine's pace (the k-th
            # once k/(kills+1) of the steps ended), each at a worker in a step.
            busy = caught_mid_step(store, seen, procs, steps * k // (kills + 1))
            candidates = [p for p in procs if p.pid in busy] or procs
            victim = rng.choice(candidates)
            mid_step += victim.pid in busy
            procs.remove(victim)
            killed[victim.pid] = sigkill(victim)
            # Not waited for: a loaded machine takes seconds to start a worker, while the
            # others work on.
            starting.append(spawn(store, ledger, concurrency))
            procs.append(starting[-1])
        for proc in starting:
            if proc in procs:
                ready(proc)

        async def results() -> list[object]:
            async with Engine(store, execute=False) as client:
                waits = (client.handle(r).result() for r in run_ids)
                return list(await asyncio.wait_for(asyncio.gather(*waits), 300))

        got = run_loop(results())
    finally:
        terminate_all(procs)

    wrong = [n for n, value in enumerate(got) if value != torture_workload.expected(n)]
    assert not wrong, f"runs with a wrong result: {wrong[:10]} (seed {seed})"

    starts: dict[tuple[str, int], list[dict]] = defaultdict(list)
    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    opened: dict[tuple[str, int, int], float] = {}
    with open(ledger, encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            key = (e["run"], e["seq"], e["pid"])
            if e["phase"] == "start":
                starts[(e["run"], e["seq"])].append(e)
                opened[key] = e["t"]
            else:
                spans[e["run"]].append((opened.pop(key), e["t"], e["pid"]))
    for (run_id, _, pid), t in opened.items():
        spans[run_id].append((t, killed[pid], pid))
    redone = 0
    for (run_id, seq), attempts in starts.items():
        for earlier in attempts[:-1]:
            assert earlier["pid"] in killed, (
                f"step {seq} of {run_id} ran again after completing (seed {seed})"
            )
            redone += 1
    for run_id, intervals in spans.items():
        intervals.sort()
        for (_, end, pid), (start, _, next_pid) in itertools.pairwise(intervals):
            assert pid == next_pid or start >= end, (
                f"run {run_id} ran on {pid} and {next_pid} at once (seed {seed})"
            )
    return Figures(runs, len(killed), mid_step, redone, len(starts), time.time() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store", help="an LMDB directory or a postgresql:// URL (default: a temp dir)"
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="runs per worker at once")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or os.path.join(tmp, "store")
        figures = torture(
            store,
            os.path.join(tmp, "ledger"),
            args.runs,
            args.workers,
            args.kills,
            args.seed,
            args.concurrency,
        )
    print(f"seed {args.seed}: {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
