"""The commit log (surestep.store.commit_log): framing, checksums, torn tails, segments
made and recycled, dead logs read and removed, and what a power cut leaves."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.power_loss import Image, PowerCutFiles, Snapshot
from surestep import _core
from surestep.errors import StoreError
from surestep.store import commit_log
from surestep.store.commit_log import (
    FRAME_OVERHEAD,
    HEADER_BYTES,
    CommitLog,
    LogError,
    dead_logs,
    read_records,
)

SMALL = 3 * HEADER_BYTES  # segments of 8 KiB of frames: a few dozen records each


def payload(i: int) -> bytes:
    return b"record %d " % i + bytes([i % 251]) * (i % 97)


def segment_files(log: CommitLog) -> list[Path]:
    return sorted(Path(log.directory).glob("segment-*"))


def records_of(log: CommitLog) -> list[tuple[int, bytes]]:
    return [(r.lsn, r.payload) for r in read_records(log.directory, log.log_id)]


@pytest.fixture
def log(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = CommitLog(str(tmp_path / "logs"), segment_bytes=SMALL)
    yield made
    made.close()


def test_appends_come_back_in_order_with_their_lsns(log: CommitLog) -> None:
    assert log.append([payload(1)]) == 1
    assert log.append([payload(2), payload(3), payload(4)]) == 4
    assert records_of(log) == [(i, payload(i)) for i in range(1, 5)]


def test_frame_layout_length_checksum_lsn_payload() -> None:
    seed = commit_log.log_seed(bytes(16))
    data = commit_log.frame(seed, 7, b"abc")
    assert len(data) == FRAME_OVERHEAD + 3
    length, checksum, lsn = commit_log.FRAME.unpack_from(data)
    assert (length, lsn, data[FRAME_OVERHEAD:]) == (3, 7, b"abc")
    assert checksum == _core.xxh64(struct.pack("<IQ", 3, 7) + b"abc", seed)


def test_a_flipped_bit_ends_the_records_there(log: CommitLog) -> None:
    log.append([payload(i) for i in range(1, 11)])
    path = segment_files(log)[0]
    data = bytearray(path.read_bytes())
    offset = HEADER_BYTES + sum(FRAME_OVERHEAD + len(payload(i)) for i in range(1, 6))
    data[offset + FRAME_OVERHEAD + 2] ^= 0x10  # inside record 6's payload
    path.write_bytes(bytes(data))
    assert [lsn for lsn, _ in records_of(log)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("cut", [1, FRAME_OVERHEAD - 1, FRAME_OVERHEAD + 1])
def test_a_torn_last_frame_is_not_a_record(log: CommitLog, cut: int) -> None:
    log.append([payload(1), payload(2)])
    path = segment_files(log)[0]
    data = bytearray(path.read_bytes())
    start = HEADER_BYTES + FRAME_OVERHEAD + len(payload(1))
    end = start + FRAME_OVERHEAD + len(payload(2))
    data[start + cut : end] = bytes(end - start - cut)  # the frame's tail never reached the disk
    path.write_bytes(bytes(data))
    assert records_of(log) == [(1, payload(1))]


def test_a_frame_of_another_log_is_not_read_as_this_ones(tmp_path: Path) -> None:
    """Same LSN, same place, valid frame: the checksum's seed is the log's."""
    one = CommitLog(str(tmp_path), segment_bytes=SMALL)
    two = CommitLog(str(tmp_path), segment_bytes=SMALL)
    one.append([b"one's record"])
    two.append([b"two's"])
    mine = segment_files(two)[0]
    data = bytearray(mine.read_bytes())
    data[HEADER_BYTES:] = segment_files(one)[0].read_bytes()[HEADER_BYTES:]
    mine.write_bytes(bytes(data))
    assert records_of(two) == []
    one.close(), two.close()


def test_records_roll_over_segments_and_applied_ones_are_recycled(log: CommitLog) -> None:
    lsn = 0
    for i in range(1, 400):
        lsn = log.append([payload(i)])
    assert log.segments()[0] > 3  # nothing applied yet: every segment is kept
    assert records_of(log) == [(i, payload(i)) for i in range(1, 400)]
    log.applied(200)
    live, spares = log.segments()
    assert spares == 1  # one kept for the next roll, the others removed
    records = records_of(log)
    assert records[0][0] <= 201 and records[-1] == (lsn, payload(lsn))
    assert [r[0] for r in records] == list(range(records[0][0], lsn + 1))
    assert len(segment_files(log)) == live + spares


def test_a_recycled_segment_never_shows_its_old_records(log: CommitLog) -> None:
    for i in range(1, 200):
        log.append([payload(i)])
    log.applied(199)
    before = set(segment_files(log))
    for i in range(200, 400):
        log.append([payload(i)])
    assert before & set(segment_files(log))  # a segment came back into use
    records = records_of(log)
    assert [r[0] for r in records] == list(range(records[0][0], 400))
    assert all(p == payload(lsn) for lsn, p in records)


def test_the_segment_being_written_is_not_recycled(log: CommitLog) -> None:
    log.append([payload(1)])
    log.applied(1)
    assert log.segments()[0] == 1
    assert log.append([payload(2)]) == 2
    assert records_of(log) == [(1, payload(1)), (2, payload(2))]


def test_an_idle_logs_tail_is_retired_once_applied_and_reused(log: CommitLog) -> None:
    log.prepare()
    log.append([payload(1), payload(2)])
    assert not log.retire_tail()  # not applied yet
    log.applied(2)
    files = segment_files(log)
    assert log.retire_tail()
    assert records_of(log) == []  # a recovery now has nothing to apply
    assert log.segments() == (0, 2) and not log.retire_tail()
    log.append([payload(3)])  # begins a segment, one of the two kept
    assert records_of(log) == [(3, payload(3))]
    assert segment_files(log) == files


def test_spares_are_written_with_zeros_before_use(log: CommitLog) -> None:
    log.prepare()
    assert log.segments() == (1, 1)
    spare = [p for p in segment_files(log) if p.stat().st_size == SMALL][-1]
    stat = os.stat(spare)
    assert stat.st_blocks * 512 >= SMALL  # blocks allocated by writing, not a sparse file
    assert spare.read_bytes() == bytes(SMALL)


def test_bad_records_are_refused_and_nothing_is_written(log: CommitLog) -> None:
    log.append([payload(1)])
    with pytest.raises(LogError, match="not 0"):
        log.append([payload(2), b""])
    with pytest.raises(LogError, match=f"not {SMALL}"):
        log.append([bytes(SMALL)])
    assert isinstance(LogError("x"), StoreError)
    assert log.append([payload(2)]) == 2
    assert records_of(log) == [(1, payload(1)), (2, payload(2))]


def test_segment_size_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        CommitLog(str(tmp_path), segment_bytes=HEADER_BYTES * 2 + 1)
    with pytest.raises(ValueError, match="at least"):
        CommitLog(str(tmp_path), segment_bytes=HEADER_BYTES)


def test_a_closed_log_with_everything_applied_is_removed(tmp_path: Path) -> None:
    log = CommitLog(str(tmp_path), segment_bytes=SMALL)
    log.append([payload(1)])
    log.applied(1)
    log.close()
    assert not os.path.exists(log.directory)


def test_a_live_log_is_not_dead_and_a_closed_unapplied_one_is(tmp_path: Path) -> None:
    log = CommitLog(str(tmp_path), segment_bytes=SMALL)
    log.append([payload(1), payload(2)])
    assert list(dead_logs(str(tmp_path))) == []  # its lock is held
    log.close()  # not applied: left for the next process
    (dead,) = dead_logs(str(tmp_path))
    assert list(dead_logs(str(tmp_path))) == []  # this caller holds it now
    assert [(r.lsn, r.payload) for r in dead.records()] == [(1, payload(1)), (2, payload(2))]
    dead.remove()
    assert os.listdir(tmp_path) == []


RECOVERER = textwrap.dedent(
    """
    import sys
    from surestep.store.commit_log import dead_logs
    taken = 0
    for dead in dead_logs(sys.argv[1]):
        dead.records()
        dead.remove()
        taken += 1
    print(taken)
    """
)


def test_a_log_being_made_is_never_taken_for_a_dead_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process looks for dead logs (and removes what it finds, as a recovery
    does) at each step of making a new log: between its directory and its lock, between
    its lock and its ``flock``, before its first segment. It takes nothing, and the new
    log works."""
    root = str(tmp_path / "logs")
    looks: list[str] = []

    def recover_elsewhere(moment: str) -> None:
        if os.path.isdir(root):
            out = subprocess.run(
                [sys.executable, "-c", RECOVERER, root], capture_output=True, text=True, check=True
            )
            looks.append(f"{moment}: {out.stdout.strip()}")

    real_open, real_flock, real_rename = os.open, commit_log.fcntl.flock, os.rename

    def opening(path: str, *args: object) -> int:
        recover_elsewhere(f"open {os.path.basename(path)}")
        return real_open(path, *args)  # type: ignore[arg-type]

    def flocking(fd: int, operation: int) -> None:
        recover_elsewhere("flock")
        real_flock(fd, operation)

    def renaming(src: str, dst: str) -> None:
        recover_elsewhere(f"rename {os.path.basename(src)}")
        real_rename(src, dst)

    monkeypatch.setattr(commit_log.os, "open", opening)
    monkeypatch.setattr(commit_log.fcntl, "flock", flocking)
    monkeypatch.setattr(commit_log.os, "rename", renaming)
    log = CommitLog(root, segment_bytes=SMALL)
    monkeypatch.undo()
    try:
        assert len(looks) >= 4 and all(look.endswith(": 0") for look in looks), looks
        log.append([payload(1)])
        assert records_of(log) == [(1, payload(1))]
    finally:
        log.close()


