"""The embedded store's commit-log mode (``LmdbStore(commit="log")``): a journal append
is acknowledged after one flush of this process's commit log (``store/commit_log.py``)
and applied to LMDB afterwards, in the writer thread's group commits (sync commits).
CONTRIBUTING.md ("The commit log") gives the design and the fencing argument; here:

- ``LogMode.append``: a run stepping alone (the last write of this process was of it,
  and nothing is queued for LMDB) goes through the log: the run's fence, and that the
  step has no record yet, checked in a read of LMDB and the overlay; the record written
  to the log and flushed on the caller's thread; handed to the LMDB writer's next
  commit; then acknowledged if the lease had not ended by the clock read after that,
  else once LMDB's own commit of it (fenced there) returned. Appends of runs stepping
  together go to LMDB's group commit (its two flushes shared by them all), behind the
  log's applies acknowledged before them;
- the overlay: this process's acknowledged appends not yet applied, which its journal
  reads merge;
- the LMDB writer's hooks (``take_applies``, ``marked``, ``stamp``, ``committed``):
  every commit of the writer takes the applies acknowledged so far, first; without
  another op they wait up to ``lmdb_env.APPLY_INTERVAL`` for one (the writer is told
  once, not woken per apply); every commit stamps this process's *applied mark* (a
  monotonic time before which every record flushed and acknowledged is in that commit or
  an earlier one); after a commit the log may recycle what LMDB now holds;
- ``recover``: the logs of processes that are gone, applied and removed;
- ``may_take_over``: the claim's rule for an expired lease whose holder had a log.

A log record's payload: run key | fence u64 | step u32 (big-endian) | journal record.
A mark row (``commit_logs``): ``host:pid`` -> log id (16 bytes) | mark f64 (monotonic) |
LSN u64 (little-endian).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol, TypeVar

from .. import _core, _lmdb
from ..errors import StoreError, StoreFullError
from . import commit_log
from .base import Owner
from .commit_log import CommitLog, LogError, dead_logs

ROOT = "commit-log"  # under the store's directory
MARKS_DB = b"commit_logs"
_PAYLOAD = struct.Struct(f">{_core.RUN_KEY_SIZE}sQI")
_MARK = struct.Struct("<16sdQ")
_FORMAT_1 = 1  # a record's first byte: its format
_log = logging.getLogger("surestep.store")
# How often an idle process looks after its log: its applied mark moved past the leases
# it wrote that have ended (else another process may not take them while it lives), and
# the segment it writes retired once everything in it is applied.
TIDY_EVERY = 1.0
LOG_BYTES = (1 + commit_log.SPARES) * commit_log.SEGMENT_BYTES  # a process's log on disk

Outcome = tuple[Any, BaseException | None]
T = TypeVar("T")


class Appending(Protocol):
    """The store's append op (``lmdb_env.Append``)."""

    @property
    def run_key(self) -> bytes: ...
    @property
    def fence(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def record(self) -> bytes: ...
    def failure(self, status: int) -> BaseException: ...


class Databases(Protocol):
    @property
    def journal(self) -> int: ...
    @property
    def leases(self) -> int: ...
    @property
    def commit_logs(self) -> int | None: ...


class Writer(Protocol):
    """What this mode needs of the LMDB environment (``lmdb_env.Env``)."""

    @property
    def path(self) -> str: ...
    def read(self, fn: Callable[[_lmdb.Transaction], T], buffers: bool = True) -> T: ...
    @property
    def queued(self) -> int: ...
    def apply(self, op: Any) -> None: ...
    def applies_due(self) -> None: ...
    def follows(self, run: bytes) -> bool: ...
    def enqueue(self, op: Any) -> Awaitable[Any]: ...


def has_logs(path: str) -> bool:
    """Whether the store at ``path`` has commit logs (this process's, or others')."""
    try:
        return bool(os.listdir(os.path.join(path, ROOT)))
    except FileNotFoundError:
        return False


def identity() -> bytes:
    """This process, as a mark row's key: how an owner string (``Owner``) starts."""
    return f"{socket.gethostname()}:{os.getpid()}".encode()


def payload(op: Appending) -> bytes:
    return _PAYLOAD.pack(op.run_key, op.fence, op.seq) + op.record


def decode(data: bytes) -> tuple[bytes, int, int, bytes]:
    """A log record's run key, fence, step and journal record."""
    key, fence, seq = _PAYLOAD.unpack_from(data)
    return key, fence, seq, data[_PAYLOAD.size :]


def may_take_over(
    txn: Any, marks: int | None, owner: str | None, lease_end: float, path: str
) -> bool:
    """Whether a claim may take a lease of ``owner`` that ended at ``lease_end`` (on the
    monotonic clock) in the store at ``path``: yes unless the owner's process has a log
    whose applied mark is before the lease's end (an append it acknowledged may not be in
    LMDB yet: its log is applied by that process, or by ``recover`` once it is gone). A
    mark whose log is gone was left by a process that applied everything."""
    if marks is None or owner is None:
        return True
    parsed = Owner.parse(owner)
    if parsed is None:
        return True
    row = txn.get(f"{parsed.host}:{parsed.pid}".encode(), db=marks)
    if row is None:
        return True
    log_id, mark, _ = _MARK.unpack_from(row)
    return mark >= lease_end or not os.path.isdir(os.path.join(path, ROOT, log_id.hex()))


class _Pending:
    """An append flushed to the log and queued for LMDB: its LSN, and who waits for its
    LMDB commit (only when its lease ended before it could be acknowledged)."""

    __slots__ = ("lsn", "op", "outcome", "waiter")

    def __init__(self, op: Appending, lsn: int) -> None:
        self.op, self.lsn = op, lsn
        self.waiter: tuple[asyncio.Future[None], Any] | None = None
        self.outcome: tuple[BaseException | None] | None = None


class _Yield:
    """An acknowledged inline append: awaiting it gives the event loop one turn (the
    loop waited for the flush; its other tasks get to run)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield


_YIELD = _Yield()


class LogMode:
    """The commit-log mode of one environment (one per store directory and process).
    ``lease_of``: a stored lease's fence and end (monotonic)."""

    def __init__(
        self,
        env: Writer,
        dbs: Callable[[], Databases],
        lease_of: Callable[[Any], tuple[int, float]],
    ) -> None:
        self.env = env
        self._dbs = dbs
        self._lease_of = lease_of
        self.key = identity()
        self.log_id = uuid.uuid4().bytes  # in every mark, before its log exists
        self.log: CommitLog | None = None  # made by the first append (``_made``)
        self._making = threading.Lock()
        self._lock = threading.Lock()  # what follows, between the loop, writer and tidying
        self._overlay: dict[bytes, dict[int, bytes]] = {}  # run key -> step -> record
        self._pending: dict[int, _Pending] = {}  # id(op) -> its entry, until applied
        self._applies: list[Appending] = []  # acknowledged, for the writer's next commit
        self._applies_due = False  # the writer was told of them (Env.applies_due)
        # One thread checks, writes the log and queues what it wrote at a time, so LMDB
        # gets the records in LSN order and what is pending covers every unapplied one.
        self._appending = threading.Lock()
        self.failed: StoreError | None = None
        self._mark = self._stamped_at = self._appended_at = time.monotonic()
        self._mark_committed = self._mark  # the mark of the last commit that was written
        self._unmarked = False  # closing: the mark is removed, never written again
        # The ends (monotonic) of leases this process wrote that its mark has not passed.
        self._lease_ends: list[float] = []
        self._spare_wanted = threading.Event()
        self._stopping = False
        self._spares = threading.Thread(
            target=self._tidy_loop, name="surestep-log-tidy", daemon=True
        )
        self._spares.start()

    # -- on the caller's thread

    def append(self, op: Appending) -> Awaitable[None]:
        """Append ``op``'s record (the awaitable raises what the store's append raises):
        through the log when its run writes alone, else in LMDB's next group commit."""
        if self.failed is not None:
            return _failed(asyncio.get_running_loop(), self.failed)
        lone = self.env.follows(op.run_key)
        # Only with nothing queued for LMDB: a write queued before (another run's, or this
        # run's not waited for) must not end up behind this one.
        if (
            not lone
            or self.env.queued
            or len(op.record) > self._room()
            or not self._appending.acquire(blocking=False)
        ):
            # Appends of several runs share LMDB's group commit, whose two flushes then
            # cost each little; the writer commits the log's applies queued before it
            # first, so LMDB still holds a prefix of this process's writes.
            return self.env.enqueue(op)
        try:  # a run stepping alone: one flush of the log, on this thread
            loop = asyncio.get_running_loop()  # (looked up here: enqueue looks it up itself)
            try:
                lease_end = self._check(op)
            except BaseException as exc:  # LeaseLostError is one
                return _failed(loop, exc)
            try:
                lsn = self._made().append([payload(op)])
            except LogError as exc:
                return _failed(loop, self._fail(exc))
            entry = self._acknowledge(op, lsn)
            now = time.monotonic() < lease_end  # (read after it was handed over)
        finally:
            self._appending.release()
        if now:
            return _YIELD
        fut: asyncio.Future[None] = loop.create_future()
        self._wait_for_lmdb(entry, fut, loop)
        return fut

    def _room(self) -> int:
        """The largest journal record one of the log's segments takes (a larger one goes
        to LMDB, which takes any)."""
        size = commit_log.SEGMENT_BYTES if self.log is None else self.log.segment_bytes
        return size - commit_log.HEADER_BYTES - commit_log.FRAME_OVERHEAD - _PAYLOAD.size

    def _made(self) -> CommitLog:
        """This process's log, made by its first append: a process that appends nothing
        (a client, a CLI command) writes no segment. Its id is in every mark from the
        first, and a mark whose log directory does not exist decides nothing: nothing
        was appended through it."""
        log = self.log
        if log is None:
            with self._making:
                log = self.log
                if log is None:
                    try:
                        # (The module's settings read now: the power-loss test puts its
                        # model of the disk, and small segments, there.)
                        log = CommitLog(
                            os.path.join(self.env.path, ROOT),
                            segment_bytes=commit_log.SEGMENT_BYTES,
                            files=commit_log.FILES,
                            log_id=self.log_id,
                        )
                    except OSError as exc:
                        raise LogError(f"cannot make the commit log: {exc}") from exc
                    self.log = log
        return log

    def _check(self, op: Appending) -> float:
        """The run's lease end (monotonic), if ``op`` may be appended; else its error."""
        dbs = self._dbs()

        def check(txn: _lmdb.Transaction) -> tuple[int, bytes | None]:
            return txn.append_status(dbs.journal, dbs.leases, op.run_key, op.fence, op.seq)

        # The overlay before LMDB: a record leaves the overlay only once LMDB holds it,
        # so one of the two reads finds a record appended before this check (none is
        # added meanwhile: the check is made under ``_appending``).
        with self._lock:
            known = op.seq in self._overlay.get(op.run_key, ())
        status, lease = self.env.read(check)
        if status == _lmdb.APPENDED and known:
            status = _lmdb.RECORDED_ALREADY
        if status != _lmdb.APPENDED or lease is None:
            raise op.failure(status)
        return self._lease_of(lease)[1]

    def _acknowledge(self, op: Appending, lsn: int) -> _Pending:
        """Put a flushed record in the overlay and hand it to LMDB's next commit (under
        ``_appending``). It may be acknowledged if its lease had not ended by the clock
        read *after* this (the applied mark's rule needs that order)."""
        entry = _Pending(op, lsn)
        self._appended_at = time.monotonic()
        with self._lock:
            self._overlay.setdefault(op.run_key, {})[op.seq] = op.record
            self._pending[id(op)] = entry
            self._applies.append(op)
            due, self._applies_due = self._applies_due, True
        if not due:
            self.env.applies_due()
        return entry

    def _fail(self, exc: BaseException) -> StoreError:
        cause = exc.__cause__
        full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
        self.failed = self.failed or (StoreFullError if full else StoreError)(
            f"the commit log of the store at {self.env.path!r} failed, nothing more is "
            f"written through it (what it acknowledged is applied at the next open): {exc}"
        )
        return self.failed

    def unapplied(self, run_key: bytes) -> dict[int, bytes]:
        """This process's appends to the run that LMDB may not hold yet, by sequence.
        Read it before LMDB: a record leaves the overlay only once LMDB holds it."""
        with self._lock:
            return dict(self._overlay.get(run_key, {}))

    # -- acknowledged after LMDB's commit

    def _wait_for_lmdb(self, entry: _Pending, fut: asyncio.Future[None], loop: Any) -> None:
        """Settle ``fut`` with the outcome of the LMDB commit of ``entry``'s append, where
        its fence is checked (an append whose lease ended before it could be
        acknowledged): at once if that commit was made already."""
        with self._lock:
            if entry.outcome is None:
                entry.waiter = (fut, loop)
                self.env.apply(_mark_only)  # a commit now, which takes the applies
                return
            error = entry.outcome[0]
        _settle_threadsafe(loop, fut, error)

    def _tidy_loop(self) -> None:
        """Makes a spare segment when one is wanted (``CommitLog.wants_spare``), off every
        critical path; and every TIDY_EVERY seconds, tidies up after an idle spell
        (``_tidy``)."""
        while True:
            wanted = self._spare_wanted.wait(TIDY_EVERY)
            self._spare_wanted.clear()
            if self._stopping:
                return
            try:
                if wanted and self.log is not None and self.log.wants_spare():
                    self.log.prepare()
                self._tidy()
            except OSError as exc:  # a full disk, say: the append that rolls makes one
                _log.warning("cannot prepare a commit log segment: %s", exc)

    def _tidy(self) -> None:
        """With no append for TIDY_EVERY and every record applied: retire the segment
        being written. With no commit for TIDY_EVERY and a lease this process wrote
        ended after its mark: a commit, to move the mark past it."""
        now = time.monotonic()
        log = self.log
        if (
            log is not None
            and now - self._appended_at >= TIDY_EVERY
            and log.applied_lsn >= log.last_lsn
            and self._appending.acquire(blocking=False)
        ):
            try:
                log.retire_tail()
            finally:
                self._appending.release()
        with self._lock:
            ends = self._lease_ends
            while ends and ends[0] <= self._mark_committed:
                heapq.heappop(ends)
            due = bool(ends) and ends[0] <= now and now - self._stamped_at >= TIDY_EVERY
            # Applies whose commit failed (a full disk, say) ride the next commit; with
            # none coming, one is tried now and then (they may fit once space is freed).
            retry = bool(self._applies) and self.failed is not None
        if (due and self.failed is None) or retry:
            self.env.apply(_mark_only)

    def leased(self, end: float) -> None:
        """This process wrote a lease ending at ``end`` (monotonic; 0: none)."""
        if end > 0:
            with self._lock:
                heapq.heappush(self._lease_ends, end)

    # -- the LMDB writer's hooks, on its thread

    def take_applies(self) -> list[Any]:
        """The appends acknowledged since the last commit took them, oldest first."""
        with self._lock:
            applies, self._applies = self._applies, []
            self._applies_due = False
        return applies

    def marked(self, when: float) -> None:
        """Every apply acknowledged before ``when`` (monotonic) is in the commit about to
        be made, or in an earlier written one (a mark never goes back)."""
        self._mark = max(self._mark, when)

    def stamp(self, txn: Any) -> None:
        """Write this process's applied mark in the transaction about to commit."""
        marks = self._dbs().commit_logs
        if marks is not None and not self._unmarked:
            lsn = self.log.last_lsn if self.log is not None else 0
            row = _MARK.pack(self.log_id, self._mark, lsn)
            txn.put(self.key, row, db=marks)
            self._stamped_at = time.monotonic()

    def committed(self, ops: list[Any], outcomes: list[Outcome], written: bool) -> None:
        """After a commit (``written``) or a failed one (under ``_writing``, as the
        commit): settle the applies in it, prune the overlay, and let the log recycle
        what LMDB now holds. An apply that was not written stops this mode (every append
        of the process fails after it, the group-committed ones too) and goes first into
        the next commit again (no later write of the process may reach LMDB without it);
        the log keeps it for the next open meanwhile. Whoever waits for it hears the
        failure."""
        applied = 0
        wake: list[tuple[asyncio.Future[None], Any, BaseException | None]] = []
        unwritten: list[Appending] = []
        with self._lock:
            if written:
                self._mark_committed = self._mark
            # (Nothing of the log pending, as when many runs share LMDB's commits: no op
            # of this commit is one of its applies, and none is looked up.)
            for op, (_, error) in zip(ops, outcomes, strict=True) if self._pending else ():
                entry = self._pending.get(id(op))
                if entry is None:
                    continue
                if not written:
                    # The cause's type kept: a full map or disk is StoreFullError.
                    kind = StoreFullError if isinstance(error, StoreFullError) else StoreError
                    self.failed = self.failed or kind(
                        f"the store at {self.env.path!r} could not apply its commit log "
                        f"(kept for the next open): {error}"
                    )
                    unwritten.append(op)
                    if entry.waiter is not None:
                        wake.append((*entry.waiter, self.failed))
                        entry.waiter = None
                    continue
                del self._pending[id(op)]
                if error is not None:  # refused by LMDB: its fence moved, or it was there
                    _log.warning("an append in the commit log was not applied: %s", error)
                entry.outcome = (error,)
                applied = max(applied, entry.lsn)
                steps = self._overlay.get(op.run_key)
                if steps is not None:
                    steps.pop(op.seq, None)
                    if not steps:
                        del self._overlay[op.run_key]
                if entry.waiter is not None:
                    wake.append((*entry.waiter, error))
            self._applies[:0] = unwritten
            below = min((entry.lsn for entry in self._pending.values()), default=applied + 1)
        for fut, loop, error in wake:
            _settle_threadsafe(loop, fut, error)
        if applied and self.log is not None:  # (made: it acknowledged what was applied)
            try:
                self.log.applied(min(applied, below - 1))
            except OSError as exc:  # what it holds is in LMDB: recycling can wait
                _log.warning("cannot recycle a commit log segment: %s", exc)
            if self.log.wants_spare():
                self._spare_wanted.set()

    def unmark(self, txn: Any) -> None:
        """Remove this process's mark as it closes, in the commit of its last applies
        (every one acknowledged: if that commit fails, the mark stays with the log, for
        ``recover`` to remove both)."""
        marks = self._dbs().commit_logs
        if marks is not None:
            txn.delete(self.key, db=marks)
            self._unmarked = True

    def close(self) -> None:
        """After the writer applied everything queued: close the log (removed when it
        holds nothing LMDB lacks) and stop making spares."""
        self._stopping = True
        self._spare_wanted.set()
        self._spares.join()
        if self.log is not None:
            self.log.close()


async def recover(path: str, dbs: Databases, submit: Callable[[Any], Awaitable[Any]]) -> int:
    """Apply the log of every process that is gone, one transaction per log, and remove
    it; the number of records read (one LMDB holds already, or whose run's fence moved,
    changes nothing: applying twice is harmless)."""
    count = 0
    for dead in dead_logs(os.path.join(path, ROOT)):
        try:
            records = [_Recovered(*decode(r.payload)) for r in dead.records()]

            def op(
                txn: Any, records: list[_Recovered] = records, log_id: bytes = dead.log_id
            ) -> None:
                if records:
                    txn.append_records(dbs.journal, dbs.leases, records)
                if dbs.commit_logs is not None:
                    for key, value in list(txn.cursor(db=dbs.commit_logs)):
                        if bytes(value[:16]) == log_id:
                            txn.delete(bytes(key), db=dbs.commit_logs)

            await submit(op)
        except BaseException:
            dead.release()
            raise
        dead.remove()
        count += len(records)
    return count


def _mark_only(txn: Any) -> None:
    """A commit of nothing but this process's applied mark (which every commit stamps)."""


class _Recovered:
    """A dead log's append, for ``append_records``."""

    __slots__ = ("fence", "record", "run_key", "seq")

    def __init__(self, run_key: bytes, fence: int, seq: int, record: bytes) -> None:
        self.run_key, self.fence, self.seq, self.record = run_key, fence, seq, record


def _failed(loop: asyncio.AbstractEventLoop, error: BaseException) -> asyncio.Future[None]:
    fut: asyncio.Future[None] = loop.create_future()
    fut.set_exception(error)
    return fut


def _resolve(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.cancelled():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


def _settle_threadsafe(loop: Any, fut: asyncio.Future[None], error: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(_resolve, fut, error)


def with_unapplied(stored: list[bytes], mine: dict[int, bytes]) -> list[bytes]:
    """``stored`` (the run's journal values in LMDB, read after ``LogMode.unapplied``)
    and those of ``mine`` it does not hold."""
    if not mine:
        return stored
    extra = [
        record
        for seq, record in sorted(mine.items())
        if not any(_holds(value, seq) for value in stored)
    ]
    return stored + extra


def _holds(value: bytes, seq: int) -> bool:
    """Whether a journal value holds a record of step ``seq``: format-2 records back to
    back, or one record of format 1 (surestep 0.1's, alone in its value)."""
    if value[0] == _FORMAT_1:
        return bool(_core.decode_record(value).seq == seq)
    return bool(_core.holds_record(value, seq))
