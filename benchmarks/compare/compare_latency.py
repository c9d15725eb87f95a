"""surestep and DBOS under the same open-loop load: latency at fixed arrival rates, both
engines, one invocation.

    .venv/bin/pip install 'dbos>=3.4'                       # not a dependency of surestep
    .venv/bin/python benchmarks/compare/compare_latency.py  # ~6 min on 2 cores
    .venv/bin/python benchmarks/compare/compare_latency.py --backends postgres --steps 1,3
    .venv/bin/python benchmarks/compare/compare_latency.py --rates 5,10,20 --duration 5 \\
        --surestep-rates '' --json out.json                  # a short check

The benchmark of ``benchmarks/latency.py`` (``openloop.py``: a load generator in its own
process sends requests on a fixed schedule over a Unix socket to this process, which starts
a workflow for each one and answers with its result; latency from each request's scheduled
arrival to its answer; p50 / p99 / p99.9 / max of the full sample; the achieved rate; the
saturation verdict; sending stops at ``--bound`` requests in flight), run against each
engine of a pairing in turn, each on a fresh store (``compare.py``'s backends):

``embedded``   DBOS on SQLite (its default system database, at its defaults) and surestep
               on LMDB (``durability="fsync"``), in the same temporary directory;
``postgres``   DBOS and surestep on the same private PostgreSQL server started for this
               run (fsync and synchronous_commit on).

Each request runs the same workflow on both: ``--steps`` durable steps one after the other
(``flows.chain`` and ``compare.py``'s ``dbos_chain``), through ``engine.run`` and
``DBOS.start_workflow_async(...).get_result()``. The shared ladder ``--rates`` suits DBOS
(it saturates near 20 three-step workflows a second on SQLite on this 2-core VM); surestep
then goes on up ``--surestep-rates`` so that its own saturation point is found too. Which
engine goes first alternates from one ``--steps`` count to the next.

The floor of each rate is measured raw right before it, on the engine's own kind of store:
``steps + 2`` commits in a row of one step record each (raw LMDB sync commits; autocommitted
inserts on the PostgreSQL server; autocommitted inserts in an SQLite file at DBOS's
settings). Printed per pairing: each engine's ladder, then at each shared rate the ratios
DBOS / surestep of p50 and p99 and surestep / DBOS of the achieved rate, and the two
saturation points.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1] / "tests")]

from common import temp_dir  # noqa: E402

import compare  # noqa: E402  (exits with a hint when DBOS is not installed)
import latency  # noqa: E402
import openloop  # noqa: E402
import workloads  # noqa: E402

ENGINES = ("DBOS", "surestep")


def sqlite_floor(steps: int, groups: int) -> float:
    """Median seconds of ``steps + 2`` autocommitted single-row inserts in a row, each a
    step record's size, in a fresh SQLite file at SQLite's defaults (as DBOS leaves it)."""
    path = temp_dir("sqlite-floor")
    try:
        db = sqlite3.connect(os.path.join(path, "floor.sqlite"), isolation_level=None)
        try:
            db.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, record BLOB)")
            per, seq, times = steps + 2, 0, []
            for _ in range(groups):
                began = time.perf_counter()
                for _ in range(per):
                    db.execute(
                        "INSERT INTO journal VALUES (?, ?)", (seq, workloads.sample_record(seq))
                    )
                    seq += 1
                times.append(time.perf_counter() - began)
            count = db.execute("SELECT count(*) FROM journal").fetchone()[0]
            workloads.check(count == seq, "raw floor: every insert committed")
        finally:
            db.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return statistics.median(times)


def floor_of(
    backend: compare.Backend, engine: str, groups: int
) -> Callable[[int], Awaitable[float]]:
    """The raw floor under ``engine``'s store in ``backend``, as ``latency.ladder`` wants it."""

    async def floor(steps: int) -> float:
        if isinstance(backend, compare.Postgres):
            return await latency.postgres_floor(backend.server.url, steps, "fsync", groups)
        if engine == "DBOS":
            return sqlite_floor(steps, groups)
        return latency.lmdb_floor(steps, "fsync", groups)

    return floor


