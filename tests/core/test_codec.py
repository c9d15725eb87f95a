"""The journal record codec: round trips, every corruption class, hostile input.

Format 2 is written and read; format 1 (surestep 0.1) is only read, so its records come
from the oracle's format-1 encoder (and from the golden journals of ``tests/golden/``).
"""

import json
import mmap
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import oracle
from surestep import _core
from surestep.errors import JournalCorruptError, UnsupportedFormatError

GOLDEN_JOURNAL = Path(__file__).resolve().parent.parent / "golden" / "checkout-v1.json"

# ---------------------------------------------------------------- helpers

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)  # UTF-8 encodable
KEYS = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12),
    st.integers(-(2**70), 2**70),
)
# Times from realistic clocks to the far future.
TIMES = st.one_of(
    st.none(),
    st.floats(1.5e9, 2.2e9),
    st.floats(0, 2.2e12),
    st.integers(0, 2_200_000_000_000),
)
V2_FIELDS = st.tuples(
    st.sampled_from(sorted(_core.KINDS)),
    st.integers(0, _core.MAX_SEQ),
    st.integers(0, 2**16 - 1),
    TEXT,
    KEYS,
    st.none() | st.binary(min_size=1, max_size=60),
    st.binary(min_size=1, max_size=300),
    st.booleans(),
    TIMES,
    TIMES,
)
V1_FIELDS = st.tuples(
    st.sampled_from(sorted(_core.KINDS)),
    st.integers(0, _core.MAX_SEQ),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=300),
)

DEFAULTS: dict[str, Any] = {
    "kind": _core.KIND_STEP,
    "seq": 3,
    "attempt": 1,
    "name": "charge_card",
    "key": None,
    "input": b'[["o-1"],{}]',
    "body": b'{"result": [1, 2, 3], "note": "forty bytes long"}',
    "output": True,
    "t0": 1767225600.25,
    "t1": 1767225600.75,
}
V1_DEFAULTS: dict[str, Any] = {
    "kind": _core.KIND_STEP,
    "seq": 3,
    "attempt": 1,
    "name_hash": 0x0123456789ABCDEF,
    "input_digest": 0xFEDCBA9876543210,
    "payload": b'{"result": [1, 2, 3], "note": "forty bytes long"}',
}


def make(**fields: Any) -> bytes:
    """A valid format-2 record from the core: ``DEFAULTS`` with ``fields`` replaced."""
    return _core.encode_record(**{**DEFAULTS, **fields})


def make_v1(**fields: Any) -> bytes:
    """A valid format-1 record, from the oracle (the core writes format 2 only)."""
    return oracle.encode_record_v1(**{**V1_DEFAULTS, **fields})


def v2(fields: bytes) -> bytes:
    """A format-2 record around raw ``fields`` (any bytes), with a valid checksum."""
    return oracle.seal(fields)


def minimal_fields(**fields: Any) -> bytes:
    """Raw format-2 fields: a KIND_STEP output of step 5 named "n" unless told otherwise."""
    spec: dict[str, Any] = {
        "kind": _core.KIND_STEP,
        "flags": _core.FLAG_OUTPUT,
        "seq": 5,
        "attempt": 1,
        "name": b"n",
        "body": b"1",
    }
    return oracle.build_fields(**{**spec, **fields})


def outcome(decode: Any, buf: Any) -> Any:
    """What a decoder does with ``buf``: the fields it read, or the error class it raised."""
    try:
        got = decode(buf)
    except UnsupportedFormatError:
        return "unsupported"
    except JournalCorruptError:
        return "corrupt"
    if isinstance(got, list):
        return [fields(rec) for rec in got]
    return fields(got)


def fields(rec: Any) -> tuple[Any, ...]:
    """Every public field of a record (core or oracle), as a plain tuple."""
    got = oracle.fields(rec)
    assert got is not None
    return got


def ideal(buf: bytes) -> Any:
    """The spec's verdict: the oracle."""
    return oracle.decode_record(buf)


def ideal_all(buf: bytes) -> Any:
    return oracle.decode_records(buf)


