"""Whether a store stops growing once finished runs leave it: rounds of ``--runs`` runs
of ``--steps`` steps each, every round followed by a purge of the runs whose retention
(0) ran out, and the store's size after each round.

    .venv/bin/python benchmarks/space_reuse.py --rounds 12
    .venv/bin/python benchmarks/space_reuse.py --store postgresql://... --rounds 12

On LMDB the pages a purge frees go to LMDB's free list and the next rounds' writes
take them: the used pages (the last page number x the page size) and the data file
stop growing after the first rounds, where without a purge they grow every round
(``--no-purge`` shows it). On PostgreSQL, the relations' sizes: deleted rows' space is
reusable once autovacuum has vacuumed them (it looks every minute by default: give it
time between rounds with ``--pause 60``). A measurement of space, not of time: it
asserts nothing and may run on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from typing import Any

from surestep import Engine, WorkflowContext, workflow


@workflow(name="reuse.order", retention=0)
async def order(ctx: WorkflowContext, n: int, steps: int) -> dict[str, Any]:
    total = 0
    for i in range(steps):
        line = await ctx.step(f"line{i}", lambda i=i: {"sku": f"sku-{n}-{i}", "qty": i})
        total += line["qty"]
    return {"order": n, "total": total}


def size_of(stats: dict[str, Any]) -> tuple[int, int]:
    """(used bytes, file bytes) on LMDB; (total relation bytes, same) on PostgreSQL."""
    size = stats["size"]
    if "used_bytes" in size:
        return size["used_bytes"], size["file_bytes"]
    return size["total_bytes"], size["total_bytes"]


async def measure(
    store: str, rounds: int, runs: int, steps: int, purge: bool, pause: float
) -> None:
    async with Engine(store, durability="process", purge_interval=3600) as engine:
        print(f"{'round':>5} {'runs kept':>10} {'used bytes':>12} {'file bytes':>12}")
        for round_no in range(1, rounds + 1):
            handles = [await engine.start(order, round_no * runs + i, steps) for i in range(runs)]
            await asyncio.gather(*(h.result() for h in handles))
            if purge:
                await engine.purge()
            stats = await engine.stats()
            used, file = size_of(stats)
            kept = sum(stats["runs"].values())
            print(f"{round_no:>5} {kept:>10} {used:>12} {file:>12}", flush=True)
            await asyncio.sleep(pause)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store URL (default: a new LMDB directory)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--runs", type=int, default=500, help="runs a round")
    parser.add_argument("--steps", type=int, default=10, help="steps a run")
    parser.add_argument("--no-purge", dest="purge", action="store_false")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between rounds")
    args = parser.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="surestep-reuse-")
    try:
        asyncio.run(measure(store, args.rounds, args.runs, args.steps, args.purge, args.pause))
    finally:
        if args.store is None:
            shutil.rmtree(store)


if __name__ == "__main__":
    main()
