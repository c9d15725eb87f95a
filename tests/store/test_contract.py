"""The store contract (``surestep.store.base.Store``), run against every backend.

On each backend of ``conftest.store_url``: a fresh LMDB directory, or a fresh schema on
the session's private PostgreSQL server, per test, with the statements of plain
PostgreSQL and with Citus's forms (marked ``citus_forms``). Instances made by one ``backend``
share the same store, as processes sharing a directory or a database do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from surestep import LeaseLostError, _core, serde
from surestep.errors import ConfigurationError, RunFinishedError, RunNotFoundError
from surestep.store import Store, open_store
from surestep.store.base import (
    KEEP_DEFAULT,
    KEEP_FOREVER,
    TRANSITIONS,
    RunInfo,
    check_idempotency_key,
    child_run_id,
    transition,
    wait_set,
)

pytestmark = pytest.mark.citus_forms

LONG = 60.0  # a lease that does not run out during a test
GONE = -1.0  # a lease that has already run out
SERVED = {"wf": "v1"}  # the workflow versions a claimer serves
_ids = itertools.count(int(time.time() * 1000))


def new_id() -> str:
    """Run ids in strictly increasing order (``new_run_id`` orders by millisecond only)."""
    return f"{next(_ids):012x}{uuid.uuid4().hex[:20]}"


class Backend:
    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind
        self.location = location

    def new(self) -> Store:
        return open_store(self.location)

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Store]:
        store = self.new()
        await store.open()
        try:
            yield store
        finally:
            await store.close()


@pytest.fixture
def backend(store_url: str) -> Backend:
    """The store of ``conftest.store_url``, on each backend."""
    kind = "postgres" if store_url.startswith("postgresql://") else "lmdb"
    return Backend(kind, store_url)


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def new_run(workflow: str = "wf", **fields: Any) -> RunInfo:
    fields = {"args": [], "kwargs": {}, **fields}
    return RunInfo(run_id=new_id(), workflow=workflow, version="v1", **fields)


def record(seq: int, text: str = "") -> bytes:
    output = b'"%b"' % text.encode()
    return _core.encode_record(_core.KIND_STEP, seq, 1, "s", None, None, output, True, None, None)


async def journal(store: Store, run_id: str) -> list[bytes]:
    """The run's records, one encoded record each, in step order (a store may keep
    several records in one of the buffers ``Store.journal`` returns)."""
    records = [r for raw in await store.journal(run_id) for r in _core.decode_records(raw)]
    return [r.raw for r in sorted(records, key=lambda r: r.seq)]


# ---------------------------------------------------------------- runs


async def test_create_and_get_round_trip(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run(
            args=[1, "two", {"z": [None, True], "a": 1.5}, "nul\u0000é"],
            kwargs={"b": {"nested": [1, 2]}, "a": -(2**53)},
            session_id="sess",
            user_id="user",
        )
        assert await store.create_run(run, None, LONG) == 0
        got = await store.get_run(run.run_id)
        assert (got.workflow, got.version, got.args, got.kwargs) == (
            "wf",
            "v1",
            run.args,
            run.kwargs,
        )
        assert list(got.kwargs) == ["b", "a"]  # key order kept
        assert list(got.args[2]) == ["z", "a"]
        assert (got.session_id, got.user_id, got.status) == ("sess", "user", "pending")
        assert (got.fence, got.attempt, got.owner, got.result, got.error) == (
            0,
            0,
            None,
            None,
            None,
        )
        assert got.created_at == pytest.approx(run.created_at, abs=1e-3)

        held = new_run()
        assert await store.create_run(held, "me:1:a", LONG) == 1
        assert (held.fence, held.attempt, held.owner, held.status) == (1, 1, "me:1:a", "running")
        got = await store.get_run(held.run_id)
        assert (got.fence, got.attempt, got.owner, got.status) == (1, 1, "me:1:a", "running")
        assert got.lease_until == pytest.approx(held.lease_until, abs=1e-3) and got.lease_until > 0

        with pytest.raises(RunNotFoundError):
            await store.get_run(new_id())


async def test_list_runs_newest_first_with_filters_and_limit(backend: Backend) -> None:
    async with backend.opened() as store:
        runs = [new_run("alpha" if i % 2 else "beta") for i in range(9)]
        for run in runs:
            await store.create_run(run, "me:1:a", LONG)
        for run in runs[:3]:
            await store.finish(run.run_id, run.fence, "completed", {"i": run.run_id}, None)
        newest_first = [r.run_id for r in reversed(runs)]

        assert [r.run_id for r in await store.list_runs()] == newest_first
        assert [r.run_id for r in await store.list_runs(limit=4)] == newest_first[:4]
        alpha = await store.list_runs(workflow="alpha")
        assert [r.run_id for r in alpha] == [
            r for r in newest_first if r in {x.run_id for x in runs[1::2]}
        ]
        done = await store.list_runs(status="completed")
        assert [r.run_id for r in done] == [r.run_id for r in reversed(runs[:3])]
        assert all(r.result == {"i": r.run_id} for r in done)
        both = await store.list_runs(status="running", workflow="beta", limit=2)
        assert [r.run_id for r in both] == [
            r.run_id for r in reversed(runs[3:]) if r.workflow == "beta"
        ][:2]
        assert await store.list_runs(workflow="nope") == []


async def test_finish_stores_a_result_encoded_already(backend: Backend) -> None:
    """The engine hands ``finish`` its result's JSON bytes (encoded once): read back as
    the value, as a result given as data is."""
    async with backend.opened() as store:
        given, encoded = new_run(), new_run()
        for run in (given, encoded):
            await store.create_run(run, "me:1:a", LONG)
        value = {"total": 3, "items": ["a", None], "ok": True, "ratio": 0.5}
        await store.finish(given.run_id, given.fence, "completed", value, None)
        fragment = serde.Fragment(serde.dumps(value, "a result"))
        await store.finish(encoded.run_id, encoded.fence, "completed", fragment, None)
        assert (await store.get_run(encoded.run_id)).result == value
        assert (await store.get_run(given.run_id)).result == value
        done = await store.list_runs(status="completed")
        assert [r.result for r in done] == [value, value]


# ---------------------------------------------------------------- journal


async def test_journal_returns_records_in_sequence_order(backend: Backend) -> None:
    async with backend.opened() as store:
        one, two = new_run(), new_run()
        for run in (one, two):
            await store.create_run(run, "me:1:a", LONG)
        assert await journal(store, one.run_id) == []
        seqs = [5, 0, 3, 1, 4, 2, 10]
        recs = {seq: record(seq, f"one-{seq}") for seq in seqs}
        # concurrent appends of two runs, interleaved: one batch, or several
        await asyncio.gather(
            *(store.append(one.run_id, one.fence, seq, recs[seq]) for seq in seqs),
            *(store.append(two.run_id, two.fence, seq, record(seq, "two")) for seq in range(3)),
        )
        got = await journal(store, one.run_id)
        assert got == [recs[seq] for seq in sorted(seqs)]  # the exact bytes, in order
        assert [_core.decode_record(r).seq for r in got] == sorted(seqs)
        assert [_core.decode_record(r).seq for r in await journal(store, two.run_id)] == [0, 1, 2]


async def test_append_is_fenced(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        stale = await store.create_run(run, "old:1:a", GONE)
        taken = await store.claim(run.run_id, "new:1:b", LONG)
        assert taken is not None and taken.fence == stale + 1
        await store.append(run.run_id, taken.fence, 0, record(0, "new"))

        with pytest.raises(LeaseLostError) as lost:
            await store.append(run.run_id, stale, 1, record(1, "old"))
        assert (lost.value.run_id, lost.value.fence) == (run.run_id, stale)
        with pytest.raises(LeaseLostError):
            await store.append(run.run_id, stale, 0, record(0, "old"))  # no overwrite either
        assert await journal(store, run.run_id) == [record(0, "new")]

        # in one batch, a stale append fails alone
        other = new_run()
        await store.create_run(other, "new:1:b", LONG)
        outcomes = await asyncio.gather(
            store.append(other.run_id, other.fence, 0, record(0)),
            store.append(run.run_id, stale, 5, record(5)),
            store.append(run.run_id, taken.fence, 1, record(1, "new")),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], LeaseLostError)
        assert await journal(store, other.run_id) == [record(0)]
        assert await journal(store, run.run_id) == [record(0, "new"), record(1, "new")]

        with pytest.raises(RunNotFoundError):
            await store.append(new_id(), 1, 0, record(0))


async def test_finish_and_release_are_fenced(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        stale = await store.create_run(run, "old:1:a", GONE)
        taken = await store.claim(run.run_id, "new:1:b", LONG)
        assert taken is not None
        with pytest.raises(LeaseLostError):
            await store.finish(run.run_id, stale, "completed", 1, None)
        with pytest.raises(LeaseLostError):
            await store.release(run.run_id, stale)
        got = await store.get_run(run.run_id)
        assert (got.status, got.owner, got.fence, got.result) == (
            "running",
            "new:1:b",
            taken.fence,
            None,
        )

        error = {"type": "ValueError", "message": "no", "traceback": "..."}
        await store.finish(run.run_id, taken.fence, "failed", None, error)
        got = await store.get_run(run.run_id)
        assert (got.status, got.owner, got.error, got.result) == ("failed", None, error, None)
        with pytest.raises(RunNotFoundError):
            await store.finish(new_id(), 1, "completed", None, None)
        with pytest.raises(RunNotFoundError):
            await store.release(new_id(), 1)


# ---------------------------------------------------------------- claims and leases


async def test_claim_takes_only_claimable_runs(backend: Backend, dead_pid: int) -> None:
    host = socket.gethostname()
    async with backend.opened() as store:
        held = new_run()
        await store.create_run(held, f"{host}:{os.getpid()}:live", LONG)
        assert await store.claim(held.run_id, "b:1:b", LONG) is None

        elsewhere = new_run()  # a live lease on another host: its pid means nothing here
        await store.create_run(elsewhere, f"not-{host}:{dead_pid}:x", LONG)
        assert await store.claim(elsewhere.run_id, "b:1:b", LONG) is None

        expired = new_run()
        await store.create_run(expired, "a:1:a", GONE)
        got = await store.claim(expired.run_id, "b:1:b", LONG)
        assert got is not None
        assert (got.fence, got.attempt, got.owner, got.status) == (2, 2, "b:1:b", "running")
        assert await store.claim(expired.run_id, "c:1:c", LONG) is None  # b holds it now

        dead = new_run()  # this host, a process that has exited: claimable at once
        await store.create_run(dead, f"{host}:{dead_pid}:gone", LONG)
        got = await store.claim(dead.run_id, "b:1:b", LONG)
        assert got is not None and (got.fence, got.owner) == (2, "b:1:b")

        for status in ("completed", "failed", "cancelled"):
            done = new_run()
            fence = await store.create_run(done, "a:1:a", GONE)
            await store.finish(done.run_id, fence, status, None, None)
            assert await store.claim(done.run_id, "b:1:b", LONG) is None

        with pytest.raises(RunNotFoundError):
            await store.claim(new_id(), "b:1:b", LONG)


async def test_claim_available(backend: Backend, dead_pid: int) -> None:
    host = socket.gethostname()
    async with backend.opened() as store:
        pending = [new_run() for _ in range(3)]
        for run in pending:
            await store.create_run(run, None, LONG)
        expired, dead, held, finished, other_wf = (new_run() for _ in range(5))
        await store.create_run(expired, "a:1:a", GONE)
        await store.create_run(dead, f"{host}:{dead_pid}:gone", LONG)
        await store.create_run(held, f"{host}:{os.getpid()}:live", LONG)
        fence = await store.create_run(finished, "a:1:a", GONE)
        await store.finish(finished.run_id, fence, "completed", 1, None)
        other_wf.workflow = "other"
        await store.create_run(other_wf, None, LONG)
        old_version = new_run()
        old_version.version = "v0"
        await store.create_run(old_version, None, LONG)

        assert await store.claim_available("b:1:b", LONG, 10, {}) == []
        first = await store.claim_available("b:1:b", LONG, 2, SERVED)
        rest = await store.claim_available("b:1:b", LONG, 100, SERVED)
        assert len(first) == 2
        claimed = {r.run_id: r for r in first + rest}
        assert set(claimed) == {r.run_id for r in [*pending, expired, dead]}
        for run in claimed.values():
            assert (run.owner, run.status) == ("b:1:b", "running")
            stored = await store.get_run(run.run_id)
            assert (stored.fence, stored.attempt, stored.owner) == (run.fence, run.attempt, "b:1:b")
        assert {r.run_id: (r.fence, r.attempt) for r in claimed.values()} == {
            **{r.run_id: (1, 1) for r in pending},
            expired.run_id: (2, 2),
            dead.run_id: (2, 2),
        }
        assert await store.claim_available("c:1:c", LONG, 100, SERVED) == []
        assert [
            r.run_id
            for r in await store.claim_available("c:1:c", LONG, 100, {"other": "v1", "x": "v1"})
        ] == [other_wf.run_id]


async def test_claim_available_serves_several_versions_of_a_workflow(backend: Backend) -> None:
    async with backend.opened() as store:
        runs = {}
        for version in ("v0", "v1", "v2"):
            runs[version] = new_run()
            runs[version].version = version
            await store.create_run(runs[version], None, LONG)
        served = {"wf": ("v0", "v1"), "other": frozenset({"v2"})}
        claimed = await store.claim_available("b:1:b", LONG, 100, served)
        assert {r.run_id for r in claimed} == {runs["v0"].run_id, runs["v1"].run_id}
        # One version as a plain str, as before: the remaining run only.
        (last,) = await store.claim_available("b:1:b", LONG, 100, {"wf": "v2"})
        assert last.run_id == runs["v2"].run_id
        assert await store.claim_available("b:1:b", LONG, 100, {"wf": ()}) == []


async def test_claim_available_with_no_room_claims_nothing(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        await store.create_run(run, None, LONG)
        assert await store.claim_available("b:1:b", LONG, 0, SERVED) == []
        assert (await store.get_run(run.run_id)).status == "pending"


async def test_concurrent_claimers_never_share_a_run(backend: Backend) -> None:
    async with backend.opened() as creator:
        runs = [new_run() for _ in range(200)]
        await asyncio.gather(*(creator.create_run(run, None, LONG) for run in runs))

        async def claimer(name: str) -> list[RunInfo]:
            async with backend.opened() as store:
                got: list[RunInfo] = []
                while batch := await store.claim_available(name, LONG, 7, SERVED):
                    got += batch
                return got

        names = [f"w{i}:1:w" for i in range(4)]
        results = await asyncio.gather(*(claimer(name) for name in names))
        ids = [run.run_id for got in results for run in got]
        assert len(ids) == len(set(ids)) == 200  # each run handed out exactly once
        assert set(ids) == {run.run_id for run in runs}
        for name, got in zip(names, results, strict=True):
            for run in got[:5]:
                stored = await creator.get_run(run.run_id)
                assert (stored.owner, stored.fence, stored.attempt) == (name, 1, 1)


async def test_renew_extends_leases_and_returns_the_lost(backend: Backend) -> None:
    async with backend.opened() as store:
        kept, taken, cancelled = new_run(), new_run(), new_run()
        for run in (kept, taken, cancelled):
            await store.create_run(run, "a:1:a", GONE)
        assert await store.claim(taken.run_id, "b:1:b", LONG) is not None
        assert await store.cancel(cancelled.run_id)
        missing = new_id()
        leases = [(r.run_id, r.fence) for r in (kept, taken, cancelled)] + [(missing, 1)]
        lost = await store.renew(leases, "a:1:a", LONG)
        assert sorted(lost) == sorted([taken.run_id, cancelled.run_id, missing])
        # kept's lease had run out; renewed, nobody else can take it
        assert await store.claim(kept.run_id, "c:1:c", LONG) is None
        assert await store.claim_available("c:1:c", LONG, 10, SERVED) == []
        assert await store.renew([], "a:1:a", LONG) == []


async def test_release_makes_a_run_claimable_now(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        fence = await store.create_run(run, "a:1:a", LONG)
        assert await store.claim(run.run_id, "b:1:b", LONG) is None
        await store.release(run.run_id, fence)
        got = await store.get_run(run.run_id)
        assert (got.status, got.owner, got.fence, got.lease_until) == ("pending", None, fence, 0.0)
        again = await store.claim(run.run_id, "b:1:b", LONG)
        assert again is not None and (again.fence, again.attempt, again.owner) == (2, 2, "b:1:b")


async def test_a_waiting_run_released_keeps_its_timer_and_what_it_waits_for(
    backend: Backend,
) -> None:
    """The holder's release after its own suspend (an engine closing as the run suspends)
    leaves the run waiting: its lease was given back by the suspend already."""
    async with backend.opened() as store:
        timed, evented = new_run(), new_run()
        for run in (timed, evented):
            await store.create_run(run, "a:1:a", LONG)
        far = time.time() + 3600
        await store.suspend(timed.run_id, timed.fence, far)
        await store.suspend(evented.run_id, evented.fence, None, event="approved")
        await store.release(timed.run_id, timed.fence)
        await store.release(evented.run_id, evented.fence)
        got = await store.get_run(timed.run_id)
        assert (got.status, got.owner, got.fence) == ("waiting", None, timed.fence)
        assert got.wake_at == pytest.approx(far, abs=1e-3)
        assert await store.next_wake(SERVED) == pytest.approx(far, abs=1e-2)
        got = await store.get_run(evented.run_id)
        assert (got.status, got.waiting_for) == ("waiting", "approved")
        # Neither is claimable before its time or its event.
        assert await store.claim_available("b:1:b", LONG, 10, SERVED) == []
        await store.send_event(evented.run_id, "approved", b"1")
        due = await store.claim_available("b:1:b", LONG, 10, SERVED, due_only=True)
        assert [r.run_id for r in due] == [evented.run_id]


async def test_finish_refuses_a_run_not_running_under_the_fence(backend: Backend) -> None:
    async with backend.opened() as store:
        waiting, released, done = new_run(), new_run(), new_run()
        for run in (waiting, released, done):
            await store.create_run(run, "a:1:a", LONG)
        far = time.time() + 3600
        await store.suspend(waiting.run_id, waiting.fence, far)
        await store.release(released.run_id, released.fence)
        await store.finish(done.run_id, done.fence, "completed", 1, None)
        for run in (waiting, released):
            with pytest.raises(LeaseLostError) as lost:
                await store.finish(run.run_id, run.fence, "completed", 1, None)
            assert (lost.value.run_id, lost.value.fence) == (run.run_id, run.fence)
        with pytest.raises(LeaseLostError):  # finished with another outcome
            await store.finish(done.run_id, done.fence, "failed", None, {"message": "no"})
        # The same outcome again (a write sent again) changes nothing.
        await store.finish(done.run_id, done.fence, "completed", 2, None)
        got = await store.get_run(waiting.run_id)
        assert (got.status, got.result) == ("waiting", None)
        assert got.wake_at == pytest.approx(far, abs=1e-3)
        assert (await store.get_run(released.run_id)).status == "pending"
        got = await store.get_run(done.run_id)
        assert (got.status, got.result, got.error) == ("completed", 1, None)
        # A batch of finishes: the refused one fails alone.
        running = new_run()
        await store.create_run(running, "a:1:a", LONG)
        outcomes = await asyncio.gather(
            store.finish(running.run_id, running.fence, "completed", 3, None),
            store.finish(waiting.run_id, waiting.fence, "completed", 3, None),
            return_exceptions=True,
        )
        assert outcomes[0] is None and isinstance(outcomes[1], LeaseLostError)
        assert (await store.get_run(running.run_id)).result == 3


async def test_cancel_fences_out_the_executor(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        fence = await store.create_run(run, "a:1:a", LONG)
        assert await store.cancel(run.run_id) is True
        got = await store.get_run(run.run_id)
        assert (got.status, got.owner) == ("cancelled", None) and got.fence > fence
        with pytest.raises(LeaseLostError):
            await store.append(run.run_id, fence, 0, record(0))
        with pytest.raises(LeaseLostError):
            await store.finish(run.run_id, fence, "completed", 1, None)
        assert await store.cancel(run.run_id) is False
        assert await store.claim_available("b:1:b", LONG, 10, SERVED) == []
        with pytest.raises(RunNotFoundError):
            await store.cancel(new_id())


DEPLOY_ELSEWHERE = """
import asyncio, sys
from surestep.store import open_store

