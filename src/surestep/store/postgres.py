"""The shared store: one PostgreSQL database, used by workers on many machines.

The driver is asyncpg: the fastest maintained asyncio driver for PostgreSQL.
It speaks the binary protocol (journal records travel as raw ``bytea``, with
no hex or escape encoding), caches prepared statements per connection,
pipelines ``executemany``, has a connection pool, and supports LISTEN/NOTIFY
natively (callbacks on the event loop, no polling).

The schema, its migrations and every statement are in :mod:`surestep.store.pg_sql`.

Leases use the database server's clock (``now()``), never a client's, so
clock skew between worker hosts cannot make two of them hold one run.
``lease_until`` is a ``timestamptz``; :class:`RunInfo` shows it as epoch
seconds of the server's clock. Timers (``wake_at``) are absolute times the
runtime computes, compared with the server's clock as well; ``next_wake``
answers in the server's clock.

Journal appends are fenced and batched: every :meth:`PostgresStore.append`
issued while the previous batch was being committed rides the next batch, which
writes each run's records if its fence matches, holding the run's row ``FOR
SHARE`` (a claim that bumps the fence waits for the append, or the append sees
the new fence). A record whose fence is stale is not written and its caller gets
:class:`~surestep.errors.LeaseLostError`; every caller's future resolves after
the commit (group commit, as the LMDB writer thread does). Finishing runs is
batched the same way, and creating runs by one multi-row INSERT a batch, so that
a thousand runs starting or ending together cost a few round trips, not a
thousand serialized commits.

Two forms of the batched writes and of claims (chosen at open: ``citus``).
Plain PostgreSQL: a batch is ONE statement, which locks its runs' rows in
``run_id`` order, and ``claim_available`` one statement that locks the runs it
claims ``FOR UPDATE SKIP LOCKED``. Citus (the extension in the database), where
no statement may lock the rows of several runs: a batch is one statement a run,
sent as ONE pipeline (asyncpg's ``fetchmany``: one round trip, committed
together) in ``run_id`` order, and a claim reads candidates without locks and
claims each with a statement that checks the claim's conditions again. Lease
renewals take the latter form on both (they are few). Either way every
transaction takes the rows of several runs in ``run_id`` order, or skips those
held, so batches, renewals and claims cannot deadlock one another (see
:mod:`surestep.store.pg_sql`).

Wake-ups: every change another process may wait for (a run created, released,
finished, cancelled, suspended, or sent an event) sends a NOTIFY, as a statement
of its own: in the change's transaction, or right after a change made by one
statement or pipeline; each store instance LISTENs on a dedicated connection,
opened by :meth:`PostgresStore.open`, so it sees every change committed after that.
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
from datetime import datetime, timezone
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
from . import pg_sql as sql
from .base import (
    CREATE_FIELDS,
    FINISHED,
    KEEP_DEFAULT,
    RUNNING,
    STATUSES,
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
# A pooled connection in use is kept, its prepared statements too (one idle for 5
# minutes is still closed: asyncpg's max_inactive_connection_lifetime). asyncpg's
# defaults close a connection after 50,000 queries and drop a cached statement after 5
# minutes: under load every connection was then replaced every minute or two (a new
# server backend, its caches cold, every statement prepared again), which held up the
# batches of that moment and churned the client's heap. The store sends a fixed set of
# statements (pg_sql), so neither a connection's nor the server's memory grows by keeping
# them.
_POOL_OPTIONS: dict[str, Any] = {"max_queries": float("inf"), "max_cached_statement_lifetime": 0}


async def _keep_session(conn: Any) -> None:
    """The pool's reset when a connection is released: nothing to undo. The store changes
    no session state (its settings are startup parameters, its advisory locks end with
    their transaction, it LISTENs on a connection of its own), and asyncpg rolls back a
    transaction left open before this is called. The default reset (``RESET ALL``,
    ``UNLISTEN *``...) costs a round trip at every release: half the pool's throughput."""


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
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
        created_at=rec[8].timestamp(),
        updated_at=rec[9].timestamp(),
        attempt=rec[10],
        result=None if rec[11] is None else orjson.loads(rec[11]),
        error=None if rec[12] is None else orjson.loads(rec[12]),
        parent_id=rec[13],
        wake_at=_epoch(rec[14]),
        waiting_for=rec[15],
        owner=rec[16],
        lease_until=0.0 if rec[17] is None else rec[17].timestamp(),
        fence=rec[18],
        retry=None if rec[19] is None else orjson.loads(rec[19]),
    )


# Before any run finished: where a walk through finish times starts.
_LONG_AGO = datetime(1, 1, 1, tzinfo=timezone.utc)
# Trees of due runs a purge's dry run reads at once.
_TREES_AT_ONCE = 512


