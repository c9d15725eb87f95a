"""The embedded store: one LMDB directory, shared by the processes of one host.

Layout (named databases in one environment):

``journal``  a run's records, under keys that start with its run key:
             + big-endian u32 (seq >> 6) + u8 (255 - i) -> chunk i of a group of 64
             consecutive steps: format-2 records back to back, in the order they were
             appended, up to CHUNK_BYTES in all;
             + big-endian u32 (seq >> 6) + u8 (seq & 63) -> one format-2 record larger
             than CHUNK_BYTES, alone;
             + big-endian u32 seq -> one format-1 record (written by surestep 0.1)
``runs``     run key -> the run's row as JSON (without its lease)
``leases``   run key -> fence u64, lease end f64, written at f64, owner (UTF-8)
``active``   run key -> empty, for every pending or running run (claims read only these)
``timers``   wake time (big-endian ms) + run key -> empty, for every waiting run with a time
``events``   run key + event name + NUL + big-endian counter -> payload (JSON), until taken
``logs``     run key + big-endian step position (u32) + index (u16) -> log line (JSON)
``state``    scope + NUL + key -> version u64 + value (JSON; empty once deleted)
``deploys``  big-endian time (ns) -> deployment (JSON)
``idempotency`` idempotency key (UTF-8) -> run key of the run created with it
``idempotency_of`` run key -> its idempotency key: the key goes with its run
``meta``     b"store" -> what made the store (JSON, written at its first open by a
             release that keeps it: absent, the store was made by surestep 0.2)
``retain``   big-endian policy (u64: milliseconds, or KEEP_FOREVER / KEEP_DEFAULT as
             two's complement) + finish time (ms) + run key -> empty, for every
             finished run whose parent is gone or that has none: a purge reads each
             policy's oldest entries only
``children`` parent key + child key -> empty while the child is unfinished, then its
             policy and finish time (as in ``retain``): a child goes with its parent
``hidden``   run key -> empty: a purged run whose records are still being deleted
``engines``  owner (UTF-8) -> the versions it serves and until when it is live (JSON)
``schedules`` workflow name (UTF-8) -> its schedule (JSON, ``ScheduleInfo``)
``subscriptions`` event name + NUL + workflow name -> the version that subscribed it
``attempts`` run key + big-endian step (u32) + attempt (u16) -> a failed attempt that was
             retried (JSON): kept apart from the journal, which holds one record a step
``commit_logs`` host:pid -> the applied mark of that process's commit log (``lmdb_log``)

The environment under it (opening, the writer thread and its group commit, growing the
map, a full disk, read transactions) is ``lmdb_env``: this module keeps what the store
means. ``LmdbStore(path, readonly=True)`` reads a store this process may not write (the
CLI's reading commands on a store owned by another user): no writer thread, no wake-up
registration, and every write refused with ``StoreError``.

A writable store at ``durability="fsync"`` acknowledges a journal append of a run
stepping alone after one flush of this process's commit log and applies it to LMDB
afterwards, in the next LMDB commit (``commit="log"``, the default there: ``lmdb_log``,
and CONTRIBUTING.md "The commit log"); ``commit="lmdb"``
(or ``$SURESTEP_LMDB_COMMIT=lmdb``) commits every append to LMDB itself, as read-only
stores and ``durability="process"`` always do. Whatever the mode, opening a store to
write first applies the logs of processes that are gone, and a claim does not take a
running run's lease from a process whose log may hold an acknowledged append of it that
LMDB lacks.

Chunks keep LMDB's cost per record small: one entry (a key, an 8-byte node header and a
2-byte slot) per chunk of steps instead of one per step, and a run's records packed on
few pages. An append rewrites its chunk (read, extend, put), which stays within
CHUNK_BYTES so that it lives inside a leaf page: LMDB moves a value that does not fit
half a page to overflow pages, which every rewrite would copy whole. Two full chunks
fill a 4 KiB page.
"""

from __future__ import annotations

import asyncio
import math
import os
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Any

import orjson

from .. import _core, _lmdb
from ..errors import (
    ConfigurationError,
    JournalCorruptError,
    LeaseLostError,
    RunFinishedError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StoreError,
    StoreFullError,
)
from . import lmdb_log
from .base import (
    CANCELLED,
    CREATE_FIELDS,
    FINISHED,
    KEEP_DEFAULT,
    KEEP_FOREVER,
    PENDING,
    RUN_FIELDS,
    RUNNING,
    STATUSES,
    WAITING,
    LiveEngine,
    Owner,
    RunInfo,
    ScheduleInfo,
    ServedVersions,
    Store,
    claimable,
    keep_registration,
    new_run_id,
    registered_schedule,
    retention_due,
    run_key,
    versions_by_workflow,
)
from .lmdb_env import (
    DEFAULT_MAP_SIZE,
    MAX_MAP_SIZE,
    Append,
    Env,
    _free_bytes,
    acquire,
    data_size,
    release,
)
from .wake import WakeListener

_LEASE = struct.Struct("<Qdd")  # fence, lease end, written at (both on the monotonic clock)
_MS = struct.Struct(">Q")
_LOG_POS = struct.Struct(">IH")
_FILED = struct.Struct(">QQ")  # policy (two's complement), finish time (ms)
_U64 = (1 << 64) - 1
_META_STORE = b"store"
STATS_BATCH = 20_000  # runs one read transaction of stats counts at most
RECOVER_EVERY = 1.0  # seconds between two looks for the commit logs of processes gone
COMMITS = ("lmdb", "log")
DEFAULT_COMMIT = "log"
# The commit mode of a store opened without ``commit=`` (a worker started by the CLI, say).
COMMIT_ENV = "SURESTEP_LMDB_COMMIT"
RUN_KEY = _core.RUN_KEY_SIZE
# The journal's chunks are written by compiled code (surestep._lmdb.Transaction.put_record
# and append_records): groups of 64 consecutive steps, each kept in one chunk or a few, of
# at most CHUNK_BYTES: LMDB keeps a node of up to 2,038 bytes (header, 21-byte key and
# value) inside a 4 KiB leaf page, the smallest page it uses.
CHUNK_SHIFT: int = _lmdb.CHUNK_SHIFT
CHUNK_BYTES: int = _lmdb.CHUNK_BYTES


# Leases are kept on the host's monotonic clock, not the wall clock: every process on the
# host reads the same CLOCK_MONOTONIC (mach_absolute_time on macOS), and no clock step moves
# it. On the wall clock, a jump forward (NTP stepping, a VM resumed, `date -s`) ended every
# live lease at once and handed running runs to a second engine; a jump back kept a hung
# engine's lease alive for as long as the jump. Callers still speak wall-clock time
# (RunInfo.lease_until): the two helpers below convert at the moment of reading or writing.
# The monotonic clock restarts at boot, so a lease also records when it was written: one
# written "later" than now comes from an earlier boot and has ended; any other lease from
# an earlier boot can look held for at most one lease length, as it would have been anyway.


def _lease_bytes(fence: int, until: float, owner: str | None) -> bytes:
    """A lease ending at wall-clock ``until`` (0: no lease), as stored."""
    wall, mono = time.time(), time.monotonic()
    end = 0.0 if until <= 0 else mono + (until - wall)
    return _LEASE.pack(fence, end, mono) + (owner or "").encode()


def _lease_end(raw: bytes | memoryview) -> tuple[int, float]:
    """A stored lease's fence and end on the monotonic clock (0: none, or written before
    the machine started: the monotonic clock starts again at boot)."""
    fence, end, written = _LEASE.unpack_from(raw)
    return fence, 0.0 if written > time.monotonic() else end


def _nothing(txn: _lmdb.Transaction) -> None:
    """A commit that writes nothing of its own (what the writer adds to every commit)."""


def _lease_of(raw: bytes | memoryview) -> tuple[int, float, str | None]:
    """A stored lease: fence, its end in wall-clock time as of now (0: none), owner."""
    fence, end, written = _LEASE.unpack_from(raw)
    owner = bytes(raw[_LEASE.size :]).decode()
    mono = time.monotonic()
    until = 0.0 if end <= 0 or written > mono else time.time() + (end - mono)
    return fence, until, owner or None