def flips(raw: bytes) -> list[tuple[int, bytes]]:
    """Every single-bit flip of ``raw``, with the index of the bit."""
    out = []
    for bit in range(len(raw) * 8):
        bad = bytearray(raw)
        bad[bit // 8] ^= 1 << (bit % 8)
        out.append((bit, bytes(bad)))
    return out


# ---------------------------------------------------------------- constants


def test_constants() -> None:
    assert _core.FORMAT_VERSION == 2 == oracle.FORMAT_VERSION
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
    assert frozenset(kinds) == _core.KINDS == oracle.KINDS
    assert isinstance(_core.KINDS, frozenset)
    assert isinstance(_core.__version__, str)
    flags = [
        _core.FLAG_KEY,
        _core.FLAG_KEY_INT,
        _core.FLAG_INPUT,
        _core.FLAG_T0,
        _core.FLAG_T1,
        _core.FLAG_OUTPUT,
    ]
    assert flags == [1, 2, 4, 8, 16, 32]
    assert flags == [
        oracle.FLAG_KEY,
        oracle.FLAG_KEY_INT,
        oracle.FLAG_INPUT,
        oracle.FLAG_T0,
        oracle.FLAG_T1,
        oracle.FLAG_OUTPUT,
    ]


# ---------------------------------------------------------------- golden format-2 records

# Written once by the core; the oracle (written from the spec) must produce the very same
# bytes. If one of these changes, every stored journal is unreadable: fix the code.
TIMES_1 = (1767225600.25, 1767225600.75)
TIMES_2 = (1767225600.0, 1767225599.999)
ERROR_BODY = b'{"type":"ValueError","message":"no"}'
GOLDEN_V2 = [
    (
        (1, 7, 1, "charge_card", None, b'[["o-1"],{}]', b'{"txn":"t-42"}', True, *TIMES_1),
        "02"  # format 2
        "36"  # 54 bytes of fields
        "01"  # kind: KIND_STEP
        "3c"  # flags: INPUT | T0 | T1 | OUTPUT
        "07"  # seq 7
        "01"  # attempt 1
        "90a190b184e99103"  # t0: 1767225600250000 microseconds
        "c0843d"  # t1: zigzag(+500000) = 1000000
        "0b"
        + b"charge_card".hex()
        + "0c"
        + b'[["o-1"],{}]'.hex()
        + b'{"txn":"t-42"}'.hex()
        # the body is the rest of the fields
        + "50a3cd1b",  # checksum: low 32 bits of XXH64(02 .. body, CHECKSUM_SEED), LE
    ),
    (
        # The clock stepped back: t1 < t0.
        (1, 0, 3, "reserve", "lamp", b'[["lamp"],{}]', b'"reserved-lamp"', True, *TIMES_2),
        "0238013d0003808081b184e99103cf0f0772657365727665046c616d700d5b5b226c616d70225d2c7b"
        "7d5d2272657365727665642d6c616d7022d4323fa5",
    ),
    (
        (1, 300, 1, "shard", -12, None, b"null", True, None, 1767225601.5),  # an int key
        "021b0133ac0201e0c6dcb184e99103057368617264032d31326e756c6c70abfd7b",
    ),
    (
        (2, 2**32 - 1, 65535, "größe/☕", 12, b"[[],{}]", ERROR_BODY, False, 0, None),
        "0246020fffffffff0fffff03000b6772c3b6c39f652fe29895023132075b5b5d2c7b7d5d7b2274797065"
        "223a2256616c75654572726f72222c226d657373616765223a226e6f227deb92c208",
    ),
    (
        (3, 128, 0, "@sleep", None, None, b'{"until":1767225700.0}', False, None, None),
        "022203008001000640736c6565707b22756e74696c223a313736373232353730302e307d40b1168b",
    ),
]


@pytest.mark.parametrize(("args", "expected"), GOLDEN_V2)
def test_golden_v2_records(args: tuple[Any, ...], expected: str) -> None:
    assert _core.encode_record(*args).hex() == expected
    assert oracle.encode_record(*args).hex() == expected
    raw = bytes.fromhex(expected)
    rec = _core.decode_record(raw)
    assert fields(rec) == fields(oracle.decode_record(raw)) == fields(ideal(raw))
    kind, seq, attempt, name, key, inp, body, output, t0, t1 = args
    assert (rec.version, rec.kind, rec.seq, rec.attempt) == (2, kind, seq, attempt)
    assert (rec.name, rec.key, rec.input, rec.body, rec.payload) == (name, key, inp, body, None)
    assert type(rec.key) is type(key)
    assert bool(rec.flags & _core.FLAG_OUTPUT) == output
    assert rec.t0 == (None if t0 is None else float(t0))  # these are whole microseconds
    assert rec.t1 == t1
    assert rec.raw == raw


def test_golden_v2_identity_and_digest() -> None:
    rec = _core.decode_record(bytes.fromhex(GOLDEN_V2[1][1]))
    assert rec.name_hash == _core.name_hash("reserve#lamp") == oracle.name_hash("reserve#lamp")
    assert rec.input_digest == _core.input_digest(b'[["lamp"],{}]')
    sleep = _core.decode_record(bytes.fromhex(GOLDEN_V2[4][1]))
    assert sleep.name_hash == _core.name_hash("@sleep")
    assert sleep.input_digest == _core.input_digest(b"null")  # no input: digest of null


# ---------------------------------------------------------------- round trips


@settings(max_examples=400, deadline=None)
@given(V2_FIELDS)
def test_round_trip_matches_oracle(args: tuple[Any, ...]) -> None:
    kind, seq, attempt, name, key, inp, body, output, t0, t1 = args
    raw = _core.encode_record(*args)
    assert raw == oracle.encode_record(*args)
    rec = _core.decode_record(raw)
    assert fields(rec) == fields(oracle.decode_record(raw)) == fields(ideal(raw))
    assert (rec.version, rec.kind, rec.seq, rec.attempt) == (2, kind, seq, attempt)
    assert (rec.name, rec.key, rec.input, rec.body) == (name, key, inp, body)
    assert type(rec.key) is type(key)
    expected_flags = (
        (_core.FLAG_KEY if key is not None else 0)
        | (_core.FLAG_KEY_INT if type(key) is int else 0)
        | (_core.FLAG_INPUT if inp is not None else 0)
        | (_core.FLAG_T0 if t0 is not None else 0)
        | (_core.FLAG_T1 if t1 is not None else 0)
        | (_core.FLAG_OUTPUT if output else 0)
    )
    assert rec.flags == expected_flags
    for got, given_time in ((rec.t0, t0), (rec.t1, t1)):
        if given_time is None:
            assert got is None
        else:  # whole microseconds, as the oracle rounds them
            assert got == oracle.seconds(oracle.micros(given_time))
            assert abs(got - given_time) <= 5e-7 + abs(given_time) * 2**-50
    ident = name if key is None else f"{name}#{key}"
    assert rec.name_hash == _core.name_hash(ident)
    assert rec.input_digest == _core.input_digest(b"null" if inp is None else inp)
    assert _core.decode_records(raw) == [rec]
    assert oracle.reencode(oracle.decode_record(raw)) == raw


BIG = bytes(range(256)) * 40


def test_round_trip_extremes() -> None:
    for args in [
        (_core.KIND_STATE, _core.MAX_SEQ, 2**16 - 1, "", None, None, b"x", False, None, None),
        (_core.KIND_STEP, 0, 0, "n", 0, b"0", b"0", True, 0, 0),
        (_core.KIND_STEP_ERROR, 1, 2, "☕" * 300, "k" * 500, BIG, BIG, False, 0.0, 2.2e12),
        (_core.KIND_CHILD, 127, 128, "a#b", 2**200, b"[]", b"{}", True, 2.2e12, 0.0),
    ]:
        raw = _core.encode_record(*args)
        assert raw == oracle.encode_record(*args)
        rec = _core.decode_record(raw)
        read = (rec.kind, rec.seq, rec.attempt, rec.name, rec.key, rec.input, rec.body)
        assert read == args[:7]
        assert (rec.t0, rec.t1) == tuple(None if t is None else float(t) for t in args[8:])
        assert fields(rec) == fields(oracle.decode_record(raw))


def test_varints_at_their_boundaries() -> None:
    """Every varint width: sequence numbers and attempts around each 7-bit boundary."""
    values = sorted({v for n in range(1, 5) for v in (2 ** (7 * n) - 1, 2 ** (7 * n))})
    for seq in [v for v in values if v <= _core.MAX_SEQ] + [_core.MAX_SEQ]:
        for attempt in [v for v in values if v <= 0xFFFF] + [0xFFFF]:
            raw = make(seq=seq, attempt=attempt)
            assert raw == oracle.encode_record(**{**DEFAULTS, "seq": seq, "attempt": attempt})
            rec = _core.decode_record(raw)
            assert (rec.seq, rec.attempt) == (seq, attempt)


def test_body_and_input_lengths_cross_varint_widths() -> None:
    for n in (1, 127, 128, 16383, 16384, 70000):
        raw = make(input=b"i" * n, body=b"b" * n)
        rec = _core.decode_record(raw)
        assert (rec.input, rec.body) == (b"i" * n, b"b" * n)
        assert raw == oracle.encode_record(**{**DEFAULTS, "input": b"i" * n, "body": b"b" * n})


def test_encode_accepts_any_buffer() -> None:
    body, inp = b'{"a": 1}', b"[[1],{}]"
    expected = make(body=body, input=inp)
    assert make(body=bytearray(body), input=bytearray(inp)) == expected
    assert make(body=memoryview(body), input=memoryview(inp)) == expected
    framed = b"\xff" + body + b"\xff"
    assert make(body=memoryview(framed)[1:-1], input=inp) == expected
    with pytest.raises(TypeError):
        make(body="text")
    with pytest.raises(TypeError):
        make(input="text")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = make()
    expected = _core.decode_record(raw)
    assert _core.decode_record(bytearray(raw)) == expected
    assert _core.decode_record(memoryview(raw)) == expected
    framed = b"\xff" * 5 + raw + b"\xee" * 3
    assert _core.decode_record(memoryview(framed)[5 : 5 + len(raw)]) == expected
    assert _core.decode_records(memoryview(framed)[5 : 5 + len(raw)]) == [expected]
    with mmap.mmap(-1, len(raw)) as region:
        region[:] = raw
        assert _core.decode_record(region) == expected
        assert _core.decode_records(region) == [expected]


def test_fields_are_copied() -> None:
    """An LMDB memoryview dies with its transaction: the record must not point into it."""
    buf = bytearray(make())
    view = memoryview(buf)
    rec = _core.decode_record(view)
    raw, body, inp = rec.raw, rec.body, rec.input
    view.release()
    buf[:] = b"\x00" * len(buf)
    for value in (rec.raw, rec.body, rec.input):
        assert type(value) is bytes
    assert (rec.raw, rec.body, rec.input) == (raw, body, inp)
    assert rec.raw != bytes(buf)
    buf1 = bytearray(make_v1())
    rec1 = _core.decode_record(buf1)
    payload = rec1.payload
    buf1[:] = b"\x00" * len(buf1)
    assert type(rec1.payload) is bytes
    assert rec1.payload == payload == V1_DEFAULTS["payload"]


def test_released_memoryview_is_refused() -> None:
    view = memoryview(make())
    view.release()
    with pytest.raises(ValueError, match="released"):
        _core.decode_record(view)
    with pytest.raises(ValueError, match="released"):
        _core.decode_records(view)


# ---------------------------------------------------------------- times


def test_t1_before_t0_round_trips() -> None:
    """The clock may step back between a step's start and end: zigzag keeps the sign."""
    for t0, t1 in [(100.5, 100.25), (1767225600.0, 1767225599.999999), (5.0, 0.0), (7.0, 7.0)]:
        raw = make(t0=t0, t1=t1)
        assert raw == oracle.encode_record(**{**DEFAULTS, "t0": t0, "t1": t1})
        rec = _core.decode_record(raw)
        assert (rec.t0, rec.t1) == (t0, t1)
        assert fields(rec) == fields(ideal(raw))


def test_t1_field_is_a_zigzag_delta_after_t0() -> None:
    def t1_field(raw: bytes) -> int:
        rec = oracle.decode_record(raw)
        assert rec.t0_us is not None and rec.t1_us is not None
        return oracle.zigzag(rec.t1_us - rec.t0_us)

    forward, back = make(t0=10.0, t1=10.000002), make(t0=10.0, t1=9.999998)
    assert t1_field(forward) == 4 and t1_field(back) == 3  # +2 -> 4, -2 -> 3
    assert len(forward) == len(back)
    # Without t0, t1 is written as it is: a full-width number.
    alone = make(t0=None, t1=10.0)
    assert _core.decode_record(alone).t1 == 10.0
    assert oracle.varint(10_000_000) in alone


def test_times_are_whole_microseconds_rounded_half_away_from_zero() -> None:
    """The core uses C's llround(s * 1e6), not Python's round (which rounds half to even)."""
    for seconds in (5e-07, 2.5e-06, 4.5e-06, 1767225600.0000005, 1767225600.0000024):
        product = seconds * 1e6
        assert product % 1 == 0.5  # a real tie, so the rounding rule decides
        expected = int(product) + 1
        assert round(product) == expected - 1  # Python's rule gives the even neighbour
        assert oracle.micros(seconds) == expected
        assert _core.decode_record(make(t0=seconds, t1=None)).t0 == expected / 1e6
        assert make(t0=seconds, t1=None) == oracle.encode_record(
            **{**DEFAULTS, "t0": seconds, "t1": None}
        )
    assert _core.decode_record(make(t0=0.0000004, t1=None)).t0 == 0.0
    assert _core.decode_record(make(t0=-0.0, t1=None)).t0 == 0.0
    assert _core.decode_record(make(t0=12, t1=13)).t0 == 12.0  # an int is seconds too


@pytest.mark.parametrize("value", [-1e-300, -1.0, float("nan"), float("inf"), -float("inf")])
def test_bad_times_are_value_errors(value: float) -> None:
    for which in ("t0", "t1"):
        with pytest.raises(ValueError, match=which):
            make(**{which: value})
        with pytest.raises(ValueError):
            oracle.encode_record(**{**DEFAULTS, which: value})


@pytest.mark.parametrize("value", ["1.0", b"1", [1.0], 1j])
def test_time_type_errors(value: Any) -> None:
    for which in ("t0", "t1"):
        with pytest.raises(TypeError, match=which):
            make(**{which: value})
        with pytest.raises(TypeError):
            oracle.encode_record(**{**DEFAULTS, which: value})


def test_times_past_the_bound_are_refused() -> None:
    too_late = 4.7e12  # past 2**62 microseconds
    for which in ("t0", "t1"):
        with pytest.raises(ValueError, match=which):
            make(**{which: too_late})
    # An int past the float range is out of range like any other.
    with pytest.raises(ValueError):
        make(t0=10**400)
    with pytest.raises(TypeError):
        make(t0=True)


# The edges of the time fields: whatever the encoder writes decodes, and a decoded t1 is
# a time the encoder could have written.

PAST_MAX = 2.0**62 / 1e6  # s * 1e6 is exactly 2**62, one past MAX_MICROS


@pytest.mark.parametrize(
    ("t0", "t1"),
    [(0.0, 2.4e12), (2.4e12, 0.0), (PAST_MAX, None), (None, PAST_MAX), (0.0, 4.6e12)],
)
def test_every_encoded_time_decodes(t0: float | None, t1: float | None) -> None:
    try:
        raw = make(t0=t0, t1=t1)
    except ValueError as err:  # refusing the time is fine: writing what cannot be read is not
        assert "t0" in str(err) or "t1" in str(err)
        return
    rec = _core.decode_record(raw)
    assert fields(rec) == fields(ideal(raw))


@pytest.mark.parametrize(
    ("t0_field", "t1_field"),
    [(0, 1), (5, 11), (oracle.MAX_MICROS, 2)],  # t1 = -1, -1 microseconds; MAX_MICROS + 1
)
def test_out_of_range_t1_is_corrupt(t0_field: int, t1_field: int) -> None:
    flags = _core.FLAG_OUTPUT | _core.FLAG_T0 | _core.FLAG_T1
    raw = v2(minimal_fields(flags=flags, t0_field=t0_field, t1_field=t1_field))
    assert outcome(ideal, raw) == "corrupt"
    assert outcome(_core.decode_record, raw) == "corrupt"


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 5e12) | st.none(), st.floats(0, 5e12) | st.none())
def test_times_over_the_whole_range_agree_with_the_oracle(
    t0: float | None, t1: float | None
) -> None:
    """Past 2**61 microseconds too, against the oracle's model of the core as it is."""
    args = {**DEFAULTS, "t0": t0, "t1": t1}
    try:
        raw = _core.encode_record(**args)
    except ValueError:
        with pytest.raises(ValueError):
            oracle.encode_record(**args)
        return
    assert raw == oracle.encode_record(**args)
    assert outcome(_core.decode_record, raw) == outcome(oracle.decode_record, raw)


