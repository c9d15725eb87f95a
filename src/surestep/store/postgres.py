"""The shared store: one PostgreSQL database, used by workers on many machines.

The driver is asyncpg: the fastest maintained asyncio driver for PostgreSQL.
It speaks the binary protocol (journal records travel as raw ``bytea``, with
no hex or escape encoding), caches prepared statements per connection,
pipelines ``executemany``, has a connection pool, and supports LISTEN/NOTIFY
natively (callbacks on the event loop, no polling).

Schema (in its own PostgreSQL schema, ``surestep`` unless configured):

``runs``            one row per run: the :class:`RunInfo` fields (arguments,
                    result and error as ``json``, which keeps the exact text:
                    ``jsonb`` would reorder keys and refuse ``\\u0000``), and
                    the lease: ``fence`` (bigint), ``owner``, ``lease_until``.
``journal``         ``(run_id, seq) -> record bytea``: one encoded record a
                    row, in the format the LMDB store keeps (format 2; rows
                    of format 1, from surestep 0.1, are read as they are).
``events``          events sent to runs and not yet taken (payload ``bytea``).
``state``           ``(scope, key) -> version, value bytea`` (``NULL`` once deleted).
``logs``            ``(run_id, position, idx) -> line bytea``.
``deployments``     every workflow version made current, in order.
``meta``            ``'store'`` -> what made the store (see RETENTION_TABLES).
``retention``       ``run_id -> keep, finished_at``: every finished run's policy
                    (milliseconds, or KEEP_FOREVER / KEEP_DEFAULT) and finish time,
                    indexed by both, so that a purge reads each policy's due rows only.
``hidden``          purged runs whose records are still being deleted.
``schedules``       one row per scheduled workflow (:class:`ScheduleInfo`).
``subscriptions``   ``(event, workflow) -> version``: the event triggers.
``attempts``        ``(run_id, seq, attempt) -> body bytea``: a step's failed attempts
                    that were retried (the journal holds one record a step); the run's
                    ``retry`` column says which step is between attempts.
``schema_version``  the migrations applied (see :data:`MIGRATIONS`).

Leases use the database server's clock (``now()``), never a client's, so
clock skew between worker hosts cannot make two of them hold one run.
``lease_until`` is a ``timestamptz``; :class:`RunInfo` shows it as epoch
seconds of the server's clock. Timers (``wake_at``) are absolute times the
runtime computes, compared with the server's clock as well; ``next_wake``
answers in the server's clock.

Journal appends are fenced and batched: every :meth:`PostgresStore.append`
issued while the previous batch was being committed rides the next batch,
written by ONE statement that joins the records against ``runs`` on
``(run_id, fence)`` (locking those rows ``FOR SHARE``, so a claim that bumps a
fence waits for the batch or the batch sees the new fence). A record whose
fence is stale is not written and its caller gets
:class:`~surestep.errors.LeaseLostError`; every caller's future resolves after
the commit (group commit, as the LMDB writer thread does). Creating and
finishing runs are group-committed the same way (one INSERT, or one fenced
UPDATE, per batch), so that a thousand runs starting or ending together cost
a few transactions, not a thousand serialized NOTIFYing commits. Every
statement that locks several ``runs`` rows locks them in ``run_id`` order, so
batches, renewals and claims cannot deadlock one another.

Wake-ups: every change another process may wait for (a run created, released,
finished, cancelled, suspended, or sent an event) sends a NOTIFY in the same
transaction; each store instance LISTENs on a dedicated connection, opened
by :meth:`PostgresStore.open`, so it sees every change committed after that.
When the server restarts, that connection is re-established and re-LISTENs
(with backoff, in the background; waiters are woken when it is lost and when
it is back, since changes in between went unheard), and the pool replaces the
connections the server dropped on their next use; an idempotent statement
that failed on a dropped connection is sent once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from ..errors import (
    ConfigurationError,
    LeaseLostError,
    RunFinishedError,
    RunNotFoundError,
    ScheduleNotFoundError,
    StoreError,
    SurestepError,
)
from .base import (
    CANCELLED,
    CREATE_FIELDS,
    FINISHED,
    KEEP_DEFAULT,
    PENDING,
    RUNNING,
    STATUSES,
    WAITING,
    LiveEngine,
    Owner,
    RunInfo,
    ScheduleInfo,
    ServedVersions,
    Store,
    keep_registration,
    new_run_id,
    registered_schedule,
    retention_due,
    run_key,
    versions_by_workflow,
    wait_set,
)

log = logging.getLogger("surestep.store.postgres")
T = TypeVar("T")
ItemT = TypeVar("ItemT")

DEFAULT_SCHEMA = "surestep"
MAX_BATCH = 5000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_FINISHED_SQL = ", ".join(f"'{s}'" for s in sorted(FINISHED))
UNFINISHED = f"status NOT IN ({_FINISHED_SQL})"
ACTIVE = f"status IN ('{PENDING}', '{RUNNING}')"
_R_UNFINISHED = f"r.{UNFINISHED}"
_R_ACTIVE = f"r.{ACTIVE}"
# a waiting run is claimable once due; any other unfinished run by its lease
_R_DUE = f"(r.status <> '{WAITING}' OR r.wake_at <= now())"

# Errors of the driver and the network that mean "the store failed".
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncio.TimeoutError,
)
# Errors after which the same statement may be sent again on a new connection.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionResetError,
    BrokenPipeError,
)

# -- schema migrations: append new ones, never edit an applied one.
# ``{s}`` is the quoted schema name.

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        f"""
        CREATE TABLE {{s}}.runs (
            run_id      text COLLATE "C" PRIMARY KEY,
            workflow    text NOT NULL,
            version     text NOT NULL,
            args        json NOT NULL,
            kwargs      json NOT NULL,
            status      text NOT NULL,
            session_id  text,
            user_id     text,
            created_at  timestamptz NOT NULL,
            updated_at  timestamptz NOT NULL,
            attempt     integer NOT NULL DEFAULT 0,
            result      json,
            error       json,
            parent_id   text COLLATE "C",
            wake_at     timestamptz,
            waiting_for text,
            owner       text COLLATE "C",
            lease_until timestamptz,
            fence       bigint NOT NULL DEFAULT 0
        ) WITH (fillfactor = 80);
        -- claims read only these, however many runs have finished
        CREATE INDEX runs_active ON {{s}}.runs (run_id) WHERE {ACTIVE};
        CREATE INDEX runs_timers ON {{s}}.runs (wake_at) WHERE status = '{WAITING}';
        -- the runs held right now, by owner (the dead-owner check on claims)
        CREATE INDEX runs_held ON {{s}}.runs (owner) WHERE owner IS NOT NULL AND {UNFINISHED};
        CREATE INDEX runs_by_status ON {{s}}.runs (status, run_id);
        CREATE INDEX runs_by_workflow ON {{s}}.runs (workflow, run_id);
        CREATE INDEX runs_by_parent ON {{s}}.runs (parent_id) WHERE parent_id IS NOT NULL;
        CREATE TABLE {{s}}.journal (
            run_id  text COLLATE "C" NOT NULL,
            seq     integer NOT NULL,
            record  bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        );
        CREATE TABLE {{s}}.events (
            id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id   text COLLATE "C" NOT NULL,
            name     text NOT NULL,
            payload  bytea NOT NULL,
            sent_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX events_by_run ON {{s}}.events (run_id, name, id);
        CREATE TABLE {{s}}.state (
            scope    text COLLATE "C" NOT NULL,
            key      text COLLATE "C" NOT NULL,
            version  bigint NOT NULL,
            value    bytea,
            PRIMARY KEY (scope, key)
        );
        CREATE TABLE {{s}}.deployments (
            id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            workflow  text NOT NULL,
            version   text NOT NULL,
            digest    text NOT NULL,
            time      timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE {{s}}.logs (
            run_id    text COLLATE "C" NOT NULL,
            position  integer NOT NULL,
            idx       integer NOT NULL,
            line      bytea NOT NULL,
            PRIMARY KEY (run_id, position, idx)
        );
        """,
    ),
    (
        2,
        """
        -- the run each idempotency key created: a start with a known key finds it here
        CREATE TABLE {s}.idempotency_keys (
            key     text COLLATE "C" PRIMARY KEY,
            run_id  text COLLATE "C" NOT NULL
        );
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Indexes added after a schema version, which nothing reads or writes differently: made
# where missing, without a new version, so that releases knowing only that version keep
# opening the store (a newer version makes them refuse it). Name -> statement.
INDEXES = {
    # A start that follows deployments reads its workflow's newest one: an index scan,
    # not a scan of every deployment ever made.
    "deployments_by_workflow": "CREATE INDEX IF NOT EXISTS deployments_by_workflow "
    "ON {s}.deployments (workflow, id)",
    # A purged run's idempotency key goes with it.
    "idempotency_keys_by_run": "CREATE INDEX IF NOT EXISTS idempotency_keys_by_run "
    "ON {s}.idempotency_keys (run_id)",
    # A purge reads each policy's oldest finished runs (RETENTION_TABLES).
    "retention_due": "CREATE INDEX IF NOT EXISTS retention_due "
    "ON {s}.retention (keep, finished_at)",
    # The live engines and the versions they serve (a table no earlier release reads or
    # writes, made where missing like an index; known by its primary key's index).
    "engines_pkey": "CREATE TABLE IF NOT EXISTS {s}.engines ("
    'owner text COLLATE "C" PRIMARY KEY, served jsonb NOT NULL, '
    "alive_until timestamptz NOT NULL)",
    # A run's progress (ctx.progress), one row a run, apart from the runs' rows that
    # claims and leases rewrite: a table, made where missing with its key's index.
    "progress_pkey": 'CREATE TABLE IF NOT EXISTS {s}.progress (run_id text COLLATE "C" '
    "PRIMARY KEY, report bytea NOT NULL)",
    # Schedules and event subscriptions (tables as ``engines``): one row per scheduled
    # workflow, and ``(event, workflow) -> version``.
    "schedules_pkey": "CREATE TABLE IF NOT EXISTS {s}.schedules ("
    'workflow text COLLATE "C" PRIMARY KEY, version text NOT NULL, cron text, '
    "every float8, timezone text NOT NULL, catchup text NOT NULL, paused boolean NOT NULL, "
    "last_tick float8, since float8 NOT NULL, revision bigint NOT NULL, "
    "updated_at float8 NOT NULL)",
    "subscriptions_pkey": "CREATE TABLE IF NOT EXISTS {s}.subscriptions ("
    'event text COLLATE "C" NOT NULL, workflow text COLLATE "C" NOT NULL, '
    "version text NOT NULL, PRIMARY KEY (event, workflow))",
    # Durable retries: a step's failed attempts, and the run's step between attempts (a
    # column earlier releases do not select).
    "attempts_pkey": "CREATE TABLE IF NOT EXISTS {s}.attempts ("
    'run_id text COLLATE "C" NOT NULL, seq integer NOT NULL, attempt integer NOT NULL, '
    "body bytea NOT NULL, PRIMARY KEY (run_id, seq, attempt)); "
    "ALTER TABLE {s}.runs ADD COLUMN IF NOT EXISTS retry json",
}
# Retention's tables, made where missing before the INDEXES, without a new schema version
# (as those): a release that knows only version 1 keeps opening the store; runs it
# finishes are not filed for purging. What made the store is recorded once: a store that
# has runs by then was made by surestep 0.2, and its finished runs are filed under the
# store's default policy. Finished runs leave by batched deletes, not by dropping time
# partitions: each run goes when its own policy says, a run waiting for months sits among
# runs long gone, and every primary key keeps ``run_id`` first, the column to distribute
# by on Citus.
RETENTION_TABLES = f"""
    CREATE TABLE IF NOT EXISTS {{s}}.meta (
        key    text COLLATE "C" PRIMARY KEY,
        value  json NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {{s}}.retention (
        run_id       text COLLATE "C" PRIMARY KEY,
        keep         bigint NOT NULL,
        finished_at  timestamptz NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {{s}}.hidden (run_id text COLLATE "C" PRIMARY KEY);
    ALTER TABLE {{s}}.deployments ADD COLUMN IF NOT EXISTS retention bigint;
    WITH made AS (
        INSERT INTO {{s}}.meta (key, value) SELECT 'store', json_build_object(
            'made_by', CASE WHEN EXISTS (SELECT 1 FROM {{s}}.runs)
                THEN 'surestep 0.2' ELSE 'this release' END,
            'at', extract(epoch FROM now()))
        ON CONFLICT (key) DO NOTHING RETURNING 1)
    INSERT INTO {{s}}.retention (run_id, keep, finished_at)
        SELECT run_id, {KEEP_DEFAULT}, updated_at FROM {{s}}.runs
        WHERE status IN ({_FINISHED_SQL}) AND EXISTS (SELECT 1 FROM made);
"""

# The columns of a RunInfo, from a ``runs`` row aliased ``r`` (see _run_of).
_COLS = (
    "r.run_id, r.workflow, r.version, r.args, r.kwargs, r.status, r.session_id, r.user_id, "
    "extract(epoch FROM r.created_at)::float8, extract(epoch FROM r.updated_at)::float8, "
    "r.attempt, r.result, r.error, r.parent_id, extract(epoch FROM r.wake_at)::float8, "
    "r.waiting_for, r.owner, coalesce(extract(epoch FROM r.lease_until)::float8, 0), r.fence, "
    "r.retry"
)
_AFTER_COLS = 20  # the index of a column selected after _COLS


def _claimed_for(run: RunInfo, owner: str | None) -> RunInfo:
    """``run`` as inserted claimed for ``owner`` (the lease's end is the server's clock)."""
    if owner is not None:
        run.fence += 1
        run.attempt += 1
        run.owner = owner
        run.status = RUNNING
        run.wake_at = run.waiting_for = None
    return run


def _run_of(rec: Any) -> RunInfo:
    return RunInfo(
        run_id=rec[0],
        workflow=rec[1],
        version=rec[2],
        args=orjson.loads(rec[3]),
        kwargs=orjson.loads(rec[4]),
        status=rec[5],
        session_id=rec[6],
        user_id=rec[7],
        created_at=rec[8],
        updated_at=rec[9],
        attempt=rec[10],
        result=None if rec[11] is None else orjson.loads(rec[11]),
        error=None if rec[12] is None else orjson.loads(rec[12]),
        parent_id=rec[13],
        wake_at=rec[14],
        waiting_for=rec[15],
        owner=rec[16],
        lease_until=rec[17],
        fence=rec[18],
        retry=None if rec[19] is None else orjson.loads(rec[19]),
    )


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def redact(url: str) -> str:
    """``url`` without its password (in the user part or the query)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def _run_with_progress(rec: Any) -> RunInfo:
    """A RunInfo from ``_COLS`` followed by the run's progress report (or NULL)."""
    run = _run_of(rec)
    if rec[_AFTER_COLS] is not None:
        run.progress = orjson.loads(rec[_AFTER_COLS])
    return run


def _split_url(url: str) -> tuple[str, str | None]:
    """The DSN for asyncpg, and the ``schema`` query parameter (which asyncpg would
    otherwise send to the server as a setting)."""
    parts = urlsplit(url)
    schema = None
    query = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k == "schema":
            schema = v
        else:
            query.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(query))), schema