class Databases:
    """The store's named databases in one environment (the layout in the module's
    docstring), opened once per environment and shared by every store on it; and what
    is cached of them. The environment opens them (``lmdb_env.Env``, ``layout``)."""

    # Added by later releases: absent on a read-only store that no engine of this
    # release has written (``has``); a store opened to write has them all.
    ADDED = (
        "idempotency",
        "idempotency_of",
        "meta",
        "retain",
        "children",
        "hidden",
        "engines",
        "schedules",
        "subscriptions",
        "attempts",
        "commit_logs",
    )
    idempotency: int
    idempotency_of: int
    meta: int
    retain: int
    children: int
    hidden: int
    engines: int
    schedules: int
    subscriptions: int
    attempts: int
    commit_logs: int

    def __init__(self, env: _lmdb.Environment, readonly: bool) -> None:
        self._env = env
        self.readonly = readonly
        self.journal = env.open_db(b"journal")
        self.runs = env.open_db(b"runs")
        self.leases = env.open_db(b"leases")
        self.active = env.open_db(b"active")
        self.timers = env.open_db(b"timers")
        self.events = env.open_db(b"events")
        self.logs = env.open_db(b"logs")
        self.state = env.open_db(b"state")
        self.deploys = env.open_db(b"deploys")
        for name in self.ADDED:
            self._open_added(name)
        # deployed_version's cache: the deployments seen (their count, the last key) and
        # each workflow's last version then; one attribute, replaced whole, so that the
        # loop's thread reads a consistent pair (_CreateRun)
        self.deployments: tuple[tuple[int, bytes], dict[str, str]] = ((0, b""), {})
        if not readonly:
            self._mark_origin()

    def _mark_origin(self) -> None:
        """Record what made the store, once: a store that has runs but no record was
        made by surestep 0.2. Decided inside one write transaction, so two processes
        opening a new store together agree."""
        meta = self.meta
        txn = self._env.begin(write=True)
        try:
            if txn.get(_META_STORE, db=meta) is None:
                previous = txn.stat(self.runs)["entries"] > 0
                if previous:
                    self._file_previous_runs(txn)
                made = "surestep 0.2" if previous else "this release"
                row = {"made_by": made, "at": time.time()}
                txn.put(_META_STORE, orjson.dumps(row), db=meta)
            txn.commit()
        except BaseException:
            txn.abort()
            raise

    def _file_previous_runs(self, txn: _lmdb.Transaction) -> None:
        """Index the runs of a store made by surestep 0.2 as this release indexes its own
        (``LmdbStore._file_finished``, ``create_child``): its finished runs under the
        store's default policy, and every child under its parent while that exists."""
        for key, raw in txn.cursor(db=self.runs):
            key = bytes(key)
            row = orjson.loads(raw)
            filed = b""
            if row["status"] in FINISHED:
                filed = _FILED.pack(KEEP_DEFAULT & _U64, round(row["updated_at"] * 1000))
            parent = None if row.get("parent_id") is None else run_key(row["parent_id"])
            if parent is not None and txn.get(parent, db=self.runs) is not None:
                txn.put(parent + key, filed, db=self.children)
            elif filed:
                txn.put(filed + key, b"", db=self.retain)

    def _open_added(self, name: str) -> None:
        """A database later releases added: made where missing, unless read-only (then
        left absent: a store no engine of this release has written has none)."""
        try:
            setattr(self, name, self._env.open_db(name.encode()))
        except _lmdb.Error:
            if not self.readonly:
                raise

    def has(self, name: str) -> bool:
        """Whether the database ``name`` (one of ``ADDED``) is in the store."""
        return name in self.__dict__

    def deployed_version(self, txn: _lmdb.Transaction, workflow: str) -> str | None:
        """The last version of ``workflow`` deployed, inside a write transaction. The
        deployments are cached and read again only when their number or last key
        changed: they are only ever appended (``record_deployment``), and writes run
        one at a time. (The key too, because a transaction that saw a deployment of
        its own may abort, and another process then append a different one.)"""
        count = txn.stat(self.deploys)["entries"]
        if count == 0:
            return None
        cursor = txn.cursor(db=self.deploys)
        cursor.last()
        seen = (count, bytes(cursor.key()))
        cached, versions = self.deployments
        if seen != cached:
            versions = {}
            for _, raw in txn.cursor(db=self.deploys):
                row = orjson.loads(raw)
                versions[row["workflow"]] = row["version"]
            self.deployments = (seen, versions)
        return versions.get(workflow)


def default_commit(durability: str, readonly: bool) -> str:
    """The commit mode of a store that names none: ``$SURESTEP_LMDB_COMMIT`` if set, else
    DEFAULT_COMMIT; the log only where it saves a flush (a writable store at ``fsync``)."""
    chosen = os.environ.get(COMMIT_ENV) or DEFAULT_COMMIT
    if chosen not in COMMITS:
        raise ConfigurationError(f"{COMMIT_ENV} must be 'lmdb' or 'log', not {chosen!r}")
    return "log" if chosen == "log" and durability == "fsync" and not readonly else "lmdb"


