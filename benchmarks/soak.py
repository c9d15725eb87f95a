"""A soak: open-loop load for a long time with a short retention, on one store, watching
whether the store's size, the process's memory and the latency stay flat.

    .venv/bin/python benchmarks/soak.py                                  # LMDB, 30 minutes
    .venv/bin/python benchmarks/soak.py --store postgresql://...         # PostgreSQL
    .venv/bin/python benchmarks/soak.py --postgres                       # a private server
    .venv/bin/python benchmarks/soak.py --duration 2m --warmup 20s \
        --first-window 30s --last-window 60s                             # a short check

Runs of ``--steps`` steps arrive at ``--rate`` runs a second on a fixed schedule (open
loop: a slow store does not slow the arrivals, and a run's latency counts from its
scheduled start, so a stall shows as latency rather than as fewer runs). Without
``--rate``, the capacity is measured first (closed loop, ``--capacity-seconds``) and
half of it is offered. Finished runs are kept for ``--retention`` (1 minute) and
purged in the background every ``--purge-interval`` seconds.

Every ``--sample`` seconds (10) a row goes to ``<out>.csv`` (default
``benchmarks/soak-lmdb`` or ``benchmarks/soak-postgresql``): elapsed seconds, the
store's size (LMDB: the last page in use x the page size, and the data file;
PostgreSQL: the total size of its relations, indexes included), the process's
resident memory (and its part that is no file's pages: LMDB's map is file pages),
runs kept and purged runs whose records are still being deleted,
and the p50 and p99 latency of the runs finished in that interval. At the end
``<out>.png`` plots them (matplotlib: ``pip install -e '.[bench]'``) and the summary
checks the goals: after the warm-up (``--warmup``, 5 minutes), the store's size and
the RSS grow less than 5% over the last ``--last-window`` (20 minutes), the p99 of
that window is within 1.5x the p99 of the first ``--first-window`` (10 minutes), and
no run failed. The exit status is 1 when a goal is missed. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import csv
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from latency import private_postgres
from space_reuse import size_of
from surestep import Engine, WorkflowContext, workflow
from surestep.retention import parse_duration

MAX_IN_FLIGHT = 20_000  # beyond this the store cannot keep up: the soak stops, and says so
# The goals of a soak (after the warm-up).
MAX_GROWTH = 0.05  # store size and RSS, over the last window
MAX_P99_RATIO = 1.5  # the last window's p99 against the first window's

# Latencies are counted in buckets 1% wide (from 1 us): the quantiles of any window
# come from a few hundred counters, whatever the number of runs, so that keeping them
# does not itself grow the memory the soak watches.
_BUCKET = math.log(1.01)
_FLOOR = 1e-6


def bucket(seconds: float) -> int:
    return max(math.ceil(math.log(max(seconds, _FLOOR) / _FLOOR) / _BUCKET), 0)


def quantile(histogram: Counter[int], q: float) -> float:
    """The ``q`` quantile of the latencies counted in ``histogram``, in seconds (the
    upper edge of its bucket: at most 1% above the true value); 0 when empty."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    rank = max(math.ceil(q * total), 1)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return _FLOOR * math.exp(index * _BUCKET)
    raise AssertionError("unreachable: the ranks add up to the total")


def packed(histogram: Counter[int]) -> array.array[int]:
    """A sample's histogram as it is kept until the end: one flat array of (bucket, count)
    pairs, a fifth of a Counter's size, so that the soak's own records add as little as
    they can to the memory it watches."""
    return array.array("q", [n for item in sorted(histogram.items()) for n in item])


def merged(histograms: Iterable[array.array[int]]) -> Counter[int]:
    total: Counter[int] = Counter()
    for histogram in histograms:
        for i in range(0, len(histogram), 2):
            total[histogram[i]] += histogram[i + 1]
    return total


@workflow(name="soak.order")
async def order(ctx: WorkflowContext, n: int, steps: int) -> int:
    total = 0
    for i in range(steps):
        line = await ctx.step(f"s{i}", lambda i=i: {"line": i, "sku": f"sku-{n}"})
        total += line["line"]
    return total


def rss_bytes() -> tuple[int, int]:
    """The process's resident memory now, and the part of it that is no file's pages
    (LMDB's map is file pages: they follow the store's size, not a leak); Linux. Else
    its peak, twice."""
    try:
        with open("/proc/self/statm") as f:
            fields = f.read().split()
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak if sys.platform == "darwin" else peak * 1024
        return peak, peak
    page = os.sysconf("SC_PAGE_SIZE")
    resident, file_backed = int(fields[1]) * page, int(fields[2]) * page
    return resident, resident - file_backed


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
        self.latencies: Counter[int] = Counter()  # of runs finished since the last sample
        self.in_flight = 0
        self.failed = 0
        self.overloaded = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def one(self, n: int, due: float) -> None:
        self.in_flight += 1
        try:
            await (await self.engine.start(order, n, self.steps)).result()
            self.latencies[bucket(time.perf_counter() - due)] += 1
        except Exception:
            self.failed += 1
        finally:
            self.in_flight -= 1

    async def arrivals(self, until: float) -> None:
        """Start a run every 1/rate seconds until ``until``, or until the store falls so
        far behind that :data:`MAX_IN_FLIGHT` runs are unfinished (``overloaded``)."""
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
                self.overloaded = True
                return
            task = asyncio.get_running_loop().create_task(self.one(n, due))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1


