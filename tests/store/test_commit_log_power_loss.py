"""Power cuts under the LMDB store with ``commit="log"``, at every file operation of its
commit log and after every LMDB commit: no acknowledged append is lost, and the store
opens clean.

The commit log's files go through the power-cut model (``support/power_loss.py``): after
a cut, a log file holds what its last ``fdatasync`` covered and any choice of the
sectors written since. LMDB is taken as it stood after its last sync commit that
returned: its own crash safety (pages, then the meta page) is LMDB's, not modelled here;
what is tested is everything this store adds on top of it: that an append is
acknowledged only once its record is flushed to the log, that a segment is recycled only
once the LMDB commit covering it returned, and that the next opener applies what is left.

At each cut point the state the device may hold is laid out in a directory of its own
(LMDB's data file as of that commit; the log's segments as the model gives them), which
a fresh store opens in the default mode (the crashed process is gone: its log is
applied at open), and every append acknowledged before the cut is read back.
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

from support.power_loss import Image, PowerCutFiles, Snapshot
from surestep import _core
from surestep.store import commit_log, lmdb_env, lmdb_log
from surestep.store.base import RunInfo, new_run_id
from surestep.store.lmdb import LmdbStore

DATA = "data.mdb"


def record(seq: int, run: int) -> bytes:
    body = b'"run %d step %d"' % (run, seq)
    return _core.encode_record(_core.KIND_STEP, seq, 1, "s", None, None, body, True, None, None)


class Recorder:
    """Numbers every event (a log file operation, an LMDB commit) and keeps what a cut
    right after it would leave: the log's model, LMDB's data file as of its last commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.files = PowerCutFiles(self._log_op)
        self.lock = self.files.lock  # one lock: the model's, held around each event
        self.cuts: list[tuple[int, Snapshot, int]] = []  # event, the log, LMDB's copy
        self.lmdb: list[bytes] = []  # LMDB's data file after each commit

    def _log_op(self) -> None:
        self.count += 1
        if self.lmdb:  # (before the store's first commit nothing was acknowledged)
            self.cuts.append((self.count, self.files.snapshot(), len(self.lmdb) - 1))

    def lmdb_committed(self) -> None:
        with self.lock:
            self.count += 1
            self.lmdb.append(Path(self.path, DATA).read_bytes())
            self.cuts.append((self.count, self.files.snapshot(), len(self.lmdb) - 1))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    rec = Recorder(str(tmp_path / "store"))
    monkeypatch.setattr(commit_log, "FILES", rec.files)
    monkeypatch.setattr(commit_log, "SEGMENT_BYTES", 3 * commit_log.HEADER_BYTES)
    monkeypatch.setattr(lmdb_env, "APPLY_INTERVAL", 0.002)
    committed = lmdb_log.LogMode.committed

    def observed(self: lmdb_log.LogMode, ops: Any, outcomes: Any, written: bool) -> None:
        if written:  # LMDB's state after this sync commit, before the log may recycle
            rec.lmdb_committed()
        committed(self, ops, outcomes, written)

    monkeypatch.setattr(lmdb_log.LogMode, "committed", observed)
    return rec


async def workload(rec: Recorder, runs: int, steps: int) -> list[tuple[int, str, int]]:
    """Runs stepping together; each acknowledged append with the event count it was
    acknowledged at (every cut from then on must keep it)."""
    store = LmdbStore(rec.path, commit="log")
    await store.open()
    acknowledged: list[tuple[int, str, int]] = []
    rng = random.Random(5)

    async def one(index: int) -> None:
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
        fence = await store.create_run(run, "worker:1:a", 600.0)
        for seq in range(steps):
            await store.append(run.run_id, fence, seq, record(seq, index))
            with rec.lock:
                acknowledged.append((rec.count, run.run_id, seq))
            if rng.random() < 0.2:
                await asyncio.sleep(0.003)  # let the applies commit now and then

    try:
        await asyncio.gather(*(one(i) for i in range(runs)))
    finally:
        await store.close()
    return acknowledged


def lay_out(rec: Recorder, snapshot: Snapshot, lmdb: int, rng: random.Random, where: Path) -> None:
    """The device's state at a cut, as files under ``where`` (a store directory)."""
    where.mkdir()
    (where / DATA).write_bytes(rec.lmdb[lmdb])
    image = Image(snapshot, rng)
    for path, data in image.files.items():
        target = where / os.path.relpath(path, rec.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.parent / commit_log.LOCK).touch()  # nobody holds it: the process died
        target.write_bytes(data)


async def read_back(path: str, run_ids: set[str]) -> dict[str, set[int]]:
    # No log of its own: the model of the disk stands under every commit log here.
    store = LmdbStore(path, commit="lmdb")
    await store.open()
    try:
        return {
            run_id: {
                r.seq for raw in await store.journal(run_id) for r in _core.decode_records(raw)
            }
            for run_id in run_ids
        }
    finally:
        await store.close()


def test_a_power_cut_anywhere_loses_no_acknowledged_append(
    recorder: Recorder, tmp_path: Path
) -> None:
    """(On one event loop: the loop is not what is tested, and the cuts take a while.)"""
    asyncio.run(cut_everywhere(recorder, tmp_path))


async def cut_everywhere(recorder: Recorder, tmp_path: Path) -> None:
    acknowledged = await workload(recorder, runs=4, steps=60)
    assert len(recorder.lmdb) > 5 and len(recorder.cuts) > 100
    rng = random.Random(11)
    run_ids = {run_id for _, run_id, _ in acknowledged}
    for i, (count, snapshot, lmdb) in enumerate(recorder.cuts):
        where = tmp_path / f"cut-{i}"
        lay_out(recorder, snapshot, lmdb, rng, where)
        found = await read_back(str(where), run_ids)  # opens clean, applies the log
        for at, run_id, seq in acknowledged:
            if at <= count:
                assert seq in found[run_id], (i, run_id, seq)
        left = where / lmdb_log.ROOT  # (none at all when no segment's name was flushed)
        assert not left.exists() or not list(left.iterdir())  # applied, then removed
