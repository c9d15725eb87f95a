"""surestep side by side with DBOS: the same workloads, both engines, one invocation.

    .venv/bin/pip install dbos                       # not a dependency of surestep
    .venv/bin/python benchmarks/compare/compare.py   # 5 repetitions, 1.5-4 min on 2 cores
    .venv/bin/python benchmarks/compare/compare.py --repeat 7 --backends postgres
    .venv/bin/python benchmarks/compare/compare.py --seq-steps 500 --runs 1000 --json out.json

Two workloads, the same workflow on both engines (one step adds 1 to the previous
step's output; the workflow returns the step count):

``sequential``   one workflow of ``--seq-steps`` durable steps (200), one after the other;
``concurrent``   ``--runs`` workflows (200) of ``--steps`` steps (10) each, all started at once.

The defaults are sized for DBOS, which runs 50-400 steps/s here: 1,000 x 10 takes
DBOS ~40 s per repetition on PostgreSQL and more on SQLite (``--runs 1000``).

The timed region is the same on both: start every workflow (``asyncio.gather`` of
``Engine.start`` / ``DBOS.start_workflow_async``), then gather every result. Both
engines run on ONE event loop in this process (uvloop unless ``--loop asyncio``),
through their async APIs; DBOS's async API runs its database calls on its own
thread pool (``asyncio.to_thread``), as it does for any async application.

Two pairings of backends:

``embedded``   DBOS on SQLite (its default system database) vs surestep on LMDB,
               both files in the same temporary directory (``$SURESTEP_BENCH_DIR``
               when set), both durable at every commit: DBOS leaves SQLite at its
               defaults (rollback journal, ``synchronous=FULL``: the printed header
               shows what the file says) and surestep runs at ``durability="fsync"``.
``postgres``   DBOS vs surestep on THE SAME private PostgreSQL server started for
               this run (``tests/support/pgserver.py``: loopback only, fsync and
               synchronous_commit on), each in its own database: DBOS in a new
               database per measurement, surestep in ``surestep_bench`` with a new
               schema per measurement.

Every measurement gets a fresh store on both engines, and one small warm-up
workflow (3 steps) before the timed region: connection pools, threads and first
calls are not timed. DBOS is launched only for its own measurements and
destroyed right after, so its background threads never run while surestep is
timed. Which engine goes first alternates from one repetition to the next.

After each timed region the script checks, on both engines, that every workflow
returned its step count and that the engine recorded exactly that many steps for
it, with outputs 1..n in order (``engine.journal`` / ``DBOS.list_workflow_steps``).
It prints the median steps/s of each engine over the repetitions, their spread,
and the median of the per-repetition ratios surestep/DBOS; and, for the
sequential workload, the milliseconds per step beside one raw ``fdatasync`` on
the stores' filesystem measured before each pair: a step that waits for its
commit cannot be faster than the flush, and this VM's flush moves between
~0.1 and ~4 ms with its neighbours' I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import importlib.metadata
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1] / "tests")]

import asyncpg  # noqa: E402
from common import check, raw_flush_ms, temp_dir  # noqa: E402

import flows  # noqa: E402
import surestep  # noqa: E402
from support.pgserver import PgServer, PgServerMissingError  # noqa: E402
from surestep import Engine  # noqa: E402

try:
    from dbos import DBOS
except ImportError:  # pragma: no cover - the optional comparison dependency
    raise SystemExit("this comparison needs DBOS: .venv/bin/pip install dbos") from None


@DBOS.step()
async def dbos_inc(x: int) -> int:
    return x + 1


@DBOS.workflow()
async def dbos_chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = await dbos_inc(x)
    return x


WARMUP_STEPS = 3


# -- the two engines behind one small interface


class Side(Protocol):
    engine: str

    async def open(self) -> None: ...

    async def go(self, runs: int, steps: int) -> tuple[list[str], list[Any]]: ...

    async def run_one(self, steps: int) -> int: ...

    async def steps_of(self, run_id: str) -> list[tuple[str, Any]]: ...

    async def close(self) -> None: ...


class SurestepSide:
    engine = "surestep"

    def __init__(self, location: str, cleanup: Callable[[], Awaitable[None]]) -> None:
        self.location = location
        self._cleanup = cleanup
        self._engine: Engine | None = None

    async def open(self) -> None:
        self._engine = Engine(self.location, durability="fsync")
        await self._engine.open()
        check(await self._engine.run(flows.chain, WARMUP_STEPS) == WARMUP_STEPS, "warm-up")

    async def go(self, runs: int, steps: int) -> tuple[list[str], list[Any]]:
        engine = self._engine
        assert engine is not None
        handles = await asyncio.gather(*[engine.start(flows.chain, steps) for _ in range(runs)])
        results = await asyncio.gather(*[h.result() for h in handles])
        return [h.run_id for h in handles], list(results)

    async def run_one(self, steps: int) -> int:
        """Start one workflow and wait for its result."""
        assert self._engine is not None
        result: int = await self._engine.run(flows.chain, steps)
        return result

    async def steps_of(self, run_id: str) -> list[tuple[str, Any]]:
        assert self._engine is not None
        return [(e.name, e.output) for e in await self._engine.journal(run_id)]

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.close()
        await self._cleanup()


class DbosSide:
    engine = "DBOS"

    def __init__(self, url: str, cleanup: Callable[[], Awaitable[None]]) -> None:
        self.url = url
        self._cleanup = cleanup
        self._launched = False

    async def open(self) -> None:
        DBOS(
            config={
                "name": "surestep-compare",
                "system_database_url": self.url,
                "log_level": "WARNING",
            }
        )
        self._launched = True
        DBOS.launch()
        handle = await DBOS.start_workflow_async(dbos_chain, WARMUP_STEPS)
        check(await handle.get_result() == WARMUP_STEPS, "warm-up")

    async def go(self, runs: int, steps: int) -> tuple[list[str], list[Any]]:
        handles = await asyncio.gather(
            *[DBOS.start_workflow_async(dbos_chain, steps) for _ in range(runs)]
        )
        results = await asyncio.gather(*[h.get_result() for h in handles])
        return [h.get_workflow_id() for h in handles], list(results)

    async def run_one(self, steps: int) -> int:
        """Start one workflow and wait for its result."""
        handle = await DBOS.start_workflow_async(dbos_chain, steps)
        result: int = await handle.get_result()
        return result

    async def steps_of(self, run_id: str) -> list[tuple[str, Any]]:
        found = await DBOS.list_workflow_steps_async(run_id)
        return [(s["function_name"], s["output"]) for s in found]

    async def close(self) -> None:
        if self._launched:
            self._launched = False
            DBOS.destroy()
            # DBOS made its (now shut down) thread pool the loop's default executor.
            loop = asyncio.get_running_loop()
            loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())
        await self._cleanup()


# -- backends: where each engine's fresh store comes from


class Backend:
    name = ""
    title = ""

    def new_side(self, engine: str, tag: str) -> Side:
        raise NotImplementedError

    def about(self) -> dict[str, str]:
        return {}


class Embedded(Backend):
    name = "embedded"
    title = "embedded: DBOS on SQLite vs surestep on LMDB"

    def __init__(self) -> None:
        self.sqlite_modes = ""

    def new_side(self, engine: str, tag: str) -> Side:
        path = temp_dir(f"compare-{tag}")

        async def remove() -> None:
            if engine == "DBOS" and not self.sqlite_modes:
                self.sqlite_modes = sqlite_modes(os.path.join(path, "dbos.sqlite"))
            shutil.rmtree(path, ignore_errors=True)

        if engine == "DBOS":
            return DbosSide(f"sqlite:///{path}/dbos.sqlite", remove)
        return SurestepSide(os.path.join(path, "store"), remove)

    def about(self) -> dict[str, str]:
        return {"DBOS SQLite file": self.sqlite_modes, "surestep LMDB": "durability=fsync"}


def sqlite_modes(path: str) -> str:
    """The journal mode the file keeps, and SQLite's default sync level (DBOS sets neither)."""
    with sqlite3.connect(path) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        level = db.execute("PRAGMA synchronous").fetchone()[0]
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"journal_mode={mode}, synchronous={names.get(level, level)}"