class _GroupCommit(Generic[ItemT]):
    """Group commit: items submitted while a batch is being written form the
    next batch, written by ONE statement; one batch in flight at a time.

    The first item of a quiet period starts the flusher, which runs on the
    next loop iteration, so every item submitted in the same tick rides the
    same batch. ``write(items)`` returns one outcome per item: a value, or an
    exception for that item's caller alone. Each caller's future resolves
    after the statement committed.
    """

    def __init__(
        self,
        store: PostgresStore,
        what: str,
        write: Callable[[list[ItemT]], Awaitable[list[Any]]],
        key: Callable[[ItemT], Hashable],
        max_batch: int,
    ) -> None:
        self.store = store
        self.what = what
        self.write = write
        self.key = key
        self.max_batch = max_batch
        self._queue: list[tuple[ItemT, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, item: ItemT) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((item, fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name=f"surestep-pg-{self.what}")
        return fut

    async def drain(self) -> None:
        """Wait until everything submitted so far has been written (or has failed)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    outcomes = await self.write([item for item, _ in batch])
                except BaseException as exc:  # the statement failed: nothing was written
                    err = exc
                    if not isinstance(exc, (SurestepError, asyncio.CancelledError)):
                        err = self.store._error(exc, self.what)  # noqa: SLF001 - its own store
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(err)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, fut), outcome in zip(batch, outcomes, strict=True):
                    if fut.done():
                        continue  # its caller was cancelled; the write happened all the same
                    if isinstance(outcome, BaseException):
                        fut.set_exception(outcome)
                    else:
                        fut.set_result(outcome)
        finally:
            self._flusher = None
            if self._queue:  # cancelled mid-way: fail what is left rather than hang it
                err = StoreError(f"{self.what} on {self.store.url} abandoned: the store is closing")
                for _, fut in self._queue:
                    if not fut.done():
                        fut.set_exception(err)
                self._queue.clear()

    def _take(self) -> list[tuple[ItemT, asyncio.Future[Any]]]:
        """Up to ``max_batch`` items, one per key: a second item with the same key
        (the same step appended twice, say) waits for the next batch."""
        batch: list[tuple[ItemT, asyncio.Future[Any]]] = []
        later: list[tuple[ItemT, asyncio.Future[Any]]] = []
        seen: set[Hashable] = set()
        queue, self._queue = self._queue, []
        for i, entry in enumerate(queue):
            if len(batch) >= self.max_batch:
                later.extend(queue[i:])
                break
            key = self.key(entry[0])
            if key in seen:
                later.append(entry)
            else:
                seen.add(key)
                batch.append(entry)
        self._queue = later
        return batch


_Append = tuple[str, int, bytes, int]  # run_id, seq, record, fence
_Create = tuple[RunInfo, "str | None", float, bool]  # run, owner, lease_s, follow_deployment
# run_id, fence, status, result, error, retention
_Finish = tuple[str, int, str, "str | None", "str | None", int]


class PostgresStore(Store):
    """The shared backend (see the module docstring).

    ``url`` is a ``postgresql://`` URL as libpq and asyncpg take it; a
    ``schema`` query parameter (or the ``schema`` option) names the
    PostgreSQL schema that holds surestep's tables (default ``surestep``),
    so that several stores can share one database.

    ``durability="fsync"`` (default) acknowledges a write once the server has
    flushed it to its WAL; ``"process"`` uses ``synchronous_commit = off``: an
    acknowledged write survives the client process being killed and the
    server being stopped, but a crash of the server's machine can lose the
    last fraction of a second of writes.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        durability: str = "fsync",
        min_connections: int = 1,
        max_connections: int = 10,
        max_batch: int = MAX_BATCH,
        connect_timeout: float = 10.0,
        command_timeout: float = 60.0,
    ) -> None:
        if durability not in ("fsync", "process"):
            raise ConfigurationError(f"durability must be 'fsync' or 'process', not {durability!r}")
        dsn, url_schema = _split_url(url)
        schema = schema or url_schema or DEFAULT_SCHEMA
        if not _IDENT.match(schema):
            raise ConfigurationError(
                f"schema {schema!r} is not a plain identifier (letters, digits and _, "
                "at most 63 characters, not starting with a digit)"
            )
        if not 1 <= min_connections <= max_connections:
            raise ConfigurationError(
                "need 1 <= min_connections <= max_connections, "
                f"not {min_connections} and {max_connections}"
            )
        self.url = redact(url)
        self.schema = schema
        self.durability = durability
        self._dsn = dsn
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._s = f'"{schema}"'
        # One channel per schema (at most 63 bytes: a longer schema name may share
        # its channel with another, which costs only early wake-ups).
        self._channel = f"{schema}.surestep_changes"[:63]
        self._settings = {"application_name": "surestep"}
        if durability == "process":
            self._settings["synchronous_commit"] = "off"
        self._pool: Any = None
        self._listener: Any = None
        self._relisten: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._appends = _GroupCommit[_Append](
            self, "append", self._write_appends, lambda a: (a[0], a[1]), max_batch
        )
        self._creates = _GroupCommit[_Create](
            self, "create run", self._write_creates, lambda c: c[0].run_id, max_batch
        )
        self._finishes = _GroupCommit[_Finish](
            self, "finish run", self._write_finishes, lambda f: f[0], max_batch
        )
        self._host_prefix = (socket.gethostname() + ":", socket.gethostname() + ";")
        s = self._s
        self._not_hidden = f"NOT EXISTS (SELECT 1 FROM {s}.hidden h WHERE h.run_id = $1)"
        self._sql_append = f"""
            INSERT INTO {s}.journal (run_id, seq, record)
            SELECT x.run_id, x.seq, x.rec
            FROM unnest($1::text[], $2::int[], $3::bytea[], $4::bigint[])
                AS x(run_id, seq, rec, fence)
            JOIN {s}.runs r ON r.run_id = x.run_id AND r.fence = x.fence
            ORDER BY x.run_id
            FOR SHARE OF r
            ON CONFLICT (run_id, seq) DO UPDATE SET record = EXCLUDED.record
            RETURNING run_id, seq"""
        self._sql_create = f"""
            WITH i AS (
                INSERT INTO {s}.runs AS r (run_id, workflow, version, args, kwargs, status,
                    session_id, user_id, created_at, updated_at, attempt, result, error,
                    parent_id, wake_at, waiting_for, owner, lease_until, fence)
                SELECT x.run_id, x.workflow, COALESCE(d.version, x.version), x.args::json,
                    x.kwargs::json, CASE WHEN d.version IS NULL THEN x.status ELSE '{PENDING}' END,
                    x.session_id, x.user_id, to_timestamp(x.created_at), now(),
                    x.attempt - (d.version IS NOT NULL AND x.owner IS NOT NULL)::int,
                    x.result::json, x.error::json, x.parent_id, to_timestamp(x.wake_at),
                    x.waiting_for, CASE WHEN d.version IS NULL THEN x.owner END,
                    CASE WHEN x.owner IS NULL OR d.version IS NOT NULL THEN NULL
                        ELSE now() + make_interval(secs => x.lease_s) END,
                    x.fence - (d.version IS NOT NULL AND x.owner IS NOT NULL)::int
                FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                    $6::text[], $7::text[], $8::text[], $9::float8[], $10::int[], $11::text[],
                    $12::text[], $13::text[], $14::float8[], $15::text[], $16::text[],
                    $17::float8[], $18::bigint[], $20::bool[])
                    AS x(run_id, workflow, version, args, kwargs, status, session_id, user_id,
                        created_at, attempt, result, error, parent_id, wake_at, waiting_for,
                        owner, lease_s, fence, follow)
                -- follow_deployment: the workflow's last deployed version, when another
                LEFT JOIN LATERAL (
                    SELECT dep.version FROM {s}.deployments dep
                    WHERE x.follow AND dep.workflow = x.workflow ORDER BY dep.id DESC LIMIT 1
                ) d ON d.version <> x.version
                ON CONFLICT (run_id) DO NOTHING
                RETURNING {_COLS})
            SELECT i.*, pg_notify($19, 'changed') FROM i"""
        # Rows are locked in run_id order, as every multi-row statement here locks them.
        self._sql_finish = f"""
            WITH x AS (
                SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                    $7::bigint[]) AS x(run_id, fence, status, result, error, keep)),
            held AS (
                SELECT r.run_id FROM {s}.runs r JOIN x ON r.run_id = x.run_id AND r.fence = x.fence
                ORDER BY r.run_id FOR NO KEY UPDATE OF r),
            u AS (
                UPDATE {s}.runs r SET status = x.status, result = x.result::json,
                    error = x.error::json, owner = NULL, lease_until = NULL, updated_at = now()
                FROM x JOIN held ON held.run_id = x.run_id
                WHERE r.run_id = x.run_id AND r.fence = x.fence
                RETURNING r.run_id),
            k AS (
                INSERT INTO {s}.retention (run_id, keep, finished_at)
                SELECT u.run_id, x.keep, now() FROM u JOIN x ON x.run_id = u.run_id
                ON CONFLICT (run_id) DO UPDATE
                    SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at)
            SELECT u.run_id, pg_notify($6, 'changed') FROM u"""
        self._sql_take = f"""
            fence = r.fence + 1, attempt = r.attempt + 1, owner = $2, status = '{RUNNING}',
            lease_until = now() + make_interval(secs => $3), updated_at = now(),
            wake_at = NULL, waiting_for = NULL"""

    # -- lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._closing = False
        self._changed = asyncio.Event()  # bound to this loop
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_connections,
                max_size=self._max_connections,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings=self._settings,
            )
        except _DRIVER_ERRORS as exc:
            raise self._error(exc, "cannot connect") from exc
        try:
            await self._migrate(pool)
            self._listener = await self._listen()
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is None:
            return
        self._closing = True
        for batcher in (self._appends, self._creates, self._finishes):
            await batcher.drain()
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(BaseException):
                await self._relisten
            self._relisten = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(*_DRIVER_ERRORS):
                await listener.close(timeout=5)
        pool, self._pool = self._pool, None
        try:
            await asyncio.wait_for(pool.close(), 10)
        except _DRIVER_ERRORS:
            pool.terminate()

    async def _migrate(self, pool: Any) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` and its :data:`INDEXES`, under an
        advisory lock."""
        s = self._s
        key = int.from_bytes(
            hashlib.blake2b(f"surestep:{self.schema}".encode(), digest_size=8).digest(),
            "big",
            signed=True,
        )
        try:
            async with pool.acquire() as conn:
                try:  # the common case: already migrated, no lock needed
                    if await conn.fetchval(
                        f"SELECT max(version) FROM {s}.schema_version"
                    ) == SCHEMA_VERSION and await conn.fetchval(
                        "SELECT count(*) FROM pg_indexes"
                        " WHERE schemaname = $1 AND indexname = any($2::text[])",
                        self.schema,
                        list(INDEXES),
                    ) == len(INDEXES):
                        return
                except asyncpg.UndefinedTableError:
                    pass
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
                    await conn.execute(
                        f"CREATE SCHEMA IF NOT EXISTS {s};"
                        f"CREATE TABLE IF NOT EXISTS {s}.schema_version ("
                        " version integer PRIMARY KEY,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    current = await conn.fetchval(
                        f"SELECT coalesce(max(version), 0) FROM {s}.schema_version"
                    )
                    if current > SCHEMA_VERSION:
                        raise StoreError(
                            f"the store at {self.url} (schema {self.schema}) has schema version "
                            f"{current}, newer than this release of surestep knows "
                            f"({SCHEMA_VERSION}); upgrade surestep"
                        )
                    for version, sql in MIGRATIONS:
                        if version > current:
                            await conn.execute(sql.format(s=s))
                            await conn.execute(
                                f"INSERT INTO {s}.schema_version (version) VALUES ($1)", version
                            )
                            log.info(
                                "store %s: schema %s migrated to version %d",
                                self.url,
                                self.schema,
                                version,
                            )
                    await conn.execute(RETENTION_TABLES.format(s=s))
                    for sql in INDEXES.values():
                        await conn.execute(sql.format(s=s))
        except SurestepError:
            raise
        except _DRIVER_ERRORS as exc:
            raise self._error(exc, f"cannot create or migrate schema {self.schema!r}") from exc

    # -- LISTEN/NOTIFY

    async def _listen(self) -> Any:
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, server_settings=self._settings
            )
        except _DRIVER_ERRORS as exc:
            raise self._error(exc, "cannot connect (listener)") from exc
        try:
            await conn.add_listener(self._channel, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_listener_lost)
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._changed.set()

    def _on_listener_lost(self, conn: Any) -> None:
        if self._closing or conn is not self._listener:
            return
        log.warning("store %s: lost the LISTEN connection; reconnecting", self.url)
        self._listener = None
        self._changed.set()  # changes may be missed while it is down: waiters re-check
        if self._relisten is None:
            self._relisten = asyncio.get_running_loop().create_task(self._reconnect_listener())

    async def _reconnect_listener(self) -> None:
        delay = 0.05
        try:
            while not self._closing:
                try:
                    self._listener = await self._listen()
                except StoreError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                log.info("store %s: LISTEN connection re-established", self.url)
                self._changed.set()  # what changed while it was down
                return
        finally:
            self._relisten = None

    async def wait_changed(self, timeout: float) -> None:
        """Return after a NOTIFY from any process (also one received since the
        last call returned), or after ``timeout`` seconds."""
        self._pool_or_raise()
        await wait_set(self._changed, timeout)

    # -- statements

    def _pool_or_raise(self) -> Any:
        if self._pool is None:
            raise StoreError(f"the store {self.url} is closed (or was never opened)")
        return self._pool

    def _error(self, exc: BaseException, what: str) -> StoreError:
        return StoreError(f"{what}: PostgreSQL store {self.url}: {type(exc).__name__}: {exc}")

    async def _existing(self, run_ids: set[str], what: str) -> set[str]:
        """Which of ``run_ids`` the store has (a refused write: lease lost, or no run)."""
        if not run_ids:
            return set()
        found = await self._fetch(
            f"SELECT run_id FROM {self._s}.runs WHERE run_id = ANY($1::text[])",
            list(run_ids),
            what=what,
        )
        return {r[0] for r in found}

    def _refusal(self, run_id: str, fence: int, exists: set[str]) -> BaseException:
        if run_id in exists:
            return LeaseLostError(run_id, fence)
        return RunNotFoundError(f"no run {run_id} in {self.url}")

    async def _fetch(self, sql: str, *args: Any, what: str, retry: bool = True) -> list[Any]:
        """Run one statement on a pooled connection. A connection the server
        dropped (restart, failover) is replaced and the statement sent once more
        when ``retry``: every statement passed with it is idempotent."""
        pool = self._pool_or_raise()
        for attempt in (0, 1):
            try:
                rows: list[Any] = await pool.fetch(sql, *args)
                return rows
            except SurestepError:
                raise
            except _CONNECTION_LOST as exc:
                if attempt or not retry:
                    raise self._error(exc, what) from exc
                log.info("store %s: connection lost (%s); retrying once", self.url, exc)
            except _DRIVER_ERRORS as exc:
                raise self._error(exc, what) from exc
        raise AssertionError("unreachable")

    async def _transaction(self, body: Callable[[Any], Awaitable[T]], what: str) -> T:
        """Run ``body(connection)`` in one transaction on a pooled connection."""
        pool = self._pool_or_raise()
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await body(conn)
        except SurestepError:
            raise
        except _DRIVER_ERRORS as exc:
            raise self._error(exc, what) from exc

    def _notifying(self, sql: str, channel_param: int) -> str:
        """``sql`` (a statement returning ``run_id``), with a NOTIFY per row it
        returns, in the same statement and so in the same transaction."""
        return f"WITH i AS ({sql}) SELECT i.*, pg_notify(${channel_param}, 'changed') FROM i"

    async def _dead_owners(self) -> list[str]:
        """Owners on this host holding unexpired leases whose process is gone."""
        rows = await self._fetch(
            f"SELECT DISTINCT r.owner FROM {self._s}.runs r "
            f"WHERE r.owner IS NOT NULL AND {_R_UNFINISHED} "
            "AND r.owner >= $1 AND r.owner < $2 AND r.lease_until > now()",
            *self._host_prefix,
            what="claim",
        )
        dead = []
        for (text,) in rows:
            owner = Owner.parse(text)
            if owner is not None and owner.is_dead():
                dead.append(text)
        return dead

    async def _fence_of(self, run_id: str) -> int:
        """The run's current fence, or RunNotFoundError."""
        rows = await self._fetch(
            f"SELECT r.fence FROM {self._s}.runs r WHERE r.run_id = $1", run_id, what="read"
        )
        if not rows:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        fence: int = rows[0][0]
        return fence

    async def _lock_fenced(self, conn: Any, run_id: str, fence: int, mode: str) -> None:
        """Lock the run's row (``FOR mode``) and check its fence."""
        row = await conn.fetchrow(
            f"SELECT fence FROM {self._s}.runs WHERE run_id = $1 FOR {mode}", run_id
        )
        if row is None:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        if row[0] != fence:
            raise LeaseLostError(run_id, fence)

    # -- runs and leases

    async def _insert(
        self, run: RunInfo, owner: str | None, lease_s: float, follow: bool = False
    ) -> RunInfo | None:
        """Insert ``run`` (claimed for ``owner`` when given; see ``create_run`` for
        ``follow``), batched with the inserts of the same moment; the row as stored,
        or ``None`` when a run with that id exists."""
        _claimed_for(run, owner)
        stored: RunInfo | None = await self._creates.submit((run, owner, lease_s, follow))
        return stored

    async def _write_creates(self, batch: list[_Create]) -> list[RunInfo | None]:
        runs = [c[0] for c in batch]
        rows = await self._fetch(
            self._sql_create, *self._create_args(batch), what="create run", retry=False
        )
        stored = {rec[0]: _run_of(rec) for rec in rows}
        return [stored.get(r.run_id) for r in runs]

    def _create_args(self, batch: list[_Create]) -> list[Any]:
        """The parameters of ``_sql_create`` for ``batch``."""
        runs = [c[0] for c in batch]
        return [
            [r.run_id for r in runs],
            [r.workflow for r in runs],
            [r.version for r in runs],
            [_json(r.args) for r in runs],
            [_json(r.kwargs) for r in runs],
            [r.status for r in runs],
            [r.session_id for r in runs],
            [r.user_id for r in runs],
            [r.created_at for r in runs],
            [r.attempt for r in runs],
            [None if r.result is None else _json(r.result) for r in runs],
            [None if r.error is None else _json(r.error) for r in runs],
            [r.parent_id for r in runs],
            [r.wake_at for r in runs],
            [r.waiting_for for r in runs],
            [c[1] for c in batch],
            [c[2] for c in batch],
            [r.fence for r in runs],
            self._channel,
            [c[3] for c in batch],
        ]

    async def create_run(
        self,
        run: RunInfo,
        owner: str | None,
        lease_s: float,
        follow_deployment: bool = False,
        idempotency_key: str | None = None,
    ) -> int:
        if idempotency_key is not None:
            return await self._create_keyed(run, owner, lease_s, follow_deployment, idempotency_key)
        stored = await self._insert(run, owner, lease_s, follow_deployment)
        if stored is None:
            raise StoreError(
                f"create run {run.run_id}: a run with that id exists already in {self.url}"
            )
        for name in CREATE_FIELDS:
            setattr(run, name, getattr(stored, name))
        return run.fence

    async def _create_keyed(
        self, run: RunInfo, owner: str | None, lease_s: float, follow: bool, key: str
    ) -> int:
        """``create_run`` with an idempotency key: the key's row and the run's in one
        transaction (``_keyed_insert``)."""
        proposed = _claimed_for(RunInfo.from_dict(run.to_dict()), owner)

        async def body(conn: Any) -> RunInfo:
            return await self._keyed_insert(conn, proposed, owner, lease_s, follow, key)

        stored = await self._transaction(body, f"create run {run.run_id}")
        if stored.run_id == run.run_id:
            for name in CREATE_FIELDS:
                setattr(run, name, getattr(stored, name))
        else:
            vars(run).update(vars(stored))
        return run.fence

    async def _keyed_insert(
        self,
        conn: Any,
        run: RunInfo,
        owner: str | None,
        lease_s: float,
        follow: bool,
        key: str,
    ) -> RunInfo:
        """Insert ``run`` (as ``_sql_create`` does) with ``key``, in the caller's
        transaction; the run ``key`` created instead, when it names one. A concurrent
        insert with the same key waits on the key's row (its primary key) and then
        finds the run this one made."""
        s = self._s
        taken = await conn.fetchval(
            f"INSERT INTO {s}.idempotency_keys (key, run_id) VALUES ($1, $2) "
            "ON CONFLICT (key) DO NOTHING RETURNING run_id",
            key,
            run.run_id,
        )
        if taken is None:
            existing = await conn.fetch(
                f"SELECT {_COLS} FROM {s}.runs r JOIN {s}.idempotency_keys k "
                "ON k.run_id = r.run_id WHERE k.key = $1",
                key,
            )
            if not existing:
                raise StoreError(f"idempotency key {key!r} names no run in {self.url}")
            return _run_of(existing[0])
        rows = await conn.fetch(
            self._sql_create, *self._create_args([(run, owner, lease_s, follow)])
        )
        if not rows:
            raise StoreError(
                f"create run {run.run_id}: a run with that id exists already in {self.url}"
            )
        return _run_of(rows[0])

    async def create_child(self, run: RunInfo, owner: str, lease_s: float) -> RunInfo:
        child = RunInfo.from_dict(run.to_dict())
        stored = await self._insert(child, owner, lease_s)
        return stored if stored is not None else await self.get_run(run.run_id)

    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunInfo | None:
        s = self._s
        sql = f"""UPDATE {s}.runs r SET {self._sql_take}
            WHERE r.run_id = $1 AND {_R_UNFINISHED} AND {_R_DUE}
              AND (r.owner IS NULL OR r.lease_until <= now() OR r.owner = ANY($4::text[]))
            RETURNING {_COLS}"""
        rows = await self._fetch(sql, run_id, owner, lease_s, [], what="claim", retry=False)
        if rows:
            return _run_of(rows[0])
        # Missing, finished, not due, or held (perhaps by a dead process of this host).
        held = await self._fetch(
            f"SELECT r.owner FROM {s}.runs r "
            f"WHERE r.run_id = $1 AND {_R_UNFINISHED} AND {_R_DUE} AND r.lease_until > now()",
            run_id,
            what="claim",
        )
        if not held:
            await self._fence_of(run_id)  # RunNotFoundError if missing
            return None
        holder = Owner.parse(held[0][0])
        if holder is None or not holder.is_dead():
            return None
        rows = await self._fetch(
            sql, run_id, owner, lease_s, [held[0][0]], what="claim", retry=False
        )
        return _run_of(rows[0]) if rows else None

    async def claim_available(
        self,
        owner: str,
        lease_s: float,
        limit: int,
        workflows: ServedVersions,
        due_only: bool = False,
    ) -> list[RunInfo]:
        if limit <= 0 or not workflows:
            return []
        served = [
            (name, version)
            for name, versions in versions_by_workflow(workflows).items()
            for version in sorted(versions)
        ]
        dead = await self._dead_owners()
        s = self._s
        free = "(r.owner IS NULL OR r.lease_until <= now() OR r.owner = ANY($5::text[]))"
        served_here = "(r.workflow, r.version) IN (SELECT * FROM unnest($1::text[], $6::text[]))"
        due = f"""(SELECT r.run_id FROM {s}.runs r
            WHERE r.status = '{WAITING}' AND r.wake_at <= now()
              AND {served_here} AND {free}
            ORDER BY r.wake_at LIMIT $4 FOR UPDATE SKIP LOCKED)"""
        active = f"""(SELECT r.run_id FROM {s}.runs r
            WHERE {_R_ACTIVE} AND {served_here} AND {free}
            ORDER BY r.run_id LIMIT $4 FOR UPDATE SKIP LOCKED)"""
        # Due timers first, then pending and abandoned runs up to the limit.
        if due_only:
            picked = f"picked AS {due}"
        else:
            active = active.replace("LIMIT $4", "LIMIT (SELECT $4 - count(*) FROM due)")
            picked = f"due AS {due}, active AS {active}, "
            picked += "picked AS (SELECT run_id FROM due UNION ALL SELECT run_id FROM active)"
        rows = await self._fetch(
            f"""WITH {picked}
                UPDATE {s}.runs r SET {self._sql_take}
                FROM picked WHERE r.run_id = picked.run_id
                RETURNING {_COLS}""",
            [w for w, _ in served],
            owner,
            lease_s,
            limit,
            dead,
            [v for _, v in served],
            what="claim",
            retry=False,
        )
        return sorted((_run_of(r) for r in rows), key=lambda run: run.run_id)

    async def suspend(
        self, run_id: str, fence: int, wake_at: float | None, event: str | None = None
    ) -> None:
        async def body(conn: Any) -> None:
            # Lock first, read after: an event sent concurrently either committed
            # before this lock (and the EXISTS below sees it) or waits for this
            # transaction (and then finds the run waiting for it).
            await self._lock_fenced(conn, run_id, fence, "NO KEY UPDATE")
            await self._suspend(conn, run_id, wake_at, event)

        await self._transaction(body, f"suspend run {run_id}")

    async def _suspend(
        self, conn: Any, run_id: str, wake_at: float | None, event: str | None
    ) -> None:
        s = self._s
        await conn.execute(
            self._notifying(
                f"""UPDATE {s}.runs r SET status = '{WAITING}', owner = NULL,
                    lease_until = NULL, updated_at = now(), waiting_for = $2::text,
                    wake_at = CASE WHEN $2::text IS NOT NULL AND EXISTS (
                            SELECT 1 FROM {s}.events e
                            WHERE e.run_id = $1 AND e.name = $2::text)
                        THEN now() ELSE to_timestamp($3::float8) END
                WHERE r.run_id = $1 RETURNING r.run_id""",
                4,
            ),
            run_id,
            event,
            wake_at,
            self._channel,
        )

    async def record_attempt(
        self,
        run_id: str,
        fence: int,
        seq: int,
        attempt: int,
        body: bytes,
        retry: dict[str, Any],
        wake_at: float | None,
    ) -> None:
        s = self._s

        async def write(conn: Any) -> None:
            await self._lock_fenced(conn, run_id, fence, "NO KEY UPDATE")
            await conn.execute(
                f"""INSERT INTO {s}.attempts (run_id, seq, attempt, body) VALUES ($1, $2, $3, $4)
                    ON CONFLICT (run_id, seq, attempt) DO UPDATE SET body = EXCLUDED.body""",
                run_id,
                seq,
                attempt,
                bytes(body),
            )
            await conn.execute(
                f"UPDATE {s}.runs SET retry = $2::json WHERE run_id = $1", run_id, _json(retry)
            )
            if wake_at is not None:
                await self._suspend(conn, run_id, wake_at, None)

        await self._transaction(write, f"record attempt {attempt} of step {seq} of run {run_id}")

    async def retry_done(self, run_id: str, fence: int, seq: int) -> None:
        s = self._s

        async def write(conn: Any) -> None:
            await self._lock_fenced(conn, run_id, fence, "NO KEY UPDATE")
            await conn.execute(
                f"UPDATE {s}.runs SET retry = NULL "
                "WHERE run_id = $1 AND (retry->>'seq')::integer = $2",
                run_id,
                seq,
            )

        await self._transaction(write, f"end the retries of step {seq} of run {run_id}")

    async def attempts(self, run_id: str) -> list[bytes]:
        rows = await self._fetch(
            f"SELECT body FROM {self._s}.attempts WHERE run_id = $1 AND {self._not_hidden} "
            "ORDER BY seq, attempt",
            run_id,
            what="read attempts",
        )
        return [bytes(r[0]) for r in rows]

    async def next_wake(self, workflows: ServedVersions) -> float | None:
        if not workflows:
            return None
        served = [
            (name, version)
            for name, versions in versions_by_workflow(workflows).items()
            for version in sorted(versions)
        ]
        rows = await self._fetch(
            f"SELECT extract(epoch FROM min(r.wake_at))::float8 FROM {self._s}.runs r "
            f"WHERE r.status = '{WAITING}' AND (r.workflow, r.version) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            [w for w, _ in served],
            [v for _, v in served],
            what="read timers",
        )
        when: float | None = rows[0][0]
        return when

    async def renew(
        self, leases: Sequence[tuple[str, int]], owner: str, lease_s: float
    ) -> list[str]:
        if not leases:
            return []
        s = self._s
        # Rows are locked in run_id order, as the append batch locks them: no deadlock.
        rows = await self._fetch(
            f"""WITH held AS (
                    SELECT r.run_id FROM {s}.runs r
                    JOIN unnest($1::text[], $2::bigint[]) AS x(run_id, fence)
                      ON r.run_id = x.run_id AND r.fence = x.fence
                    WHERE r.owner = $3 AND {_R_UNFINISHED}
                    ORDER BY r.run_id
                    FOR NO KEY UPDATE OF r)
                UPDATE {s}.runs r SET lease_until = now() + make_interval(secs => $4)
                FROM held WHERE r.run_id = held.run_id
                RETURNING r.run_id""",
            [run_id for run_id, _ in leases],
            [fence for _, fence in leases],
            owner,
            lease_s,
            what="renew",
        )
        kept = {r[0] for r in rows}
        return [run_id for run_id, _ in leases if run_id not in kept]

    async def _fenced_update(
        self, run_id: str, fence: int, assignments: str, *args: Any, what: str
    ) -> None:
        """``UPDATE ... SET assignments`` with a NOTIFY if the fence matches;
        LeaseLostError or RunNotFoundError if not. ``$1`` is the run, ``$2`` the
        fence, ``$3`` the channel; ``args`` are ``$4`` on."""
        rows = await self._fetch(
            self._notifying(
                f"UPDATE {self._s}.runs r SET {assignments} "
                "WHERE r.run_id = $1 AND r.fence = $2 RETURNING r.run_id",
                3,
            ),
            run_id,
            fence,
            self._channel,
            *args,
            what=what,
        )
        if not rows and await self._fence_of(run_id) != fence:
            raise LeaseLostError(run_id, fence)

    async def release(self, run_id: str, fence: int) -> None:
        # A finished run stays finished (a release racing its own finish changes nothing).
        await self._fenced_update(
            run_id,
            fence,
            "owner = NULL, lease_until = NULL, "
            f"status = CASE WHEN {_R_UNFINISHED} THEN '{PENDING}' ELSE r.status END",
            what=f"release run {run_id}",
        )

    async def finish(
        self,
        run_id: str,
        fence: int,
        status: str,
        result: Any,
        error: dict[str, Any] | None,
        keep: int = KEEP_DEFAULT,
    ) -> None:
        assert status in FINISHED, status
        await self._finishes.submit(
            (
                run_id,
                fence,
                status,
                None if result is None else _json(result),
                None if error is None else _json(error),
                keep,
            )
        )

    async def _write_finishes(self, batch: list[_Finish]) -> list[BaseException | None]:
        rows = await self._fetch(
            self._sql_finish,
            [f[0] for f in batch],
            [f[1] for f in batch],
            [f[2] for f in batch],
            [f[3] for f in batch],
            [f[4] for f in batch],
            self._channel,
            [f[5] for f in batch],
            what="finish run",
        )
        done = {r[0] for r in rows}
        exists = await self._existing({f[0] for f in batch if f[0] not in done}, "finish run")
        return [
            None if run_id in done else self._refusal(run_id, fence, exists)
            for run_id, fence, *_ in batch
        ]

    async def cancel(self, run_id: str, keep: int = KEEP_DEFAULT) -> bool:
        s = self._s
        rows = await self._fetch(
            f"""WITH c AS (
                UPDATE {s}.runs r SET status = '{CANCELLED}', fence = r.fence + 1,
                    owner = NULL, lease_until = NULL, updated_at = now()
                WHERE r.run_id = $1 AND {_R_UNFINISHED} RETURNING r.run_id),
            k AS (
                INSERT INTO {s}.retention (run_id, keep, finished_at)
                SELECT c.run_id, $3, now() FROM c
                ON CONFLICT (run_id) DO UPDATE
                    SET keep = EXCLUDED.keep, finished_at = EXCLUDED.finished_at)
            SELECT c.run_id, pg_notify($2, 'changed') FROM c""",
            run_id,
            self._channel,
            keep,
            what=f"cancel run {run_id}",
            retry=False,
        )
        if rows:
            return True
        await self._fence_of(run_id)  # RunNotFoundError if missing
        return False

    async def get_run(self, run_id: str) -> RunInfo:
        rows = await self._fetch(
            f"SELECT {_COLS}, p.report FROM {self._s}.runs r {self._with_progress} "
            "WHERE r.run_id = $1",
            run_id,
            what="read",
        )
        if not rows:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        return _run_with_progress(rows[0])

    @property
    def _with_progress(self) -> str:
        return f"LEFT JOIN {self._s}.progress p ON p.run_id = r.run_id"

    async def set_progress(self, run_id: str, fence: int, report: bytes) -> None:
        rows = await self._fetch(
            f"INSERT INTO {self._s}.progress (run_id, report) "
            f"SELECT r.run_id, $2 FROM {self._s}.runs r WHERE r.run_id = $1 AND r.fence = $3 "
            "ON CONFLICT (run_id) DO UPDATE SET report = excluded.report RETURNING 1",
            run_id,
            report,
            fence,
            what="store progress",
        )
        if not rows:
            await self._fence_of(run_id)  # RunNotFoundError if missing
            raise LeaseLostError(run_id, fence)

    async def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[RunInfo]:
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            run_key(before)  # RunNotFoundError for anything that is not a run id
            args.append(before)
            where.append(f"r.run_id < ${len(args)}")
        if status is not None:
            args.append(status)
            where.append(f"r.status = ${len(args)}")
        if workflow is not None:
            args.append(workflow)
            where.append(f"r.workflow = ${len(args)}")
        args.append(limit)
        sql = (
            f"SELECT {_COLS}, p.report FROM {self._s}.runs r {self._with_progress}"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY r.run_id DESC LIMIT ${len(args)}::bigint"
        )
        return [_run_with_progress(r) for r in await self._fetch(sql, *args, what="list runs")]

    # -- live engines

    async def announce(self, owner: str, served: ServedVersions, lease_s: float) -> None:
        versions = {name: sorted(v) for name, v in versions_by_workflow(served).items()}
        await self._fetch(
            f"""INSERT INTO {self._s}.engines (owner, served, alive_until)
                VALUES ($1, $2::jsonb, now() + make_interval(secs => $3))
                ON CONFLICT (owner) DO UPDATE
                SET served = excluded.served, alive_until = excluded.alive_until""",
            owner,
            orjson.dumps(versions).decode(),
            lease_s,
            what="announce an engine",
        )

    async def withdraw(self, owner: str) -> None:
        await self._fetch(
            f"DELETE FROM {self._s}.engines WHERE owner = $1", owner, what="withdraw an engine"
        )

    async def live_engines(self) -> list[LiveEngine]:
        rows = await self._fetch(
            f"""SELECT owner, served::text, extract(epoch FROM alive_until)::float8
                FROM {self._s}.engines WHERE alive_until > now() ORDER BY owner""",
            what="read the live engines",
        )
        live = []
        for owner, served, until in rows:
            parsed = Owner.parse(owner)
            if not (parsed is not None and parsed.is_dead()):
                live.append(LiveEngine(owner, orjson.loads(served), until))
        return live

    # -- deployments

    async def record_deployment(
        self, workflow: str, version: str, digest: str, retention: int | None = None
    ) -> None:
        await self._fetch(
            f"INSERT INTO {self._s}.deployments (workflow, version, digest, retention) "
            "VALUES ($1, $2, $3, $4)",
            workflow,
            version,
            digest,
            retention,
            what="record deployment",
            retry=False,
        )

    async def deployments(self) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT workflow, version, digest, extract(epoch FROM time)::float8, retention "
            f"FROM {self._s}.deployments ORDER BY id",
            what="read deployments",
        )
        return [
            {"workflow": r[0], "version": r[1], "digest": r[2], "time": r[3], "retention": r[4]}
            for r in rows
        ]

    # -- schedules

    _SCHEDULE_COLS = (
        "workflow, version, cron, every, timezone, catchup, paused, last_tick, since, "
        "revision, updated_at"
    )

    def _deployed_sql(self, param: int) -> str:
        """The last deployed version of the workflow named by ``$param``."""
        return (
            f"(SELECT d.version FROM {self._s}.deployments d "
            f"WHERE d.workflow = ${param} ORDER BY d.id DESC LIMIT 1)"
        )

    async def _locked_schedule(self, conn: Any, workflow: str) -> ScheduleInfo | None:
        row = await conn.fetchrow(
            f"SELECT {self._SCHEDULE_COLS} FROM {self._s}.schedules WHERE workflow = $1 FOR UPDATE",
            workflow,
        )
        return None if row is None else ScheduleInfo(*row)

    async def _write_schedule(self, conn: Any, schedule: ScheduleInfo) -> None:
        values = [getattr(schedule, name) for name in self._SCHEDULE_COLS.split(", ")]
        await conn.execute(
            f"INSERT INTO {self._s}.schedules ({self._SCHEDULE_COLS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (workflow) DO UPDATE SET (" + self._SCHEDULE_COLS + ") = "
            "ROW(EXCLUDED." + ", EXCLUDED.".join(self._SCHEDULE_COLS.split(", ")) + ")",
            *values,
        )

    async def _notify(self, conn: Any) -> None:
        await conn.execute("SELECT pg_notify($1, 'changed')", self._channel)

    async def register_schedule(
        self, workflow: str, version: str, schedule: ScheduleInfo | None, now: float
    ) -> ScheduleInfo | None:
        s = self._s

        async def body(conn: Any) -> ScheduleInfo | None:
            # Registrations of one workflow queue on this lock, present row or not.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"{self.schema}.schedules:{workflow}",
            )
            stored = await self._locked_schedule(conn, workflow)
            deployed = await conn.fetchval(f"SELECT {self._deployed_sql(1)}", workflow)
            new, changed = registered_schedule(stored, deployed, version, schedule, now)
            if changed:
                if new is None:
                    await conn.execute(f"DELETE FROM {s}.schedules WHERE workflow = $1", workflow)
                else:
                    await self._write_schedule(conn, new)
                await self._notify(conn)
            return new

        return await self._transaction(body, f"register the schedule of {workflow!r}")

    async def schedules(self) -> list[ScheduleInfo]:
        rows = await self._fetch(
            f"SELECT {self._SCHEDULE_COLS} FROM {self._s}.schedules ORDER BY workflow",
            what="read schedules",
        )
        return [ScheduleInfo(*row) for row in rows]

    async def pause_schedule(self, workflow: str, paused: bool, now: float) -> ScheduleInfo:
        async def body(conn: Any) -> ScheduleInfo:
            stored = await self._locked_schedule(conn, workflow)
            if stored is None:
                raise ScheduleNotFoundError(f"no schedule for workflow {workflow!r} in {self.url}")
            if stored.pause(paused, now):
                await self._write_schedule(conn, stored)
                await self._notify(conn)
            return stored

        return await self._transaction(body, f"pause the schedule of {workflow!r}")

    async def fire_schedule(
        self, workflow: str, revision: int, tick: float, run: RunInfo | None, key: str
    ) -> RunInfo | None:
        async def body(conn: Any) -> RunInfo | None:
            stored = await self._locked_schedule(conn, workflow)
            if stored is None or not stored.fires(revision, tick):
                return None
            await conn.execute(
                f"UPDATE {self._s}.schedules SET last_tick = $2 WHERE workflow = $1",
                workflow,
                tick,
            )
            if run is None:
                return None
            return await self._keyed_insert(conn, run, None, 0.0, True, key)

        return await self._transaction(body, f"fire the schedule of {workflow!r}")

    async def register_subscriptions(
        self, workflow: str, version: str, events: Sequence[str]
    ) -> list[str]:
        s = self._s
        wanted = sorted(set(events))

        async def body(conn: Any) -> list[str]:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"{self.schema}.subscriptions:{workflow}",
            )
            rows = await conn.fetch(
                f"SELECT event, version FROM {s}.subscriptions WHERE workflow = $1 ORDER BY event",
                workflow,
            )
            names = [r[0] for r in rows]
            held = rows[0][1] if rows else None
            deployed = await conn.fetchval(f"SELECT {self._deployed_sql(1)}", workflow)
            if keep_registration(held, deployed, version):
                return names
            if names == wanted and all(r[1] == version for r in rows):
                return names
            await conn.execute(f"DELETE FROM {s}.subscriptions WHERE workflow = $1", workflow)
            await conn.executemany(
                f"INSERT INTO {s}.subscriptions (event, workflow, version) VALUES ($1, $2, $3)",
                [(name, workflow, version) for name in wanted],
            )
            await self._notify(conn)
            return wanted

        return await self._transaction(body, f"register the event triggers of {workflow!r}")

    async def subscriptions(self) -> list[tuple[str, str, str]]:
        rows = await self._fetch(
            f"SELECT event, workflow, version FROM {self._s}.subscriptions "
            "ORDER BY event, workflow",
            what="read subscriptions",
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def emit_event(
        self, name: str, kwargs: dict[str, Any], keys: Callable[[str], str]
    ) -> list[RunInfo]:
        async def body(conn: Any) -> list[RunInfo]:
            subscribed = await conn.fetch(
                f"SELECT workflow, version FROM {self._s}.subscriptions WHERE event = $1 "
                "ORDER BY workflow FOR SHARE",
                name,
            )
            started = []
            for workflow, version in subscribed:
                run = RunInfo(new_run_id(), workflow, version, args=[], kwargs=kwargs)
                started.append(await self._keyed_insert(conn, run, None, 0.0, True, keys(workflow)))
            return started

        return await self._transaction(body, f"emit event {name!r}")

    async def idempotency_keys(self, prefix: str) -> dict[str, str]:
        rows = await self._fetch(
            f"SELECT key, run_id FROM {self._s}.idempotency_keys "
            "WHERE key >= $1 AND left(key, length($1)) = $1 ORDER BY key",
            prefix,
            what="read idempotency keys",
        )
        return {r[0]: r[1] for r in rows}

    # -- events

    async def send_event(self, run_id: str, name: str, payload: bytes) -> None:
        s = self._s

        async def body(conn: Any) -> None:
            # Lock first (see suspend): the run is waiting for this event or will see it.
            row = await conn.fetchrow(
                f"SELECT status FROM {s}.runs WHERE run_id = $1 FOR NO KEY UPDATE", run_id
            )
            if row is None:
                raise RunNotFoundError(f"no run {run_id} in {self.url}")
            if row[0] in FINISHED:
                raise RunFinishedError(run_id, row[0])
            await conn.execute(
                f"""WITH sent AS (
                        INSERT INTO {s}.events (run_id, name, payload) VALUES ($1, $2, $3)),
                    woken AS (
                        UPDATE {s}.runs r SET wake_at = now()
                        WHERE r.run_id = $1 AND r.status = '{WAITING}' AND r.waiting_for = $2)
                    SELECT pg_notify($4, 'changed')""",
                run_id,
                name,
                bytes(payload),
                self._channel,
            )

        await self._transaction(body, f"send event {name!r} to run {run_id}")

    async def take_event(
        self, run_id: str, fence: int, name: str, seq: int, record: Callable[[bytes], bytes]
    ) -> bytes | None:
        s = self._s

        async def body(conn: Any) -> bytes | None:
            await self._lock_fenced(conn, run_id, fence, "SHARE")
            row = await conn.fetchrow(
                f"""DELETE FROM {s}.events WHERE id = (
                        SELECT id FROM {s}.events WHERE run_id = $1 AND name = $2
                        ORDER BY id LIMIT 1 FOR UPDATE)
                    RETURNING payload""",
                run_id,
                name,
            )
            if row is None:
                return None
            payload = bytes(row[0])
            await self._journal_one(conn, run_id, seq, record(payload))
            return payload

        return await self._transaction(body, f"take event {name!r} of run {run_id}")

    async def _journal_one(self, conn: Any, run_id: str, seq: int, record: bytes) -> None:
        await conn.execute(
            f"""INSERT INTO {self._s}.journal (run_id, seq, record) VALUES ($1, $2, $3)
                ON CONFLICT (run_id, seq) DO UPDATE SET record = EXCLUDED.record""",
            run_id,
            seq,
            bytes(record),
        )

    # -- shared state

    async def state_read(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        record: Callable[[bytes | None, int], bytes],
    ) -> tuple[bytes | None, int]:
        async def body(conn: Any) -> tuple[bytes | None, int]:
            await self._lock_fenced(conn, run_id, fence, "SHARE")
            row = await conn.fetchrow(
                f"SELECT value, version FROM {self._s}.state WHERE scope = $1 AND key = $2",
                scope,
                key,
            )
            value, version = (None, 0) if row is None else (row[0], row[1])
            value = None if value is None else bytes(value)
            await self._journal_one(conn, run_id, seq, record(value, version))
            return value, version

        return await self._transaction(body, f"read state {scope}/{key}")

    async def state_write(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        value: bytes | None,
        expect: int | None,
        record: Callable[[int | None], bytes],
    ) -> int | None:
        s = self._s

        async def body(conn: Any) -> int | None:
            await self._lock_fenced(conn, run_id, fence, "SHARE")
            # A version-0 row with no value is the same as no row; it gives
            # concurrent writers of a new key one row to lock.
            await conn.execute(
                f"""INSERT INTO {s}.state (scope, key, version, value) VALUES ($1, $2, 0, NULL)
                    ON CONFLICT (scope, key) DO NOTHING""",
                scope,
                key,
            )
            version = await conn.fetchval(
                f"SELECT version FROM {s}.state WHERE scope = $1 AND key = $2 FOR UPDATE",
                scope,
                key,
            )
            new: int | None = None
            if expect is None or expect == version:
                new = version + 1
                await conn.execute(
                    f"UPDATE {s}.state SET version = $3, value = $4 WHERE scope = $1 AND key = $2",
                    scope,
                    key,
                    new,
                    None if not value else bytes(value),
                )
            await self._journal_one(conn, run_id, seq, record(new))
            return new

        return await self._transaction(body, f"write state {scope}/{key}")

    async def state_items(self, scope: str) -> dict[str, bytes]:
        rows = await self._fetch(
            f"SELECT key, value FROM {self._s}.state "
            "WHERE scope = $1 AND value IS NOT NULL ORDER BY key",
            scope,
            what="read state",
        )
        return {r[0]: bytes(r[1]) for r in rows}

    # -- logs

    async def append_log(self, run_id: str, position: int, index: int, line: bytes) -> None:
        await self._fetch(
            f"""INSERT INTO {self._s}.logs (run_id, position, idx, line) VALUES ($1, $2, $3, $4)
                ON CONFLICT (run_id, position, idx) DO UPDATE SET line = EXCLUDED.line""",
            run_id,
            position,
            index,
            bytes(line),
            what="append log",
        )

    async def logs(self, run_id: str) -> list[bytes]:
        rows = await self._fetch(
            f"SELECT line FROM {self._s}.logs WHERE run_id = $1 AND {self._not_hidden} "
            "ORDER BY position, idx",
            run_id,
            what="read logs",
        )
        return [r[0] for r in rows]

    # -- journal

    async def append(self, run_id: str, fence: int, seq: int, record: bytes) -> None:
        self._pool_or_raise()
        await self._appends.submit((run_id, seq, bytes(record), fence))

    async def _write_appends(self, batch: list[_Append]) -> list[BaseException | None]:
        rows = await self._fetch(
            self._sql_append,
            [a[0] for a in batch],
            [a[1] for a in batch],
            [a[2] for a in batch],
            [a[3] for a in batch],
            what="append",
        )
        written = {(r[0], r[1]) for r in rows}
        exists = await self._existing(
            {a[0] for a in batch if (a[0], a[1]) not in written}, "append"
        )
        return [
            None if (run_id, seq) in written else self._refusal(run_id, fence, exists)
            for run_id, seq, _, fence in batch
        ]

    async def journal(self, run_id: str) -> list[bytes]:
        rows = await self._fetch(
            f"SELECT record FROM {self._s}.journal WHERE run_id = $1 AND {self._not_hidden} "
            "ORDER BY seq",
            run_id,
            what="read journal",
        )
        return [r[0] for r in rows]

    # -- retention

    async def made_by_previous_release(self) -> bool:
        rows = await self._fetch(
            f"SELECT value->>'made_by' FROM {self._s}.meta WHERE key = 'store'", what="read meta"
        )
        return not rows or rows[0][0] == "surestep 0.2"

    async def _due_roots(
        self, conn: Any, now: float, default_ms: int, cutoff: float | None, most: int
    ) -> list[str]:
        """Finished runs that may go and whose parent is gone or absent, oldest first in
        each policy, at most ``most``: one index range a policy (the policies found by a
        skip scan of the index, not by reading every row)."""
        s = self._s
        keeps = await conn.fetch(
            f"""WITH RECURSIVE p(keep) AS (
                SELECT min(keep) FROM {s}.retention
                UNION ALL
                SELECT (SELECT min(k.keep) FROM {s}.retention k WHERE k.keep > p.keep)
                FROM p WHERE p.keep IS NOT NULL)
            SELECT keep FROM p WHERE keep IS NOT NULL"""
        )
        found: list[str] = []
        for (keep,) in keeps:
            if cutoff is not None:
                before = cutoff
            else:
                ms = default_ms if keep == KEEP_DEFAULT else keep
                if ms < 0:
                    continue  # kept for ever
                before = now - ms / 1000
            rows = await conn.fetch(
                f"""SELECT k.run_id FROM {s}.retention k JOIN {s}.runs r ON r.run_id = k.run_id
                WHERE k.keep = $1 AND k.finished_at <= to_timestamp($2)
                    AND (r.parent_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {s}.runs p WHERE p.run_id = r.parent_id))
                ORDER BY k.finished_at LIMIT $3""",
                keep,
                before,
                most - len(found),
            )
            found += [r[0] for r in rows]
            if len(found) >= most:
                break
        return found

    async def _tree(
        self, conn: Any, root: str, now: float, default_ms: int, cutoff: float | None
    ) -> tuple[list[dict[str, Any]], tuple[int, float] | None]:
        """``root`` and every run it started (recursively), described, when all may go;
        else nothing, and the policy and finish time of the descendant that may go
        last (``None`` when one is unfinished: look again later)."""
        s = self._s
        rows = await conn.fetch(
            f"""WITH RECURSIVE tree(run_id, depth) AS (
                SELECT run_id, 0 FROM {s}.runs WHERE run_id = $1
                UNION ALL
                SELECT c.run_id, t.depth + 1 FROM {s}.runs c JOIN tree t ON c.parent_id = t.run_id)
            SELECT t.run_id, t.depth, r.workflow, r.status,
                extract(epoch FROM r.updated_at)::float8, k.keep,
                extract(epoch FROM k.finished_at)::float8
            FROM tree t JOIN {s}.runs r ON r.run_id = t.run_id
            LEFT JOIN {s}.retention k ON k.run_id = t.run_id
            ORDER BY t.depth, t.run_id""",
            root,
        )
        now_ms = round(now * 1000)
        cutoff_ms = None if cutoff is None else round(cutoff * 1000)
        later: tuple[int, float] | None = None
        last_due = -float("inf")
        described = []
        for run_id, depth, workflow, status, updated, keep, finished in rows:
            if status not in FINISHED:
                return [], None
            if depth:
                keep = KEEP_DEFAULT if keep is None else keep
                finished = updated if finished is None else finished
                if not retention_due(keep, round(finished * 1000), now_ms, default_ms, cutoff_ms):
                    ms = default_ms if keep == KEEP_DEFAULT else keep
                    due = float("inf") if ms < 0 else finished * 1000 + ms
                    if due > last_due:
                        later, last_due = (keep, finished), due
            described.append(
                {
                    "run_id": run_id,
                    "root": root,
                    "workflow": workflow,
                    "status": status,
                    "finished_at": updated,
                }
            )
        return ([], later) if later is not None else (described, None)

    async def expired_runs(
        self, now: float, default_ms: int, cutoff: float | None, limit: int | None
    ) -> list[dict[str, Any]]:
        async def body(conn: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            roots = 0
            for root in await self._due_roots(conn, now, default_ms, cutoff, 1 << 62):
                described, _ = await self._tree(conn, root, now, default_ms, cutoff)
                if described:
                    out += described
                    roots += 1
                    if limit is not None and roots >= limit:
                        break
            return out

        return await self._transaction(body, "list expired runs")

    async def hide_expired(
        self, now: float, default_ms: int, cutoff: float | None, limit: int
    ) -> list[dict[str, Any]]:
        s = self._s

        async def body(conn: Any) -> list[dict[str, Any]]:
            hidden: list[dict[str, Any]] = []
            roots = 0
            for root in await self._due_roots(conn, now, default_ms, cutoff, 4 * limit):
                # The root locked first; one that another purge holds is its to hide (two
                # purges never wait for each other, so they cannot deadlock).
                if not await conn.fetch(
                    f"SELECT 1 FROM {s}.runs WHERE run_id = $1 FOR UPDATE SKIP LOCKED", root
                ):
                    continue
                described, later = await self._tree(conn, root, now, default_ms, cutoff)
                if not described:
                    if later is not None and cutoff is None:  # due with its last descendant
                        await conn.execute(
                            f"UPDATE {s}.retention SET keep = $2, "
                            "finished_at = to_timestamp($3) WHERE run_id = $1",
                            root,
                            *later,
                        )
                    continue
                ids = [d["run_id"] for d in described]
                # Every index of runs by id goes here with the row (records: sweep_hidden).
                await conn.execute(
                    f"""WITH t AS (SELECT unnest($1::text[]) AS run_id),
                    r AS (DELETE FROM {s}.runs WHERE run_id IN (SELECT run_id FROM t)),
                    k AS (DELETE FROM {s}.retention WHERE run_id IN (SELECT run_id FROM t)),
                    p AS (DELETE FROM {s}.progress WHERE run_id IN (SELECT run_id FROM t)),
                    i AS (DELETE FROM {s}.idempotency_keys
                          WHERE run_id IN (SELECT run_id FROM t))
                    INSERT INTO {s}.hidden (run_id) SELECT run_id FROM t
                    ON CONFLICT (run_id) DO NOTHING""",
                    ids,
                )
                hidden += described
                roots += 1
                if roots >= limit:
                    break
            if hidden:
                await conn.execute("SELECT pg_notify($1, 'changed')", self._channel)
            return hidden

        return await self._transaction(body, "hide expired runs")

    async def sweep_hidden(self, limit: int) -> tuple[int, int]:
        s = self._s

        async def body(conn: Any) -> tuple[int, int]:
            deleted = cleared = 0
            for (run_id,) in await conn.fetch(f"SELECT run_id FROM {s}.hidden LIMIT $1", limit):
                for table, key in (
                    ("journal", "seq"),
                    ("logs", "position, idx"),
                    ("events", "id"),
                    ("attempts", "seq, attempt"),
                ):
                    gone = await conn.fetchval(
                        f"""WITH d AS (DELETE FROM {s}.{table} WHERE (run_id, {key}) IN (
                            SELECT run_id, {key} FROM {s}.{table} WHERE run_id = $1 LIMIT $2)
                            RETURNING 1)
                        SELECT count(*) FROM d""",
                        run_id,
                        limit - deleted,
                    )
                    deleted += gone
                    if deleted >= limit:
                        return deleted, cleared
                await conn.execute(f"DELETE FROM {s}.hidden WHERE run_id = $1", run_id)
                cleared += 1
            return deleted, cleared

        return await self._transaction(body, "delete purged records")

    async def stats(self) -> dict[str, Any]:
        s = self._s

        async def body(conn: Any) -> dict[str, Any]:
            sizes = await conn.fetch(
                """SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname""",
                self.schema,
            )
            runs = dict.fromkeys(STATUSES, 0)
            for status, count in await conn.fetch(
                f"SELECT status, count(*) FROM {s}.runs GROUP BY status"
            ):
                runs[status] = count
            oldest = await conn.fetchval(
                f"SELECT extract(epoch FROM min(updated_at))::float8 FROM {s}.runs "
                f"WHERE status IN ({_FINISHED_SQL})"
            )
            hidden = await conn.fetchval(f"SELECT count(*) FROM {s}.hidden")
            tables = {name: size for name, size in sizes}
            return {
                "size": {"total_bytes": sum(tables.values()), "tables": tables},
                "runs": runs,
                "oldest_finished": oldest,
                "hidden": hidden,
            }

        return await self._transaction(body, "read stats")
