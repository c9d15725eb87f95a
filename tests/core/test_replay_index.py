"""The replay index: hits, misses, non-determinism, consumption, and agreement with the oracle."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import oracle
from surestep import _core
from surestep.errors import JournalCorruptError, NonDeterminismError, UnsupportedFormatError

CHARGE = _core.name_hash("charge_card")
SHIP = _core.name_hash("ship_order")
INPUT = _core.input_digest(b'[["o-1"],{}]')
OTHER_INPUT = _core.input_digest(b'[["o-2"],{}]')


def rec(seq: int, name: int = CHARGE, digest: int = INPUT, kind: int = _core.KIND_STEP) -> bytes:
    return _core.encode_record(kind, seq, 1, name, digest, b'{"seq": %d}' % seq)


def test_empty_index() -> None:
    index = _core.ReplayIndex()
    assert len(index) == 0
    assert index.max_seq == -1
    assert index.unconsumed() == []
    assert index.lookup(0, CHARGE, INPUT) is None
    assert index.get(0) is None
    assert "0 records" in repr(index)


def test_hit_returns_the_record_and_consumes_it() -> None:
    index = _core.ReplayIndex.from_records([rec(0), rec(1, SHIP)])
    hit = index.lookup(1, SHIP, INPUT)
    assert hit is not None
    assert hit == _core.decode_record(rec(1, SHIP))
    assert hit.payload == b'{"seq": 1}'
    assert index.unconsumed() == [0]
    assert index.lookup(1, SHIP, INPUT) is hit  # a second lookup (a re-run) is still a hit


def test_miss_is_none() -> None:
    index = _core.ReplayIndex.from_records([rec(0)])
    assert index.lookup(1, CHARGE, INPUT) is None
    assert index.lookup(-1, CHARGE, INPUT) is None
    assert index.lookup(2**40, CHARGE, INPUT) is None
    assert index.unconsumed() == [0]


@pytest.mark.parametrize(
    ("name", "digest"), [(SHIP, INPUT), (CHARGE, OTHER_INPUT), (SHIP, OTHER_INPUT)]
)
def test_mismatch_raises_with_what_was_recorded_and_requested(name: int, digest: int) -> None:
    index = _core.ReplayIndex.from_records([rec(0), rec(1)])
    with pytest.raises(NonDeterminismError) as info:
        index.lookup(1, name, digest)
    err = info.value
    assert err.seq == 1
    assert err.run_id is None
    assert err.recorded == {
        "name_hash": f"{CHARGE:016x}",
        "input_digest": f"{INPUT:016x}",
        "kind": _core.KIND_STEP,
    }
    assert err.requested == {"name_hash": f"{name:016x}", "input_digest": f"{digest:016x}"}
    assert "step 1 does not match the journal" in str(err)
    assert index.unconsumed() == [0, 1]  # a mismatch consumes nothing


def test_recorded_failure_matches_like_a_step() -> None:
    index = _core.ReplayIndex.from_records([rec(0, kind=_core.KIND_STEP_ERROR)])
    with pytest.raises(NonDeterminismError) as info:
        index.lookup(0, SHIP, INPUT)
    assert info.value.recorded["kind"] == _core.KIND_STEP_ERROR
    hit = index.lookup(0, CHARGE, INPUT)
    assert hit is not None
    assert hit.kind == _core.KIND_STEP_ERROR


def test_get_neither_checks_nor_consumes() -> None:
    index = _core.ReplayIndex.from_records([rec(4)])
    found = index.get(4)
    assert found is not None
    assert found.seq == 4
    assert index.unconsumed() == [4]
    with pytest.raises(TypeError):
        index.get("4")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.lookup(4.0, CHARGE, INPUT)  # type: ignore[arg-type]


def test_gaps_any_order_and_max_seq() -> None:
    seqs = [9, 0, 5, _core.MAX_SEQ, 2]
    index = _core.ReplayIndex.from_records(rec(s) for s in seqs)
    assert len(index) == 5
    assert index.max_seq == _core.MAX_SEQ
    assert index.unconsumed() == sorted(seqs)
    assert index.lookup(3, CHARGE, INPUT) is None
    for seq in (0, 5):
        assert index.lookup(seq, CHARGE, INPUT) is not None
    assert index.unconsumed() == [2, 9, _core.MAX_SEQ]


def test_add_returns_the_record() -> None:
    index = _core.ReplayIndex()
    added = index.add(memoryview(rec(3)))
    assert added == _core.decode_record(rec(3))
    assert index.get(3) is added
    assert index.max_seq == 3
    index.add(bytearray(rec(1)))
    assert index.max_seq == 3
    assert len(index) == 2


def test_duplicate_seq_is_corrupt() -> None:
    with pytest.raises(JournalCorruptError, match="same step") as info:
        _core.ReplayIndex.from_records([rec(0), rec(1), rec(1, SHIP)])
    assert info.value.seq == 1
    index = _core.ReplayIndex.from_records([rec(0)])
    with pytest.raises(JournalCorruptError) as info:
        index.add(rec(0))
    assert info.value.seq == 0
    assert len(index) == 1


def test_corrupt_record_in_a_batch_names_its_step() -> None:
    batch = [rec(s) for s in range(6)]
    damaged = bytearray(batch[3])
    damaged[-2] ^= 0x10
    batch[3] = bytes(damaged)
    with pytest.raises(JournalCorruptError, match="checksum") as info:
        _core.ReplayIndex.from_records(batch)
    assert info.value.seq == 3
    assert "step 3" in str(info.value)


def test_newer_record_in_a_batch_is_unsupported() -> None:
    newer = bytearray(rec(1))
    newer[0] = 2
    with pytest.raises(UnsupportedFormatError):
        _core.ReplayIndex.from_records([rec(0), bytes(newer)])


# ---------------------------------------------------------------- against the oracle

NAMES = [CHARGE, SHIP, 0, 2**64 - 1]
DIGESTS = [INPUT, OTHER_INPUT]
SEQ = st.integers(0, 12) | st.sampled_from([_core.MAX_SEQ])


def _same(core_rec: _core.Record | None, oracle_rec: oracle.Record | None) -> bool:
    if core_rec is None or oracle_rec is None:
        return core_rec is oracle_rec
    return (
        core_rec.version,
        core_rec.kind,
        core_rec.attempt,
        core_rec.seq,
        core_rec.name_hash,
        core_rec.input_digest,
        core_rec.payload,
    ) == (
        oracle_rec.version,
        oracle_rec.kind,
        oracle_rec.attempt,
        oracle_rec.seq,
        oracle_rec.name_hash,
        oracle_rec.input_digest,
        oracle_rec.payload,
    )


def _run(call):  # type: ignore[no-untyped-def]
    """``call()``'s result, or the error it raised with the fields a caller relies on."""
    try:
        return ("ok", call())
    except NonDeterminismError as err:
        return ("nondeterminism", err.seq, err.recorded, err.requested)
    except JournalCorruptError as err:
        return (type(err).__name__, err.seq)


