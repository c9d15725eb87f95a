"""Workers: clients enqueue, workers claim; leases, cancellation, draining, and
a proof with real worker processes killed by SIGKILL at random moments."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from support import workload
from support.processes import sigkill, terminate_all
from surestep import Engine, RunCancelledError, WorkflowContext, function, workflow
from surestep.worker import Worker

TESTS = str(Path(__file__).parent)


async def test_client_enqueues_and_a_worker_executes(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with Engine(store_url, execute=False) as client, Engine(store_url) as serving:
        handles = [await client.start(workload.tour, n) for n in range(20)]
        assert {r.status for r in await client.runs()} == {"pending"}
        worker = Worker(serving, concurrency=5)
        running = asyncio.ensure_future(worker.run())
        monkeypatch.setenv("SURESTEP_TEST_LEDGER", str(tmp_path / "ledger"))
        try:
            results = await asyncio.gather(*(h.result() for h in handles))
        finally:
            worker.stop()
            await running
    assert results == [workload.expected(n) for n in range(20)]


class Held:
    release: asyncio.Event  # made by the test, on its loop


@workflow(name="workers.held")
async def held(ctx: WorkflowContext) -> str:
    await Held.release.wait()
    return "held"


@workflow(name="workers.quick")
async def quick(ctx: WorkflowContext) -> str:
    return "quick"


async def test_a_full_worker_claims_again_when_any_run_here_ends(store_url: str) -> None:
    """A worker's slots count every run its engine executes, not only those it claimed (a
    claimed run's child, or one started by ``start``): when such a run ends, a full worker
    claims the next pending run (it waited for its own claimed runs' ends only, and hung)."""
    Held.release = asyncio.Event()
    async with Engine(store_url, execute=False) as client, Engine(store_url) as serving:
        here = await serving.start(held)  # executing in the worker's engine, not claimed
        asked = asyncio.Event()  # the worker read its count of runs (full: it then waits)
        next_run_end = serving.next_run_end

        def asking() -> asyncio.Event:
            asked.set()
            return next_run_end()

        serving.next_run_end = asking  # type: ignore[method-assign]
        worker = Worker(serving, concurrency=1)
        running = asyncio.ensure_future(worker.run())
        try:
            pending = await client.start(quick)
            await asked.wait()
            Held.release.set()
            assert await here.result() == "held"
            # (A hang guard, not a pace: before the fix the worker never claimed it.)
            assert await asyncio.wait_for(pending.result(), 60) == "quick"
        finally:
            worker.stop()
            await running


async def test_cancel_stops_a_run_where_it_executes(store_url: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    ran_after: list[int] = []

    @function
    async def hold() -> int:
        started.set()
        await release.wait()
        return 1

    @workflow
    async def holder(ctx: WorkflowContext) -> int:
        await ctx.step(hold)
        ran_after.append(1)
        return await ctx.step("after", lambda: 2)

    async with Engine(store_url) as engine:
        handle = await engine.start(holder)
        await started.wait()
        assert await engine.cancel(handle.run_id) is True
        release.set()
        with pytest.raises(RunCancelledError):
            await handle.result()
        assert (await engine.get_run(handle.run_id)).status == "cancelled"
        assert await engine.journal(handle.run_id) == []  # the held step's record was refused
        assert await engine.cancel(handle.run_id) is False  # already finished
        assert ran_after == []


@pytest.mark.citus_forms
async def test_cancel_from_another_engine_stops_the_executing_one(store_url: str) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @function
    async def hold() -> int:
        started.set()
        await release.wait()
        return 1

    @workflow
    async def remote_holder(ctx: WorkflowContext) -> int:
        return await ctx.step(hold)

    async with Engine(store_url) as executing, Engine(store_url, execute=False) as other:
        handle = await executing.start(remote_holder)
        await started.wait()
        assert await other.cancel(handle.run_id) is True
        release.set()  # its next write is refused: the fencing token moved on
        with pytest.raises(RunCancelledError):
            await handle.result()
        assert await executing.journal(handle.run_id) == []


async def test_drain_lets_running_runs_finish(store_url: str, tmp_path: Path) -> None:
    os.environ["SURESTEP_TEST_LEDGER"] = str(tmp_path / "ledger")
    async with Engine(store_url, execute=False) as client:
        handles = [await client.start(workload.tour, n) for n in range(6)]
        serving = Engine(store_url)
        worker = Worker(serving, concurrency=6, drain_seconds=30)
        running = asyncio.ensure_future(worker.run())
        while serving.executing < 6:  # noqa: ASYNC110 - no event says "claimed"; bounded by the test timeout
            await asyncio.sleep(0.001)
        worker.stop()  # as SIGTERM does
        await running
        assert [await h.result() for h in handles] == [workload.expected(n) for n in range(6)]


# -- real processes


def _spawn(store: str, ledger: str) -> subprocess.Popen[str]:
    """A worker process, returned once it serves (its signal handlers installed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, store],
        env={**os.environ, "SURESTEP_TEST_LEDGER": ledger, "PYTHONPATH": TESTS},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def _busy_workers(
    ledger: str, workers: list[subprocess.Popen[str]], deadline: float
) -> list[subprocess.Popen[str]]:
    """The workers with a step started and not ended, waiting for one until ``deadline``."""
    while time.time() < deadline:
        open_steps: set[tuple[str, int, int]] = set()
        if os.path.exists(ledger):
            with open(ledger, encoding="utf-8") as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # a line being written
                    e = json.loads(line)
                    key = (e["run"], e["seq"], e["pid"])
                    if e["phase"] == "start":
                        open_steps.add(key)
                    else:
                        open_steps.discard(key)
        pids = {pid for _, _, pid in open_steps}
        busy = [w for w in workers if w.pid in pids]
        if busy:
            return busy
        time.sleep(0.005)
    return []


SERVE = """
import sys
from surestep.engine import run_loop
from surestep.worker import serve
ready = lambda: print("ready", flush=True)
run_loop(serve(sys.argv[1], ["support.workload"], concurrency=4, lease_seconds=2.0, on_ready=ready))
"""


@pytest.mark.slow
@pytest.mark.citus_forms
def test_three_workers_killed_at_random_finish_every_run(tmp_path: Path, store_url: str) -> None:
    store, ledger = store_url, str(tmp_path / "ledger")
    runs = 300
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)

    async def enqueue() -> list[str]:
        async with Engine(store, execute=False) as client:
            return [(await client.start(workload.tour, n)).run_id for n in range(runs)]

    from surestep.engine import run_loop

    run_ids = run_loop(enqueue())
    workers = [_spawn(store, ledger) for _ in range(3)]
    killed: dict[int, float] = {}
    try:
        for _ in range(8):  # SIGKILL a worker in the middle of a step, start a new one
            time.sleep(rng.uniform(0.02, 0.2))
            busy = _busy_workers(ledger, workers, deadline=time.time() + 10)
            if not busy:
                break  # all the work is done
            victim = rng.choice(busy)
            workers.remove(victim)
            killed[victim.pid] = sigkill(victim)
            workers.append(_spawn(store, ledger))
        assert len(killed) >= 3, f"only {len(killed)} kill(s) landed mid-step, seed {seed}"

        async def results() -> list[object]:
            async with Engine(store, execute=False) as client:
                return list(
                    await asyncio.wait_for(
                        asyncio.gather(*(client.handle(r).result() for r in run_ids)), 120
                    )
                )

        assert run_loop(results()) == [workload.expected(n) for n in range(runs)], f"seed {seed}"
    finally:
        codes = terminate_all(workers)
    assert codes == [0, 0, 0]  # SIGTERM drains and exits cleanly

    executions: dict[tuple[str, int], list[dict]] = defaultdict(list)
    with open(ledger, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event["phase"] == "start":
                executions[(event["run"], event["seq"])].append(event)
    assert len(executions) == runs * workload.STEPS
    redone = sum(len(starts) - 1 for starts in executions.values())
    assert redone >= len(killed), (
        f"each kill landed mid-step, so each left a step to redo, seed {seed}"
    )
    for (run_id, seq), starts in executions.items():
        # Only a worker killed during the step may have left it for another to redo.
        for earlier in starts[:-1]:
            assert earlier["pid"] in killed, (
                f"step {seq} of {run_id} ran twice ({starts}), seed {seed}"
            )

    # No two workers executed one run at once: a run's steps by different
    # processes never overlap; a killed process's last step ends at its kill.
    intervals: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    with open(ledger, encoding="utf-8") as f:
        open_steps: dict[tuple[str, int, int], float] = {}
        for line in f:
            e = json.loads(line)
            key = (e["run"], e["seq"], e["pid"])
            if e["phase"] == "start":
                open_steps[key] = e["t"]
            else:
                intervals[e["run"]].append((open_steps.pop(key), e["t"], e["pid"]))
        for (run_id, _, pid), began in open_steps.items():
            intervals[run_id].append((began, killed[pid], pid))
    for run_id, spans in intervals.items():
        spans.sort()
        for (_, end, pid), (start, _, next_pid) in itertools.pairwise(spans):
            if pid != next_pid:
                assert start >= end, f"run {run_id} overlapped on {pid} and {next_pid}, seed {seed}"
