"""Faults of the embedded store: full map, full disk, read-only disk, clock jumps; and big
values, on every backend (``store_url``). The others are LMDB's own (``lmdb_path`` or a
store on a filesystem the test mounts): PostgreSQL's disk and clock are the server's.

Real filesystems, not mocks. As root the tests mount their own: a small ``tmpfs`` (its
``size=`` makes a disk that fills up, ``remount,ro`` a read-only one) and an ext4 image on
a loop device, where ``remount,abort`` does what the kernel does on a disk error with
``errors=remount-ro``: the filesystem turns read-only under files already open for writing
(a plain ``remount,ro`` is refused then: "mount point is busy"). Without root, or where the
sandbox refuses ``mount``, each such test is skipped with the reason ``mount`` gave. CI runs
as root and runs them.

A scenario that may crash the process (LMDB maps its lock file: a page fault on a full disk
is a SIGBUS) runs in a child process: ``python tests/test_faults.py SCENARIO ...`` prints
one JSON line, and the parent checks it and how the child ended.

Clock jumps are injected into the store module (``surestep.store.lmdb.time``), never into
the machine's clock.

"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.calls import calls
from surestep import (
    Engine,
    StoreError,
    StoreFullError,
    WorkflowContext,
    WorkflowFailedError,
    function,
    workflow,
)
from surestep.store import lmdb

CHUNK = 20_000


# ---------------------------------------------------------------- mounts


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _mount_or_skip(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a test filesystem needs root (CI runs as root)")
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this system")
    done = _run("mount", *args)
    if done.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} is not permitted here: {done.stderr.strip()}")


def _remount(where: Path, options: str) -> None:
    done = _run("mount", "-o", f"remount,{options}", str(where))
    assert done.returncode == 0, done.stderr


def _umount(where: Path) -> None:
    done = _run("umount", str(where))
    if done.returncode != 0:  # something still holds it: detach lazily, never leave it
        _run("umount", "-l", str(where))


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A ``tmpfs`` of ``size`` bytes (``mount -o size=``) at ``where``."""
    where.mkdir()
    _mount_or_skip("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where))
    try:
        yield where
    finally:
        _umount(where)


@contextlib.contextmanager
def ext4(where: Path, image: Path) -> Iterator[Path]:
    """An ext4 filesystem in ``image`` on a loop device, ``errors=remount-ro``."""
    if shutil.which("mkfs.ext4") is None or shutil.which("e2fsck") is None:
        pytest.skip("mkfs.ext4 and e2fsck are not installed (Debian: e2fsprogs)")
    if not image.exists():
        with image.open("wb") as f:
            f.truncate(16 << 20)
        made = _run("mkfs.ext4", "-q", "-F", str(image))
        assert made.returncode == 0, made.stderr
    where.mkdir(exist_ok=True)
    _mount_or_skip("-o", "loop,errors=remount-ro", str(image), str(where))
    try:
        yield where
    finally:
        _umount(where)


def _fill(directory: Path) -> None:
    """Take every free byte of the filesystem holding ``directory``."""
    with (directory / "filler").open("wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno in (errno.ENOSPC, errno.EFBIG), exc


# ---------------------------------------------------------------- child processes


# LMDB's own commit, for the scenarios on filesystems smaller than a commit log's
# preallocated segments (what the log does there: test_a_disk_too_small_for_the_log...).
LMDB_COMMIT = {lmdb.COMMIT_ENV: "lmdb"}


def _child(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Run a scenario of this file in a new interpreter: its exit code and JSON report;
    ``env`` is added to its environment."""
    done = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0:
        report["stderr"] = done.stderr[-3000:]
    return done.returncode, report


@workflow
async def chunks(ctx: WorkflowContext, count: int, side_log: str, abort_at: int) -> int:
    """``count`` steps of CHUNK bytes each; step ``abort_at`` turns the disk read-only
    (the first time it runs), or with LIMIT_ADDRESS_SPACE set limits the process's
    address space."""
    total = 0
    for i in range(count):
        total += len(await ctx.step("chunk", _chunk, i, side_log, abort_at))
    return total


def _chunk(i: int, side_log: str, abort_at: int) -> str:
    log_path = Path(side_log)
    first_time = not log_path.exists() or str(i) not in log_path.read_text().split()
    with open(side_log, "a") as log:
        log.write(f"{i}\n")
    if i == abort_at and first_time:
        if os.environ.get("LIMIT_ADDRESS_SPACE"):
            _limit_address_space()
        else:
            mount_point = Path(side_log).parent / "disk"
            subprocess.run(["mount", "-o", "remount,abort", str(mount_point)], check=True)
    return "x" * CHUNK + str(i)


def _limit_address_space() -> None:
    """Leave room for 32 MiB more mappings (a larger map, thread stacks, the heap): the
    doubling map soon cannot be mapped."""
    import resource

    with open("/proc/self/status") as status:
        (vm_kb,) = (int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = (vm_kb << 10) + (32 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


async def _scenario_run(path: str, count: int, side_log: str, abort_at: int) -> dict[str, Any]:
    """Start ``chunks``; report how it ended, what the journal holds, and how close went."""
    report: dict[str, Any] = {}
    options = json.loads(os.environ.get("ENGINE_OPTIONS", "{}"))
    engine = Engine(path, **options)
    try:
        handle = await engine.start(chunks, count, side_log, abort_at)
        report["run_id"] = handle.run_id
        report["writemap"] = engine.store.env.writemap  # type: ignore[attr-defined]
        try:
            report["result"] = await handle.result()
        except Exception as exc:
            report["error"] = {"type": type(exc).__name__, "message": str(exc)}
        report["journal"] = [e.seq for e in await engine.journal(handle.run_id)]
        report["status"] = (await engine.get_run(handle.run_id)).status
    except Exception as exc:
        report["open_error"] = {"type": type(exc).__name__, "message": str(exc)}
    try:
        await engine.close()
    except Exception as exc:
        report["close_error"] = {"type": type(exc).__name__, "message": str(exc)}
    return report


async def _scenario_recover(path: str) -> dict[str, Any]:
    async with Engine(path) as engine:
        handles = await engine.recover()
        return {"results": {h.run_id: await h.result() for h in handles}}


def _child_main(argv: list[str]) -> None:
    scenario, path = argv[0], argv[1]
    if os.environ.get("AS_COPY_ON_WRITE"):  # the store takes its filesystem for btrfs
        import surestep.store.lmdb_env as lmdb_env

        lmdb_env._lmdb.filesystem_type = lambda fd: 0x9123683E  # type: ignore[assignment]
    if argv[-1] == "no-free-check":
        import surestep.store.lmdb_env as lmdb_env

        lmdb_env.MIN_FREE_BYTES = 0
        argv = argv[:-1]
    if scenario == "run":
        count, side_log, abort_at = int(argv[2]), argv[3], int(argv[4])
        report = asyncio.run(_scenario_run(path, count, side_log, abort_at))
    else:
        report = asyncio.run(_scenario_recover(path))
    print(json.dumps(report), flush=True)


def _executions(side_log: Path) -> Counter[int]:
    return Counter(int(line) for line in side_log.read_text().split())


# ---------------------------------------------------------------- map full


async def test_full_map_grows_to_the_limit_then_resumes_with_a_larger_one(lmdb_path: str) -> None:
    """``test_failures.py`` checks the typed error and the committed journal; this checks the
    map really grew to ``max_map_size`` first, and that the run resumes from its journal
    once the store is reopened with more room, re-running only the step that failed."""

    @function
    async def fill(i: int) -> str:
        calls[i] += 1
        return "x" * CHUNK + str(i)

    @workflow
    async def fills(ctx: WorkflowContext) -> int:
        return sum([len(await ctx.step(fill, i)) for i in range(80)])

    small, limit = 256 * 1024, 1024 * 1024
    async with Engine(lmdb_path, map_size=small, max_map_size=limit) as engine:
        handle = await engine.start(fills)
        with pytest.raises(StoreFullError, match=f"max_map_size={limit}"):
            await handle.result()
        assert engine.store.env.env.info()["map_size"] == limit  # type: ignore[attr-defined]
        committed = [e.seq for e in await engine.journal(handle.run_id)]
        # With the commit log the steps are acknowledged by its flush, and LMDB's applies
        # meet the full map later: every step may be in the log by then (the finish fails).
        most = 80 if engine.store.commit == "log" else 79  # type: ignore[attr-defined]
    assert committed == list(range(len(committed))) and 10 < len(committed) <= most
    async with Engine(lmdb_path, map_size=small, max_map_size=16 * limit) as engine:
        # The first engine's lease names this (live) process; a restarted process would
        # find its owner dead. Give it back as that would.
        run = await engine.get_run(handle.run_id)
        await engine.store.release(run.run_id, run.fence)
        (resumed,) = await engine.recover()
        assert await resumed.result() == sum(CHUNK + len(str(i)) for i in range(80))
    failed_step = len(committed)
    assert all(calls[i] == 1 for i in range(80) if i != failed_step)
    if failed_step < 80:  # (else every step was acknowledged and the finish failed)
        assert calls[failed_step] == 2  # its result was never acknowledged: it runs again


def test_a_map_that_cannot_grow_is_a_typed_error_and_loses_nothing(tmp_path: Path) -> None:
    """The process runs out of address space (RLIMIT_AS, set by step 5) while the map
    doubles: LMDB has unmapped the old map when mapping the larger one fails. The step
    fails with StoreFullError rather than the process crashing on a store without a map;
    reopened without the limit, the run resumes from every committed step: only the step
    that failed runs again."""
    store, side_log = str(tmp_path / "store"), tmp_path / "side.log"
    options = {"map_size": 1 << 20, "max_map_size": 1 << 40, "durability": "process"}
    code, report = _child(
        "run",
        store,
        "4000",
        str(side_log),
        "5",
        env={"LIMIT_ADDRESS_SPACE": "1", "ENGINE_OPTIONS": json.dumps(options)},
    )
    assert code == 0, report  # no crash
    assert report["error"]["type"] == "StoreFullError", report
    assert "cannot grow" in report["error"]["message"]
    # LMDB left no map to read: this process's store refuses the rest, typed.
    assert report["open_error"]["type"] == "StoreError", report
    assert "closed" in report["open_error"]["message"]
    code, recovered = _child("recover", store)
    assert code == 0, recovered
    assert recovered["results"] == {report["run_id"]: sum(CHUNK + len(str(i)) for i in range(4000))}
    runs = _executions(side_log)
    (again,) = [i for i, n in runs.items() if n != 1]  # the step whose record was lost
    assert runs[again] == 2 and again > 40 and set(runs) == set(range(4000))


# ---------------------------------------------------------------- disk full


@pytest.mark.parametrize("pages", ["through the map", "with pwrite"])
def test_disk_full_mid_run_is_a_store_error_and_loses_nothing(tmp_path: Path, pages: str) -> None:
    """A 1 MiB tmpfs fills up under a run: the step that cannot be journaled fails with a
    StoreError, the run stays recoverable, every committed step is kept; once there is room
    again the run resumes and no committed step runs twice. (The map starts at 64 KiB:
    where pages are written through the map, the data file is allocated as the map grows,
    and the default first size would not fit this disk at all.) Pages go with pwrite where
    the filesystem is one that copies on write (here: taken for btrfs)."""
    side_log = tmp_path / "side.log"
    with tmpfs(tmp_path / "disk", "1m") as disk:
        store = str(disk / "store")
        options = {"ENGINE_OPTIONS": json.dumps({"map_size": 64 << 10}), **LMDB_COMMIT}
        if pages == "with pwrite":
            options["AS_COPY_ON_WRITE"] = "1"
        code, report = _child("run", store, "200", str(side_log), "-1", env=options)
        assert code == 0, report  # no crash
        assert report["writemap"] == (pages == "through the map"), report
        assert report["error"]["type"] == "StoreFullError", report
        assert "disk is full" in report["error"]["message"]
        assert "nothing was committed" in report["error"]["message"]
        assert report["status"] == "running"  # not finished: recoverable
        committed = report["journal"]
        assert committed == list(range(len(committed))) and 10 < len(committed) < 200
        _remount(disk, "size=16m")
        code, recovered = _child("recover", store, env=LMDB_COMMIT)
        assert code == 0, recovered
    assert recovered["results"] == {report["run_id"]: sum(CHUNK + len(str(i)) for i in range(200))}
    runs = _executions(side_log)
    assert all(runs[i] == 1 for i in committed)
    assert runs[len(committed)] == 2 and set(runs) == set(range(200))


def test_disk_full_at_open_is_a_typed_error(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        _fill(disk)
        code, report = _child("run", str(disk / "store"), "1", str(tmp_path / "side.log"), "-1")
    # LMDB writes its lock file through mmap: opened on a full disk, that was a SIGBUS.
    assert code != -signal.SIGBUS, "killed by SIGBUS"
    assert code == 0, report
    assert report["open_error"]["type"] == "StoreFullError", report
    assert "disk is full" in report["open_error"]["message"]


def test_disk_full_at_open_without_the_free_space_check_is_still_typed(tmp_path: Path) -> None:
    """The free-space check can race with another writer filling the disk; the lock file's
    blocks are then reserved before LMDB maps it, so the open still fails with ENOSPC, not
    a SIGBUS. The child turns the check off to leave only the reservation."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        _fill(disk)
        code, report = _child(
            "run", str(disk / "store"), "1", str(tmp_path / "side.log"), "-1", "no-free-check"
        )
    assert code != -signal.SIGBUS, "killed by SIGBUS"
    assert code == 0, report
    assert report["open_error"]["type"] == "StoreFullError", report
    assert "No space left" in report["open_error"]["message"]


async def test_a_disk_too_small_for_the_log_is_a_typed_error_that_says_how_to_go_back(
    tmp_path: Path,
) -> None:
    """A commit log preallocates its segments: on a disk without room for them, opening
    in that mode fails with StoreFullError naming the way back, and leaves nothing."""

    @workflow
    async def one(ctx: WorkflowContext) -> int:
        return 1

    with tmpfs(tmp_path / "disk", "4m") as disk:
        store = str(disk / "store")
        with pytest.raises(StoreFullError, match="commit='lmdb'") as refused:
            await Engine(store, commit="log").open()
        assert "bytes free" in str(refused.value)
        assert "commit-log" not in os.listdir(store)
        async with Engine(store, commit="lmdb") as engine:
            assert await engine.run(one) == 1


# ---------------------------------------------------------------- read-only


async def test_read_only_filesystem_at_open_is_a_typed_error(tmp_path: Path) -> None:
    @workflow
    async def one(ctx: WorkflowContext) -> int:
        return 1

    with tmpfs(tmp_path / "disk", "4m") as disk:
        store = str(disk / "store")
        async with Engine(store, commit="lmdb") as engine:
            handle = await engine.start(one)
            assert await handle.result() == 1
        _remount(disk, "ro")
        for path in (store, str(disk / "new-store")):  # an existing store, and a new one
            with pytest.raises(StoreError, match="cannot open the store") as refused:
                await Engine(path).open()
            assert path in str(refused.value) and "Read-only file system" in str(refused.value)
        _remount(disk, "rw")
        async with Engine(store, commit="lmdb") as engine:  # untouched
            assert (await engine.get_run(handle.run_id)).result == 1


def test_disk_turning_read_only_mid_run_keeps_the_journal(tmp_path: Path) -> None:
    """ext4 turns read-only under the running engine (``remount,abort``) inside step 5: that
    step's record cannot be written (StoreError, the run stays recoverable), steps 0-4 stay
    readable; after the filesystem is repaired the run resumes and only step 5 runs again."""
    side_log, image = tmp_path / "side.log", tmp_path / "ext4.img"
    with ext4(tmp_path / "disk", image) as disk:
        store = str(disk / "store")
        code, report = _child("run", store, "12", str(side_log), "5", env=LMDB_COMMIT)
    assert code == 0, report
    assert report["error"]["type"] == "StoreError", report
    assert "Read-only file system" in report["error"]["message"]
    assert report["journal"] == [0, 1, 2, 3, 4] and report["status"] == "running"
    repaired = _run("e2fsck", "-f", "-y", str(image))
    assert repaired.returncode in (0, 1), repaired.stdout  # 1: errors corrected
    with ext4(tmp_path / "disk", image) as disk:
        code, recovered = _child("recover", str(disk / "store"), env=LMDB_COMMIT)
    assert code == 0, recovered
    assert recovered["results"] == {report["run_id"]: sum(CHUNK + len(str(i)) for i in range(12))}
    runs = _executions(side_log)
    assert runs == Counter({**dict.fromkeys(range(12), 1), 5: 2})
    assert "close_error" not in report, report  # closing on a read-only disk is quiet


# ---------------------------------------------------------------- clock jumps
# LMDB only: its leases are timed by this process's clocks. PostgreSQL's leases use the
# server's clock (``now()``), which no client's clock jump moves.


class _Clock:
    """Stands in for the ``time`` module inside the LMDB store's modules."""

    def __init__(self) -> None:
        self.wall_offset = 0.0
        self.mono_offset = 0.0

    def time(self) -> float:
        return time.time() + self.wall_offset

    def monotonic(self) -> float:
        return time.monotonic() + self.mono_offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from surestep.store import lmdb as lmdb_store
    from surestep.store import lmdb_env, lmdb_log

    fake = _Clock()
    monkeypatch.setattr(lmdb_store, "time", fake)
    # The commit log's marks, read by the writer and the log: on the leases' clock.
    monkeypatch.setattr(lmdb_env, "time", fake)
    monkeypatch.setattr(lmdb_log, "time", fake)
    return fake


async def _holding(lmdb_path: str, gate: asyncio.Event) -> tuple[Engine, str]:
    """An engine executing a run, parked inside its first step (a live lease holder)."""

    entered = asyncio.Event()

    @function
    async def parked() -> str:
        calls["parked"] += 1
        entered.set()
        if calls["parked"] == 1:
            await gate.wait()
        return "done"

    @workflow
    async def held(ctx: WorkflowContext) -> str:
        return await ctx.step(parked)

    first = Engine(lmdb_path, lease_seconds=30)
    handle = await first.start(held)
    await entered.wait()
    return first, handle.run_id


@pytest.mark.parametrize("jump", [3600.0, 86_400.0 * 365])
async def test_wall_clock_jumping_forward_does_not_hand_a_live_run_to_another_engine(
    lmdb_path: str, clock: _Clock, jump: float
) -> None:
    """NTP stepping the clock, a VM resumed, someone running ``date -s``: the lease holder
    heartbeats as usual, so its run must stay its own."""
    gate = asyncio.Event()
    first, run_id = await _holding(lmdb_path, gate)
    before = await first.get_run(run_id)
    clock.wall_offset = jump
    second = Engine(lmdb_path, lease_seconds=30)
    try:
        assert await second.recover() == []
        after = await second.get_run(run_id)
        assert (after.owner, after.fence) == (before.owner, before.fence)
        gate.set()
        assert await first.handle(run_id).result() == "done"
        assert calls["parked"] == 1
    finally:
        gate.set()
        await second.close()
        await first.close()


async def test_wall_clock_jumping_back_does_not_stall_recovery(
    lmdb_path: str, clock: _Clock
) -> None:
    """The holder hangs (its lease is not renewed) and the wall clock is set back an hour:
    once a lease's worth of real time has passed, another engine takes the run over."""
    gate = asyncio.Event()
    first, run_id = await _holding(lmdb_path, gate)
    clock.wall_offset = -3600.0
    clock.mono_offset = 31.0  # 31 s pass; nobody renews the 30 s lease
    second = Engine(lmdb_path, lease_seconds=30)
    try:
        (taken,) = await second.recover()
        assert taken.run_id == run_id
        assert await taken.result() == "done"
    finally:
        gate.set()
        await second.close()
        await first.close()
    assert calls["parked"] == 2  # the hung attempt, then the takeover


async def test_lease_from_before_a_reboot_does_not_stall_recovery(
    lmdb_path: str, clock: _Clock
) -> None:
    """The monotonic clock restarts at boot. A lease written by a process of an earlier boot
    (here: a monotonic clock far ahead of today's) whose pid now belongs to someone else
    must not look held for that earlier boot's uptime."""
    gate = asyncio.Event()
    clock.mono_offset = 10 * 86_400.0  # the earlier boot had been up for ten days
    first, run_id = await _holding(lmdb_path, gate)
    clock.mono_offset = 0.0  # rebooted; our pid is alive, as a reused pid would be
    second = Engine(lmdb_path, lease_seconds=30)
    try:
        (taken,) = await second.recover()
        assert taken.run_id == run_id
        assert await taken.result() == "done"
    finally:
        gate.set()
        await second.close()
        await first.close()


# ---------------------------------------------------------------- big values


async def test_large_step_results_are_journaled_and_replayed_intact(store_url: str) -> None:
    """8 MiB results (far past an LMDB page: overflow pages) round-trip through replay."""
    big = "€" * ((8 << 20) // 3)

    @function
    async def produce() -> str:
        calls["produce"] += 1
        return big

    parked = asyncio.Event()

    @function
    async def park() -> None:
        calls["park"] += 1
        parked.set()
        if calls["park"] == 1:
            await asyncio.Event().wait()  # parked until the engine is closed

    @workflow
    async def large(ctx: WorkflowContext) -> int:
        value = await ctx.step(produce)
        await ctx.step(park)
        return len(value) if value == big else -1

    engine = Engine(store_url)
    await engine.start(large)
    await parked.wait()
    await engine.close()
    async with Engine(store_url) as engine:
        (resumed,) = await engine.recover()
        assert await resumed.result() == len(big)
    assert calls["produce"] == 1


async def test_step_result_over_the_payload_limit_is_a_typed_error(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journaled value has a documented size limit (``surestep.context.MAX_PAYLOAD``);
    a step result over it fails the step with a typed error naming the step and the limit,
    and journals nothing for it. Lowered here to keep the test small."""
    from surestep import context

    monkeypatch.setattr(context, "MAX_PAYLOAD", 4096)

    @workflow
    async def too_big(ctx: WorkflowContext) -> None:
        await ctx.step("small", lambda: "x" * 100)
        await ctx.step("huge", lambda: "x" * 5000)

    async with Engine(store_url) as engine:
        handle = await engine.start(too_big)
        with pytest.raises(WorkflowFailedError, match="PayloadTooLargeError") as failed:
            await handle.result()
        assert "step 1 (huge)" in failed.value.message and "4096" in failed.value.message
        assert [e.name for e in await engine.journal(handle.run_id)] == ["small"]


if __name__ == "__main__":
    _child_main(sys.argv[1:])


def test_the_lock_file_is_reserved_at_the_size_lmdb_gives_it(tmp_path: Path) -> None:
    """The reservation must match LMDB's own size: a larger file would change how many
    readers LMDB fits in it for every process that maps it."""
    from surestep.store.lmdb import Databases
    from surestep.store.lmdb_env import LOCK_FILE_BYTES, Env

    env = Env(str(tmp_path / "store"), "process", 1 << 20, 1 << 20, Databases)
    try:
        stat = os.stat(tmp_path / "store" / "lock.mdb")
        assert stat.st_size == LOCK_FILE_BYTES
        if sys.platform.startswith("linux"):
            assert stat.st_blocks * 512 >= LOCK_FILE_BYTES  # allocated, not sparse
        assert env.env.info()["max_readers"] == 1024
    finally:
        env.stop()
