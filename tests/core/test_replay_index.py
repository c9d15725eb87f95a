"""The replay index: hits, misses, non-determinism, consumption, and agreement with the oracle.

A format-2 record matches a step by its identity (the name, or ``name#key``) and its
canonical input, compared as text and bytes; a format-1 record (surestep 0.1) by the hashes
of both in its header.
"""

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from support import oracle
from surestep import _core
from surestep.errors import JournalCorruptError, NonDeterminismError, UnsupportedFormatError

GOLDEN_JOURNAL = Path(__file__).resolve().parent.parent / "golden" / "checkout-v1.json"
INPUT = b'[["o-1"],{}]'
OTHER_INPUT = b'[["o-2"],{}]'


def rec(
    seq: int,
    name: str = "charge_card",
    key: str | int | None = None,
    input: bytes | None = INPUT,
    kind: int = _core.KIND_STEP,
    body: bytes | None = None,
    output: bool = True,
) -> bytes:
    """A format-2 record; its body is ``{"seq": N}`` unless given."""
    body = body if body is not None else b'{"seq": %d}' % seq
    return _core.encode_record(kind, seq, 1, name, key, input, body, output, 1.5, 2.5)


def rec_v1(
    seq: int,
    ident: str = "charge_card",
    input: bytes = INPUT,
    kind: int = _core.KIND_STEP,
    payload: bytes | None = None,
) -> bytes:
    """A format-1 record, as surestep 0.1 wrote it (the oracle's encoder: the core has none)."""
    payload = payload if payload is not None else b'{"seq": %d}' % seq
    return oracle.encode_record_v1(
        kind, seq, 1, _core.name_hash(ident), _core.input_digest(input), payload
    )


def test_empty_index() -> None:
    index = _core.ReplayIndex()
    assert len(index) == 0
    assert index.max_seq == -1
    assert index.unconsumed() == []
    assert index.lookup(0, "charge_card", INPUT) is None
    assert index.get(0) is None
    assert "0 records" in repr(index)


def test_hit_returns_the_record_and_consumes_it() -> None:
    index = _core.ReplayIndex.from_records([rec(0), rec(1, "ship_order")])
    hit = index.lookup(1, "ship_order", INPUT)
    assert hit is not None
    assert hit == _core.decode_record(rec(1, "ship_order"))
    assert hit.body == b'{"seq": 1}'
    assert index.unconsumed() == [0]
    assert index.lookup(1, "ship_order", INPUT) is hit  # a second lookup (a re-run) hits
    assert "1 unconsumed" in repr(index)


def test_miss_is_none() -> None:
    index = _core.ReplayIndex.from_records([rec(0)])
    assert index.lookup(1, "charge_card", INPUT) is None
    assert index.lookup(-1, "charge_card", INPUT) is None
    assert index.lookup(2**40, "charge_card", INPUT) is None
    assert index.unconsumed() == [0]


@pytest.mark.parametrize(
    ("ident", "given"),
    [
        ("ship_order", INPUT),
        ("charge_card", OTHER_INPUT),
        ("ship_order", OTHER_INPUT),
        ("charge_card#k", INPUT),
        ("charge_card ", INPUT),
        ("charge_card", b'[["o-1"], {}]'),  # the same JSON value, other bytes: canonical differs
        ("charge_card", INPUT + b" "),
        ("charge_card", INPUT[:-1]),
        ("charge_card", b"null"),
    ],
)
def test_mismatch_raises_with_what_was_recorded_and_requested(ident: str, given: bytes) -> None:
    index = _core.ReplayIndex.from_records([rec(0), rec(1)])
    with pytest.raises(NonDeterminismError) as info:
        index.lookup(1, ident, given)
    err = info.value
    assert err.seq == 1
    assert err.run_id is None
    assert err.recorded == {"name": "charge_card", "kind": _core.KIND_STEP, "input": INPUT}
    assert err.requested == {"name": ident, "input": given}
    assert "step 1 does not match the journal" in str(err)
    assert index.unconsumed() == [0, 1]  # a mismatch consumes nothing