# ---------------------------------------------------------------- keys and names


def test_int_and_str_keys_are_different_records_with_one_identity() -> None:
    as_int, as_str = make(key=12), make(key="12")
    assert as_int != as_str
    rec_int, rec_str = _core.decode_record(as_int), _core.decode_record(as_str)
    assert rec_int.key == 12 and type(rec_int.key) is int
    assert rec_str.key == "12" and type(rec_str.key) is str
    assert rec_int.flags & _core.FLAG_KEY_INT
    assert not rec_str.flags & _core.FLAG_KEY_INT
    assert rec_int.flags & _core.FLAG_KEY and rec_str.flags & _core.FLAG_KEY
    # Replay matches on the identity string: both are "charge_card#12".
    assert rec_int.name_hash == rec_str.name_hash == _core.name_hash("charge_card#12")
    assert rec_int != rec_str


@pytest.mark.parametrize("key", [0, -1, 7, -(2**63), 2**64, 10**300, -(10**300)])
def test_int_keys_round_trip(key: int) -> None:
    raw = make(key=key)
    assert raw == oracle.encode_record(**{**DEFAULTS, "key": key})
    rec = _core.decode_record(raw)
    assert rec.key == key and type(rec.key) is int
    assert fields(rec) == fields(oracle.decode_record(raw))


