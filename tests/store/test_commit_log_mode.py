"""The LMDB store with ``commit="log"`` (store/lmdb_log.py): the store contract on it,
workflows, this process's unapplied appends, fencing against a live and a dead holder,
and processes SIGKILLed with acknowledged appends only in their log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_contract import *  # noqa: F403 - the whole contract, on a store in this mode
from test_contract import LONG, Backend, new_run, record

from support.crash_worker import expected
from surestep import Engine, _core, function, testing, workflow
from surestep.errors import ConfigurationError, StoreError, StoreFullError
from surestep.store import commit_log, lmdb, lmdb_env, lmdb_log, open_store
from surestep.store.commit_log import read_records
from surestep.store.lmdb import LmdbStore
from test_crash import effects, recover, start_and_kill


class LogBackend(Backend):
    def new(self) -> LmdbStore:
        return LmdbStore(self.location, commit="log")


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    """The contract's stores, all in this mode (overrides test_contract's)."""
    return LogBackend("lmdb", str(tmp_path / "store"))


@pytest.fixture
def applies_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Applies wait for another op to share their commit (none comes by itself)."""
    monkeypatch.setattr(lmdb_env, "APPLY_INTERVAL", 600.0)


@function
async def add_one(x: int) -> int:
    return x + 1


@workflow
async def count_up(ctx, n: int) -> int:  # type: ignore[no-untyped-def]
    x = 0
    for _ in range(n):
        x = await ctx.step(add_one, x)
    return x


def lmdb_steps(path: str, run_id: str) -> list[int]:
    """The steps LMDB itself holds for the run, read by another process that opens the
    store read-only (no log applied)."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from surestep import _core
        from surestep.store.lmdb import LmdbStore
        async def main():
            store = LmdbStore({path!r}, readonly=True)
            await store.open()
            raw = await store.journal({run_id!r})
            print(sorted(r.seq for b in raw for r in _core.decode_records(b)))
            await store.close()
        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    steps: list[int] = json.loads(out.stdout)
    return steps


def logs(path: str) -> list[str] | None:
    """The commit logs in the store at ``path`` (None: it never had one)."""
    root = Path(path, "commit-log")
    return sorted(p.name for p in root.iterdir()) if root.exists() else None


async def test_workflows_run_alone_and_together(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    async with Engine(path, commit="log") as engine:
        assert await engine.run(count_up, 30) == 30
        results = await asyncio.gather(*(engine.run(count_up, 5) for _ in range(20)))
        assert results == [5] * 20
        assert logs(path)  # this process's log
    assert logs(path) == []  # applied, then removed
    async with Engine(path, commit="lmdb") as engine:  # LMDB's mode reads what the log wrote
        runs = await engine.runs()
        assert len(runs) == 21 and all(r.status == "completed" for r in runs)
        env = engine.store.env  # type: ignore[attr-defined]
        marks = env.read(lambda txn: list(txn.cursor(db=env.dbs.commit_logs)))
        assert marks == []  # the closed process's applied mark went with its log


async def test_lmdbs_mode_makes_no_log(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    async with Engine(path, commit="lmdb") as engine:
        assert await engine.run(count_up, 3) == 3
    assert logs(path) is None


async def test_a_process_that_appends_nothing_makes_no_log(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    async with Engine(path, commit="log", execute=False) as client:
        await client.start(count_up, 3)
        assert logs(path) is None
    async with Engine(path, commit="log") as engine:
        (handle,) = await engine.recover()
        assert await handle.result() == 3
        assert logs(path)  # its first append made it
    assert logs(path) == []


async def test_this_process_sees_its_unapplied_appends(tmp_path: Path, applies_wait: None) -> None:
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        run = new_run()
        fence = await store.create_run(run, "me", LONG)
        for seq in range(3):
            await store.append(run.run_id, fence, seq, record(seq, f"r{seq}"))
        mine = [r.seq for b in await store.journal(run.run_id) for r in _core.decode_records(b)]
        assert sorted(mine) == [0, 1, 2]
        assert lmdb_steps(path, run.run_id) == []  # acknowledged: in the log only
        with pytest.raises(StoreError, match="has a record already"):
            await store.append(run.run_id, fence, 1, record(1))
        await store.renew([(run.run_id, fence)], "me", LONG)  # any op: the applies commit
        assert lmdb_steps(path, run.run_id) == [0, 1, 2]


async def test_runs_stepping_together_share_lmdbs_group_commit(
    tmp_path: Path, applies_wait: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stepping alone goes through the log; the appends of runs stepping together
    go straight to LMDB's group commit, behind the log's applies queued before them."""
    monkeypatch.setattr(lmdb_log, "TIDY_EVERY", 600.0)  # the log's tail is not retired
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        a, b = new_run(), new_run()
        fence_a = await store.create_run(a, "me", LONG)
        fence_b = await store.create_run(b, "me", LONG)
        await store.append(a.run_id, fence_a, 0, record(0))  # after b's creation: LMDB
        assert lmdb_steps(path, a.run_id) == [0]
        await store.append(a.run_id, fence_a, 1, record(1))  # a alone: the log
        assert lmdb_steps(path, a.run_id) == [0]
        await asyncio.gather(
            store.append(b.run_id, fence_b, 0, record(0)),
            store.append(a.run_id, fence_a, 2, record(2)),
        )
        assert lmdb_steps(path, a.run_id) == [0, 1, 2]
        assert lmdb_steps(path, b.run_id) == [0]
        log = store.env.log.log
        logged = [lmdb_log.decode(r.payload)[2] for r in read_records(log.directory, log.log_id)]
        assert logged == [1]


