"""How the embedded store commits: inline at ``durability="process"`` and for a run stepping
alone at ``"fsync"``, through the writer thread otherwise, never out of order, and never
starving the event loop."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import random
import sys
import threading
import time
import warnings
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest

from surestep import Engine, WorkflowContext, _core, function, workflow
from surestep.errors import StoreError, StoreFullError
from surestep.store import lmdb_env, lmdb_log
from surestep.store.base import RunInfo, new_run_id, run_key
from surestep.store.lmdb import CHUNK_BYTES, CHUNK_SHIFT, LmdbStore
from surestep.store.lmdb_env import INLINE_YIELD_EVERY


async def test_process_durability_commits_inline_but_never_ahead_of_a_queued_write(
    tmp_path: Path,
) -> None:
    store = LmdbStore(str(tmp_path / "store"), durability="process")
    await store.open()
    env = store.env
    order: list[str] = []
    key = run_key(new_run_id())
    try:
        first = env.submit(lambda txn: order.append("inline"), append_of=key)
        assert order == ["inline"]  # committed on the caller's thread, before submit returned
        with env._writing:  # as if the writer thread were committing a batch
            queued = env.submit(lambda txn: order.append("queued"), append_of=key)
            assert not queued.done()
            after = env.submit(lambda txn: order.append("after"), append_of=key)
            assert not after.done()  # something is queued before it: it waits its turn
        await asyncio.gather(first, queued, after)
        assert order == ["inline", "queued", "after"]
        again = env.submit(lambda txn: order.append("inline again"), append_of=key)
        assert order[-1] == "inline again"
        await again
        big = env.submit(lambda txn: order.append("not small"))  # neither append nor small
        assert not big.done()
        await big
    finally:
        await store.close()


@pytest.mark.parametrize("durability", ["process", "fsync"])
async def test_small_ops_commit_inline_at_process_durability_only(
    tmp_path: Path, durability: str
) -> None:
    """A small op (a run's creation, its finish) is committed on the caller's thread at
    ``process`` when nothing is queued, as appends are; at ``fsync`` (unless it follows a
    write of the same run) it rides the writer thread's group commit; never ahead of a
    queued write."""
    store = LmdbStore(str(tmp_path / "store"), durability=durability)
    await store.open()
    env = store.env
    threads: list[int] = []
    try:
        await env.submit(lambda txn: threads.append(threading.get_ident()), small=True)
        on_caller = threads == [threading.get_ident()]
        assert on_caller == (durability == "process")
        with env._writing:  # as if the writer thread were committing a batch
            queued = env.submit(lambda txn: threads.append(threading.get_ident()))
            after = env.submit(lambda txn: threads.append(threading.get_ident()), small=True)
            assert not after.done()  # something is queued before it: it waits its turn
        await asyncio.gather(queued, after)
        assert threads[1] == threads[2] != threading.get_ident()
    finally:
        await store.close()


async def test_an_inline_commit_wakes_a_waiter_of_the_same_store(tmp_path: Path) -> None:
    """A run created inline (``process``) wakes whoever waits for changes to the store,
    once the loop has its turn, as a group commit of the writer thread does."""
    path = str(tmp_path / "store")
    creator = LmdbStore(path, durability="process")
    waiter = LmdbStore(path, durability="process")
    await creator.open()
    await waiter.open()
    try:
        waiting = asyncio.ensure_future(waiter.wait_changed(30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
        await creator.create_run(run, "me", 60)
        await asyncio.wait_for(waiting, 10)
    finally:
        await waiter.close()
        await creator.close()


async def test_fsync_commits_inline_only_a_run_stepping_alone(tmp_path: Path) -> None:
    """At fsync an append is committed on the caller's thread when the op before it was
    an append of the same run: nothing else would share its group commit. Appends of two
    runs in turn, or an append after another write, go through the writer thread."""
    store = LmdbStore(str(tmp_path / "store"), durability="fsync")
    await store.open()
    one, two = run_key(new_run_id()), run_key(new_run_id())

    async def committed_on(key: bytes | None) -> str:
        threads: list[int] = []
        turns: list[None] = []
        commit = store.env.submit(lambda txn: threads.append(threading.get_ident()), append_of=key)
        asyncio.get_running_loop().call_soon(turns.append, None)
        await commit
        assert turns  # the loop got a turn after the synced commit, wherever it ran
        return "caller" if threads == [threading.get_ident()] else "writer"

    try:
        assert await committed_on(one) == "writer"  # the first append: after no append
        assert await committed_on(one) == "caller"
        assert await committed_on(one) == "caller"
        assert await committed_on(two) == "writer"  # two runs in turn
        assert await committed_on(one) == "writer"
        assert await committed_on(None) == "writer"  # not an append
        assert await committed_on(one) == "writer"  # after another write
        assert await committed_on(one) == "caller"
        with store.env._writing:  # as if the writer thread were committing a batch
            queued = store.env.submit(lambda txn: None, append_of=one)
        await queued
        assert await committed_on(one) == "caller"
    finally:
        await store.close()


async def test_fsync_commits_inline_a_lone_runs_writes_after_its_creation(
    tmp_path: Path,
) -> None:
    """At fsync a run alone is created through the writer thread; its first append and
    its finish (small ops of the same run, with no other write between) are committed on
    the caller's thread. A write of another run between sends them to the writer."""
    store = LmdbStore(str(tmp_path / "store"), durability="fsync")
    await store.open()
    one, two = run_key(new_run_id()), run_key(new_run_id())

    async def committed_on(**how: Any) -> str:
        threads: list[int] = []
        await store.env.submit(lambda txn: threads.append(threading.get_ident()), **how)
        return "caller" if threads == [threading.get_ident()] else "writer"

    try:
        assert await committed_on(small=True, run=one) == "writer"  # its creation
        assert await committed_on(append_of=one) == "caller"  # its first step
        assert await committed_on(small=True, run=one) == "caller"  # its finish
        assert await committed_on(small=True, run=two) == "writer"  # another run's creation
        assert await committed_on(small=True, run=one) == "writer"  # not after its own write
        assert await committed_on(small=True) == "writer"  # a small op of no run
        assert await committed_on(small=True, run=None) == "writer"
    finally:
        await store.close()


async def test_a_lone_runs_inline_commit_takes_the_logs_applies_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``commit="log"`` a lone run's step goes through the log and its finish (a
    small op of the same run next) commits on the caller's thread, the log's applies
    before it in the same commit, which stamps the applied mark past them."""
    monkeypatch.setattr(lmdb_env, "APPLY_INTERVAL", 600.0)  # applies wait for company
    store = LmdbStore(str(tmp_path / "store"), durability="fsync", commit="log")
    await store.open()
    env = store.env
    try:
        run = RunInfo(run_id=new_run_id(), workflow="w", version="1", args=[], kwargs={})
        fence = await store.create_run(run, "me", 60.0)
        key = run_key(run.run_id)
        record = _core.encode_record(_core.KIND_STEP, 0, 1, "s", None, None, b"1", True, None, None)
        await store.append(run.run_id, fence, 0, record)

        def step_in_lmdb(txn: Any) -> bool:
            status, _ = txn.append_status(env.dbs.journal, env.dbs.leases, key, fence, 0)
            return bool(status == lmdb_env._lmdb.RECORDED_ALREADY)

        assert not env.read(step_in_lmdb)  # acknowledged, in the log only
        acknowledged = time.monotonic()
        seen: list[tuple[int, bool]] = []
        await env.submit(
            lambda txn: seen.append((threading.get_ident(), step_in_lmdb(txn))),
            small=True,
            run=key,
        )
        assert seen == [(threading.get_ident(), True)]
        marks = env.read(lambda txn: [bytes(v) for _, v in txn.cursor(db=env.dbs.commit_logs)])
        assert [lmdb_log._MARK.unpack_from(row)[1] >= acknowledged for row in marks] == [True]
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
    monkeypatch.setattr(lmdb_env, "ALONE_RECHECK", 0.0)  # look at every submit
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
            key = run_key(new_run_id())
            queued = store.env.submit(lambda txn: None, append_of=key)
            assert not queued.done()
            await queued
            other.stdin.close()  # it closes the store and exits
            assert await other.wait() == 0
            committed: list[None] = []
            inline = store.env.submit(lambda txn: committed.append(None), append_of=key)
            assert committed  # before submit returned
            await inline
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


@pytest.mark.parametrize("durability", ["process", "fsync"])
async def test_inline_steps_still_let_other_tasks_run(tmp_path: Path, durability: str) -> None:
    """Awaiting a done future does not yield to the loop; the store hands the loop a turn
    every INLINE_YIELD_EVERY inline commits (after every one at fsync), so a busy run
    cannot starve its neighbours (heartbeats, other runs, the application)."""
    steps = 20 * INLINE_YIELD_EVERY if durability == "process" else 64
    turns = 0
    done = asyncio.Event()

    async def neighbour() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    async with Engine(str(tmp_path / "store"), durability=durability) as engine:
        handle = await engine.start(many_ticks, steps)
        other = asyncio.ensure_future(neighbour())
        assert await handle.result() == steps
        done.set()
        await other
        assert len(await engine.journal(handle.run_id)) == steps
    assert turns >= (steps // INLINE_YIELD_EVERY if durability == "process" else steps)


# ---------------------------------------------------------------- the journal's chunks


def _record(seq: int, size: int) -> bytes:
    output = b'"%b"' % (b"x" * size)
    return _core.encode_record(_core.KIND_STEP, seq, 1, "s", None, None, output, True, None, None)


def _nothing(txn: Any) -> None:
    """A commit of nothing."""


async def _values(store: LmdbStore, run_id: str) -> list[tuple[bytes, bytes]]:
    """The run's journal entries in LMDB, once it holds every append acknowledged so far
    (with ``commit="log"``: a commit through the writer takes the applies queued before
    it)."""
    await store.env.submit(_nothing)
    prefix = run_key(run_id)

    def scan(txn: Any) -> list[tuple[bytes, bytes]]:
        cursor = txn.cursor(db=store.env.journal)
        cursor.set_range(prefix)
        return [(bytes(k), bytes(v)) for k, v in cursor if bytes(k).startswith(prefix)]

    found: list[tuple[bytes, bytes]] = store.env.read(scan)
    return found


async def _stored_run(store: LmdbStore) -> RunInfo:
    run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
    await store.create_run(run, "me:1:a", 60.0)
    return run


@pytest.mark.parametrize("durability", ["process", "fsync"])
async def test_records_of_any_size_land_once_in_chunks_of_their_group(
    tmp_path: Path, durability: str
) -> None:
    store = LmdbStore(str(tmp_path / "store"), durability=durability)
    await store.open()
    try:
        run = await _stored_run(store)
        # small, middling and larger than a chunk, in three groups, appended out of order
        sizes = {seq: (10, 200, 700, CHUNK_BYTES + 10)[seq % 4] for seq in range(150)}
        records = {seq: _record(seq, size) for seq, size in sizes.items()}
        order = list(records)
        random.Random(7).shuffle(order)
        await asyncio.gather(*(store.append(run.run_id, run.fence, s, records[s]) for s in order))

        held = {}
        for key, value in await _values(store, run.run_id):
            assert len(key) == _core.RUN_KEY_SIZE + 5
            group, tail = int.from_bytes(key[16:20], "big"), key[20]
            for record in _core.decode_records(value):
                assert record.seq >> CHUNK_SHIFT == group  # each in its own group's keys
                assert record.seq not in held
                held[record.seq] = record.raw
            if tail < 1 << CHUNK_SHIFT:  # a record too large for a chunk stands alone
                alone = _core.decode_record(value)
                assert len(value) > CHUNK_BYTES and alone.seq % (1 << CHUNK_SHIFT) == tail
            else:
                assert len(value) <= CHUNK_BYTES
        assert held == records
        index = _core.ReplayIndex.from_records(await store.journal(run.run_id))
        assert len(index) == 150 and index.max_seq == 149
    finally:
        await store.close()


async def test_a_second_record_for_a_step_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    store = LmdbStore(str(tmp_path / "store"), durability="process")
    await store.open()
    try:
        run = await _stored_run(store)
        for seq, size in ((0, 10), (1, CHUNK_BYTES + 10), (2, 10)):
            await store.append(run.run_id, run.fence, seq, _record(seq, size))
        before = await _values(store, run.run_id)
        for seq, size in ((0, 20), (1, 20), (2, CHUNK_BYTES + 20)):
            with pytest.raises(StoreError, match=f"step {seq} has a record already"):
                await store.append(run.run_id, run.fence, seq, _record(seq, size))

        await store.send_event(run.run_id, "go", b"1")
        with pytest.raises(StoreError, match="has a record already"):
            await store.take_event(run.run_id, run.fence, "go", 0, lambda p: _record(0, 5))
        with pytest.raises(StoreError, match="has a record already"):
            await store.state_write(
                run.run_id, run.fence, 2, "user:u", "k", b"1", None, lambda v: _record(2, 5)
            )
        assert await _values(store, run.run_id) == before  # the journal as it was
        assert await store.state_items("user:u") == {}  # no state written
        taken = await store.take_event(run.run_id, run.fence, "go", 3, lambda p: _record(3, 5))
        assert taken == b"1"  # the event was kept for a good take
    finally:
        await store.close()


async def test_an_append_that_is_not_one_fails_alone(tmp_path: Path) -> None:
    """Appends queued together go to the writer in one compiled call: a malformed one
    (an empty record, a step number out of range) fails with a StoreError, the others
    land."""
    store = LmdbStore(str(tmp_path / "store"), durability="process")
    await store.open()
    try:
        run = await _stored_run(store)
        results = await asyncio.gather(
            store.append(run.run_id, run.fence, 0, _record(0, 10)),
            store.append(run.run_id, run.fence, 1, b""),
            store.append(run.run_id, run.fence, 1 << 32, _record(1, 10)),
            store.append(run.run_id, run.fence, 1, _record(1, 10)),
            return_exceptions=True,
        )
        assert results[0] is None and results[3] is None
        for failed in results[1:3]:
            assert isinstance(failed, StoreError) and "is not an append" in str(failed)
        journal = [
            r.seq
            for _, chunk in await _values(store, run.run_id)
            for r in _core.decode_records(chunk)
        ]
        assert journal == [0, 1]
    finally:
        await store.close()


_GROW = """
import asyncio, sys
from surestep import _core
from surestep.store.base import RunInfo
from surestep.store.lmdb import LmdbStore