@pytest.mark.parametrize(
    "text",
    [b"012", b"+1", b" 1", b"1 ", b"-0", b"1_0", b"\xef\xbc\x91", b"1.0", b"0x1", b"-", b"--1"],
)
def test_non_canonical_int_key_is_corrupt(text: bytes) -> None:
    """A KEY_INT key must be exactly what str(int) writes (int() accepts more)."""
    flags = _core.FLAG_OUTPUT | _core.FLAG_KEY | _core.FLAG_KEY_INT
    raw = v2(minimal_fields(flags=flags, key=text))
    with pytest.raises(JournalCorruptError, match="int key") as info:
        _core.decode_record(raw)
    assert info.value.seq == 5
    assert outcome(oracle.decode_record, raw) == "corrupt"
    # The same text as a str key is fine.
    as_str = v2(minimal_fields(flags=_core.FLAG_OUTPUT | _core.FLAG_KEY, key=text))
    assert outcome(_core.decode_record, as_str) == outcome(oracle.decode_record, as_str)


def test_int_key_with_too_many_digits() -> None:
    with pytest.raises(ValueError):  # str(int) refuses it (sys.get_int_max_str_digits)
        make(key=10**5000)
    flags = _core.FLAG_OUTPUT | _core.FLAG_KEY | _core.FLAG_KEY_INT
    raw = v2(minimal_fields(flags=flags, key=b"1" * 5000))
    assert outcome(_core.decode_record, raw) == "corrupt" == outcome(oracle.decode_record, raw)


@pytest.mark.parametrize("key", [True, False, 1.0, b"k", ["k"], object()])
def test_key_type_errors(key: Any) -> None:
    with pytest.raises(TypeError, match="key"):
        make(key=key)
    with pytest.raises(TypeError):
        oracle.encode_record(**{**DEFAULTS, "key": key})


def test_int_subclass_key_is_refused() -> None:
    import enum

    class Shard(enum.IntEnum):
        ONE = 1

    with pytest.raises(TypeError):
        make(key=Shard.ONE)


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        make(key="")
    flags = _core.FLAG_OUTPUT | _core.FLAG_KEY
    raw = v2(minimal_fields(flags=flags, key=b""))
    with pytest.raises(JournalCorruptError, match="key") as info:
        _core.decode_record(raw)
    assert info.value.seq == 5


@pytest.mark.parametrize("field", ["name", "key"])
def test_surrogates_are_refused_at_encode(field: str) -> None:
    for text in ("lone \udc80 surrogate", "\ud800", "a\udfffb"):
        with pytest.raises(UnicodeEncodeError):
            make(**{field: text})
        with pytest.raises(UnicodeEncodeError):
            oracle.encode_record(**{**DEFAULTS, field: text})


@pytest.mark.parametrize("name", [None, b"charge", 1])
def test_name_must_be_a_str(name: Any) -> None:
    with pytest.raises(TypeError):
        make(name=name)
    with pytest.raises(TypeError):
        oracle.encode_record(**{**DEFAULTS, "name": name})


@pytest.mark.parametrize(
    "text", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"a\x80", b"\xe2\x98", b"\xf4\x90\x80\x80"]
)
def test_names_and_keys_that_are_not_utf8_are_corrupt(text: bytes) -> None:
    """Invalid, overlong, an encoded surrogate, a stray continuation, cut, past U+10FFFF."""
    for raw in (
        v2(minimal_fields(name=text)),
        v2(minimal_fields(flags=_core.FLAG_OUTPUT | _core.FLAG_KEY, key=text)),
    ):
        with pytest.raises(JournalCorruptError, match="UTF-8") as info:
            _core.decode_record(raw)
        assert info.value.seq == 5
        assert outcome(oracle.decode_record, raw) == "corrupt"


def test_name_may_be_empty_and_hold_anything_utf8() -> None:
    for name in ("", "\x00", "a#b", "名前", "\U0010ffff"):
        rec = _core.decode_record(make(name=name))
        assert rec.name == name
        assert rec.name_hash == _core.name_hash(name)


# ---------------------------------------------------------------- the Record object


