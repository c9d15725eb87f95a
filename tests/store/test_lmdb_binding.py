"""surestep._lmdb, the binding of LMDB the embedded store runs on: what it promises beyond
LMDB itself (ended transactions and cursors refuse work instead of touching freed memory,
a read transaction reused for the next read sees the newest commit, typed errors), and
that the calls which can wait on another process release the GIL."""

from __future__ import annotations

import errno
import gc
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from surestep import _core, _lmdb


@pytest.fixture
def env(tmp_path: Path) -> Iterator[_lmdb.Environment]:
    e = _lmdb.open(str(tmp_path), map_size=1 << 20, max_dbs=4, sync=False, metasync=False)
    yield e
    e.close()


def test_puts_gets_and_deletes(env: _lmdb.Environment) -> None:
    db = env.open_db(b"a")
    with env.begin(write=True) as txn:
        assert txn.put(b"k", b"v1", db)
        assert not txn.put(b"k", b"v2", db, overwrite=False)  # kept: the key exists
        assert txn.get(b"k", db) == b"v1"
        assert txn.put(b"k", b"v2", db)
        assert txn.put(b"gone", b"x", db)
        assert txn.delete(b"gone", db)
        assert not txn.delete(b"gone", db)
        assert txn.get(b"gone", db, default=b"none") == b"none"
    with env.begin() as txn:
        assert txn.get(b"k", db) == b"v2"
        assert txn.get(memoryview(b"k"), db) == b"v2"  # any buffer is a key
        assert txn.stat(db)["entries"] == 1
    other = env.open_db(b"b")
    with env.begin() as txn:
        assert txn.get(b"k", other) is None  # databases are apart


def test_a_transaction_that_raises_is_aborted(env: _lmdb.Environment) -> None:
    db = env.open_db(b"a")
    with pytest.raises(RuntimeError), env.begin(write=True) as txn:
        txn.put(b"k", b"v", db)
        raise RuntimeError("boom")
    with env.begin() as txn:
        assert txn.get(b"k", db) is None
    txn = env.begin(write=True)
    txn.put(b"k", b"v", db)
    txn.abort()
    with env.begin() as txn:
        assert txn.get(b"k", db) is None


def test_buffers_are_views_of_the_map_only_when_asked_for(env: _lmdb.Environment) -> None:
    db = env.open_db(b"a")
    with env.begin(write=True) as txn:
        txn.put(b"k", b"value", db)
        assert type(txn.get(b"k", db)) is bytes
    with env.begin(buffers=True) as txn:
        view = txn.get(b"k", db)
        assert isinstance(view, memoryview) and view.readonly and bytes(view) == b"value"
        cursor = txn.cursor(db)
        assert cursor.first() and isinstance(cursor.key(), memoryview)
    with env.begin() as txn:
        assert type(txn.get(b"k", db)) is bytes


def test_cursors_move_and_iterate_from_where_they_stand(env: _lmdb.Environment) -> None:
    db = env.open_db(b"a")
    keys = [b"a1", b"a2", b"b1", b"b2", b"c1"]
    with env.begin(write=True) as txn:
        for k in keys:
            txn.put(k, k.upper(), db)
    with env.begin() as txn:
        cursor = txn.cursor(db)
        assert cursor.key() == b"" and cursor.value() == b""  # not positioned
        assert list(cursor.iternext(values=False)) == keys  # from the first key
        cursor = txn.cursor(db)
        assert cursor.set_range(b"b")
        assert list(cursor) == [(k, k.upper()) for k in keys[2:]]  # from the position
        assert cursor.set_range(b"")  # an empty key: the first
        assert cursor.key() == b"a1"
        assert not cursor.set_range(b"d")
        assert cursor.last() and cursor.key() == b"c1"
        assert cursor.prev() and cursor.key() == b"b2"
        assert cursor.next() and cursor.item() == (b"c1", b"C1")
        assert not cursor.next()
        assert cursor.set_key(b"b1") and cursor.value() == b"B1"
        assert not cursor.set_key(b"b")
        assert list(txn.cursor(db).iternext(keys=False)) == [k.upper() for k in keys]
    empty = env.open_db(b"empty")
    with env.begin() as txn:
        assert list(txn.cursor(empty)) == []
        assert not txn.cursor(empty).first()


