"""The LMDB environment under the embedded store (``store/lmdb.py``): opening and
locking it, its writer thread and group commit, growing the map, a full disk, and read
transactions. It knows nothing of what the store keeps: the store hands it a ``layout``
that opens the store's named databases, and ops (callables on a write transaction).

The interface the store uses:

- ``acquire(path, durability, map_size, max_map_size, readonly, layout)`` /
  ``release(env)``: the process's one ``Env`` of a path, counted by its users;
- ``Env.dbs``: what ``layout`` returned; ``Env.read(fn)``: ``fn(txn)`` in a read
  transaction; ``Env.submit(op)``: ``op(txn)`` committed in the next group commit;
- ``Append``: the one op the binding commits in compiled code (``_lmdb``'s
  ``commit_append``, ``append_records``), into the ``journal`` and ``leases`` databases
  that ``layout`` opened; its owner turns a refusal into the caller's error.

Writes go through one writer thread per environment that does group commit:
every operation queued while the previous transaction committed rides the next
one, and each caller's future is resolved after its commit. Handing an op to
that thread and its outcome back costs two thread wake-ups (15-60 us on a VM,
see benchmarks/RESULTS.md), so a journal append is committed inline, on the
caller's thread, when there is nothing to group it with:

- at ``durability="process"`` always, and so is any op submitted as ``small`` (a
  run's creation and its finish): the commit writes to the page cache only, a few
  microseconds, and the writer thread would hold the GIL longer to run the op than
  the whole inline commit takes;
- at ``durability="fsync"`` when the append (or the small op) follows a write of
  the same run, with no other write submitted in between: one run alone, its first
  step after its creation, each next step, its finish. The event loop then waits
  for that one commit (the fsync), and gets a turn after it, so other tasks wait
  one commit at most; the two hand-offs to the writer thread and back, and the
  loop's wake-up from its sleep, cost more than that on a lone run. With two runs
  stepping, their writes alternate and share the writer thread's commits.

Both only when nothing is queued before the op, the writer thread is idle
and no other process has the store open (LMDB's write lock is shared between
processes: waiting for another one's transaction must not stop an event loop);
otherwise the op is queued, which keeps the order of operations. The wake-ups an
inline commit owes other waiters are sent once per turn of the event loop, as the
writer thread sends one per group commit.

An environment opened read-only has no writer thread and sends no wake-ups; every
write is refused with ``StoreError``.

Commits write pages through a writable map where the data file can be allocated
to the map's size first (``WRITEMAP``, ``_map_lock``). Reads are short
read-only transactions on the caller's thread (a memory-mapped B-tree lookup;
no system call on a warm map).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, Protocol, TypeVar

from .. import _lmdb
from ..errors import ConfigurationError, LeaseLostError, StoreError, StoreFullError, SurestepError
from .wake import WakeListener, WakeSender, others_registered

READONLY = "readonly"  # the mode of an environment opened only to read (see acquire)
DEFAULT_MAP_SIZE = 1 << 20  # to start (allocated on disk, see WRITEMAP); doubled when full
MAX_MAP_SIZE = 1 << 40
# Pages are written through a writable map (a commit without sync then makes no write
# system call: 2 us instead of 6, benchmarks/RESULTS.md) where the data file can be
# allocated up to the map's size before anything is written there, so that no write
# meets a block the disk cannot supply (a SIGBUS): a full disk shows when the map grows,
# as StoreFullError. That is on Linux, on a filesystem that allocates (fallocate(2))
# and rewrites a block in place; the store's filesystem decides it, so every process of
# a store agrees. Elsewhere (macOS; filesystems that cannot allocate; copy-on-write ones,
# COPY_ON_WRITE) with pwrite.
WRITEMAP = sys.platform.startswith("linux")
# statfs(2) magic numbers of filesystems that write a changed block somewhere new: a
# block allocated in advance does not make room for its next write there, so a write
# through the map could still meet a full disk (SIGBUS), where pwrite meets ENOSPC.
COPY_ON_WRITE = {0x9123683E: "btrfs", 0x2FC12FC1: "zfs", 0xCA451A4E: "bcachefs"}
MAX_BATCH = 8192
INLINE_YIELD_EVERY = 32  # inline commits without sync between two turns of the event loop
ALONE_RECHECK = 0.1  # seconds between two looks for other processes on the store
APPLY_INTERVAL = 0.010  # seconds the commit log's applies wait for others to share a commit

Op = Callable[[_lmdb.Transaction], Any]
_DONE: tuple[None, None] = (None, None)  # the outcome of an op that returned None
# op, its future and the future's loop (None: nobody waits, as for the commit log's
# applies), notify
_Item = tuple[Op, "asyncio.Future[Any] | None", Any, bool]
_Outcome = tuple[Any, BaseException | None]  # an op's result, or its error
# For one loop: the futures of a commit, their outcomes (in step), the listeners to wake
_ForLoop = tuple[list["asyncio.Future[Any]"], list[_Outcome], list[WakeListener]]


def _take_applies(txn: _lmdb.Transaction) -> None:
    """The queue's marker for the commit log's applies (``Env.applies_due``)."""


_APPLIES: _Item = (_take_applies, None, None, False)


def _applies(log: LogHook, mark: float) -> list[_Item]:
    """The commit log's applies for the commit about to be made, all of them, handed
    over before ``mark`` (under ``_writing``, where the mark is stamped: no other commit
    can stamp a later mark before this one holds what it says)."""
    log.marked(mark)
    return [(op, None, None, False) for op in log.take_applies()]


class AppendDatabases(Protocol):
    """What a layout opens for ``Append``: the databases the binding's compiled append
    writes a record into and checks its fence in."""

    @property
    def journal(self) -> int: ...
    @property
    def leases(self) -> int: ...


D = TypeVar("D", bound=AppendDatabases)
T = TypeVar("T")
# Opens the named databases in an environment (opened read-only: the bool) and returns
# them; retried if another process resizes the map meanwhile.
Layout = Callable[[_lmdb.Environment, bool], D]


class AppendOwner(Protocol):
    """The store an ``Append`` is for: its environment, and what a refused append means."""

    @property
    def env(self) -> Env[Any]: ...
    def append_refused(self, op: Append, status: int) -> BaseException: ...


class Append:
    """An op that appends one record to a run's journal, committed by the binding in
    compiled code (``_lmdb``'s ``commit_append``, ``append_records``): one object where a
    closure would allocate seven for the garbage collector to track (one per step, many
    in flight). The writer thread applies a run of them in one compiled call
    (``Env._commit``)."""

    __slots__ = ("fence", "owner", "record", "run_id", "run_key", "seq")

    def __init__(
        self, owner: AppendOwner, run_id: str, run_key: bytes, fence: int, seq: int, record: bytes
    ) -> None:
        self.owner, self.run_id, self.run_key, self.fence, self.seq, self.record = (
            owner, run_id, run_key, fence, seq, record,
        )  # fmt: skip

    def __call__(self, txn: _lmdb.Transaction) -> None:
        env = self.owner.env
        status = txn.append_records(env.journal, env.leases, [self])[0]
        if status != _lmdb.APPENDED:
            raise self.failure(status)

    def failure(self, status: int) -> BaseException:
        """The error of an append that the binding refused with ``status``."""
        return self.owner.append_refused(self, status)


class LogHook(Protocol):
    """A commit log in front of this environment (``store/lmdb_log.py``): the writer
    thread takes its applies into every commit, stamps its mark there, and tells it what
    each commit did."""

    def take_applies(self) -> list[Op]: ...
    def marked(self, when: float) -> None: ...
    def stamp(self, txn: _lmdb.Transaction) -> None: ...
    def committed(
        self, ops: list[Op], outcomes: list[tuple[Any, BaseException | None]], written: bool
    ) -> None: ...
    def unmark(self, txn: _lmdb.Transaction) -> None: ...
    def close(self) -> None: ...


class Env(Generic[D]):
    """One open LMDB environment and its writer thread, shared by every store on the path;
    ``dbs``: the databases its ``layout`` opened."""

    def __init__(
        self,
        path: str,
        durability: str,
        map_size: int,
        max_map_size: int,
        layout: Layout[D],
        readonly: bool = False,
    ) -> None:
        self.path = path
        self.durability = durability
        self.max_map_size = max_map_size
        self.readonly = readonly
        self.users = 0
        self.log: LogHook | None = None  # a commit log in front (commit="log")
        if readonly:
            self._open_readonly(layout)
            return
        free = _free_bytes(path)
        if free is not None and free < MIN_FREE_BYTES:
            # LMDB writes its lock file through mmap: on a full disk that is a SIGBUS.
            raise StoreFullError(
                f"cannot open the store at {path!r}: the disk is full ({free} bytes free)"
            )
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            self.writemap = _reserve_lock_file(path) and WRITEMAP
            with self._sizing():
                self._open_env(map_size)
                self._open_dbs(layout)
        except BaseException as exc:
            env = getattr(self, "env", None)
            if env is not None:
                env.close()  # not left to the collector: closing drops this process's locks
            if isinstance(exc, (_lmdb.Error, OSError)):
                raise _store_error(exc, f"cannot open the store at {path!r}") from exc
            raise
        # Resizing the map needs no transaction open in this process. Read transactions
        # share this gate, a resize has it alone; write transactions and resizes hold
        # _writing (below), so a write never meets a resize and never waits for a read.
        self.resize_gate = _ResizeGate()
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # One writing thread of this process at a time: the writer thread, or an inline
        # commit, never ahead of an op already queued for the writer thread; a resize
        # of the map, too.
        self.synced = durability == "fsync"
        self._writing = threading.Lock()
        # One entry per op queued and not yet committed: appended by whichever thread
        # queues it (event loops of several engines, the commit log's threads), a slice
        # deleted by the writer thread once committed. Each is one step under the GIL, so
        # the count needs no lock (a shared int's += and -= would lose updates).
        self._queued: list[None] = []
        self._inline_run = 0  # inline commits since the caller last yielded to its loop
        self._last_run: bytes | None = None  # the run key of the last op, when one run's
        self._notify_due = False  # a wake-up for inline commits is on the loop's way
        self._alone_now, self._alone_checked = False, -math.inf
        self._written = False  # whether the last _commit committed
        self.waker = WakeSender(path)
        self._thread = threading.Thread(
            target=self._write_loop, name="surestep-writer", daemon=True
        )
        self._thread.start()

    def _open_readonly(self, layout: Layout[D]) -> None:
        """Open for reading only, with no writer thread and no wake-ups sent. Without
        LMDB's reader table when this process may not write the lock file: then a writer
        in another process could reuse pages a long read still looks at, so reads here
        are short (one listing, one run)."""
        if not os.path.isdir(self.path):
            raise StoreError(f"cannot open the store at {self.path!r}: no such directory")
        lock = os.access(os.path.join(self.path, "lock.mdb"), os.W_OK)
        self.writemap = False
        try:
            self.env = _lmdb.open(
                self.path,
                map_size=data_size(self.path),
                max_dbs=MAX_DBS,
                readahead=False,
                max_readers=MAX_READERS,
                readonly=True,
                lock=lock,
            )
            self._open_dbs(layout)
        except (_lmdb.Error, OSError) as exc:
            env = getattr(self, "env", None)
            if env is not None:
                env.close()
            raise _store_error(exc, f"cannot open the store at {self.path!r} to read it") from exc
        self.resize_gate = _ResizeGate()
        self._writing = threading.Lock()  # taken to adopt a map size another process set

    def _open_env(self, map_size: int) -> None:
        """Open the environment (under ``_sizing``), with a writable map where the
        filesystem allocates: the data file is allocated up to the map's size before
        anything writes there."""
        options: dict[str, Any] = {
            "max_dbs": MAX_DBS,
            "sync": self.durability == "fsync",
            "metasync": self.durability == "fsync",
            "readahead": False,
            "max_readers": MAX_READERS,
            "mode": 0o600,
        }
        if self.writemap:
            # As large as the file: no process maps more (LMDB, as patched, only lengthens it).
            size = max(map_size, data_size(self.path))
            self.env = _lmdb.open(self.path, map_size=size, writemap=True, **options)
            _allocate_data(self.path, self.env.info()["map_size"])
        else:
            self.env = _lmdb.open(self.path, map_size=map_size, **options)

    def _sizing(self) -> contextlib.AbstractContextManager[None]:
        """Held to open the environment or change its map's size: with a writable map,
        across the processes of the store (``_map_lock``)."""
        return _map_lock(self.path) if self.writemap else contextlib.nullcontext()

    def _take_size(self) -> None:
        """Map the size another process set (under ``_sizing``): the data file's length
        with a writable map (no process maps more than the file), allocated first (a
        process whose open failed may have lengthened the file and allocated nothing),
        else the size in LMDB's meta page. OSError when the disk cannot supply it."""
        if self.writemap:
            size = data_size(self.path)
            _allocate_data(self.path, size)
            self.env.set_mapsize(size)
        else:
            self.env.set_mapsize(0)

    def _open_dbs(self, layout: Layout[D]) -> None:
        """``layout``'s databases, opened in the environment (under ``_sizing``)."""
        for _ in range(3):
            try:
                self.dbs = layout(self.env, self.readonly)
                self.journal, self.leases = self.dbs.journal, self.dbs.leases
                return
            except _lmdb.MapResizedError:  # another process grew the map since it opened
                self._take_size()
        raise StoreError(f"the store at {self.path!r} kept being resized while opening")

    # -- reads, on the caller's thread

    def read(self, fn: Callable[[_lmdb.Transaction], T], buffers: bool = True) -> T:
        """``fn(txn)`` in a read-only transaction; ``buffers``: values as memoryviews of
        the map (valid inside ``fn`` only), else as bytes copies."""
        for _ in range(3):
            try:
                with self.resize_gate:
                    txn = self.env.begin(buffers=True) if buffers else self.env.begin()
                    with txn:
                        return fn(txn)
            except _lmdb.MapResizedError:
                error = self._adopt_new_size()
                if error is not None:
                    raise error from error.__cause__
            except _lmdb.Error as exc:
                raise _store_error(exc, "read failed") from exc
        raise StoreError(f"the store at {self.path!r} kept being resized while reading")

    # -- writes, through the writer thread

    def submit(
        self,
        op: Callable[[_lmdb.Transaction], T],
        notify: bool = False,
        append_of: bytes | None = None,
        small: bool = False,
        run: bytes | None = None,
    ) -> Awaitable[T]:
        """Commit ``op(txn)`` in the next group commit. ``notify``: wake the processes
        waiting on this store once it is committed. ``append_of``: the run key, when
        ``op`` appends one record to that run's journal: a small op, committed on this
        thread when nothing could share its commit (the module's docstring says when).
        ``small``: a few reads and writes of one run (``run``, its key), committed on this
        thread as appends are: without sync, or after a write of the same run."""
        if self.readonly:
            raise StoreError(f"the store at {self.path!r} is open read-only: nothing is written")
        if append_of is not None:
            lone = not self.synced or append_of == self._last_run
            self._last_run = append_of
        else:
            lone = small and (not self.synced or (run is not None and run == self._last_run))
            self._last_run = run
        if (
            lone
            and not self._queued
            and (  # _alone(), without its call while its answer is fresh
                self._alone_now
                if time.monotonic() - self._alone_checked <= ALONE_RECHECK
                else self._alone()
            )
            and self._writing.acquire(blocking=False)
        ):
            try:
                result, error = self._commit_one(op) if self.log is None else self._with_log(op)
            finally:
                self._writing.release()
            if notify and not self._notify_due:
                self._notify_due = True
                asyncio.get_running_loop().call_soon(self._notify_now)
            # Awaiting a finished commit does not yield to the loop: give it a turn now
            # and then (after every synced commit), or a run of inline steps would starve
            # every other task. A commit that returned None needs no future: one shared
            # awaitable, with a turn (_TURN) or without (_READY); no loop looked up either
            # (Python 3.11's get_running_loop asks the kernel for the process id).
            self._inline_run += 1
            turn = self.synced or self._inline_run >= INLINE_YIELD_EVERY
            if error is None and result is None:
                if turn:
                    self._inline_run = 0
                    return _TURN
                return _READY
            if turn:
                self._inline_run = 0
            fut = asyncio.get_running_loop().create_future()
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)
            return _Turn(fut) if turn else fut
        return self.enqueue(op, notify)

    def enqueue(self, op: Op, notify: bool = False) -> asyncio.Future[Any]:
        """Queue ``op`` for the writer thread's next group commit (``submit``, never on
        this thread)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queued.append(None)  # counted before the writer can take it
        self._queue.put((op, fut, loop, notify))
        return fut

    @property
    def queued(self) -> int:
        """Ops queued for the writer thread and not yet committed."""
        return len(self._queued)

    def follows(self, run: bytes) -> bool:
        """Whether the last op submitted here (or asked about here) was of ``run``: one run
        writing alone, as ``submit``'s inline commit judges it; ``run`` is the last one now."""
        same = run == self._last_run
        self._last_run = run
        return same

    def apply(self, op: Op) -> None:
        """Queue ``op`` for the next group commit, with no one waiting for it."""
        self._queued.append(None)
        self._queue.put((op, None, None, False))

    def applies_due(self) -> None:
        """The commit log has applies (``LogHook.take_applies``): commit them within
        APPLY_INTERVAL, or with the first op queued meanwhile. Said once for many: an
        apply that wakes no thread costs a lone run's step nothing beside its flush."""
        self._queue.put(_APPLIES)

    def _notify_now(self) -> None:
        """The wake-ups owed by the inline commits of one turn of the loop, at once."""
        self._notify_due = False
        self.waker.notify()

    def _alone(self) -> bool:
        """No other process has the store open, as of at most ALONE_RECHECK seconds ago."""
        now = time.monotonic()
        if now - self._alone_checked > ALONE_RECHECK:
            self._alone_checked = now
            self._alone_now = not others_registered(self.path)
        return self._alone_now

    def stop(self) -> None:
        if not self.readonly:
            log = self.log
            if log is not None:  # what the log acknowledged is applied before closing
                self.apply(log.unmark)
            self._queue.put(None)
            self._thread.join()
            self.waker.close()
            if log is not None:
                log.close()
        self.env.close()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch: list[_Item] = []
            if item is _APPLIES:
                self._gather(batch)
            else:
                batch.append(item)
            mark = time.monotonic()  # every apply handed over before it is in this commit
            self._drain(batch)
            queued = len(batch)
            log = self.log
            try:
                with self._writing:
                    if log is not None:  # its applies first: LMDB holds a prefix of the writes
                        batch[:0] = _applies(log, mark)
                    if not batch:  # applies an earlier commit took
                        continue
                    outcomes = self._commit_noting(log, [item[0] for item in batch])
            finally:
                if queued:  # (a slice from -0 would be the whole list)
                    del self._queued[-queued:]
            notify = any(item[3] for item in batch)
            # One call into each loop: its futures settled, then its listeners woken; the
            # other processes after that (see wake.py).
            by_loop = _by_loop(batch, outcomes)
            here = self.waker.local() if notify else []
            for listener in here:
                for_loop = by_loop.get(listener.loop)
                if for_loop is None:
                    for_loop = by_loop[listener.loop] = ([], [], [])
                for_loop[2].append(listener)
            for loop, for_loop in by_loop.items():
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    loop.call_soon_threadsafe(_settle, *for_loop)
            if notify:
                self.waker.notify_others(here)

    def _drain(self, batch: list[_Item]) -> None:
        """Add what is queued to ``batch``, up to MAX_BATCH, without waiting."""
        while len(batch) < MAX_BATCH:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return
            if more is None:
                self._queue.put(None)  # finish this batch, then stop
                return
            if more is not _APPLIES:  # (the commit takes every apply)
                batch.append(more)

    def _gather(self, batch: list[_Item]) -> None:
        """Wait up to APPLY_INTERVAL for an op to share a commit of the log's applies."""
        deadline = time.monotonic() + APPLY_INTERVAL
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                more = self._queue.get(timeout=left)
            except queue.Empty:
                return
            if more is None:
                self._queue.put(None)
                return
            if more is not _APPLIES:
                batch.append(more)
                return

    def _with_log(self, op: Op) -> tuple[Any, BaseException | None]:
        """``op`` committed on this thread (under ``_writing``, nothing queued) with the
        commit log's applies before it, as the writer thread commits them."""
        log = self.log
        assert log is not None
        ops = [item[0] for item in _applies(log, time.monotonic())]
        ops.append(op)
        return self._commit_noting(log, ops)[-1]

    def _commit_noting(
        self, log: LogHook | None, ops: list[Op]
    ) -> list[tuple[Any, BaseException | None]]:
        """``_commit`` (under ``_writing``), an error outside every op failing them all,
        and the commit log told what it did, before another commit may begin."""
        self._written = False
        try:
            outcomes = self._commit(ops)
        except Exception as exc:  # outside every op: fail this batch, keep the writer
            error = StoreError(f"write failed; nothing was committed: {exc!r}")
            outcomes = [(None, error)] * len(ops)
        if log is not None:
            log.committed(ops, outcomes, self._written)
        return outcomes

    def _commit_one(self, op: Op) -> tuple[Any, BaseException | None]:
        """One op in a transaction of its own; anything unusual goes the way of ``_commit``
        (a failed transaction is aborted first, so nothing of it was written)."""
        try:
            if type(op) is Append:  # begin, append and commit in one compiled call
                status = self.env.commit_append(self.journal, self.leases, op)
                return _DONE if status == _lmdb.APPENDED else (None, op.failure(status))
            txn = self.env.begin(write=True)  # under _writing, as every write
            try:
                result = op(txn)
                txn.commit()
            except BaseException:
                txn.abort()
                raise
            return result, None
        except (SurestepError, LeaseLostError) as exc:
            return None, exc
        except Exception:
            return self._commit([op])[0]

    def _commit(self, batch: list[Op]) -> list[tuple[Any, BaseException | None]]:
        """Apply every op in one transaction (under ``_writing``). An op that raises one
        of our errors changes nothing (ops check before they write); an op that fails
        otherwise may have written half, so the transaction is redone without it."""
        broken: dict[int, BaseException] = {}
        while True:
            outcomes: list[tuple[Any, BaseException | None]] = []
            try:
                txn = self.env.begin(write=True)  # under _writing, as every write
                try:
                    i = 0
                    while i < len(batch):
                        op = batch[i]
                        if i in broken:
                            outcomes.append((None, broken[i]))
                        elif type(op) is Append:  # with those after it, in one call
                            i = self._append_run(txn, batch, i, outcomes, broken)
                            continue
                        else:
                            try:
                                outcomes.append((op(txn), None))
                            except (SurestepError, LeaseLostError) as exc:
                                outcomes.append((None, exc))
                            except _lmdb.Error:
                                raise
                            except Exception as exc:  # a bug in an op: fail it alone
                                broken[i] = StoreError(f"a store operation failed: {exc!r}")
                                broken[i].__cause__ = exc
                                raise _Redo from None
                        i += 1
                    if self.log is not None:
                        self.log.stamp(txn)
                    txn.commit()
                    self._written = True
                except BaseException:
                    txn.abort()
                    raise
                return outcomes
            except _Redo:
                continue
            except _lmdb.MapFullError as exc:
                full = self._grow()
                if full is not None:
                    full.__cause__ = full.__cause__ or exc
                    return [(None, full)] * len(batch)
            except _lmdb.MapResizedError:
                error = self._adopt_size_writing()
                if error is not None:
                    return [(None, error)] * len(batch)
            except _lmdb.Error as exc:
                error = _store_error(exc, "write failed; nothing was committed", self.path)
                return [(None, error)] * len(batch)

    def _append_run(
        self,
        txn: _lmdb.Transaction,
        batch: list[Op],
        start: int,
        outcomes: list[tuple[Any, BaseException | None]],
        broken: dict[int, BaseException],
    ) -> int:
        """Apply the appends from ``batch[start]`` up to the next op of another kind in
        one call that releases the GIL; the index after them."""
        end = start + 1
        while end < len(batch) and type(batch[end]) is Append and end not in broken:
            end += 1
        appends: list[Append] = batch[start:end]  # type: ignore[assignment]
        try:
            # (A list is invariant to mypy: each Append is an _Appending, read only.)
            statuses = txn.append_records(self.journal, self.leases, appends)  # type: ignore[arg-type]
        except _lmdb.Error:
            raise
        except Exception as exc:  # a bug: fail these appends alone
            for i in range(start, end):
                broken[i] = StoreError(f"a store operation failed: {exc!r}")
                broken[i].__cause__ = exc
            raise _Redo from None
        for one, status in zip(appends, statuses, strict=True):
            outcomes.append(_DONE if status == _lmdb.APPENDED else (None, one.failure(status)))
        return end

    def _grow(self) -> StoreError | None:
        """Double the map (under ``_writing``, as ``_commit`` calls it); the error to
        report when it cannot grow. With a writable map the data file is allocated to
        the new size first: a full disk is then this error, not a SIGBUS in a write."""
        size = self.env.info()["map_size"]
        if size >= self.max_map_size:
            return StoreFullError(
                f"the store at {self.path!r} is full at map_size={size} bytes "
                f"(max_map_size={self.max_map_size}); open the Engine with a larger max_map_size"
            )
        new = min(size * 2, self.max_map_size)
        try:
            with self._sizing():
                if self.writemap:
                    new = max(new, data_size(self.path))  # another process grew it further
                    try:
                        _allocate_data(self.path, new)
                    except OSError as exc:
                        what = f"the store at {self.path!r} cannot grow to {new} bytes"
                        return _store_error(exc, f"{what}; nothing was committed", self.path)
                with self.resize_gate.alone():
                    self.env.set_mapsize(new)
        except _lmdb.Error as exc:  # e.g. no address space left: LMDB closed the map
            full = StoreFullError(
                f"the store at {self.path!r} is full at map_size={size} bytes and cannot "
                f"grow ({exc}); nothing was committed, and the store must be reopened"
            )
            full.__cause__ = exc
            return full
        return None

    def _adopt_new_size(self) -> StoreError | None:
        """Take the map size another process set, after a read found it changed: waits
        for a write under way in this process (only when the map grew elsewhere). The
        error to report when this process cannot map it."""
        with self._writing:
            return self._adopt_size_writing()

    def _adopt_size_writing(self) -> StoreError | None:
        """``_adopt_new_size`` under ``_writing``."""
        try:
            with self._sizing(), self.resize_gate.alone():
                self._take_size()
        except (OSError, _lmdb.Error) as exc:
            what = f"the store at {self.path!r} cannot map the size another process gave it"
            error = _store_error(exc, f"{what}; nothing was written", self.path)
            error.__cause__ = exc
            return error
        return None


