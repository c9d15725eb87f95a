"""The floor under a sequential durable step at fsync, measured in one time window.

    .venv/bin/python benchmarks/diagnostics/step_floor.py --rounds 5

Four kinds of cycle, in blocks of BLOCK taking turns, so that all of them meet the disk
of the same minutes (this VM's sync commits drift by 20% from one second to the next):

- ``raw``: one raw LMDB sync commit of one step record (the goal's baseline: same
  options, same key layout, a directory of its own);
- ``raw + turn``: the same, then one turn of the event loop (a bare yield in a task
  on uvloop, as the store yields after an inline commit);
- ``plain step``: what any durable step has to do, written as plain code: the input's
  JSON, ``await`` the body, the output's JSON, ``encode_record``, the raw commit, one
  turn;
- ``engine step``: ``ctx.step`` in a workflow on the engine (``durability="fsync"``),
  whose body runs one block of each other kind every BLOCK steps (the cycles of those
  steps are left out).

Per round: the median cycle of each kind and its ratio to the raw commit's median;
then the medians over rounds. A diagnostic, not a goal benchmark.

``--alone``: the goal's method instead: each kind but the raw commit runs STEPS cycles
on its own, right after STEPS raw commits measured as its baseline (the engine step:
one round of the ``sequential_fsync`` goal), and the ratio is to that baseline.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import flows
import run_goals
import workloads
from surestep import WorkflowContext, _core, _lmdb, function, workflow
from surestep.store.base import new_run_id, run_key

STEPS = workloads.SEQ_STEPS
BLOCK = 25
KINDS = ("raw", "raw + turn", "plain step")


class _Turn:
    """One bare yield: the task runs again at the loop's next turn."""

    def __await__(self) -> Generator[None, None, None]:
        yield


async def body(x: int) -> int:
    return x + 1


class RawStore:
    """A raw environment with the store's options, and the cycles of each kind on it."""

    def __init__(self) -> None:
        self.path = workloads.temp_dir("floor")
        self.env: Any = _lmdb.open(self.path, **workloads.raw_env_options(True))
        self.db = self.env.open_db(b"journal")
        self.key = run_key(new_run_id())
        self.seq = 0
        self.cycles: dict[str, list[float]] = {kind: [] for kind in KINDS}

    def commit(self, record: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(_core.step_key(self.key, self.seq), record, db=self.db)
        self.seq += 1

    async def block(self, kind: str) -> None:
        clock, turn, x = time.perf_counter, _Turn(), self.seq
        last = clock()
        for _ in range(BLOCK):
            if kind == "plain step":
                input_json = orjson.dumps(((x,), {}))
                x = await body(x)
                output_json = orjson.dumps(x)
                record = _core.encode_record(
                    _core.KIND_STEP, self.seq, 1, "floor.inc", None, input_json, output_json,
                    True, 0.0, 0.0,
                )  # fmt: skip
            else:
                record = workloads.sample_record(self.seq)
            self.commit(record)
            if kind != "raw":
                await turn
            now = clock()
            self.cycles[kind].append(now - last)
            last = now

    def close(self) -> None:
        timed = sum(len(cycles) for cycles in self.cycles.values())
        workloads.check(self.seq == timed, "every raw commit timed")
        self.env.close()
        shutil.rmtree(self.path)


class _Floor:
    raw: RawStore | None = None


floor = _Floor()


@function(name="floor.inc")
async def inc(x: int) -> int:
    if floor.raw is not None and x % BLOCK == BLOCK - 1:
        for kind in KINDS:
            await floor.raw.block(kind)
    return x + 1


@workflow(name="floor.chain")
async def chain(ctx: WorkflowContext, n: int) -> int:
    return await flows.chain_of(ctx, inc, n)


def one_round() -> dict[str, float]:
    """Median cycle (s) of each kind in one chain of STEPS steps."""
    loop = workloads.new_loop()
    work = workloads.Workload(loop)
    raw = floor.raw = RawStore()
    try:
        engine = work.open_engine(work.tmp("floor"), "fsync")

        async def go() -> list[float]:
            handle = await engine.start(chain, STEPS)
            workloads.check(await handle.result() == STEPS, "the chain's result")
            return [entry.started_at for entry in await engine.journal(handle.run_id)]

        started = work.run(go())
    finally:
        work.cleanup()
        loop.close()
        floor.raw = None
        raw.close()
    # The cycle of step s runs from its start to the next step's; a step whose body ran
    # the blocks is left out.
    engine_cycles = [
        b - a for s, (a, b) in enumerate(itertools.pairwise(started)) if s % BLOCK != BLOCK - 1
    ]
    out = {kind: statistics.median(cycles) for kind, cycles in raw.cycles.items()}
    out["engine step"] = statistics.median(engine_cycles)
    return out


def one_round_alone() -> dict[str, float]:
    """Each kind's median cycle over the median of the raw commits just before it."""
    loop = workloads.new_loop()
    out = {"raw": 1.0}
    try:
        for kind in KINDS[1:]:
            baseline = workloads.raw_commits(STEPS, sync=True)[1]
            raw = RawStore()
            try:
                for _ in range(STEPS // BLOCK):
                    loop.run_until_complete(raw.block(kind))
            finally:
                raw.close()
            out[kind] = statistics.median(raw.cycles[kind]) / baseline
        row = run_goals.run_once(lambda: workloads.SequentialSteps(loop, "fsync"))
        out["engine step"] = row["ratio_op"]
    finally:
        loop.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alone", action="store_true", help="the goal's method")
    args = parser.parse_args()
    if args.alone:
        rows = [one_round_alone() for _ in range(args.rounds)]
        for kind in rows[0]:
            ratios = [row[kind] for row in rows]
            print(
                f"{kind:12s} {statistics.median(ratios):.3f}x the raw commit before it  "
                f"(ratios {', '.join(f'{r:.3f}' for r in ratios)})"
            )
        return
    rows = [one_round() for _ in range(args.rounds)]
    for kind in rows[0]:
        cycles = [row[kind] * 1e6 for row in rows]
        ratios = [row[kind] / row["raw"] for row in rows]
        print(
            f"{kind:13s} {statistics.median(cycles):6.1f} us  "
            f"{statistics.median(ratios):.3f}x raw  "
            f"(ratios {', '.join(f'{r:.3f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