async def main():
    store = LmdbStore(sys.argv[1], map_size=int(sys.argv[2]), max_map_size=1 << 30)
    await store.open()
    run = RunInfo(run_id=sys.argv[3], workflow="wf", version="v1", args=[], kwargs={})
    fence = await store.create_run(run, "other:1:a", 60.0)
    output = b'"%b"' % (b"x" * 4000)
    for seq in range(200):  # 800 KB of records alone: the map must grow
        record = _core.encode_record(1, seq, 1, "s", None, None, output, True, None, None)
        await store.append(run.run_id, fence, seq, record)
    print(store.env.env.info()["map_size"], flush=True)
    await store.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("durability", ["process", "fsync"])
async def test_a_map_grown_by_another_process_is_adopted_by_reads_and_writes(
    tmp_path: Path, durability: str
) -> None:
    path, small = str(tmp_path / "store"), 256 * 1024
    store = LmdbStore(path, durability=durability, map_size=small)
    await store.open()
    try:
        mine = await _stored_run(store)
        await store.append(mine.run_id, mine.fence, 0, _record(0, 10))
        theirs = new_run_id()
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _GROW, path, str(small), theirs, stdout=PIPE
        )
        out, _ = await other.communicate()
        assert other.returncode == 0 and int(out) > small  # it grew the map
        records = [r for raw in await store.journal(theirs) for r in _core.decode_records(raw)]
        assert len(records) == 200  # a read after the growth: the new size adopted
        for seq in range(1, 40):  # writes after it, past the old size as well
            await store.append(mine.run_id, mine.fence, seq, _record(seq, 4000))
        index = _core.ReplayIndex.from_records(await store.journal(mine.run_id))
        assert len(index) == 40
    finally:
        await store.close()