async def test_an_append_goes_through_the_log_only_with_nothing_queued_before_it(
    tmp_path: Path, applies_wait: None
) -> None:
    """A run's append not waited for (queued for LMDB, another run's write before it) and
    its next one: the next one follows its own run, but goes to LMDB behind the first
    rather than through the log ahead of it."""
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        a, b = new_run(), new_run()
        fence_a = await store.create_run(a, "me", LONG)
        await store.create_run(b, "me", LONG)
        first = store.append(a.run_id, fence_a, 0, record(0))  # queued, not awaited
        second = store.append(a.run_id, fence_a, 1, record(1))
        await second
        await first
        assert lmdb_steps(path, a.run_id) == [0, 1]
        assert store.env.log.log is None  # nothing went through the log: none was made


async def test_an_apply_whose_commit_failed_goes_first_into_the_next(
    tmp_path: Path, applies_wait: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit of the log's applies that is not written (a full disk, say): the mode
    stops (appends fail, typed), the applies ride the next commit, before its op, and
    closing removes the log and this process's mark once they are in LMDB."""
    path = str(tmp_path / "store")
    store = LmdbStore(path, commit="log")
    await store.open()
    env = store.env
    run = new_run()
    fence = await store.create_run(run, "me", LONG)
    await store.append(run.run_id, fence, 0, record(0))  # a lone step: the log
    assert lmdb_steps(path, run.run_id) == []
    commit = env._commit
    failures = [StoreFullError("the disk is full")]

    def failing_once(ops: list[Any]) -> list[tuple[Any, BaseException | None]]:
        if failures:
            return [(None, failures.pop())] * len(ops)  # (not written)
        return commit(ops)

    monkeypatch.setattr(env, "_commit", failing_once)
    with pytest.raises(StoreFullError):
        await store.renew([(run.run_id, fence)], "me", LONG)  # takes the apply: fails
    with pytest.raises(StoreFullError, match="could not apply its commit log"):
        await store.append(run.run_id, fence, 1, record(1))  # the mode has stopped
    assert lmdb_steps(path, run.run_id) == []
    await store.renew([(run.run_id, fence)], "me", LONG)  # the apply first, then the renewal
    assert lmdb_steps(path, run.run_id) == [0]
    await store.close()
    assert logs(path) == []
    check = LmdbStore(path, readonly=True)
    await check.open()
    try:
        marks = check.env.read(lambda txn: list(txn.cursor(db=check.env.dbs.commit_logs)))
        assert marks == []  # the mark went with the log
    finally:
        await check.close()


async def test_a_record_larger_than_a_segment_goes_to_lmdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's record that no segment of the log can hold is committed to LMDB (which
    takes any size); the log goes on taking the records that fit."""
    monkeypatch.setattr(commit_log, "SEGMENT_BYTES", 3 * commit_log.HEADER_BYTES)
    monkeypatch.setattr(lmdb_log, "TIDY_EVERY", 600.0)  # the log's tail is not retired
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        run = new_run()
        fence = await store.create_run(run, "me", LONG)
        await store.append(run.run_id, fence, 0, record(0))  # the log
        await store.append(run.run_id, fence, 1, record(1, "x" * 3 * commit_log.HEADER_BYTES))
        await store.append(run.run_id, fence, 2, record(2))  # the log again
        assert store.env.log.failed is None
        log = store.env.log.log
        logged = [lmdb_log.decode(r.payload)[2] for r in read_records(log.directory, log.log_id)]
        assert logged == [0, 2]
        held = [r.seq for b in await store.journal(run.run_id) for r in _core.decode_records(b)]
        assert sorted(held) == [0, 1, 2]


@pytest.mark.parametrize("lone", [True, False], ids=["lone", "with-others"])
async def test_a_run_forked_from_surestep_0_1_takes_appends_beside_its_records(
    tmp_path: Path, lone: bool
) -> None:
    """Format-1 records (surestep 0.1's, each under its own step key) in LMDB: an append
    checks them, through the log (a run stepping alone) and straight to LMDB (after
    another run's write), and reads none as a chunk."""
    recorded = testing.load_journal(Path(__file__).parents[1] / "golden" / "checkout-v1.json")
    async with LogBackend("lmdb", str(tmp_path / "store")).opened() as store:
        run, other = new_run(), new_run()
        fence = await store.create_run(run, "me", LONG)
        seqs = [_core.decode_record(raw).seq for raw in recorded.records]
        for seq, raw in zip(seqs, recorded.records, strict=True):
            await store.append(run.run_id, fence, seq, raw)
        await store.renew([(run.run_id, fence)], "me", LONG)  # a commit: the applies land
        if lone:
            await store.append(run.run_id, fence, max(seqs) + 100, record(max(seqs) + 100))
        else:
            await store.create_run(other, "me", LONG)
        with pytest.raises(StoreError, match="has a record already"):
            await store.append(run.run_id, fence, seqs[0], record(seqs[0]))
        after = max(seqs) + 1
        await store.append(run.run_id, fence, after, record(after))
        held = [r.seq for raw in await store.journal(run.run_id) for r in _core.decode_records(raw)]
        assert sorted(held) == sorted([*seqs, after] + ([max(seqs) + 100] if lone else []))


async def test_a_finish_is_never_in_lmdb_without_the_appends_before_it(
    tmp_path: Path, applies_wait: None
) -> None:
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        run = new_run()
        fence = await store.create_run(run, "me", LONG)
        await store.append(run.run_id, fence, 0, record(0))
        await store.finish(run.run_id, fence, "completed", 1, None)
        assert lmdb_steps(path, run.run_id) == [0]


def test_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="commit must be 'lmdb' or 'log'"):
        LmdbStore(str(tmp_path), commit="wal")
    with pytest.raises(ConfigurationError, match="read-only"):
        LmdbStore(str(tmp_path), commit="log", readonly=True)
    with pytest.raises(ConfigurationError, match="nothing is flushed"):
        LmdbStore(str(tmp_path), commit="log", durability="process")
    with pytest.raises(ConfigurationError, match="takes no option 'commit'"):
        open_store("postgresql://localhost/x", commit="log")


def test_the_mode_of_a_store_that_names_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default, or ``$SURESTEP_LMDB_COMMIT``; the log only where it saves a flush."""
    path = str(tmp_path)
    monkeypatch.delenv(lmdb.COMMIT_ENV, raising=False)
    assert LmdbStore(path).commit == lmdb.DEFAULT_COMMIT == "log"
    for chosen, other in (("log", "lmdb"), ("lmdb", "log")):
        monkeypatch.setenv(lmdb.COMMIT_ENV, chosen)
        assert LmdbStore(path).commit == chosen
        assert LmdbStore(path, durability="process").commit == "lmdb"
        assert LmdbStore(path, readonly=True).commit == "lmdb"
        assert LmdbStore(path, commit=other).commit == other  # named: the environment aside
    monkeypatch.setenv(lmdb.COMMIT_ENV, "wal")
    with pytest.raises(ConfigurationError, match="SURESTEP_LMDB_COMMIT must be 'lmdb' or 'log'"):
        LmdbStore(path)


async def test_one_commit_mode_per_store_and_process(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    first = LmdbStore(path, commit="log")
    await first.open()
    try:
        with pytest.raises(ConfigurationError, match="one commit mode"):
            await LmdbStore(path, commit="lmdb").open()
    finally:
        await first.close()


async def test_a_mark_whose_log_is_gone_does_not_hold_a_run(tmp_path: Path) -> None:
    """A process that closed with everything applied leaves no log: a mark of its pid
    found without its log (a later process with the same pid, say) decides nothing."""
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        env = store.env
        owner = f"{os.uname().nodename}:{os.getpid()}:someone"
        assert env.read(
            lambda txn: lmdb_log.may_take_over(txn, env.dbs.commit_logs, owner, 1e18, path)
        )  # this process's mark, no log yet: nothing was appended through it
        run = new_run()
        await store.append(run.run_id, await store.create_run(run, "me", LONG), 0, record(0))
        assert not env.read(
            lambda txn: lmdb_log.may_take_over(txn, env.dbs.commit_logs, owner, 1e18, path)
        )  # this process's mark, its log live: a lease ending later is held
        gone = str(tmp_path / "elsewhere")
        assert env.read(
            lambda txn: lmdb_log.may_take_over(txn, env.dbs.commit_logs, owner, 1e18, gone)
        )


CLAIMER = textwrap.dedent(
    """
    import asyncio, sys
    from surestep.store.lmdb import LmdbStore
    from surestep import _core
    async def main(path, run_id):
        store = LmdbStore(path)
        await store.open()
        run = await store.claim(run_id, "claimer", 60.0)
        if run is None:
            print("refused")
        else:
            raw = await store.journal(run_id)
            print("taken", sorted(r.seq for b in raw for r in _core.decode_records(b)))
        await store.close()
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def claim_in_another_process(path: str, run_id: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CLAIMER, path, run_id], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


async def test_a_live_holders_expired_lease_waits_for_its_log(
    tmp_path: Path, applies_wait: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder acknowledged an append that LMDB lacks, and its lease ran out: another
    process may not take the run until the holder's applied mark passes the lease's end."""
    monkeypatch.setattr(lmdb_log, "TIDY_EVERY", 600.0)  # no commit of the holder's own
    path = str(tmp_path / "store")
    async with LogBackend("lmdb", path).opened() as store:
        run = new_run()
        owner = f"{os.uname().nodename}:{os.getpid()}:holder"
        # A lease long enough that the append is acknowledged from the log however
        # loaded the machine, then waited out.
        fence = await store.create_run(run, owner, 3.0)
        await store.append(run.run_id, fence, 0, record(0))
        await asyncio.sleep(3.1)  # the lease has run out; the append is in the log only
        assert claim_in_another_process(path, run.run_id) == "refused"
        await store.append_log(run.run_id, 0, 0, b'"a line"')  # a commit: applies, marks
        assert claim_in_another_process(path, run.run_id) == "taken [0]"


HOLDER = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from surestep import _core
    from surestep.store import lmdb_env
    from surestep.store.base import RunInfo
    from surestep.store.lmdb import LmdbStore
    def record(seq):
        kind = _core.KIND_STEP
        return _core.encode_record(kind, seq, 1, "s", None, None, b'"x"', True, None, None)
    async def main(path, run_id, lease, apply_interval):
        lmdb_env.APPLY_INTERVAL = apply_interval
        store = LmdbStore(path, commit="log")
        await store.open()
        run = RunInfo(run_id=run_id, workflow="wf", version="v1", args=[], kwargs={})
        owner = f"{os.uname().nodename}:{os.getpid()}:holder"
        fence = await store.create_run(run, owner, lease)
        for seq in range(5):
            await store.append(run_id, fence, seq, record(seq))
        print("acknowledged", store.env.log.log.directory, flush=True)
        time.sleep(600)  # idle, its event loop blocked: only the store's threads run
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
    """
)


def hold(path: str, run_id: str, lease: float, apply_interval: float) -> subprocess.Popen[str]:
    """A process that appends five steps to a run it holds, then idles."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, path, run_id, str(lease), str(apply_interval)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_dead_holders_log_is_applied_before_its_run_is_taken(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    run_id = new_run().run_id
    with hold(path, run_id, lease=600.0, apply_interval=600.0) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().split()[0] == "acknowledged"
        assert lmdb_steps(path, run_id) == []  # five steps acknowledged, in its log only
        assert claim_in_another_process(path, run_id) == "refused"  # alive, lease valid
        holder.kill()
        holder.wait()
    assert claim_in_another_process(path, run_id) == "taken [0, 1, 2, 3, 4]"
    assert logs(path) == []


def test_an_idle_live_holders_expired_lease_is_taken_and_its_log_emptied(
    tmp_path: Path,
) -> None:
    """A live process appended, then stopped writing (its lease ends and is not renewed):
    its applied mark moves past the lease's end without any write of its own, so another
    process takes the run while it lives; and its log is left holding no record."""
    path = str(tmp_path / "store")
    run_id = new_run().run_id
    with hold(path, run_id, lease=2.0, apply_interval=lmdb_env.APPLY_INTERVAL) as holder:
        assert holder.stdout is not None
        said, directory = holder.stdout.readline().split()
        assert said == "acknowledged"
        try:
            outcome = "refused"
            for _ in range(120):  # however long the loaded machine takes, bounded
                outcome = claim_in_another_process(path, run_id)
                if outcome != "refused":
                    break
            assert outcome == "taken [0, 1, 2, 3, 4]"
            log_id = bytes.fromhex(os.path.basename(directory))
            for _ in range(120):
                if read_records(directory, log_id) == []:
                    break
                time.sleep(0.1)
            assert read_records(directory, log_id) == []
            assert holder.poll() is None  # alive throughout
        finally:
            holder.kill()
            holder.wait()
    assert claim_in_another_process(path, run_id) == "refused"  # held by the claimer


@pytest.mark.slow
@pytest.mark.parametrize("recover_commit", ["log", "lmdb"])
def test_kill_between_steps_loses_no_acknowledged_step(tmp_path: Path, recover_commit: str) -> None:
    """SIGKILLed right after step 3 was acknowledged, with every apply still waiting:
    the steps are in the log only; the next process (in either mode) applies them and
    runs none of them again."""
    store, ledger = str(tmp_path / "store"), str(tmp_path / "ledger")
    env = {"COMMIT": "log", "APPLY_INTERVAL": "600"}
    run_id = start_and_kill(["start", store, ledger, "8"], "between:3", env)
    assert [e["seq"] for e in effects(ledger)] == [0, 1, 2, 3]
    assert lmdb_steps(store, run_id) == []
    assert recover(store, ledger, {"COMMIT": recover_commit}) == {run_id: expected(8)}
    assert Counter(e["seq"] for e in effects(ledger)) == Counter(range(8))


@pytest.mark.slow
def test_kill_inside_a_step_runs_it_once_more(tmp_path: Path) -> None:
    store, ledger = str(tmp_path / "store"), str(tmp_path / "ledger")
    env = {"COMMIT": "log"}
    run_id = start_and_kill(["start", store, ledger, "6"], "inside:3", env)
    assert recover(store, ledger, env) == {run_id: expected(6)}
    seqs = Counter(e["seq"] for e in effects(ledger))
    assert seqs == Counter({0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1})


def test_many_runs_killed_in_log_mode_all_finish(tmp_path: Path) -> None:
    store, ledger = str(tmp_path / "store"), str(tmp_path / "ledger")
    env = {"COMMIT": "log", "APPLY_INTERVAL": "600"}
    ids = [start_and_kill(["start", store, ledger, "5"], f"between:{k}", env) for k in range(3)]
    assert recover(store, ledger, {"COMMIT": "log"}) == {run_id: expected(5) for run_id in ids}
    per_run = Counter((e["run"], e["seq"]) for e in effects(ledger))
    assert per_run == Counter((run_id, k) for run_id in ids for k in range(5))