class LmdbStore(Store):
    """The embedded backend (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        durability: str = "fsync",
        map_size: int = DEFAULT_MAP_SIZE,
        max_map_size: int = MAX_MAP_SIZE,
        readonly: bool = False,
        commit: str | None = None,
    ) -> None:
        if durability not in ("fsync", "process"):
            raise ConfigurationError(f"durability must be 'fsync' or 'process', not {durability!r}")
        if commit is None:
            commit = default_commit(durability, readonly)
        elif commit not in COMMITS:
            raise ConfigurationError(f"commit must be 'lmdb' or 'log', not {commit!r}")
        if commit == "log" and readonly:
            raise ConfigurationError("commit='log' writes: a read-only store takes none")
        if commit == "log" and durability != "fsync":
            raise ConfigurationError(
                "commit='log' saves a flush per step at durability='fsync'; at "
                f"durability={durability!r} nothing is flushed to begin with"
            )
        for option, value in (("map_size", map_size), ("max_map_size", max_map_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(
                    f"{option} must be a whole number of bytes > 0, not {value!r}"
                )
        if max_map_size < map_size:
            raise ConfigurationError(
                f"max_map_size ({max_map_size}) must be at least map_size ({map_size})"
            )
        self.path = path
        self.url = f"lmdb://{os.path.abspath(path)}"
        self.durability = durability
        self.readonly = readonly
        self.map_size = map_size
        self.max_map_size = max_map_size
        self.commit = commit
        self._log: lmdb_log.LogMode | None = None
        self._recovered_at = -math.inf
        self._env: Env[Databases] | None = None
        self._listener: WakeListener | None = None
        # The last run appended to and its key: a run appends step after step, each with
        # the same id object. One tuple, read and replaced whole (any thread may append).
        self._appending: tuple[str, bytes] = ("", b"")
        self._counting: asyncio.Future[dict[str, Any]] | None = None  # stats, counting now

    async def open(self) -> None:
        if self._env is None:
            self._env = acquire(
                self.path,
                self.durability,
                self.map_size,
                self.max_map_size,
                self.readonly,
                Databases,
            )
            if not self.readonly:  # (read-only: registering a listener is a write)
                self._listener = WakeListener(self.path)  # from now on no change is missed
                try:
                    await self._open_logs(self._env)
                except BaseException:
                    await self.close()
                    raise

    async def _open_logs(self, env: Env[Databases]) -> None:
        """Apply the logs of processes that are gone; with ``commit="log"``, put this
        process's log in front of the environment (one per environment: the stores of
        one path in a process share it) and stamp its first mark before any append."""
        await self._recover_logs()
        if self.commit != "log":
            if env.log is not None:
                raise ConfigurationError(
                    f"the store at {self.path!r} is already open in this process with "
                    "commit='log'; use one commit mode per store and process"
                )
            return
        if env.log is None:
            free = _free_bytes(self.path)
            if free is not None and free < lmdb_log.LOG_BYTES:
                raise StoreFullError(
                    f"no room for this process's commit log in the store at {self.path!r} "
                    f"({free} bytes free): it takes {lmdb_log.LOG_BYTES >> 20} MiB of "
                    "preallocated segments; free some room, or open the store with "
                    "commit='lmdb' (one LMDB sync commit a step, no log)"
                )
            env.log = lmdb_log.LogMode(env, lambda: env.dbs, _lease_end)
        elif not isinstance(env.log, lmdb_log.LogMode):
            raise ConfigurationError(f"the store at {self.path!r} has another commit log")
        self._log = env.log
        await env.submit(_nothing)  # a commit: stamps this process's mark

    async def _recover_logs(self) -> None:
        """Apply and remove the logs of processes that are gone (at most once a second)."""
        now = time.monotonic()
        if self.readonly or now - self._recovered_at < RECOVER_EVERY:
            return
        if not lmdb_log.has_logs(self.path):
            return
        self._recovered_at = now
        dbs = self.env.dbs
        count = await lmdb_log.recover(self.path, dbs, self.env.submit)
        if count:
            self.env.waker.notify()

    async def close(self) -> None:
        while self._counting is not None:  # a count reads the environment in a thread
            await asyncio.gather(asyncio.shield(self._counting), return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._env is not None:
            env, self._env = self._env, None
            await asyncio.get_running_loop().run_in_executor(None, release, env)

    @property
    def env(self) -> Env[Databases]:
        if self._env is None:
            raise StoreError("the store is closed")
        return self._env

    # -- helpers inside transactions

    def _load(self, txn: _lmdb.Transaction, key: bytes) -> RunInfo | None:
        e = self.env.dbs
        raw = txn.get(key, db=e.runs)
        if raw is None:
            return None
        run = RunInfo.from_dict(orjson.loads(raw))
        lease = txn.get(key, db=e.leases)
        if lease is not None:
            run.fence, run.lease_until, run.owner = _lease_of(lease)
        return run

    def _save(self, txn: _lmdb.Transaction, run: RunInfo, new: bool = False) -> None:
        """Write the run's row and lease, and keep the ``active``/``timers`` indexes right.
        ``new``: the run has no row yet (the caller looked)."""
        e = self.env.dbs
        key = run_key(run.run_id)
        previous = None if new else txn.get(key, db=e.runs)
        if previous is not None:
            old = orjson.loads(previous)
            if old["status"] == WAITING and old.get("wake_at") is not None:
                txn.delete(_timer_key(old["wake_at"], key), db=e.timers)
        txn.put(key, _row(run), db=e.runs)
        txn.put(key, self._lease_row(run.fence, run.lease_until, run.owner), db=e.leases)
        if run.status in (PENDING, RUNNING):
            txn.put(key, b"", db=e.active)
        else:
            txn.delete(key, db=e.active)
            if run.status == WAITING and run.wake_at is not None:
                txn.put(_timer_key(run.wake_at, key), b"", db=e.timers)

    def _lease_row(self, fence: int, until: float, owner: str | None) -> bytes:
        """``_lease_bytes``, its end told to this process's commit log (whose applied
        mark must pass it for another process to take the lease)."""
        row = _lease_bytes(fence, until, owner)
        if self._log is not None:
            self._log.leased(_LEASE.unpack_from(row)[1])
        return row

    def _file_finished(
        self,
        txn: _lmdb.Transaction,
        key: bytes,
        parent_id: str | None,
        finished_at: float,
        keep: int,
    ) -> None:
        """Index the run of ``key`` that just finished for the purge: under its parent
        while that exists (a child goes with its parent), else by its policy and finish
        time."""
        filed = _FILED.pack(keep & _U64, round(finished_at * 1000))
        if parent_id is not None:
            parent = run_key(parent_id)
            if txn.get(parent, db=self.env.dbs.runs) is not None:
                txn.put(parent + key, filed, db=self.env.dbs.children)
                return
        txn.put(filed + key, b"", db=self.env.dbs.retain)

    def _put_record(self, txn: _lmdb.Transaction, key: bytes, seq: int, record: bytes) -> None:
        """Add one encoded record to the journal of the run whose key is ``key``; a
        ``StoreError`` before anything is written if the step has a record already."""
        status = txn.put_record(self.env.dbs.journal, key, seq, record)
        if status != _lmdb.APPENDED:
            raise _append_failure(status, key, seq)

    def _check_fence(self, txn: _lmdb.Transaction, run_id: str, fence: int) -> bytes:
        key = run_key(run_id)
        self._fenced(txn, key, run_id, fence)
        return key

    def _fenced(self, txn: _lmdb.Transaction, key: bytes, run_id: str, fence: int) -> None:
        """``RunNotFoundError`` unless the run of ``key`` exists, ``LeaseLostError``
        unless its lease is under ``fence``."""
        lease = txn.get(key, db=self.env.dbs.leases)
        if lease is None:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        if _LEASE.unpack_from(lease)[0] != fence:
            raise LeaseLostError(run_id, fence)

    def _fence_failure(self, status: int, run_id: str, fence: int) -> BaseException:
        """What ``_fenced`` raises, for the binding's ``status`` of the lease."""
        if status == _lmdb.RUN_NOT_FOUND:
            return RunNotFoundError(f"no run {run_id} in {self.url}")
        if status == _lmdb.LEASE_LOST:
            return LeaseLostError(run_id, fence)
        return StoreError(f"run {run_id}: its stored lease is corrupt")

    def _may_take(self, txn: _lmdb.Transaction, run: RunInfo, now: float) -> bool:
        """``claimable``, and a running run's lease not taken from a process whose commit
        log may hold an acknowledged append of it that LMDB lacks (``lmdb_log``)."""
        if not claimable(run, now):
            return False
        if run.status != RUNNING or run.owner is None:
            return True
        raw = txn.get(run_key(run.run_id), db=self.env.dbs.leases)
        if raw is None:
            return True
        marks = self.env.dbs.commit_logs
        return lmdb_log.may_take_over(txn, marks, run.owner, _lease_end(raw)[1], self.path)

    # base.TRANSITIONS: claim (both claim operations, and creation claimed for its owner)
    def _take(self, run: RunInfo, owner: str, lease_s: float, now: float) -> RunInfo:
        run.fence += 1
        run.attempt += 1
        run.owner = owner
        run.lease_until = now + lease_s
        run.status = RUNNING
        run.wake_at = run.waiting_for = None
        run.updated_at = now
        return run

    # -- runs and leases

    # base.TRANSITIONS: create (unclaimed or claimed for its owner)
    def create_run(
        self,
        run: RunInfo,
        owner: str | None,
        lease_s: float,
        follow_deployment: bool = False,
        idempotency_key: str | None = None,
    ) -> Awaitable[int]:
        op = _CreateRun(self, run, owner, lease_s, follow_deployment, idempotency_key)
        return self.env.submit(op, notify=True, small=True, run=op.key)

    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunInfo | None:
        def op(txn: _lmdb.Transaction) -> RunInfo | None:
            run = self._load(txn, run_key(run_id))
            if run is None:
                raise RunNotFoundError(f"no run {run_id} in {self.url}")
            now = time.time()
            if not self._may_take(txn, run, now):
                return None
            self._save(txn, self._take(run, owner, lease_s, now))
            return run

        await self._recover_logs()
        result: RunInfo | None = await self.env.submit(op)
        return result

    async def claim_available(
        self,
        owner: str,
        lease_s: float,
        limit: int,
        workflows: ServedVersions,
        due_only: bool = False,
    ) -> list[RunInfo]:
        wanted = versions_by_workflow(workflows)
        none: frozenset[str] = frozenset()

        def op(txn: _lmdb.Transaction) -> list[RunInfo]:
            e = self.env.dbs
            now = time.time()
            candidates: list[bytes] = []
            if limit <= 0:
                return []
            for key in txn.cursor(db=e.timers).iternext(values=False):
                if _MS.unpack_from(key)[0] > now * 1000:
                    break
                candidates.append(bytes(key[_MS.size :]))
            if not due_only:
                candidates += [bytes(k) for k in txn.cursor(db=e.active).iternext(values=False)]
            taken: list[RunInfo] = []
            for key in candidates:
                lease = txn.get(key, db=e.leases)
                if lease is not None:  # held by this engine already: skip without decoding the row
                    _, until, holder = _lease_of(lease)
                    if holder == owner and until > now:
                        continue
                run = self._load(txn, key)
                if (
                    run is None
                    or run.version not in wanted.get(run.workflow, none)
                    or not self._may_take(txn, run, now)
                ):
                    continue
                self._save(txn, self._take(run, owner, lease_s, now))
                taken.append(run)
                if len(taken) >= limit:
                    break
            return taken

        await self._recover_logs()
        if due_only and not self.env.read(self._timer_due):
            return []  # nothing to claim: no write (woken by every run created or finished)
        result: list[RunInfo] = await self.env.submit(op)
        return result

    def _timer_due(self, txn: _lmdb.Transaction) -> bool:
        """Whether the first timer is due."""
        for key in txn.cursor(db=self.env.dbs.timers).iternext(values=False):
            return bool(_MS.unpack_from(key)[0] <= time.time() * 1000)
        return False

    # base.TRANSITIONS: create (a child, claimed for its parent's owner)
    async def create_child(self, run: RunInfo, owner: str, lease_s: float) -> RunInfo:
        def op(txn: _lmdb.Transaction) -> RunInfo:
            existing = self._load(txn, run_key(run.run_id))
            if existing is not None:
                return existing
            child = RunInfo.from_dict(run.to_dict())
            self._save(txn, self._take(child, owner, lease_s, time.time()))
            if child.parent_id is not None:
                parent = run_key(child.parent_id)
                txn.put(parent + run_key(child.run_id), b"", db=self.env.dbs.children)
            return child

        result: RunInfo = await self.env.submit(op, notify=True)
        return result

    async def suspend(
        self, run_id: str, fence: int, wake_at: float | None, event: str | None = None
    ) -> None:
        def op(txn: _lmdb.Transaction) -> None:
            key = self._check_fence(txn, run_id, fence)
            run = self._load(txn, key)
            assert run is not None
            self._suspend(txn, key, run, wake_at, event)

        await self.env.submit(op, notify=True)

    # base.TRANSITIONS: suspend, and record_attempt with its wake_at
    def _suspend(
        self,
        txn: _lmdb.Transaction,
        key: bytes,
        run: RunInfo,
        wake_at: float | None,
        event: str | None,
    ) -> None:
        now = time.time()
        run.status, run.owner, run.lease_until, run.updated_at = WAITING, None, 0.0, now
        run.wake_at, run.waiting_for = wake_at, event
        if event is not None and self._first_event(txn, key, event) is not None:
            run.wake_at = now  # it came while the run was deciding to wait
        self._save(txn, run)

    async def record_attempt(
        self,
        run_id: str,
        fence: int,
        seq: int,
        attempt: int,
        body: bytes,
        retry: dict[str, Any],
        wake_at: float | None,
    ) -> None:
        def op(txn: _lmdb.Transaction) -> None:
            key = self._check_fence(txn, run_id, fence)
            run = self._load(txn, key)
            assert run is not None
            txn.put(key + _LOG_POS.pack(seq, attempt), body, db=self.env.dbs.attempts)
            run.retry = retry
            if wake_at is None:
                self._save(txn, run)
            else:
                self._suspend(txn, key, run, wake_at, None)

        await self.env.submit(op, notify=wake_at is not None)

    async def retry_done(self, run_id: str, fence: int, seq: int) -> None:
        def op(txn: _lmdb.Transaction) -> None:
            key = self._check_fence(txn, run_id, fence)
            run = self._load(txn, key)
            assert run is not None
            if run.retry is not None and run.retry.get("seq") == seq:
                run.retry = None
                self._save(txn, run)

        await self.env.submit(op)

    async def attempts(self, run_id: str) -> list[bytes]:
        if not self.env.dbs.has("attempts"):  # a store no release that retries durably has written
            return []
        return self._range(self.env.dbs.attempts, run_key(run_id), unless_hidden=True)

    async def next_wake(self, workflows: ServedVersions) -> float | None:
        wanted = versions_by_workflow(workflows)

        def first(txn: _lmdb.Transaction) -> float | None:
            # In time order; the first timer of a version served here decides. Timers of
            # other versions (overdue ones included) are for other workers.
            for key in txn.cursor(db=self.env.dbs.timers).iternext(values=False):
                raw = txn.get(bytes(key[_MS.size :]), db=self.env.dbs.runs)
                if raw is None:
                    continue
                row = orjson.loads(raw)
                if row["version"] in wanted.get(row["workflow"], ()):
                    ms: int = _MS.unpack_from(key)[0]
                    return ms / 1000
            return None

        result: float | None = self.env.read(first)
        return result

    async def renew(
        self, leases: Sequence[tuple[str, int]], owner: str, lease_s: float
    ) -> list[str]:
        def op(txn: _lmdb.Transaction) -> list[str]:
            until = time.time() + lease_s
            lost = []
            for run_id, fence in leases:
                key = run_key(run_id)
                raw = txn.get(key, db=self.env.dbs.leases)
                held_fence, _, holder = _lease_of(raw) if raw is not None else (-1, 0.0, None)
                if (held_fence, holder) != (fence, owner):
                    lost.append(run_id)  # claimed by another, cancelled, or finished
                    continue
                txn.put(key, self._lease_row(fence, until, owner), db=self.env.dbs.leases)
            return lost

        result: list[str] = await self.env.submit(op)
        return result

    # base.TRANSITIONS: release
    async def release(self, run_id: str, fence: int) -> None:
        def op(txn: _lmdb.Transaction) -> None:
            key = self._check_fence(txn, run_id, fence)
            run = self._load(txn, key)
            assert run is not None
            if run.status != RUNNING:
                return  # waiting (given back by suspend, its timer kept), pending or finished
            run.owner, run.lease_until, run.status = None, 0.0, PENDING
            self._save(txn, run)

        await self.env.submit(op, notify=True)

    # base.TRANSITIONS: finish
    def finish(
        self,
        run_id: str,
        fence: int,
        status: str,
        result: Any,
        error: dict[str, Any] | None,
        keep: int = KEEP_DEFAULT,
    ) -> Awaitable[None]:
        assert status in FINISHED, status
        op = _Finish(self, run_id, fence, status, result, error, keep)
        return self.env.submit(op, notify=True, small=True, run=op.key)

    # base.TRANSITIONS: cancel
    async def cancel(self, run_id: str, keep: int = KEEP_DEFAULT) -> bool:
        def op(txn: _lmdb.Transaction) -> bool:
            run = self._load(txn, run_key(run_id))
            if run is None:
                raise RunNotFoundError(f"no run {run_id} in {self.url}")
            if run.finished:
                return False
            run.status, run.updated_at = CANCELLED, time.time()
            run.fence += 1  # the executing engine's next write is refused
            run.owner, run.lease_until = None, 0.0
            self._save(txn, run)
            self._file_finished(txn, run_key(run_id), run.parent_id, run.updated_at, keep)
            return True

        result: bool = await self.env.submit(op, notify=True)
        return result

    async def wait_changed(self, timeout: float) -> None:
        if self._env is None:
            raise StoreError("the store is closed")
        if self._listener is None:  # read-only: no wake-ups reach it; look again in a while
            await asyncio.sleep(timeout)
            return
        await self._listener.wait(timeout)

    async def get_run(self, run_id: str) -> RunInfo:
        key = run_key(run_id)
        run: RunInfo | None = self.env.read(lambda txn: self._load(txn, key))
        if run is None:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        return run

    async def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[RunInfo]:
        start = None if before is None else run_key(before)

        def scan(txn: _lmdb.Transaction) -> list[RunInfo]:
            found: list[RunInfo] = []
            cursor = txn.cursor(db=self.env.dbs.runs)
            if start is None:
                if not cursor.last():
                    return found
            elif cursor.set_range(start):  # the first key at or after ``before``: step back
                if not cursor.prev():
                    return found
            elif not cursor.last():
                return found
            while limit is None or len(found) < limit:
                row = orjson.loads(cursor.value())
                if (status is None or row["status"] == status) and (
                    workflow is None or row["workflow"] == workflow
                ):
                    run = self._load(txn, bytes(cursor.key()))
                    assert run is not None
                    found.append(run)
                if not cursor.prev():
                    break
            return found

        result: list[RunInfo] = self.env.read(scan)
        return result

    # -- live engines

    async def announce(self, owner: str, served: ServedVersions, lease_s: float) -> None:
        versions = {name: sorted(v) for name, v in versions_by_workflow(served).items()}
        row = orjson.dumps({"served": versions, "until": time.time() + lease_s})

        def op(txn: _lmdb.Transaction) -> None:
            txn.put(owner.encode(), row, db=self.env.dbs.engines)

        await self.env.submit(op)

    async def withdraw(self, owner: str) -> None:
        def op(txn: _lmdb.Transaction) -> None:
            txn.delete(owner.encode(), db=self.env.dbs.engines)

        await self.env.submit(op)

    async def live_engines(self) -> list[LiveEngine]:
        db = self.env.dbs.engines
        if db is None:
            return []

        def scan(txn: _lmdb.Transaction) -> list[tuple[str, dict[str, Any]]]:
            return [(bytes(k).decode(), orjson.loads(v)) for k, v in txn.cursor(db=db)]

        now = time.time()
        live = []
        for owner, row in self.env.read(scan):
            parsed = Owner.parse(owner)
            if row["until"] > now and not (parsed is not None and parsed.is_dead()):
                live.append(LiveEngine(owner, row["served"], row["until"]))
        return live

    # -- deployments

    async def record_deployment(
        self, workflow: str, version: str, digest: str, retention: int | None = None
    ) -> None:
        row = orjson.dumps(
            {
                "workflow": workflow,
                "version": version,
                "digest": digest,
                "time": time.time(),
                "retention": retention,
            }
        )

        def op(txn: _lmdb.Transaction) -> None:
            # Keys only grow (a clock set back does not reorder) and never overwrite:
            # deployed_version() relies on both.
            cursor = txn.cursor(db=self.env.dbs.deploys)
            last = _MS.unpack(cursor.key())[0] if cursor.last() else -1
            txn.put(_MS.pack(max(time.time_ns(), last + 1)), row, db=self.env.dbs.deploys)

        await self.env.submit(op)

    async def deployments(self) -> list[dict[str, Any]]:
        return [
            {"retention": None, **orjson.loads(raw)}
            for raw in self._range(self.env.dbs.deploys, b"")
        ]

    # -- schedules

    def _schedule(self, txn: _lmdb.Transaction, workflow: str) -> ScheduleInfo | None:
        raw = txn.get(workflow.encode(), db=self.env.dbs.schedules)
        return None if raw is None else ScheduleInfo.from_dict(orjson.loads(raw))

    def _put_schedule(self, txn: _lmdb.Transaction, schedule: ScheduleInfo) -> None:
        txn.put(
            schedule.workflow.encode(), orjson.dumps(schedule.to_dict()), db=self.env.dbs.schedules
        )

    async def register_schedule(
        self, workflow: str, version: str, schedule: ScheduleInfo | None, now: float
    ) -> ScheduleInfo | None:
        def op(txn: _lmdb.Transaction) -> ScheduleInfo | None:
            stored = self._schedule(txn, workflow)
            deployed = self.env.dbs.deployed_version(txn, workflow)
            new, changed = registered_schedule(stored, deployed, version, schedule, now)
            if changed:
                if new is None:
                    txn.delete(workflow.encode(), db=self.env.dbs.schedules)
                else:
                    self._put_schedule(txn, new)
            return new

        result: ScheduleInfo | None = await self.env.submit(op, notify=True)
        return result

    async def schedules(self) -> list[ScheduleInfo]:
        if not self.env.dbs.has("schedules"):  # a read-only store no engine of today wrote
            return []
        return [
            ScheduleInfo.from_dict(orjson.loads(raw))
            for raw in self._range(self.env.dbs.schedules, b"")
        ]

    async def pause_schedule(self, workflow: str, paused: bool, now: float) -> ScheduleInfo:
        def op(txn: _lmdb.Transaction) -> ScheduleInfo:
            stored = self._schedule(txn, workflow)
            if stored is None:
                raise ScheduleNotFoundError(f"no schedule for workflow {workflow!r} in {self.url}")
            if stored.pause(paused, now):
                self._put_schedule(txn, stored)
            return stored

        result: ScheduleInfo = await self.env.submit(op, notify=True)
        return result

    def _create_keyed(self, txn: _lmdb.Transaction, run: RunInfo, key: str) -> RunInfo:
        """Store ``run`` pending on its workflow's deployed version, with ``key``; the
        run that ``key`` created instead, when it names one."""
        taken = txn.get(key.encode(), db=self.env.dbs.idempotency)
        if taken is not None:
            existing = self._load(txn, bytes(taken))
            if existing is not None:
                return existing
        run = RunInfo.from_dict(run.to_dict())
        run.version = self.env.dbs.deployed_version(txn, run.workflow) or run.version
        rkey = run_key(run.run_id)
        if txn.get(rkey, db=self.env.dbs.runs) is not None:
            raise StoreError(f"a run {run.run_id} exists already in {self.url}")
        self._save(txn, run)
        txn.put(key.encode(), rkey, db=self.env.dbs.idempotency)
        txn.put(rkey, key.encode(), db=self.env.dbs.idempotency_of)  # the key goes with its run
        return run

    async def fire_schedule(
        self, workflow: str, revision: int, tick: float, run: RunInfo | None, key: str
    ) -> RunInfo | None:
        def op(txn: _lmdb.Transaction) -> RunInfo | None:
            stored = self._schedule(txn, workflow)
            if stored is None or not stored.fires(revision, tick):
                return None
            stored.last_tick = tick
            self._put_schedule(txn, stored)
            return None if run is None else self._create_keyed(txn, run, key)

        result: RunInfo | None = await self.env.submit(op, notify=True)
        return result

    async def register_subscriptions(
        self, workflow: str, version: str, events: Sequence[str]
    ) -> list[str]:
        wanted = sorted(set(events))

        def op(txn: _lmdb.Transaction) -> list[str]:
            db = self.env.dbs.subscriptions
            stored: dict[bytes, str] = {}
            for key, value in txn.cursor(db=db):
                if bytes(key).split(b"\x00", 1)[1].decode() == workflow:
                    stored[bytes(key)] = bytes(value).decode()
            names = sorted(k.split(b"\x00", 1)[0].decode() for k in stored)
            held = next(iter(stored.values()), None)
            if keep_registration(held, self.env.dbs.deployed_version(txn, workflow), version):
                return names
            if names == wanted and all(v == version for v in stored.values()):
                return names
            for key in stored:
                txn.delete(key, db=db)
            for name in wanted:
                txn.put(_subscription_key(name, workflow), version.encode(), db=db)
            return wanted

        result: list[str] = await self.env.submit(op, notify=True)
        return result

    async def subscriptions(self) -> list[tuple[str, str, str]]:
        if not self.env.dbs.has("subscriptions"):  # a read-only store no engine of today wrote
            return []

        def scan(txn: _lmdb.Transaction) -> list[tuple[str, str, str]]:
            found = []
            for key, value in txn.cursor(db=self.env.dbs.subscriptions):
                name, workflow = bytes(key).split(b"\x00", 1)
                found.append((name.decode(), workflow.decode(), bytes(value).decode()))
            return found

        result: list[tuple[str, str, str]] = self.env.read(scan)
        return result

    async def emit_event(
        self, name: str, kwargs: dict[str, Any], keys: Callable[[str], str]
    ) -> list[RunInfo]:
        prefix = name.encode() + b"\x00"

        def op(txn: _lmdb.Transaction) -> list[RunInfo]:
            cursor = txn.cursor(db=self.env.dbs.subscriptions)
            subscribed: list[tuple[str, str]] = []
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    subscribed.append((bytes(key[len(prefix) :]).decode(), bytes(value).decode()))
            keyed = [(workflow, version, keys(workflow)) for workflow, version in subscribed]
            return [  # the keys are made (and checked) before anything is written
                self._create_keyed(
                    txn,
                    RunInfo(new_run_id(), workflow, version, args=[], kwargs=kwargs),
                    key,
                )
                for workflow, version, key in keyed
            ]

        result: list[RunInfo] = await self.env.submit(op, notify=True)
        return result

    async def idempotency_keys(self, prefix: str) -> dict[str, str]:
        if not self.env.dbs.has("idempotency"):  # a read-only store no engine of today wrote
            return {}
        start = prefix.encode()

        def scan(txn: _lmdb.Transaction) -> dict[str, str]:
            found: dict[str, str] = {}
            cursor = txn.cursor(db=self.env.dbs.idempotency)
            if not cursor.set_range(start):
                return found
            for key, value in cursor:
                if not bytes(key).startswith(start):
                    break
                found[bytes(key).decode()] = bytes(value).hex()
            return found

        result: dict[str, str] = self.env.read(scan)
        return result

    # -- events

    def _first_event(
        self, txn: _lmdb.Transaction, key: bytes, name: str
    ) -> tuple[bytes, bytes] | None:
        prefix = _event_prefix(key, name)
        cursor = txn.cursor(db=self.env.dbs.events)
        if cursor.set_range(prefix) and bytes(cursor.key()).startswith(prefix):
            return bytes(cursor.key()), bytes(cursor.value())
        return None

    async def set_progress(self, run_id: str, fence: int, report: bytes) -> None:
        def op(txn: _lmdb.Transaction) -> None:
            key = self._check_fence(txn, run_id, fence)
            row = orjson.loads(txn.get(key, db=self.env.dbs.runs))
            row["progress"] = orjson.loads(report)
            txn.put(key, orjson.dumps(row), db=self.env.dbs.runs)

        await self.env.submit(op, notify=True)

    async def send_event(self, run_id: str, name: str, payload: bytes) -> None:
        key = run_key(run_id)

        def op(txn: _lmdb.Transaction) -> None:
            e = self.env.dbs
            run = self._load(txn, key)
            if run is None:
                raise RunNotFoundError(f"no run {run_id} in {self.url}")
            if run.finished:
                raise RunFinishedError(run_id, run.status)
            prefix = _event_prefix(key, name)
            last = _last_key(txn.cursor(db=e.events), prefix)
            counter = 0 if last is None else _MS.unpack_from(last, len(prefix))[0] + 1
            txn.put(prefix + _MS.pack(counter), payload, db=e.events)
            if run.status == WAITING and run.waiting_for == name:
                # Due now: a millisecond back, as timers' keys round up to the next one.
                run.wake_at = time.time() - 0.001
                self._save(txn, run)

        await self.env.submit(op, notify=True)

    async def take_event(
        self, run_id: str, fence: int, name: str, seq: int, record: Callable[[bytes], bytes]
    ) -> bytes | None:
        def op(txn: _lmdb.Transaction) -> bytes | None:
            key = self._check_fence(txn, run_id, fence)
            found = self._first_event(txn, key, name)
            if found is None:
                return None
            event_key, payload = found
            self._put_record(txn, key, seq, record(payload))  # refused before any write
            txn.delete(event_key, db=self.env.dbs.events)
            return payload

        result: bytes | None = await self.env.submit(op)
        return result

    # -- shared state

    def _state_now(self, txn: _lmdb.Transaction, skey: bytes) -> tuple[bytes | None, int]:
        raw = txn.get(skey, db=self.env.dbs.state)
        if raw is None:
            return None, 0
        value = bytes(raw[_MS.size :])
        return (value or None), _MS.unpack_from(raw)[0]

    async def state_read(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        record: Callable[[bytes | None, int], bytes],
    ) -> tuple[bytes | None, int]:
        skey = _state_key(scope, key)

        def op(txn: _lmdb.Transaction) -> tuple[bytes | None, int]:
            rkey = self._check_fence(txn, run_id, fence)
            value, version = self._state_now(txn, skey)
            self._put_record(txn, rkey, seq, record(value, version))
            return value, version

        result: tuple[bytes | None, int] = await self.env.submit(op)
        return result

    async def state_write(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        value: bytes | None,
        expect: int | None,
        record: Callable[[int | None], bytes],
    ) -> int | None:
        skey = _state_key(scope, key)

        def op(txn: _lmdb.Transaction) -> int | None:
            rkey = self._check_fence(txn, run_id, fence)
            _, version = self._state_now(txn, skey)
            new = version + 1 if expect is None or expect == version else None
            self._put_record(txn, rkey, seq, record(new))  # refused before any write
            if new is not None:
                txn.put(skey, _MS.pack(new) + (value or b""), db=self.env.dbs.state)
            return new

        result: int | None = await self.env.submit(op)
        return result

    async def state_items(self, scope: str) -> dict[str, bytes]:
        prefix = scope.encode() + b"\x00"

        def scan(txn: _lmdb.Transaction) -> dict[str, bytes]:
            cursor = txn.cursor(db=self.env.dbs.state)
            found: dict[str, bytes] = {}
            if not cursor.set_range(prefix):
                return found
            for key, raw in cursor:
                if not bytes(key).startswith(prefix):
                    break
                if len(raw) > _MS.size:
                    found[bytes(key[len(prefix) :]).decode()] = bytes(raw[_MS.size :])
            return found

        result: dict[str, bytes] = self.env.read(scan)
        return result

    # -- logs

    async def append_log(self, run_id: str, position: int, index: int, line: bytes) -> None:
        key = run_key(run_id) + _LOG_POS.pack(position, index)
        await self.env.submit(lambda txn: txn.put(key, line, db=self.env.dbs.logs))

    async def logs(self, run_id: str) -> list[bytes]:
        return self._range(self.env.dbs.logs, run_key(run_id), unless_hidden=True)

    # -- journal

    def append(self, run_id: str, fence: int, seq: int, record: bytes) -> Awaitable[None]:
        last = self._appending
        if last[0] is run_id:
            key = last[1]
        else:
            key = run_key(run_id)
            self._appending = (run_id, key)
        op = Append(self, run_id, key, fence, seq, record)
        if self._log is not None:
            return self._log.append(op)
        return self.env.submit(op, append_of=op.run_key)

    def append_refused(self, op: Append, status: int) -> BaseException:
        """The error of an append that the binding refused with ``status``."""
        run_id = op.run_id
        if status == _lmdb.INVALID:
            return StoreError(
                f"run {run_id}: step {op.seq!r} (fence {op.fence!r}) is not an append "
                "of a record: nothing was written"
            )
        if status in (_lmdb.LEASE_LOST, _lmdb.RUN_NOT_FOUND, _lmdb.CORRUPT_LEASE):
            return self._fence_failure(status, run_id, op.fence)
        return _append_failure(status, op.run_key, op.seq)

    async def journal(self, run_id: str) -> list[bytes]:
        key = run_key(run_id)
        log = self.env.log
        mine = log.unapplied(key) if isinstance(log, lmdb_log.LogMode) else {}
        stored = self._range(self.env.dbs.journal, key, unless_hidden=True)
        return lmdb_log.with_unapplied(stored, mine) if mine else stored

    def _range(self, db: int, prefix: bytes, unless_hidden: bool = False) -> list[bytes]:
        """The values of every key starting with ``prefix``, in key order; with
        ``unless_hidden``, none when ``prefix`` is the key of a purged run."""

        end = _after_prefix(prefix)

        def scan(txn: _lmdb.Transaction) -> list[bytes]:
            cursor = txn.cursor(db=db)
            out: list[bytes] = []
            dbs = self.env.dbs
            if unless_hidden and dbs.has("hidden") and txn.get(prefix, db=dbs.hidden) is not None:
                return out
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if end is not None and key >= end:
                    break
                out.append(value)
            return out

        result: list[bytes] = self.env.read(scan, buffers=False)
        return result

    # -- retention

    async def made_by_previous_release(self) -> bool:
        raw = self.env.read(lambda txn: txn.get(_META_STORE, db=self.env.dbs.meta), buffers=False)
        return raw is not None and orjson.loads(raw)["made_by"] == "surestep 0.2"

    def _due_roots(
        self,
        txn: _lmdb.Transaction,
        now_ms: int,
        default_ms: int,
        cutoff_ms: int | None,
        most: int | None,
    ) -> list[bytes]:
        """The ``retain`` keys of runs that may go (at most ``most``): each policy's
        entries are in finish order, so a scan reads each policy's due ones only."""
        found: list[bytes] = []
        cursor = txn.cursor(db=self.env.dbs.retain)
        moved = cursor.first()
        while moved and (most is None or len(found) < most):
            key = bytes(cursor.key())
            keep, finished_ms = _FILED.unpack_from(key)
            if retention_due(_signed(keep), finished_ms, now_ms, default_ms, cutoff_ms):
                found.append(key)
                moved = cursor.next()
            else:  # the rest of this policy finished later: on to the next one
                moved = keep < _U64 and cursor.set_range(_MS.pack(keep + 1))
        return found

    def _tree(
        self,
        txn: _lmdb.Transaction,
        root: bytes,
        now_ms: int,
        default_ms: int,
        cutoff_ms: int | None,
    ) -> tuple[list[bytes], bytes | None]:
        """The keys of ``root`` and of every run it started, recursively, when all may go
        (``None`` second); else no keys, and the policy and finish time (as filed) of the
        descendant that may go last (``b""`` when one is unfinished: look again later)."""
        keys, last, last_due = [root], b"", -math.inf
        waiting = False
        i = 0
        while i < len(keys):
            parent = keys[i]
            i += 1
            cursor = txn.cursor(db=self.env.dbs.children)
            if not cursor.set_range(parent):
                continue
            for child_key, filed in cursor:
                if not bytes(child_key).startswith(parent):
                    break
                if not len(filed):
                    return [], b""  # unfinished: it and its parent stay
                keep, finished_ms = _FILED.unpack_from(filed)
                if not retention_due(_signed(keep), finished_ms, now_ms, default_ms, cutoff_ms):
                    waiting = True
                    due = _due_at(_signed(keep), finished_ms, default_ms)
                    if due > last_due:
                        last, last_due = bytes(filed), due
                keys.append(bytes(child_key[RUN_KEY:]))
        return ([], last) if waiting else (keys, None)

    def _describe_tree(self, txn: _lmdb.Transaction, keys: list[bytes]) -> list[dict[str, Any]]:
        root = keys[0].hex()
        described = []
        for key in keys:
            run = self._load(txn, key)
            if run is not None:
                described.append(_purged(run, root))
        return described

    async def expired_runs(
        self, now: float, default_ms: int, cutoff: float | None, limit: int | None
    ) -> list[dict[str, Any]]:
        now_ms, cutoff_ms = round(now * 1000), None if cutoff is None else round(cutoff * 1000)

        def scan(txn: _lmdb.Transaction) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            roots = 0
            for entry in self._due_roots(txn, now_ms, default_ms, cutoff_ms, None):
                keys, _ = self._tree(txn, entry[_FILED.size :], now_ms, default_ms, cutoff_ms)
                if keys:
                    out += self._describe_tree(txn, keys)
                    roots += 1
                    if limit is not None and roots >= limit:
                        break
            return out

        result: list[dict[str, Any]] = self.env.read(scan)
        return result

    async def hide_expired(
        self, now: float, default_ms: int, cutoff: float | None, limit: int
    ) -> list[dict[str, Any]]:
        now_ms, cutoff_ms = round(now * 1000), None if cutoff is None else round(cutoff * 1000)

        def op(txn: _lmdb.Transaction) -> list[dict[str, Any]]:
            e = self.env.dbs
            hidden: list[dict[str, Any]] = []
            roots = 0
            # Read at most a few times the batch: runs put off are moved out of the way.
            for entry in self._due_roots(txn, now_ms, default_ms, cutoff_ms, 4 * limit):
                root = entry[_FILED.size :]
                keys, later = self._tree(txn, root, now_ms, default_ms, cutoff_ms)
                if not keys:
                    if later and cutoff_ms is None:  # comes due with its last descendant
                        txn.delete(entry, db=e.retain)
                        txn.put(later + root, b"", db=e.retain)
                    continue
                hidden += self._describe_tree(txn, keys)
                txn.delete(entry, db=e.retain)
                for key in keys:
                    # Every index of runs by key goes here with the row (records: sweep_hidden).
                    for db in (e.runs, e.leases, e.active):
                        txn.delete(key, db=db)
                    idempotency_key = txn.get(key, db=e.idempotency_of)
                    if idempotency_key is not None:  # a start with it makes a new run
                        txn.delete(bytes(idempotency_key), db=e.idempotency)
                        txn.delete(key, db=e.idempotency_of)
                    for child_entry in self._keys_from(txn, e.children, key, None):
                        txn.delete(child_entry, db=e.children)
                    txn.put(key, b"", db=e.hidden)  # its records go in later batches
                roots += 1
                if roots >= limit:
                    break
            return hidden

        result: list[dict[str, Any]] = await self.env.submit(op, notify=True)
        return result

    def _keys_from(
        self, txn: _lmdb.Transaction, db: int, prefix: bytes, most: int | None
    ) -> list[bytes]:
        """The keys (at most ``most``) of ``db`` that start with ``prefix``."""
        cursor = txn.cursor(db=db)
        found: list[bytes] = []
        if not cursor.set_range(prefix):
            return found
        for key in cursor.iternext(values=False):
            if (most is not None and len(found) >= most) or not bytes(key).startswith(prefix):
                break
            found.append(bytes(key))
        return found

    async def sweep_hidden(self, limit: int) -> tuple[int, int]:
        def op(txn: _lmdb.Transaction) -> tuple[int, int]:
            e = self.env.dbs
            deleted = cleared = 0
            for tombstone in self._keys_from(txn, e.hidden, b"", limit):
                for db in (e.journal, e.logs, e.events, e.attempts):
                    keys = self._keys_from(txn, db, tombstone, limit - deleted)
                    for key in keys:
                        txn.delete(key, db=db)
                    deleted += len(keys)
                    if deleted >= limit:
                        return deleted, cleared
                txn.delete(tombstone, db=e.hidden)
                cleared += 1
            return deleted, cleared

        result: tuple[int, int] = await self.env.submit(op)
        return result

    async def stats(self) -> dict[str, Any]:
        # Counting the runs of a large store takes seconds: in a thread, never on the
        # event loop, one count at a time, shared by the callers that ask meanwhile.
        counting = self._counting
        if counting is None:
            counting = asyncio.get_running_loop().run_in_executor(None, self._count)
            counting.add_done_callback(self._counted)
            self._counting = counting
        stats: dict[str, Any] = await asyncio.shield(counting)
        return {**stats, "runs": dict(stats["runs"])}

    def _counted(self, counting: asyncio.Future[dict[str, Any]]) -> None:
        self._counting = None
        if not counting.cancelled():
            counting.exception()  # retrieved here too when every caller was cancelled

    def _count(self) -> dict[str, Any]:
        """``stats``, read in read transactions of at most STATS_BATCH runs each, so that
        a count of a large store keeps neither old pages nor a map resize waiting long."""
        e = self.env.dbs
        runs = dict.fromkeys(STATUSES, 0)
        oldest: float | None = None
        start: bytes | None = None  # the first run not counted yet; None: the first run

        def batch(txn: _lmdb.Transaction) -> bytes | None:
            """Count STATS_BATCH runs from ``start``: the key to go on from, if any."""
            nonlocal oldest
            cursor = txn.cursor(db=e.runs)
            if not (cursor.first() if start is None else cursor.set_range(start)):
                return None
            for _ in range(STATS_BATCH):
                row = orjson.loads(cursor.value())
                runs[row["status"]] += 1
                if row["status"] in FINISHED and (oldest is None or row["updated_at"] < oldest):
                    oldest = row["updated_at"]
                if not cursor.next():
                    return None
            return bytes(cursor.key())

        start = self.env.read(batch)
        while start is not None:
            start = self.env.read(batch)

        def sizes(txn: _lmdb.Transaction) -> dict[str, Any]:
            page = txn.stat(e.runs)["psize"]
            info = self.env.env.info()
            return {
                "size": {
                    "used_bytes": (info["last_pgno"] + 1) * page,
                    "file_bytes": data_size(self.env.path),
                    "map_bytes": info["map_size"],
                    "page_bytes": page,
                },
                "hidden": txn.stat(e.hidden)["entries"],
            }

        return {**self.env.read(sizes), "runs": runs, "oldest_finished": oldest}