WRITEMAP_ONLY = pytest.mark.skipif(
    not lmdb_env.WRITEMAP, reason="a writable map is used on Linux only"
)


@WRITEMAP_ONLY
async def test_the_data_file_is_allocated_as_the_map_grows(tmp_path: Path) -> None:
    """With a writable map the data file has no holes up to the map's size."""
    path, small = str(tmp_path / "store"), 256 * 1024
    store = LmdbStore(path, durability="process", map_size=small)
    await store.open()
    try:
        assert store.env.writemap
        run = await _stored_run(store)
        for seq in range(100):  # 400 KB of records: the map grows
            await store.append(run.run_id, run.fence, seq, _record(seq, 4000))
        size = store.env.env.info()["map_size"]
        stat = os.stat(os.path.join(path, "data.mdb"))
        assert size > small and stat.st_size == size and stat.st_blocks * 512 >= size
    finally:
        await store.close()


_WRITE_ON = """
import asyncio, sys
from surestep import _core
from surestep.store.base import RunInfo
from surestep.store.lmdb import LmdbStore

async def main():
    store = LmdbStore(sys.argv[1], durability="process")
    await store.open()
    run = RunInfo(run_id=sys.argv[2], workflow="wf", version="v1", args=[], kwargs={})
    fence = await store.create_run(run, "writer:1:a", 60.0)
    output = b'"%b"' % (b"x" * 4000)
    for seq in range(80):
        if seq == 40:  # the other process opens the store with a smaller map meanwhile
            print(store.env.env.info()["map_size"], flush=True)
            sys.stdin.readline()
        record = _core.encode_record(1, seq, 1, "s", None, None, output, True, None, None)
        await store.append(run.run_id, fence, seq, record)
    print(store.env.env.info()["map_size"], len(await store.journal(run.run_id)), flush=True)
    await store.close()

asyncio.run(main())
"""


