"""Fuzz harness: the record codec (``decode_record``, ``decode_records``, ``encode_record``)
and step keys.

``one_input(data)`` turns the fuzz bytes into one buffer (raw bytes; a format-2 record
sealed around fuzzed raw fields; a format-1 record from fuzzed header fields; either with
a single defect and, optionally, a valid checksum over it; or a journal value of several
records back to back, possibly followed by garbage) and asserts, for that buffer:

- ``decode_record`` and ``decode_records`` return records or raise
  ``JournalCorruptError`` / ``UnsupportedFormatError``; any other exception, or a crash
  under ASan/UBSan, is a finding;
- they decide like the pure-Python oracle (``tests/support/oracle.py``): same outcome, same
  fields, the same ``seq`` on an error;
- they decide the same for ``bytes``, ``bytearray``, a ``memoryview`` and an unaligned slice;
- a record that decodes is exactly what an encoder writes for its fields (the oracle's,
  and the core's own where float seconds carry the times losslessly);
- ``decode_record`` accepts a buffer exactly when ``decode_records`` finds one record in it;
- ``encode_record`` over fuzzed arguments refuses them as the oracle does (the same error
  class) or writes the oracle's bytes, which decode back to the arguments;
- ``split_step_key`` splits 20 bytes into run key and big-endian seq (and ``step_key``
  rebuilds them), and refuses every other length with ``JournalCorruptError``;
- ``step_key`` refuses a run key of the wrong size or a seq out of range with ``ValueError``.

Run under atheris with ``fuzz/run.py decode`` (``make fuzz``).
"""

from __future__ import annotations

import struct
from typing import Any

from fuzz_common import Reader, oracle, outcome, reseal

from surestep import _core
from surestep.errors import JournalCorruptError

_HEAD = struct.Struct("<BBHIQQII")
MODES = 8
LOSSLESS_US = 2**51  # below this, seconds -> microseconds -> seconds is exact


def one_input(data: bytes) -> None:
    inp = Reader(data)
    mode = inp.u8() % MODES
    if mode == 0:
        check_record(inp.rest())
    elif mode == 1:
        check_record(_built_v2(inp))
    elif mode == 2:
        check_record(_built_v1(inp, sealed=True))
    elif mode == 3:
        check_record(_damaged(inp))
    elif mode == 4:
        check_encode(inp)
    elif mode == 5:
        check_record(_value(inp))
    elif mode == 6:
        check_split(inp.rest())
    else:
        check_step_key(inp)


# ---------------------------------------------------------------- building inputs


def _varint_value(inp: Reader) -> int:
    """Mostly small, sometimes any 64-bit value (so every varint width turns up)."""
    return inp.u64() >> (inp.u8() % 65)


def _kind(inp: Reader) -> int:
    """Mostly a kind that exists (1..7), sometimes 0, 8 or 9."""
    pick = inp.u8()
    return sorted(oracle.KINDS)[pick % 7] if pick < 224 else pick % 10


def _utf8(inp: Reader, limit: int) -> bytes:
    """Mostly ASCII, sometimes any bytes (not always UTF-8)."""
    raw = inp.blob(limit)
    return bytes(b & 0x7F for b in raw) if inp.u8() < 200 else raw


def _fields_v2(inp: Reader) -> bytes:
    """Raw format-2 fields: any kind and flags, fuzzed values, lengths honest or not."""
    kind = _kind(inp)
    pick = inp.u8()
    flags = pick & 0x3F if pick < 224 else pick  # mostly known flags, sometimes any
    if flags & oracle.FLAG_KEY_INT and pick < 200:
        flags |= oracle.FLAG_KEY  # mostly a key where an int key is flagged
    seq, attempt = _varint_value(inp), _varint_value(inp)
    t0 = _varint_value(inp) if flags & oracle.FLAG_T0 else None
    t1 = _varint_value(inp) if flags & oracle.FLAG_T1 else None
    name = _utf8(inp, 24)
    key = None
    if flags & oracle.FLAG_KEY:
        key = str(inp.u64() - 2**63).encode() if flags & oracle.FLAG_KEY_INT else _utf8(inp, 12)
        if inp.u8() < 16:  # a non-canonical or broken int key now and then
            key = inp.blob(6)
    given = inp.blob(24) if flags & oracle.FLAG_INPUT else None
    body = inp.blob(40) or (b"" if inp.u8() < 32 else b"1")
    return oracle.build_fields(kind, flags, seq, attempt, name, key, given, body, t0, t1)


def _built_v2(inp: Reader) -> bytes:
    """A sealed format-2 record around fuzzed fields (the checksum never hides a defect)."""
    fields = _fields_v2(inp)
    version = 2 if inp.u8() < 240 else inp.u8() % 4
    return oracle.seal(fields, version=version)