class Postgres(Backend):
    name = "postgres"
    title = "PostgreSQL: DBOS vs surestep, same server"

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.base = server.url.rsplit("/", 1)[0]  # postgresql://postgres@127.0.0.1:PORT
        self.settings: dict[str, str] = {}
        self.count = 0

    async def prepare(self) -> None:
        conn = await asyncpg.connect(self.server.url)
        try:
            await conn.execute("CREATE DATABASE surestep_bench")
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method"):
                self.settings[name] = await conn.fetchval(f"SHOW {name}")
        finally:
            await conn.close()

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.server.url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def drop_schema(self, name: str) -> None:
        conn = await asyncpg.connect(f"{self.base}/surestep_bench")
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    def new_side(self, engine: str, tag: str) -> Side:
        self.count += 1
        name = f"{tag}_{self.count}".replace("-", "_")
        if engine == "DBOS":
            database = f"dbos_{name}"
            return DbosSide(f"{self.base}/{database}", lambda: self.drop_database(database))
        schema = f"surestep_{name}"
        return SurestepSide(
            f"{self.base}/surestep_bench?schema={schema}", lambda: self.drop_schema(schema)
        )

    def about(self) -> dict[str, str]:
        s = self.settings
        return {
            "PostgreSQL": f"{s.get('server_version', '?')} (fsync={s.get('fsync')}, "
            f"synchronous_commit={s.get('synchronous_commit')}, "
            f"wal_sync_method={s.get('wal_sync_method')})",
        }


