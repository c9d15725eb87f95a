"""Editing a stored LMDB journal behind the engine's back, for the tests of bad records."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from surestep import _core, _lmdb
from surestep.store.base import run_key


def rewrite_record(
    store_path: str | Path, run_id: str, seq: int, change: Callable[[bytes], bytes]
) -> None:
    """Replace the encoded record of step ``seq`` by ``change(record)``, in place in the
    value (a chunk of several records, or a record of its own) that holds it."""
    env = _lmdb.open(str(store_path), max_dbs=16)
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
                    return
    finally:
        env.close()
    raise AssertionError(f"run {run_id} has no record of step {seq}")


def values(store_path: str | Path, run_id: str) -> list[bytes]:
    """The run's journal values as the LMDB store holds them."""
    env = _lmdb.open(str(store_path), max_dbs=16, readonly=True)
    try:
        db = env.open_db(b"journal", create=False)
        prefix = run_key(run_id)
        with env.begin() as txn:
            cursor = txn.cursor(db=db)
            cursor.set_range(prefix)
            return [v for k, v in cursor if k.startswith(prefix)]
    finally:
        env.close()


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