def _built_v1(inp: Reader, sealed: bool) -> bytes:
    """A record from fuzzed format-1 header fields (any version and kind), length honest."""
    version = 1 if inp.u8() < 200 else inp.u8() % 4
    kind = inp.u8() % 10
    attempt, seq, name, digest = inp.u16(), inp.u32(), inp.u64(), inp.u64()
    payload = inp.blob(200)
    raw = _HEAD.pack(version, kind, attempt, seq, name, digest, len(payload), 0)[:28]
    raw += b"\0\0\0\0" + payload
    return reseal(raw) if sealed else raw


def _damaged(inp: Reader) -> bytes:
    """A sealed record with one defect: cut, extended, a byte changed, a lying length."""
    raw = bytearray(_built_v2(inp) if inp.u8() & 1 else _built_v1(inp, sealed=True))
    how, where, value, reseal_after = inp.u8() % 4, inp.u16(), inp.u8(), inp.u8() & 1
    if how == 0:
        raw = raw[: where % (len(raw) + 1)]
    elif how == 1:
        raw += inp.blob(16) or b"\0"
    elif how == 2:
        raw[where % len(raw)] ^= value or 1
    elif raw[0] == 1 and len(raw) >= _core.HEADER_SIZE:  # a format-1 length that lies
        struct.pack_into("<I", raw, 24, inp.u32())
    else:  # a format-2 length field that lies
        length, pos = _length_field(bytes(raw))
        raw[1:pos] = oracle.varint((length + (value or 1) - 128) % 2**64)
    return reseal(raw) if reseal_after else bytes(raw)


def _length_field(raw: bytes) -> tuple[int, int]:
    try:
        return oracle.read_varint(raw, 1, len(raw))
    except Exception:
        return 0, 1


def _value(inp: Reader) -> bytes:
    """A journal value: format-2 records back to back, maybe a defect or something after."""
    parts = [_built_v2(inp) if inp.u8() & 1 else _encoded(inp) for _ in range(1 + inp.u8() % 4)]
    tail = inp.u8() % 6
    if tail == 1:
        parts.append(_built_v1(inp, sealed=True))
    elif tail == 2:
        parts.append(inp.blob(8))
    elif tail == 3:
        parts.insert(0, _built_v1(inp, sealed=True))
    elif tail == 4:
        parts[inp.u8() % len(parts)] = _damaged(inp)
    return b"".join(parts)


def _encoded(inp: Reader) -> bytes:
    """A well-formed record from the core's encoder (small, so values hold several)."""
    key: str | int | None = (None, "k", 7, -1)[inp.u8() % 4]
    given = (None, b"null", b"[[1],{}]")[inp.u8() % 3]
    t0 = (None, 1767225600.25, 0.0)[inp.u8() % 3]
    t1 = (None, 1767225600.5, 1767225599.0)[inp.u8() % 3]
    kind = sorted(_core.KINDS)[inp.u8() % len(_core.KINDS)]
    body = inp.blob(12) or b"1"
    return _core.encode_record(kind, inp.u8(), inp.u8(), "s", key, given, body, True, t0, t1)


# ---------------------------------------------------------------- checks


def check_record(buf: bytes) -> None:
    got = outcome(_core.decode_record, buf)
    assert got == outcome(oracle.decode_record, buf), (buf, got)
    if got[0] == "ok":
        _check_canonical(buf, got[1])
    if got[0] == "unsupported":
        assert buf[0] > _core.FORMAT_VERSION
    all_got = outcome(_core.decode_records, buf)
    assert all_got == outcome(oracle.decode_records, buf), (buf, all_got)
    if all_got[0] == "ok":
        assert all_got[1], buf  # never an empty list
        assert b"".join(rec[-1] for rec in all_got[1]) == buf  # the records tile the value
        for rec in all_got[1]:
            _check_canonical(rec[-1], rec)
    # One record decodes alone exactly when the value holds one record.
    assert (got[0] == "ok") == (all_got[0] == "ok" and len(all_got[1]) == 1), (got, all_got)
    if got[0] == "ok":
        assert all_got[1] == [got[1]]
    # The store's header scan of a chunk agrees with the oracle's, and with the records.
    seqs = [rec[4] for rec in all_got[1]] if all_got[0] == "ok" else []  # fields: seq at 4
    for seq in {*seqs, len(buf) & 0xFFFF}:
        scanned = _holds(_core.holds_record, buf, seq)
        assert scanned == _holds(oracle.holds_record, buf, seq), (buf, seq, scanned)
        if all_got[0] == "ok" and buf[0] == 2:  # format 1 is never in a chunk
            assert scanned == (seq in seqs), (buf, seq)
    # The same answer whatever exports the buffer, aligned or not.
    shifted = memoryview(b"\x00" + buf)[1:]
    for view in (bytearray(buf), memoryview(buf), shifted):
        assert outcome(_core.decode_record, view) == got
        assert outcome(_core.decode_records, view) == all_got


def _holds(scan: Any, buf: bytes, seq: int) -> Any:
    try:
        return scan(buf, seq)
    except JournalCorruptError:
        return "corrupt"