# -- one measurement


async def measure(side: Side, runs: int, steps: int) -> dict[str, float]:
    """Fresh store, warm-up, timed region, checks; steps/s of the timed region."""
    try:
        await side.open()
        gc.collect()
        started = time.perf_counter()
        run_ids, results = await side.go(runs, steps)
        elapsed = time.perf_counter() - started
        check(results == [steps] * runs, f"{side.engine}: every workflow returned {steps}")
        want = list(range(1, steps + 1))
        for run_id in run_ids:
            recorded = await side.steps_of(run_id)
            check(
                len(recorded) == steps,
                f"{side.engine}: run {run_id} recorded {len(recorded)} steps, not {steps}",
            )
            check(
                [output for _, output in recorded] == want
                and all(name.endswith("inc") for name, _ in recorded),
                f"{side.engine}: run {run_id} recorded its steps' outputs 1..{steps} in order",
            )
    finally:
        await side.close()
    return {"seconds": elapsed, "steps_per_s": runs * steps / elapsed}


WORKLOADS = ("sequential", "concurrent")


async def run_all(args: argparse.Namespace, backends: list[Backend]) -> dict[str, Any]:
    shapes = {"sequential": (1, args.seq_steps), "concurrent": (args.runs, args.steps)}
    rows: dict[str, dict[str, list[dict[str, float]]]] = {}
    for backend in backends:
        for workload in WORKLOADS:
            runs, steps = shapes[workload]
            key = f"{backend.name}/{workload}"
            rows[key] = {"DBOS": [], "surestep": [], "flush": []}
            for rep in range(args.repeat):
                if workload == "sequential":
                    rows[key]["flush"].append({"ms": raw_flush_ms()})
                order = ("DBOS", "surestep") if rep % 2 == 0 else ("surestep", "DBOS")
                for engine in order:
                    side = backend.new_side(engine, f"{workload[:3]}")
                    rows[key][engine].append(await measure(side, runs, steps))
                d, s = rows[key]["DBOS"][-1], rows[key]["surestep"][-1]
                print(
                    f"  {key} {rep + 1}/{args.repeat}: DBOS {d['steps_per_s']:,.0f} steps/s, "
                    f"surestep {s['steps_per_s']:,.0f} steps/s",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(rows: dict[str, dict[str, list[dict[str, float]]]], args: argparse.Namespace) -> str:
    shapes = {
        "sequential": f"sequential, 1 x {args.seq_steps} steps",
        "concurrent": f"concurrent, {args.runs:,} x {args.steps} steps",
    }
    titles = {"embedded": "SQLite | LMDB", "postgres": "PostgreSQL | PostgreSQL"}
    head = (
        "DBOS | surestep",
        "workload",
        "DBOS steps/s (min..max)",
        "surestep steps/s (min..max)",
        "surestep/DBOS (min..max)",
    )
    lines = [head]
    for key, per in rows.items():
        backend, workload = key.split("/")
        cells = []
        for engine in ("DBOS", "surestep"):
            values = [r["steps_per_s"] for r in per[engine]]
            cells.append(
                f"{fmt(statistics.median(values))} ({fmt(min(values))}..{fmt(max(values))})"
            )
        ratios = [
            s["steps_per_s"] / d["steps_per_s"]
            for d, s in zip(per["DBOS"], per["surestep"], strict=True)
        ]
        cells.append(f"{statistics.median(ratios):.1f}x ({min(ratios):.1f}..{max(ratios):.1f})")
        lines.append((titles[backend], shapes[workload], *cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    for key, per in rows.items():
        if per["flush"]:
            ms = {
                e: statistics.median([1e3 / r["steps_per_s"] for r in per[e]])
                for e in ("DBOS", "surestep")
            }
            flush = statistics.median([r["ms"] for r in per["flush"]])
            out.append(
                f"{key}: {ms['DBOS']:.2f} ms/step DBOS, {ms['surestep']:.2f} ms/step surestep; "
                f"one raw fdatasync {flush:.2f} ms (median over repetitions, each a median "
                f"of 100, measured before the pair)"
            )
    return "\n".join(line.rstrip() for line in out)


T = TypeVar("T")


def on_backends(
    names: str,
    make_loop: Callable[[], asyncio.AbstractEventLoop],
    work: Callable[[list[Backend]], Awaitable[T]],
) -> tuple[T, list[Backend]]:
    """Make the backends ``names`` lists (``embedded,postgres``: the private PostgreSQL
    server started, or skipped with the reason when there is none), run ``work`` on them
    on a new loop, then close the loop and stop the server."""
    wanted = [b for b in names.split(",") if b]
    unknown = set(wanted) - {"embedded", "postgres"}
    if unknown:
        raise SystemExit(f"unknown backend(s): {', '.join(sorted(unknown))}")
    server: PgServer | None = None
    backends: list[Backend] = []
    loop = make_loop()
    try:
        if "embedded" in wanted:
            backends.append(Embedded())
        if "postgres" in wanted:
            try:
                server = PgServer()
            except PgServerMissingError as exc:
                print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
            else:
                server.start()
                pg = Postgres(server)
                loop.run_until_complete(pg.prepare())
                backends.append(pg)
        result = loop.run_until_complete(work(backends))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        finally:
            if server is not None:
                server.stop()
    return result, backends


def print_about(
    facts: dict[str, str], backends: list[Backend], load_before: tuple[float, ...]
) -> dict[str, str]:
    """Print, and return, what a comparison ran on: ``facts``, DBOS's version, the load
    average before and now, and what each backend's stores were."""
    about = {
        **facts,
        "dbos": importlib.metadata.version("dbos"),
        "load average before/after": f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}",
    }
    for backend in backends:
        about.update(backend.about())
    print("; ".join(f"{k}: {v}" for k, v in about.items()))
    return about


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (>= 5)")
    parser.add_argument("--seq-steps", type=int, default=200, help="steps of the sequential run")
    parser.add_argument("--runs", type=int, default=200, help="concurrent workflows")
    parser.add_argument("--steps", type=int, default=10, help="steps per concurrent workflow")
    parser.add_argument("--backends", default="embedded,postgres", help="embedded,postgres")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", default="", help="also write every repetition's figures here")
    args = parser.parse_args()
    started = time.time()
    load_before = os.getloadavg()
    rows, backends = on_backends(
        args.backends, lambda: new_loop(args.loop), lambda b: run_all(args, b)
    )

    facts = {
        "surestep": surestep.__version__,
        "python": sys.version.split()[0],
        "loop": args.loop,
        "cpus": str(os.cpu_count()),
    }
    about = print_about(facts, backends, load_before)
    print(
        f"{args.repeat} repetitions, medians; ratio = median of per-repetition ratios; "
        f"{time.time() - started:.0f} s in all\n"
    )
    print(table(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"about": about, "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
