"""What only the PostgreSQL store has: migrations, batching, reconnection, a server
restart, error mapping. The engine-level tests run on it too (``store_url``)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import asyncpg
import pytest

from support.calls import calls
from support.polling import until
from surestep import ConfigurationError, Engine, WorkflowContext, function, workflow
from surestep.errors import StoreError
from surestep.store import open_store, pg_sql
from surestep.store.base import RunInfo, new_run_id
from surestep.store.pg_sql import MIGRATIONS


def fresh_schema() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@function
async def pg_a(x: int) -> int:
    calls["a"] += 1
    return x + 1


@function
async def pg_b(x: int) -> int:
    calls["b"] += 1
    return x * 10


@workflow
async def pg_fan(ctx: WorkflowContext, n: int) -> int:
    parts = await asyncio.gather(*(ctx.step("part", lambda i=i: i * n, key=i) for i in range(5)))
    return sum(parts)


# Plain PostgreSQL's statements (the default on it), and Citus's forms of them.
DIALECTS = pytest.mark.parametrize("dialect", ["auto", "citus"])


@DIALECTS
async def test_many_concurrent_runs(pg_url: str, dialect: str) -> None:
    async with Engine(
        pg_url, schema=fresh_schema(), durability="process", dialect=dialect
    ) as engine:
        assert await asyncio.gather(*(engine.run(pg_fan, n) for n in range(200))) == [
            10 * n for n in range(200)
        ]


@DIALECTS
async def test_appends_issued_together_ride_one_statement(pg_url: str, dialect: str) -> None:
    store: Any = open_store(pg_url, schema=fresh_schema(), dialect=dialect)
    await store.open()
    try:
        runs = [
            RunInfo(run_id=new_run_id(), workflow="wf", version="v", args=[], kwargs={})
            for _ in range(50)
        ]
        for run in runs:
            await store.create_run(run, "me:1:a", 60.0)
        statements: list[str] = []
        fetch = store._fetch

        async def counting(sql: str, *args: Any, **kw: Any) -> Any:
            statements.append(sql)
            return await fetch(sql, *args, **kw)

        store._fetch = counting
        await asyncio.gather(
            *(store.append(r.run_id, r.fence, seq, b"%d" % seq) for r in runs for seq in range(20))
        )
        # 1,000 appends, one INSERT on plain PostgreSQL; one pipeline of one a run on Citus
        assert store.citus == (dialect == "citus")
        assert statements == [store._q[pg_sql.APPEND if store.citus else pg_sql.APPEND_RUNS]]
        store._fetch = fetch
        assert all([await store.journal(r.run_id) == [b"%d" % s for s in range(20)] for r in runs])
    finally:
        await store.close()


async def test_closing_leaves_no_tick_in_flight(pg_url: str) -> None:
    """An engine closed while its scheduler is in the middle of firing a tick returns once
    that tick's transaction is over: nothing of it is left waiting to land afterwards."""

    @workflow(name="pg_ticker", every=1)
    async def pg_ticker(ctx: WorkflowContext) -> int:
        return 1

    schema = fresh_schema()
    blocker = await asyncpg.connect(pg_url)
    try:
        async with Engine(pg_url, schema=schema):  # its schedule stored on open
            held = blocker.transaction()
            await held.start()
            await blocker.execute(
                f"SELECT 1 FROM {schema}.schedules WHERE workflow = 'pg_ticker' FOR UPDATE"
            )
            # The next tick's transaction waits for the schedule's row.
            await until(lambda: _blocked_by(blocker), timeout=30)
        assert not await _blocked_by(blocker)  # given up, not still waiting to write
        await held.rollback()
        assert await blocker.fetchval(f"SELECT count(*) FROM {schema}.runs") == 0
    finally:
        await blocker.close()


async def _blocked_by(conn: Any) -> bool:
    """Whether a transaction waits for a lock that ``conn`` holds."""
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        conn.get_server_pid(),
    )
    return waiting > 0