def _check_canonical(raw: bytes, rec_fields: Any) -> None:
    """An accepted record is exactly what an encoder writes for what it holds."""
    rec = oracle.decode_record(raw)
    assert oracle.fields(rec) == rec_fields
    if rec.version == 1:
        assert rec.payload is not None
        again = oracle.encode_record_v1(
            rec.kind, rec.seq, rec.attempt, rec.name_hash, rec.input_digest, rec.payload
        )
        assert again == raw
        return
    assert oracle.reencode(rec) == raw
    times = [t for t in (rec.t0_us, rec.t1_us) if t is not None]
    if all(0 <= t < LOSSLESS_US for t in times):  # the core's encoder writes it back too
        assert rec.name is not None and rec.body is not None
        output = bool(rec.flags & _core.FLAG_OUTPUT)
        again = _core.encode_record(
            rec.kind,
            rec.seq,
            rec.attempt,
            rec.name,
            rec.key,
            rec.input,
            rec.body,
            output,
            rec.t0,
            rec.t1,
        )
        assert again == raw


def _text(inp: Reader, limit: int) -> str:
    """Mostly ASCII; sometimes any text, lone surrogates included (bytes that are not
    UTF-8 become ones)."""
    return _utf8(inp, limit).decode("utf-8", "surrogateescape")


def _time(inp: Reader) -> Any:
    pick = inp.u8() % 8
    if pick in (0, 7):
        return None
    if pick == 1:
        return struct.unpack("<d", inp.take(8))[0]  # any double: nan, inf, negative, huge
    if pick == 2:
        return inp.u64() >> (inp.u8() % 65)  # an int of seconds
    if pick == 3:
        return ("1.0", True, 1j)[inp.u8() % 3]  # wrong types (True is an int: accepted)
    return 1.5e9 + inp.u32() / 1000 + inp.u8() / 1e6  # a realistic clock


def _key(inp: Reader) -> Any:
    pick = inp.u8() % 8
    if pick < 3:
        return None
    if pick < 5:
        return _text(inp, 12) or "k"
    if pick < 7:
        return (inp.u64() - 2**63) >> (inp.u8() % 64)
    return (True, 1.0, b"k", "")[inp.u8() % 4]  # refused: wrong types, empty


def check_encode(inp: Reader) -> None:
    """``encode_record`` over fuzzed arguments: refused like the oracle refuses them, else
    the oracle's bytes, which decode back to the arguments."""
    kind = _kind(inp)
    seq = inp.u64() >> (24 + inp.u8() % 41)  # mostly in range, sometimes past MAX_SEQ
    attempt = inp.u32() >> (16 + inp.u8() % 17)  # past 0xFFFF now and then
    name = _text(inp, 24)
    key = _key(inp)
    given = inp.blob(24) if inp.u8() & 1 else None  # b"" is refused
    body = inp.blob(40) or (b"" if inp.u8() < 32 else b"{}")  # b"" is refused
    output = bool(inp.u8() & 1)
    t0, t1 = _time(inp), _time(inp)
    args = (kind, seq, attempt, name, key, given, body, output, t0, t1)
    core = _encoded_outcome(_core.encode_record, args)
    assert core == _encoded_outcome(oracle.encode_record, args), (args, core)
    if core[0] != "ok":
        return
    raw = core[1]
    got = outcome(_core.decode_record, raw)
    assert got == outcome(oracle.decode_record, raw)
    assert got[0] == "ok", (args, got)  # what the encoder writes, the decoder reads
    rec = _core.decode_record(raw)
    assert (rec.kind, rec.seq, rec.attempt, rec.name, rec.key) == (kind, seq, attempt, name, key)
    assert (rec.input, rec.body, bool(rec.flags & _core.FLAG_OUTPUT)) == (given, body, output)
    for read, asked in ((rec.t0, t0), (rec.t1, t1)):
        expected = None if asked is None else oracle.seconds(oracle.micros(asked))
        assert read == expected, (read, asked)


def _encoded_outcome(encode: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    try:
        return ("ok", encode(*args))
    except (TypeError, ValueError, OverflowError) as exc:
        return (type(exc).__name__,)


def check_split(key: bytes) -> None:
    try:
        run, seq = _core.split_step_key(key)
    except JournalCorruptError:
        assert len(key) != _core.STEP_KEY_SIZE, key
        return
    assert len(key) == _core.STEP_KEY_SIZE, key
    assert (run, seq) == oracle.split_step_key(key)
    assert _core.step_key(run, seq) == key
    assert _core.split_step_key(memoryview(bytearray(key))) == (run, seq)


def check_step_key(inp: Reader) -> None:
    run = inp.blob(40)
    seq = inp.u64() >> (inp.u8() % 64)
    valid = len(run) == _core.RUN_KEY_SIZE and seq <= _core.MAX_SEQ
    try:
        key = _core.step_key(run, seq)
    except ValueError:
        assert not valid, (run, seq)
        return
    assert valid and key == oracle.step_key(run, seq)
    assert _core.split_step_key(key) == (run, seq)
