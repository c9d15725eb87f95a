"""What asyncpg's pool defaults would cost the PostgreSQL store: the same small statement
through pools of 4 connections, 4 clients, with asyncpg's default release (its reset
query: a round trip at every release) and with the store's (none), in turn, ``--pairs``
times; statements a second, and the median ratio of the pairs.

    .venv/bin/python benchmarks/diagnostics/pg_pool.py --postgres
    .venv/bin/python benchmarks/diagnostics/pg_pool.py --store postgresql://...

A diagnostic, not a goal benchmark: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from latency import private_postgres
from surestep.store.postgres import _keep_session

CLIENTS = 4


async def rate(url: str, store_release: bool, statements: int) -> float:
    """Statements a second through a pool released as the store releases it, or as
    asyncpg does by default."""
    options: dict[str, Any] = {"reset": _keep_session} if store_release else {}
    pool = await asyncpg.create_pool(url, min_size=CLIENTS, max_size=CLIENTS, **options)
    try:

        async def client(k: int) -> None:
            for _ in range(statements // CLIENTS):
                await pool.fetchval("SELECT $1::int", k)

        began = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(CLIENTS)))
        return statements / (time.perf_counter() - began)
    finally:
        await pool.close()


async def compare(url: str, pairs: int, statements: int) -> None:
    default: list[float] = []
    store: list[float] = []
    for pair in range(pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        for store_release in order:
            (store if store_release else default).append(await rate(url, store_release, statements))
    print(f"asyncpg's default release: {[round(r) for r in default]} statements/s")
    print(f"the store's release:       {[round(r) for r in store]} statements/s")
    ratio = statistics.median(s / d for s, d in zip(store, default, strict=True))
    print(f"median ratio (store / default) over {pairs} alternating pairs: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--store", help="a postgresql:// URL")
    where.add_argument("--postgres", action="store_true", help="start a private server")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--statements", type=int, default=4000, help="a measurement")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(private_postgres()) if args.postgres else args.store
        asyncio.run(compare(url, args.pairs, args.statements))


if __name__ == "__main__":
    main()
