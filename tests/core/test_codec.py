"""The journal record codec: round trips, every corruption class, hostile input."""

import mmap
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import oracle
from surestep import _core
from surestep.errors import JournalCorruptError, UnsupportedFormatError

U64 = st.integers(0, 2**64 - 1)
FIELDS = st.tuples(
    st.sampled_from(sorted(_core.KINDS)),
    st.integers(0, _core.MAX_SEQ),
    st.integers(0, 2**16 - 1),
    U64,
    U64,
    st.binary(max_size=300),
)


DEFAULTS = {
    "kind": _core.KIND_STEP,
    "seq": 3,
    "attempt": 1,
    "name_hash": 0x0123456789ABCDEF,
    "input_digest": 0xFEDCBA9876543210,
    "payload": b'{"result": [1, 2, 3], "note": "forty bytes long"}',
}


def make(**fields: object) -> bytes:
    """A valid record: ``DEFAULTS`` with ``fields`` replaced."""
    return _core.encode_record(**{**DEFAULTS, **fields})  # type: ignore[arg-type]


def reseal(raw: bytes | bytearray) -> bytes:
    """``raw`` with its checksum recomputed: a record whose only defect is the one we made."""
    raw = bytearray(raw)
    checksum = oracle.xxh64(bytes(raw[:28] + raw[32:]), _core.CHECKSUM_SEED) & 0xFFFFFFFF
    raw[28:32] = struct.pack("<I", checksum)
    return bytes(raw)


def outcome(decode, buf):  # type: ignore[no-untyped-def]
    """What a decoder does with ``buf``: the fields it read, or the error class it raised."""
    try:
        rec = decode(buf)
    except UnsupportedFormatError:
        return "unsupported"
    except JournalCorruptError:
        return "corrupt"
    fields = (rec.version, rec.kind, rec.attempt, rec.seq, rec.name_hash, rec.input_digest)
    return (*fields, rec.payload)


# ---------------------------------------------------------------- round trips


def test_constants() -> None:
    assert _core.FORMAT_VERSION == 1
    assert _core.HEADER_SIZE == 32
    assert _core.MAX_SEQ == 2**32 - 1
    assert _core.MAX_PAYLOAD == 2**31 - 1
    kinds = [
        _core.KIND_STEP,
        _core.KIND_STEP_ERROR,
        _core.KIND_SLEEP,
        _core.KIND_EVENT,
        _core.KIND_VALUE,
        _core.KIND_CHILD,
        _core.KIND_STATE,
    ]
    assert kinds == [1, 2, 3, 4, 5, 6, 7]
    assert frozenset(kinds) == _core.KINDS
    assert isinstance(_core.KINDS, frozenset)
    assert isinstance(_core.__version__, str)


@settings(max_examples=300, deadline=None)
@given(FIELDS)
def test_round_trip_matches_oracle(fields: tuple[int, int, int, int, int, bytes]) -> None:
    kind, seq, attempt, name, digest, payload = fields
    raw = _core.encode_record(*fields)
    assert raw == oracle.encode_record(*fields)
    assert len(raw) == _core.HEADER_SIZE + len(payload)
    rec = _core.decode_record(raw)
    assert (rec.version, rec.kind, rec.attempt, rec.seq) == (1, kind, attempt, seq)
    assert (rec.name_hash, rec.input_digest, rec.payload) == (name, digest, payload)
    assert outcome(_core.decode_record, raw) == outcome(oracle.decode_record, raw)


def test_round_trip_extremes() -> None:
    top = 2**64 - 1
    for fields in [
        (_core.KIND_STATE, _core.MAX_SEQ, 2**16 - 1, top, top, b""),
        (_core.KIND_STEP, 0, 0, 0, 0, b""),
        (_core.KIND_STEP_ERROR, 1, 2, 3, 4, bytes(range(256)) * 40),
    ]:
        rec = _core.decode_record(_core.encode_record(*fields))
        read = (rec.kind, rec.seq, rec.attempt, rec.name_hash, rec.input_digest, rec.payload)
        assert read == fields