_CREATE_VALUES = attrgetter(*CREATE_FIELDS)  # a run's fields create_run may set, as given
# A run's row: its fields but the lease's (a row of their own) and the question (read
# from the journal), in RunInfo's order; read in one call.
_ROW_FIELDS = tuple(f for f in RUN_FIELDS if f not in ("owner", "lease_until", "fence", "question"))
_ROW_VALUES = attrgetter(*_ROW_FIELDS)


def _row(run: RunInfo) -> bytes:
    """A run's row as stored."""
    return orjson.dumps(dict(zip(_ROW_FIELDS, _ROW_VALUES(run), strict=True)))


class _CreateRun:
    """``create_run``'s op: one slotted object per new run, where a closure would make a
    function, its cells and their tuple (containers the collector sees while the commit
    is under way). Re-applied from scratch when a full map is grown. Its outcome is the
    run's fence, which ``create_run`` returns: the commit's own future is awaited, with
    no coroutine around it.

    Without an idempotency key, when the deployments last seen leave the run its
    version, the writer inserts its row and lease in one compiled call (``insert_run``),
    which checks that the deployments are still those. Otherwise, or once they changed,
    the writer decides in Python (``_create``)."""

    __slots__ = (
        "applied",
        "follow_deployment",
        "fresh",
        "given",
        "idempotency_key",
        "key",
        "lease_s",
        "now",
        "owner",
        "run",
        "seen",
        "store",
    )

    def __init__(
        self,
        store: LmdbStore,
        run: RunInfo,
        owner: str | None,
        lease_s: float,
        follow_deployment: bool,
        idempotency_key: str | None,
    ) -> None:
        self.store, self.run, self.owner, self.lease_s = store, run, owner, lease_s
        self.follow_deployment, self.idempotency_key = follow_deployment, idempotency_key
        self.given = run.version
        self.fresh = _CREATE_VALUES(run)
        self.applied = False
        self.key = run_key(run.run_id)
        self.now = time.time()
        self.seen: tuple[int, bytes] | None = None  # the deployments the version follows
        if idempotency_key is None:
            seen, deployed = store.env.dbs.deployments
            if not follow_deployment or deployed.get(run.workflow, run.version) == run.version:
                self.seen = seen

    def __call__(self, txn: _lmdb.Transaction) -> int:
        seen = self.seen
        if seen is None:
            return self._create(txn)
        store, run = self.store, self.run
        self._as_given()
        if self.owner is not None:
            store._take(run, self.owner, self.lease_s, self.now)  # noqa: SLF001
        lease = store._lease_row(run.fence, run.lease_until, run.owner)  # noqa: SLF001
        dbs = store.env.dbs
        status = txn.insert_run(
            dbs.runs, dbs.leases, dbs.active, dbs.deploys, self.key, _row(run), lease, *seen
        )
        if status == _lmdb.APPENDED:
            return run.fence
        if status == _lmdb.EXISTS:
            raise StoreError(f"a run {run.run_id} exists already in {store.url}")
        self.seen = None  # STALE: decided again below, from the deployments as stored
        return self._create(txn)

    def _as_given(self) -> None:
        """The run's fields as ``create_run`` was given them, when this op is applied again
        (a batch redone, a map grown, the deployments found changed)."""
        if self.applied:
            for name, value in zip(CREATE_FIELDS, self.fresh, strict=True):
                setattr(self.run, name, value)
        self.applied = True

    def _create(self, txn: _lmdb.Transaction) -> int:
        store, run, key, idempotency_key = self.store, self.run, self.key, self.idempotency_key
        dbs = store.env.dbs
        if idempotency_key is not None:
            taken = txn.get(idempotency_key.encode(), db=dbs.idempotency)
            if taken is not None:
                stored = store._load(txn, bytes(taken))  # noqa: SLF001 - its store's op
                if stored is None:
                    raise StoreError(f"idempotency key {idempotency_key!r} names no run")
                vars(run).update(vars(stored))
                return run.fence
        if txn.get(key, db=dbs.runs) is not None:
            raise StoreError(f"a run {run.run_id} exists already in {store.url}")
        if idempotency_key is not None:
            txn.put(idempotency_key.encode(), key, db=dbs.idempotency)
            txn.put(key, idempotency_key.encode(), db=dbs.idempotency_of)
        deployed = dbs.deployed_version(txn, run.workflow) if self.follow_deployment else None
        self._as_given()
        if deployed is not None and deployed != self.given:
            run.version = deployed  # pending, for a worker serving that version
        elif self.owner is not None:
            store._take(run, self.owner, self.lease_s, self.now)  # noqa: SLF001
        store._save(txn, run, new=True)  # noqa: SLF001
        return run.fence


