"""A soak: open-loop load for a long time with a short retention, on one store, watching
whether the store's size, the process's memory and the latency stay flat.

    .venv/bin/python benchmarks/soak.py                         # LMDB, 30 minutes
    .venv/bin/python benchmarks/soak.py --store postgresql://... --duration 30m
    .venv/bin/python benchmarks/soak.py --duration 2m --rate 50 # a short check

Runs of ``--steps`` steps arrive at ``--rate`` runs a second on a fixed schedule (open
loop: a slow store does not slow the arrivals, and a run's latency counts from its
scheduled start, so a stall shows as latency rather than as fewer runs). Without
``--rate``, the capacity is measured first (closed loop, ``--capacity-seconds``) and
half of it is offered. Finished runs are kept for ``--retention`` (1 minute) and
purged in the background every ``--purge-interval`` seconds.

Every ``--sample`` seconds (10) a row goes to ``<out>.csv``: elapsed seconds, the
store's size (LMDB: used pages x page size, and the data file; PostgreSQL: the
relations' total), the process's resident memory, runs kept by status, and the p50 and
p99 latency of the runs finished in that interval. At the end ``<out>.png`` plots them
when matplotlib is installed, and a summary compares the last 20 minutes with the first
10 after the warm-up (``--warmup``, 5 minutes). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from surestep import Engine, WorkflowContext, workflow
from surestep.retention import parse_duration

MAX_IN_FLIGHT = 20_000  # beyond this the store cannot keep up: the soak stops, and says so


@workflow(name="soak.order")
async def order(ctx: WorkflowContext, n: int, steps: int) -> int:
    total = 0
    for i in range(steps):
        line = await ctx.step(f"s{i}", lambda i=i: {"line": i, "sku": f"sku-{n}"})
        total += line["line"]
    return total


def rss_bytes() -> int:
    """The process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def store_bytes(stats: dict[str, Any]) -> tuple[int, int]:
    size = stats["size"]
    if "used_bytes" in size:
        return size["used_bytes"], size["file_bytes"]
    return size["total_bytes"], size["total_bytes"]


async def capacity(engine: Engine, steps: int, seconds: float) -> float:
    """Runs a second this process completes with 64 in flight (closed loop)."""
    done = 0
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await (await engine.start(order, k, steps)).result()
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(64)))
    return done / (time.perf_counter() - began)


class Soak:
    def __init__(self, engine: Engine, rate: float, steps: int) -> None:
        self.engine = engine
        self.rate = rate
        self.steps = steps
        self.latencies: list[float] = []  # of runs finished since the last sample
        self.in_flight = 0
        self.failed = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def one(self, n: int, due: float) -> None:
        self.in_flight += 1
        try:
            await (await self.engine.start(order, n, self.steps)).result()
            self.latencies.append(time.perf_counter() - due)
        except Exception:
            self.failed += 1
        finally:
            self.in_flight -= 1

    async def arrivals(self, until: float) -> None:
        began = time.perf_counter()
        n = 0
        while True:
            due = began + n / self.rate
            if due >= until:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.in_flight >= MAX_IN_FLIGHT:
                raise SystemExit(f"{self.in_flight} runs in flight: the store cannot keep up")
            task = asyncio.get_running_loop().create_task(self.one(n, due))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1