def test_encode_accepts_any_buffer() -> None:
    payload = b'{"a": 1}'
    expected = make(payload=payload)
    assert make(payload=bytearray(payload)) == expected
    assert make(payload=memoryview(payload)) == expected
    with pytest.raises(TypeError):
        make(payload="text")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = make()
    expected = _core.decode_record(raw)
    assert _core.decode_record(bytearray(raw)) == expected
    assert _core.decode_record(memoryview(raw)) == expected
    framed = b"\xff" * 5 + raw + b"\xee" * 3
    assert _core.decode_record(memoryview(framed)[5 : 5 + len(raw)]) == expected
    with mmap.mmap(-1, len(raw)) as region:
        region[:] = raw
        assert _core.decode_record(region) == expected


def test_payload_is_copied() -> None:
    """An LMDB memoryview dies with its transaction: the record must not point into it."""
    buf = bytearray(make())
    view = memoryview(buf)
    rec = _core.decode_record(view)
    payload = rec.payload
    view.release()
    buf[_core.HEADER_SIZE :] = b"\x00" * (len(buf) - _core.HEADER_SIZE)
    assert type(rec.payload) is bytes
    assert rec.payload == payload != bytes(buf[_core.HEADER_SIZE :])


def test_released_memoryview_is_refused() -> None:
    view = memoryview(make())
    view.release()
    with pytest.raises(ValueError, match="released"):
        _core.decode_record(view)


# ---------------------------------------------------------------- the Record object


def test_record_is_read_only_and_compares_by_value() -> None:
    raw = make()
    rec = _core.decode_record(raw)
    for attr in ("version", "kind", "attempt", "seq", "name_hash", "input_digest", "payload"):
        with pytest.raises(AttributeError):
            setattr(rec, attr, 1)
    same = _core.decode_record(bytearray(raw))
    assert rec == same
    assert not rec != same  # noqa: SIM202 - __ne__ is what this checks
    assert hash(rec) == hash(same)
    other = _core.decode_record(make(attempt=2))
    assert rec != other
    assert rec != "a record"
    with pytest.raises(TypeError):
        _core.Record()


def test_record_repr() -> None:
    text = repr(_core.decode_record(make(seq=9, payload=b"x" * 100)))
    assert text.startswith("Record(version=1, kind=1, attempt=1, seq=9, ")
    assert "name_hash=0x0123456789abcdef" in text
    assert "input_digest=0xfedcba9876543210" in text
    assert "(100 bytes)" in text


# ---------------------------------------------------------------- corruption


def test_every_truncation_is_corrupt() -> None:
    raw = make()
    for n in range(len(raw)):
        with pytest.raises(JournalCorruptError) as info:
            _core.decode_record(raw[:n])
        assert type(info.value) is JournalCorruptError, n
        assert outcome(oracle.decode_record, raw[:n]) == "corrupt"