def test_a_cursor_reads_its_item_again_after_a_write_in_its_transaction(
    env: _lmdb.Environment,
) -> None:
    """A put may move the page a cursor's item lies on: the cursor must not hand out
    what it read before the put."""
    db = env.open_db(b"a")
    with env.begin(write=True) as txn:
        txn.put(b"m", b"old", db)
        cursor = txn.cursor(db)
        assert cursor.set_range(b"m")
        for i in range(300):  # enough to split the page under the cursor
            txn.put(b"a%04d" % i, b"x" * 100, db)
        txn.put(b"m", b"new", db)
        assert cursor.item() == (b"m", b"new")


def test_ended_transactions_and_their_cursors_refuse_work(env: _lmdb.Environment) -> None:
    db = env.open_db(b"a")
    for write in (True, False):
        txn = env.begin(write=write)
        cursor = txn.cursor(db)
        txn.commit()
        with pytest.raises(_lmdb.Error, match="ended"):
            txn.get(b"k", db)
        with pytest.raises(_lmdb.Error, match="ended"):
            cursor.first()
        with pytest.raises(_lmdb.Error, match="ended"):
            cursor.key()
        txn.abort()  # aborting an ended transaction does nothing


def test_cursors_collected_in_a_cycle_leave_their_transaction_sound(
    env: _lmdb.Environment,
) -> None:
    """The collector may break a cycle through a cursor while its transaction lives on:
    the cursor must still leave the transaction's list (which the transaction's end
    walks) instead of vanishing from under it."""
    db = env.open_db(b"a")
    for write in (True, False):
        txn = env.begin(write=write)

        class Holder:
            pass

        for _ in range(50):
            cursor = txn.cursor(db)  # older than its holder: the collector meets it first
            holder = Holder()
            holder.cursor, holder.me = cursor, holder  # type: ignore[attr-defined]
        del holder, cursor
        gc.collect()
        if write:
            txn.put(b"k", b"v", db)
        txn.commit()
    with env.begin() as txn:
        assert txn.get(b"k", db) == b"v"


def test_closing_the_environment_aborts_what_is_open(tmp_path: Path) -> None:
    env = _lmdb.open(str(tmp_path), max_dbs=2)
    db = env.open_db(b"a")
    writing = env.begin(write=True)
    writing.put(b"k", b"v", db)
    reading = env.begin()
    cursor = reading.cursor(db)
    env.close()
    env.close()  # twice does nothing
    for call in (lambda: writing.get(b"k", db), reading.commit, cursor.first, env.begin):
        with pytest.raises(_lmdb.Error):
            call()
    env = _lmdb.open(str(tmp_path), max_dbs=2)
    try:
        db = env.open_db(b"a")
        with env.begin() as txn:
            assert txn.get(b"k", db) is None  # the write was aborted
    finally:
        env.close()


def test_a_reused_read_transaction_sees_the_newest_commit(env: _lmdb.Environment) -> None:
    """Ended read transactions are kept and renewed for the next read: a renewed one must
    read the store as of its renewal, and two reads at once must each have their own."""
    db = env.open_db(b"a")
    for value in (b"1", b"2", b"3"):
        with env.begin(write=True) as txn:
            txn.put(b"k", value, db)
        with env.begin() as txn:
            assert txn.get(b"k", db) == value
    first, second = env.begin(), env.begin()
    with env.begin(write=True) as txn:
        txn.put(b"k", b"4", db)
    assert first.get(b"k", db) == b"3" == second.get(b"k", db)  # their snapshots stay
    first.commit(), second.commit()
    with env.begin() as txn:
        assert txn.get(b"k", db) == b"4"


