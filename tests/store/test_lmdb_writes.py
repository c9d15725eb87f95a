"""How the embedded store commits: inline at ``durability="process"``, through the writer
thread otherwise, never out of order, and never starving the event loop."""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

from surestep import Engine, WorkflowContext, function, workflow
from surestep.store import lmdb as lmdb_store
from surestep.store.lmdb import INLINE_YIELD_EVERY, LmdbStore


async def test_process_durability_commits_inline_but_never_ahead_of_a_queued_write(
    tmp_path: Path,
) -> None:
    store = LmdbStore(str(tmp_path / "store"), durability="process")
    await store.open()
    env = store.env
    order: list[str] = []
    try:
        first = env.submit(lambda txn: order.append("inline"), inline=True)
        assert first.done()  # committed on the caller's thread, before submit returned
        with env._writing:  # as if the writer thread were committing a batch
            queued = env.submit(lambda txn: order.append("queued"), inline=True)
            assert not queued.done()
            after = env.submit(lambda txn: order.append("after"), inline=True)
            assert not after.done()  # something is queued before it: it waits its turn
        await asyncio.gather(first, queued, after)
        assert order == ["inline", "queued", "after"]
        assert env.submit(lambda txn: order.append("inline again"), inline=True).done()
        big = env.submit(lambda txn: order.append("not small"))  # only small ops go inline
        assert not big.done()
        await big
    finally:
        await store.close()


async def test_fsync_durability_always_goes_through_the_writer_thread(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path / "store"), durability="fsync")
    await store.open()
    try:
        pending = store.env.submit(lambda txn: None, inline=True)
        assert not pending.done()
        await pending
    finally:
        await store.close()


_HOLD_OPEN = """
import asyncio, sys
from surestep.store.lmdb import LmdbStore

async def main():
    store = LmdbStore(sys.argv[1], durability="process")
    await store.open()
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await store.close()

asyncio.run(main())
"""


async def test_no_inline_commit_while_another_process_has_the_store_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LMDB's write lock is shared between processes: an inline commit could make the event
    loop wait for another process's transaction (its fsync, or a process stopped while it
    held the lock). So appends go through the writer thread while another process is on
    the store, and inline again once it has gone."""
    monkeypatch.setattr(lmdb_store, "ALONE_RECHECK", 0.0)  # look at every submit
    path = str(tmp_path / "store")
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_OPEN, path, stdin=PIPE, stdout=PIPE
    )
    assert other.stdin is not None and other.stdout is not None
    try:
        assert await other.stdout.readline() == b"open\n"
        store = LmdbStore(path, durability="process")
        await store.open()
        try:
            queued = store.env.submit(lambda txn: None, inline=True)
            assert not queued.done()
            await queued
            other.stdin.close()  # it closes the store and exits
            assert await other.wait() == 0
            assert store.env.submit(lambda txn: None, inline=True).done()
        finally:
            await store.close()
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()


@function
async def tick_step(x: int) -> int:
    return x + 1


@workflow
async def many_ticks(ctx: WorkflowContext, n: int) -> int:
    x = 0
    for _ in range(n):
        x = await ctx.step(tick_step, x)
    return x


async def test_inline_steps_still_let_other_tasks_run(tmp_path: Path) -> None:
    """Awaiting a done future does not yield to the loop; every INLINE_YIELD_EVERY inline
    commits the store hands the loop a turn, so a busy run cannot starve its neighbours
    (heartbeats, other runs, the application)."""
    steps = 20 * INLINE_YIELD_EVERY
    turns = 0
    done = asyncio.Event()

    async def neighbour() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    async with Engine(str(tmp_path / "store"), durability="process") as engine:
        handle = await engine.start(many_ticks, steps)
        other = asyncio.ensure_future(neighbour())
        assert await handle.result() == steps
        done.set()
        await other
        assert len(await engine.journal(handle.run_id)) == steps
    assert turns >= steps // INLINE_YIELD_EVERY