def test_record_is_read_only_and_compares_by_raw() -> None:
    raw = make()
    rec = _core.decode_record(raw)
    for attr in (
        "version",
        "kind",
        "flags",
        "attempt",
        "seq",
        "raw",
        "name",
        "key",
        "input",
        "body",
        "payload",
        "t0",
        "t1",
        "name_hash",
        "input_digest",
    ):
        with pytest.raises(AttributeError):
            setattr(rec, attr, 1)
    same = _core.decode_record(bytearray(raw))
    assert rec == same
    assert not rec != same  # noqa: SIM202 - __ne__ is what this checks
    assert hash(rec) == hash(same) == hash(raw)
    assert rec != _core.decode_record(make(attempt=2))
    assert rec != _core.decode_record(make(t1=1767225600.76))  # any byte differs: unequal
    assert rec != "a record"
    assert len({rec, same, _core.decode_record(make(seq=4))}) == 2
    with pytest.raises(TypeError):
        _core.Record()


def test_v1_and_v2_records_are_never_equal() -> None:
    rec1 = _core.decode_record(make_v1())
    rec2 = _core.decode_record(make())
    assert rec1 != rec2
    assert rec1 == _core.decode_record(make_v1())


def test_v2_record_fields() -> None:
    rec = _core.decode_record(make(key="k", input=None, output=False, t0=None))
    assert rec.version == 2
    assert rec.flags == _core.FLAG_KEY | _core.FLAG_T1
    assert (rec.name, rec.key) == ("charge_card", "k")
    assert (rec.input, rec.payload, rec.t0) == (None, None, None)
    assert rec.body == DEFAULTS["body"]
    assert rec.t1 == DEFAULTS["t1"]
    assert rec.name_hash == _core.name_hash("charge_card#k")
    assert rec.input_digest == _core.input_digest(b"null")


def test_v1_record_fields() -> None:
    rec = _core.decode_record(make_v1(seq=9, attempt=4))
    assert (rec.version, rec.kind, rec.seq, rec.attempt, rec.flags) == (1, 1, 9, 4, 0)
    assert (rec.name, rec.key, rec.input, rec.body, rec.t0, rec.t1) == (None,) * 6
    assert rec.payload == V1_DEFAULTS["payload"]
    assert rec.name_hash == V1_DEFAULTS["name_hash"]
    assert rec.input_digest == V1_DEFAULTS["input_digest"]
    assert rec.raw == make_v1(seq=9, attempt=4)


def test_record_repr() -> None:
    text = repr(_core.decode_record(make(seq=9, key=4, body=b"x" * 100)))
    assert text.startswith("Record(version=2, kind=1, attempt=1, seq=9, name='charge_card', ")
    assert "key=4" in text
    assert "(100 bytes)" in text
    text = repr(_core.decode_record(make_v1(seq=9, payload=b"x" * 100)))
    assert text.startswith("Record(version=1, kind=1, attempt=1, seq=9, ")
    assert "name_hash=0x0123456789abcdef" in text
    assert "input_digest=0xfedcba9876543210" in text
    assert "(100 bytes)" in text


# ---------------------------------------------------------------- corruption: format 2

SAMPLES = [
    make(),
    make(key="k", input=None, t0=None, t1=None, output=False, body=b"{}"),
    make(key=-3, t1=1767225599.5),
    make(seq=2**32 - 1, attempt=0xFFFF, name="", body=b"\x00" * 33, t0=None),
]


@pytest.mark.parametrize("raw", SAMPLES)
def test_every_truncation_is_corrupt(raw: bytes) -> None:
    for n in range(len(raw)):
        for decode in (_core.decode_record, _core.decode_records):
            with pytest.raises(JournalCorruptError) as info:
                decode(raw[:n])
            assert type(info.value) is JournalCorruptError, n
        assert outcome(oracle.decode_record, raw[:n]) == "corrupt"
        assert outcome(oracle.decode_records, raw[:n]) == "corrupt"


@pytest.mark.parametrize("raw", SAMPLES)
def test_every_single_bit_flip_is_refused(raw: bytes) -> None:
    """The checksum covers every byte, itself included: no flip decodes."""
    for bit, bad in flips(raw):
        # The version byte 2 becomes 0 (never existed) or a newer version (3, 6, ... 130).
        expected = "unsupported" if bad[0] > 2 else "corrupt"
        for decode in (_core.decode_record, _core.decode_records):
            assert outcome(decode, bad) == expected, (bit, decode)
        assert outcome(oracle.decode_record, bad) == expected, bit


def test_every_single_bit_flip_of_a_concatenation_is_refused() -> None:
    value = b"".join(SAMPLES[:3])
    for bit, bad in flips(value):
        result = outcome(_core.decode_records, bad)
        assert result in ("corrupt", "unsupported"), bit
        assert result == outcome(oracle.decode_records, bad), bit


def test_checksum_mismatch_is_corrupt_and_names_the_step_if_it_can() -> None:
    raw = bytearray(make(seq=41))
    raw[-1] ^= 0xFF
    with pytest.raises(JournalCorruptError, match="checksum") as info:
        _core.decode_record(raw)
    assert type(info.value) is JournalCorruptError
    assert info.value.seq == 41
    assert "step 41" in str(info.value)
    # A damaged sequence number cannot name it: no step, rather than a wrong one.
    for bad_seq in (b"\x80", oracle.varint(2**32)):
        fields_ = bytes([_core.KIND_STEP, _core.FLAG_OUTPUT]) + bad_seq
        damaged = bytearray(v2(fields_))
        damaged[-1] ^= 1
        with pytest.raises(JournalCorruptError, match="checksum") as info:
            _core.decode_record(damaged)
        assert info.value.seq is None


def test_trailing_bytes_after_one_record_are_corrupt() -> None:
    raw = make(seq=3)
    for extra in (b"\x00", b"\x02", b"junk", raw, make_v1()):
        with pytest.raises(JournalCorruptError, match="trailing") as info:
            _core.decode_record(raw + extra)
        assert info.value.seq == 3
        assert outcome(oracle.decode_record, raw + extra) == "corrupt"


@pytest.mark.parametrize(
    ("garbage", "expected"),
    [
        (b"\x00", "corrupt"),  # format 0 never existed
        (b"\x01", "corrupt"),  # format 1 stands alone in its value
        (b"\x02", "corrupt"),  # a format-2 record cut short
        (b"\x02\x00", "corrupt"),
        (b"\x02\x05", "corrupt"),
        (b"\x00junk", "corrupt"),
        # The format byte decides, as in decode_record: 3 and up read as a newer format.
        (b"\x03", "unsupported"),
        (b"\xff", "unsupported"),
        (b"junk", "unsupported"),
    ],
)
def test_trailing_garbage_after_records_is_refused(garbage: bytes, expected: str) -> None:
    value = make(seq=1) + make(seq=2)
    assert outcome(_core.decode_records, value + garbage) == expected
    assert outcome(oracle.decode_records, value + garbage) == expected
    assert outcome(_core.decode_records, value + garbage) == outcome(
        _core.decode_record, garbage
    )  # the same verdict the garbage gets on its own
    assert outcome(_core.decode_record, value + garbage) == "corrupt"  # trailing bytes


