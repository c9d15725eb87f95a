"""Step keys: one run's journal is one contiguous LMDB range, in step order."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import oracle
from surestep import _core
from surestep.errors import JournalCorruptError

RUN_KEYS = st.binary(min_size=16, max_size=16)
SEQS = st.integers(0, _core.MAX_SEQ)


def test_layout() -> None:
    run = bytes(range(16))
    assert _core.RUN_KEY_SIZE == 16
    assert _core.STEP_KEY_SIZE == 20
    assert _core.step_key(run, 0) == run + b"\x00\x00\x00\x00"
    assert _core.step_key(run, 0x01020304) == run + b"\x01\x02\x03\x04"
    assert _core.step_key(run, _core.MAX_SEQ) == run + b"\xff\xff\xff\xff"
    assert _core.split_step_key(run + b"\x00\x00\x01\x00") == (run, 256)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([b"\x00" * 16, b"\xff" * 16]) | RUN_KEYS, SEQS)))
def test_byte_order_is_run_then_seq_order(pairs: list[tuple[bytes, int]]) -> None:
    by_bytes = sorted(pairs, key=lambda pair: _core.step_key(*pair))
    assert [(r, s) for r, s in by_bytes] == sorted(pairs)


@settings(max_examples=200, deadline=None)
@given(RUN_KEYS, SEQS)
def test_split_inverts_and_matches_oracle(run: bytes, seq: int) -> None:
    key = _core.step_key(run, seq)
    assert key == oracle.step_key(run, seq)
    assert len(key) == _core.STEP_KEY_SIZE
    assert _core.split_step_key(key) == (run, seq) == oracle.split_step_key(key)
    assert _core.split_step_key(bytearray(key)) == (run, seq)
    assert _core.split_step_key(memoryview(key)) == (run, seq)
    assert type(_core.split_step_key(memoryview(key))[0]) is bytes


def test_any_buffer_as_run_key() -> None:
    run = b"r" * 16
    assert _core.step_key(bytearray(run), 5) == _core.step_key(memoryview(run), 5)
    assert _core.step_key(bytearray(run), 5) == run + b"\x00\x00\x00\x05"


@pytest.mark.parametrize("size", [0, 1, 15, 17, 20, 32])
def test_bad_run_key_size(size: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        _core.step_key(b"k" * size, 0)


@pytest.mark.parametrize("seq", [-1, _core.MAX_SEQ + 1, 2**64])
def test_bad_seq(seq: int) -> None:
    with pytest.raises(ValueError, match="seq"):
        _core.step_key(b"k" * 16, seq)


def test_bad_types() -> None:
    with pytest.raises(TypeError):
        _core.step_key("k" * 16, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.step_key(b"k" * 16, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.split_step_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 16, 19, 21, 40])
def test_split_bad_length_is_corrupt(size: int) -> None:
    with pytest.raises(JournalCorruptError, match="20 bytes"):
        _core.split_step_key(b"\x00" * size)
