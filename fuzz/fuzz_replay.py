"""Fuzz harness: the replay index, as a sequence of operations checked against the oracle.

``one_input(data)`` reads the fuzz bytes as a small program: each operation is one byte
(which operation) and its operands (sequence numbers, hashes from a small pool so that
hits, mismatches and duplicates are common, payloads, defects). Every operation runs on
``surestep._core.ReplayIndex`` and on ``tests/oracle.py``'s model, and after each one:

- both did the same: the same record, ``None``, the same decoded output (``replay``),
  or the same error class with the same ``seq`` (and, for ``NonDeterminismError``, the
  same ``recorded`` / ``requested``);
- the only errors are ``JournalCorruptError`` / ``UnsupportedFormatError`` (a bad or
  repeated record) and ``NonDeterminismError`` (a lookup that does not match); anything
  else, or a crash under ASan/UBSan, is a finding;
- ``len``, ``max_seq`` and ``unconsumed()`` agree; a failed ``add`` changed nothing.

Run under atheris with ``fuzz/run.py replay`` (``make fuzz``).
"""

from __future__ import annotations

from typing import Any

import orjson
from fuzz_common import Reader, fields, oracle, reseal

from surestep import _core
from surestep.errors import JournalCorruptError, NonDeterminismError, UnsupportedFormatError

# Small pools: a fuzzer that must guess 64-bit values never sees a hit.
NAMES = (_core.name_hash("charge"), _core.name_hash("ship"), 0, 2**64 - 1)
DIGESTS = (_core.input_digest(b"null"), _core.input_digest(b'[["o-1"],{}]'), 0, 2**64 - 1)
IDENTS = ("charge", "ship", "charge#1")  # replay() hashes these: the first two hit NAMES
INPUTS = (b"null", b'[["o-1"],{}]', b"[[],{}]")  # and digests these
# Payloads a step may have recorded (replay() decodes them), picked by a blob starting "J".
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


def one_input(data: bytes) -> None:
    inp = Reader(data)
    core = _core.ReplayIndex()
    model = oracle.ReplayIndex()
    for _ in range(MAX_OPS):
        if not inp.remaining():
            break
        op = inp.u8() % 8
        if op == 0:  # add a well-formed record
            buf = _record(inp)
            _same(_run(core.add, buf), _run(model.add, buf))
        elif op == 1:  # add a damaged one (possibly resealed, possibly a newer version)
            buf = _damaged(inp)
            _same(_run(core.add, buf), _run(model.add, buf))
        elif op == 2:  # add through another buffer exporter
            buf = _record(inp)
            view: Any = memoryview(b"\x00" + buf)[1:] if inp.u8() & 1 else bytearray(buf)
            _same(_run(core.add, view), _run(model.add, buf))
        elif op == 3 and inp.u8() & 1:  # replay: the one-call form, from a name and input
            seq = _seq(inp)
            ident, given = IDENTS[inp.u8() % len(IDENTS)], INPUTS[inp.u8() % len(INPUTS)]
            _same(_replay(core, seq, ident, given), _replay(model, seq, ident, given))
        elif op == 3:  # lookup: matching what is recorded, or a pool pick
            seq = _seq(inp)
            name, digest = _pick(inp, NAMES), _pick(inp, DIGESTS)
            if inp.u8() & 1 and model.get(seq) is not None:
                rec = model.get(seq)
                name, digest = rec.name_hash, rec.input_digest
            _same(_run(core.lookup, seq, name, digest), _run(model.lookup, seq, name, digest))
        elif op == 4:  # get, checking nothing and consuming nothing
            seq = _seq(inp)
            _same(_run(core.get, seq), _run(model.get, seq))
        elif op == 5:  # a sequence number no journal holds: negative or past MAX_SEQ
            seq = -1 - inp.u8() if inp.u8() & 1 else _core.MAX_SEQ + 1 + inp.u16()
            _same(_run(core.lookup, seq, NAMES[0], DIGESTS[0]), ("ok", None))
            _same(_run(core.get, seq), ("ok", None))
        elif op == 6:  # rebuild both from a batch, in the order given
            batch = [_record(inp) if inp.u8() % 8 else _damaged(inp) for _ in range(inp.u8() % 6)]
            built = _run(_core.ReplayIndex.from_records, batch)
            expected = _run(oracle.ReplayIndex.from_records, batch)
            if built[0] == "index" and expected[0] == "index":
                core, model = built[1], expected[1]
            else:
                _same(built, expected)
        else:  # a fresh, empty index
            core, model = _core.ReplayIndex(), oracle.ReplayIndex()
        assert len(core) == len(model)
        assert core.max_seq == model.max_seq
        assert core.unconsumed() == model.unconsumed()


def _seq(inp: Reader) -> int:
    """Mostly 0..15 (so duplicates and hits happen), sometimes anything up to MAX_SEQ."""
    raw = inp.u8()
    return raw % 16 if raw < 224 else inp.u32()


def _pick(inp: Reader, pool: tuple[int, ...]) -> int:
    raw = inp.u8()
    return pool[raw % len(pool)] if raw < 240 else inp.u64()


def _record(inp: Reader) -> bytes:
    kind = sorted(_core.KINDS)[inp.u8() % len(_core.KINDS)]
    seq, attempt, name, digest, payload = (
        _seq(inp),
        inp.u16(),
        _pick(inp, NAMES),
        _pick(inp, DIGESTS),
        inp.blob(48),
    )
    if payload.startswith(b"J"):
        payload = PAYLOADS[len(payload) % len(PAYLOADS)]
    return _core.encode_record(kind, seq, attempt, name, digest, payload)


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


def _damaged(inp: Reader) -> bytes:
    raw = bytearray(_record(inp))
    how, where, value = inp.u8() % 4, inp.u8(), inp.u8()
    if how == 0:
        raw = raw[: where % (len(raw) + 1)]
    elif how == 1:
        raw += bytes([value])
    else:
        raw[where % len(raw)] ^= value or 1
    if how == 3 and len(raw) >= _core.HEADER_SIZE:  # a defect the checksum does not catch
        raw = bytearray(reseal(raw))
    return bytes(raw)


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
    if got[0] in ("corrupt", "unsupported") and got[0] == expected[0]:
        # The core names the step wherever the header holds it; the oracle only for some
        # defects. Where both name one, it is the same.
        if got[1] is not None and expected[1] is not None:
            assert got[1] == expected[1], (got, expected)
        return
    assert got == expected, (got, expected)