@WRITEMAP_ONLY
async def test_a_process_mapping_less_never_cuts_the_data_file_short(tmp_path: Path) -> None:
    """LMDB sets the data file's length to the map's size when it maps it: a process
    that opens the store asking for a smaller map than another maps must not cut the
    file under the other, whose next write past the cut would be a SIGBUS."""
    path = str(tmp_path / "store")
    data = os.path.join(path, "data.mdb")
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _WRITE_ON, path, new_run_id(), stdin=PIPE, stdout=PIPE
    )
    try:
        assert writer.stdin is not None and writer.stdout is not None
        mapped = int(await writer.stdout.readline())  # 160 KB written, of a 1 MiB map
        small = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OPEN_CLOSE, path, str(64 << 10)
        )
        assert await small.wait() == 0
        length = os.stat(data).st_size
        writer.stdin.write(b"go on\n")  # 160 KB more, past the pages used so far
        out, _ = await writer.communicate()
    finally:
        if writer.returncode is None:
            writer.kill()
            await writer.wait()
    assert writer.returncode == 0, f"the writer died: {writer.returncode}"
    after, records = map(int, out.split())
    assert after == mapped  # the writes stayed inside the map the other process saw
    assert records == 80 and length >= mapped and os.stat(data).st_size >= mapped