class _Finish:
    """``finish``'s op, slotted as ``_CreateRun`` is: the stored row changed in place
    (what ``_save`` would write, without making a ``RunInfo`` of it and taking that apart
    again: the run's last write)."""

    __slots__ = (
        "error",
        "fence",
        "filed",
        "keep",
        "key",
        "lease",
        "now",
        "result",
        "run_id",
        "status",
        "store",
    )

    def __init__(
        self,
        store: LmdbStore,
        run_id: str,
        fence: int,
        status: str,
        result: Any,
        error: dict[str, Any] | None,
        keep: int,
    ) -> None:
        self.store, self.run_id, self.fence = store, run_id, fence
        self.status, self.result, self.error, self.keep = status, result, error, keep
        self.key = run_key(run_id)
        # What the writer thread writes beside the row, made here: the lease ended (nobody
        # holds the run) and the run filed for the purge by its finish time.
        self.now = now = time.time()
        self.lease = _lease_bytes(fence, 0.0, None)
        self.filed = _FILED.pack(keep & _U64, round(now * 1000))

    def __call__(self, txn: _lmdb.Transaction) -> None:
        store = self.store
        e = store.env.dbs
        key = self.key
        status, raw = txn.fenced_value(e.leases, e.runs, key, self.fence)
        if status != _lmdb.APPENDED:
            raise store._fence_failure(status, self.run_id, self.fence)  # noqa: SLF001
        if raw is None:
            raise StoreError(f"run {self.run_id} has a lease but no row")
        row = orjson.loads(raw)
        if row["status"] != RUNNING:
            if row["status"] == self.status:
                return  # finished with this outcome already: the same write again
            raise LeaseLostError(self.run_id, self.fence)  # given back, or fenced out
        now = self.now
        row.update(status=self.status, result=self.result, error=self.error, updated_at=now)
        encoded = orjson.dumps(row)
        parent_id = row.get("parent_id")
        if parent_id is None:  # row, lease, active and retain in one compiled call
            txn.end_run(e.runs, e.leases, e.active, e.retain, key, encoded, self.lease, self.filed)
            return
        txn.put(key, encoded, db=e.runs)
        txn.put(key, self.lease, db=e.leases)
        txn.delete(key, db=e.active)
        store._file_finished(txn, key, parent_id, now, self.keep)  # noqa: SLF001