class _ResizeGate:
    """``with gate:`` around every read transaction of this process; they pass together.
    A map resize (``with gate.alone():``) waits until none is open and keeps new ones
    out until it is done. (A plain lock shared with the writer made a read on the event
    loop wait for the writer thread's commit, flush included.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._open = 0
        self._resizing = False

    def __enter__(self) -> None:  # a transaction passes
        with self._lock:
            while self._resizing:
                self._changed.wait()
            self._open += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._open -= 1
            if not self._open and self._resizing:
                self._changed.notify_all()

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self._lock:
            while self._resizing:
                self._changed.wait()
            self._resizing = True
            while self._open:
                self._changed.wait()
        try:
            yield
        finally:
            with self._lock:
                self._resizing = False
                self._changed.notify_all()


class _Redo(Exception):  # noqa: N818 - control flow
    """Abort the transaction and apply the batch again, without the op that broke."""


class _Turn:
    """A commit done inline, awaited after one turn of the event loop; its outcome in
    ``fut``, or None for an op that returned None (one shared ``_TURN``)."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[Any] | None) -> None:
        self.fut = fut

    def __await__(self) -> Generator[None, None, Any]:
        yield  # a bare yield: the task runs again at the loop's next turn
        return None if self.fut is None else self.fut.result()