def test_a_full_map_is_a_typed_error_and_a_larger_one_takes_the_write(tmp_path: Path) -> None:
    env = _lmdb.open(str(tmp_path), map_size=64 << 10, max_dbs=2)
    try:
        db = env.open_db(b"a")
        txn = env.begin(write=True)
        with pytest.raises(_lmdb.MapFullError):
            for i in range(1000):
                txn.put(b"%06d" % i, b"x" * 200, db)
        txn.abort()
        env.set_mapsize(1 << 20)
        assert env.info()["map_size"] == 1 << 20
        with env.begin(write=True) as txn:
            for i in range(1000):
                txn.put(b"%06d" % i, b"x" * 200, db)
        with env.begin() as txn:
            assert txn.stat(db)["entries"] == 1000
    finally:
        env.close()


def test_a_map_that_cannot_be_mapped_closes_the_environment(tmp_path: Path) -> None:
    """LMDB unmaps the old map before mapping the new one: when that fails (no address
    space for 2**62 bytes) the environment is closed, and says so, rather than left
    without a map; the data file is intact."""
    env = _lmdb.open(str(tmp_path), map_size=1 << 20, max_dbs=2)
    db = env.open_db(b"a")
    with env.begin(write=True) as txn:
        txn.put(b"k", b"kept", db)
    with pytest.raises(_lmdb.Error, match="closed") as failed:
        env.set_mapsize(1 << 62)
    assert failed.value.errno == errno.ENOMEM
    with pytest.raises(_lmdb.Error, match="closed"):
        env.info()
    with pytest.raises(_lmdb.Error, match="closed"):
        env.begin()
    env.close()
    env = _lmdb.open(str(tmp_path), max_dbs=2)
    try:
        db = env.open_db(b"a", create=False)
        with env.begin() as txn:
            assert txn.get(b"k", db) == b"kept"
    finally:
        env.close()


def test_the_map_is_not_resized_under_an_open_transaction(env: _lmdb.Environment) -> None:
    txn = env.begin()
    with pytest.raises(_lmdb.Error, match="open"):
        env.set_mapsize(2 << 20)
    txn.abort()
    env.set_mapsize(2 << 20)
    assert env.info()["map_size"] == 2 << 20


def test_a_writable_map_never_shortens_the_data_file(tmp_path: Path) -> None:
    """LMDB as patched (ext/lmdb/README.md): mapping less than the file's length leaves
    the file as long as it was, for a process mapping more of it."""
    big = _lmdb.open(str(tmp_path), map_size=4 << 20, writemap=True)
    big.close()
    data = tmp_path / "data.mdb"
    assert data.stat().st_size == 4 << 20
    small = _lmdb.open(str(tmp_path), map_size=1 << 20, writemap=True)
    try:
        assert small.info()["map_size"] == 1 << 20 and data.stat().st_size == 4 << 20
        small.set_mapsize(2 << 20)
        assert data.stat().st_size == 4 << 20
        small.set_mapsize(8 << 20)  # but lengthens it to a larger map
        assert data.stat().st_size == 8 << 20
    finally:
        small.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fallocate(2) is Linux's")
def test_allocate_fills_a_file_s_holes_and_lengthens_it(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"kept")
    with path.open("r+b") as f:
        f.truncate(1 << 20)  # a hole after the first block
        assert path.stat().st_blocks * 512 < 1 << 20
        _lmdb.allocate(f.fileno(), 2 << 20)
    stat = path.stat()
    assert stat.st_size == 2 << 20 and stat.st_blocks * 512 >= 2 << 20
    assert path.read_bytes()[:4] == b"kept"
    with pytest.raises(OSError) as bad:
        _lmdb.allocate(-1, 4096)
    assert bad.value.errno == errno.EBADF


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="statfs(2)'s f_type is Linux's")
def test_filesystem_type_is_the_one_stat_reports(tmp_path: Path) -> None:
    reported = subprocess.run(
        ["stat", "-f", "-c", "%t", str(tmp_path)], capture_output=True, text=True, check=True
    )
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert _lmdb.filesystem_type(fd) == int(reported.stdout, 16)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as bad:
        _lmdb.filesystem_type(-1)
    assert bad.value.errno == errno.EBADF


