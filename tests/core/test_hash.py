"""XXH64, name hashes and input digests: frozen by golden values, checked against two models.

Every journal key and record checksum depends on these numbers. If a test here fails, a
release would orphan every stored journal: fix the code, never the expected values.
"""

import mmap
import random

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from support import oracle
from surestep import _core

# (input, seed, XXH64 as hex): computed by surestep._core, tests/support/oracle.py and the xxhash
# package (the reference C implementation), which agree.
GOLDEN_XXH64 = [
    (b"", 0, "ef46db3751d8e999"),
    (b"a", 0, "d24ec4f1a98c6e5b"),
    (b"abc", 0, "44bc2cf5ad770999"),
    (b"Nobody inspects the spammish repetition", 0, "fbcea83c8a378bf1"),
    (bytes(range(32)), 0, "cbf59c5116ff32b4"),
    (bytes(range(100)), 0, "6ac1e58032166597"),
    (bytes(range(256)), 0, "1facbe8406cd904b"),
    (b"", 0x5375726573746570, "3041d7d36162166a"),
    (b"a" * 31, 1, "fd3d46ba3e5b6bef"),
    (b"a" * 32, 1, "53ac5803e608ddf7"),
    (b"a" * 33, 1, "367f51444cb4aee7"),
    (b"surestep" * 20, 2**64 - 1, "6c3984cd9724841a"),
]

GOLDEN_NAME_HASHES = [
    ("charge_card", "d1fab3b4ff104298"),
    ("größe/☕", "bf3232323083212d"),
]

GOLDEN_INPUT = (b'[["o-1"],{}]', "c4332458db644e68")

# A format-1 record as surestep 0.1 wrote it (format 1 is read, never written now):
# encode_record(KIND_STEP, seq=7, attempt=1, name_hash("charge_card"),
#               input_digest(b'[["o-1"],{}]'), b'{"txn":"t-42"}')
GOLDEN_RECORD = (
    "01"  # version
    "01"  # kind: KIND_STEP
    "0100"  # attempt 1
    "07000000"  # seq 7
    "984210ffb4b3fad1"  # name hash
    "684e64db582433c4"  # input digest
    "0e000000"  # payload length 14
    "724229f2"  # checksum
    "7b2274786e223a22742d3432227d"  # {"txn":"t-42"}
)

BLOCK_EDGES = sorted({*range(101), 127, 128, 129, 159, 160, 161, 255, 256, 257})


@pytest.mark.parametrize(("data", "seed", "expected"), GOLDEN_XXH64)
def test_xxh64_golden(data: bytes, seed: int, expected: str) -> None:
    assert f"{_core.xxh64(data, seed):016x}" == expected
    assert f"{xxhash.xxh64_intdigest(data, seed):016x}" == expected
    assert f"{oracle.xxh64(data, seed):016x}" == expected


def test_seeds_are_frozen() -> None:
    assert _core.NAME_SEED == 0x5375726573746570 == int.from_bytes(b"Surestep", "big")
    assert _core.INPUT_SEED == _core.NAME_SEED ^ 1
    assert _core.CHECKSUM_SEED == _core.NAME_SEED ^ 2


@pytest.mark.parametrize(("name", "expected"), GOLDEN_NAME_HASHES)
def test_name_hash_golden(name: str, expected: str) -> None:
    assert f"{_core.name_hash(name):016x}" == expected
    assert _core.name_hash(name) == xxhash.xxh64_intdigest(name.encode(), _core.NAME_SEED)
    assert _core.name_hash(name) == oracle.name_hash(name)


def test_input_digest_golden() -> None:
    data, expected = GOLDEN_INPUT
    assert f"{_core.input_digest(data):016x}" == expected
    assert _core.input_digest(data) == xxhash.xxh64_intdigest(data, _core.INPUT_SEED)
    assert _core.input_digest(bytearray(data)) == _core.input_digest(memoryview(data))