def test_input_is_compared_from_any_buffer() -> None:
    index = _core.ReplayIndex.from_records([rec(0)])
    for buf in (bytearray(INPUT), memoryview(INPUT), memoryview(b"x" + INPUT + b"x")[1:-1]):
        assert index.lookup(0, "charge_card", buf) is not None
    with pytest.raises(NonDeterminismError) as info:
        index.lookup(0, "charge_card", bytearray(OTHER_INPUT))
    assert info.value.requested["input"] == OTHER_INPUT
    assert type(info.value.requested["input"]) is bytes


def test_no_input_matches_null_and_only_null() -> None:
    index = _core.ReplayIndex.from_records([rec(0, input=None), rec(1, input=b"null")])
    assert index.get(0) != index.get(1)  # different records ...
    for seq in (0, 1):  # ... that match the same step
        hit = index.lookup(seq, "charge_card", b"null")
        assert hit is not None
    assert index.get(0).input is None  # type: ignore[union-attr]
    for other in (b"", b"Null", b"null ", b"nul", b"[]"):
        with pytest.raises(NonDeterminismError) as info:
            index.lookup(0, "charge_card", other)
        assert info.value.recorded["input"] is None


def test_the_key_is_part_of_the_identity() -> None:
    index = _core.ReplayIndex.from_records(
        [
            rec(0, "charge", key="k"),
            rec(1, "charge", key=12),
            rec(2, "charge", key="12"),
            rec(3, "charge#k"),  # a name with a '#' and no key: the same identity as seq 0
        ]
    )
    assert index.lookup(0, "charge#k", INPUT) is not None
    assert index.lookup(1, "charge#12", INPUT) is not None
    assert index.lookup(2, "charge#12", INPUT) is not None
    assert index.lookup(3, "charge#k", INPUT) is not None
    for seq, wrong in ((0, "charge"), (0, "charge#K"), (1, "charge#012"), (1, "charge")):
        with pytest.raises(NonDeterminismError) as info:
            index.lookup(seq, wrong, INPUT)
        assert info.value.recorded["name"] == ("charge#k" if seq == 0 else "charge#12")


def test_identity_is_compared_as_text() -> None:
    index = _core.ReplayIndex.from_records([rec(0, "größe/☕", key="ключ")])
    assert index.lookup(0, "größe/☕#ключ", INPUT) is not None
    for wrong in ("grösse/☕#ключ", "größe/☕#ключ\x00", "GRÖSSE/☕#ключ"):
        with pytest.raises(NonDeterminismError):
            index.lookup(0, wrong, INPUT)


@pytest.mark.parametrize("make", [rec, rec_v1])
def test_recorded_failure_matches_like_a_step(make: Any) -> None:
    index = _core.ReplayIndex.from_records([make(0, kind=_core.KIND_STEP_ERROR)])
    with pytest.raises(NonDeterminismError) as info:
        index.lookup(0, "ship_order", INPUT)
    assert info.value.recorded["kind"] == _core.KIND_STEP_ERROR
    hit = index.lookup(0, "charge_card", INPUT)
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
        index.lookup(4.0, "charge_card", INPUT)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.lookup(4, b"charge_card", INPUT)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.lookup(4, "charge_card", "not bytes")  # type: ignore[arg-type]
    assert index.unconsumed() == [4]


def test_gaps_any_order_and_max_seq() -> None:
    seqs = [9, 0, 5, _core.MAX_SEQ, 2]
    index = _core.ReplayIndex.from_records(rec(s) for s in seqs)
    assert len(index) == 5
    assert index.max_seq == _core.MAX_SEQ
    assert index.unconsumed() == sorted(seqs)
    assert index.lookup(3, "charge_card", INPUT) is None
    for seq in (0, 5):
        assert index.lookup(seq, "charge_card", INPUT) is not None
    assert index.unconsumed() == [2, 9, _core.MAX_SEQ]