async def main():
    store = open_store(sys.argv[1])
    await store.open()
    await store.record_deployment("wf", sys.argv[2], "elsewhere")
    await store.close()

asyncio.run(main())
"""


async def deploy_elsewhere(backend: Backend, version: str) -> None:
    """Deploy ``version`` of ``wf`` through another store instance (another process
    for LMDB, as in ``create_elsewhere``)."""
    if backend.kind == "lmdb":
        return await run_script(DEPLOY_ELSEWHERE, backend.location, version)
    async with backend.opened() as other:
        await other.record_deployment("wf", version, "elsewhere")


async def test_create_following_the_deployment(backend: Backend) -> None:
    async def create(version: str = "v1") -> RunInfo:
        run = RunInfo(run_id=new_id(), workflow="wf", version=version, args=[], kwargs={})
        fence = await store.create_run(run, "me:1:a", LONG, follow_deployment=True)
        got = await store.get_run(run.run_id)
        assert (got.version, got.owner, got.fence, got.status) == (
            run.version,
            run.owner,
            fence,
            run.status,
        )
        return run

    def taken(run: RunInfo) -> tuple[Any, ...]:
        return (run.version, run.owner, run.fence, run.attempt, run.status)

    async with backend.opened() as store:
        assert taken(await create()) == ("v1", "me:1:a", 1, 1, "running")  # nothing deployed
        await store.record_deployment("other", "v9", "d0")
        await store.record_deployment("wf", "v1", "d1")
        assert taken(await create()) == ("v1", "me:1:a", 1, 1, "running")  # this version
        await store.record_deployment("wf", "v2", "d2")
        moved = await create()
        assert taken(moved) == ("v2", None, 0, 0, "pending")  # for a worker serving v2
        assert moved.lease_until == 0 or moved.lease_until is None
        assert await store.claim_available("me:1:a", LONG, 10, workflows=SERVED) == []
        [claimed] = await store.claim_available("v2:1:a", LONG, 10, workflows={"wf": "v2"})
        assert (claimed.run_id, claimed.version, claimed.fence) == (moved.run_id, "v2", 1)

        # A deployment made elsewhere is followed at the next create.
        await deploy_elsewhere(backend, "v3")
        assert taken(await create("v3")) == ("v3", "me:1:a", 1, 1, "running")
        assert taken(await create("v2"))[:2] == ("v3", None)
        await deploy_elsewhere(backend, "v2")
        assert taken(await create("v2"))[:2] == ("v2", "me:1:a")

        # Without follow_deployment, the version given stands.
        run = RunInfo(run_id=new_id(), workflow="wf", version="v1", args=[], kwargs={})
        assert await store.create_run(run, "me:1:a", LONG) == 1
        assert (await store.get_run(run.run_id)).version == "v1"
        unowned = RunInfo(run_id=new_id(), workflow="wf", version="v1", args=[], kwargs={})
        await store.create_run(unowned, None, LONG, follow_deployment=True)
        assert taken(unowned) == ("v2", None, 0, 0, "pending")


# ---------------------------------------------------------------- wake-ups

CREATE_ELSEWHERE = """
import asyncio, sys
from surestep.store import open_store
from surestep.store.base import RunInfo, check_idempotency_key, wait_set

