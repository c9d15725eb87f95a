"""Where a sequential step's cycle goes beyond its commit: the store's commit timed from
outside (a wrapper around ``Env._commit_one``, the inline commit of a lone run), and the
time between one commit's end and the next one's start (the step's Python and one turn
of the event loop), at both durabilities.

    .venv/bin/python benchmarks/diagnostics/step_cycle.py --rounds 7

``--cold``: instead, the same few orjson calls timed right after a raw commit with sync
and after one without (what a wait for the disk does to the Python after it).

``--footprint``: raw sync commits in a loop with, between two of them, nothing; a
busy wait of 12 us (little code, run warm); or a few calls into the standard library
(json, decimal, fractions, uuid, datetime: many different functions): what the code
between two commits does to the commit.

``--side``: each step's body also makes one raw LMDB commit (the goal's baseline: one
record put under its own key, same options, sync as the store) in a directory beside
the store, so the store's commit and the raw one alternate in the same loop and meet
the same disk. A diagnostic, not a goal benchmark: medians of each round's 1,000
steps, then the median over rounds.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import fractions
import itertools
import json
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import flows
import workloads
from surestep import WorkflowContext, _core, _lmdb, function, workflow
from surestep.store import lmdb_env
from surestep.store.base import new_run_id, run_key

STEPS = workloads.SEQ_STEPS


class _Side:
    """The raw environment of ``--side`` (None: the body makes no raw commit)."""

    env: Any = None
    db = 0
    key = b""
    times: list[float] = []


side = _Side()


@function(name="cycle.inc")
async def inc(x: int) -> int:
    if side.env is not None:
        k, v = _core.step_key(side.key, x), workloads.sample_record(x)
        started = time.perf_counter()
        with side.env.begin(write=True) as txn:
            txn.put(k, v, db=side.db)
        side.times.append(time.perf_counter() - started)
    return x + 1


@workflow(name="cycle.chain")
async def chain(ctx: WorkflowContext, n: int) -> int:
    return await flows.chain_of(ctx, inc, n)


def one_round(durability: str, with_side: bool) -> dict[str, float]:
    marks: list[tuple[int, float, float]] = []  # step, start, end of every inline commit
    original = lmdb_env.Env._commit_one

    def timed(env: Any, op: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(env, op)
        finally:
            marks.append((op.seq, started, time.perf_counter()))

    loop = workloads.new_loop()
    work = workloads.Workload(loop)
    side_dir = workloads.temp_dir("side") if with_side else ""
    lmdb_env.Env._commit_one = timed  # type: ignore[method-assign,assignment]
    try:
        if with_side:
            options = workloads.raw_env_options(durability == "fsync")
            side.env = _lmdb.open(side_dir, **options)
            side.db, side.key, side.times = side.env.open_db(b"journal"), run_key(new_run_id()), []
        engine = work.open_engine(work.tmp("cycle"), durability)

        async def go() -> int:
            handle = await engine.start(chain, STEPS)
            result: int = await handle.result()
            return result

        workloads.check(work.run(go()) == STEPS, "the chain's result")
    finally:
        lmdb_env.Env._commit_one = original  # type: ignore[method-assign]
        work.cleanup()
        loop.close()
        if side.env is not None:
            side.env.close()
            side.env = None
        if side_dir:
            shutil.rmtree(side_dir)
    workloads.check(len(marks) >= STEPS - 1, f"{len(marks)} inline commits of {STEPS}")
    commits = [end - start for _, start, end in marks]
    # Between the inline commits of two consecutive steps: the later step's Python and
    # body, less the body's raw commit (``--side``), which is not the step's.
    raws = side.times if with_side else [0.0] * STEPS
    between = [
        b_start - a_end - raws[b_seq]
        for (a_seq, _, a_end), (b_seq, b_start, _) in itertools.pairwise(marks)
        if b_seq == a_seq + 1
    ]
    out = {"commit_us": statistics.median(commits) * 1e6}
    if with_side:
        out["raw_us"] = statistics.median(raws) * 1e6
        out["commit_over_raw"] = statistics.median(
            (end - start) / raws[seq] for seq, start, end in marks
        )
    out["between_us"] = statistics.median(between) * 1e6
    return out


def cold_python(sync: bool, calls: int) -> float:
    """Median seconds of ``calls`` orjson calls right after each of 600 raw commits."""
    path = workloads.temp_dir("cold")
    env = _lmdb.open(path, **workloads.raw_env_options(sync))
    try:
        db, key = env.open_db(b"journal"), run_key(new_run_id())
        items = [(_core.step_key(key, s), workloads.sample_record(s)) for s in range(600)]
        times = []
        for k, v in items:
            with env.begin(write=True) as txn:
                txn.put(k, v, db=db)
            started = time.perf_counter()
            for i in range(calls):
                orjson.dumps([[i], {}]).find(b"null")
            times.append(time.perf_counter() - started)
    finally:
        env.close()
        shutil.rmtree(path)
    return statistics.median(times)


def _spin() -> None:
    end = time.perf_counter() + 12e-6
    while time.perf_counter() < end:
        pass


def _distinct() -> None:
    json.dumps({"a": [1, 2.5, None, "x"], "b": {"c": True}})
    str(decimal.Decimal("1.25") * 3)
    fractions.Fraction(3, 4) + 1
    _ = uuid.UUID(int=12345).hex
    datetime.datetime(2020, 1, 2).isoformat()
    sorted({3: 1, 1: 2}.items())


def footprint(between: Callable[[], None] | None) -> tuple[float, float]:
    """Medians of 1,000 raw sync commits and of what ran between two of them (s)."""
    path = workloads.temp_dir("foot")
    env = _lmdb.open(path, **workloads.raw_env_options(True))
    try:
        db, key = env.open_db(b"journal"), run_key(new_run_id())
        items = [(_core.step_key(key, s), workloads.sample_record(s)) for s in range(STEPS)]
        commits, gaps = [], []
        for k, v in items:
            started = time.perf_counter()
            if between is not None:
                between()
            committing = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(k, v, db=db)
            commits.append(time.perf_counter() - committing)
            gaps.append(committing - started)
    finally:
        env.close()
        shutil.rmtree(path)
    return statistics.median(commits), statistics.median(gaps)


def print_cycles(rounds: int, with_side: bool) -> None:
    for durability in ("fsync", "process"):
        rows = [one_round(durability, with_side) for _ in range(rounds)]
        cells = [
            f"{name} {statistics.median(r[name] for r in rows):.{3 if 'over' in name else 1}f}"
            for name in rows[0]
        ]
        print(f"{durability:7s} ({rounds} rounds, medians): " + ", ".join(cells))


def print_footprints(rounds: int) -> None:
    kinds = {"nothing": None, "a busy wait": _spin, "stdlib calls": _distinct}
    measured: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    for _ in range(rounds):  # alternating, so that all meet the same disk
        for kind, between in kinds.items():
            measured[kind].append(footprint(between))
    for kind, rows in measured.items():
        commit = statistics.median(r[0] for r in rows) * 1e6
        gap = statistics.median(r[1] for r in rows) * 1e6
        print(f"{kind:12s} between commits ({gap:5.1f} us): commit {commit:.1f} us")


def print_cold(rounds: int) -> None:
    for calls in (1, 4, 16, 64):
        warm, cold = (
            statistics.median(cold_python(sync, calls) for _ in range(rounds)) * 1e6
            for sync in (False, True)
        )
        print(f"{calls:2d} orjson calls: {warm:.2f} us after a commit, {cold:.2f} us after sync")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--side", action="store_true", help="a raw commit in every step")
    parser.add_argument("--footprint", action="store_true", help="code between raw commits")
    parser.add_argument("--cold", action="store_true", help="Python after a sync commit")
    args = parser.parse_args()
    if args.footprint:
        print_footprints(args.rounds)
    elif args.cold:
        print_cold(args.rounds)
    else:
        print_cycles(args.rounds, args.side)


if __name__ == "__main__":
    main()