def test_add_returns_the_record() -> None:
    index = _core.ReplayIndex()
    added = index.add(memoryview(rec(3)))
    assert added == _core.decode_record(rec(3))
    assert index.get(3) is added
    assert index.max_seq == 3
    index.add(bytearray(rec(1)))
    index.add(rec_v1(7))
    assert index.max_seq == 7
    assert len(index) == 3


def test_add_takes_exactly_one_record() -> None:
    index = _core.ReplayIndex()
    with pytest.raises(JournalCorruptError, match="trailing") as info:
        index.add(rec(0) + rec(1))
    assert info.value.seq == 0
    assert len(index) == 0  # a failed add changes nothing


def test_from_records_reads_values_of_several_records() -> None:
    """A store's journal: values of one to 32 format-2 records, or one format-1 record."""
    values = [
        rec(0) + rec(1, "ship_order") + rec(2, key=2),
        rec(5),
        rec_v1(6),
        rec(3) + rec(4, input=None),
        b"".join(rec(s) for s in range(10, 42)),
    ]
    index = _core.ReplayIndex.from_records(values)
    assert len(index) == 7 + 32
    assert index.unconsumed() == [0, 1, 2, 3, 4, 5, 6, *range(10, 42)]
    assert index.lookup(1, "ship_order", INPUT) is not None
    assert index.lookup(2, "charge_card#2", INPUT) is not None
    assert index.lookup(4, "charge_card", b"null") is not None
    assert index.lookup(6, "charge_card", INPUT) is not None  # format 1: by its hashes
    assert index.get(6).version == 1  # type: ignore[union-attr]
    model = oracle.ReplayIndex.from_records(values)
    assert sorted(index.unconsumed()) == sorted(set(model.records) - {1, 2, 4, 6})
    for seq in model.records:
        assert oracle.fields(index.get(seq)) == oracle.fields(model.get(seq))


def test_duplicate_seq_is_corrupt() -> None:
    with pytest.raises(JournalCorruptError, match="same step") as info:
        _core.ReplayIndex.from_records([rec(0), rec(1), rec(1, "ship_order")])
    assert info.value.seq == 1
    with pytest.raises(JournalCorruptError, match="same step") as info:
        _core.ReplayIndex.from_records([rec(0) + rec(2) + rec(0)])  # within one value
    assert info.value.seq == 0
    with pytest.raises(JournalCorruptError, match="same step") as info:
        _core.ReplayIndex.from_records([rec_v1(3), rec(3)])  # across formats
    assert info.value.seq == 3
    index = _core.ReplayIndex.from_records([rec(0)])
    with pytest.raises(JournalCorruptError) as info:
        index.add(rec(0))
    assert info.value.seq == 0
    assert len(index) == 1
    assert index.get(0) == _core.decode_record(rec(0))


@pytest.mark.parametrize("make", [rec, rec_v1])
def test_corrupt_record_in_a_batch_names_its_step(make: Any) -> None:
    batch = [make(s) for s in range(6)]
    damaged = bytearray(batch[3])
    damaged[-6] ^= 0x10  # in the body or payload: only the checksum notices
    batch[3] = bytes(damaged)
    with pytest.raises(JournalCorruptError, match="checksum") as info:
        _core.ReplayIndex.from_records(batch)
    assert info.value.seq == 3
    assert "step 3" in str(info.value)


def test_corrupt_record_inside_a_value_names_its_step() -> None:
    damaged = bytearray(rec(8))
    damaged[-6] ^= 0x10
    with pytest.raises(JournalCorruptError, match="checksum") as info:
        _core.ReplayIndex.from_records([rec(7) + bytes(damaged) + rec(9)])
    assert info.value.seq == 8


def test_newer_record_in_a_batch_is_unsupported() -> None:
    newer = bytearray(rec(1))
    newer[0] = 3
    with pytest.raises(UnsupportedFormatError):
        _core.ReplayIndex.from_records([rec(0), bytes(newer)])
    with pytest.raises(UnsupportedFormatError):
        _core.ReplayIndex.from_records([rec(0) + bytes(newer)])
    with pytest.raises(UnsupportedFormatError):
        _core.ReplayIndex().add(bytes(newer))