async def main():
    store = open_store(sys.argv[1])
    await store.open()
    run = RunInfo(run_id=sys.argv[2], workflow="wf", version="v1", args=[], kwargs={})
    await store.create_run(run, None, 1.0)
    await store.close()

asyncio.run(main())
"""


async def run_script(script: str, *argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, *argv)
    assert await proc.wait() == 0


async def create_elsewhere(backend: Backend, run_id: str) -> None:
    """Create a run through another store instance: in another process for LMDB
    (instances in one process share one environment), in this one for PostgreSQL."""
    if backend.kind == "lmdb":
        return await run_script(CREATE_ELSEWHERE, backend.location, run_id)
    async with backend.opened() as other:
        await other.create_run(
            RunInfo(run_id=run_id, workflow="wf", version="v1", args=[], kwargs={}), None, 1.0
        )


async def test_wait_changed_wakes_on_a_create_elsewhere(backend: Backend) -> None:
    async with backend.opened() as store:
        waiter = asyncio.ensure_future(store.wait_changed(50))
        await asyncio.sleep(0)  # the waiter runs up to its wait
        assert not waiter.done()
        run_id = new_id()
        await create_elsewhere(backend, run_id)
        await asyncio.wait_for(waiter, 30)  # woken, long before its 50 s
        assert (await store.get_run(run_id)).status == "pending"


async def test_wait_changed_returns_after_its_timeout(backend: Backend) -> None:
    async with backend.opened() as store:
        await asyncio.wait_for(store.wait_changed(0.1), 30)


async def test_a_wait_cancelled_as_its_change_arrives_is_cancelled() -> None:
    """Both stores wait for changes with ``wait_set``, and the engine stops those waits by
    cancelling them. ``asyncio.wait_for`` (before Python 3.12) returned normally when the
    cancellation came in the same turn as the change, and Engine.close() then waited
    forever for its timer task (seen on PostgreSQL, about once in 20 closes)."""
    event = asyncio.Event()
    waiter = asyncio.ensure_future(wait_set(event, 60))
    await asyncio.sleep(0)  # the waiter runs up to its wait
    event.set()
    waiter.cancel()  # in the same turn
    with pytest.raises(asyncio.CancelledError):
        await waiter


# ---------------------------------------------------------------- timers, events, children, logs


async def test_a_suspended_run_is_claimable_once_due(backend: Backend) -> None:
    async with backend.opened() as store:
        later, past, forever = new_run(), new_run(), new_run()
        for run in (later, past, forever):
            await store.create_run(run, "a:1:a", LONG)
        with pytest.raises(LeaseLostError):
            await store.suspend(later.run_id, later.fence + 1, time.time() + 3600)
        far = time.time() + 3600
        await store.suspend(later.run_id, later.fence, far)
        ago = time.time() - 5
        await store.suspend(past.run_id, past.fence, ago)
        await store.suspend(forever.run_id, forever.fence, None)
        got = await store.get_run(later.run_id)
        assert (got.status, got.owner) == ("waiting", None)
        assert got.wake_at == pytest.approx(far, abs=1e-3)
        assert await store.next_wake(SERVED) == pytest.approx(ago, abs=1e-2)
        assert await store.claim(later.run_id, "b:1:b", LONG) is None
        assert await store.claim(forever.run_id, "b:1:b", LONG) is None
        due = await store.claim_available("b:1:b", LONG, 10, SERVED, due_only=True)
        assert [r.run_id for r in due] == [past.run_id]
        assert (due[0].status, due[0].fence, due[0].wake_at) == ("running", past.fence + 1, None)
        assert await store.claim_available("b:1:b", LONG, 10, SERVED) == []
        assert await store.next_wake(SERVED) == pytest.approx(far, abs=1e-2)


async def test_next_wake_counts_only_the_versions_served(backend: Backend) -> None:
    """An overdue timer of a version nobody here serves must not make the next wake
    "now": the timer loop would wait 0 s and spin without claiming anything."""
    async with backend.opened() as store:
        other, later = new_run(), new_run()
        other.version = "v0"
        for run in (other, later):
            await store.create_run(run, "a:1:a", LONG)
        far = time.time() + 3600
        await store.suspend(other.run_id, other.fence, time.time() - 5)
        await store.suspend(later.run_id, later.fence, far)
        assert await store.next_wake(SERVED) == pytest.approx(far, abs=1e-2)
        assert await store.next_wake({"wf": "v0"}) < time.time()
        assert await store.next_wake({"elsewhere": "v1"}) is None
        assert await store.next_wake({}) is None


async def test_an_event_for_a_finished_run_is_refused_and_not_kept(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        fence = await store.create_run(run, "a:1:a", LONG)
        await store.finish(run.run_id, fence, "completed", 1, None)
        with pytest.raises(RunFinishedError) as refused:
            await store.send_event(run.run_id, "approved", b"1")
        assert (refused.value.run_id, refused.value.status) == (run.run_id, "completed")
        assert "has finished (completed)" in str(refused.value)


async def test_engines_announce_the_versions_they_serve_until_they_withdraw(
    backend: Backend, dead_pid: int
) -> None:
    async with backend.opened() as store:
        host = socket.gethostname()
        here, gone, dead = (
            f"{host}:{os.getpid()}:a",
            f"{host}:{os.getpid()}:b",
            f"{host}:{dead_pid}:c",
        )
        await store.announce(here, {"wf": "v1", "other": "v9"}, LONG)
        await store.announce(gone, {"wf": "v2"}, LONG)
        await store.announce(dead, {"wf": "v3"}, LONG)  # its process is gone
        await store.announce("elsewhere:1:d", {"wf": "v4"}, -1)  # its time ran out
        live = {e.owner: e for e in await store.live_engines()}
        assert set(live) == {here, gone}
        assert live[here].served == {"wf": ["v1"], "other": ["v9"]}
        assert live[here].serves("wf", "v1") and not live[here].serves("wf", "v2")
        assert live[here].alive_until == pytest.approx(time.time() + LONG, abs=5)
        await store.announce(gone, {"wf": "v5"}, LONG)  # renewed, with what it serves now
        await store.withdraw(here)
        assert [(e.owner, e.served) for e in await store.live_engines()] == [(gone, {"wf": ["v5"]})]


async def test_an_event_wakes_the_run_waiting_for_it(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        fence = await store.create_run(run, "a:1:a", LONG)
        await store.suspend(run.run_id, fence, None, event="approved")
        await store.send_event(run.run_id, "other", b'{"x":0}')
        assert await store.claim(run.run_id, "b:1:b", LONG) is None  # not what it waits for
        await store.send_event(run.run_id, "approved", b'{"x":1}')
        await store.send_event(run.run_id, "approved", b'{"x":2}')
        got = await store.claim(run.run_id, "b:1:b", LONG)
        assert got is not None and got.fence == fence + 1

        def record_of(payload: bytes) -> bytes:
            return record(3, payload.decode().replace('"', "'"))

        with pytest.raises(LeaseLostError):
            await store.take_event(run.run_id, fence, "approved", 3, record_of)
        assert await store.take_event(run.run_id, got.fence, "approved", 3, record_of) == b'{"x":1}'
        assert await journal(store, run.run_id) == [record_of(b'{"x":1}')]
        assert await store.take_event(run.run_id, got.fence, "approved", 4, record_of) == b'{"x":2}'
        assert await store.take_event(run.run_id, got.fence, "approved", 5, record_of) is None
        assert len(await journal(store, run.run_id)) == 2
        with pytest.raises(RunNotFoundError):
            await store.send_event(new_id(), "approved", b"{}")


async def test_an_event_sent_before_the_suspend_is_not_lost(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        fence = await store.create_run(run, "a:1:a", LONG)
        await store.send_event(run.run_id, "go", b"1")
        await store.suspend(run.run_id, fence, time.time() + 3600, event="go")
        got = await store.claim(run.run_id, "b:1:b", LONG)
        assert got is not None and got.status == "running"


async def test_create_child_is_idempotent(backend: Backend) -> None:
    async with backend.opened() as store:
        parent = new_run()
        await store.create_run(parent, "a:1:a", LONG)
        child = new_run(args=[7])
        child.parent_id = parent.run_id
        first = await store.create_child(child, "a:1:a", LONG)
        assert (first.run_id, first.parent_id, first.args) == (child.run_id, parent.run_id, [7])
        assert (first.owner, first.fence, first.attempt, first.status) == ("a:1:a", 1, 1, "running")
        again = await store.create_child(child, "b:1:b", LONG)
        assert (again.owner, again.fence, again.attempt) == ("a:1:a", 1, 1)  # as stored
        assert (await store.get_run(child.run_id)).parent_id == parent.run_id


async def test_an_idempotency_key_creates_one_run(backend: Backend) -> None:
    async with backend.opened() as store:
        first = new_run(args=[1])
        fence = await store.create_run(first, "a:1:a", LONG, idempotency_key="order-7")
        assert (first.owner, fence) == ("a:1:a", 1)
        again = new_run(args=[2])
        proposed = again.run_id
        assert await store.create_run(again, "b:1:b", LONG, idempotency_key="order-7") == fence
        # Nothing written: the caller gets the stored run, its owner and input untouched.
        assert (again.run_id, again.args, again.owner, again.fence) == (
            first.run_id,
            [1],
            "a:1:a",
            1,
        )
        with pytest.raises(RunNotFoundError):
            await store.get_run(proposed)
        other = new_run()
        await store.create_run(other, None, LONG, idempotency_key="order-8")
        assert other.run_id != first.run_id
        assert [r.run_id for r in await store.list_runs()] == [other.run_id, first.run_id]
    async with backend.opened() as store:  # kept durably: another instance finds it
        later = new_run()
        await store.create_run(later, None, LONG, idempotency_key="order-7")
        assert later.run_id == first.run_id
        await store.finish(first.run_id, fence, "completed", 3, None)
        done = new_run()  # a finished run still answers for its key
        await store.create_run(done, None, LONG, idempotency_key="order-7")
        assert (done.run_id, done.status, done.result) == (first.run_id, "completed", 3)


async def test_concurrent_creates_with_one_key_make_one_run(backend: Backend) -> None:
    stores = [backend.new() for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        runs = [new_run(args=[i]) for i in range(16)]
        await asyncio.gather(
            *(
                stores[i % 4].create_run(run, f"o:{i}:o", LONG, idempotency_key="k")
                for i, run in enumerate(runs)
            )
        )
        assert len({run.run_id for run in runs}) == 1
        stored = await stores[0].list_runs()
        assert [r.run_id for r in stored] == [runs[0].run_id]
        # Its first creator holds it, and every caller names that one owner.
        assert {run.owner for run in runs} == {stored[0].owner}
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_idempotency_keys_are_checked() -> None:
    for bad in ("", "a\x00b", "x" * 256, 7):
        with pytest.raises(ConfigurationError):
            check_idempotency_key(bad)
    assert check_idempotency_key("é" * 127) == "é" * 127  # 254 bytes


async def test_log_lines_in_order_and_rewritten_on_replay(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        await store.create_run(run, "a:1:a", LONG)
        await store.append_log(run.run_id, 2, 0, b'"c"')
        await store.append_log(run.run_id, 0, 1, b'"b"')
        await store.append_log(run.run_id, 0, 0, b'"a"')
        await store.append_log(run.run_id, 0, 1, b'"B"')
        assert await store.logs(run.run_id) == [b'"a"', b'"B"', b'"c"']
        assert await store.logs(new_id()) == []


async def test_state_versions_conflicts_and_journal(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        fence = await store.create_run(run, "a:1:a", LONG)

        def reads(seq: int) -> Callable[[bytes | None, int], bytes]:
            return lambda value, version: record(seq, f"{value!r}@{version}".replace("'", ""))

        def writes(seq: int) -> Callable[[int | None], bytes]:
            return lambda version: record(seq, f"v{version}")

        assert await store.state_read(run.run_id, fence, 0, "user:u", "k", reads(0)) == (
            None,
            0,
        )
        with pytest.raises(LeaseLostError):
            await store.state_write(run.run_id, fence + 1, 1, "user:u", "k", b"1", None, writes(1))
        assert await store.state_write(run.run_id, fence, 1, "user:u", "k", b"1", 0, writes(1)) == 1
        assert (
            await store.state_write(run.run_id, fence, 2, "user:u", "k", b"2", 0, writes(2)) is None
        )
        assert (
            await store.state_write(run.run_id, fence, 3, "user:u", "k", b"2", None, writes(3)) == 2
        )
        assert (
            await store.state_write(run.run_id, fence, 4, "user:u", "j", b'"x"', None, writes(4))
            == 1
        )
        assert await store.state_items("user:u") == {"j": b'"x"', "k": b"2"}
        assert await store.state_items("user:other") == {}
        assert await store.state_write(run.run_id, fence, 5, "user:u", "k", None, 2, writes(5)) == 3
        assert await store.state_items("user:u") == {"j": b'"x"'}
        assert await store.state_read(run.run_id, fence, 6, "user:u", "k", reads(6)) == (
            None,
            3,
        )
        recorded = await journal(store, run.run_id)
        assert recorded == [
            reads(0)(None, 0),
            writes(1)(1),
            writes(2)(None),
            writes(3)(2),
            writes(4)(1),
            writes(5)(3),
            reads(6)(None, 3),
        ]


async def test_deployments_oldest_first(backend: Backend) -> None:
    async with backend.opened() as store:
        assert await store.deployments() == []
        await store.record_deployment("wf", "v1", "d1")
        await store.record_deployment("wf", "v2", "d2")
        await store.record_deployment("other", "v1", "d3")
        got = await store.deployments()
        assert [(d["workflow"], d["version"], d["digest"]) for d in got] == [
            ("wf", "v1", "d1"),
            ("wf", "v2", "d2"),
            ("other", "v1", "d3"),
        ]
        assert got[0]["time"] <= got[1]["time"] <= got[2]["time"]


# ---------------------------------------------------------------- retention

DAY_MS = 86_400_000


async def finished_run(
    store: Store, keep: int, steps: int = 0, status: str = "completed", **fields: Any
) -> RunInfo:
    """A run with ``steps`` records, a log line and an event, finished with policy ``keep``;
    as stored (``updated_at`` is its finish time)."""
    run = new_run(**fields)
    await store.create_run(run, "me:1:a", LONG)
    await asyncio.gather(*(store.append(run.run_id, run.fence, s, record(s)) for s in range(steps)))
    await store.append_log(run.run_id, 0, 0, b'{"msg":"hi"}')
    await store.send_event(run.run_id, "late", b"{}")
    await store.finish(run.run_id, run.fence, status, None, None, keep)
    return await store.get_run(run.run_id)


async def gone(store: Store, run_id: str) -> bool:
    """True when nothing of the run is visible; False when all of it is (else it fails)."""
    try:
        await store.get_run(run_id)
    except RunNotFoundError:
        assert await store.journal(run_id) == [] and await store.logs(run_id) == []
        assert run_id not in {r.run_id for r in await store.list_runs()}
        return True
    return False


async def test_a_run_may_go_once_its_age_reaches_its_retention(backend: Backend) -> None:
    async with backend.opened() as store:
        run = await finished_run(store, 5_000, steps=3)
        kept = await finished_run(store, KEEP_FOREVER)
        at = run.updated_at + 5.0
        assert await store.expired_runs(at - 0.01, DAY_MS, None, None) == []
        assert await store.hide_expired(at - 0.01, DAY_MS, None, 10) == []
        assert not await gone(store, run.run_id)
        listed = await store.expired_runs(at, DAY_MS, None, None)
        assert [(r["run_id"], r["root"], r["status"]) for r in listed] == [
            (run.run_id, run.run_id, "completed")
        ]
        assert listed[0]["workflow"] == "wf"
        assert listed[0]["finished_at"] == pytest.approx(run.updated_at, abs=1e-3)
        assert not await gone(store, run.run_id)  # a dry run changes nothing
        assert await store.hide_expired(at, DAY_MS, None, 10) == listed
        assert await gone(store, run.run_id)
        assert not await gone(store, kept.run_id)
        # a cutoff takes every run finished by then, "forever" included
        cut = await store.expired_runs(time.time() + 1, DAY_MS, time.time() + 1, None)
        assert [r["run_id"] for r in cut] == [kept.run_id]


async def test_an_idempotency_key_goes_with_its_purged_run(backend: Backend) -> None:
    async with backend.opened() as store:
        first = new_run()
        await store.create_run(first, "me:1:a", LONG, idempotency_key="order-9")
        await store.finish(first.run_id, first.fence, "completed", None, None, 1_000)
        again = new_run()
        await store.create_run(again, "me:1:a", LONG, idempotency_key="order-9")
        assert again.run_id == first.run_id  # the key still names its run
        await store.hide_expired(first.updated_at + 2.0, DAY_MS, None, 10)
        assert await gone(store, first.run_id)
        later = new_run()
        await store.create_run(later, "me:1:a", LONG, idempotency_key="order-9")
        assert later.run_id != first.run_id
        assert (await store.get_run(later.run_id)).status == "running"


async def test_the_default_policy_is_decided_by_the_purge(backend: Backend) -> None:
    async with backend.opened() as store:
        run = await finished_run(store, KEEP_DEFAULT)
        later = run.updated_at + 3600
        assert await store.expired_runs(later, KEEP_FOREVER, None, None) == []
        assert await store.expired_runs(later, 3_600_001, None, None) == []
        assert [r["run_id"] for r in await store.expired_runs(later, 3_600_000, None, None)] == [
            run.run_id
        ]


async def test_unfinished_and_waiting_runs_never_go(backend: Backend) -> None:
    async with backend.opened() as store:
        pending, running, waiting = new_run(), new_run(), new_run()
        await store.create_run(pending, None, LONG)
        await store.create_run(running, "me:1:a", LONG)
        await store.create_run(waiting, "me:1:a", LONG)
        await store.suspend(waiting.run_id, waiting.fence, None, event="never")
        far = time.time() + 100 * 365 * 86400.0
        assert await store.expired_runs(far, 0, far, None) == []
        assert await store.hide_expired(far, 0, far, 100) == []
        for run in (pending, running, waiting):
            assert not await gone(store, run.run_id)


async def child_of(store: Store, parent: RunInfo) -> RunInfo:
    child = RunInfo(
        run_id=child_run_id(parent.run_id, 1),
        workflow="wf",
        version="v1",
        args=[],
        kwargs={},
        parent_id=parent.run_id,
    )
    return await store.create_child(child, "me:1:a", LONG)


async def test_a_child_goes_with_its_parent_by_the_longer_policy(backend: Backend) -> None:
    async with backend.opened() as store:
        parent = new_run()
        await store.create_run(parent, "me:1:a", LONG)
        child = await child_of(store, parent)
        await store.append(child.run_id, child.fence, 0, record(0))
        await store.finish(child.run_id, child.fence, "completed", 1, None, 10_000)
        child = await store.get_run(child.run_id)
        far = child.updated_at + 1000.0
        # the parent is unfinished: its finished child stays, whatever its age
        assert await store.expired_runs(far, 0, None, None) == []
        assert await store.hide_expired(far, 0, None, 10) == []
        assert not await gone(store, child.run_id)

        await store.finish(parent.run_id, parent.fence, "completed", 2, None, 1_000)
        parent = await store.get_run(parent.run_id)
        soon = max(parent.updated_at + 1.0, child.updated_at + 5.0)
        assert await store.hide_expired(soon, 0, None, 10) == []  # the child's 10 s win
        assert not await gone(store, parent.run_id) and not await gone(store, child.run_id)
        then = child.updated_at + 10.0
        hidden = await store.hide_expired(then, 0, None, 10)
        assert sorted((r["run_id"], r["root"]) for r in hidden) == sorted(
            [(parent.run_id, parent.run_id), (child.run_id, parent.run_id)]
        )
        assert await gone(store, parent.run_id) and await gone(store, child.run_id)


async def test_a_finished_parent_waits_for_its_unfinished_child(backend: Backend) -> None:
    async with backend.opened() as store:
        parent = new_run()
        await store.create_run(parent, "me:1:a", LONG)
        child = await child_of(store, parent)
        await store.cancel(parent.run_id, 0)
        far = time.time() + 3600
        assert await store.hide_expired(far, 0, None, 10) == []
        assert not await gone(store, parent.run_id)
        await store.finish(child.run_id, child.fence, "completed", None, None, 0)
        hidden = await store.hide_expired(time.time() + 1, 0, None, 10)
        assert {r["run_id"] for r in hidden} == {parent.run_id, child.run_id}


async def test_a_cancelled_run_is_filed_with_its_policy(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        await store.create_run(run, None, LONG)
        assert await store.cancel(run.run_id, 2_000)
        run = await store.get_run(run.run_id)
        assert await store.expired_runs(run.updated_at + 1.9, 0, None, None) == []
        listed = await store.expired_runs(run.updated_at + 2.0, 0, None, None)
        assert [(r["run_id"], r["status"]) for r in listed] == [(run.run_id, "cancelled")]


async def test_a_hidden_run_is_gone_at_once_and_swept_in_bounded_batches(
    backend: Backend,
) -> None:
    async with backend.opened() as store:
        big = await finished_run(store, 0, steps=300)
        other = await finished_run(store, KEEP_FOREVER, steps=5)
        hidden = await store.hide_expired(big.updated_at, 0, None, 10)
        assert [r["run_id"] for r in hidden] == [big.run_id]
        assert await gone(store, big.run_id)
        assert (await store.stats())["hidden"] == 1
        with pytest.raises(RunNotFoundError):
            await store.send_event(big.run_id, "late", b"{}")
        batches = []
        while True:
            records, cleared = await store.sweep_hidden(3)
            if not records and not cleared:
                break
            assert records <= 3
            batches.append(records)
            assert await gone(store, big.run_id)  # between batches too
        # at least 5 journal chunks (LMDB keeps 64 steps a chunk), a log line and an event
        assert len(batches) >= 3 and sum(batches) >= 300 // 64 + 2
        assert (await store.stats())["hidden"] == 0
        assert await gone(store, big.run_id)
        assert len(await journal(store, other.run_id)) == 5  # another run keeps everything
        assert len(await store.logs(other.run_id)) == 1


async def test_stats_count_runs_and_the_oldest_finished(backend: Backend) -> None:
    async with backend.opened() as store:
        empty = await store.stats()
        assert empty["oldest_finished"] is None and sum(empty["runs"].values()) == 0
        # The oldest finished run of all, whichever policy it has.
        first = await finished_run(store, 3_600_000)
        await finished_run(store, KEEP_FOREVER, status="failed")
        await store.create_run(new_run(), None, LONG)
        stats = await store.stats()
        assert stats["runs"]["completed"] == stats["runs"]["failed"] == 1
        assert stats["runs"]["pending"] == 1
        assert stats["oldest_finished"] == pytest.approx(first.updated_at, abs=1e-3)
        sizes = [v for v in stats["size"].values() if isinstance(v, int)]
        assert sizes and all(v > 0 for v in sizes)


async def test_a_new_store_is_not_taken_for_one_made_by_the_previous_release(
    backend: Backend,
) -> None:
    async with backend.opened() as store:
        assert not await store.made_by_previous_release()
        await finished_run(store, KEEP_FOREVER)
    async with backend.opened() as store:  # reopened with runs in it: still this release's
        assert not await store.made_by_previous_release()


async def test_deployments_keep_the_declared_retention(backend: Backend) -> None:
    async with backend.opened() as store:
        await store.record_deployment("wf", "v1", "d1", 7 * DAY_MS)
        await store.record_deployment("wf", "v2", "d2")
        assert [(d["version"], d["retention"]) for d in await store.deployments()] == [
            ("v1", 7 * DAY_MS),
            ("v2", None),
        ]


# ---------------------------------------------------------------- progress


async def test_progress_is_kept_with_the_run_replaced_and_fenced(backend: Backend) -> None:
    async with backend.opened() as store:
        run = new_run()
        stale = await store.create_run(run, "old:1:a", GONE)
        assert (await store.get_run(run.run_id)).progress is None
        await store.set_progress(run.run_id, stale, b'{"n":1,"total":4,"message":null,"t":1.0}')
        taken = await store.claim(run.run_id, "new:1:b", LONG)
        assert taken is not None
        # A claim and a suspension keep the report (it is not part of the lease).
        assert (await store.get_run(run.run_id)).progress == {
            "n": 1, "total": 4, "message": None, "t": 1.0,
        }  # fmt: skip
        await store.set_progress(
            run.run_id, taken.fence, b'{"n":3,"total":4,"message":"x","t":2.0}'
        )
        with pytest.raises(LeaseLostError):
            await store.set_progress(run.run_id, stale, b'{"n":9,"total":4,"message":null,"t":3.0}')
        await store.suspend(run.run_id, taken.fence, time.time() + 60)
        expected = {"n": 3, "total": 4, "message": "x", "t": 2.0}
        assert (await store.get_run(run.run_id)).progress == expected
        assert [r.progress for r in await store.list_runs() if r.run_id == run.run_id] == [expected]
        with pytest.raises(RunNotFoundError):
            await store.set_progress(new_id(), 1, b'{"n":1,"total":null,"message":null,"t":1.0}')


async def test_progress_of_a_run_opened_again(backend: Backend) -> None:
    run = new_run()
    async with backend.opened() as store:
        fence = await store.create_run(run, "a:1:a", LONG)
        await store.set_progress(run.run_id, fence, b'{"n":2,"total":null,"message":null,"t":1.0}')
    async with backend.opened() as store:  # another process's view: what the store holds
        assert (await store.get_run(run.run_id)).progress == {
            "n": 2, "total": None, "message": None, "t": 1.0,
        }  # fmt: skip


# ---------------------------------------------------------------- run-state transitions


class Transitions:
    """``store`` watched: every operation made through :meth:`do` records, for each run
    whose status or fence it changed, ``(operation, status before, status after)``
    (``None`` before: the run did not exist)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.run_ids: list[str] = []
        self.seen: list[tuple[str, str | None, str]] = []

    async def _states(self) -> dict[str, tuple[str, int]]:
        states = {}
        for run_id in self.run_ids:
            with contextlib.suppress(RunNotFoundError):
                run = await self.store.get_run(run_id)
                states[run_id] = (run.status, run.fence)
        return states

    async def do(self, operation: str, *args: Any) -> Any:
        """``store.operation(*args)``, watched (a refusal is returned, not raised); the
        runs it is given or returns are watched from then on."""
        before = await self._states()
        try:
            result = await getattr(self.store, operation)(*args)
        except (LeaseLostError, RunFinishedError) as exc:
            result = exc
        returned = result if isinstance(result, list) else [result]
        for run in (*args, *returned):
            if isinstance(run, RunInfo) and run.run_id not in self.run_ids:
                self.run_ids.append(run.run_id)
        after = await self._states()
        for run_id, (status, fence) in after.items():
            old = before.get(run_id)
            if old != (status, fence):
                self.seen.append((operation, None if old is None else old[0], status))
        return result


