"""A slow, obviously correct pure-Python model of ``surestep._core``, for tests only.

Written from the specs (XXH64: github.com/Cyan4973/xxHash ``doc/xxhash_spec.md``; the
record formats: ``ext/_format.pxd``) with Python ints and :mod:`struct`, sharing no code
with the Cython sources, so the two can check each other.

It writes format 2 (``encode_record``) and, unlike the core, format 1 too
(``encode_record_v1``: tests need the bytes surestep 0.1 wrote); it reads both.
``build_fields`` and ``seal`` make format-2 records from raw field values, defects
included.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
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

FORMAT_VERSION = 2  # written; format 1 is read only
HEADER_SIZE = 32  # format 1
RUN_KEY_SIZE = 16
STEP_KEY_SIZE = 20
MAX_SEQ = 2**32 - 1
MAX_ATTEMPT = 2**16 - 1
MAX_PAYLOAD = 2**31 - 1
MAX_MICROS = 2**62 - 1  # the core's bound on a time in microseconds (about year 148,000)
NAME_SEED = int.from_bytes(b"Surestep", "big")
INPUT_SEED = NAME_SEED ^ 1
CHECKSUM_SEED = NAME_SEED ^ 2
KIND_STEP = 1
KINDS = frozenset(range(1, 8))

FLAG_KEY = 0x01
FLAG_KEY_INT = 0x02
FLAG_INPUT = 0x04
FLAG_T0 = 0x08
FLAG_T1 = 0x10
FLAG_OUTPUT = 0x20
FLAGS_ALL = 0x3F

HEADER = struct.Struct("<BBHIQQII")  # version kind attempt seq name input length checksum

# Times: t0 and t1 are whole microseconds in [0, MAX_MICROS]; a record decodes if and
# only if ``encode_record`` can write it.


def name_hash(name: str) -> int:
    if not isinstance(name, str):
        raise TypeError(f"a step name must be a str, not {type(name).__name__}")
    return xxh64(name.encode("utf-8"), NAME_SEED)


def input_digest(canonical: bytes) -> int:
    return xxh64(bytes(memoryview(canonical)), INPUT_SEED)


def _checksum(data: bytes) -> int:
    return xxh64(data, CHECKSUM_SEED) & 0xFFFFFFFF


# ---------------------------------------------------------------- varints, zigzag, times


def varint(value: int) -> bytes:
    """Unsigned LEB128, shortest form."""
    if not 0 <= value < 2**64:
        raise ValueError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


class _BadFieldError(Exception):
    """A field that does not read (the decoder turns it into JournalCorruptError)."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``data[pos]``, read below ``end``, and the position after it.

    ``_BadFieldError`` if it runs into ``end``, does not fit 64 bits, or is not in shortest form
    (it must be exactly what :func:`varint` writes for its value).
    """
    start, value, shift = pos, 0, 0
    while True:
        if pos >= end:
            raise _BadFieldError("cut off")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    if value >= 2**64:
        raise _BadFieldError("past 64 bits")
    if data[start:pos] != varint(value):
        raise _BadFieldError("not minimal")
    return value, pos


def zigzag(delta: int) -> int:
    return 2 * delta if delta >= 0 else -2 * delta - 1


def unzigzag(value: int) -> int:
    return value // 2 if value % 2 == 0 else -(value // 2) - 1


def llround(x: float) -> int:
    """C's ``llround``: to the nearest integer, halves away from zero (``round`` does not)."""
    return int(Decimal(x).to_integral_value(rounding=ROUND_HALF_UP))


def micros(seconds: float, what: str = "time") -> int:
    """``seconds`` (an int or a float) as the core stores it: ``llround(seconds * 1e6)``."""
    if type(seconds) is not float and (type(seconds) is bool or not isinstance(seconds, int)):
        raise TypeError(f"{what} must be a float of seconds, not {type(seconds).__name__}")
    try:
        s = float(seconds)
    except OverflowError:  # an int past the float range
        s = -1.0
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"{what} must be a time in seconds >= 0, got {seconds!r}")
    product = s * 1e6  # one IEEE multiplication, as in C (inf past the float range)
    if not (math.isfinite(product) and llround(product) <= MAX_MICROS):
        raise ValueError(f"{what} must be a time in seconds >= 0, got {seconds!r}")
    return llround(product)