def test_a_v1_record_followed_by_anything_is_corrupt() -> None:
    rec1 = make_v1(seq=6)
    for extra in (b"\x00", b"\x02", make(), rec1, make_v1(seq=7)):
        for decode in (_core.decode_records, _core.decode_record):
            with pytest.raises(JournalCorruptError, match="trailing") as info:
                decode(rec1 + extra)
            assert type(info.value) is JournalCorruptError
            assert info.value.seq == 6
        assert outcome(oracle.decode_records, rec1 + extra) == "corrupt"


def test_a_v1_record_after_v2_records_is_corrupt() -> None:
    with pytest.raises(JournalCorruptError, match="format-1 record after 1") as info:
        _core.decode_records(make(seq=3) + make_v1())
    assert type(info.value) is JournalCorruptError
    assert info.value.seq == 3
    assert outcome(oracle.decode_records, make() + make_v1()) == "corrupt"


def test_concatenations_decode_in_order() -> None:
    records = [make(seq=s, key=s or None, t1=1767225600.5 + s) for s in (4, 0, 9, 2**32 - 1)]
    value = b"".join(records)
    got = _core.decode_records(value)
    assert got == [_core.decode_record(raw) for raw in records]
    assert [rec.raw for rec in got] == records
    assert [fields(rec) for rec in got] == [fields(rec) for rec in oracle.decode_records(value)]
    assert _core.decode_records(bytearray(value)) == got
    assert _core.decode_records(memoryview(b"\x00" + value)[1:]) == got
    with pytest.raises(JournalCorruptError, match="trailing"):
        _core.decode_record(value)


def test_thirty_two_records_in_one_value() -> None:
    """The LMDB store keeps up to 32 of a run's records in one value."""
    records = [make(seq=s, input=b"[[%d],{}]" % s) for s in range(32)]
    got = _core.decode_records(b"".join(records))
    assert [rec.seq for rec in got] == list(range(32))
    assert [rec.input for rec in got] == [b"[[%d],{}]" % s for s in range(32)]


def test_a_defect_in_a_later_record_spoils_the_value() -> None:
    good, bad = make(seq=1), bytearray(make(seq=2))
    bad[-1] ^= 1
    with pytest.raises(JournalCorruptError, match="checksum"):
        _core.decode_records(good + bytes(bad) + make(seq=3))
    unknown = bytearray(make(seq=2))
    unknown[0] = 7  # a newer version where a record should start
    with pytest.raises(UnsupportedFormatError, match="version 7"):
        _core.decode_records(good + bytes(unknown))
    unknown[0] = 0
    with pytest.raises(JournalCorruptError, match="version 0"):
        _core.decode_records(good + bytes(unknown))


@pytest.mark.parametrize("position", ["length", "seq", "attempt", "t0", "t1", "name", "input"])
def test_non_minimal_varints_are_corrupt(position: str) -> None:
    """A value with a shorter encoding must use it: one record, one byte string."""
    flags = _core.FLAG_OUTPUT | _core.FLAG_T0 | _core.FLAG_T1 | _core.FLAG_INPUT

    def build(longer: str) -> bytes:
        def field(what: str, value: int) -> bytes:
            encoded = oracle.varint(value)
            if what != longer:
                return encoded
            # The same value one byte longer: continue past the last byte with a zero group.
            return encoded[:-1] + bytes([encoded[-1] | 0x80, 0])

        fields_ = (
            bytes([_core.KIND_STEP, flags])
            + field("seq", 5)
            + field("attempt", 1)
            + field("t0", 1000)
            + field("t1", 4)
            + field("name", 1)
            + b"n"
            + field("input", 2)
            + b"[]"
            + b"1"
        )
        head = b"\x02" + field("length", len(fields_)) + fields_
        return head + struct.pack("<I", oracle.xxh64(head, _core.CHECKSUM_SEED) & 0xFFFFFFFF)

    rec = _core.decode_record(build(""))  # all minimal: a good record
    assert (rec.seq, rec.attempt, rec.t0, rec.t1, rec.name, rec.input) == (
        5,
        1,
        0.001,
        0.001002,
        "n",
        b"[]",
    )
    raw = build(position)
    assert len(raw) == len(build("")) + 1
    assert outcome(_core.decode_record, raw) == "corrupt"
    assert outcome(_core.decode_records, raw) == "corrupt"
    assert outcome(oracle.decode_record, raw) == "corrupt"


@pytest.mark.parametrize(
    "varint",
    [
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x02",  # 2**64: past 64 bits
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # far past
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # eleven bytes
        b"\x80\x00",  # zero, non-minimal
    ],
)
def test_bad_varints_are_corrupt(varint: bytes) -> None:
    fields_ = bytes([_core.KIND_STEP, _core.FLAG_OUTPUT]) + varint + b"\x01\x01n1"
    raw = v2(fields_)
    assert outcome(_core.decode_record, raw) == "corrupt" == outcome(oracle.decode_record, raw)


def test_the_largest_64_bit_varint_reads() -> None:
    """2**64 - 1 is a valid varint (ten bytes); as a sequence number it is out of range."""
    top = oracle.varint(2**64 - 1)
    assert top == b"\xff" * 9 + b"\x01"
    raw = v2(bytes([_core.KIND_STEP, _core.FLAG_OUTPUT]) + top + b"\x01\x01n1")
    with pytest.raises(JournalCorruptError, match="sequence number"):
        _core.decode_record(raw)


@pytest.mark.parametrize("flags", [0x40, 0x80, 0xC0, 0x7F, 0xFF, 0x02, 0x22, 0x3E])
def test_unknown_flags_are_corrupt(flags: int) -> None:
    """Bits past FLAG_OUTPUT, or FLAG_KEY_INT without FLAG_KEY."""
    raw = v2(minimal_fields(flags=flags, seq=12))
    with pytest.raises(JournalCorruptError, match="unknown flags") as info:
        _core.decode_record(raw)
    assert info.value.seq == 12
    assert outcome(oracle.decode_record, raw) == "corrupt"


@pytest.mark.parametrize("kind", [0, 8, 9, 127, 255])
def test_unknown_kind_is_corrupt(kind: int) -> None:
    raw = v2(minimal_fields(kind=kind, seq=12))
    with pytest.raises(JournalCorruptError, match=f"unknown kind {kind}") as info:
        _core.decode_record(raw)
    assert type(info.value) is JournalCorruptError
    assert info.value.seq == 12
    assert outcome(oracle.decode_record, raw) == "corrupt"