def test_errors_are_typed(tmp_path: Path) -> None:
    with pytest.raises(_lmdb.Error) as missing:
        _lmdb.open(str(tmp_path / "missing"))
    assert missing.value.errno == errno.ENOENT and "missing" in str(missing.value)
    _lmdb.open(str(tmp_path), max_dbs=2).close()
    env = _lmdb.open(str(tmp_path), max_dbs=2, readonly=True)
    try:
        assert env.readonly
        with pytest.raises(_lmdb.ReadonlyError):
            env.begin(write=True)
        with pytest.raises(_lmdb.Error):  # not created on a read-only environment
            env.open_db(b"absent")
    finally:
        env.close()
    assert _lmdb.version()[:2] == (0, 9)


_HOLD_THE_WRITER = """
import sys
from surestep import _core, _lmdb
env = _lmdb.open(sys.argv[1], max_dbs=2)
db = env.open_db(b"a")
txn = env.begin(write=True)
print("holding", flush=True)
sys.stdin.readline()
txn.put(b"k", b"from the other process", db)
txn.commit()
"""


def test_waiting_for_another_process_s_writer_releases_the_gil(tmp_path: Path) -> None:
    """LMDB's writer lock is shared between processes: a thread waiting for it must let
    the other threads run Python meanwhile (the event loop, in the store)."""
    created = _lmdb.open(str(tmp_path), max_dbs=2)
    created.open_db(b"a")
    created.close()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_WRITER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        env = _lmdb.open(str(tmp_path), max_dbs=2)
        try:
            db = env.open_db(b"a", create=False)
            assert holder.stdout.readline() == "holding\n"
            begun = threading.Event()
            seen: list[bytes] = []

            def write() -> None:
                with env.begin(write=True) as txn:
                    begun.set()
                    seen.append(txn.get(b"k", db))

            writer = threading.Thread(target=write)
            writer.start()
            # This thread runs Python while the writer waits; were the GIL held there,
            # the next line would never run and the holder never be let go.
            assert not begun.is_set()
            while not env.busy:  # the writer is inside LMDB, waiting for the lock
                pass
            with pytest.raises(_lmdb.Error, match="in use"):
                env.close()  # would free what the waiting thread uses
            holder.stdin.write("go\n")
            holder.stdin.flush()
            writer.join()
            assert seen == [b"from the other process"]
        finally:
            env.close()


# -- the compiled journal append (the layout is surestep.store.lmdb's)


def _record(seq: int, size: int) -> bytes:
    out = b'"' + b"x" * size + b'"'
    return _core.encode_record(_core.KIND_STEP, seq, 1, "s", None, None, out, True, None, None)


def _model_put(journal: dict[bytes, bytes], key: bytes, seq: int, record: bytes) -> int:
    """The layout, in Python: what put_record must do to ``journal``."""
    if _core.step_key(key, seq) in journal:  # recorded in format 1 already
        return _lmdb.RECORDED_ALREADY
    group = _core.step_key(key, seq >> _lmdb.CHUNK_SHIFT)
    alone = group + bytes((seq % (1 << _lmdb.CHUNK_SHIFT),))
    room = None
    for i in range(1 << _lmdb.CHUNK_SHIFT):
        chunk_key = group + bytes((255 - i,))
        chunk = journal.get(chunk_key)
        if chunk is None:
            room = room or (chunk_key, b"")
            break
        if _core.holds_record(chunk, seq):
            return _lmdb.RECORDED_ALREADY
        if room is None and len(chunk) + len(record) <= _lmdb.CHUNK_BYTES:
            room = (chunk_key, chunk)
    if alone in journal:
        return _lmdb.RECORDED_ALREADY
    if record[0] == 1:  # format 1: alone under its step key
        journal[_core.step_key(key, seq)] = record
        return _lmdb.APPENDED
    if len(record) > _lmdb.CHUNK_BYTES:
        journal[alone] = record
    else:
        assert room is not None
        journal[room[0]] = room[1] + record
    return _lmdb.APPENDED


