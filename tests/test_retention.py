"""Retention at the engine: policies, the purge and its surfaces, on both backends.

Boundaries are checked without waiting: a policy of 0 is due at once, and the store's
contract tests (tests/store/test_contract.py) move the purge's clock instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from surestep import Engine, WorkflowContext, _core, workflow
from surestep.errors import ConfigurationError, RunNotFoundError
from surestep.retention import (
    DEFAULT_RETENTION,
    describe_retention,
    parse_duration,
    parse_retention,
    purge,
)
from surestep.store import Store, open_store
from surestep.store.base import KEEP_DEFAULT, KEEP_FOREVER, RunInfo, new_run_id


def record(seq: int, text: str = "") -> bytes:
    output = b'"%b"' % text.encode()
    return _core.encode_record(_core.KIND_STEP, seq, 1, "s", None, None, output, True, None, None)


def test_policies_are_parsed_and_bad_ones_refused() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == parse_duration(timedelta(hours=12)) == 43200
    assert parse_duration(" 90 s ") == parse_duration(90) == 90
    assert parse_duration("250ms") == 0.25
    assert parse_retention("forever") == KEEP_FOREVER
    assert parse_retention(None) is None
    assert parse_retention("2w") == 14 * 86_400_000
    assert describe_retention(parse_retention("7d")) == "7d"
    assert describe_retention(KEEP_DEFAULT) == "default"
    for bad in ("soon", "-1d", -1, float("nan"), True, "7 days", [1]):
        with pytest.raises(ConfigurationError):
            parse_retention(bad)
    with pytest.raises(ConfigurationError, match="retention"):
        Engine("unused", retention="a week")
    with pytest.raises(ConfigurationError, match="purge_interval"):
        Engine("unused", purge_interval=0)
    with pytest.raises(ConfigurationError, match="retention"):

        @workflow(retention="-5s")
        async def bad(ctx: WorkflowContext) -> None: ...


async def gone(engine: Engine, run_id: str) -> bool:
    """True when nothing of the run is visible; False when all of it is (else it fails).
    A purge may hide the run between the two reads: then it must stay gone."""
    try:
        await engine.get_run(run_id)
    except RunNotFoundError:
        assert await engine.store.journal(run_id) == []
        assert await engine.store.logs(run_id) == []
        return True
    if await engine.store.journal(run_id) == []:  # gone since, if a purge runs meanwhile
        with pytest.raises(RunNotFoundError):
            await engine.get_run(run_id)
        return True
    return False


async def test_a_workflow_policy_wins_over_the_engine_policy(store_url: str) -> None:
    @workflow(retention=0)
    async def brief(ctx: WorkflowContext, x: int) -> int:
        ctx.logger.info("briefly %s", x)
        return await ctx.step("double", lambda: x * 2)

    @workflow
    async def plain(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step("same", lambda: x)

    async with Engine(store_url, retention="forever") as engine:
        short = [(await engine.start(brief, i)).run_id for i in range(3)]
        kept = (await engine.start(plain, 1)).run_id
        for run_id in [*short, kept]:
            await engine.handle(run_id).result()

        plan = await engine.purge(dry_run=True)
        assert sorted(r["run_id"] for r in plan.runs) == sorted(short)
        assert plan.dry_run and plan.records == 0
        assert not any([await gone(engine, run_id) for run_id in short])

        done = await engine.purge()
        assert sorted(r["run_id"] for r in done.runs) == sorted(short)
        assert done.records >= 3  # a journal chunk at least, and a log line, per run
        assert all([await gone(engine, run_id) for run_id in short])
        assert not await gone(engine, kept)
        assert (await engine.purge()).runs == []

        # older_than: whatever the policy ("forever" included)
        swept = await engine.purge(older_than=timedelta(0))
        assert [r["run_id"] for r in swept.runs] == [kept]
        assert await gone(engine, kept)
        assert (await engine.stats())["runs"]["completed"] == 0


async def test_a_new_store_keeps_finished_runs_for_the_documented_default(
    store_url: str,
) -> None:
    @workflow
    async def plain(ctx: WorkflowContext) -> str:
        return "done"

    async with Engine(store_url) as engine:
        run_id = (await engine.start(plain)).run_id
        await engine.handle(run_id).result()
        stats = await engine.stats()
        assert stats["default_retention"] == "7d" and DEFAULT_RETENTION == 7 * 86400
        assert (await engine.purge()).runs == []
        finished = (await engine.get_run(run_id)).updated_at
        default_ms = round(DEFAULT_RETENTION * 1000)
        store = engine.store
        week = finished + DEFAULT_RETENTION
        assert await store.expired_runs(week - 1, default_ms, None, None) == []
        assert [r["run_id"] for r in await store.expired_runs(week, default_ms, None, None)] == [
            run_id
        ]
        await engine.deploy(plain)
        assert [d["retention"] for d in await engine.deployments()] == [None]


async def test_an_executing_engine_purges_in_the_background(store_url: str) -> None:
    @workflow(retention="0s")
    async def brief(ctx: WorkflowContext) -> int:
        return await ctx.step("one", lambda: 1)

    async with Engine(store_url, purge_interval=0.05) as engine:
        run_id = (await engine.start(brief)).run_id
        assert await engine.handle(run_id).result() == 1
        while not await gone(engine, run_id):  # a purge notifies; the test's timeout bounds it
            await engine.store.wait_changed(0.1)


async def test_a_child_goes_with_its_parent_and_an_unfinished_parent_keeps_it(
    store_url: str,
) -> None:
    @workflow(retention=0)
    async def child(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step("triple", lambda: x * 3)

    @workflow(retention=0)
    async def parent(ctx: WorkflowContext, x: int) -> int:
        first = await ctx.step(child, x)
        extra = await ctx.wait_for_event("go")
        return first + extra

    async with Engine(store_url) as engine:
        handle = await engine.start(parent, 2)
        while (await engine.get_run(handle.run_id)).status != "waiting":
            await engine.store.wait_changed(0.5)
        (kid,) = [r.run_id for r in await engine.runs() if r.workflow == "child"]
        assert (await engine.get_run(kid)).status == "completed"
        # the parent waits: its finished child stays, whatever the cutoff
        assert (await engine.purge(older_than=0)).runs == []
        assert not await gone(engine, kid)
        await engine.send_event(handle.run_id, "go", 1)
        assert await handle.result() == 7
        hidden = await engine.purge()
        assert sorted((r["run_id"], r["root"]) for r in hidden.runs) == sorted(
            [(handle.run_id, handle.run_id), (kid, handle.run_id)]
        )
        assert await gone(engine, handle.run_id) and await gone(engine, kid)


async def test_purges_at_once_hide_each_tree_once_and_whole(store_url: str) -> None:
    """Two engines purging the same runs at once: each run is hidden by one of them, with
    every run it started (neither takes a lock over several runs)."""

    @workflow(retention=0)
    async def purged_leaf(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step("same", lambda: x)

    @workflow(retention=0)
    async def purged_tree(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step(purged_leaf, x) + await ctx.step(purged_leaf, x + 1)

    async with Engine(store_url) as engine, Engine(store_url, execute=False) as other:
        roots = [(await engine.start(purged_tree, i)).run_id for i in range(40)]
        for run_id in roots:
            await engine.handle(run_id).result()
        reports = await asyncio.gather(engine.purge(), other.purge())
        hidden = [r["run_id"] for report in reports for r in report.runs]
        assert len(hidden) == len(set(hidden)) == 3 * len(roots)
        assert {r["root"] for report in reports for r in report.runs} == set(roots)
        for report in reports:  # a tree whole, in one report
            assert set(Counter(r["root"] for r in report.runs).values()) <= {3}
        assert all([await gone(engine, run_id) for run_id in hidden])
        assert (await engine.stats())["hidden"] == 0


async def test_a_purge_that_does_not_describe_counts_what_it_removed(store_url: str) -> None:
    """The background purge's form: the runs removed counted, none of them held."""

    @workflow(retention=0)
    async def counted_leaf(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step("same", lambda: x)

    @workflow(retention=0)
    async def counted_tree(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step(counted_leaf, x)

    async with Engine(store_url, purge_interval=3600) as engine:
        roots = [(await engine.start(counted_tree, i)).run_id for i in range(70)]
        for run_id in roots:
            await engine.handle(run_id).result()
        report = await purge(engine.store, KEEP_FOREVER, describe=False)
        assert report.runs == []
        assert report.removed == 2 * len(roots)  # more than a hide batch: every batch counted
        assert report.records >= 2 * len(roots)
        assert all([await gone(engine, run_id) for run_id in roots])
        assert (await engine.stats())["runs"]["completed"] == 0


async def test_the_longer_policy_of_parent_and_child_wins(store_url: str) -> None:
    @workflow(retention="1h")
    async def keeper(ctx: WorkflowContext) -> str:
        return await ctx.step("keep", lambda: "kept")

    @workflow(retention=0)
    async def parent(ctx: WorkflowContext) -> str:
        return await ctx.step(keeper)

    async with Engine(store_url) as engine:
        handle = await engine.start(parent)
        assert await handle.result() == "kept"
        assert (await engine.purge()).runs == []  # the child's hour wins
        (kid,) = [r.run_id for r in await engine.runs() if r.workflow == "keeper"]
        assert not await gone(engine, handle.run_id) and not await gone(engine, kid)
        due = await engine.store.expired_runs(time.time() + 3600, 0, None, None)
        assert sorted((r["run_id"], r["root"]) for r in due) == sorted(
            [(handle.run_id, handle.run_id), (kid, handle.run_id)]
        )


async def test_a_waiting_run_far_older_than_its_retention_stays(store_url: str) -> None:
    @workflow
    async def approval(ctx: WorkflowContext, order: str) -> str:
        await ctx.step("ask", lambda: order)
        answer = await ctx.wait_for_event("answer")
        return f"{order}: {answer}"

    async with Engine(store_url, retention=0) as engine:
        handle = await engine.start(approval, "o-1")
        while (await engine.get_run(handle.run_id)).status != "waiting":
            await engine.store.wait_changed(0.5)
        far = time.time() + 10 * 365 * 86400.0
        assert await engine.store.hide_expired(far, 0, far, 100) == []
        assert (await engine.purge(older_than=0)).runs == []
        await engine.send_event(handle.run_id, "answer", "yes")
        assert await handle.result() == "o-1: yes"
        assert [r["run_id"] for r in (await engine.purge()).runs] == [handle.run_id]


async def test_a_purge_concurrent_with_a_replaying_run(store_url: str) -> None:
    calls: list[int] = []

    @workflow(retention=0)
    async def long(ctx: WorkflowContext, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.step(f"s{i}", lambda i=i: calls.append(i) or i)
        await ctx.wait_for_event("resume")
        for i in range(n, 2 * n):
            total += await ctx.step(f"s{i}", lambda i=i: calls.append(i) or i)
        return total

    @workflow(retention=0)
    async def brief(ctx: WorkflowContext, x: int) -> int:
        for i in range(20):
            await ctx.step(f"b{i}", lambda: x)
        return x

    async with Engine(store_url) as first:
        replayed = await first.start(long, 150)
        done = [(await first.start(brief, i)).run_id for i in range(8)]
        for run_id in done:
            await first.handle(run_id).result()
        while (await first.get_run(replayed.run_id)).status != "waiting":
            await first.store.wait_changed(0.5)
    assert calls == list(range(150))

    async with Engine(store_url) as second:  # replays the journal of 150 steps
        await second.send_event(replayed.run_id, "resume")
        result, purged = await asyncio.gather(
            second.handle(replayed.run_id).result(), second.purge()
        )
        assert result == sum(range(300))
        assert calls == list(range(300))  # no step ran twice
        assert {r["run_id"] for r in purged.runs} >= set(done)
        assert replayed.run_id not in {r["run_id"] for r in purged.runs}
        assert all([await gone(second, run_id) for run_id in done])
        steps = await second.journal(replayed.run_id)
        assert [e.name for e in steps if e.kind == "step"] == [f"s{i}" for i in range(300)]


KILLED_PURGE = textwrap.dedent(
    """
    import asyncio, sys, time
    from surestep.store import open_store

    async def main():
        store = open_store(sys.argv[1])
        await store.open()
        pause_at = int(sys.argv[2])  # 0: never
        partial = 0
        while True:  # one run hidden, then its records a few at a time
            records, cleared = await store.sweep_hidden(4)
            if not records and not cleared:
                if not await store.hide_expired(time.time(), 0, None, 1):
                    break
            print("step", flush=True)
            if records and not cleared:
                partial += 1
                if partial == pause_at:  # a run hidden, its records half deleted
                    print("paused", flush=True)
                    sys.stdin.readline()

    asyncio.run(main())
    """
)


def kill_purge(store_url: str, after: str, count: int, pause_at: int = 0) -> None:
    """Run a purge in another process and SIGKILL it at its ``count``-th ``after`` line."""
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_PURGE, store_url, str(pause_at)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as proc:
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            seen += line.startswith(after)
            if seen == count:
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait(timeout=60) == -signal.SIGKILL


async def all_or_nothing(engine: Engine, complete: dict[str, int]) -> list[str]:
    """The runs removed; every other run has all its records."""
    removed = []
    for run_id, records in complete.items():
        if await gone(engine, run_id):
            removed.append(run_id)
        else:
            assert len(await engine.store.journal(run_id)) == records
            assert len(await engine.store.logs(run_id)) == 3
    return removed


async def make_finished_runs(store: Store, count: int, steps: int) -> list[str]:
    ids = []
    for _ in range(count):
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
        await store.create_run(run, "me:1:a", 60.0)
        await asyncio.gather(
            *(store.append(run.run_id, run.fence, s, record(s, "x" * 40)) for s in range(steps))
        )
        for line in range(3):
            await store.append_log(run.run_id, line, 0, b'{"msg":"x"}')
        await store.send_event(run.run_id, "late", b"{}")
        await store.finish(run.run_id, run.fence, "completed", None, None, 0)
        ids.append(run.run_id)
    return ids


async def test_a_purge_killed_by_sigkill_leaves_no_half_removed_run(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        ids = await make_finished_runs(store, 12, 300)
        complete = {run_id: len(await store.journal(run_id)) for run_id in ids}
    finally:
        await store.close()

    kill_purge(store_url, "step", 6)  # wherever it is, in a transaction or between two
    async with Engine(store_url, execute=False) as engine:
        first = await all_or_nothing(engine, complete)
    kill_purge(store_url, "paused", 1, pause_at=3)  # a run hidden, half its records left
    async with Engine(store_url, execute=False) as engine:
        removed = await all_or_nothing(engine, complete)
        assert set(first) <= set(removed) and 0 < len(removed) < len(ids)
        assert (await engine.stats())["hidden"] >= 1
        await engine.purge(older_than=0)
        assert await all_or_nothing(engine, complete) == ids
        assert (await engine.stats())["hidden"] == 0


async def make_previous_release_store(store_url: str, count: int) -> list[str]:
    """A store as surestep 0.2 left it: finished runs, and none of retention's records."""
    if "://" not in store_url:
        store = open_store(store_url)
        await store.open()
        try:
            ids = await make_finished_runs(store, count, 3)
        finally:
            await store.close()
        from surestep import _lmdb

        env = _lmdb.open(store_url, max_dbs=32, map_size=1 << 24)
        try:
            for name in (b"meta", b"retain", b"children"):
                db = env.open_db(name)
                with env.begin(write=True) as txn:
                    keys = [bytes(k) for k in txn.cursor(db=db).iternext(values=False)]
                    for key in keys:
                        txn.delete(key, db=db)
        finally:
            env.close()
        return ids
    import asyncpg

    from surestep.store.pg_sql import MIGRATIONS

    server_url, schema = store_url.rsplit("schema=", 1)
    ids = [new_run_id() for _ in range(count)]
    conn = await asyncpg.connect(server_url[:-1])  # without its "?" or "&"
    try:
        await conn.execute(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
            f"INSERT INTO {schema}.schema_version (version) VALUES (1);"
            + MIGRATIONS[0][1].format(s=schema)
        )
        for run_id in ids:
            await conn.execute(
                f"INSERT INTO {schema}.runs (run_id, workflow, version, args, kwargs, status,"
                " created_at, updated_at) VALUES ($1, 'wf', 'v1', '[]', '{}', 'completed',"
                " now(), now())",
                run_id,
            )
            await conn.execute(
                f"INSERT INTO {schema}.journal (run_id, seq, record) VALUES ($1, 0, $2)",
                run_id,
                record(0),
            )
    finally:
        await conn.close()
    return ids


async def test_a_store_made_by_the_previous_release_keeps_its_history(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await make_previous_release_store(store_url, 3)
    caplog.set_level(logging.INFO, logger="surestep.engine")
    async with Engine(store_url, purge_interval=0.01) as engine:
        assert await engine.store.made_by_previous_release()
        assert (await engine.stats())["default_retention"] == "forever"
        assert (await engine.purge()).runs == []
        await asyncio.sleep(0.1)  # background purges come and go meanwhile
        assert not any([await gone(engine, run_id) for run_id in ids])
    said = [r for r in caplog.records if "made by surestep 0.2" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO

    # retention configured: the old runs go by it, as runs finished under no policy
    async with Engine(store_url, retention=0) as engine:
        assert (await engine.stats())["default_retention"] == "0s"
        purged = await engine.purge()
        assert sorted(r["run_id"] for r in purged.runs) == sorted(ids)
        assert all([await gone(engine, run_id) for run_id in ids])


def test_the_gc_and_stats_commands(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from surestep import cli

    store = str(tmp_path / "store")

    @workflow(retention=0)
    async def brief(ctx: WorkflowContext, x: int) -> int:
        return await ctx.step("one", lambda: x)

    @workflow(retention="7d")
    async def weekly(ctx: WorkflowContext) -> str:
        return await ctx.step("one", lambda: "kept")

    async def fill() -> list[str]:
        async with Engine(store) as engine:
            await engine.deploy(weekly)
            handles = [await engine.start(brief, i) for i in range(2)]
            handles.append(await engine.start(weekly))
            for handle in handles:
                await handle.result()
            return [h.run_id for h in handles]

    short_a, short_b, kept = asyncio.run(fill())

    def call(*args: str) -> Any:
        return CliRunner().invoke(cli.main, ["--store", store, *args], catch_exceptions=False)

    stats = json.loads(call("stats", "--json").stdout)
    assert stats["runs"]["completed"] == 3 and stats["hidden"] == 0
    assert stats["size"]["used_bytes"] <= stats["size"]["file_bytes"]
    assert stats["default_retention"] == "7d"
    shown = call("stats").stdout
    assert "runs completed" in shown and "oldest finished" in shown and "file" in shown

    dry = call("gc", "--dry-run")
    assert dry.exit_code == 0 and "would remove 2 finished runs" in dry.stdout
    assert short_a in dry.stdout and short_b in dry.stdout and kept not in dry.stdout
    assert json.loads(call("stats", "--json").stdout)["runs"]["completed"] == 3
    went = call("gc")
    assert went.exit_code == 0 and "removed 2 finished runs and" in went.stdout
    assert json.loads(call("stats", "--json").stdout)["runs"]["completed"] == 1
    swept = json.loads(call("gc", "--older-than", "0s", "--json").stdout)
    assert [r["run_id"] for r in swept["runs"]] == [kept] and not swept["dry_run"]

    deployments = call("deployments")
    assert deployments.exit_code == 0 and "retention" in deployments.stdout
    assert "7d" in deployments.stdout
    rows = json.loads(call("deployments", "--json").stdout)
    assert [r["retention"] for r in rows] == [7 * 86_400_000]

    bad = call("gc", "--older-than", "soon")
    assert bad.exit_code == 2 and "older_than must be a duration" in bad.stderr
    missing = CliRunner().invoke(
        cli.main, ["--store", str(tmp_path / "nothing"), "gc"], catch_exceptions=False
    )
    assert missing.exit_code == 4
