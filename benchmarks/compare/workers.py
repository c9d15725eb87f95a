"""Worker scaling: steps/s with 1 and 2 worker processes, on LMDB and on PostgreSQL.

    .venv/bin/python benchmarks/compare/workers.py              # 5 repetitions, ~2 min
    .venv/bin/python benchmarks/compare/workers.py --repeat 3 --runs 5000 --backends lmdb

Three configurations, in an order that rotates from one repetition to the next:
1 worker process running up to ``--concurrency`` runs at once (100, the default of
``surestep worker``), 2 such processes, and a control: 1 process at twice the
concurrency, which has as many runs in flight as the 2 processes. With fsync
group commit, more runs in flight means more steps per commit, so a gain from 1 to
2 workers is only a gain from a second process where it beats the control.

For each backend, each repetition and each configuration:

1. a fresh store (a new LMDB directory; a new schema in a database of a private
   PostgreSQL server started for this run by ``tests/support/pgserver.py``);
2. a client (``Engine(url, execute=False)``) enqueues ``--runs`` runs of
   ``flows.chain(--steps)`` (all at once: ``asyncio.gather`` of ``start``);
3. N worker processes start. Each runs what ``surestep.worker.serve`` runs, a
   ``surestep.worker.Worker`` over an ``Engine`` with the default settings
   (``durability="fsync"``, ``--concurrency`` runs at once, 100 like
   ``surestep worker``), except that it opens its engine and then waits at a
   start gate (a line on its stdin), so that both workers start claiming within a
   millisecond or so instead of one process start-up apart;
4. the gate opens; the client polls (every 100 ms) until no run is pending or
   running; the workers get SIGTERM and exit.

The figure is ``runs x steps`` over the time from the **first claim** (the
earliest moment a worker asked for runs and got some, as the workers report it)
to the **last result** (the latest ``updated_at`` of a finished run, as the
store recorded it; PostgreSQL stamps it with its server's clock, the same
machine). The client's polling interval does not enter the figure.

Checked after each measurement: every run completed with result ``steps``, was
claimed once (``attempt == 1``), and has a journal of exactly ``steps`` records
with outputs 1..steps; the workers together claimed every run exactly once.

The machine has 2 vCPUs, shared by the client, the workers and (on PostgreSQL)
the server's backends: read the 2-vs-1 ratio with that in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1] / "tests")]

from common import check, raw_flush_ms, temp_dir  # noqa: E402

import flows  # noqa: E402
from surestep import Engine, RunHandle  # noqa: E402
from surestep.engine import run_loop  # noqa: E402
from surestep.store.base import COMPLETED, PENDING, RUNNING  # noqa: E402
from surestep.worker import Worker, import_module  # noqa: E402

POLL_SECONDS = 0.1
TIMEOUT_SECONDS = 600.0


# -- the worker process


class CountingEngine(Engine):
    """An engine that notes when its first non-empty claim started, and how many runs
    it claimed in all (what the client needs to time and check the workers)."""

    first_claim = 0.0
    claimed = 0

    async def claim(self, limit: int) -> list[RunHandle]:
        asked = time.time()
        handles = await super().claim(limit)
        if handles and not self.first_claim:
            self.first_claim = asked
        self.claimed += len(handles)
        return handles


async def _serve(store: str, concurrency: int) -> None:
    """``surestep.worker.serve`` with a start gate after the engine is open."""
    import_module("flows")  # registers the workflow (already imported: the same module)
    engine = CountingEngine(store)
    worker = Worker(engine, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await engine.open()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the gate
    await worker.run()  # returns after SIGTERM, once drained and closed
    print(json.dumps({"first_claim": engine.first_claim, "claimed": engine.claimed}), flush=True)


# -- the client


def spawn_worker(store: str, concurrency: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "_serve", store, str(concurrency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def stop_workers(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    """SIGTERM each worker (they drain and exit) and read their reports; kill on timeout."""
    reports = []
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        check(proc.returncode == 0 and bool(lines), f"worker {proc.pid} exited {proc.returncode}")
        reports.append(json.loads(lines[-1]))
    return reports


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time (user + system) a process has used; with ``children``, also what its
    reaped children used (a PostgreSQL server's backends that have exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(postmaster: int) -> float:
    """CPU time of a PostgreSQL server: the postmaster, its live children, and its
    reaped ones."""
    total = cpu_seconds(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            if ppid == postmaster:
                total += cpu_seconds(int(entry))
    return total


def cpu_snapshot(procs: list[subprocess.Popen[str]], postmaster: int | None) -> dict[str, float]:
    return {
        "workers": sum(cpu_seconds(p.pid) for p in procs),
        "client": cpu_seconds(os.getpid()),
        "server": server_cpu_seconds(postmaster) if postmaster else 0.0,
    }


async def measure(
    store: str,
    workers: int,
    runs: int,
    steps: int,
    concurrency: int,
    postmaster: int | None = None,
) -> dict[str, Any]:
    client = Engine(store, execute=False)
    await client.open()
    procs: list[subprocess.Popen[str]] = []
    try:
        handles = await asyncio.gather(*[client.start(flows.chain, steps) for _ in range(runs)])
        loop = asyncio.get_running_loop()
        procs = [spawn_worker(store, concurrency) for _ in range(workers)]
        for proc in procs:
            assert proc.stdout is not None
            line = await loop.run_in_executor(None, proc.stdout.readline)
            check(line.strip() == "ready", f"worker {proc.pid} did not start: {line!r}")
        cpu_before = cpu_snapshot(procs, postmaster)
        for proc in procs:  # open the gates
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        gate = time.time()
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if not await client.runs(status=PENDING, limit=1) and not await client.runs(
                status=RUNNING, limit=1
            ):
                break
            check(time.time() - gate < TIMEOUT_SECONDS, "the runs did not finish in time")
            check(all(p.poll() is None for p in procs), "a worker died")
        done = time.time()
        cpu_after = cpu_snapshot(procs, postmaster)
        reports = stop_workers(procs)
        procs = []
        # -- checks, and the stored timestamps
        want = list(range(1, steps + 1))
        first_step, last_result = float("inf"), 0.0
        for handle in handles:
            run = await client.get_run(handle.run_id)
            check(run.status == COMPLETED and run.result == steps, f"run {run.run_id}: {run}")
            check(run.attempt == 1, f"run {run.run_id} was claimed {run.attempt} times")
            journal = await client.journal(handle.run_id)
            check([e.output for e in journal] == want, f"run {run.run_id}: journal")
            first_step = min(first_step, journal[0].started_at)
            last_result = max(last_result, run.updated_at)
        check(sum(r["claimed"] for r in reports) == runs, "the workers claimed every run once")
        first_claim = min(r["first_claim"] for r in reports if r["first_claim"])
        elapsed = last_result - first_claim
        return {
            "workers": workers,
            "seconds": elapsed,
            "steps_per_s": runs * steps / elapsed,
            "claim_to_first_step_ms": (first_step - first_claim) * 1e3,
            "claimed": [r["claimed"] for r in reports],
            # CPU used from the gate to the moment the client saw every run finished,
            # in cores (CPU seconds per wall second of that window)
            **{f"cores_{k}": (cpu_after[k] - cpu_before[k]) / (done - gate) for k in cpu_before},
        }
    finally:
        for proc in procs:  # only after a failure
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        await client.close()


async def drop_schema(base: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def configs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(label, worker processes, concurrency per worker) of each measurement."""
    c = args.concurrency
    out = [(f"{n} x {c}", n, c) for n in (1, 2)]
    if args.control:
        out.append((f"1 x {2 * c}", 1, 2 * c))
    return out