def seconds(us: int) -> float:
    """Microseconds back to seconds as the core does: the int as a double, over 1e6."""
    return float(us) / 1e6


# ---------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class Record:
    version: int
    kind: int
    attempt: int
    seq: int
    raw: bytes
    flags: int = 0
    name: str | None = None
    key: str | int | None = None
    input: bytes | None = None
    body: bytes | None = None
    payload: bytes | None = None  # format 1
    t0_us: int | None = None
    t1_us: int | None = None
    header_name_hash: int = 0  # format 1
    header_input_digest: int = 0  # format 1

    @property
    def ident(self) -> str | None:
        """What replay matches a step against: the name, or ``name#key`` (format 2)."""
        if self.version == 1:
            return None
        return self.name if self.key is None else f"{self.name}#{self.key}"

    @property
    def t0(self) -> float | None:
        return None if self.t0_us is None else seconds(self.t0_us)

    @property
    def t1(self) -> float | None:
        return None if self.t1_us is None else seconds(self.t1_us)

    @property
    def name_hash(self) -> int:
        if self.version == 1:
            return self.header_name_hash
        assert self.ident is not None
        return name_hash(self.ident)

    @property
    def input_digest(self) -> int:
        if self.version == 1:
            return self.header_input_digest
        return input_digest(b"null" if self.input is None else self.input)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def fields(rec: Any) -> tuple[Any, ...] | None:
    """Every public field of a record (the core's or this model's) as a plain tuple, to
    compare the two; ``None`` stays ``None``."""
    if rec is None:
        return None
    return (
        rec.version,
        rec.kind,
        rec.flags,
        rec.attempt,
        rec.seq,
        rec.name,
        rec.key,
        type(rec.key).__name__,
        rec.input,
        rec.body,
        rec.payload,
        rec.t0,
        rec.t1,
        rec.name_hash,
        rec.input_digest,
        rec.raw,
    )


def _check_range(value: object, what: str, top: int) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 0 <= value <= top:
        raise ValueError(f"{what} must be in [0, {top}], got {value}")
    return value


def seal(fields: bytes, version: int = FORMAT_VERSION) -> bytes:
    """A format-2 record around ``fields`` (any bytes): version, length, fields, checksum."""
    head = bytes([version]) + varint(len(fields)) + fields
    return head + struct.pack("<I", _checksum(head))


def build_fields(
    kind: int,
    flags: int,
    seq: int,
    attempt: int,
    name: bytes,
    key: bytes | None = None,
    input: bytes | None = None,
    body: bytes = b"null",
    t0_field: int | None = None,
    t1_field: int | None = None,
) -> bytes:
    """The fields of a format-2 record from raw values, checking nothing: ``flags`` is
    written as given, the optional fields appear when they are not None (tests use this
    to build records that no encoder writes)."""
    out = bytes([kind, flags]) + varint(seq) + varint(attempt)
    if t0_field is not None:
        out += varint(t0_field)
    if t1_field is not None:
        out += varint(t1_field)
    out += varint(len(name)) + name
    if key is not None:
        out += varint(len(key)) + key
    if input is not None:
        out += varint(len(input)) + input
    return out + body