async def test_a_tree_found_changed_when_hidden_is_left_whole(pg_url: str) -> None:
    """Hiding takes no lock over several runs: the DELETE re-checks each run, and a tree
    it finds only in part (a run no longer finished) is put back whole; one that another
    purge hid meanwhile is left to it."""
    store: Any = open_store(pg_url, schema=fresh_schema())
    await store.open()
    try:
        root = RunInfo(new_run_id(), "wf", "v1", args=[], kwargs={})
        await store.create_run(root, "me:1:a", 60.0)
        await store.finish(root.run_id, root.fence, "completed", None, None, 0)
        kid = RunInfo(new_run_id(), "wf", "v1", args=[], kwargs={}, parent_id=root.run_id)
        await store.create_run(kid, "me:1:a", 60.0)  # running: its tree may not go
        alone = RunInfo(new_run_id(), "wf", "v1", args=[], kwargs={})
        await store.create_run(alone, "me:1:a", 60.0)
        await store.finish(alone.run_id, alone.fence, "completed", None, None, 0)
        seen = {
            root.run_id: [{"run_id": root.run_id}, {"run_id": kid.run_id}],  # as if finished
            alone.run_id: [{"run_id": alone.run_id}],
        }

        async def hide(conn: Any) -> list[dict[str, Any]]:
            hidden: list[dict[str, Any]] = await store._hide(conn, dict(seen))
            return hidden

        assert await store._transaction(hide, "hide") == [{"run_id": alone.run_id}]
        assert (await store.get_run(root.run_id)).status == "completed"
        assert (await store.get_run(kid.run_id)).status == "running"
        assert await store._transaction(hide, "hide") == []  # all hidden or unfinished
        assert (await store.stats())["hidden"] == 1
    finally:
        await store.close()


