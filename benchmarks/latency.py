"""Latency under open-loop load: requests arrive at fixed rates, each starting a short
workflow and waiting for its result.

    .venv/bin/python benchmarks/latency.py                  # LMDB, 100/1k/5k/10k per s, 10 s each
    .venv/bin/python benchmarks/latency.py --rates 100,1000,5000 --duration 3  # make bench runs it
    .venv/bin/python benchmarks/latency.py --postgres   # a private server; or --store postgresql://...
    .venv/bin/python benchmarks/latency.py --durability process --steps 3 --json out.json

This process hosts the engine (``Engine(--store, durability=--durability)``, uvloop) and
answers requests on a Unix socket; a load generator in its own process (``openloop.py``)
sends them on a fixed schedule, ``--rate`` a second for ``--duration`` seconds, and
measures each one's latency from its *scheduled* arrival to its answer (no coordinated
omission: a slow answer never delays the next request). Each request runs
``flows.chain(steps)`` (``steps`` durable steps one after the other, then the result)
through ``engine.run``. Rates go up the ``--rates`` ladder for each ``--steps`` count.

Per rate: p50 / p99 / p99.9 / max of the full sample (nearest rank over the sorted
latencies, never a mean); the achieved rate (answers a second from the first answer to the
last, or over the time the answered requests were scheduled across if longer); the p99 of
how late the generator itself sent requests (its lateness counts in the latency: a
generator starved of CPU shows there); and the **floor**, measured raw right before that
rate: the median time of ``steps + 2`` raw commits in a row (start, each step, finish; one
step record each), by ``--floor-groups`` such groups. On LMDB they are raw sync commits
(``durability="process"``: without the flush) in an environment opened with the store's
options; on PostgreSQL, autocommitted single-row inserts on the same server
(``synchronous_commit=off`` at ``process``). Printed beside: p50/floor and p99/p50.

A rate is saturated when the achieved rate is below 95% of the offered one, when latency
grows through the run (the queue grows), or when the generator stopped sending because
``--bound`` requests were unanswered: past saturation a host holds an ever longer queue,
and the bound keeps the memory it takes bounded (the host's resident memory after each
rate is printed). The ladder's saturation point and what each saturated rate did are
reported at the end. Every answer is checked to be the workflow's result.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, when run as a script

import flows
import openloop
import workloads
from surestep import Engine

DEFAULT_RATES = "100,1000,5000,10000"
WARMUP_RUNS = 50


def positive_list(kind: Callable[[str], float], empty: bool = False) -> Callable[[str], Any]:
    """An argparse type: ``"3,1"`` -> ``[1, 3]``, every value > 0 (``""`` -> ``[]`` if
    ``empty``)."""

    def parse(text: str) -> list[Any]:
        values = sorted(kind(v) for v in text.split(",") if v.strip())
        if any(v <= 0 for v in values) or not (values or empty):
            raise argparse.ArgumentTypeError(f"numbers > 0, comma-separated, not {text!r}")
        return values

    return parse


def positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    """An argparse type: a number > 0."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"a number > 0, not {text!r}")
        return value

    return parse


def add_ladder_options(
    parser: argparse.ArgumentParser, rates: str, steps: str, bound: int, floor_groups: int
) -> None:
    """The options every ladder of this benchmark takes, with the caller's defaults."""
    parser.add_argument(
        "--rates", type=positive_list(float), default=rates, help="workflows a second"
    )
    parser.add_argument("--duration", type=positive(float), default=10.0, help="s per rate")
    parser.add_argument(
        "--steps", type=positive_list(int), default=steps, help="steps per workflow (a ladder each)"
    )
    parser.add_argument(
        "--bound", type=positive(int), default=bound, help="most requests in flight"
    )
    parser.add_argument(
        "--floor-groups", type=positive(int), default=floor_groups, help="raw groups per floor"
    )
    parser.add_argument("--json", default="", help="also write every figure here")