def test_a_killed_processs_log_is_dead_with_every_acknowledged_record(tmp_path: Path) -> None:
    """A real process appends, says what was acknowledged, and is SIGKILLed while it
    goes on appending: its log is found dead, with every acknowledged record in it."""
    script = textwrap.dedent(
        f"""
        import sys
        from surestep.store.commit_log import CommitLog
        log = CommitLog({str(tmp_path)!r}, segment_bytes={SMALL})
        i = 0
        while True:
            i += 1
            log.append([b"record %d" % i])
            if i % 50 == 0:
                log.applied(i - 50)
            print(i, flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert child.stdout is not None
    acknowledged = 0
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    child.kill()
    child.wait()
    child.stdout.close()
    (dead,) = dead_logs(str(tmp_path))
    records = dead.records()
    assert records[-1].lsn >= acknowledged
    assert records[0].lsn <= acknowledged - 50
    assert all(r.payload == b"record %d" % r.lsn for r in records)
    assert [r.lsn for r in records] == list(range(records[0].lsn, records[-1].lsn + 1))


def test_a_forked_child_does_not_keep_the_log_locked(tmp_path: Path) -> None:
    """A process makes a log, forks a child that lives on, and dies without closing the
    log: the log is dead although the child still runs."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from surestep.store.commit_log import CommitLog
        log = CommitLog({str(tmp_path)!r}, segment_bytes={SMALL})
        log.append([b"one"])
        if os.fork() == 0:
            print("child", os.getpid(), flush=True)
            os.close(1)
            time.sleep(60)
            os._exit(0)
        time.sleep(0.1)
        os._exit(0)
        """
    )
    parent = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, check=True)
    child = int(parent.stdout.split()[1])
    try:
        os.kill(child, 0)  # still alive
        (dead,) = dead_logs(str(tmp_path))
        assert [r.payload for r in dead.records()] == [b"one"]
    finally:
        os.kill(child, 9)


# -- power loss


class _Workload:
    """Appends in batches of 1-5 records, applies now and then, and snapshots what a
    power cut would leave after every file operation, with what was acknowledged."""

    def __init__(self, root: str, rng: random.Random) -> None:
        self.cuts: list[tuple[Snapshot, int, int]] = []  # state, acknowledged, applied
        self.acknowledged = self.applied = 0
        self.files = PowerCutFiles(self._cut)
        self.log = CommitLog(root, segment_bytes=SMALL, files=self.files)
        self.payloads: dict[int, bytes] = {}
        self.rng = rng

    def _cut(self) -> None:
        self.cuts.append((self.files.snapshot(), self.acknowledged, self.applied))

    def run(self, batches: int) -> None:
        lsn = 0
        for _ in range(batches):
            batch = []
            for _ in range(self.rng.randint(1, 5)):
                lsn += 1
                self.payloads[lsn] = payload(self.rng.randrange(10_000)) * self.rng.randint(1, 4)
                batch.append(self.payloads[lsn])
            self.acknowledged = self.log.append(batch)
            if self.rng.random() < 0.1:  # the store's applier caught up to some point
                self.applied = self.rng.randint(self.applied, self.acknowledged)
                self.log.applied(self.applied)
            if self.rng.random() < 0.05:
                self.log.prepare()


@pytest.mark.parametrize("seed", range(3))
def test_a_power_cut_anywhere_loses_no_acknowledged_record(tmp_path: Path, seed: int) -> None:
    """Hundreds of cut points (after every write, flush, rename and removal), several
    images at each: the sure part alone, everything pending, random sectors of it."""
    rng = random.Random(seed)
    work = _Workload(str(tmp_path), rng)
    work.run(150)
    assert len(work.cuts) > 300
    for snapshot, acknowledged, applied in work.cuts:
        for keep in (0.0, 1.0, None, None, None):
            image = Image(snapshot, rng, keep)
            records = read_records(work.log.directory, work.log.log_id, image)
            lsns = [r.lsn for r in records]
            assert lsns == list(range(lsns[0], lsns[-1] + 1)) if lsns else True
            assert all(r.payload == work.payloads[r.lsn] for r in records)
            # every acknowledged record not yet applied is there
            if acknowledged > applied:
                assert lsns and lsns[0] <= applied + 1 and lsns[-1] >= acknowledged
    work.log.close()


def test_a_log_left_half_made_is_removed_once_old_and_unlocked(tmp_path: Path) -> None:
    """A process killed while making its log leaves ``<id>.new`` (its lock file, no
    record): the search for dead logs removes it once it is older than ABANDONED_AFTER
    and nobody holds its lock; a young one, or one whose maker holds its lock, stays."""
    import fcntl
    import time

    old = time.time() - commit_log.ABANDONED_AFTER - 1

    def making(name: str, lock: str, age: float | None) -> Path:
        directory = tmp_path / f"{name}.new"
        directory.mkdir()
        (directory / lock).touch()
        if age is not None:
            os.utime(directory, (age, age))
        return directory

    abandoned = making("a" * 32, "lock.new", old)
    renamed_lock = making("b" * 32, "lock", old)
    young = making("c" * 32, "lock.new", None)
    held = making("d" * 32, "lock", old)
    fd = os.open(held / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its maker, alive
        assert list(commit_log.dead_logs(str(tmp_path))) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, held.name])
    finally:
        os.close(fd)
    assert not abandoned.exists() and not renamed_lock.exists()