def test_every_single_bit_flip_is_refused() -> None:
    for raw in (make(), make(payload=b""), make(seq=2**32 - 1, payload=b"\x00" * 33)):
        for bit in range(len(raw) * 8):
            bad = bytearray(raw)
            bad[bit // 8] ^= 1 << (bit % 8)
            result = outcome(_core.decode_record, bad)
            expected = "unsupported" if bit < 8 and bad[0] > 1 else "corrupt"
            assert result == expected, (bit, result)
            assert outcome(oracle.decode_record, bad) == expected


def test_trailing_bytes_are_corrupt() -> None:
    raw = make()
    for extra in (b"\x00", b"junk", raw):
        with pytest.raises(JournalCorruptError, match="trailing") as info:
            _core.decode_record(raw + extra)
        assert info.value.seq == 3


def test_corrupt_errors_name_the_step() -> None:
    raw = bytearray(make(seq=41))
    raw[-1] ^= 0xFF
    with pytest.raises(JournalCorruptError, match="checksum") as info:
        _core.decode_record(raw)
    assert info.value.seq == 41
    assert "step 41" in str(info.value)


@pytest.mark.parametrize("version", [2, 3, 128, 255])
def test_newer_version_is_unsupported(version: int) -> None:
    raw = bytearray(make())
    raw[0] = version
    for buf in (reseal(raw), bytes(raw), bytes([version]), bytes(raw[:10])):
        with pytest.raises(UnsupportedFormatError) as info:
            _core.decode_record(buf)
        message = str(info.value)
        assert f"version {version}" in message
        assert "newer surestep" in message
        assert "upgrade" in message


def test_version_zero_is_corrupt() -> None:
    raw = bytearray(make())
    raw[0] = 0
    with pytest.raises(JournalCorruptError, match="version 0") as info:
        _core.decode_record(reseal(raw))
    assert type(info.value) is JournalCorruptError


@pytest.mark.parametrize("kind", [0, 8, 9, 127, 255])
def test_unknown_kind_is_corrupt(kind: int) -> None:
    raw = bytearray(make(seq=12))
    raw[1] = kind
    with pytest.raises(JournalCorruptError, match=f"unknown kind {kind}") as info:
        _core.decode_record(reseal(raw))
    assert type(info.value) is JournalCorruptError
    assert info.value.seq == 12


def test_huge_announced_length_is_corrupt() -> None:
    raw = bytearray(make())
    raw[24:28] = b"\xff\xff\xff\xff"
    with pytest.raises(JournalCorruptError, match="truncated"):
        _core.decode_record(reseal(raw))


def test_empty_and_non_buffers() -> None:
    with pytest.raises(JournalCorruptError, match="empty"):
        _core.decode_record(b"")
    with pytest.raises(TypeError):
        _core.decode_record("not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.decode_record(None)  # type: ignore[arg-type]


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_is_refused_like_the_oracle(garbage: bytes) -> None:
    result = outcome(_core.decode_record, garbage)
    assert result == outcome(oracle.decode_record, garbage)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FIELDS, st.data())
def test_damaged_records_are_refused_like_the_oracle(
    fields: tuple[int, int, int, int, int, bytes], data: st.DataObject
) -> None:
    """Garbage that starts out as a valid record reaches the deep checks, not just the first."""
    raw = bytearray(_core.encode_record(*fields))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = bytearray(reseal(raw))  # defects the checksum cannot hide
    cut = data.draw(st.integers(0, len(raw) + 3))
    buf = bytes(raw[:cut]) + b"\x00" * max(0, cut - len(raw))
    result = outcome(_core.decode_record, buf)
    assert result == outcome(oracle.decode_record, buf)
    if isinstance(result, tuple):  # accepted only when it is exactly a valid encoding
        _version, kind, attempt, seq, name, digest, payload = result
        assert _core.encode_record(kind, seq, attempt, name, digest, payload) == buf


# ---------------------------------------------------------------- encoder range checks


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", 0),
        ("kind", 8),
        ("kind", -1),
        ("seq", -1),
        ("seq", 2**32),
        ("attempt", -1),
        ("attempt", 2**16),
        ("name_hash", -1),
        ("name_hash", 2**64),
        ("input_digest", -1),
        ("input_digest", 2**64),
        ("input_digest", 2**200),
    ],
)
def test_encode_range_errors(field: str, value: int) -> None:
    fields = {**DEFAULTS, field: value}
    with pytest.raises(ValueError, match=field):
        _core.encode_record(**fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # the oracle agrees
        oracle.encode_record(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["kind", "seq", "attempt", "name_hash", "input_digest"])
def test_encode_type_errors(field: str) -> None:
    for value in (1.0, "1", None):
        with pytest.raises(TypeError):
            make(**{field: value})


def test_encode_payload_too_long() -> None:
    try:
        region = mmap.mmap(-1, _core.MAX_PAYLOAD + 1)  # address space only: never touched
    except (OSError, OverflowError, ValueError):
        pytest.skip("cannot map 2 GiB of address space here")
    with region, pytest.raises(ValueError, match="at most"):
        make(payload=region)