@pytest.mark.parametrize(
    ("fields_", "message"),
    [
        (b"", "too few"),
        (b"\x01", "too few"),
        (bytes([1, 0x20]), "sequence number"),
        (bytes([1, 0x20]) + oracle.varint(2**32) + b"\x00\x01n1", "sequence number"),
        (bytes([1, 0x20, 5]), "attempt"),
        (bytes([1, 0x20, 5]) + oracle.varint(2**16) + b"\x01n1", "attempt"),
        (bytes([1, 0x28, 5, 1]) + oracle.varint(2**62) + b"\x01n1", "start time"),
        (bytes([1, 0x30, 5, 1]) + oracle.varint(2**62) + b"\x01n1", "end time"),
        (bytes([1, 0x20, 5, 1, 5]) + b"n1", "name"),
        (bytes([1, 0x20, 5, 1, 1]) + b"n", "body"),
        (bytes([1, 0x20, 5, 1, 0]), "body"),
        (bytes([1, 0x21, 5, 1, 1]) + b"n\x09k1", "key"),
        (bytes([1, 0x24, 5, 1, 1]) + b"n\x00" + b"1", "input"),
        (bytes([1, 0x24, 5, 1, 1]) + b"n\x02[]", "body"),
        (bytes([1, 0x24, 5, 1, 1]) + b"n\x7f[]1", "input"),
    ],
)
def test_fields_out_of_range_or_cut_are_corrupt(fields_: bytes, message: str) -> None:
    raw = v2(fields_)
    with pytest.raises(JournalCorruptError, match=message) as info:
        _core.decode_record(raw)
    assert type(info.value) is JournalCorruptError
    assert outcome(oracle.decode_record, raw) == "corrupt"


def test_huge_announced_length_is_corrupt() -> None:
    for length in (2**31, 2**63, 2**64 - 1):
        raw = b"\x02" + oracle.varint(length) + b"\x01\x20\x05\x01\x01n1" + b"\x00" * 4
        with pytest.raises(JournalCorruptError, match="truncated"):
            _core.decode_record(raw)
        assert outcome(oracle.decode_record, raw) == "corrupt"


def test_empty_and_non_buffers() -> None:
    for decode in (_core.decode_record, _core.decode_records):
        with pytest.raises(JournalCorruptError, match="empty"):
            decode(b"")
        with pytest.raises(TypeError):
            decode("not bytes")
        with pytest.raises(TypeError):
            decode(None)
    assert outcome(oracle.decode_records, b"") == "corrupt"


@pytest.mark.parametrize("version", [3, 4, 128, 255])
def test_newer_version_is_unsupported(version: int) -> None:
    raw = bytearray(make())
    raw[0] = version
    resealed = oracle.seal(minimal_fields(), version=version)
    for buf in (resealed, bytes(raw), bytes([version]), bytes(raw[:10])):
        for decode in (_core.decode_record, _core.decode_records):
            with pytest.raises(UnsupportedFormatError) as info:
                decode(buf)
            message = str(info.value)
            assert f"version {version}" in message
            assert "newer surestep" in message
            assert "upgrade" in message
        assert outcome(oracle.decode_record, buf) == "unsupported"


def test_version_zero_is_corrupt() -> None:
    for buf in (b"\x00", b"\x00" + make()[1:], b"\x00" + make_v1()[1:]):
        for decode in (_core.decode_record, _core.decode_records):
            with pytest.raises(JournalCorruptError, match="version 0") as info:
                decode(buf)
            assert type(info.value) is JournalCorruptError
        assert outcome(oracle.decode_record, buf) == "corrupt"


# ---------------------------------------------------------------- format 1, read only


@settings(max_examples=300, deadline=None)
@given(V1_FIELDS)
def test_v1_records_decode_like_the_oracle(args: tuple[int, int, int, int, int, bytes]) -> None:
    kind, seq, attempt, name, digest, payload = args
    raw = oracle.encode_record_v1(*args)
    assert len(raw) == _core.HEADER_SIZE + len(payload)
    rec = _core.decode_record(raw)
    assert (rec.version, rec.kind, rec.attempt, rec.seq) == (1, kind, attempt, seq)
    assert (rec.name_hash, rec.input_digest, rec.payload) == (name, digest, payload)
    assert fields(rec) == fields(oracle.decode_record(raw))
    assert _core.decode_records(raw) == [rec]


def test_v1_extremes() -> None:
    top = 2**64 - 1
    for args in [
        (_core.KIND_STATE, _core.MAX_SEQ, 2**16 - 1, top, top, b""),
        (_core.KIND_STEP, 0, 0, 0, 0, b""),
        (_core.KIND_STEP_ERROR, 1, 2, 3, 4, bytes(range(256)) * 40),
    ]:
        rec = _core.decode_record(oracle.encode_record_v1(*args))
        read = (rec.kind, rec.seq, rec.attempt, rec.name_hash, rec.input_digest, rec.payload)
        assert read == args


def test_golden_v1_journal_still_decodes() -> None:
    """Records written by surestep 0.1 (tests/golden/checkout-v1.json)."""
    records = [bytes.fromhex(h) for h in json.loads(GOLDEN_JOURNAL.read_text())["records"]]
    assert records and all(raw[0] == 1 for raw in records)
    for seq, raw in enumerate(records):
        rec = _core.decode_record(raw)
        assert (rec.version, rec.seq, rec.flags) == (1, seq, 0)
        assert fields(rec) == fields(oracle.decode_record(raw))
        assert _core.decode_records(raw) == [rec]
        assert json.loads(rec.payload)["n"]  # every payload is surestep's JSON object


def v1_reseal(raw: bytes | bytearray) -> bytes:
    """A format-1 ``raw`` with its checksum recomputed: only the defect we made remains."""
    raw = bytearray(raw)
    checksum = oracle.xxh64(bytes(raw[:28] + raw[32:]), _core.CHECKSUM_SEED) & 0xFFFFFFFF
    raw[28:32] = struct.pack("<I", checksum)
    return bytes(raw)


def test_v1_every_truncation_is_corrupt() -> None:
    raw = make_v1()
    for n in range(len(raw)):
        with pytest.raises(JournalCorruptError) as info:
            _core.decode_record(raw[:n])
        assert type(info.value) is JournalCorruptError, n
        assert outcome(oracle.decode_record, raw[:n]) == "corrupt"


def test_v1_every_single_bit_flip_is_refused() -> None:
    for raw in (make_v1(), make_v1(payload=b""), make_v1(seq=2**32 - 1, payload=b"\x00" * 33)):
        for bit, bad in flips(raw):
            result = outcome(_core.decode_record, bad)
            # Version 1 becomes 0 (corrupt) or 3, 5, 9, ... 129 (newer); 1 ^ 2 = 3.
            expected = "unsupported" if bad[0] > 2 else "corrupt"
            assert result == expected, (bit, result)
            assert outcome(oracle.decode_record, bad) == expected