_TURN = _Turn(None)


class _Ready:
    """A commit done inline that returned None, awaited without a turn of the loop (a
    write nobody waits for keeps it as it is: ``Recorder.append_later``)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, Any]:
        return iter(())  # type: ignore[return-value]


_READY = _Ready()


def _by_loop(batch: list[_Item], outcomes: list[_Outcome]) -> dict[Any, _ForLoop]:
    """The futures of a commit and their outcomes, by the loop each belongs to (one, most
    often: no lookup while the loop stays the same, nothing made per op but its place in
    two lists)."""
    by_loop: dict[Any, _ForLoop] = {}
    last: Any = None
    futs: list[asyncio.Future[Any]] = []
    done: list[_Outcome] = []
    for (_, fut, loop, _), outcome in zip(batch, outcomes, strict=True):
        if fut is None:  # an apply of the commit log: nobody waits for it
            continue
        if loop is not last:
            for_loop = by_loop.get(loop)
            if for_loop is None:
                for_loop = by_loop[loop] = ([], [], [])
            futs, done, _ = for_loop
            last = loop
        futs.append(fut)
        done.append(outcome)
    return by_loop


def _settle(
    futs: list[asyncio.Future[Any]], outcomes: list[_Outcome], woken: list[WakeListener]
) -> None:
    for fut, (result, exc) in zip(futs, outcomes, strict=True):
        if fut.cancelled():
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
    for listener in woken:
        listener.wake()


MIN_FREE_BYTES = 1 << 20  # below this, a failed write is a full disk
MAX_DBS = 32  # a handle per named database (the store's layout, store/lmdb.py), with room


MAX_READERS = 1024
# The size LMDB gives its lock file: a 192-byte header (three cache lines) and 64 bytes per
# reader after the first (glibc's and musl's mutexes fit the header's lines).
LOCK_FILE_BYTES = 192 + (MAX_READERS - 1) * 64


def _reserve_lock_file(path: str) -> bool:
    """Allocate the blocks of LMDB's lock file before LMDB maps it: a write through the map
    to a block the disk cannot supply is a SIGBUS, an allocation here is ENOSPC. The
    free-space check above can race with other writers to the disk; this cannot. A lock
    file that exists keeps its size (other processes may have it mapped); only its holes
    are filled. Whether pages may be written through a map: where the filesystem cannot
    allocate (or on macOS), or writes each change to a new block, the check is all there
    is, and the data file is written with system calls."""
    lock_path = os.path.join(path, "lock.mdb")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False  # a read-only store, say: LMDB's open says what is wrong
    size = 0
    try:
        size = os.fstat(fd).st_size
        _lmdb.allocate(fd, size or LOCK_FILE_BYTES)
        return rewrites_in_place(fd)
    except OSError as exc:
        if not _no_space(exc):
            return False  # EOPNOTSUPP, ENOSYS, EPERM...: no reservation, the check stands
        if size == 0:
            os.unlink(lock_path)  # leave no unreserved lock file for the next open
        raise StoreFullError(
            f"cannot open the store at {path!r}: the disk is full ({exc})"
        ) from exc
    finally:
        os.close(fd)


def rewrites_in_place(fd: int) -> bool:
    """Whether the filesystem of ``fd`` writes a changed block where it was (not one of
    COPY_ON_WRITE); OSError if it cannot be told."""
    return _lmdb.filesystem_type(fd) not in COPY_ON_WRITE


@contextlib.contextmanager
def _map_lock(path: str) -> Iterator[None]:
    """One process of the store at a time sizes the data file and its map, so that a
    process maps no more than the file it has allocated."""
    fd = os.open(os.path.join(path, "map.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    _held_map_locks.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _held_map_locks.discard(fd)
        os.close(fd)  # and the lock with it


# A process forked while a thread holds a map lock shares the lock (an flock belongs to
# the open file, which the child's copy of the descriptor keeps open): the child closes
# its copies, or every process of the store would wait for the child to exit.
_held_map_locks: set[int] = set()


def _drop_map_locks_in_child() -> None:
    for fd in _held_map_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_map_locks.clear()


os.register_at_fork(after_in_child=_drop_map_locks_in_child)


def data_size(path: str) -> int:
    try:
        return os.stat(os.path.join(path, "data.mdb")).st_size
    except FileNotFoundError:
        return 0


def _allocate_data(path: str, size: int) -> None:
    """Allocate the blocks of the data file up to ``size`` bytes (its holes only)."""
    fd = os.open(os.path.join(path, "data.mdb"), os.O_RDWR)
    try:
        _lmdb.allocate(fd, size)
    finally:
        os.close(fd)


def _free_bytes(path: str) -> int | None:
    """Bytes free for us on the filesystem holding ``path`` (its nearest existing parent)."""
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        stat = os.statvfs(path or ".")
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _no_space(exc: BaseException) -> bool:
    """A full disk, or the user's quota used up."""
    code = getattr(exc, "errno", None)
    return (
        isinstance(exc, _lmdb.DiskError)
        or code in (errno.ENOSPC, errno.EDQUOT)
        or "No space left" in str(exc)
    )