def _append_failure(status: int, key: bytes, seq: int) -> BaseException:
    """The error of a record that ``put_record`` refused with ``status``."""
    if status == _lmdb.RECORDED_ALREADY:
        return _recorded_already(key, seq)
    assert status == _lmdb.CORRUPT_CHUNK, status
    return JournalCorruptError(
        f"a chunk of the journal of steps {seq >> CHUNK_SHIFT << CHUNK_SHIFT}.."
        f"{(seq >> CHUNK_SHIFT << CHUNK_SHIFT) + (1 << CHUNK_SHIFT) - 1} cannot be read",
        run_id=bytes(key[: _core.RUN_KEY_SIZE]).hex(),
    )


def _recorded_already(key: bytes, seq: int) -> StoreError:
    """A second record for a step: refused (a journal keeps one record per step)."""
    run_id = bytes(key[: _core.RUN_KEY_SIZE]).hex()
    return StoreError(f"run {run_id}: step {seq} has a record already")


def _signed(keep: int) -> int:
    """A policy as filed (u64) back to the store's number (KEEP_FOREVER, KEEP_DEFAULT < 0)."""
    return keep - (1 << 64) if keep >> 63 else keep


def _due_at(keep: int, finished_ms: int, default_ms: int) -> float:
    """When a run may go by its policy (epoch ms; infinity: never)."""
    keep = default_ms if keep == KEEP_DEFAULT else keep
    return math.inf if keep == KEEP_FOREVER else finished_ms + keep