# ---------------------------------------------------------------- format 1 in the index


def test_v1_records_match_by_their_hashes() -> None:
    index = _core.ReplayIndex.from_records([rec_v1(0), rec_v1(1, "charge#k", b"null")])
    assert index.lookup(0, "charge_card", INPUT) is not None
    assert index.lookup(1, "charge#k", b"null") is not None
    with pytest.raises(NonDeterminismError) as info:
        index.lookup(0, "ship_order", OTHER_INPUT)
    assert info.value.recorded == {
        "name_hash": f"{_core.name_hash('charge_card'):016x}",
        "input_digest": f"{_core.input_digest(INPUT):016x}",
        "kind": _core.KIND_STEP,
    }
    assert info.value.requested == {"name": "ship_order", "input": OTHER_INPUT}
    assert index.unconsumed() == []


def test_v1_and_v2_records_in_one_index() -> None:
    index = _core.ReplayIndex.from_records([rec_v1(0), rec(1), rec_v1(2, "ship"), rec(3, "ship")])
    for seq, ident in ((0, "charge_card"), (1, "charge_card"), (2, "ship"), (3, "ship")):
        hit = index.lookup(seq, ident, INPUT)
        assert hit is not None
        assert hit.version == (1 if seq % 2 == 0 else 2)
    assert index.unconsumed() == []


def _golden_records() -> list[bytes]:
    return [bytes.fromhex(h) for h in json.loads(GOLDEN_JOURNAL.read_text())["records"]]


def test_golden_v1_journal_replays() -> None:
    """Records written by surestep 0.1 replay, matched by the hashes in their headers."""
    records = _golden_records()
    core = _core.ReplayIndex.from_records(records)
    model = oracle.ReplayIndex.from_records(records)
    outputs = []
    for raw in records:
        payload = orjson.loads(_core.decode_record(raw).payload)
        ident = payload["n"] if payload.get("k") is None else f"{payload['n']}#{payload['k']}"
        given = b"null" if payload.get("i") is None else orjson.dumps(payload["i"])
        seq = _core.decode_record(raw).seq
        got = core.replay(seq, ident, given, orjson.loads)
        expected = model.replay(seq, ident, given, orjson.loads)
        if isinstance(got, _core.Record):
            assert got.kind != _core.KIND_STEP
            assert oracle.fields(got) == oracle.fields(expected)
        else:
            assert got == expected == payload["o"]
            outputs.append(got)
        with pytest.raises(NonDeterminismError):
            core.lookup(seq, ident + "-renamed", given)
    assert outputs == ["reserved-lamp", "reserved-desk", "receipt-250", "paid-250"]
    assert core.unconsumed() == model.unconsumed() == []


# ---------------------------------------------------------------- against the oracle

# (name, key) pairs and inputs from small pools, so that hits, mismatches and
# duplicates are common; every identity below is requested by IDENTS.
STEPS = [("charge", None), ("ship", None), ("charge", 1), ("charge", "1"), ("charge#k", None)]
IDENTS = ["charge", "ship", "charge#1", "charge#k", "other"]
INPUTS = [None, b"null", INPUT, OTHER_INPUT]
SEQ = st.integers(0, 12) | st.sampled_from([_core.MAX_SEQ])
KIND = st.just(_core.KIND_STEP) | st.sampled_from(sorted(_core.KINDS))  # mostly steps
BODIES = st.sampled_from([b"1", b'{"id":7}', b"not json", b'"o"', b"[1,2]"]) | st.binary(
    min_size=1, max_size=12
)


def _run(call):  # type: ignore[no-untyped-def]
    """``call()``'s result, or the error it raised with the fields a caller relies on."""
    try:
        got = call()
    except NonDeterminismError as err:
        return ("nondeterminism", err.seq, err.recorded, err.requested)
    except JournalCorruptError as err:
        return (type(err).__name__, err.seq)
    if got is _core.NOT_RECORDED or got is oracle.NOT_RECORDED:
        return ("not recorded",)
    if isinstance(got, (_core.Record, oracle.Record)):
        return ("record", oracle.fields(got))
    return ("ok", got)