def encode_record(
    kind: int,
    seq: int,
    attempt: int,
    name: str,
    key: str | int | None,
    input: bytes | None,
    body: bytes,
    output: bool,
    t0: float | None,
    t1: float | None,
) -> bytes:
    """A format-2 record, refused like the core refuses it (the same error classes, checked
    in the same order)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    if type(kind) is bool or not isinstance(kind, int):
        raise TypeError(f"kind must be an int, not {type(kind).__name__}")
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    _check_range(seq, "seq", MAX_SEQ)
    _check_range(attempt, "attempt", MAX_ATTEMPT)
    name_utf8 = name.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a surrogate
    flags = FLAG_OUTPUT if output else 0
    key_utf8 = None
    if key is not None:
        flags |= FLAG_KEY
        if type(key) is str:
            key_utf8 = key.encode("utf-8")
        elif type(key) is int:
            flags |= FLAG_KEY_INT
            key_utf8 = str(key).encode("ascii")
        else:
            raise TypeError(f"a step key is a str or an int, not {type(key).__name__}")
        if not key_utf8:
            raise ValueError("a step key must not be empty")
    t0_us = t1_us = None
    if t0 is not None:
        flags |= FLAG_T0
        t0_us = micros(t0, "t0")
    if t1 is not None:
        flags |= FLAG_T1
        t1_us = micros(t1, "t1")
    body = bytes(memoryview(body))
    if input is not None:
        input = bytes(memoryview(input))
        flags |= FLAG_INPUT
    if not body:
        raise ValueError("a record's body must not be empty")
    if input is not None and not input:
        raise ValueError("a record's input must not be empty")
    t1_field = None
    if t1_us is not None:
        t1_field = t1_us if t0_us is None else zigzag(t1_us - t0_us)
    fields = build_fields(
        kind, flags, seq, attempt, name_utf8, key_utf8, input, body, t0_us, t1_field
    )
    if len(fields) > MAX_PAYLOAD:
        raise ValueError("record too long")
    return seal(fields)


def encode_record_v1(
    kind: int, seq: int, attempt: int, name_hash: int, input_digest: int, payload: bytes
) -> bytes:
    """A format-1 record (surestep 0.1 wrote these; the core no longer can)."""
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
    head = HEADER.pack(1, kind, attempt, seq, name_hash, input_digest, len(payload), 0)[:28]
    return head + struct.pack("<I", _checksum(head + payload)) + payload


def _decode_v1(data: bytes) -> Record:
    """A format-1 record filling all of ``data`` (``data[0] == 1``)."""
    if len(data) < HEADER_SIZE:  # named by the sequence number, if that much is there
        seq = struct.unpack_from("<I", data, 4)[0] if len(data) >= 8 else None
        raise JournalCorruptError("short", seq=seq)
    _version, kind, attempt, seq, nh, digest, length, checksum = HEADER.unpack_from(data)
    if len(data) != HEADER_SIZE + length:
        raise JournalCorruptError("length", seq=seq)
    payload = data[HEADER_SIZE:]
    if checksum != _checksum(data[:28] + payload):
        raise JournalCorruptError("checksum", seq=seq)
    if kind not in KINDS:
        raise JournalCorruptError("kind", seq=seq)
    return Record(
        version=1,
        kind=kind,
        attempt=attempt,
        seq=seq,
        raw=data,
        payload=payload,
        header_name_hash=nh,
        header_input_digest=digest,
    )


_DECIMAL = re.compile(r"0|-?[1-9][0-9]*")  # what str(int) writes


def _decode_v2(data: bytes, start: int) -> tuple[Record, int]:
    """The format-2 record at ``data[start]`` (``data[start] == 2``) and where it ends."""
    try:
        length, pos = read_varint(data, start + 1, len(data))
    except _BadFieldError:
        raise JournalCorruptError("length") from None
    end = pos + length
    if end + 4 > len(data):
        raise JournalCorruptError("truncated")
    if length < 2:
        raise JournalCorruptError("too few fields")
    (stored,) = struct.unpack_from("<I", data, end)
    if stored != _checksum(data[start:end]):
        try:  # the error names the step where its number still reads
            named: int | None = read_varint(data, pos + 2, end)[0]
        except _BadFieldError:
            named = None
        if named is not None and named > MAX_SEQ:
            named = None
        raise JournalCorruptError("checksum", seq=named)
    kind, flags = data[pos], data[pos + 1]
    seq: int | None = None

    def field(what: str) -> int:
        nonlocal pos
        try:
            value, pos = read_varint(data, pos, end)
        except _BadFieldError:
            raise JournalCorruptError(what, seq=seq) from None
        return value

    def span(what: str, allow_empty: bool) -> bytes:
        nonlocal pos
        n = field(what)
        if n > end - pos or (n == 0 and not allow_empty):
            raise JournalCorruptError(what, seq=seq)
        pos += n
        return data[pos - n : pos]

    def text(what: str, allow_empty: bool) -> str:
        try:
            return span(what, allow_empty).decode("utf-8")
        except UnicodeDecodeError:
            raise JournalCorruptError(f"{what} not UTF-8", seq=seq) from None

    pos += 2
    value = field("seq")
    if value > MAX_SEQ:
        raise JournalCorruptError("seq")
    seq = value
    if kind not in KINDS:
        raise JournalCorruptError("kind", seq=seq)
    if flags & ~FLAGS_ALL or (flags & FLAG_KEY_INT and not flags & FLAG_KEY):
        raise JournalCorruptError("flags", seq=seq)
    attempt = field("attempt")
    if attempt > MAX_ATTEMPT:
        raise JournalCorruptError("attempt", seq=seq)
    t0_us = t1_us = None
    if flags & FLAG_T0:
        t0_us = field("t0")
        if t0_us > MAX_MICROS:
            raise JournalCorruptError("t0", seq=seq)
    if flags & FLAG_T1:
        t1_field = field("t1")
        if t0_us is None:
            t1_us = t1_field
            if t1_us > MAX_MICROS:
                raise JournalCorruptError("t1", seq=seq)
        else:
            t1_us = t0_us + unzigzag(t1_field)
            if not 0 <= t1_us <= MAX_MICROS:
                raise JournalCorruptError("t1", seq=seq)
    name = text("name", allow_empty=True)
    key: str | int | None = None
    if flags & FLAG_KEY:
        key = text("key", allow_empty=False)
        if flags & FLAG_KEY_INT:
            if not _DECIMAL.fullmatch(key):
                raise JournalCorruptError("int key", seq=seq)
            try:
                key = int(key)
            except ValueError:  # more digits than str(int) writes (sys.int_info)
                raise JournalCorruptError("int key", seq=seq) from None
    inp = span("input", allow_empty=False) if flags & FLAG_INPUT else None
    if pos >= end:
        raise JournalCorruptError("no body", seq=seq)
    rec = Record(
        version=2,
        kind=kind,
        attempt=attempt,
        seq=seq,
        raw=data[start : end + 4],
        flags=flags,
        name=name,
        key=key,
        input=inp,
        body=data[pos:end],
        t0_us=t0_us,
        t1_us=t1_us,
    )
    return rec, end + 4


def _check_version(data: bytes, pos: int) -> None:
    """The format byte at ``data[pos]`` is one this model reads (1 or 2)."""
    if pos >= len(data):
        raise JournalCorruptError("empty")
    if data[pos] > FORMAT_VERSION:
        raise UnsupportedFormatError("newer format")
    if data[pos] == 0:
        raise JournalCorruptError("version 0")


def decode_record(buf: bytes) -> Record:
    """Exactly one record of either format."""
    data = bytes(memoryview(buf))
    _check_version(data, 0)
    if data[0] == 1:
        return _decode_v1(data)
    rec, end = _decode_v2(data, 0)
    if end != len(data):
        raise JournalCorruptError("trailing bytes", seq=rec.seq)
    return rec


def decode_records(buf: bytes) -> list[Record]:
    """One format-1 record, or one or more format-2 records back to back."""
    data = bytes(memoryview(buf))
    _check_version(data, 0)
    if data[0] == 1:
        return [_decode_v1(data)]
    out: list[Record] = []
    pos = 0
    while pos < len(data):
        # Each record starts with its format byte, read as decode_record reads it (0: never
        # existed, 3 and up: newer), except that format 1 stands alone in its value.
        if data[pos] == 1:
            raise JournalCorruptError("format 1 after format 2", seq=out[-1].seq)
        _check_version(data, pos)
        rec, pos = _decode_v2(data, pos)
        out.append(rec)
    return out


def holds_record(buf: bytes, seq: int) -> bool:
    """Whether format-2 records back to back hold one of step ``seq``, read as the LMDB
    store reads a chunk: each record's length and step number only, no checksum."""
    data = bytes(memoryview(buf))
    pos = 0
    while pos < len(data):
        try:
            if data[pos] != 2:
                raise _BadFieldError("not format 2")
            length, at = read_varint(data, pos + 1, len(data))
            if length < 2 or length + 4 > len(data) - at:
                raise _BadFieldError("cut off")
        except _BadFieldError:
            raise JournalCorruptError("length") from None
        end = at + length
        try:
            found, _ = read_varint(data, at + 2, end)
        except _BadFieldError:
            raise JournalCorruptError("step number") from None
        if found == seq:
            return True
        pos = end + 4
    return False