def _epoch(at: datetime | None) -> float | None:
    """A ``timestamptz`` as epoch seconds (the store returns times as stored: see
    ``pg_sql.RUN_COLS``)."""
    return None if at is None else at.timestamp()


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """``rows``' columns, as the arrays a statement over a batch takes."""
    return [list(column) for column in zip(*rows, strict=True)]


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
    """A RunInfo from ``RUN_COLS`` followed by the run's progress report (or NULL)."""
    run = _run_of(rec)
    if rec[sql.AFTER_RUN_COLS] is not None:
        run.progress = orjson.loads(rec[sql.AFTER_RUN_COLS])
    return run


# Query parameters of a store URL that are the store's options, not the server's.
_URL_OPTIONS = ("schema", "dialect")


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The DSN for asyncpg, and the store's options the URL gives (``_URL_OPTIONS``,
    which asyncpg would otherwise send to the server as settings)."""
    parts = urlsplit(url)
    options = {}
    query = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in _URL_OPTIONS:
            options[k] = v
        else:
            query.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(query))), options


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

    ``dialect`` (or the URL's ``dialect`` parameter): ``"auto"`` (default) issues
    Citus's forms of the statements when the ``citus`` extension is in the database,
    else plain PostgreSQL's faster forms of the batched writes (``pg_sql.PLAIN_FORMS``);
    ``"citus"`` issues Citus's forms on plain PostgreSQL too (to test them there).
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
        dialect: str | None = None,
    ) -> None:
        if durability not in ("fsync", "process"):
            raise ConfigurationError(f"durability must be 'fsync' or 'process', not {durability!r}")
        dsn, url_options = _split_url(url)
        schema = schema or url_options.get("schema") or DEFAULT_SCHEMA
        dialect = dialect or url_options.get("dialect") or "auto"
        if dialect not in ("auto", "citus"):
            raise ConfigurationError(f"dialect must be 'auto' or 'citus', not {dialect!r}")
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
        self._dialect = dialect
        # Whether the statements take Citus's forms: known once open (CITUS_PRESENT).
        self.citus = dialect == "citus"
        self._dsn = dsn
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        # One channel per schema (at most 63 bytes: a longer schema name may share
        # its channel with another, which costs only early wake-ups).
        self._channel = f"{schema}.surestep_changes"[:63]
        # JIT compiles nothing a store's statements need, and makes asyncpg's type
        # introspection on a new connection take up to seconds (on a Citus coordinator
        # especially): off, so that a pool opens fast.
        self._settings = {"application_name": "surestep", "jit": "off"}
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
        self._q = sql.Statements(f'"{schema}"')

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
                reset=_keep_session,
                **_POOL_OPTIONS,
            )
        except _DRIVER_ERRORS as exc:
            raise self._error(exc, "cannot connect") from exc
        try:
            await self._migrate(pool)
            if self._dialect == "auto":
                self.citus = await pool.fetchval(sql.CITUS_PRESENT)
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
        """Bring the schema to :data:`.pg_sql.SCHEMA_VERSION`, applying the migrations it
        lacks in order, under an advisory lock."""
        q = self._q
        key = int.from_bytes(
            hashlib.blake2b(f"surestep:{self.schema}".encode(), digest_size=8).digest(),
            "big",
            signed=True,
        )
        try:
            async with pool.acquire() as conn:
                try:  # the common case: already migrated, no lock needed
                    if await conn.fetchval(q[sql.SCHEMA_VERSION_NOW]) == sql.SCHEMA_VERSION:
                        return
                except asyncpg.UndefinedTableError:
                    pass
                async with conn.transaction():
                    await conn.execute(sql.MIGRATION_LOCK, key)
                    await conn.execute(q[sql.SCHEMA_VERSION_TABLE])
                    current = await conn.fetchval(q[sql.SCHEMA_VERSION_APPLIED])
                    if current > sql.SCHEMA_VERSION:
                        raise StoreError(
                            f"the store at {self.url} (schema {self.schema}) has schema version "
                            f"{current}, newer than this release of surestep knows "
                            f"({sql.SCHEMA_VERSION}); upgrade surestep"
                        )
                    for version, migration in sql.MIGRATIONS:
                        if version > current:
                            await conn.execute(q[migration])
                            await conn.execute(q[sql.SCHEMA_VERSION_RECORD], version)
                            log.info(
                                "store %s: schema %s migrated to version %d",
                                self.url,
                                self.schema,
                                version,
                            )
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
            self._q[sql.RUNS_EXISTING],
            list(run_ids),
            what=what,
        )
        return {r[0] for r in found}

    def _refusal(self, run_id: str, fence: int, exists: set[str]) -> BaseException:
        if run_id in exists:
            return LeaseLostError(run_id, fence)
        return RunNotFoundError(f"no run {run_id} in {self.url}")

    async def _fetch(
        self,
        statement: str,
        *args: Any,
        what: str,
        retry: bool = True,
        many: Sequence[Sequence[Any]] | None = None,
    ) -> list[Any]:
        """Run one statement on a pooled connection; with ``many``, the statement once
        for each of its argument lists, sent as one pipeline and committed together
        (the rows are those of every execution). A connection the server dropped
        (restart, failover) is replaced and the statement sent once more when
        ``retry``: every statement passed with it is idempotent."""
        pool = self._pool_or_raise()
        for attempt in (0, 1):
            try:
                if many is not None:
                    rows: list[Any] = await pool.fetchmany(statement, many)
                else:
                    rows = await pool.fetch(statement, *args)
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

    async def _dead_owners(self) -> list[str]:
        """Owners on this host holding unexpired leases whose process is gone."""
        rows = await self._fetch(
            self._q[sql.HOST_OWNERS],
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
        rows = await self._fetch(self._q[sql.RUN_FENCE], run_id, what="read")
        if not rows:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        fence: int = rows[0][0]
        return fence

    async def _lock_fenced(self, conn: Any, run_id: str, fence: int, lock: str) -> None:
        """Lock the run's row (``lock``: RUN_FENCE_SHARE or RUN_FENCE_NO_KEY_UPDATE) and
        check its fence."""
        row = await conn.fetchrow(self._q[lock], run_id)
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
            self._q[sql.CREATE_RUNS], *self._create_args(batch), what="create run", retry=False
        )
        if rows:
            await self._notify_committed("create run")
        stored = {rec[0]: _run_of(rec) for rec in rows}
        return [stored.get(r.run_id) for r in runs]

    def _create_args(self, batch: list[_Create]) -> list[Any]:
        """The parameters of ``CREATE_RUNS`` for ``batch``."""
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
        # base.TRANSITIONS: create, batched (CREATE_RUNS)
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
        """Insert ``run`` (as ``CREATE_RUNS`` does) with ``key``, in the caller's
        transaction; the run ``key`` created instead, when it names one. A concurrent
        insert with the same key waits on the key's row (its primary key) and then
        finds the run this one made."""
        taken = await conn.fetchval(self._q[sql.TAKE_IDEMPOTENCY_KEY], key, run.run_id)
        if taken is None:
            run_id = await conn.fetchval(self._q[sql.RUN_OF_IDEMPOTENCY_KEY], key)
            existing = await conn.fetch(self._q[sql.GET_RUN], run_id)
            if not existing:
                raise StoreError(f"idempotency key {key!r} names no run in {self.url}")
            return _run_of(existing[0])
        rows = await conn.fetch(
            self._q[sql.CREATE_RUNS], *self._create_args([(run, owner, lease_s, follow)])
        )
        if not rows:
            raise StoreError(
                f"create run {run.run_id}: a run with that id exists already in {self.url}"
            )
        await self._notify(conn)
        return _run_of(rows[0])

    async def create_child(self, run: RunInfo, owner: str, lease_s: float) -> RunInfo:
        child = RunInfo.from_dict(run.to_dict())
        stored = await self._insert(child, owner, lease_s)
        return stored if stored is not None else await self.get_run(run.run_id)

    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunInfo | None:
        # base.TRANSITIONS: claim, in one statement (CLAIM)
        claim = self._q[sql.CLAIM]
        rows = await self._fetch(claim, run_id, owner, lease_s, [], what="claim", retry=False)
        if rows:
            return _run_of(rows[0])
        # Missing, finished, not due, or held (perhaps by a dead process of this host).
        held = await self._fetch(self._q[sql.CLAIM_HOLDER], run_id, what="claim")
        if not held:
            await self._fence_of(run_id)  # RunNotFoundError if missing
            return None
        holder = Owner.parse(held[0][0])
        if holder is None or not holder.is_dead():
            return None
        rows = await self._fetch(
            claim, run_id, owner, lease_s, [held[0][0]], what="claim", retry=False
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
        # base.TRANSITIONS: claim_available
        if limit <= 0 or not workflows:
            return []
        served = [
            (name, version)
            for name, versions in versions_by_workflow(workflows).items()
            for version in sorted(versions)
        ]
        # Owners known dead matter only to runs held by one: a waiting run has no owner
        # (SUSPEND clears it), so the timer wake-up, which runs after every change it
        # hears of, does not read the host's owners (a scan of every run held here).
        dead = [] if due_only else await self._dead_owners()
        workflow_names, versions = [w for w, _ in served], [v for _, v in served]
        if not self.citus:  # one statement, skipping the runs other claimers are locking
            rows = await self._fetch(
                self._q[sql.CLAIM_AVAILABLE],
                workflow_names,
                versions,
                limit,
                dead,
                owner,
                lease_s,
                due_only,
                what="claim",
                retry=False,
            )
            return sorted((_run_of(r) for r in rows), key=lambda run: run.run_id)
        # Citus: lock-free. Candidates read without locks (due timers first, then pending and
        # abandoned runs), then each claimed by CLAIM, which checks the claim's
        # conditions again on the row as it is then: of concurrent claimers, the first
        # to update a run takes it and the others find it held.
        picked = [
            r[0]
            for r in await self._fetch(
                self._q[sql.DUE_CANDIDATES], workflow_names, versions, limit, dead, what="claim"
            )
        ]
        if not due_only and len(picked) < limit:
            picked += [
                r[0]
                for r in await self._fetch(
                    self._q[sql.ACTIVE_CANDIDATES],
                    workflow_names,
                    versions,
                    limit - len(picked),
                    dead,
                    what="claim",
                )
            ]
        if not picked:
            return []
        rows = await self._fetch(
            self._q[sql.CLAIM],
            what="claim",
            retry=False,
            many=[(run_id, owner, lease_s, dead) for run_id in sorted(picked)],
        )
        return [_run_of(r) for r in rows]

    async def suspend(
        self, run_id: str, fence: int, wake_at: float | None, event: str | None = None
    ) -> None:
        # base.TRANSITIONS: suspend
        async def body(conn: Any) -> None:
            # Lock first, read after: an event sent concurrently either committed
            # before this lock (and _suspend sees it) or waits for this transaction
            # (and then finds the run waiting for it).
            await self._lock_fenced(conn, run_id, fence, sql.RUN_FENCE_NO_KEY_UPDATE)
            await self._suspend(conn, run_id, wake_at, event)

        await self._transaction(body, f"suspend run {run_id}")

    async def _suspend(
        self, conn: Any, run_id: str, wake_at: float | None, event: str | None
    ) -> None:
        if event is not None and await conn.fetchval(self._q[sql.EVENT_WAITING], run_id, event):
            await conn.execute(self._q[sql.SUSPEND_DUE], run_id, event)
        else:
            await conn.execute(self._q[sql.SUSPEND], run_id, event, wake_at)
        await self._notify(conn)

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
        # base.TRANSITIONS: record_attempt (with wake_at)
        async def write(conn: Any) -> None:
            await self._lock_fenced(conn, run_id, fence, sql.RUN_FENCE_NO_KEY_UPDATE)
            await conn.execute(self._q[sql.RECORD_ATTEMPT], run_id, seq, attempt, bytes(body))
            await conn.execute(self._q[sql.SET_RETRY], run_id, _json(retry))
            if wake_at is not None:
                await self._suspend(conn, run_id, wake_at, None)

        await self._transaction(write, f"record attempt {attempt} of step {seq} of run {run_id}")

    async def retry_done(self, run_id: str, fence: int, seq: int) -> None:
        async def write(conn: Any) -> None:
            await self._lock_fenced(conn, run_id, fence, sql.RUN_FENCE_NO_KEY_UPDATE)
            await conn.execute(self._q[sql.CLEAR_RETRY], run_id, seq)

        await self._transaction(write, f"end the retries of step {seq} of run {run_id}")

    async def attempts(self, run_id: str) -> list[bytes]:
        rows = await self._fetch(
            self._q[sql.ATTEMPTS],
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
            self._q[sql.NEXT_WAKE],
            [w for w, _ in served],
            [v for _, v in served],
            what="read timers",
        )
        return _epoch(rows[0][0])

    async def renew(
        self, leases: Sequence[tuple[str, int]], owner: str, lease_s: float
    ) -> list[str]:
        if not leases:
            return []
        rows = await self._fetch(
            self._q[sql.RENEW],
            what="renew",
            many=[(run_id, fence, owner, lease_s) for run_id, fence in sorted(leases)],
        )
        kept = {r[0] for r in rows}
        return [run_id for run_id, _ in leases if run_id not in kept]

    async def _notify_committed(self, what: str) -> None:
        """Wake the listeners after a write committed on its own: a failure here must not
        report the committed write as failed (a start would raise for a stored, leased
        run), so it is logged; listeners still wake at their next timeout."""
        try:
            await self._fetch(sql.NOTIFY, self._channel, what=what)
        except StoreError:
            log.warning("%s: committed, but the wake-up was not sent", what, exc_info=True)

    async def release(self, run_id: str, fence: int) -> None:
        # base.TRANSITIONS: release, in one statement (RELEASE)
        what = f"release run {run_id}"
        if await self._fetch(self._q[sql.RELEASE], run_id, fence, what=what):
            await self._notify_committed(what)
        elif await self._fence_of(run_id) != fence:
            raise LeaseLostError(run_id, fence)

    async def finish(
        self,
        run_id: str,
        fence: int,
        status: str,
        result: Any,
        error: dict[str, Any] | None,
        keep: int = KEEP_DEFAULT,
    ) -> None:
        # base.TRANSITIONS: finish, batched (FINISH_RUN)
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
        if self.citus:  # one statement a run, in run_id order, one pipeline
            rows = await self._fetch(self._q[sql.FINISH_RUN], what="finish run", many=sorted(batch))
        else:
            rows = await self._fetch(self._q[sql.FINISH_RUNS], *_columns(batch), what="finish run")
        done = {r[0] for r in rows}
        refused = [f[0] for f in batch if f[0] not in done]
        outcomes: dict[str, tuple[str, int]] = {}
        if refused:
            found = await self._fetch(self._q[sql.RUNS_OUTCOME], refused, what="finish run")
            outcomes = {run_id: (status, fence) for run_id, status, fence in found}
        # A finish sent again (its first reply lost) was committed by the first: done too.
        done |= {
            run_id for run_id, fence, status, *_ in batch if outcomes.get(run_id) == (status, fence)
        }
        if done:
            await self._notify_committed("finish run")
        return [
            None if run_id in done else self._refusal(run_id, fence, set(outcomes))
            for run_id, fence, status, *_ in batch
        ]

    async def cancel(self, run_id: str, keep: int = KEEP_DEFAULT) -> bool:
        # base.TRANSITIONS: cancel, in one statement (CANCEL)
        what = f"cancel run {run_id}"
        if await self._fetch(self._q[sql.CANCEL], run_id, keep, what=what, retry=False):
            await self._notify_committed(what)
            return True
        await self._fence_of(run_id)  # RunNotFoundError if missing
        return False

    async def get_run(self, run_id: str) -> RunInfo:
        rows = await self._fetch(
            self._q[sql.GET_RUN],
            run_id,
            what="read",
        )
        if not rows:
            raise RunNotFoundError(f"no run {run_id} in {self.url}")
        return _run_with_progress(rows[0])

    async def set_progress(self, run_id: str, fence: int, report: bytes) -> None:
        rows = await self._fetch(
            self._q[sql.SET_PROGRESS],
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
            where.append(sql.LIST_RUNS_BEFORE % len(args))
        if status is not None:
            args.append(status)
            where.append(sql.LIST_RUNS_STATUS % len(args))
        if workflow is not None:
            args.append(workflow)
            where.append(sql.LIST_RUNS_WORKFLOW % len(args))
        args.append(limit)
        statement = (
            self._q[sql.LIST_RUNS]
            + (" WHERE " + " AND ".join(where) if where else "")
            + sql.LIST_RUNS_END % len(args)
        )
        rows = await self._fetch(statement, *args, what="list runs")
        return [_run_with_progress(r) for r in rows]

    # -- live engines

    async def announce(self, owner: str, served: ServedVersions, lease_s: float) -> None:
        versions = {name: sorted(v) for name, v in versions_by_workflow(served).items()}
        await self._fetch(
            self._q[sql.ANNOUNCE],
            owner,
            orjson.dumps(versions).decode(),
            lease_s,
            what="announce an engine",
        )

    async def withdraw(self, owner: str) -> None:
        await self._fetch(self._q[sql.WITHDRAW], owner, what="withdraw an engine")

    async def live_engines(self) -> list[LiveEngine]:
        rows = await self._fetch(
            self._q[sql.LIVE_ENGINES],
            what="read the live engines",
        )
        live = []
        for owner, served, until in rows:
            parsed = Owner.parse(owner)
            if not (parsed is not None and parsed.is_dead()):
                live.append(LiveEngine(owner, orjson.loads(served), until.timestamp()))
        return live

    # -- deployments

    async def record_deployment(
        self, workflow: str, version: str, digest: str, retention: int | None = None
    ) -> None:
        await self._fetch(
            self._q[sql.RECORD_DEPLOYMENT],
            workflow,
            version,
            digest,
            retention,
            what="record deployment",
            retry=False,
        )

    async def deployments(self) -> list[dict[str, Any]]:
        rows = await self._fetch(
            self._q[sql.DEPLOYMENTS],
            what="read deployments",
        )
        return [
            {
                "workflow": r[0],
                "version": r[1],
                "digest": r[2],
                "time": r[3].timestamp(),
                "retention": r[4],
            }
            for r in rows
        ]

    # -- schedules

    async def _locked_schedule(self, conn: Any, workflow: str) -> ScheduleInfo | None:
        row = await conn.fetchrow(self._q[sql.SCHEDULE_LOCKED], workflow)
        return None if row is None else ScheduleInfo(*row)

    async def _write_schedule(self, conn: Any, schedule: ScheduleInfo) -> None:
        values = [getattr(schedule, name) for name in sql.SCHEDULE_COLS]
        await conn.execute(self._q[sql.WRITE_SCHEDULE], *values)

    async def _notify(self, conn: Any) -> None:
        await conn.execute(sql.NOTIFY, self._channel)

    async def register_schedule(
        self, workflow: str, version: str, schedule: ScheduleInfo | None, now: float
    ) -> ScheduleInfo | None:
        async def body(conn: Any) -> ScheduleInfo | None:
            await conn.execute(sql.REGISTRATION_LOCK, f"{self.schema}.schedules:{workflow}")
            stored = await self._locked_schedule(conn, workflow)
            deployed = await conn.fetchval(self._q[sql.DEPLOYED_VERSION], workflow)
            new, changed = registered_schedule(stored, deployed, version, schedule, now)
            if changed:
                if new is None:
                    await conn.execute(self._q[sql.DELETE_SCHEDULE], workflow)
                else:
                    await self._write_schedule(conn, new)
                await self._notify(conn)
            return new

        return await self._transaction(body, f"register the schedule of {workflow!r}")

    async def schedules(self) -> list[ScheduleInfo]:
        rows = await self._fetch(
            self._q[sql.SCHEDULES],
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
            await conn.execute(self._q[sql.SCHEDULE_TICKED], workflow, tick)
            if run is None:
                return None
            return await self._keyed_insert(conn, run, None, 0.0, True, key)

        return await self._transaction(body, f"fire the schedule of {workflow!r}")

    async def register_subscriptions(
        self, workflow: str, version: str, events: Sequence[str]
    ) -> list[str]:
        wanted = sorted(set(events))

        async def body(conn: Any) -> list[str]:
            await conn.execute(sql.REGISTRATION_LOCK, f"{self.schema}.subscriptions:{workflow}")
            rows = await conn.fetch(self._q[sql.SUBSCRIPTIONS_OF], workflow)
            names = [r[0] for r in rows]
            held = rows[0][1] if rows else None
            deployed = await conn.fetchval(self._q[sql.DEPLOYED_VERSION], workflow)
            if keep_registration(held, deployed, version):
                return names
            if names == wanted and all(r[1] == version for r in rows):
                return names
            await conn.execute(self._q[sql.DELETE_SUBSCRIPTIONS], workflow)
            await conn.executemany(
                self._q[sql.ADD_SUBSCRIPTION],
                [(name, workflow, version) for name in wanted],
            )
            await self._notify(conn)
            return wanted

        return await self._transaction(body, f"register the event triggers of {workflow!r}")

    async def subscriptions(self) -> list[tuple[str, str, str]]:
        rows = await self._fetch(
            self._q[sql.SUBSCRIPTIONS],
            what="read subscriptions",
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def emit_event(
        self, name: str, kwargs: dict[str, Any], keys: Callable[[str], str]
    ) -> list[RunInfo]:
        async def body(conn: Any) -> list[RunInfo]:
            subscribed = await conn.fetch(self._q[sql.SUBSCRIBED], name)
            started = []
            for workflow, version in subscribed:
                run = RunInfo(new_run_id(), workflow, version, args=[], kwargs=kwargs)
                started.append(await self._keyed_insert(conn, run, None, 0.0, True, keys(workflow)))
            return started

        return await self._transaction(body, f"emit event {name!r}")

    async def idempotency_keys(self, prefix: str) -> dict[str, str]:
        rows = await self._fetch(
            self._q[sql.IDEMPOTENCY_KEYS],
            prefix,
            what="read idempotency keys",
        )
        return {r[0]: r[1] for r in rows}

    # -- events

    async def send_event(self, run_id: str, name: str, payload: bytes) -> None:
        async def body(conn: Any) -> None:
            # Lock first (see suspend): the run is waiting for this event or will see it.
            row = await conn.fetchrow(self._q[sql.RUN_STATUS_LOCKED], run_id)
            if row is None:
                raise RunNotFoundError(f"no run {run_id} in {self.url}")
            if row[0] in FINISHED:
                raise RunFinishedError(run_id, row[0])
            await conn.execute(self._q[sql.SEND_EVENT], run_id, name, bytes(payload))
            await self._notify(conn)

        await self._transaction(body, f"send event {name!r} to run {run_id}")

    async def take_event(
        self, run_id: str, fence: int, name: str, seq: int, record: Callable[[bytes], bytes]
    ) -> bytes | None:
        async def body(conn: Any) -> bytes | None:
            await self._lock_fenced(conn, run_id, fence, sql.RUN_FENCE_SHARE)
            row = await conn.fetchrow(self._q[sql.TAKE_EVENT], run_id, name)
            if row is None:
                return None
            payload = bytes(row[0])
            await self._journal_one(conn, run_id, seq, record(payload))
            return payload

        return await self._transaction(body, f"take event {name!r} of run {run_id}")

    async def _journal_one(self, conn: Any, run_id: str, seq: int, record: bytes) -> None:
        await conn.execute(self._q[sql.JOURNAL_ONE], run_id, seq, bytes(record))

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
            await self._lock_fenced(conn, run_id, fence, sql.RUN_FENCE_SHARE)
            row = await conn.fetchrow(self._q[sql.STATE_READ], scope, key)
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
        async def body(conn: Any) -> int | None:
            await self._lock_fenced(conn, run_id, fence, sql.RUN_FENCE_SHARE)
            await conn.execute(self._q[sql.STATE_PLACEHOLDER], scope, key)
            version = await conn.fetchval(self._q[sql.STATE_VERSION_LOCKED], scope, key)
            new: int | None = None
            if expect is None or expect == version:
                new = version + 1
                await conn.execute(
                    self._q[sql.STATE_WRITE],
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
            self._q[sql.STATE_ITEMS],
            scope,
            what="read state",
        )
        return {r[0]: bytes(r[1]) for r in rows}

    # -- logs

    async def append_log(self, run_id: str, position: int, index: int, line: bytes) -> None:
        await self._fetch(
            self._q[sql.APPEND_LOG],
            run_id,
            position,
            index,
            bytes(line),
            what="append log",
        )

    async def logs(self, run_id: str) -> list[bytes]:
        rows = await self._fetch(
            self._q[sql.LOGS],
            run_id,
            what="read logs",
        )
        return [r[0] for r in rows]

    # -- journal

    async def append(self, run_id: str, fence: int, seq: int, record: bytes) -> None:
        self._pool_or_raise()
        await self._appends.submit((run_id, seq, bytes(record), fence))

    async def _write_appends(self, batch: list[_Append]) -> list[BaseException | None]:
        if self.citus:  # one statement a run (and fence), in run_id order, one pipeline
            records: dict[tuple[str, int], tuple[list[int], list[bytes]]] = {}
            for run_id, seq, record, fence in batch:
                seqs, recs = records.setdefault((run_id, fence), ([], []))
                seqs.append(seq)
                recs.append(record)
            runs = [(run_id, fence, *records[run_id, fence]) for run_id, fence in sorted(records)]
            rows = await self._fetch(self._q[sql.APPEND], what="append", many=runs)
        else:
            rows = await self._fetch(
                self._q[sql.APPEND_RUNS],
                *_columns([(run_id, fence, seq, rec) for run_id, seq, rec, fence in batch]),
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
            self._q[sql.JOURNAL],
            run_id,
            what="read journal",
        )
        return [r[0] for r in rows]

    # -- retention

    async def made_by_previous_release(self) -> bool:
        rows = await self._fetch(self._q[sql.MADE_BY], what="read meta")
        return not rows or rows[0][0] == "surestep 0.2"

    async def _due_roots(
        self, conn: Any, now: float, default_ms: int, cutoff: float | None, most: int
    ) -> list[str]:
        """Finished runs that may go and whose parent is gone or absent, oldest first in
        each policy, at most ``most``: index ranges of a policy (the policies found by a
        skip scan of the index, not by reading every row)."""
        found: list[str] = []
        keep = await conn.fetchval(self._q[sql.NEXT_POLICY], KEEP_DEFAULT - 1)
        while keep is not None and len(found) < most:
            ms = default_ms if keep == KEEP_DEFAULT else keep
            if cutoff is not None or ms >= 0:  # else kept for ever
                before = cutoff if cutoff is not None else now - ms / 1000
                after: tuple[datetime, str] = (_LONG_AGO, "")
                while len(found) < most:
                    want = most - len(found)
                    rows = await conn.fetch(self._q[sql.DUE_RUNS], keep, before, want, *after)
                    parents = [r[1] for r in rows if r[1] is not None]
                    present = {r[0] for r in await conn.fetch(self._q[sql.RUNS_EXISTING], parents)}
                    found += [r[0] for r in rows if r[1] is None or r[1] not in present]
                    if len(rows) < want:
                        break
                    after = (rows[-1][2], rows[-1][0])
            keep = await conn.fetchval(self._q[sql.NEXT_POLICY], keep)
        return found

    async def _trees(
        self, conn: Any, roots: list[str], now: float, default_ms: int, cutoff: float | None
    ) -> dict[str, tuple[list[dict[str, Any]], tuple[int, float] | None]]:
        """For each of ``roots``: the root and every run it started (recursively),
        described, when all may go; else nothing, and the policy and finish time of the
        descendant that may go last (``None`` when one is unfinished: look again later).
        A statement a level of the trees, and one for all their runs."""
        root_of = {root: root for root in roots}
        depth = dict.fromkeys(roots, 0)
        level = roots
        while level:
            rows = await conn.fetch(self._q[sql.CHILDREN], level)
            level = [run_id for run_id, _ in rows if run_id not in root_of]
            for run_id, parent in rows:
                root_of.setdefault(run_id, root_of[parent])
                depth.setdefault(run_id, depth[parent] + 1)
        trees: dict[str, list[Any]] = {root: [] for root in roots}
        for row in await conn.fetch(self._q[sql.PURGE_VIEW], list(root_of)):
            trees[root_of[row[0]]].append(row)
        now_ms = round(now * 1000)
        cutoff_ms = None if cutoff is None else round(cutoff * 1000)
        return {
            root: _judged(
                root,
                sorted(rows, key=lambda r: (depth[r[0]], r[0])),
                now_ms,
                default_ms,
                cutoff_ms,
            )
            for root, rows in trees.items()
        }

    async def expired_runs(
        self, now: float, default_ms: int, cutoff: float | None, limit: int | None
    ) -> list[dict[str, Any]]:
        async def body(conn: Any) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            roots = await self._due_roots(conn, now, default_ms, cutoff, 1 << 62)
            taken = 0
            for start in range(0, len(roots), _TREES_AT_ONCE):
                chunk = roots[start : start + _TREES_AT_ONCE]
                trees = await self._trees(conn, chunk, now, default_ms, cutoff)
                for root in chunk:
                    described, _ = trees[root]
                    if described:
                        out += described
                        taken += 1
                        if limit is not None and taken >= limit:
                            return out
            return out

        return await self._transaction(body, "list expired runs")

    async def hide_expired(
        self, now: float, default_ms: int, cutoff: float | None, limit: int
    ) -> list[dict[str, Any]]:
        async def body(conn: Any) -> list[dict[str, Any]]:
            roots = await self._due_roots(conn, now, default_ms, cutoff, 4 * limit)
            whole: dict[str, list[dict[str, Any]]] = {}
            later: dict[str, tuple[int, float]] = {}
            for start in range(0, len(roots), limit):  # as many trees as may be hidden
                if len(whole) >= limit:
                    break
                chunk = roots[start : start + limit]
                trees = await self._trees(conn, chunk, now, default_ms, cutoff)
                for root in chunk:
                    described, last = trees[root]
                    if described and len(whole) < limit:
                        whole[root] = described
                    elif last is not None and cutoff is None:  # due with its descendants
                        later[root] = last
            # Hidden first: the run rows locked before any retention row, in every purge
            # (two purges at once then never wait for each other in a cycle).
            hidden = await self._hide(conn, whole)
            if later:
                policies = list(later.values())
                await conn.execute(
                    self._q[sql.POSTPONE_RETENTION],
                    list(later),
                    [keep for keep, _ in policies],
                    [finished for _, finished in policies],
                )
            if hidden:
                await self._notify(conn)
            return hidden

        return await self._transaction(body, "hide expired runs")

    async def _hide(
        self, conn: Any, trees: dict[str, list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Hide ``trees`` (root: its runs described), each whole or not at all; the runs
        hidden. No row is locked first: the DELETE re-checks each run, a tree another
        purge hid meanwhile is left to it, and one found in part (a savepoint rolled
        back) is left as it is."""
        while trees:
            ids = sorted(d["run_id"] for tree in trees.values() for d in tree)
            savepoint = conn.transaction()
            await savepoint.start()
            gone = {r[0] for r in await conn.fetch(self._q[sql.HIDE_RUNS], ids)}
            found = {root: sum(d["run_id"] in gone for d in tree) for root, tree in trees.items()}
            part = [root for root, tree in trees.items() if 0 < found[root] < len(tree)]
            if part:
                await savepoint.rollback()
                for root in part:
                    del trees[root]
                continue
            await savepoint.commit()
            hidden = [d for root, tree in trees.items() if found[root] for d in tree]
            ids = [d["run_id"] for d in hidden]
            for statement in sql.HIDE_RECORDS:
                await conn.execute(self._q[statement], ids)
            return hidden
        return []

    async def sweep_hidden(self, limit: int) -> tuple[int, int]:
        async def body(conn: Any) -> tuple[int, int]:
            hidden = [r[0] for r in await conn.fetch(self._q[sql.HIDDEN_RUNS], limit)]
            if not hidden:
                return 0, 0
            deleted = 0
            for sweep in sql.SWEEP_HIDDEN:
                if deleted < limit:
                    status = await conn.execute(self._q[sweep], hidden, limit - deleted)
                    deleted += int(status.rsplit(" ", 1)[1])  # "DELETE <count>"
            status = await conn.execute(self._q[sql.UNHIDE_SWEPT], hidden)
            return deleted, int(status.rsplit(" ", 1)[1])

        return await self._transaction(body, "delete purged records")

    async def stats(self) -> dict[str, Any]:
        async def body(conn: Any) -> dict[str, Any]:
            sizes = await conn.fetch(sql.TABLE_SIZES, self.schema)
            runs = dict.fromkeys(STATUSES, 0)
            for status, count in await conn.fetch(self._q[sql.RUNS_BY_STATUS]):
                runs[status] = count
            oldest: float | None = None  # the oldest of each policy's oldest
            keep = await conn.fetchval(self._q[sql.NEXT_POLICY], KEEP_DEFAULT - 1)
            while keep is not None:
                first = _epoch(await conn.fetchval(self._q[sql.OLDEST_FINISHED], keep))
                if first is not None and (oldest is None or first < oldest):
                    oldest = first
                keep = await conn.fetchval(self._q[sql.NEXT_POLICY], keep)
            hidden = await conn.fetchval(self._q[sql.HIDDEN_COUNT])
            tables = {name: size for name, size in sizes}
            return {
                "size": {"total_bytes": sum(tables.values()), "tables": tables},
                "runs": runs,
                "oldest_finished": oldest,
                "hidden": hidden,
            }

        return await self._transaction(body, "read stats")


def _judged(
    root: str, rows: list[Any], now_ms: int, default_ms: int, cutoff_ms: int | None
) -> tuple[list[dict[str, Any]], tuple[int, float] | None]:
    """A tree's runs (``PURGE_VIEW`` rows, the root first) described, when all may go;
    else nothing, and the policy and finish time of the descendant that may go last
    (``None`` when one is unfinished, or the root is gone)."""
    if not rows or rows[0][0] != root:
        return [], None
    later: tuple[int, float] | None = None
    last_due = -float("inf")
    described = []
    for run_id, workflow, status, updated_at, keep, finished_at in rows:
        if status not in FINISHED:
            return [], None
        updated = updated_at.timestamp()
        if run_id != root:
            keep = KEEP_DEFAULT if keep is None else keep
            finished = updated if finished_at is None else finished_at.timestamp()
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