async def one_side(
    backend: compare.Backend, engine: str, steps: int, rates: list[float], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """A fresh store, the engine opened and warmed up, the ladder, the store removed."""
    side = backend.new_side(engine, f"lat{steps}")
    try:
        await side.open()
        return await latency.ladder(
            side.run_one,
            rates,
            steps,
            args.duration,
            args.bound,
            floor_of(backend, engine, args.floor_groups),
            f"{backend.name}/{engine}",
        )
    finally:
        await side.close()


async def run_all(args: argparse.Namespace, backends: list[compare.Backend]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for backend in backends:
        for k, steps in enumerate(args.steps):
            per: dict[str, list[dict[str, Any]]] = {}
            for engine in ENGINES if k % 2 == 0 else ENGINES[::-1]:
                rates = list(args.rates)
                if engine == "surestep":
                    rates += [r for r in args.surestep_rates if r > max(args.rates)]
                per[engine] = await one_side(backend, engine, steps, rates, args)
            results[f"{backend.name}/{steps}"] = per
    return results


def ratios(per: dict[str, list[dict[str, Any]]]) -> str:
    """At each rate both engines ran: DBOS / surestep of p50 and p99, surestep / DBOS of
    the achieved rate; then the saturation points."""

    def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
        return f"{a[key] / b[key]:.1f}x" if key in a and b.get(key) else "-"

    by_rate = {r["offered_per_s"]: r for r in per["surestep"]}
    head = ("offered/s", "p50 DBOS/surestep", "p99 DBOS/surestep", "achieved surestep/DBOS")
    lines = []
    for d in per["DBOS"]:
        s = by_rate[d["offered_per_s"]]
        lines.append(
            (
                f"{d['offered_per_s']:,.0f}",
                ratio(d, s, "p50"),
                ratio(d, s, "p99"),
                ratio(s, d, "achieved_per_s"),
            )
        )
    out = [openloop.format_table(head, lines)]
    highest = {}
    for engine in ENGINES:
        sustained = [r["offered_per_s"] for r in per[engine] if not r["saturated"]]
        highest[engine] = max(sustained, default=0.0)
        out.append(f"{engine}: " + openloop.verdict(per[engine]).splitlines()[0])
    if not per["DBOS"][-1]["saturated"]:
        out.append("DBOS did not saturate: a higher shared rate would compare capacities")
    elif highest["DBOS"] and highest["surestep"]:
        never = not per["surestep"][-1]["saturated"]
        out.append(
            f"highest rate sustained, surestep / DBOS: "
            f"{highest['surestep'] / highest['DBOS']:.0f}x"
            + (" or more (surestep did not saturate)" if never else "")
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="embedded,postgres", help="embedded,postgres")
    latency.add_ladder_options(parser, "5,10,20,40", "3", bound=500, floor_groups=50)
    parser.add_argument(
        "--surestep-rates",
        type=latency.positive_list(float, empty=True),
        default="100,1000,5000",
        help="surestep's ladder after the shared one ('' for none)",
    )
    args = parser.parse_args()
    started, load_before = time.time(), os.getloadavg()
    results, backends = compare.on_backends(
        args.backends, workloads.new_loop, lambda b: run_all(args, b)
    )

    about = compare.print_about(workloads.machine(), backends, load_before)
    print(
        f"{args.duration:g} s per rate; latency from each request's scheduled arrival to its "
        f"answer; in-flight bound {args.bound:,}; floors: steps + 2 raw commits in a row on "
        f"each engine's kind of store, median of {args.floor_groups}; "
        f"{time.time() - started:.0f} s in all"
    )
    titles = {"embedded": ("SQLite", "LMDB"), "postgres": ("PostgreSQL", "PostgreSQL")}
    for key, per in results.items():
        name, steps = key.split("/")
        stores = dict(zip(ENGINES, titles[name], strict=True))
        for engine in ENGINES:
            latency.print_ladder(
                f"{engine} on {stores[engine]}, {steps}-step workflows", per[engine]
            )
        print(
            f"\nDBOS on {stores['DBOS']} vs surestep on {stores['surestep']}, "
            f"{steps}-step workflows"
        )
        print(ratios(per))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"about": about, "args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
