"""How fast a purge removes finished runs: ``--runs`` finished runs (every tenth with a
child run), each with ``--records`` journal records, a log line and an event, all due at
once; then one purge of them all (hiding, then sweeping their records), timed, and the
store checked empty of them afterwards.

    .venv/bin/python benchmarks/diagnostics/purge_rate.py --store postgresql://... --runs 3000

A diagnostic, not a goal benchmark. To compare two versions of the store in the same
sitting (the machine's load changes from one minute to the next), run it alternately
with each version's ``src`` first on ``PYTHONPATH``, on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
import uuid

from surestep import journal
from surestep.retention import purge
from surestep.store import Store, open_store
from surestep.store.base import COMPLETED, RunInfo, new_run_id

FILL_AT_ONCE = 100  # runs written concurrently (they ride the stores' group commits)


@functools.cache
def record(seq: int) -> bytes:
    return journal.encode(journal.VALUE, seq, "v", journal.output(b'"' + b"x" * 64 + b'"'), None)


async def finished_run(store: Store, records: int, parent: str | None = None) -> str:
    run = RunInfo(new_run_id(), "purged", "v1", args=[], kwargs={}, parent_id=parent)
    await store.create_run(run, "bench:1:a", 60.0)
    await asyncio.gather(
        *(store.append(run.run_id, run.fence, seq, record(seq)) for seq in range(records))
    )
    await store.append_log(run.run_id, 0, 0, b'{"msg":"x"}')
    await store.send_event(run.run_id, "late", b"{}")
    if parent is None and int(run.run_id[-2:], 16) % 10 == 0:
        await finished_run(store, records, run.run_id)
    await store.finish(run.run_id, run.fence, COMPLETED, None, None, keep=0)
    return run.run_id


async def measure(url: str, runs: int, records: int) -> tuple[int, int, float]:
    """Runs and records purged, and the seconds it took."""
    store = open_store(url)
    await store.open()
    try:
        for start in range(0, runs, FILL_AT_ONCE):
            count = min(FILL_AT_ONCE, runs - start)
            await asyncio.gather(*(finished_run(store, records) for _ in range(count)))
        began = time.perf_counter()
        report = await purge(store, default_ms=0)
        seconds = time.perf_counter() - began
        left = await store.list_runs(workflow="purged")
        stats = await store.stats()
        assert not left and stats["hidden"] == 0, (len(left), stats["hidden"])
        return len(report.runs), report.records, seconds
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a postgresql:// URL (a new schema is used) or a dir")
    parser.add_argument("--runs", type=int, default=3000, help="top-level runs")
    parser.add_argument("--records", type=int, default=5, help="journal records per run")
    args = parser.parse_args()
    url = args.store or tempfile.mkdtemp(prefix="purge-rate-")
    if url.startswith("postgres"):
        url += f"{'&' if '?' in url else '?'}schema=purge_{uuid.uuid4().hex[:12]}"
    runs, records, seconds = asyncio.run(measure(url, args.runs, args.records))
    print(
        f"purged {runs} runs ({records} records) in {seconds:.2f} s: "
        f"{runs / seconds:,.0f} runs/s, {records / seconds:,.0f} records/s"
    )


if __name__ == "__main__":
    main()