async def soak(
    args: argparse.Namespace, store: str, out: TextIO
) -> tuple[list[dict[str, Any]], list[array.array[int]], Soak]:
    """The samples (the CSV's rows) and each one's latency histogram."""
    engine = Engine(
        store,
        durability=args.durability,
        retention=args.retention,
        purge_interval=args.purge_interval,
    )
    rows: list[dict[str, Any]] = []
    histograms: list[array.array[int]] = []
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
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        try:
            while time.perf_counter() < until and not load.overloaded:
                await asyncio.sleep(args.sample)
                stats = await engine.stats()
                used, file = size_of(stats)
                window, load.latencies = load.latencies, Counter()
                rss, anonymous = rss_bytes()
                row = {
                    "elapsed_s": round(time.perf_counter() - began, 1),
                    "store_used_bytes": used,
                    "store_file_bytes": file,
                    "rss_bytes": rss,
                    "rss_anon_bytes": anonymous,
                    "runs_kept": sum(stats["runs"].values()),
                    "runs_purging": stats["hidden"],
                    "runs_done": sum(window.values()),
                    "in_flight": load.in_flight,
                    "failed": load.failed,
                    "p50_ms": round(quantile(window, 0.50) * 1000, 2),
                    "p99_ms": round(quantile(window, 0.99) * 1000, 2),
                }
                writer.writerow(row)
                out.flush()
                rows.append(row)
                histograms.append(packed(window))
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        finally:
            arrivals.cancel()
            await asyncio.gather(arrivals, return_exceptions=True)
            await asyncio.gather(*load.tasks, return_exceptions=True)
    return rows, histograms, load


FIELDS = [
    "elapsed_s",
    "store_used_bytes",
    "store_file_bytes",
    "rss_bytes",
    "rss_anon_bytes",
    "runs_kept",
    "runs_purging",
    "runs_done",
    "in_flight",
    "failed",
    "p50_ms",
    "p99_ms",
]


def windows(
    rows: list[dict[str, Any]], warmup: float, first: float, last: float
) -> tuple[list[int], list[int]]:
    """The indexes of the samples in the first window after the warm-up and in the last."""
    end = rows[-1]["elapsed_s"] if rows else 0.0
    early = [i for i, r in enumerate(rows) if warmup <= r["elapsed_s"] < warmup + first]
    late = [i for i, r in enumerate(rows) if r["elapsed_s"] >= max(end - last, warmup)]
    return early, late


def trend(rows: list[dict[str, Any]], window: list[int], name: str) -> float:
    """Growth of ``name`` over the window by its least-squares line (its rise across the
    window over its value at the start), not from two samples: a store's size saws as
    purges and vacuums take turns, and two samples would read the saw's phase."""
    times = [rows[i]["elapsed_s"] for i in window]
    values = [rows[i][name] for i in window]
    slope, intercept = statistics.linear_regression(times, values)
    at_start = slope * times[0] + intercept
    return slope * (times[-1] - times[0]) / max(at_start, 1)


def summarise(
    rows: list[dict[str, Any]],
    histograms: list[array.array[int]],
    load: Soak,
    warmup: float,
    first: float,
    last: float,
) -> bool:
    """Print each goal with what was measured; whether all were met."""
    early, late = windows(rows, warmup, first, last)
    if len(early) < 1 or len(late) < 2:
        print(f"too short to judge: {len(rows)} samples, warm-up {warmup:g} s")
        return False
    if rows[late[0]]["elapsed_s"] < warmup + first:
        print(
            "note: the run is shorter than the warm-up and both windows: they overlap "
            "(the 30-minute soak is the real verdict)"
        )
    met = True

    def goal(ok: bool, text: str) -> None:
        nonlocal met
        met = met and ok
        print(f"{'PASS' if ok else 'FAIL'}  {text}")

    start, end = rows[late[0]], rows[late[-1]]
    span = f"{start['elapsed_s']:g}-{end['elapsed_s']:g} s"
    for name, what in (("store_used_bytes", "store size"), ("rss_bytes", "RSS")):
        growth = trend(rows, late, name)
        values = [rows[i][name] for i in late]
        goal(
            growth < MAX_GROWTH,
            f"{what} over {span}: {growth:+.1%} by its trend (goal < {MAX_GROWTH:.0%}); "
            f"{start[name]:,} -> {end[name]:,} bytes, between {min(values):,} and {max(values):,}",
        )
    heap = (end["rss_anon_bytes"] - start["rss_anon_bytes"]) / max(start["rss_anon_bytes"], 1)
    print(f"      of which not file pages (the heap): {heap:+.1%}")
    p99_first = quantile(merged(histograms[i] for i in early), 0.99) * 1000
    p99_last = quantile(merged(histograms[i] for i in late), 0.99) * 1000
    ratio = p99_last / p99_first if p99_first else math.inf
    goal(
        ratio <= MAX_P99_RATIO,
        f"p99 over {span}: {p99_last:.1f} ms, {ratio:.2f}x the {p99_first:.1f} ms of "
        f"{rows[early[0]]['elapsed_s']:g}-{rows[early[-1]]['elapsed_s']:g} s "
        f"(goal <= {MAX_P99_RATIO}x)",
    )
    done = sum(r["runs_done"] for r in rows)
    goal(load.failed == 0, f"runs failed: {load.failed} of {done + load.failed}")
    goal(not load.overloaded, f"the store kept up (fewer than {MAX_IN_FLIGHT} runs in flight)")
    return met