def test_golden_record() -> None:
    record = oracle.encode_record_v1(
        _core.KIND_STEP,
        7,
        1,
        _core.name_hash("charge_card"),
        _core.input_digest(GOLDEN_INPUT[0]),
        b'{"txn":"t-42"}',
    )
    assert record.hex() == GOLDEN_RECORD
    decoded = _core.decode_record(bytes.fromhex(GOLDEN_RECORD))
    assert (decoded.version, decoded.kind, decoded.attempt, decoded.seq) == (1, 1, 1, 7)
    assert f"{decoded.name_hash:016x}" == GOLDEN_NAME_HASHES[0][1]
    assert f"{decoded.input_digest:016x}" == GOLDEN_INPUT[1]
    assert decoded.payload == b'{"txn":"t-42"}'
    # It still replays: matched by the hashes in its header.
    index = _core.ReplayIndex.from_records([bytes.fromhex(GOLDEN_RECORD)])
    assert index.lookup(7, "charge_card", GOLDEN_INPUT[0]) == decoded
    assert index.unconsumed() == []
    # The format-1 checksum: XXH64(header[0:28] + payload, CHECKSUM_SEED), low 32 bits.
    raw = bytes.fromhex(GOLDEN_RECORD)
    expected = xxhash.xxh64_intdigest(raw[:28] + raw[32:], _core.CHECKSUM_SEED) & 0xFFFFFFFF
    assert raw[28:32] == expected.to_bytes(4, "little")


def test_golden_v2_checksum_is_xxh64_of_the_record() -> None:
    """Format 2: XXH64(version byte .. end of fields, CHECKSUM_SEED), low 32 bits, LE."""
    args = (_core.KIND_STEP, 7, 1, "charge_card", None, GOLDEN_INPUT[0], b'{"txn":"t-42"}')
    raw = _core.encode_record(*args, True, None, None)
    expected = xxhash.xxh64_intdigest(raw[:-4], _core.CHECKSUM_SEED) & 0xFFFFFFFF
    assert raw[-4:] == expected.to_bytes(4, "little")
    assert raw == oracle.encode_record(*args, True, None, None)


def test_name_hash_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        _core.name_hash(b"charge_card")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.name_hash(None)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        _core.name_hash("lone \udc80 surrogate")


def test_xxh64_arguments() -> None:
    data = b"0123456789" * 7
    expected = _core.xxh64(data, 3)
    assert _core.xxh64(bytearray(data), 3) == expected
    assert _core.xxh64(memoryview(data), seed=3) == expected
    assert _core.xxh64(data=data, seed=3) == expected
    assert _core.xxh64(data) == _core.xxh64(data, 0)
    with pytest.raises(TypeError):
        _core.xxh64("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.xxh64(data, 1.5)  # type: ignore[arg-type]
    for bad_seed in (-1, 2**64):
        with pytest.raises(ValueError, match="seed"):
            _core.xxh64(data, bad_seed)
    with pytest.raises(BufferError):
        _core.xxh64(memoryview(data)[::2])  # not contiguous


def test_xxh64_any_buffer_exporter() -> None:
    with mmap.mmap(-1, 4096) as region:
        region[:5] = b"hello"
        assert _core.xxh64(region) == xxhash.xxh64_intdigest(bytes(region))


@pytest.mark.parametrize("offset", range(8))
def test_xxh64_unaligned(offset: int) -> None:
    base = bytes(range(256)) * 2
    view = memoryview(base)[offset : offset + 200]
    assert _core.xxh64(view, 11) == xxhash.xxh64_intdigest(bytes(view), 11)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 2**64 - 1))
def test_xxh64_matches_models(data: bytes, seed: int) -> None:
    expected = xxhash.xxh64_intdigest(data, seed)
    assert _core.xxh64(data, seed) == expected
    assert oracle.xxh64(data, seed) == expected


@pytest.mark.parametrize("seed", [0, 1, 0x9E3779B185EBCA87, 2**64 - 1])
def test_xxh64_every_length_near_block_edges(seed: int) -> None:
    rng = random.Random(seed)
    for n in BLOCK_EDGES:
        buf = rng.randbytes(n)
        expected = xxhash.xxh64_intdigest(buf, seed)
        assert _core.xxh64(buf, seed) == expected, n
        assert oracle.xxh64(buf, seed) == expected, n


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_name_hash_matches_models(name: str) -> None:
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            _core.name_hash(name)
        return
    assert _core.name_hash(name) == xxhash.xxh64_intdigest(encoded, _core.NAME_SEED)
    assert _core.name_hash(name) == oracle.name_hash(name)
