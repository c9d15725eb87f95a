"""Fuzz harness: the replay index, as a sequence of operations checked against the oracle.

``one_input(data)`` reads the fuzz bytes as a small program: each operation is one byte
(which operation) and its operands (sequence numbers; step names, keys and inputs from
small pools so that hits, mismatches and duplicates are common; bodies; defects). Records
are format 2 (from the core's encoder, one or several to a journal value) and format 1
(the oracle's encoder: surestep 0.1's records). Every operation runs on
``surestep._core.ReplayIndex`` and on ``tests/support/oracle.py``'s model, and after each one:

- both did the same: the same record, ``None``, the same decoded output (``replay``),
  or the same error class with the same ``seq`` (and, for ``NonDeterminismError``, the
  same ``recorded`` / ``requested``);
- the only errors are ``JournalCorruptError`` / ``UnsupportedFormatError`` (a bad or
  repeated record) and ``NonDeterminismError`` (a lookup that does not match); anything
  else, or a crash under ASan/UBSan, is a finding;
- asking for exactly what was recorded never diverges;
- ``len``, ``max_seq`` and ``unconsumed()`` agree; a failed ``add`` changed nothing.

Run under atheris with ``fuzz/run.py replay`` (``make fuzz``).
"""

from __future__ import annotations

from typing import Any

import orjson
from fuzz_common import Reader, fields, oracle, reseal

from surestep import _core
from surestep.errors import JournalCorruptError, NonDeterminismError, UnsupportedFormatError

# Small pools: a fuzzer that must guess names and inputs never sees a hit.
STEPS: tuple[tuple[str, str | int | None], ...] = (
    ("charge", None),
    ("ship", None),
    ("charge", 1),
    ("charge", "1"),  # the same identity as ("charge", 1): "charge#1"
    ("charge#k", None),
    ("größe", "☕"),
)
IDENTS = ("charge", "ship", "charge#1", "charge#k", "größe#☕", "other")
INPUTS = (None, b"null", b'[["o-1"],{}]', b"[[],{}]")  # None: the record has no input
# Bodies a step may have recorded (replay() decodes them), picked by a blob starting "J".
BODIES = (
    b'{"id":7}',
    b"null",
    b"[1,2]",
    b'"o"',
    b"not json",
    b'{"n":"x","o":',
)
# Format-1 payloads (replay() decodes them and looks for "n" and "o").
PAYLOADS = (
    b'{"n":"charge","o":{"id":7}}',
    b'{"n":"ship","k":null,"i":null,"o":null,"t0":1.5,"t1":2.5}',
    b'{"n":"charge"}',
    b'{"n":3,"o":1}',
    b'{"o":1}',
    b"[1,2]",
    b'{"n":"x","o":',
)
MAX_OPS = 64
_INDEXES = (_core.ReplayIndex, oracle.ReplayIndex)


class _Run:
    """The two indexes, and what a replay asks each recorded step for."""

    def __init__(self) -> None:
        self.core: Any = _core.ReplayIndex()
        self.model = oracle.ReplayIndex()
        self.asked: dict[int, tuple[str, bytes]] = {}

    def add(self, buf: Any, plain: bytes, asked: tuple[int, str, bytes] | None) -> None:
        got = _run(self.core.add, buf)
        _same(got, _run(self.model.add, plain))
        if got[0] == "ok" and asked is not None and got[1] is not None:
            seq, ident, inp = asked
            if got[1][4] == seq:  # the record as made (a defect could move its seq)
                self.asked[seq] = (ident, inp)