async def soak(args: argparse.Namespace, store: str, out: TextIO) -> list[dict[str, Any]]:
    engine = Engine(
        store,
        durability=args.durability,
        retention=args.retention,
        purge_interval=args.purge_interval,
    )
    rows: list[dict[str, Any]] = []
    async with engine:
        rate = args.rate
        if rate is None:
            measured = await capacity(engine, args.steps, args.capacity_seconds)
            await engine.purge(older_than=0)
            rate = measured / 2
            print(f"capacity {measured:.0f} runs/s; offering half: {rate:.0f} runs/s", flush=True)
        load = Soak(engine, rate, args.steps)
        began = time.perf_counter()
        until = began + args.duration
        arrivals = asyncio.get_running_loop().create_task(load.arrivals(until))
        writer: csv.DictWriter[str] | None = None
        try:
            while time.perf_counter() < until:
                await asyncio.sleep(args.sample)
                stats = await engine.stats()
                used, file = store_bytes(stats)
                window, load.latencies = load.latencies, []
                cuts = statistics.quantiles(window, n=100) if len(window) >= 2 else [0.0] * 99
                row = {
                    "elapsed_s": round(time.perf_counter() - began, 1),
                    "store_used_bytes": used,
                    "store_file_bytes": file,
                    "rss_bytes": rss_bytes(),
                    "runs_kept": sum(stats["runs"].values()),
                    "runs_done": len(window),
                    "in_flight": load.in_flight,
                    "failed": load.failed,
                    "p50_ms": round(cuts[49] * 1000, 2),
                    "p99_ms": round(cuts[98] * 1000, 2),
                }
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                out.flush()
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        finally:
            arrivals.cancel()
            await asyncio.gather(arrivals, return_exceptions=True)
            await asyncio.gather(*load.tasks, return_exceptions=True)
    return rows


def summarise(rows: list[dict[str, Any]], warmup: float) -> None:
    steady = [r for r in rows if r["elapsed_s"] >= warmup]
    if len(steady) < 2:
        print("too short for a summary after the warm-up")
        return
    end = steady[-1]["elapsed_s"]
    first = [r for r in steady if r["elapsed_s"] < warmup + 600]
    last = [r for r in steady if r["elapsed_s"] >= end - 1200]
    for name in ("store_used_bytes", "rss_bytes"):
        growth = (last[-1][name] - last[0][name]) / max(last[0][name], 1)
        print(f"{name}: {last[0][name]} -> {last[-1][name]} over the last window ({growth:+.1%})")
    p99_first = statistics.median(r["p99_ms"] for r in first)
    p99_last = statistics.median(r["p99_ms"] for r in last)
    print(f"p99 (median of samples): first window {p99_first} ms, last window {p99_last} ms")


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (the CSV has every sample)")
        return
    minutes = [r["elapsed_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    axes[0].plot(minutes, [r["store_used_bytes"] / 2**20 for r in rows], label="used")
    axes[0].plot(minutes, [r["store_file_bytes"] / 2**20 for r in rows], label="file")
    axes[0].set_ylabel("store (MiB)")
    axes[0].legend()
    axes[1].plot(minutes, [r["rss_bytes"] / 2**20 for r in rows])
    axes[1].set_ylabel("RSS (MiB)")
    axes[2].plot(minutes, [r["p99_ms"] for r in rows], label="p99")
    axes[2].plot(minutes, [r["p50_ms"] for r in rows], label="p50")
    axes[2].set_ylabel("run latency (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a store URL (default: a new LMDB directory)")
    parser.add_argument("--duration", default="30m", help="how long (default 30m)")
    parser.add_argument("--rate", type=float, help="runs a second (default: half the capacity)")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=10, help="steps a run")
    parser.add_argument("--retention", default="1m")
    parser.add_argument("--purge-interval", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", default="5m")
    parser.add_argument("--durability", default="fsync", choices=["fsync", "process"])
    parser.add_argument("--out", default=str(Path(__file__).with_name("soak")))
    args = parser.parse_args()
    args.duration = parse_duration(args.duration, "--duration")
    store = args.store or tempfile.mkdtemp(prefix="surestep-soak-")
    kind = "PostgreSQL" if "://" in store and not store.startswith("lmdb") else "LMDB"
    try:
        with open(f"{args.out}.csv", "w", newline="") as out:  # written as it goes
            rows = asyncio.run(soak(args, store, out))
    finally:
        if args.store is None:
            shutil.rmtree(store)
    summarise(rows, parse_duration(args.warmup, "--warmup"))
    title = f"surestep soak on {kind}: retention {args.retention}, {args.steps} steps a run"
    plot(rows, f"{args.out}.png", title)


if __name__ == "__main__":
    main()