def _purged(run: RunInfo, root: str) -> dict[str, Any]:
    """A run a purge removes, as its report lists it."""
    return {
        "run_id": run.run_id,
        "root": root,
        "workflow": run.workflow,
        "status": run.status,
        "finished_at": run.updated_at,
    }


def _after_prefix(prefix: bytes) -> bytes | None:
    """The least key above every key that starts with ``prefix``; None: there is none."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


def _timer_key(wake_at: float, key: bytes) -> bytes:
    # Rounded up: a run whose timer key is due is due by claimable() too.
    return _MS.pack(math.ceil(wake_at * 1000)) + key


def _last_key(cursor: _lmdb.Cursor, prefix: bytes) -> bytes | None:
    """The last key that starts with ``prefix`` (followed by an 8-byte counter)."""
    moved = cursor.prev() if cursor.set_range(prefix + b"\xff" * 9) else cursor.last()
    return bytes(cursor.key()) if moved and bytes(cursor.key()).startswith(prefix) else None


def _state_key(scope: str, key: str) -> bytes:
    return scope.encode() + b"\x00" + key.encode()


def _subscription_key(name: str, workflow: str) -> bytes:
    return name.encode() + b"\x00" + workflow.encode()


def _event_prefix(key: bytes, name: str) -> bytes:
    return key + name.encode() + b"\x00"
