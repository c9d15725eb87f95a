"""Editing a store behind the engine's back: bad records, a lease that ran out.

``store`` is what ``Engine`` takes: an LMDB directory, or a ``postgresql://`` URL whose
``schema`` query parameter names the schema (as ``conftest.store_url`` makes them)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from surestep import _core, _lmdb
from surestep.store.base import run_key

T = TypeVar("T")


def rewrite_record(
    store: str | Path, run_id: str, seq: int, change: Callable[[bytes], bytes]
) -> None:
    """Replace the encoded record of step ``seq`` by ``change(record)``, in place in the
    value that holds it (on LMDB a chunk of several records, or a record of its own; on
    PostgreSQL the step's row)."""
    if _is_postgres(store):

        async def edit(conn: Any, schema: str) -> bool:
            where = f"FROM {schema}.journal WHERE run_id = $1 AND seq = $2"
            record = await conn.fetchval(f"SELECT record {where}", run_id, seq)
            if record is None:
                return False
            await conn.execute(
                f"UPDATE {schema}.journal SET record = $3 WHERE run_id = $1 AND seq = $2",
                run_id,
                seq,
                change(bytes(record)),
            )
            return True

        if _on_postgres(str(store), edit):
            return
    elif _rewrite_lmdb(store, run_id, seq, change):
        return
    raise AssertionError(f"run {run_id} has no record of step {seq}")


def values(store: str | Path, run_id: str) -> list[bytes]:
    """The run's journal values as the store holds them, in key order."""
    if _is_postgres(store):

        async def read(conn: Any, schema: str) -> list[bytes]:
            rows = await conn.fetch(
                f"SELECT record FROM {schema}.journal WHERE run_id = $1 ORDER BY seq", run_id
            )
            return [bytes(r[0]) for r in rows]

        return _on_postgres(str(store), read)
    env = _lmdb.open(str(store), max_dbs=16, readonly=True)
    try:
        db = env.open_db(b"journal", create=False)
        prefix = run_key(run_id)
        with env.begin() as txn:
            cursor = txn.cursor(db=db)
            cursor.set_range(prefix)
            return [v for k, v in cursor if k.startswith(prefix)]
    finally:
        env.close()


async def expire_lease(store: str | Path, opened: Any, run_id: str) -> None:
    """Make the run's lease run out now, as if its holder had stalled past it. ``opened``
    is an open store on ``store`` (LMDB allows one environment per process: the edit goes
    through its writer)."""
    if _is_postgres(store):

        async def expire(conn: Any, schema: str) -> None:
            await conn.execute(
                f"UPDATE {schema}.runs SET lease_until = now() - interval '1 second'"
                " WHERE run_id = $1",
                run_id,
            )

        _on_postgres(str(store), expire)
        return
    from surestep.store.lmdb import _lease_bytes

    run = await opened.get_run(run_id)
    env = opened.env

    def expire_lmdb(txn: Any) -> None:
        txn.put(run_key(run_id), _lease_bytes(run.fence, 0.0, run.owner), db=env.dbs.leases)

    await env.submit(expire_lmdb)


def with_version(record: bytes, version: int) -> bytes:
    """A format-2 record claiming another format version, with a valid checksum."""
    signed = bytes([version]) + record[1:-4]
    return signed + (_core.xxh64(signed, _core.CHECKSUM_SEED) & 0xFFFFFFFF).to_bytes(4, "little")


def with_body(record: bytes, body: bytes, output: bool = True) -> bytes:
    """The same format-2 record (a valid one) with another body."""
    r = _core.decode_record(record)
    return _core.encode_record(
        r.kind, r.seq, r.attempt, r.name or "", r.key, r.input, body, output, r.t0, r.t1
    )


def _is_postgres(store: str | Path) -> bool:
    return str(store).startswith(("postgresql://", "postgres://"))


def _rewrite_lmdb(
    store: str | Path, run_id: str, seq: int, change: Callable[[bytes], bytes]
) -> bool:
    env = _lmdb.open(str(store), max_dbs=16)
    try:
        db = env.open_db(b"journal")
        prefix = run_key(run_id)
        with env.begin(write=True) as txn:
            cursor = txn.cursor(db=db)
            cursor.set_range(prefix)
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                records = _core.decode_records(value)
                if any(r.seq == seq for r in records):
                    new = b"".join(change(r.raw) if r.seq == seq else r.raw for r in records)
                    txn.put(key, new, db=db)
                    return True
    finally:
        env.close()
    return False


def _on_postgres(url: str, work: Callable[[Any, str], Awaitable[T]]) -> T:
    """``work(connection, quoted schema)`` on a connection of its own, in a thread of its
    own: callable from a test's running event loop as from plain code."""
    import asyncpg

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "surestep")
    query.pop("dialect", None)  # the store's option, not a server setting
    dsn = urlunsplit(parts._replace(query=urlencode(query)))

    async def connected() -> T:
        conn = await asyncpg.connect(dsn)
        try:
            return await work(conn, f'"{schema}"')
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, connected()).result()