async def run_all(
    args: argparse.Namespace, pg_url: str | None, postmaster: int | None
) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for backend in args.backends.split(","):
        if backend == "postgres" and pg_url is None:
            continue
        rows[backend] = []
        for rep in range(args.repeat):
            shift = rep % len(configs(args))  # rotate the order from one repetition to the next
            order = configs(args)[shift:] + configs(args)[:shift]
            for label, n, concurrency in order:
                if backend == "lmdb":
                    path = temp_dir(f"workers-{n}w")
                    try:
                        row = await measure(
                            os.path.join(path, "store"), n, args.runs, args.steps, concurrency
                        )
                    finally:
                        shutil.rmtree(path, ignore_errors=True)
                else:
                    assert pg_url is not None
                    schema = f"workers_{rep}_{n}_{concurrency}"
                    try:
                        row = await measure(
                            f"{pg_url}?schema={schema}",
                            n,
                            args.runs,
                            args.steps,
                            concurrency,
                            postmaster,
                        )
                    finally:
                        await drop_schema(pg_url, schema)
                row["rep"], row["config"] = rep, label
                rows[backend].append(row)
                print(
                    f"  {backend} {rep + 1}/{args.repeat}, {label}: "
                    f"{row['steps_per_s']:,.0f} steps/s, runs per worker {row['claimed']}; "
                    f"cores busy: workers {row['cores_workers']:.2f}, "
                    f"client {row['cores_client']:.2f}, server {row['cores_server']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def table(rows: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    labels = [label for label, _, _ in configs(args)]
    one, two = labels[0], labels[1]
    head = ["backend", *[f"{label}: steps/s (min..max)" for label in labels]]
    head.append(f"{two} vs {one} (min..max)")
    if args.control:
        head.append(f"{two} vs {labels[2]}")
    lines = [tuple(head)]
    titles = {"lmdb": "LMDB directory", "postgres": "PostgreSQL"}
    for backend, per in rows.items():
        cells = [titles[backend]]
        for label in labels:
            values = [r["steps_per_s"] for r in per if r["config"] == label]
            cells.append(
                f"{statistics.median(values):,.0f} ({min(values):,.0f}..{max(values):,.0f})"
            )
        by_rep: dict[int, dict[str, float]] = {}
        for r in per:
            by_rep.setdefault(r["rep"], {})[r["config"]] = r["steps_per_s"]
        ratios = [v[two] / v[one] for v in by_rep.values()]
        cells.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})")
        if args.control:
            control = [v[two] / v[labels[2]] for v in by_rep.values()]
            cells.append(f"{statistics.median(control):.2f}x")
        lines.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append("\nCPU busy while the runs executed (cores, medians), of the 2 this machine has:")
    for backend, per in rows.items():
        parts = []
        for label in labels:
            mine = [r for r in per if r["config"] == label]
            cores = {
                k: statistics.median([r[f"cores_{k}"] for r in mine])
                for k in ("workers", "server", "client")
            }
            parts.append(
                f"{label}: workers {cores['workers']:.2f}"
                + (f" + server {cores['server']:.2f}" if backend == "postgres" else "")
                + f" + client {cores['client']:.2f}"
            )
        out.append(f"{titles[backend]}: " + "; ".join(parts))
    return "\n".join(line.rstrip() for line in out)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_serve":
        run_loop(_serve(sys.argv[2], int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (>= 3)")
    parser.add_argument("--runs", type=int, default=2000, help="runs enqueued per measurement")
    parser.add_argument("--steps", type=int, default=10, help="steps per run")
    parser.add_argument("--concurrency", type=int, default=100, help="runs at once per worker")
    parser.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the control: 1 worker at twice the concurrency (as many runs in flight as 2)",
    )
    parser.add_argument("--backends", default="lmdb,postgres", help="lmdb,postgres")
    parser.add_argument("--json", default="", help="also write every repetition's figures here")
    args = parser.parse_args()

    from support.pgserver import PgServer, PgServerMissingError

    started = time.time()
    load_before = os.getloadavg()
    flush_before = raw_flush_ms()
    server: PgServer | None = None
    about: dict[str, str] = {}
    try:
        pg_url, postmaster = None, None
        if "postgres" in args.backends.split(","):
            try:
                server = PgServer()
            except PgServerMissingError as exc:
                print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
            else:
                pg_url = server.start()
                with open(os.path.join(server.data, "postmaster.pid")) as f:
                    postmaster = int(f.readline())
                about["PostgreSQL"] = run_loop(_pg_about(pg_url))
        rows = run_loop(run_all(args, pg_url, postmaster))
    finally:
        if server is not None:
            server.stop()
    import surestep

    about = {
        "surestep": surestep.__version__,
        "python": sys.version.split()[0],
        "cpus": str(os.cpu_count()),
        "load average before/after": f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f}",
        "raw fdatasync before/after": f"{flush_before:.2f} / {raw_flush_ms():.2f} ms",
        **about,
    }
    print("; ".join(f"{k}: {v}" for k, v in about.items()))
    print(
        f"{args.runs:,} runs x {args.steps} steps; 'N x C' = N worker processes running up to "
        f"C runs each; durability fsync; {args.repeat} repetitions, medians; ratios = medians "
        f"of per-repetition ratios; {time.time() - started:.0f} s in all\n"
    )
    print(table(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"about": about, "args": vars(args), "rows": rows}, f, indent=1)


async def _pg_about(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        version = await conn.fetchval("SHOW server_version")
        fsync = await conn.fetchval("SHOW fsync")
        sync = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"{version} (fsync={fsync}, synchronous_commit={sync})"


if __name__ == "__main__":
    main()