async def test_a_wake_up_that_fails_does_not_fail_the_committed_write(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The NOTIFY goes after the write's own commit: when it fails, the write stands and
    its caller is told it did (a start must not raise for a stored, leased run)."""
    from surestep.store import pg_sql

    async with Engine(pg_url, schema=fresh_schema()) as engine:
        monkeypatch.setattr(pg_sql, "NOTIFY", "SELECT pg_notify_that_is_missing($1)")
        handle = await engine.start(pg_fan, 2)
        assert await handle.result() == 20
        assert (await engine.store.get_run(handle.run_id)).status == "completed"
    assert "committed, but the wake-up was not sent" in caplog.text


async def test_schema_is_created_once_by_concurrent_opens(pg_url: str) -> None:
    schema = fresh_schema()
    stores = [open_store(pg_url, schema=schema) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    conn = await asyncpg.connect(pg_url)
    try:
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_version")
        assert [r[0] for r in versions] == [version for version, _ in MIGRATIONS]
        await conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (99)")
    finally:
        await conn.close()
    newer = open_store(pg_url, schema=schema)
    with pytest.raises(StoreError, match=r"schema version 99.*upgrade surestep"):
        await newer.open()


async def test_a_store_of_the_first_schema_is_upgraded_and_keeps_its_rows(
    pg_url: str,
) -> None:
    """A store whose schema an older release made gets the migrations and the indexes
    added since, and keeps its rows."""
    schema = fresh_schema()
    conn = await asyncpg.connect(pg_url)
    try:  # the schema as the first release left it, with a deployment in it
        await conn.execute(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
            f"INSERT INTO {schema}.schema_version (version) VALUES (1);"
            + MIGRATIONS[0][1].format(s=schema)
            + f"INSERT INTO {schema}.deployments (workflow, version, digest)"
            " VALUES ('w', 'v1', 'd')"
        )
        store = open_store(pg_url, schema=schema)
        await store.open()
        try:
            assert [(d["workflow"], d["version"]) for d in await store.deployments()] == [
                ("w", "v1")
            ]
            await store.register_subscriptions("w", "v1", ["e"])
            [run] = await store.emit_event("e", {"a": 1}, lambda workflow: f"event:e:1:{workflow}")
            assert (run.workflow, run.version, run.kwargs) == ("w", "v1", {"a": 1})
            assert await store.schedules() == []
        finally:
            await store.close()
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_version ORDER BY 1")
        assert [r[0] for r in versions] == [version for version, _ in MIGRATIONS]
        index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            schema,
            "deployments_by_workflow",
        )
        assert index.endswith(f"ON {schema}.deployments USING btree (workflow, id)")
    finally:
        await conn.close()


async def test_a_store_with_tables_made_before_their_migration_takes_the_versions(
    pg_url: str,
) -> None:
    """Earlier releases made the tables of migrations 3 on without recording a version:
    such a store takes those versions, keeps its rows and files nothing twice."""
    schema = fresh_schema()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.schema_version ("
            " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
            f"INSERT INTO {schema}.schema_version (version) VALUES (1), (2);"
            + "".join(migration.format(s=schema) for _, migration in MIGRATIONS)
        )
        made = await conn.fetchval(f"SELECT value::text FROM {schema}.meta")
        store = open_store(pg_url, schema=schema)
        await store.open()
        try:
            run = RunInfo(run_id=new_run_id(), workflow="wf", version="v", args=[], kwargs={})
            fence = await store.create_run(run, "me", 60.0)
            await store.record_attempt(run.run_id, fence, 0, 1, b"{}", {"seq": 0}, None)
            await store.finish(run.run_id, fence, "completed", 1, None)
        finally:
            await store.close()
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_version ORDER BY 1")
        assert [r[0] for r in versions] == [version for version, _ in MIGRATIONS]
        assert await conn.fetchval(f"SELECT value::text FROM {schema}.meta") == made
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.retention") == 1
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.attempts") == 1
    finally:
        await conn.close()


async def test_every_primary_key_holds_the_column_citus_distributes_by(pg_url: str) -> None:
    """Migration 9 distributes these tables by these columns on Citus, which needs each
    primary key to hold its table's column (plain PostgreSQL: the same schema)."""
    distributed = {
        "runs": "run_id",
        "journal": "run_id",
        "events": "run_id",
        "logs": "run_id",
        "attempts": "run_id",
        "progress": "run_id",
        "retention": "run_id",
        "hidden": "run_id",
        "idempotency_keys": "key",
        "state": "scope",
    }
    schema = fresh_schema()
    store = open_store(pg_url, schema=schema)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            """SELECT c.relname, array_agg(a.attname::text) FROM pg_index i
            JOIN pg_class c ON c.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
            WHERE i.indisprimary AND n.nspname = $1 GROUP BY c.relname""",
            schema,
        )
    finally:
        await conn.close()
    keys = {name: set(columns) for name, columns in rows}
    assert keys["events"] == {"run_id", "id"}
    assert {name: column in keys[name] for name, column in distributed.items()} == dict.fromkeys(
        distributed, True
    )


async def test_schema_from_the_url(pg_url: str) -> None:
    schema = fresh_schema()
    store = open_store(f"{pg_url}?schema={schema}")
    await store.open()
    try:
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v", args=[], kwargs={})
        await store.create_run(run, None, 1.0)
    finally:
        await store.close()
    other = open_store(pg_url, schema=schema)
    await other.open()
    try:
        assert (await other.get_run(run.run_id)).workflow == "wf"
    finally:
        await other.close()