class IndexAgainstOracle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = _core.ReplayIndex()
        self.model = oracle.ReplayIndex()

    @rule(
        seq=SEQ,
        name=st.sampled_from(NAMES),
        digest=st.sampled_from(DIGESTS),
        kind=st.sampled_from(sorted(_core.KINDS)),
        attempt=st.integers(0, 3),
        payload=st.binary(max_size=20),
        damage=st.none() | st.integers(0, 2000),
    )
    def add(
        self,
        seq: int,
        name: int,
        digest: int,
        kind: int,
        attempt: int,
        payload: bytes,
        damage: int | None,
    ) -> None:
        raw = bytearray(_core.encode_record(kind, seq, attempt, name, digest, payload))
        if damage is not None:
            raw[damage % len(raw)] ^= 1 << (damage % 8)
        core = _run(lambda: self.core.add(bytes(raw)))
        model = _run(lambda: self.model.add(bytes(raw)))
        if core[0] == "ok":
            assert model[0] == "ok"
            assert _same(core[1], model[1])
        else:
            assert core == model

    @rule(seq=SEQ, name=st.sampled_from(NAMES), digest=st.sampled_from(DIGESTS))
    def lookup(self, seq: int, name: int, digest: int) -> None:
        core = _run(lambda: self.core.lookup(seq, name, digest))
        model = _run(lambda: self.model.lookup(seq, name, digest))
        if core[0] == "ok":
            assert model[0] == "ok"
            assert _same(core[1], model[1])
        else:
            assert core == model

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def lookup_recorded(self, data: st.DataObject) -> None:
        """Replay the way the runtime does: ask for exactly what was recorded."""
        seq = data.draw(st.sampled_from(sorted(self.model.records)))
        recorded = self.model.records[seq]
        hit = self.core.lookup(seq, recorded.name_hash, recorded.input_digest)
        assert _same(hit, self.model.lookup(seq, recorded.name_hash, recorded.input_digest))

    @rule(seq=SEQ)
    def get(self, seq: int) -> None:
        assert _same(self.core.get(seq), self.model.get(seq))

    @invariant()
    def same_state(self) -> None:
        assert len(self.core) == len(self.model)
        assert self.core.max_seq == self.model.max_seq
        assert self.core.unconsumed() == self.model.unconsumed()