def test_put_record_lays_records_out_as_the_model_does(env: _lmdb.Environment) -> None:
    """And ``append_status`` reads what ``put_record`` decides for a format-2 record."""
    db, leases = env.open_db(b"journal"), env.open_db(b"leases")
    rng = random.Random(7)
    keys = [bytes([i]) * 16 for i in range(3)]
    lease = (9).to_bytes(8, "little") + bytes(16)
    model: dict[bytes, bytes] = {}
    with env.begin(write=True) as txn:
        for key in keys:
            txn.put(key, lease, leases)
        for _ in range(600):
            key, seq = rng.choice(keys), rng.randrange(200)
            size = rng.choice((5, 40, 300, 900, _lmdb.CHUNK_BYTES + 10))
            record = _record(seq, size)
            if rng.random() < 0.05:
                record = b"\x01" + record[1:]  # format 1: under its step key, not parsed
            status, held = txn.append_status(db, leases, key, 9, seq)
            assert status == _model_put(dict(model), key, seq, record)
            assert held == (lease if status == _lmdb.APPENDED else None)
            assert txn.put_record(db, key, seq, record) == _model_put(model, key, seq, record)
    with env.begin() as txn:
        assert dict(txn.cursor(db)) == model


def test_append_status_reads_the_fence_as_append_records_does(env: _lmdb.Environment) -> None:
    journal, leases = env.open_db(b"journal"), env.open_db(b"leases")
    a, gone, odd = (bytes([i]) * 16 for i in range(3))
    with env.begin(write=True) as txn:
        txn.put(a, (3).to_bytes(8, "little") + bytes(16), leases)
        txn.put(odd, b"\x03", leases)  # too short to hold a fence
    with env.begin() as txn:
        assert txn.append_status(journal, leases, a, 2, 0) == (_lmdb.LEASE_LOST, None)
        assert txn.append_status(journal, leases, gone, 1, 0) == (_lmdb.RUN_NOT_FOUND, None)
        assert txn.append_status(journal, leases, odd, 3, 0) == (_lmdb.CORRUPT_LEASE, None)
        assert txn.append_status(journal, leases, b"short", 3, 0) == (_lmdb.INVALID, None)
        assert txn.append_status(journal, leases, a, 3, 0)[0] == _lmdb.APPENDED


class _Op:
    def __init__(self, run_key: bytes, fence: int, seq: int, record: bytes) -> None:
        self.run_key, self.fence, self.seq, self.record = run_key, fence, seq, record


def test_append_records_checks_each_fence_and_goes_on(env: _lmdb.Environment) -> None:
    journal, leases = env.open_db(b"journal"), env.open_db(b"leases")
    a, b, gone, odd = (bytes([i]) * 16 for i in range(4))
    with env.begin(write=True) as txn:
        txn.put(a, (3).to_bytes(8, "little") + bytes(16), leases)
        txn.put(b, (5).to_bytes(8, "little") + bytes(16), leases)
        txn.put(odd, b"\x03", leases)  # too short to hold a fence
        txn.put(b + b"\x00\x00\x00\x00\xff", b"\x02 not a record", journal)
        outcomes = txn.append_records(
            journal,
            leases,
            [
                _Op(a, 3, 0, _record(0, 10)),
                _Op(a, 2, 1, _record(1, 10)),  # an older fence: another holds the run
                _Op(gone, 1, 0, _record(0, 10)),
                _Op(odd, 3, 0, _record(0, 10)),
                _Op(a, 3, 0, _record(0, 99)),  # step 0 again
                _Op(b, 5, 0, _record(0, 10)),  # its group's first chunk is garbage
                _Op(a, 3, 1, _record(1, 10)),
            ],
        )
    assert outcomes == [
        _lmdb.APPENDED,
        _lmdb.LEASE_LOST,
        _lmdb.RUN_NOT_FOUND,
        _lmdb.CORRUPT_LEASE,
        _lmdb.RECORDED_ALREADY,
        _lmdb.CORRUPT_CHUNK,
        _lmdb.APPENDED,
    ]
    with env.begin() as txn:
        journal_now = dict(txn.cursor(journal))
    assert journal_now == {
        a + b"\x00\x00\x00\x00\xff": _record(0, 10) + _record(1, 10),
        b + b"\x00\x00\x00\x00\xff": b"\x02 not a record",
    }