def one_input(data: bytes) -> None:
    inp = Reader(data)
    run = _Run()
    for _ in range(MAX_OPS):
        if not inp.remaining():
            break
        op = inp.u8() % 11
        if op == 0:  # add a well-formed format-2 record
            buf, asked = _record(inp)
            run.add(buf, buf, asked)
        elif op == 1:  # add a damaged one (possibly resealed, possibly a newer version)
            buf = _damaged(inp)
            run.add(buf, buf, None)
        elif op == 2:  # add through another buffer exporter
            buf, asked = _record(inp) if inp.u8() & 1 else _record_v1(inp)
            view: Any = memoryview(b"\x00" + buf)[1:] if inp.u8() & 1 else bytearray(buf)
            run.add(view, buf, asked)
        elif op == 3:  # replay: the one-call form
            seq = _seq(inp)
            ident, given = _asked(inp, run, seq)
            _same(_replay(run.core, seq, ident, given), _replay(run.model, seq, ident, given))
        elif op == 4:  # lookup
            seq = _seq(inp)
            ident, given = _asked(inp, run, seq)
            core = _run(run.core.lookup, seq, ident, given)
            _same(core, _run(run.model.lookup, seq, ident, given))
            if seq in run.asked and (ident, given) == run.asked[seq]:
                assert core[0] == "ok", core  # asking for what was recorded always matches
        elif op == 5:  # get, checking nothing and consuming nothing
            seq = _seq(inp)
            _same(_run(run.core.get, seq), _run(run.model.get, seq))
        elif op == 6:  # a sequence number no journal holds: negative or past MAX_SEQ
            seq = -1 - inp.u8() if inp.u8() & 1 else _core.MAX_SEQ + 1 + inp.u16()
            _same(_run(run.core.lookup, seq, IDENTS[0], b"null"), ("ok", None))
            _same(_run(run.core.get, seq), ("ok", None))
        elif op == 7:  # rebuild both from a journal: values of one or more records
            _rebuild(inp, run)
        elif op == 8:  # add a format-1 record (surestep 0.1)
            buf, asked = _record_v1(inp)
            run.add(buf, buf, asked)
        elif op == 9:  # replay what was recorded at a seq, as a resumed run does
            if run.asked:
                seq = sorted(run.asked)[inp.u8() % len(run.asked)]
                ident, given = run.asked[seq]
                got = _replay(run.core, seq, ident, given)
                assert got[0] != "diverged", got
                _same(got, _replay(run.model, seq, ident, given))
        else:  # a fresh, empty index
            run.core, run.model, run.asked = _core.ReplayIndex(), oracle.ReplayIndex(), {}
        assert len(run.core) == len(run.model)
        assert run.core.max_seq == run.model.max_seq
        assert run.core.unconsumed() == run.model.unconsumed()


def _seq(inp: Reader) -> int:
    """Mostly 0..15 (so duplicates and hits happen), sometimes anything up to MAX_SEQ."""
    raw = inp.u8()
    return raw % 16 if raw < 224 else inp.u32()


def _asked(inp: Reader, run: _Run, seq: int) -> tuple[str, bytes]:
    """What a step asks a replay for: what was recorded at ``seq``, or a pool pick."""
    pick = inp.u8()
    if pick & 1 and seq in run.asked:
        return run.asked[seq]
    given = INPUTS[1 + (pick >> 1) % (len(INPUTS) - 1)]  # never None: a step always asks
    assert given is not None
    return IDENTS[(pick >> 3) % len(IDENTS)], given


def _kind(inp: Reader) -> int:
    """Half the time a step (whose recorded result replay() decodes), else any kind."""
    pick = inp.u8()
    return _core.KIND_STEP if pick < 128 else sorted(_core.KINDS)[pick % len(_core.KINDS)]


def _ident(name: str, key: str | int | None) -> str:
    return name if key is None else f"{name}#{key}"


def _record(inp: Reader) -> tuple[bytes, tuple[int, str, bytes]]:
    """A format-2 record from the core's encoder, and what a replay of it asks for."""
    kind = _kind(inp)
    seq, attempt = _seq(inp), inp.u16()
    name, key = STEPS[inp.u8() % len(STEPS)]
    given = INPUTS[inp.u8() % len(INPUTS)]
    pick = inp.u8()
    body = BODIES[pick % len(BODIES)] if pick < 160 else inp.blob(24) or b"1"
    output = pick & 1 == 0 or pick >= 240
    times = ((None, None), (1767225600.5, 1767225601.25), (5.0, 4.0), (None, 2.0))
    t0, t1 = times[inp.u8() % len(times)]
    raw = _core.encode_record(kind, seq, attempt, name, key, given, body, output, t0, t1)
    return raw, (seq, _ident(name, key), b"null" if given is None else given)