def _made(
    fmt: int, seq: int, step: int, given: int, kind: int, body: bytes, output: bool
) -> tuple[bytes, str, bytes]:
    """A record of format ``fmt``, and the identity and input a replay asks it for."""
    name, key = STEPS[step]
    inp = INPUTS[given]
    ident = name if key is None else f"{name}#{key}"
    asked = b"null" if inp is None else inp
    if fmt == 1:
        payload = orjson.dumps({"n": name, "o": orjson.loads(body)}) if body == b"1" else body
        raw = oracle.encode_record_v1(
            kind, seq, 2, _core.name_hash(ident), _core.input_digest(asked), payload
        )
    else:
        raw = _core.encode_record(kind, seq, 2, name, key, inp, body, output, 3.0, None)
    return raw, ident, asked


class IndexAgainstOracle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = _core.ReplayIndex()
        self.model = oracle.ReplayIndex()
        self.asked: dict[int, tuple[str, bytes]] = {}  # seq -> what a replay asks for it

    @rule(
        fmt=st.sampled_from([1, 2, 2]),
        seq=SEQ,
        step=st.integers(0, len(STEPS) - 1),
        given=st.integers(0, len(INPUTS) - 1),
        kind=KIND,
        body=BODIES,
        output=st.booleans(),
        damage=st.none() | st.integers(0, 4000),
    )
    def add(
        self,
        fmt: int,
        seq: int,
        step: int,
        given: int,
        kind: int,
        body: bytes,
        output: bool,
        damage: int | None,
    ) -> None:
        made, ident, asked = _made(fmt, seq, step, given, kind, body, output)
        raw = bytearray(made)
        if damage is not None:
            raw[damage % len(raw)] ^= 1 << (damage % 8)
        core = _run(lambda: self.core.add(bytes(raw)))
        assert core == _run(lambda: self.model.add(bytes(raw)))
        if core[0] == "record":
            self.asked[seq] = (ident, asked)

    @rule(
        seqs=st.lists(SEQ, min_size=1, max_size=4),
        step=st.integers(0, len(STEPS) - 1),
        extra=st.sampled_from([b"", b"", b"\x00", b"\x01", b"\x03", b"\x02\x01"]),
    )
    def rebuild(self, seqs: list[int], step: int, extra: bytes) -> None:
        """Both indexes anew from one value of several records (and maybe garbage)."""
        made = [_made(2, seq, step, 2, _core.KIND_STEP, b"1", True) for seq in seqs]
        value = b"".join(raw for raw, _, _ in made) + extra
        core = _run(lambda: _core.ReplayIndex.from_records([value]))
        model = _run(lambda: oracle.ReplayIndex.from_records([value]))
        assert (core[0], core[1:]) == (model[0], model[1:]) or core[0] == model[0] == "ok"
        if core[0] == "ok":
            self.core, self.model = core[1], model[1]
            self.asked = {
                seq: (ident, asked) for (seq, (_, ident, asked)) in zip(seqs, made, strict=True)
            }

    @rule(seq=SEQ, ident=st.sampled_from(IDENTS), given=st.sampled_from(INPUTS[1:]))
    def lookup(self, seq: int, ident: str, given: bytes) -> None:
        core = _run(lambda: self.core.lookup(seq, ident, given))
        assert core == _run(lambda: self.model.lookup(seq, ident, given))

    @rule(seq=SEQ, ident=st.sampled_from(IDENTS), given=st.sampled_from(INPUTS[1:]))
    def replay(self, seq: int, ident: str, given: bytes) -> None:
        core = _run(lambda: self.core.replay(seq, ident, given, orjson.loads))
        assert core == _run(lambda: self.model.replay(seq, ident, given, orjson.loads))

    @precondition(lambda self: len(self.asked) > 0)
    @rule(data=st.data())
    def replay_recorded(self, data: st.DataObject) -> None:
        """Replay the way the runtime does: ask for exactly what was recorded."""
        seq = data.draw(st.sampled_from(sorted(self.asked)))
        ident, asked = self.asked[seq]
        core = _run(lambda: self.core.replay(seq, ident, asked, orjson.loads))
        assert core[0] != "nondeterminism"
        assert core == _run(lambda: self.model.replay(seq, ident, asked, orjson.loads))

    @rule(seq=SEQ)
    def get(self, seq: int) -> None:
        assert oracle.fields(self.core.get(seq)) == oracle.fields(self.model.get(seq))

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