def reencode(rec: Record) -> bytes:
    """The bytes an encoder writes for what ``rec`` holds (format 2, from its microseconds,
    not from its float seconds, which lose microseconds past about 2**51 of them)."""
    assert rec.version == 2 and rec.name is not None and rec.body is not None
    key = None if rec.key is None else str(rec.key).encode("utf-8")
    t1_field = None
    if rec.t1_us is not None:
        t1_field = rec.t1_us if rec.t0_us is None else zigzag(rec.t1_us - rec.t0_us)
    fields = build_fields(
        rec.kind,
        rec.flags,
        rec.seq,
        rec.attempt,
        rec.name.encode("utf-8"),
        key,
        rec.input,
        rec.body,
        rec.t0_us,
        t1_field,
    )
    return seal(fields)


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

NOT_RECORDED = object()  # the oracle's own; tests compare "is the sentinel" on both sides


@dataclass
class ReplayIndex:
    records: dict[int, Record] = field(default_factory=dict)
    consumed: set[int] = field(default_factory=set)

    @classmethod
    def from_records(cls, buffers: Iterable[bytes]) -> ReplayIndex:
        index = cls()
        for buf in buffers:
            for rec in decode_records(buf):
                index._insert(rec)
        return index

    def _insert(self, rec: Record) -> None:
        if rec.seq in self.records:
            raise JournalCorruptError("duplicate", seq=rec.seq)
        self.records[rec.seq] = rec

    def add(self, buf: bytes) -> Record:
        rec = decode_record(buf)
        self._insert(rec)
        return rec

    def lookup(self, seq: int, ident: str, input_canonical: bytes) -> Record | None:
        if not isinstance(seq, int):
            raise TypeError(f"seq must be an int, not {type(seq).__name__}")
        if not isinstance(ident, str):
            raise TypeError(f"ident must be a str, not {type(ident).__name__}")
        rec = self.records.get(seq)
        if rec is None:
            return None
        recorded: dict[str, Any]
        if rec.version == 1:
            same = rec.header_name_hash == name_hash(
                ident
            ) and rec.header_input_digest == input_digest(input_canonical)
            recorded = {
                "name_hash": f"{rec.header_name_hash:016x}",
                "input_digest": f"{rec.header_input_digest:016x}",
                "kind": rec.kind,
            }
        else:
            same = rec.ident == ident and bytes(memoryview(input_canonical)) == (
                b"null" if rec.input is None else rec.input
            )
            recorded = {"name": rec.ident, "kind": rec.kind, "input": rec.input}
        if not same:
            raise NonDeterminismError(
                seq,
                recorded=recorded,
                requested={"name": ident, "input": bytes(input_canonical)},
            )
        self.consumed.add(seq)
        return rec

    def replay(
        self, seq: int, ident: str, input_canonical: bytes, loads: Callable[[bytes], Any]
    ) -> Any:
        rec = self.lookup(seq, ident, input_canonical)
        if rec is None:
            return NOT_RECORDED
        if rec.kind != KIND_STEP:
            return rec
        if rec.version == 2:
            if not rec.flags & FLAG_OUTPUT:
                return rec
            assert rec.body is not None
            try:
                return loads(rec.body)
            except ValueError:  # not JSON: the caller reads the record
                return rec
        assert rec.payload is not None
        try:
            data = loads(rec.payload)
        except ValueError:
            return rec
        if type(data) is dict and "o" in data and type(data.get("n")) is str:
            return data["o"]
        return rec

    def get(self, seq: int) -> Record | None:
        if not isinstance(seq, int):
            raise TypeError(f"seq must be an int, not {type(seq).__name__}")
        return self.records.get(seq)

    def unconsumed(self) -> list[int]:
        return sorted(set(self.records) - self.consumed)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def max_seq(self) -> int:
        return max(self.records, default=-1)