def _record_v1(inp: Reader) -> tuple[bytes, tuple[int, str, bytes]]:
    """A format-1 record (by the hashes of a pool identity and input), as 0.1 wrote it."""
    kind = _kind(inp)
    seq, attempt = _seq(inp), inp.u16()
    ident = IDENTS[inp.u8() % len(IDENTS)]
    given = INPUTS[1 + inp.u8() % (len(INPUTS) - 1)]
    assert given is not None
    pick = inp.u8()
    payload = PAYLOADS[pick % len(PAYLOADS)] if pick < 160 else inp.blob(48)
    raw = oracle.encode_record_v1(
        kind, seq, attempt, _core.name_hash(ident), _core.input_digest(given), payload
    )
    return raw, (seq, ident, given)


def _damaged(inp: Reader) -> bytes:
    raw = bytearray((_record if inp.u8() & 1 else _record_v1)(inp)[0])
    how, where, value = inp.u8() % 5, inp.u8(), inp.u8()
    if how == 0:
        raw = raw[: where % (len(raw) + 1)]
    elif how == 1:
        raw += bytes([value])
    elif how == 4:  # another format byte
        raw[0] = value % 5
    else:
        raw[where % len(raw)] ^= value or 1
    if how >= 3:  # a defect the checksum does not catch
        raw = bytearray(reseal(raw))
    return bytes(raw)


def _rebuild(inp: Reader, run: _Run) -> None:
    values: list[bytes] = []
    asked: dict[int, tuple[str, bytes]] = {}
    for _ in range(1 + inp.u8() % 4):
        kind = inp.u8() % 8
        if kind == 0:
            values.append(_damaged(inp))
            continue
        if kind == 1:
            raw, (seq, ident, given) = _record_v1(inp)
            values.append(raw)
            asked[seq] = (ident, given)
            continue
        parts = []
        for _ in range(1 + inp.u8() % 4):  # one value, several records
            raw, (seq, ident, given) = _record(inp)
            parts.append(raw)
            asked[seq] = (ident, given)
        if kind == 2:  # and something after them
            parts.append(inp.blob(6) or b"\x01")
        values.append(b"".join(parts))
    built = _run(_core.ReplayIndex.from_records, values)
    expected = _run(oracle.ReplayIndex.from_records, values)
    if built[0] == "index" and expected[0] == "index":
        run.core, run.model, run.asked = built[1], expected[1], asked
    else:
        _same(built, expected)


def _replay(index: Any, seq: int, ident: str, given: bytes) -> tuple[Any, ...]:
    """``index.replay(...)`` as comparable data, on either index."""
    try:
        got = index.replay(seq, ident, given, orjson.loads)
    except NonDeterminismError as exc:
        return ("diverged", exc.seq, exc.recorded, exc.requested)
    if got is _core.NOT_RECORDED or got is oracle.NOT_RECORDED:
        return ("not recorded",)
    if isinstance(got, (_core.Record, oracle.Record)):
        return ("record", fields(got))
    return ("output", got)


def _run(call: Any, *args: Any) -> tuple[Any, ...]:
    try:
        result = call(*args)
    except UnsupportedFormatError as exc:
        return ("unsupported", exc.seq)
    except JournalCorruptError as exc:
        return ("corrupt", exc.seq)
    except NonDeterminismError as exc:
        return ("diverged", exc.seq, exc.recorded, exc.requested)
    if isinstance(result, _INDEXES):
        return ("index", result)
    return ("ok", fields(result))


def _same(got: tuple[Any, ...], expected: tuple[Any, ...]) -> None:
    assert got == expected, (got, expected)