def plot(
    rows: list[dict[str, Any]],
    path: str,
    title: str,
    spans: tuple[list[int], list[int]],
    postgres: bool,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        print(
            "matplotlib is not installed (pip install -e '.[bench]'): no plot; the CSV has it all"
        )
        return
    minutes = [r["elapsed_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    if postgres:
        axes[0].plot(minutes, [r["store_used_bytes"] / 2**20 for r in rows], label="relations")
    else:
        axes[0].plot(minutes, [r["store_used_bytes"] / 2**20 for r in rows], label="used pages")
        axes[0].plot(minutes, [r["store_file_bytes"] / 2**20 for r in rows], label="data file")
    axes[0].set_ylabel("store (MiB)")
    axes[1].plot(minutes, [r["rss_bytes"] / 2**20 for r in rows], label="resident")
    axes[1].plot(minutes, [r["rss_anon_bytes"] / 2**20 for r in rows], label="not file pages")
    axes[1].set_ylabel("RSS (MiB)")
    axes[1].legend()
    axes[2].plot(minutes, [r["p99_ms"] for r in rows], label="p99")
    axes[2].plot(minutes, [r["p50_ms"] for r in rows], label="p50")
    axes[2].set_ylabel("run latency (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    # The windows the summary compares.
    extra: list[Any] = []
    for indexes, colour, name in zip(
        spans, ("tab:green", "tab:orange"), ("first window", "last window"), strict=True
    ):
        if indexes:
            for axis in axes:
                axis.axvspan(minutes[indexes[0]], minutes[indexes[-1]], color=colour, alpha=0.08)
            extra.append(Patch(color=colour, alpha=0.3, label=name))
    axes[0].legend(handles=[*axes[0].get_legend_handles_labels()[0], *extra])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--store", help="an LMDB directory or a postgresql:// URL (default: a new LMDB directory)"
    )
    where.add_argument(
        "--postgres",
        action="store_true",
        help="start a private PostgreSQL server for this run (tests/support/pgserver.py)",
    )
    parser.add_argument("--duration", default="30m", help="how long (default 30m)")
    parser.add_argument("--rate", type=float, help="runs a second (default: half the capacity)")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--steps", type=int, default=10, help="steps a run")
    parser.add_argument("--retention", default="1m")
    parser.add_argument("--purge-interval", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", default="5m")
    parser.add_argument("--first-window", default="10m", help="after the warm-up (default 10m)")
    parser.add_argument("--last-window", default="20m", help="at the end (default 20m)")
    parser.add_argument("--durability", default="fsync", choices=["fsync", "process"])
    parser.add_argument("--out", help="the CSV's and the PNG's path without suffix")
    args = parser.parse_args()
    args.duration = parse_duration(args.duration, "--duration")
    warmup = parse_duration(args.warmup, "--warmup")
    first = parse_duration(args.first_window, "--first-window")
    last = parse_duration(args.last_window, "--last-window")
    with contextlib.ExitStack() as cleanup:
        if args.postgres:
            store = cleanup.enter_context(private_postgres())
        elif args.store:
            store = args.store
        else:
            store = tempfile.mkdtemp(prefix="surestep-soak-")
            cleanup.callback(shutil.rmtree, store)
        postgres = store.startswith(("postgresql://", "postgres://"))
        kind = "PostgreSQL" if postgres else "LMDB"
        out = args.out or str(Path(__file__).with_name(f"soak-{kind.lower()}"))
        with open(f"{out}.csv", "w", newline="") as csv_file:  # written as it goes
            rows, histograms, load = asyncio.run(soak(args, store, csv_file))
    print(f"samples: {out}.csv")
    met = summarise(rows, histograms, load, warmup, first, last)
    title = f"surestep soak on {kind}: retention {args.retention}, {args.steps} steps a run"
    plot(rows, f"{out}.png", title, windows(rows, warmup, first, last), postgres)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