IndexAgainstOracle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_index_against_oracle = IndexAgainstOracle.TestCase


# ---------------------------------------------------------------- replay: one call per step

STEP_INPUT = b'[["o-1"],{}]'


def step_rec(seq: int, payload: bytes, kind: int = _core.KIND_STEP, ident: str = "charge") -> bytes:
    digest = _core.input_digest(STEP_INPUT)
    return _core.encode_record(kind, seq, 1, _core.name_hash(ident), digest, payload)


def test_replay_returns_the_recorded_output_and_consumes() -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, b'{"n":"charge","o":{"id":7}}')])
    assert index.replay(0, "charge", STEP_INPUT, orjson.loads) == {"id": 7}
    assert index.unconsumed() == []


def test_replay_of_nothing_recorded_is_the_sentinel() -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, b'{"n":"charge","o":1}')])
    assert index.replay(1, "charge", STEP_INPUT, orjson.loads) is _core.NOT_RECORDED
    assert repr(_core.NOT_RECORDED) == "NOT_RECORDED"
    assert index.unconsumed() == [0]


@pytest.mark.parametrize(
    "payload",
    [b'{"n":"charge"}', b'{"o":1}', b'{"n":3,"o":1}', b"[1,2]", b"not json", b'"o"', b""],
)
def test_replay_hands_back_the_record_when_the_payload_is_not_a_plain_result(
    payload: bytes,
) -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, payload)])
    got = index.replay(0, "charge", STEP_INPUT, orjson.loads)
    assert isinstance(got, _core.Record)
    assert got.payload == payload
    assert index.unconsumed() == []  # matched, so consumed: the caller reads it


def test_replay_hands_back_other_kinds_without_decoding() -> None:
    def refuse(_: bytes) -> object:
        raise AssertionError("only a step's result is decoded")

    index = _core.ReplayIndex.from_records([step_rec(0, b"{}", kind=_core.KIND_STEP_ERROR)])
    got = index.replay(0, "charge", STEP_INPUT, refuse)
    assert isinstance(got, _core.Record)
    assert got.kind == _core.KIND_STEP_ERROR


def test_replay_mismatch_raises_like_lookup() -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, b'{"n":"charge","o":1}')])
    with pytest.raises(NonDeterminismError) as info:
        index.replay(0, "ship", STEP_INPUT, orjson.loads)
    assert info.value.seq == 0
    with pytest.raises(NonDeterminismError):
        index.replay(0, "charge", b'[["o-2"],{}]', orjson.loads)
    assert index.unconsumed() == [0]


def test_replay_refuses_bad_arguments() -> None:
    index = _core.ReplayIndex()
    with pytest.raises(TypeError):
        index.replay(0, b"charge", STEP_INPUT, orjson.loads)
    with pytest.raises(TypeError):
        index.replay("0", "charge", STEP_INPUT, orjson.loads)
    with pytest.raises(TypeError):
        index.replay(0, "charge", "not bytes", orjson.loads)


_PAYLOADS = st.one_of(
    st.builds(
        lambda n, o: orjson.dumps({"n": n, "o": o}),
        st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
        st.recursive(st.none() | st.booleans() | st.text(max_size=4), st.lists, max_leaves=4),
    ),
    st.binary(max_size=24),
)


@given(
    payload=_PAYLOADS,
    kind=st.sampled_from(sorted(_core.KINDS)),
    seq=st.integers(0, 3),
    ident=st.sampled_from(["charge", "ship", "charge#k"]),
    given_input=st.sampled_from([STEP_INPUT, b"null", b'[["o-2"],{}]']),
)
def test_replay_agrees_with_the_oracle(
    payload: bytes, kind: int, seq: int, ident: str, given_input: bytes
) -> None:
    buf = step_rec(1, payload, kind)
    outcomes = []
    for index_type, sentinel in (
        (_core.ReplayIndex, _core.NOT_RECORDED),
        (oracle.ReplayIndex, oracle.NOT_RECORDED),
    ):
        index = index_type.from_records([buf])
        try:
            got = index.replay(seq, ident, given_input, orjson.loads)
        except NonDeterminismError as exc:
            outcomes.append(("diverged", exc.seq))
            continue
        if got is sentinel:
            outcomes.append(("not recorded", None))
        elif isinstance(got, (_core.Record, oracle.Record)):
            outcomes.append(("record", (got.kind, got.seq, got.payload)))
        else:
            outcomes.append(("output", got))
        assert index.unconsumed() == ([] if got is not sentinel else [1])
    assert outcomes[0] == outcomes[1]