async def test_every_status_change_is_a_transition_of_the_table(backend: Backend) -> None:
    """Runs driven through every transition of ``base.TRANSITIONS`` (and through
    operations that must change nothing): each change the store makes is in the table,
    and each entry of the table was made."""
    now = time.time
    owner, other = "me:1:a", "me:2:b"
    async with backend.opened() as store:
        t = Transitions(store)
        # pending -> running -> waiting (timer) -> running -> waiting (retry backoff)
        # -> running -> pending (released) -> running -> running (recovered) -> completed
        a = new_run()
        await t.do("create_run", a, None, LONG)
        [claimed] = await t.do("claim_available", owner, LONG, 10, SERVED)
        await t.do("suspend", a.run_id, claimed.fence, now() - 1, None)
        claimed = await t.do("claim", a.run_id, owner, LONG)
        await t.do("record_attempt", a.run_id, claimed.fence, 0, 1, b"{}", {"seq": 0}, now() - 1)
        [claimed] = await t.do("claim_available", owner, LONG, 10, SERVED, True)
        await t.do("release", a.run_id, claimed.fence)
        claimed = await t.do("claim", a.run_id, owner, GONE)
        stale = claimed.fence
        claimed = await t.do("claim", a.run_id, other, LONG)
        await t.do("suspend", a.run_id, stale, None, None)  # refused: its lease was lost
        await t.do("finish", a.run_id, claimed.fence, "completed", 1, None)
        await t.do("release", a.run_id, claimed.fence)  # finished: stays finished
        await t.do("finish", a.run_id, claimed.fence, "failed", None, {})  # refused
        assert await t.do("claim", a.run_id, owner, LONG) is None
        assert await t.do("cancel", a.run_id) is False

        # created running -> waiting for an event -> sent: due -> running -> failed
        b = new_run()
        fence = await t.do("create_run", b, owner, LONG)
        await t.do("suspend", b.run_id, fence, None, "go")
        assert await t.do("claim_available", owner, LONG, 10, SERVED) == []
        await t.do("send_event", b.run_id, "go", b"1")
        claimed = await t.do("claim", b.run_id, owner, LONG)
        await t.do("finish", b.run_id, claimed.fence, "failed", None, {"message": "no"})

        # cancelled while pending, running and waiting; a child created claimed; a run
        # started by an event trigger
        pending, running, waiting = new_run(), new_run(), new_run()
        await t.do("create_run", pending, None, LONG)
        await t.do("create_run", running, owner, LONG)
        fence = await t.do("create_run", waiting, owner, LONG)
        await t.do("suspend", waiting.run_id, fence, now() + 3600, None)
        await t.do("release", waiting.run_id, fence)  # given back already: stays waiting
        await t.do("finish", waiting.run_id, fence, "completed", 1, None)  # refused
        for run in (pending, running, waiting):
            assert await t.do("cancel", run.run_id) is True
        await t.do("finish", running.run_id, running.fence, "completed", 1, None)  # refused
        child = RunInfo(child_run_id(b.run_id, 1), "wf", "v1", [], {}, parent_id=b.run_id)
        await t.do("create_child", child, owner, LONG)
        await store.register_subscriptions("wf", "v1", ["e"])
        [started] = await t.do("emit_event", "e", {}, lambda workflow: f"t:e:{workflow}")
        assert started.status == "pending"

    unlisted = [seen for seen in t.seen if transition(*seen) is None]
    assert unlisted == []
    made = {transition(*seen) for seen in t.seen}
    assert [entry for entry in TRANSITIONS if entry not in made] == []