def test_v1_corrupt_errors_name_the_step() -> None:
    raw = bytearray(make_v1(seq=41))
    raw[-1] ^= 0xFF
    with pytest.raises(JournalCorruptError, match="checksum") as info:
        _core.decode_record(raw)
    assert info.value.seq == 41
    assert "step 41" in str(info.value)


@pytest.mark.parametrize("kind", [0, 8, 9, 127, 255])
def test_v1_unknown_kind_is_corrupt(kind: int) -> None:
    raw = bytearray(make_v1(seq=12))
    raw[1] = kind
    with pytest.raises(JournalCorruptError, match=f"unknown kind {kind}") as info:
        _core.decode_record(v1_reseal(raw))
    assert type(info.value) is JournalCorruptError
    assert info.value.seq == 12


def test_v1_huge_announced_length_is_corrupt() -> None:
    raw = bytearray(make_v1())
    raw[24:28] = b"\xff\xff\xff\xff"
    with pytest.raises(JournalCorruptError, match="truncated"):
        _core.decode_record(v1_reseal(raw))


# ---------------------------------------------------------------- hostile input


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_is_refused_like_the_oracle(garbage: bytes) -> None:
    assert outcome(_core.decode_record, garbage) == outcome(oracle.decode_record, garbage)
    assert outcome(_core.decode_records, garbage) == outcome(oracle.decode_records, garbage)


@settings(max_examples=800, deadline=None)
@given(st.binary(max_size=80))
def test_sealed_garbage_fields_decide_like_the_oracle(garbage: bytes) -> None:
    """Arbitrary fields behind a valid checksum: every field check is reached."""
    raw = v2(garbage)
    result = outcome(_core.decode_record, raw)
    assert result == outcome(oracle.decode_record, raw)
    if result not in ("corrupt", "unsupported"):
        assert oracle.reencode(oracle.decode_record(raw)) == raw


def reseal(raw: bytearray) -> bytearray:
    """``raw`` (either format, possibly damaged) with a valid checksum where its own length
    field puts it, when that can be found: defects the checksum cannot hide."""
    if raw[:1] == b"\x01" and len(raw) >= _core.HEADER_SIZE:
        return bytearray(v1_reseal(raw))
    try:
        length, pos = oracle.read_varint(bytes(raw), 1, len(raw))
    except Exception:
        return raw
    end = pos + length
    if end + 4 <= len(raw):
        checksum = oracle.xxh64(bytes(raw[:end]), _core.CHECKSUM_SEED) & 0xFFFFFFFF
        raw[end : end + 4] = struct.pack("<I", checksum)
    return raw


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(V2_FIELDS, min_size=1, max_size=3), V1_FIELDS, st.data())
def test_damaged_records_are_refused_like_the_oracle(
    records: list[tuple[Any, ...]], v1_args: tuple[int, int, int, int, int, bytes], data: Any
) -> None:
    """Garbage that starts out as valid records reaches the deep checks, not just the first."""
    if data.draw(st.booleans()):
        raw = bytearray(b"".join(_core.encode_record(*args) for args in records))
    else:
        raw = bytearray(oracle.encode_record_v1(*v1_args))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = reseal(raw)
    cut = data.draw(st.integers(0, len(raw) + 3))
    buf = bytes(raw[:cut]) + b"\x00" * max(0, cut - len(raw))
    one = outcome(_core.decode_record, buf)
    assert one == outcome(oracle.decode_record, buf)
    assert outcome(_core.decode_records, buf) == outcome(oracle.decode_records, buf)
    if isinstance(one, tuple) and one[0] == 2:  # accepted only when exactly a valid encoding
        assert oracle.reencode(oracle.decode_record(buf)) == buf


# ---------------------------------------------------------------- encoder range checks


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", 0),
        ("kind", 8),
        ("kind", -1),
        ("kind", 2**70),
        ("seq", -1),
        ("seq", 2**32),
        ("seq", 2**200),
        ("attempt", -1),
        ("attempt", 2**16),
    ],
)
def test_encode_range_errors(field: str, value: int) -> None:
    args = {**DEFAULTS, field: value}
    with pytest.raises(ValueError, match=field):
        _core.encode_record(**args)
    with pytest.raises(ValueError):  # the oracle agrees
        oracle.encode_record(**args)


@pytest.mark.parametrize("field", ["kind", "seq", "attempt"])
def test_encode_type_errors(field: str) -> None:
    for value in (1.0, "1", None):
        with pytest.raises(TypeError):
            make(**{field: value})
        with pytest.raises(TypeError):
            oracle.encode_record(**{**DEFAULTS, field: value})


def test_encode_empty_body_or_input() -> None:
    with pytest.raises(ValueError, match="body"):
        make(body=b"")
    with pytest.raises(ValueError, match="input"):
        make(input=b"")
    for field in ("body", "input"):
        with pytest.raises(ValueError):
            oracle.encode_record(**{**DEFAULTS, field: b""})


def test_encode_record_too_long() -> None:
    try:
        region = mmap.mmap(-1, _core.MAX_PAYLOAD + 1)  # address space only: never touched
    except (OSError, OverflowError, ValueError):
        pytest.skip("cannot map 2 GiB of address space here")
    with region, pytest.raises(ValueError, match="at most"):
        make(body=region)


def test_there_is_no_v1_encoder_any_more() -> None:
    with pytest.raises(TypeError):
        _core.encode_record(_core.KIND_STEP, 0, 1, 2, 3, b"null")  # type: ignore[call-arg]


def test_holds_record_reads_the_step_numbers_of_a_chunk() -> None:
    """The LMDB store's scan of a chunk: each record's length and step number, nothing
    more; agrees with the oracle on every cut of the value."""
    value = b"".join(make(seq=seq) for seq in (3, 70_000, 5))
    for seq in (3, 5, 70_000):
        assert _core.holds_record(value, seq) and oracle.holds_record(value, seq)
    assert not _core.holds_record(value, 4) and not oracle.holds_record(value, 4)
    assert not _core.holds_record(b"", 4)
    for cut in range(1, len(value)):
        for seq in (3, 5, 70_000, 4):
            try:
                got: object = _core.holds_record(value[:cut], seq)
            except JournalCorruptError:
                got = "corrupt"
            try:
                want: object = oracle.holds_record(value[:cut], seq)
            except JournalCorruptError:
                want = "corrupt"
            assert got == want, (cut, seq)
    with pytest.raises(JournalCorruptError):
        _core.holds_record(b"\x01" + value, 3)  # format 1 is never in a chunk
    with pytest.raises(ValueError):
        _core.holds_record(value, -1)
