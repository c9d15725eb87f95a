"""``engine.start(..., idempotency_key=...)``: one run per key, durably, across processes,
on both backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from surestep import ConfigurationError, Engine, WorkflowContext, workflow

FLOWS = Path(__file__).parent / "support" / "http_flows.py"

# Started by several processes at once, each with the same key: prints the run id it got.
START = f"""
import asyncio, sys
sys.path.insert(0, {str(FLOWS.parent)!r})
import http_flows
from surestep import Engine

async def main() -> None:
    async with Engine(sys.argv[1], execute=False) as engine:
        print("ready", flush=True)
        sys.stdin.readline()  # every process is up: start together
        handle = await engine.start(http_flows.add, 1, 2, idempotency_key="shared")
        print(handle.run_id, flush=True)

asyncio.run(main())
"""


async def test_the_same_key_returns_the_same_run(store_url: str) -> None:
    executions: list[int] = []

    @workflow
    async def counted(ctx: WorkflowContext, n: int) -> int:
        executions.append(n)
        return n * 2

    async with Engine(store_url) as engine:
        first = await engine.start(counted, 1, idempotency_key="job-1")
        assert await first.result() == 2
        again = await engine.start(counted, 99, idempotency_key="job-1")
        assert again.run_id == first.run_id
        assert await again.result() == 2  # the first run's outcome: the input 99 is not used
        assert await engine.run(counted, 5, idempotency_key="job-1") == 2
        assert await engine.run(counted, 3, idempotency_key="job-2") == 6
        assert executions == [1, 3]
    async with Engine(store_url) as engine:  # kept in the store
        later = await engine.start(counted, 7, idempotency_key="job-2")
        assert await later.result() == 6
        assert len(await engine.runs()) == 2
    assert executions == [1, 3]


async def test_a_key_of_a_running_run_waits_for_that_run(store_url: str) -> None:
    @workflow
    async def gated(ctx: WorkflowContext) -> str:
        return str(await ctx.wait_for_event("go"))

    async with Engine(store_url) as engine:
        first = await engine.start(gated, idempotency_key="gate")
        second = await engine.start(gated, idempotency_key="gate")
        assert second.run_id == first.run_id
        await engine.send_event(first.run_id, "go", "went")
        assert await second.result() == "went"
        assert len(await engine.runs()) == 1


async def test_a_key_names_one_workflow(store_url: str) -> None:
    @workflow
    async def first(ctx: WorkflowContext) -> int:
        return 1

    @workflow
    async def second(ctx: WorkflowContext) -> int:
        return 2

    async with Engine(store_url) as engine:
        handle = await engine.start(first, idempotency_key="shared-key")
        with pytest.raises(ConfigurationError, match=f"started run {handle.run_id} of workflow"):
            await engine.start(second, idempotency_key="shared-key")
        assert [run.run_id for run in await engine.runs()] == [handle.run_id]


async def test_bad_keys_are_refused_and_start_nothing(store_url: str) -> None:
    @workflow
    async def one(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine:
        for bad in ("", "nul\x00", "k" * 300, 12):
            with pytest.raises(ConfigurationError, match="idempotency key"):
                await engine.start(one, idempotency_key=bad)
        assert await engine.runs() == []


@pytest.mark.slow
def test_processes_starting_with_one_key_make_one_run(store_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", START, store_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n", proc.stderr
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [proc.communicate(timeout=90) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outs]
    ids = {out.strip() for out, _ in outs}  # after "ready"
    assert len(ids) == 1

    async def stored() -> list[str]:
        async with Engine(store_url, execute=False) as engine:
            return [run.run_id for run in await engine.runs()]

    assert asyncio.run(stored()) == list(ids)