def test_commit_append_commits_one_append_or_nothing(env: _lmdb.Environment) -> None:
    journal, leases = env.open_db(b"journal"), env.open_db(b"leases")
    a, b, gone = (bytes([i]) * 16 for i in range(3))
    with env.begin(write=True) as txn:
        txn.put(a, (3).to_bytes(8, "little") + bytes(16), leases)
        txn.put(b, (5).to_bytes(8, "little") + bytes(16), leases)
        txn.put(b + b"\x00\x00\x00\x00\xff", b"\x02 not a record", journal)
    outcomes = [
        env.commit_append(journal, leases, op)
        for op in (
            _Op(a, 3, 0, _record(0, 10)),
            _Op(a, 2, 1, _record(1, 10)),  # an older fence
            _Op(gone, 1, 0, _record(0, 10)),
            _Op(a, 3, 0, _record(0, 99)),  # step 0 again
            _Op(b, 5, 0, _record(0, 10)),  # its group's first chunk is garbage
            _Op(a[:8], 3, 1, _record(1, 10)),  # not a run key
            _Op(a, 3, 1, _record(1, 10)),
        )
    ]
    assert outcomes == [
        _lmdb.APPENDED,
        _lmdb.LEASE_LOST,
        _lmdb.RUN_NOT_FOUND,
        _lmdb.RECORDED_ALREADY,
        _lmdb.CORRUPT_CHUNK,
        _lmdb.INVALID,
        _lmdb.APPENDED,
    ]
    with env.begin() as txn:
        assert dict(txn.cursor(journal)) == {
            a + b"\x00\x00\x00\x00\xff": _record(0, 10) + _record(1, 10),
            b + b"\x00\x00\x00\x00\xff": b"\x02 not a record",
        }
    # The writer lock was let go after each, whatever its outcome.
    assert env.commit_append(journal, leases, _Op(a, 3, 2, _record(2, 10))) == _lmdb.APPENDED


def test_what_is_not_an_append_fails_alone(env: _lmdb.Environment) -> None:
    journal, leases = env.open_db(b"journal"), env.open_db(b"leases")
    key = bytes(16)
    with env.begin(write=True) as txn:
        txn.put(key, (1).to_bytes(8, "little") + bytes(16), leases)
        outcomes = txn.append_records(
            journal,
            leases,
            [
                _Op(b"short", 1, 0, _record(0, 1)),
                _Op(key, 1, 0, "text"),  # type: ignore[arg-type]
                _Op(key, 1, 0, b""),  # an empty record would make the journal unreadable
                _Op(key, 1, 1 << 32, _record(0, 1)),
                _Op(key, -1, 0, _record(0, 1)),
                _Op(key, 1, 0, _record(0, 1)),
            ],
        )
        assert outcomes == [_lmdb.INVALID] * 5 + [_lmdb.APPENDED]
        with pytest.raises(ValueError, match="run key"):
            txn.put_record(journal, b"short", 0, _record(0, 1))
        with pytest.raises(ValueError, match="empty"):
            txn.put_record(journal, key, 1, b"")
    with env.begin() as txn:
        assert list(txn.cursor(journal).iternext(values=False)) == [key + b"\x00\x00\x00\x00\xff"]


