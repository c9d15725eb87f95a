"""Fuzz harness: the record codec (``decode_record``, ``encode_record``) and step keys.

``one_input(data)`` turns the fuzz bytes into one buffer (raw bytes, a well-formed record
built from fuzzed fields, or one with a single defect and, optionally, a valid checksum
over it) and asserts, for that buffer:

- ``decode_record`` returns a record or raises ``JournalCorruptError`` /
  ``UnsupportedFormatError``; any other exception, or a crash under ASan/UBSan, is a finding;
- it decides like the pure-Python oracle (``tests/oracle.py``): same outcome, same fields;
- it decides the same for ``bytes``, ``bytearray``, a ``memoryview`` and an unaligned slice;
- an error's ``seq``, when set, is the sequence number in the header;
- a record that decodes re-encodes to the very same bytes;
- ``split_step_key`` splits 20 bytes into run key and big-endian seq (and ``step_key``
  rebuilds them), and refuses every other length with ``JournalCorruptError``;
- ``step_key`` refuses a run key of the wrong size or a seq out of range with ``ValueError``.

Run under atheris with ``fuzz/run.py decode`` (``make fuzz``).
"""

from __future__ import annotations

import struct

from fuzz_common import Reader, oracle, outcome, reseal

from surestep import _core
from surestep.errors import JournalCorruptError

_HEAD = struct.Struct("<BBHIQQII")


def one_input(data: bytes) -> None:
    inp = Reader(data)
    mode = inp.u8() % 6
    if mode == 0:
        check_record(inp.rest())
    elif mode == 1:
        check_record(_built(inp, sealed=True))
    elif mode == 2:
        check_record(_damaged(inp))
    elif mode == 3:
        check_encode(inp)
    elif mode == 4:
        check_split(inp.rest())
    else:
        check_step_key(inp)


def _built(inp: Reader, sealed: bool) -> bytes:
    """A record from fuzzed header fields (any version and kind), length field honest."""
    version = inp.u8() % 4  # 0 (never existed), 1 (today), 2-3 (newer)
    kind = inp.u8() % 10  # 1..7 exist; 0, 8, 9 do not
    attempt, seq, name, digest = inp.u16(), inp.u32(), inp.u64(), inp.u64()
    payload = inp.blob(200)
    raw = _HEAD.pack(version, kind, attempt, seq, name, digest, len(payload), 0)[:28]
    raw += b"\0\0\0\0" + payload
    return reseal(raw) if sealed else raw


def _damaged(inp: Reader) -> bytes:
    """A sealed record with one defect: cut, extended, a byte changed, a lying length."""
    raw = bytearray(_built(inp, sealed=True))
    how, where, value, reseal_after = inp.u8() % 4, inp.u16(), inp.u8(), inp.u8() & 1
    if how == 0:
        raw = raw[: where % (len(raw) + 1)]
    elif how == 1:
        raw += inp.blob(16) or b"\0"
    elif how == 2:
        raw[where % len(raw)] ^= value or 1
    else:
        struct.pack_into("<I", raw, 24, inp.u32())
    if reseal_after and len(raw) >= _core.HEADER_SIZE:
        return reseal(raw)
    return bytes(raw)


def check_record(buf: bytes) -> None:
    got = outcome(_core.decode_record, buf)
    expected = outcome(oracle.decode_record, buf)
    assert got[0] == expected[0], (buf, got, expected)
    if got[0] == "ok":
        assert got == expected, (buf, got, expected)
        version, kind, attempt, seq, name, digest, payload = got[1]
        assert version == _core.FORMAT_VERSION
        assert _core.encode_record(kind, seq, attempt, name, digest, payload) == buf
    elif got[1] is not None:
        assert len(buf) >= 8 and got[1] == int.from_bytes(buf[4:8], "little"), (buf, got)
    if got[0] == "unsupported":
        assert buf[0] > _core.FORMAT_VERSION
    # The same answer whatever exports the buffer, aligned or not.
    shifted = memoryview(b"\x00" + buf)[1:]
    for view in (bytearray(buf), memoryview(buf), shifted):
        assert outcome(_core.decode_record, view) == got


def check_encode(inp: Reader) -> None:
    """``encode_record`` over fuzzed fields: refused out of range, else a lossless round trip."""
    kind = inp.u8() % 10
    seq = inp.u64() >> (inp.u8() % 64)  # mostly small, sometimes past MAX_SEQ
    attempt = inp.u32() >> (inp.u8() % 32)
    name, digest = inp.u64(), inp.u64()
    payload = inp.blob(200)
    valid = kind in _core.KINDS and seq <= _core.MAX_SEQ and attempt <= 0xFFFF
    try:
        raw = _core.encode_record(kind, seq, attempt, name, digest, payload)
    except ValueError:
        assert not valid, (kind, seq, attempt)
        return
    assert valid, (kind, seq, attempt)
    assert raw == oracle.encode_record(kind, seq, attempt, name, digest, payload)
    expected = (_core.FORMAT_VERSION, kind, attempt, seq, name, digest, payload)
    assert outcome(_core.decode_record, raw) == ("ok", expected)


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