def step_rec(
    seq: int,
    body: bytes,
    kind: int = _core.KIND_STEP,
    name: str = "charge",
    output: bool = True,
) -> bytes:
    return _core.encode_record(kind, seq, 1, name, None, STEP_INPUT, body, output, None, None)


def step_rec_v1(seq: int, payload: bytes, kind: int = _core.KIND_STEP) -> bytes:
    return rec_v1(seq, "charge", STEP_INPUT, kind, payload)


def test_replay_returns_the_recorded_output_and_consumes() -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, b'{"id":7}')])
    assert index.replay(0, "charge", STEP_INPUT, orjson.loads) == {"id": 7}
    assert index.unconsumed() == []


def test_replay_decodes_the_body_alone() -> None:
    seen = []

    def loads(data: bytes) -> object:
        seen.append(data)
        return orjson.loads(data)

    index = _core.ReplayIndex.from_records([step_rec(0, b"[1, 2]"), step_rec(1, b"null")])
    assert index.replay(0, "charge", STEP_INPUT, loads) == [1, 2]
    assert index.replay(1, "charge", STEP_INPUT, loads) is None  # a step that returned None
    assert seen == [b"[1, 2]", b"null"]
    assert all(type(data) is bytes for data in seen)


def test_replay_of_a_v1_result() -> None:
    index = _core.ReplayIndex.from_records([step_rec_v1(0, b'{"n":"charge","o":{"id":7}}')])
    assert index.replay(0, "charge", STEP_INPUT, orjson.loads) == {"id": 7}
    assert index.unconsumed() == []


def test_replay_of_nothing_recorded_is_the_sentinel() -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, b"1")])
    assert index.replay(1, "charge", STEP_INPUT, orjson.loads) is _core.NOT_RECORDED
    assert repr(_core.NOT_RECORDED) == "NOT_RECORDED"
    assert index.unconsumed() == [0]


def test_replay_hands_back_a_step_record_without_an_output() -> None:
    def refuse(_: bytes) -> object:
        raise AssertionError("only a step's output is decoded")

    index = _core.ReplayIndex.from_records([step_rec(0, b'{"note":1}', output=False)])
    got = index.replay(0, "charge", STEP_INPUT, refuse)
    assert isinstance(got, _core.Record)
    assert got.body == b'{"note":1}'
    assert index.unconsumed() == []


@pytest.mark.parametrize("body", [b"not json", b"{", b"\xff"])
def test_replay_hands_back_an_output_that_is_not_json(body: bytes) -> None:
    """``loads`` raised ValueError: the caller gets the record (and calls it corrupt)."""
    index = _core.ReplayIndex.from_records([step_rec(0, body)])
    got = index.replay(0, "charge", STEP_INPUT, orjson.loads)
    assert isinstance(got, _core.Record)
    assert got.body == body
    assert index.unconsumed() == []
    model = oracle.ReplayIndex.from_records([step_rec(0, body)])
    assert _run(lambda: model.replay(0, "charge", STEP_INPUT, orjson.loads)) == (
        "record",
        oracle.fields(got),
    )