def is_postgres(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


def lmdb_floor(steps: int, durability: str, groups: int) -> float:
    """Median seconds of ``steps + 2`` raw LMDB commits in a row."""
    per = steps + 2
    marks = workloads.raw_commit_marks(per * groups, sync=durability == "fsync")
    return statistics.median(marks[(g + 1) * per] - marks[g * per] for g in range(groups))


async def postgres_floor(url: str, steps: int, durability: str, groups: int) -> float:
    """Median seconds of ``steps + 2`` autocommitted single-row inserts in a row, each a
    step record's size, in a schema of their own on the store's server."""
    import asyncpg

    from surestep.store.postgres import _split_url

    dsn, _ = _split_url(url)
    schema = f"surestep_floor_{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    try:
        if durability == "process":
            await conn.execute("SET synchronous_commit = off")
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(f"CREATE TABLE {schema}.journal (seq bigint PRIMARY KEY, record bytea)")
        insert = await conn.prepare(f"INSERT INTO {schema}.journal VALUES ($1, $2)")
        per, seq, times = steps + 2, 0, []
        for _ in range(groups):
            began = time.perf_counter()
            for _ in range(per):
                await insert.fetch(seq, workloads.sample_record(seq))
                seq += 1
            times.append(time.perf_counter() - began)
        count = await conn.fetchval(f"SELECT count(*) FROM {schema}.journal")
        workloads.check(count == seq, "raw floor: every insert committed")
        return statistics.median(times)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def measure_floor(store: str, steps: int, durability: str, groups: int) -> float:
    if is_postgres(store):
        return await postgres_floor(store, steps, durability, groups)
    return lmdb_floor(steps, durability, groups)


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A PostgreSQL server of this run's own (loopback only, fsync on): its URL."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.pgserver import PgServer

    with PgServer() as server:
        yield server.url


def floor_label(store: str, durability: str) -> str:
    if is_postgres(store):
        sync = "synchronous_commit=off" if durability == "process" else "synchronous commits"
        return f"autocommitted PostgreSQL inserts ({sync})"
    return "raw LMDB " + ("sync commits" if durability == "fsync" else "commits without sync")


async def ladder(
    serve: Callable[[int], Awaitable[int]],
    rates: list[float],
    steps: int,
    duration: float,
    bound: int,
    floor: Callable[[int], Awaitable[float]],
    progress: str,
) -> list[dict[str, Any]]:
    """Each rate in turn: its floor measured right before, then the rate itself."""
    rows = []
    for rate in rates:
        measured_floor = await floor(steps)
        result = await openloop.measure_rate(
            functools.partial(serve, steps), rate, duration, bound, expect=steps
        )
        row = openloop.describe(result, measured_floor)
        row["host_rss_bytes"] = workloads.rss_bytes()[0]
        workloads.check(row["errors"] == 0, f"{progress}: {row.get('first_error', 'errors')}")
        workloads.check(row["wrong_results"] == 0, f"{progress}: every result is {steps}")
        rows.append(row)
        print(
            f"  {progress}, {steps}-step, {rate:,.0f}/s: achieved {row['achieved_per_s']:,.0f}/s"
            + (f", p50 {openloop.ms(row['p50'])} ms" if "p50" in row else "")
            + (f"; saturated: {'; '.join(row['saturated'])}" if row["saturated"] else ""),
            file=sys.stderr,
            flush=True,
        )
    return rows


def print_ladder(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = (*openloop.HEADER, "host RSS MiB")
    lines = [(*openloop.table_row(r), f"{r['host_rss_bytes'] / 2**20:.0f}") for r in rows]
    print(openloop.format_table(head, lines))
    print(openloop.verdict(rows))


async def run(args: argparse.Namespace, store: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with Engine(store, durability=args.durability) as engine:

        async def serve(steps: int) -> int:
            result: int = await engine.run(flows.chain, steps)
            return result

        for _ in range(WARMUP_RUNS):
            workloads.check(await serve(1) == 1, "warm-up")

        async def floor(steps: int) -> float:
            return await measure_floor(store, steps, args.durability, args.floor_groups)

        for steps in args.steps:
            results[str(steps)] = await ladder(
                serve, args.rates, steps, args.duration, args.bound, floor, "surestep"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", help="an LMDB directory or postgresql:// URL (default: new)")
    where.add_argument(
        "--postgres",
        action="store_true",
        help="start a private PostgreSQL server for this run (tests/support/pgserver.py)",
    )
    parser.add_argument("--durability", choices=("fsync", "process"), default="fsync")
    add_ladder_options(parser, DEFAULT_RATES, "1,3", bound=10_000, floor_groups=200)
    args = parser.parse_args()

    started, load_before = time.time(), os.getloadavg()
    with contextlib.ExitStack() as cleanup:
        if args.store:
            store = args.store
        elif args.postgres:
            store = f"{cleanup.enter_context(private_postgres())}?schema=surestep_latency"
        else:
            temp = workloads.temp_dir("latency")
            cleanup.callback(shutil.rmtree, temp, ignore_errors=True)
            store = os.path.join(temp, "store")
        loop = workloads.new_loop()
        try:
            results = loop.run_until_complete(run(args, store))
        finally:
            loop.close()
    about = {
        **workloads.machine(),
        "store": "PostgreSQL" if is_postgres(store) else "LMDB",
        "durability": args.durability,
        "floor": f"{floor_label(store, args.durability)}, steps + 2 in a row, median of "
        f"{args.floor_groups}",
        "load average before/after": f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}",
    }
    print("; ".join(f"{k}: {v}" for k, v in about.items()))
    print(
        f"{args.duration:g} s per rate; latency from each request's scheduled arrival to its "
        f"answer; in-flight bound {args.bound:,}; {time.time() - started:.0f} s in all"
    )
    for steps, rows in results.items():
        print_ladder(f"{steps}-step workflows", rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"about": about, "args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