def test_insert_run_writes_a_new_run_while_the_deployments_are_those_seen(
    env: _lmdb.Environment,
) -> None:
    runs, leases, active, deploys = (env.open_db(n) for n in (b"r", b"l", b"a", b"d"))
    new, other = bytes([1]) * 16, bytes([2]) * 16
    with env.begin(write=True) as txn:
        assert txn.insert_run(runs, leases, active, deploys, new, b"row", b"lease", 0, b"") == (
            _lmdb.APPENDED
        )
        # a key with a row already: nothing written
        assert txn.insert_run(runs, leases, active, deploys, new, b"x", b"y", 0, b"") == (
            _lmdb.EXISTS
        )
        txn.put(b"k1", b"v", deploys)
        # a deployment the caller did not see (its count, then its last key): nothing written
        assert txn.insert_run(runs, leases, active, deploys, other, b"r", b"l", 0, b"") == (
            _lmdb.STALE
        )
        assert txn.insert_run(runs, leases, active, deploys, other, b"r", b"l", 1, b"k0") == (
            _lmdb.STALE
        )
        assert txn.get(other, runs) is None and txn.get(other, leases) is None
        assert txn.insert_run(runs, leases, active, deploys, other, b"r", b"l", 1, b"k1") == (
            _lmdb.APPENDED
        )
    with env.begin() as txn:
        assert dict(txn.cursor(runs)) == {new: b"row", other: b"r"}
        assert dict(txn.cursor(leases)) == {new: b"lease", other: b"l"}
        assert dict(txn.cursor(active)) == {new: b"", other: b""}


def test_fenced_value_reads_the_fence_as_append_records_does(env: _lmdb.Environment) -> None:
    runs, leases = env.open_db(b"r"), env.open_db(b"l")
    a, gone, odd, bare = (bytes([i]) * 16 for i in range(4))
    with env.begin(write=True) as txn:
        txn.put(a, (3).to_bytes(8, "little") + bytes(16), leases)
        txn.put(a, b"row", runs)
        txn.put(odd, b"\x03", leases)
        txn.put(bare, (1).to_bytes(8, "little") + bytes(16), leases)
    with env.begin() as txn:
        assert txn.fenced_value(leases, runs, a, 3) == (_lmdb.APPENDED, b"row")
        assert txn.fenced_value(leases, runs, a, 2) == (_lmdb.LEASE_LOST, None)
        assert txn.fenced_value(leases, runs, gone, 1) == (_lmdb.RUN_NOT_FOUND, None)
        assert txn.fenced_value(leases, runs, odd, 3) == (_lmdb.CORRUPT_LEASE, None)
        assert txn.fenced_value(leases, runs, bare, 1) == (_lmdb.APPENDED, None)
        with pytest.raises(ValueError):
            txn.fenced_value(leases, runs, b"short", 3)


def test_end_run_writes_the_row_and_lease_and_files_the_run(env: _lmdb.Environment) -> None:
    runs, leases, active, retain = (env.open_db(n) for n in (b"r", b"l", b"a", b"t"))
    key, idle = bytes([1]) * 16, bytes([2]) * 16
    with env.begin(write=True) as txn:
        txn.put(key, b"", active)
        txn.end_run(runs, leases, active, retain, key, b"done", b"ended", b"filed")
        txn.end_run(runs, leases, active, retain, idle, b"done", b"ended", b"filed")  # not active
    with env.begin() as txn:
        assert dict(txn.cursor(runs)) == {key: b"done", idle: b"done"}
        assert dict(txn.cursor(leases)) == {key: b"ended", idle: b"ended"}
        assert dict(txn.cursor(active)) == {}
        assert dict(txn.cursor(retain)) == {b"filed" + key: b"", b"filed" + idle: b""}
