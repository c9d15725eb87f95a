"""A process's commit log: durable with one device flush, applied to the store later.

A durable commit through LMDB makes two flushes (its data pages, then its meta page).
A commit log makes one: its records are appended to a file whose blocks already exist,
so ``fdatasync`` writes data and no metadata. A process appends what it commits to its
own log, acknowledges after the flush, and hands the same writes to the store, which
applies them in its own group commits (sync commits, off the critical path). The log
knows nothing of what its records mean: the store frames its writes as payloads.

Layout: a directory per log (``<root>/<log id in hex>/``) holding ``lock`` (an
exclusive ``flock`` held by the owning process while it lives; made in the directory's
``.new`` twin as ``lock.new``, locked, renamed, and the directory renamed, so that no
other process can find it unlocked while its owner lives, nor the directory without it)
and ``segment-N`` files of ``segment_bytes`` each, written with zeros before first use
(``fallocate`` alone leaves the blocks unwritten: the first write into each would change
the file's extents, metadata that ``fdatasync`` must journal, a second flush).

A segment: a header block, then frames back to back.

``header``  (HEADER_BYTES, the first 4 KiB, rewritten only while the segment holds no
            live frame) magic ``SSTEPLOG`` | format u32 | zero u32 | log id (16 bytes) |
            base LSN u64 | checksum u64 (XXH64 of the 40 bytes before it, seeded with
            HEADER_SEED); all little-endian. All zeros: a spare (no records).
``frame``   length u32 (of the payload) | checksum u64 | LSN u64 | payload. The checksum
            is XXH64 of the length, the LSN and the payload, seeded with the log's
            seed (XXH64 of its id): a frame left in a segment by another log, or by an
            earlier use of this one, never passes for one of this log's.

LSNs (log sequence numbers) start at 1 and increase by one per record for the life of
a log; a segment's frames hold base, base + 1, ... in order.

Reading (``read_records``): the segments with a valid header of this log, by base LSN;
in each, the frames from its base while each is whole (its length fits, its checksum
holds, its LSN is the next one); the records are the longest run from the oldest
segment's base with no gap. Whatever follows the first torn, zeroed or stale frame, or
the first gap between two segments, was never acknowledged: every append writes its
frames in LSN order and flushes before acknowledging, so every acknowledged record
lies in that prefix.

Recycling: a segment is reused only once every record in it is applied to the store
(``applied``: the store calls it after the sync commit covering them returned), oldest
first; the segment being written, only once the process is idle and every record is
applied (``retire_tail``): the next append then begins a segment. Its header is first
overwritten with zeros and flushed, so that a reused segment can never be read as still
holding its old records; its next header is written, with its new base LSN, in the same
flush as its first frames. So the valid
segments of a log are always one contiguous run of LSNs (older applied ones, perhaps,
then the unapplied ones, then the one being written), and reading needs nothing else.

A log is never reopened for appending: a process makes a new one when it opens a
store, and the log of a process that died (its lock free) is read, applied by the
store (keyed by what the records write, so applying twice changes nothing), and
removed (``DeadLog``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .. import _core
from ..errors import StoreError

MAGIC = b"SSTEPLOG"
FORMAT = 1
HEADER_BYTES = 4096
HEADER_SEED = 0x53534C48  # "SSLH"
SEGMENT_BYTES = 4 << 20  # a process's first step makes its first segment: small, to be quick
MIN_SEGMENT_BYTES = 2 * HEADER_BYTES
SPARES = 1  # spare segments kept ready beyond the one being written
_HEADER = struct.Struct("<8sII16sQ")  # magic, format, zero, log id, base LSN
_HEADER_SUM = struct.Struct("<Q")
FRAME = struct.Struct("<IQQ")  # payload length, checksum, LSN
FRAME_OVERHEAD = FRAME.size
_LSN_AND_LENGTH = struct.Struct("<IQ")  # what the checksum covers before the payload
_ZERO_HEADER = bytes(HEADER_BYTES)
_ZEROS = bytes(1 << 20)
LOCK = "lock"
# A log still being made under its temporary name this long after (it takes microseconds)
# was left by a process that died making it: it holds no record (a log is renamed first).
ABANDONED_AFTER = 60.0
_SEGMENT = "segment-"


class Files:
    """The file operations the log makes, in one place so that a test can stand between
    the log and the disk (tests/support/power_loss.py)."""

    def open(self, path: str, create: bool = False) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
        return os.open(path, flags, 0o600)

    def close(self, fd: int) -> None:
        os.close(fd)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)


FILES = Files()


class LogError(StoreError):
    """The commit log could not be written or read: nothing was acknowledged."""


@dataclass(frozen=True)
class Record:
    lsn: int
    payload: bytes


def frame(seed: int, lsn: int, payload: bytes) -> bytes:
    """One frame: length, checksum, LSN, payload."""
    covered = _LSN_AND_LENGTH.pack(len(payload), lsn) + payload
    return FRAME.pack(len(payload), _core.xxh64(covered, seed), lsn) + payload


def header(log_id: bytes, base: int) -> bytes:
    head = _HEADER.pack(MAGIC, FORMAT, 0, log_id, base)
    return head + _HEADER_SUM.pack(_core.xxh64(head, HEADER_SEED))


def log_seed(log_id: bytes) -> int:
    return _core.xxh64(log_id, HEADER_SEED)


def _parse_header(data: bytes | memoryview) -> tuple[bytes, int] | None:
    """The log id and base LSN of a valid header, else None (a spare, or torn)."""
    if len(data) < _HEADER.size + _HEADER_SUM.size:
        return None
    head = bytes(data[: _HEADER.size])
    (checksum,) = _HEADER_SUM.unpack_from(data, _HEADER.size)
    if _core.xxh64(head, HEADER_SEED) != checksum:
        return None
    magic, fmt, _, log_id, base = _HEADER.unpack(head)
    if magic != MAGIC or fmt != FORMAT or base < 1:
        return None
    return log_id, base


def _frames(data: bytes, seed: int, base: int) -> list[Record]:
    """The whole frames of one segment from its base LSN on, up to the first that is not."""
    view = memoryview(data)
    out: list[Record] = []
    offset, lsn = HEADER_BYTES, base
    while offset + FRAME_OVERHEAD <= len(data):
        length, checksum, at = FRAME.unpack_from(view, offset)
        end = offset + FRAME_OVERHEAD + length
        if at != lsn or length == 0 or end > len(data):
            break
        payload = bytes(view[offset + FRAME_OVERHEAD : end])
        if _core.xxh64(_LSN_AND_LENGTH.pack(length, lsn) + payload, seed) != checksum:
            break
        out.append(Record(lsn, payload))
        offset, lsn = end, lsn + 1
    return out


def _segment_paths(directory: str, files: Files) -> list[str]:
    return sorted(
        os.path.join(directory, name)
        for name in files.listdir(directory)
        if name.startswith(_SEGMENT) and not name.endswith(".new")
    )


def read_records(directory: str, log_id: bytes, files: Files = FILES) -> list[Record]:
    """The records of the log in ``directory`` that may have been acknowledged: the
    longest gap-free run of whole frames from its oldest valid segment (the module's
    docstring says why that holds every acknowledged record)."""
    seed = log_seed(log_id)
    segments: list[tuple[int, bytes]] = []
    for path in _segment_paths(directory, files):
        data = files.read(path)
        parsed = _parse_header(data)
        if parsed is not None and parsed[0] == log_id:
            segments.append((parsed[1], data))
    segments.sort(key=lambda item: item[0])
    records: list[Record] = []
    for base, data in segments:
        if records and base != records[-1].lsn + 1:
            break  # a gap: the segment before ends in a torn write
        found = _frames(data, seed, base)
        records.extend(found)
        if not found:
            break  # a segment begun in a write that was not acknowledged
    return records


class _Segment:
    __slots__ = ("base", "end", "fd", "last", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd
        self.base = 0  # 0: a spare
        self.last = 0  # the LSN of its last frame; base - 1 while it has none
        self.end = HEADER_BYTES  # where its next frame goes


class CommitLog:
    """This process's log under ``root``: a new directory, locked while the log lives.

    ``append`` is called by one thread at a time (the caller's writes are ordered);
    ``applied`` and ``prepare`` may be called from another (the store's writer)."""

    def __init__(
        self,
        root: str,
        segment_bytes: int = SEGMENT_BYTES,
        spares: int = SPARES,
        files: Files = FILES,
        log_id: bytes | None = None,
    ) -> None:
        if segment_bytes < MIN_SEGMENT_BYTES or segment_bytes % HEADER_BYTES:
            raise ValueError(
                f"segment_bytes must be a multiple of {HEADER_BYTES} and at least "
                f"{MIN_SEGMENT_BYTES}, not {segment_bytes}"
            )
        self.files = files
        self.segment_bytes = segment_bytes
        self.spares_wanted = spares
        self.log_id = log_id or uuid.uuid4().bytes
        self.seed = log_seed(self.log_id)
        self.directory = os.path.join(root, self.log_id.hex())
        os.makedirs(root, mode=0o700, exist_ok=True)
        self._lock_fd: int | None = _make_locked(self.directory)
        self._next_name = 0
        self._live: list[_Segment] = []  # oldest first; the last one is being written
        self._spares: list[_Segment] = []
        self._mutex = threading.Lock()  # _live and _spares, between append and applied
        self.last_lsn = 0  # the last record written and flushed
        self.applied_lsn = 0
        self._broken: OSError | None = None  # a failed write: what follows is not trusted
        try:
            files.fsync_dir(root)
            self._live.append(self._activate(self._new_spare(), 1))
        except BaseException:  # a full disk, say: nothing was written, nothing is left
            for segment in self._live:
                files.close(segment.fd)
            _remove(self.directory, files)
            _unlock(self._lock_fd)
            raise

    # -- appending, on the caller's thread

    def append(self, payloads: Sequence[bytes]) -> int:
        """Write ``payloads`` as the next records and flush them: the LSN of the last.
        Durable when it returns; ``LogError`` if not (then nothing after the last
        acknowledged record may be trusted, and the log must not be written again)."""
        if self._broken is not None:
            raise LogError(f"the commit log at {self.directory!r} failed earlier: {self._broken}")
        room = self.segment_bytes - HEADER_BYTES - FRAME_OVERHEAD
        for payload in payloads:
            if not payload or len(payload) > room:
                raise LogError(
                    f"a commit log record holds 1 to {room} bytes (the segment size less its "
                    f"header and the frame's), not {len(payload)}"
                )
        if not payloads:
            return self.last_lsn
        try:
            return self._append(payloads)
        except OSError as exc:
            self._broken = exc
            raise LogError(
                f"the commit log at {self.directory!r} could not be written: {exc}"
            ) from exc

    def _append(self, payloads: Sequence[bytes]) -> int:
        writes: dict[int, tuple[_Segment, int, bytearray]] = {}  # fd -> where, what
        lsn = self.last_lsn
        segment = self._live[-1] if self._live else self._roll(lsn + 1, writes)
        for payload in payloads:
            lsn += 1
            data = frame(self.seed, lsn, payload)
            if segment.end + len(data) > self.segment_bytes:
                segment = self._roll(lsn, writes)
            pending = writes.get(segment.fd)
            if pending is None:
                pending = writes[segment.fd] = (segment, segment.end, bytearray())
            pending[2].extend(data)
            segment.end += len(data)
            segment.last = lsn
        for segment, offset, chunk in writes.values():
            self.files.pwrite(segment.fd, chunk, offset)
        for segment, _, _ in writes.values():
            self.files.fdatasync(segment.fd)
        self.last_lsn = lsn
        return lsn

    def _roll(self, base: int, writes: dict[int, tuple[_Segment, int, bytearray]]) -> _Segment:
        """Begin the next segment at ``base``: its header goes out with its first frames."""
        with self._mutex:
            spare = self._spares.pop(0) if self._spares else None
        if spare is None:
            spare = self._new_spare()  # none prepared in time: made here, on the critical path
        segment = self._activate(spare, base, writes)
        with self._mutex:
            self._live.append(segment)
        return segment

    def _activate(
        self,
        segment: _Segment,
        base: int,
        writes: dict[int, tuple[_Segment, int, bytearray]] | None = None,
    ) -> _Segment:
        segment.base, segment.last, segment.end = base, base - 1, HEADER_BYTES
        head = header(self.log_id, base)
        if writes is None:  # the first segment: written and flushed before any append
            self.files.pwrite(segment.fd, head, 0)
            self.files.fdatasync(segment.fd)
        else:
            writes[segment.fd] = (segment, 0, bytearray(head.ljust(HEADER_BYTES, b"\0")))
        return segment

    # -- after the store's commits, on the store's writer thread

    def applied(self, lsn: int) -> None:
        """Every record up to ``lsn`` is in the store, durably: the segments holding only
        such records are zeroed at their header, flushed, and kept as spares (or removed,
        beyond the spares wanted)."""
        self.applied_lsn = max(self.applied_lsn, lsn)
        while True:
            with self._mutex:
                if len(self._live) < 2 or self._live[0].last > self.applied_lsn:
                    return  # the segment being written is never recycled
                segment = self._live.pop(0)
            self._retire(segment)

    def retire_tail(self) -> bool:
        """Retire the segment being written too, once every record in it is applied
        (an idle process: a recovery after it dies has nothing to apply); the next
        append begins a segment. Not while an append runs (the caller orders them).
        Whether it did."""
        with self._mutex:
            if len(self._live) != 1 or self._live[0].last > self.applied_lsn:
                return False
            if self._live[0].last < self._live[0].base:
                return False  # no record in it
            segment = self._live.pop()
        self._retire(segment, spare=True)  # the next append's: none to write anew
        return True

    def _retire(self, segment: _Segment, spare: bool = False) -> None:
        """Zero ``segment``'s header and keep it as a spare (``spare``, or while fewer
        than wanted), else remove it."""
        self.files.pwrite(segment.fd, _ZERO_HEADER, 0)
        self.files.fdatasync(segment.fd)
        segment.base = segment.last = 0
        with self._mutex:
            keep = spare or len(self._spares) < self.spares_wanted
            if keep:
                self._spares.append(segment)
        if not keep:
            self.files.close(segment.fd)
            self.files.unlink(segment.path)

    def prepare(self) -> None:
        """Make spare segments until ``spares`` are ready (off the critical path: a
        segment is written whole, with zeros, and flushed)."""
        while True:
            with self._mutex:
                if len(self._spares) >= self.spares_wanted:
                    return
            spare = self._new_spare()
            with self._mutex:
                self._spares.append(spare)

    def _new_spare(self) -> _Segment:
        with self._mutex:
            name = f"{_SEGMENT}{self._next_name:08d}"
            self._next_name += 1
        path = os.path.join(self.directory, name)
        temporary = path + ".new"
        fd = self.files.open(temporary, create=True)
        try:
            for offset in range(0, self.segment_bytes, len(_ZEROS)):
                self.files.pwrite(fd, _ZEROS[: self.segment_bytes - offset], offset)
            self.files.fdatasync(fd)
            self.files.rename(temporary, path)
            self.files.fsync_dir(self.directory)
        except BaseException:
            self.files.close(fd)
            raise
        return _Segment(path, fd)

    def wants_spare(self) -> bool:
        """Whether a spare should be made now: none ready, and the segment being written
        past its half (a process that writes little never needs one)."""
        with self._mutex:
            if self._spares:
                return False
            return not self._live or self._live[-1].end > self.segment_bytes // 2

    def segments(self) -> tuple[int, int]:
        """How many segments are live (holding records not known applied, or being
        written) and spare."""
        with self._mutex:
            return len(self._live), len(self._spares)

    def close(self) -> None:
        """Close the files. When every record is applied the log is removed; otherwise it
        stays, for the next process that opens the store to apply."""
        with self._mutex:
            segments, self._live, self._spares = self._live + self._spares, [], []
        for segment in segments:
            self.files.close(segment.fd)
        if self.applied_lsn >= self.last_lsn:
            _remove(self.directory, self.files)
        if self._lock_fd is not None:
            _unlock(self._lock_fd)
            self._lock_fd = None


class DeadLog:
    """The log of a process that is gone, locked by this one until it is removed."""

    def __init__(self, directory: str, lock_fd: int, files: Files = FILES) -> None:
        self.directory = directory
        self.log_id = bytes.fromhex(os.path.basename(directory))
        self._lock_fd = lock_fd
        self.files = files

    def records(self) -> list[Record]:
        return read_records(self.directory, self.log_id, self.files)

    def remove(self) -> None:
        """Remove the log (after its records were applied)."""
        _remove(self.directory, self.files)
        _unlock(self._lock_fd)

    def release(self) -> None:
        """Leave the log as it is, for another process (its records were not applied)."""
        _unlock(self._lock_fd)


def dead_logs(root: str, files: Files = FILES) -> Iterator[DeadLog]:
    """The logs under ``root`` whose process is gone, each locked for the caller (who
    applies its records and removes it); a live process's log is skipped."""
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return
    for name in names:
        directory = os.path.join(root, name)
        if name.endswith(".new"):
            _remove_abandoned(directory)
            continue
        try:
            log_id = bytes.fromhex(name)
        except ValueError:
            continue
        if len(log_id) != 16 or not os.path.isdir(directory):
            continue
        fd = _lock(directory)
        if fd is not None:
            yield DeadLog(directory, fd, files)


def _remove_abandoned(making: str) -> None:
    """Remove the directory of a log whose maker died before renaming it, once it is older
    than ABANDONED_AFTER and nobody holds its lock (a live maker holds it from before the
    lock file has its name until the directory has its own)."""
    try:
        if time.time() - os.stat(making).st_mtime < ABANDONED_AFTER:
            return
        names = os.listdir(making)
    except FileNotFoundError:
        return
    for name in names:
        try:
            fd = os.open(os.path.join(making, name), os.O_RDWR | os.O_CLOEXEC)
        except (FileNotFoundError, IsADirectoryError):
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its maker is alive
        finally:
            os.close(fd)
    shutil.rmtree(making, ignore_errors=True)


_HELD: set[int] = set()  # the lock descriptors of this process's logs


def _close_held_in_child() -> None:
    """A forked child must not keep its parent's logs locked after the parent died (the
    lock belongs to the parent's open file: closing the child's copy leaves it held)."""
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


def _unlock(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)


def _make_locked(directory: str) -> int:
    """Make the directory of a new log, its lock held before either appears under its
    name: the directory is made as ``<name>.new`` (which nobody reads as a log), its
    ``lock`` made as ``lock.new``, locked, renamed, and then the directory renamed. So a
    process looking for dead logs never finds this one unlocked, nor its directory
    without its lock (a log a mark names, that nobody could apply)."""
    making = directory + ".new"
    os.mkdir(making, 0o700)
    temporary = os.path.join(making, LOCK + ".new")
    fd = os.open(temporary, os.O_RDWR | os.O_CLOEXEC | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows the file yet
        os.rename(temporary, os.path.join(making, LOCK))
        os.rename(making, directory)
    except BaseException:
        os.close(fd)
        raise
    _HELD.add(fd)
    return fd


def _lock(directory: str) -> int | None:
    """An exclusive lock on the log in ``directory``, or None if a live process holds it
    (or the log is gone already, or not yet made). Not kept by a forked child, nor
    across exec."""
    path = os.path.join(directory, LOCK)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not os.path.exists(path):  # removed by whoever held it before us
        os.close(fd)
        return None
    _HELD.add(fd)
    return fd


def _remove(directory: str, files: Files) -> None:
    """Remove a log: its segments first, its lock last (a process that finds the lock
    free and the directory still there applies what is left, which is idempotent)."""
    for name in files.listdir(directory):
        if name.startswith(_SEGMENT):
            files.unlink(os.path.join(directory, name))
    files.unlink(os.path.join(directory, LOCK))
    os.rmdir(directory)
    files.fsync_dir(os.path.dirname(directory))