_OPEN_CLOSE = """
import asyncio, sys
from surestep.store.lmdb import LmdbStore

async def main():
    store = LmdbStore(sys.argv[1], durability="process", map_size=int(sys.argv[2]))
    await store.open()
    await store.close()

asyncio.run(main())
"""


def _blocked_on(path: str, pid: int) -> bool:
    """Whether process ``pid`` waits for a flock on ``path`` (Linux's /proc/locks)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        return any("->" in line and f" {pid} " in line and f":{inode} " in line for line in locks)


@WRITEMAP_ONLY
async def test_a_process_sizes_the_map_only_holding_the_stores_map_lock(
    tmp_path: Path,
) -> None:
    """Opening the store (and so choosing a map's size) waits for ``map.lock``: while
    another process holds it, an open waits, and goes on once it is released."""
    path = str(tmp_path / "store")
    store = LmdbStore(path, durability="process")
    await store.open()
    await store.close()
    lock = os.path.join(path, "map.lock")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        opener = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OPEN_CLOSE, path, str(64 << 10)
        )
        for _ in range(3000):  # until it waits for the lock (or 30 s, then fail)
            if _blocked_on(lock, opener.pid):
                break
            assert opener.returncode is None, "the open did not wait for map.lock"
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the open never waited for map.lock")
    finally:
        os.close(fd)  # and the lock with it
    assert await opener.wait() == 0


def test_a_child_forked_holding_the_map_lock_does_not_keep_it(tmp_path: Path) -> None:
    """A process forked while a thread of its parent holds ``map.lock`` (a pool's worker,
    say) does not keep the store's processes waiting for it to exit."""
    path = str(tmp_path)
    resume, child_waits = os.pipe()
    forked, child_ready = os.pipe()
    with lmdb_env._map_lock(path):
        with warnings.catch_warnings():  # forking a process with threads: only to exit
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child, past the fork's handlers
            os.write(child_ready, b"x")
            os.read(resume, 1)
            os._exit(0)
    os.read(forked, 1)
    try:
        fd = os.open(os.path.join(path, "map.lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if kept
        finally:
            os.close(fd)
    finally:
        os.write(child_waits, b"x")
        os.waitpid(pid, 0)
        for end in (resume, child_waits, forked, child_ready):
            os.close(end)


@WRITEMAP_ONLY
async def test_a_map_another_process_grew_is_allocated_before_it_is_mapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process adopting the size another gave the map allocates the data file to it
    first (a process whose open failed may have lengthened the file and allocated
    nothing): when the disk cannot supply it, the read or write fails with
    StoreFullError and writes nothing, and both go on once there is room."""
    path, small = str(tmp_path / "store"), 256 * 1024
    store = LmdbStore(path, durability="process", map_size=small)
    await store.open()
    try:
        mine, theirs = await _stored_run(store), new_run_id()
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _GROW, path, str(small), theirs, stdout=PIPE
        )
        out, _ = await other.communicate()
        assert other.returncode == 0 and int(out) > small
        allocate = lmdb_env._allocate_data

        def full(path: str, size: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(lmdb_env, "_allocate_data", full)
        with pytest.raises(StoreFullError, match="cannot map the size another process gave"):
            await store.append(mine.run_id, mine.fence, 0, _record(0, 10))
        with pytest.raises(StoreFullError, match="cannot map the size another process gave"):
            await store.journal(theirs)
        monkeypatch.setattr(lmdb_env, "_allocate_data", allocate)
        await store.append(mine.run_id, mine.fence, 0, _record(0, 10))
        assert len(await store.journal(mine.run_id)) == 1
        assert len(await store.journal(theirs)) > 0
        assert store.env.env.info()["map_size"] == int(out)
    finally:
        await store.close()


def _cannot_allocate(fd: int, size: int) -> None:
    raise OSError(errno.EOPNOTSUPP, "Operation not supported")


@pytest.mark.parametrize(
    "patched",
    [("allocate", _cannot_allocate), ("filesystem_type", lambda fd: 0x9123683E)],
    ids=["cannot allocate", "copies on write"],
)
async def test_where_a_write_through_the_map_is_unsafe_pages_go_with_system_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: tuple[str, Any]
) -> None:
    """A filesystem that cannot allocate, or one that writes a changed block somewhere
    new (btrfs, ZFS, bcachefs: blocks allocated ahead do not make room for the next
    write), gets no writable map: a full disk is then ENOSPC from pwrite, not a SIGBUS."""
    assert lmdb_env.COPY_ON_WRITE[0x9123683E] == "btrfs"
    monkeypatch.setattr(lmdb_env._lmdb, *patched)
    store = LmdbStore(str(tmp_path / "store"), durability="process", map_size=64 << 10)
    await store.open()
    try:
        assert not store.env.writemap
        run = await _stored_run(store)
        for seq in range(60):  # past the first map: it grows without allocating
            await store.append(run.run_id, run.fence, seq, _record(seq, 4000))
        assert len(_core.ReplayIndex.from_records(await store.journal(run.run_id))) == 60
    finally:
        await store.close()


@WRITEMAP_ONLY
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
async def test_no_room_for_the_map_is_a_typed_error_at_open_and_when_it_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """The data file's blocks are allocated before the map may write there: when the
    disk (or the user's quota) cannot supply them the open, or the write that needed a
    larger map, fails with StoreFullError and leaves the store as it was."""
    path = str(tmp_path / "store")
    allocate = lmdb_env._allocate_data
    room = {"bytes": 0}

    def limited(path: str, size: int) -> None:
        if size > room["bytes"]:
            raise OSError(code, os.strerror(code))
        allocate(path, size)

    monkeypatch.setattr(lmdb_env, "_allocate_data", limited)
    with pytest.raises(StoreFullError, match=r"cannot open the store .* the disk is full"):
        await LmdbStore(path, durability="process", map_size=64 << 10).open()
    room["bytes"] = 64 << 10
    store = LmdbStore(path, durability="process", map_size=64 << 10)
    await store.open()
    try:
        run = await _stored_run(store)
        seq = 0
        with pytest.raises(StoreFullError, match=r"cannot grow .* nothing was committed"):
            while True:
                await store.append(run.run_id, run.fence, seq, _record(seq, 4000))
                seq += 1
        assert seq > 0
        assert len(_core.ReplayIndex.from_records(await store.journal(run.run_id))) == seq
        room["bytes"] = 1 << 30  # room again: the same step is written, and the run goes on
        for more in range(seq, seq + 20):
            await store.append(run.run_id, run.fence, more, _record(more, 4000))
        assert len(_core.ReplayIndex.from_records(await store.journal(run.run_id))) == seq + 20
    finally:
        await store.close()


async def test_a_map_grown_while_the_store_opens_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between LMDB's open and the first transaction another process may grow the map:
    the open adopts the new size instead of failing (or leaving an environment behind)."""
    opened = lmdb_env._lmdb.open
    adopted: list[int] = []

    class GrownMeanwhile:
        def __init__(self, env: Any) -> None:
            self._env, self._raised = env, False

        def open_db(self, name: bytes) -> Any:
            if not self._raised:
                self._raised = True
                raise lmdb_env._lmdb.MapResizedError("grown by another process")
            return self._env.open_db(name)

        def set_mapsize(self, size: int) -> None:
            adopted.append(size)
            self._env.set_mapsize(size)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._env, name)

    monkeypatch.setattr(lmdb_env._lmdb, "open", lambda *a, **k: GrownMeanwhile(opened(*a, **k)))
    store = LmdbStore(str(tmp_path / "store"), durability="process")
    await store.open()
    try:
        run = await _stored_run(store)
        await store.append(run.run_id, run.fence, 0, _record(0, 10))
        assert len(await store.journal(run.run_id)) == 1
    finally:
        await store.close()
    # The size the other process set: with a writable map, the data file's length.
    assert adopted == [lmdb_env.DEFAULT_MAP_SIZE if lmdb_env.WRITEMAP else 0]


async def test_the_deployments_cache_forgets_what_an_aborted_transaction_saw(
    tmp_path: Path,
) -> None:
    """A transaction that saw a deployment of its own and aborted leaves no trace
    in ``deployed_version``'s cache, even once another deployment brings the count
    back to what it saw."""
    store = LmdbStore(str(tmp_path / "store"))
    await store.open()
    try:
        env = store.env
        await store.record_deployment("wf", "v1", "d1")
        with env.env.begin(write=True) as txn:
            txn.put(b"\xff" * 8, b'{"workflow": "wf", "version": "aborted"}', db=env.dbs.deploys)
            assert env.dbs.deployed_version(txn, "wf") == "aborted"
            txn.abort()
        await store.record_deployment("wf", "v2", "d2")  # two deployments again
        with env.env.begin(write=True) as txn:
            assert env.dbs.deployed_version(txn, "wf") == "v2"
    finally:
        await store.close()


async def test_counts_in_a_thread_are_shared_and_closing_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stats`` counts in a worker thread: callers asking meanwhile share that count, and
    closing the store waits for it before the environment goes (held by a gate)."""
    from surestep.store import lmdb as lmdb_store

    in_count, go_on = threading.Event(), threading.Event()
    counts: list[threading.Thread] = []
    real_data_size = lmdb_store.data_size

    def held_data_size(path: str) -> int:
        counts.append(threading.current_thread())
        in_count.set()
        go_on.wait(30)
        return real_data_size(path)

    store = LmdbStore(str(tmp_path / "store"))
    await store.open()
    try:
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
        await store.create_run(run, None, 60.0)
        monkeypatch.setattr(lmdb_store, "data_size", held_data_size)
        asking = [asyncio.ensure_future(store.stats()) for _ in range(3)]
        assert await asyncio.to_thread(in_count.wait, 30)
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0.05)  # room for a close that would not wait
        assert not closing.done() and not any(a.done() for a in asking)
        go_on.set()
        answers = await asyncio.gather(*asking)
        await closing
        assert len(counts) == 1 and counts[0] is not threading.main_thread()
        assert all(answer["runs"]["pending"] == 1 for answer in answers)
        answers[0]["runs"]["pending"] = 7  # each caller has its own copy
        assert answers[1]["runs"]["pending"] == 1
    finally:
        go_on.set()
        await store.close()