@DIALECTS
async def test_survives_a_server_restart(pg_server: Any, dialect: str) -> None:
    schema = fresh_schema()
    store: Any = open_store(pg_server.url, schema=schema, min_connections=2, dialect=dialect)
    other = open_store(pg_server.url, schema=schema, dialect=dialect)
    await store.open()
    await other.open()
    try:
        first = RunInfo(run_id=new_run_id(), workflow="wf", version="v", args=[], kwargs={})
        await store.create_run(first, "me:1:a", 60.0)
        await asyncio.get_running_loop().run_in_executor(None, pg_server.restart)
        # pooled connections the server cut are replaced on their next use
        await store.append(first.run_id, first.fence, 0, b"after restart")
        assert await other.journal(first.run_id) == [b"after restart"]
        # the LISTEN connection comes back by itself
        while store._listener is None or store._relisten is not None:
            await store.wait_changed(5)
        await store.wait_changed(0)  # consume the wake-ups the restart itself caused
        waiter = asyncio.ensure_future(store.wait_changed(50))
        await asyncio.sleep(0)
        assert not waiter.done()
        second = RunInfo(run_id=new_run_id(), workflow="wf", version="v", args=[], kwargs={})
        await other.create_run(second, None, 1.0)
        await asyncio.wait_for(waiter, 30)
    finally:
        await other.close()
        await store.close()


@DIALECTS
async def test_a_run_continues_across_a_server_restart(pg_server: Any, dialect: str) -> None:
    """The server restarts while a run is inside a step: the step's record, the steps
    after it and the run's outcome are written over new connections."""
    entered, release = asyncio.Event(), asyncio.Event()

    @function
    async def pg_held() -> str:
        entered.set()
        await release.wait()
        return "held"

    @workflow
    async def pg_across_restart(ctx: WorkflowContext) -> list:
        first = await ctx.step(pg_a, 1)
        held = await ctx.step(pg_held)
        return [first, held, await ctx.step(pg_b, 2)]

    url = f"{pg_server.url}?schema={fresh_schema()}&dialect={dialect}"
    async with Engine(url) as engine:
        handle = await engine.start(pg_across_restart)
        await entered.wait()
        await asyncio.get_running_loop().run_in_executor(None, pg_server.restart)
        release.set()
        assert await handle.result() == [2, "held", 20]
        assert [e.name for e in await engine.journal(handle.run_id)] == ["pg_a", "pg_held", "pg_b"]


async def test_connection_failure_is_a_store_error_without_the_password(pg_url: str) -> None:
    from support.pgserver import free_port

    url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/postgres"
    store = open_store(url, connect_timeout=5)
    assert store.url == url.replace(":s3cret", "")
    with pytest.raises(StoreError) as failed:
        await store.open()
    assert store.url in str(failed.value) and "s3cret" not in str(failed.value)
    with pytest.raises(StoreError, match="closed"):
        await store.get_run(new_run_id())


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.delitem(sys.modules, "surestep.store.postgres", raising=False)
    with pytest.raises(ConfigurationError, match=r"pip install 'surestep\[postgres\]'"):
        open_store("postgresql://localhost/db")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        open_store("postgresql://localhost/db", schema="no; drop")
    with pytest.raises(ConfigurationError, match="durability"):
        open_store("postgresql://localhost/db", durability="never")
    with pytest.raises(ConfigurationError, match="dialect"):
        open_store("postgresql://localhost/db?dialect=oracle")


@DIALECTS
async def test_a_finish_sent_again_wakes_the_waiters_again(pg_url: str, dialect: str) -> None:
    """A finish whose first reply was lost is sent again and finds the run finished as
    it says: it succeeds, and wakes the other processes' waiters (they may not have
    heard of the first)."""
    schema = fresh_schema()
    store: Any = open_store(pg_url, schema=schema, dialect=dialect)
    other: Any = open_store(pg_url, schema=schema, dialect=dialect)
    await store.open()
    await other.open()
    try:
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v", args=[], kwargs={})
        fence = await store.create_run(run, "me:1:a", 60.0)
        await store.finish(run.run_id, fence, "completed", 1, None)
        await other.wait_changed(5)  # the first finish's wake-up
        await other.wait_changed(0)
        waiter = asyncio.ensure_future(other.wait_changed(60))
        await asyncio.sleep(0)
        assert not waiter.done()
        await store.finish(run.run_id, fence, "completed", 1, None)  # sent again
        await asyncio.wait_for(waiter, 30)
        assert (await other.get_run(run.run_id)).status == "completed"
    finally:
        await other.close()
        await store.close()
