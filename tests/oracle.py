"""A slow, obviously correct pure-Python model of ``surestep._core``, for tests only.

Written from the specs (XXH64: github.com/Cyan4973/xxHash ``doc/xxhash_spec.md``; the
record layout: ``src/surestep/_core.pyi``) with Python ints and :mod:`struct`, sharing no
code with the Cython sources, so the two can check each other.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from surestep.errors import JournalCorruptError, NonDeterminismError, UnsupportedFormatError

# ---------------------------------------------------------------- XXH64

MASK64 = (1 << 64) - 1
PRIME64_1 = 0x9E3779B185EBCA87
PRIME64_2 = 0xC2B2AE3D27D4EB4F
PRIME64_3 = 0x165667B19E3779F9
PRIME64_4 = 0x85EBCA77C2B2AE63
PRIME64_5 = 0x27D4EB2F165667C5


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * PRIME64_2) & MASK64
    return (_rotl(acc, 31) * PRIME64_1) & MASK64


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * PRIME64_1 + PRIME64_4) & MASK64


def xxh64(data: bytes, seed: int = 0) -> int:
    data = bytes(data)
    n = len(data)
    pos = 0
    if n >= 32:
        acc = [
            (seed + PRIME64_1 + PRIME64_2) & MASK64,
            (seed + PRIME64_2) & MASK64,
            seed,
            (seed - PRIME64_1) & MASK64,
        ]
        while n - pos >= 32:
            for i in range(4):
                (lane,) = struct.unpack_from("<Q", data, pos + 8 * i)
                acc[i] = _round(acc[i], lane)
            pos += 32
        h = (_rotl(acc[0], 1) + _rotl(acc[1], 7) + _rotl(acc[2], 12) + _rotl(acc[3], 18)) & MASK64
        for a in acc:
            h = _merge(h, a)
    else:
        h = (seed + PRIME64_5) & MASK64
    h = (h + n) & MASK64
    while n - pos >= 8:
        (lane,) = struct.unpack_from("<Q", data, pos)
        h ^= _round(0, lane)
        h = (_rotl(h, 27) * PRIME64_1 + PRIME64_4) & MASK64
        pos += 8
    if n - pos >= 4:
        (lane,) = struct.unpack_from("<I", data, pos)
        h ^= (lane * PRIME64_1) & MASK64
        h = (_rotl(h, 23) * PRIME64_2 + PRIME64_3) & MASK64
        pos += 4
    while pos < n:
        h ^= (data[pos] * PRIME64_5) & MASK64
        h = (_rotl(h, 11) * PRIME64_1) & MASK64
        pos += 1
    h ^= h >> 33
    h = (h * PRIME64_2) & MASK64
    h ^= h >> 29
    h = (h * PRIME64_3) & MASK64
    h ^= h >> 32
    return h


# ---------------------------------------------------------------- constants and hashes

FORMAT_VERSION = 1
HEADER_SIZE = 32
RUN_KEY_SIZE = 16
STEP_KEY_SIZE = 20
MAX_SEQ = 2**32 - 1
MAX_ATTEMPT = 2**16 - 1
MAX_PAYLOAD = 2**31 - 1
NAME_SEED = int.from_bytes(b"Surestep", "big")
INPUT_SEED = NAME_SEED ^ 1
CHECKSUM_SEED = NAME_SEED ^ 2
KINDS = frozenset(range(1, 8))

HEADER = struct.Struct("<BBHIQQII")  # version kind attempt seq name input length checksum


def name_hash(name: str) -> int:
    return xxh64(name.encode("utf-8"), NAME_SEED)


def input_digest(canonical: bytes) -> int:
    return xxh64(canonical, INPUT_SEED)


def _checksum(header28: bytes, payload: bytes) -> int:
    return xxh64(header28 + payload, CHECKSUM_SEED) & 0xFFFFFFFF


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    version: int
    kind: int
    attempt: int
    seq: int
    name_hash: int
    input_digest: int
    payload: bytes


def encode_record(
    kind: int, seq: int, attempt: int, name_hash: int, input_digest: int, payload: bytes
) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind}")
    for value, top in ((seq, MAX_SEQ), (attempt, MAX_ATTEMPT)):
        if not 0 <= value <= top:
            raise ValueError(value)
    for value in (name_hash, input_digest):
        if not 0 <= value <= MASK64:
            raise ValueError(value)
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    head = HEADER.pack(
        FORMAT_VERSION, kind, attempt, seq, name_hash, input_digest, len(payload), 0
    )[:28]
    return head + struct.pack("<I", _checksum(head, payload)) + payload


def decode_record(buf: bytes) -> Record:
    data = bytes(buf)
    if data and data[0] > FORMAT_VERSION:
        raise UnsupportedFormatError("newer format")
    if not data or data[0] == 0:
        raise JournalCorruptError("bad version")
    if len(data) < HEADER_SIZE:
        raise JournalCorruptError("short")
    version, kind, attempt, seq, nh, digest, length, checksum = HEADER.unpack_from(data)
    if len(data) != HEADER_SIZE + length:
        raise JournalCorruptError("length", seq=seq)
    payload = data[HEADER_SIZE:]
    if checksum != _checksum(data[:28], payload):
        raise JournalCorruptError("checksum", seq=seq)
    if kind not in KINDS:
        raise JournalCorruptError("kind", seq=seq)
    return Record(version, kind, attempt, seq, nh, digest, payload)


# ---------------------------------------------------------------- step keys


def step_key(run_key: bytes, seq: int) -> bytes:
    if len(run_key) != RUN_KEY_SIZE:
        raise ValueError("run key size")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError("seq")
    return bytes(run_key) + struct.pack(">I", seq)


def split_step_key(key: bytes) -> tuple[bytes, int]:
    if len(key) != STEP_KEY_SIZE:
        raise JournalCorruptError("step key size")
    return bytes(key[:RUN_KEY_SIZE]), struct.unpack(">I", key[RUN_KEY_SIZE:])[0]


# ---------------------------------------------------------------- replay index

KIND_STEP = 1
NOT_RECORDED = object()  # the oracle's own; tests compare "is the sentinel" on both sides


@dataclass
class ReplayIndex:
    records: dict[int, Record] = field(default_factory=dict)
    consumed: set[int] = field(default_factory=set)

    @classmethod
    def from_records(cls, buffers: list[bytes]) -> ReplayIndex:
        index = cls()
        for buf in buffers:
            index.add(buf)
        return index

    def add(self, buf: bytes) -> Record:
        rec = decode_record(buf)
        if rec.seq in self.records:
            raise JournalCorruptError("duplicate", seq=rec.seq)
        self.records[rec.seq] = rec
        return rec

    def lookup(self, seq: int, name_hash: int, input_digest: int) -> Record | None:
        rec = self.records.get(seq)
        if rec is None:
            return None
        if (rec.name_hash, rec.input_digest) != (name_hash, input_digest):
            raise NonDeterminismError(
                seq,
                recorded={
                    "name_hash": f"{rec.name_hash:016x}",
                    "input_digest": f"{rec.input_digest:016x}",
                    "kind": rec.kind,
                },
                requested={
                    "name_hash": f"{name_hash:016x}",
                    "input_digest": f"{input_digest:016x}",
                },
            )
        self.consumed.add(seq)
        return rec

    def replay(
        self, seq: int, ident: str, input_canonical: bytes, loads: Callable[[bytes], Any]
    ) -> Any:
        rec = self.lookup(seq, name_hash(ident), input_digest(input_canonical))
        if rec is None:
            return NOT_RECORDED
        if rec.kind != KIND_STEP:
            return rec
        try:
            data = loads(rec.payload)
        except ValueError:
            return rec
        if type(data) is dict and "o" in data and type(data.get("n")) is str:
            return data["o"]
        return rec

    def get(self, seq: int) -> Record | None:
        return self.records.get(seq)

    def unconsumed(self) -> list[int]:
        return sorted(set(self.records) - self.consumed)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def max_seq(self) -> int:
        return max(self.records, default=-1)