@pytest.mark.parametrize(
    "payload",
    [b'{"n":"charge"}', b'{"o":1}', b'{"n":3,"o":1}', b"[1,2]", b"not json", b'"o"', b""],
)
def test_replay_hands_back_the_record_when_a_v1_payload_is_not_a_plain_result(
    payload: bytes,
) -> None:
    index = _core.ReplayIndex.from_records([step_rec_v1(0, payload)])
    got = index.replay(0, "charge", STEP_INPUT, orjson.loads)
    assert isinstance(got, _core.Record)
    assert got.payload == payload
    assert index.unconsumed() == []  # matched, so consumed: the caller reads it


@pytest.mark.parametrize("make", [step_rec, step_rec_v1])
def test_replay_hands_back_other_kinds_without_decoding(make: Any) -> None:
    def refuse(_: bytes) -> object:
        raise AssertionError("only a step's result is decoded")

    for kind in sorted(_core.KINDS - {_core.KIND_STEP}):
        index = _core.ReplayIndex.from_records([make(0, b"{}", kind=kind)])
        got = index.replay(0, "charge", STEP_INPUT, refuse)
        assert isinstance(got, _core.Record)
        assert got.kind == kind


@pytest.mark.parametrize("make", [step_rec, step_rec_v1])
def test_replay_mismatch_raises_like_lookup(make: Any) -> None:
    index = _core.ReplayIndex.from_records([make(0, b'{"n":"charge","o":1}')])
    with pytest.raises(NonDeterminismError) as info:
        index.replay(0, "ship", STEP_INPUT, orjson.loads)
    assert info.value.seq == 0
    assert info.value.requested == {"name": "ship", "input": STEP_INPUT}
    with pytest.raises(NonDeterminismError):
        index.replay(0, "charge", b'[["o-2"],{}]', orjson.loads)
    assert index.unconsumed() == [0]


def test_replay_refuses_bad_arguments() -> None:
    index = _core.ReplayIndex.from_records([step_rec(0, b"1")])
    with pytest.raises(TypeError):
        index.replay(0, b"charge", STEP_INPUT, orjson.loads)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.replay("0", "charge", STEP_INPUT, orjson.loads)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.replay(0, "charge", "not bytes", orjson.loads)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _core.ReplayIndex().replay(0, b"charge", STEP_INPUT, orjson.loads)  # type: ignore[arg-type]
    assert index.unconsumed() == [0]


_V1_PAYLOADS = st.one_of(
    st.builds(
        lambda n, o: orjson.dumps({"n": n, "o": o}),
        st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
        st.recursive(st.none() | st.booleans() | st.text(max_size=4), st.lists, max_leaves=4),
    ),
    st.binary(max_size=24),
)
_BODIES = st.one_of(
    st.recursive(st.none() | st.booleans() | st.text(max_size=4), st.lists, max_leaves=4).map(
        orjson.dumps
    ),
    st.binary(min_size=1, max_size=24),
)


@settings(max_examples=300, deadline=None)
@given(
    v1_payload=_V1_PAYLOADS,
    body=_BODIES,
    fmt=st.sampled_from([1, 2]),
    output=st.booleans(),
    kind=KIND,
    seq=st.sampled_from([1, 1, 1, 0]),  # mostly a hit, so the recorded result is decoded
    ident=st.sampled_from(["charge", "charge", "ship", "charge#k"]),
    given_input=st.sampled_from([STEP_INPUT, STEP_INPUT, b"null", b'[["o-2"],{}]']),
)
def test_replay_agrees_with_the_oracle(
    v1_payload: bytes,
    body: bytes,
    fmt: int,
    output: bool,
    kind: int,
    seq: int,
    ident: str,
    given_input: bytes,
) -> None:
    buf = step_rec_v1(1, v1_payload, kind) if fmt == 1 else step_rec(1, body, kind, output=output)
    outcomes = []
    for index_type in (_core.ReplayIndex, oracle.ReplayIndex):
        index = index_type.from_records([buf])
        got = _run(lambda: index.replay(seq, ident, given_input, orjson.loads))  # noqa: B023
        outcomes.append(got)
        matched = got[0] in ("ok", "record")
        assert index.unconsumed() == ([] if matched else [1])
    assert outcomes[0] == outcomes[1]