def _store_error(exc: BaseException, what: str, path: str | None = None) -> StoreError:
    code = getattr(exc, "errno", None)
    no_space = _no_space(exc)
    if (
        not no_space
        and path is not None
        and (code == errno.EIO or "Input/output error" in str(exc))
    ):
        free = _free_bytes(path)  # LMDB reports a short write on a full disk as EIO
        no_space = free is not None and free < MIN_FREE_BYTES
    if no_space:
        return StoreFullError(f"{what}: the disk is full ({exc})")
    if isinstance(exc, (_lmdb.ReadonlyError, PermissionError)) or "Permission denied" in str(exc):
        return StoreError(f"{what}: no permission to write there ({exc})")
    return StoreError(f"{what}: {exc}")


_envs: dict[tuple[str, str], Env[Any]] = {}
_envs_lock = threading.Lock()


def acquire(
    path: str,
    durability: str,
    map_size: int,
    max_map_size: int,
    readonly: bool,
    layout: Layout[D],
) -> Env[D]:
    """The process's environment of ``path``; ``readonly``: one opened for reading only,
    unless the store is open for writing already (which reads as well)."""
    if readonly:
        durability = READONLY
    key = (os.path.realpath(path), durability)
    with _envs_lock:
        if readonly:
            key = next((k for k in _envs if k[0] == key[0]), key)
        other = [k for k in _envs if k[0] == key[0] and k != key]
        if other:
            raise ConfigurationError(
                f"the store at {path!r} is already open in this process with durability="
                f"{other[0][1]!r}; use one durability per store and process"
            )
        env = _envs.get(key)
        if env is None:
            env = _envs[key] = Env(path, key[1], map_size, max_map_size, layout, readonly)
        env.users += 1
        return env


def release(env: Env[Any]) -> None:
    with _envs_lock:
        env.users -= 1
        if env.users:
            return
        # Closed before it leaves the registry: an open of the same path meanwhile waits,
        # so this process never has one LMDB environment open twice (LMDB's fcntl locks
        # are per process: closing either would drop the other's).
        env.stop()
        del _envs[(os.path.realpath(env.path), env.durability)]
