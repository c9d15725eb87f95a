"""The journal's vocabulary: the kinds of record, their names, and what their bodies hold.

A record's byte layout (format version, kind, flags, sequence number, attempt, times,
name, key, input, body, checksum) is the compiled core's, specified once in
``ext/_format.pxd``. This module owns the rest: which kinds there are, how each is named
where runs are shown, how each kind's body is encoded (:class:`Body` and the functions
that build one) and how any record is read back (:func:`fields`). No other module writes a
body by hand.

Bodies by kind (``o``: the output, as JSON; a body is either the output itself,
``FLAG_OUTPUT``, or a JSON object of the kind's fields)::

    step        the step's result (output)
    step_error  {"e": {"type", "message", "traceback"}}
    sleep       the wake-up time, seconds since the epoch (output); t0: when it was asked
    event       the event's payload (output), or {"timeout": true}; t1: when it came
    value       the value (output): now/random/uuid4, a deadline, a patch marker
    child       {"child": run id, "o": result} or {"child": run id, "e": {"type", "message"}}
    state       ctx.state: the value written (output; the input is the key);
                a session's or user's: {"o": value, "v": version} read,
                {"v": version, or null on a conflict} written
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _core, serde
from .errors import JournalCorruptError

# The input of an operation that has none: matched on replay as ``null``, stored as no input.
NO_INPUT = b"null"


@dataclass(frozen=True)
class Kind:
    """A kind of record: its code (the record's kind byte, ``SS_KIND_*`` in
    ``ext/_format.pxd``), its name where runs are shown, and which times it carries
    besides a step's (``asked``: t0, when the workflow asked; ``came``: t1, when the
    answer came)."""

    code: int
    name: str
    asked: bool = False
    came: bool = False


STEP = Kind(_core.KIND_STEP, "step")
STEP_ERROR = Kind(_core.KIND_STEP_ERROR, "step_error")
SLEEP = Kind(_core.KIND_SLEEP, "sleep", asked=True)
EVENT = Kind(_core.KIND_EVENT, "event", came=True)
VALUE = Kind(_core.KIND_VALUE, "value")
CHILD = Kind(_core.KIND_CHILD, "child")
STATE = Kind(_core.KIND_STATE, "state")

KINDS = (STEP, STEP_ERROR, SLEEP, EVENT, VALUE, CHILD, STATE)
KIND_NAMES = {kind.code: kind.name for kind in KINDS}


class Body(NamedTuple):
    """What a record holds after its identity: ``data`` (JSON) is the operation's output
    when ``output`` (``FLAG_OUTPUT``), else a JSON object of the kind's fields."""

    data: bytes
    output: bool = True

    def fields(self) -> dict[str, Any]:
        """The body as :func:`fields` reads it back from its record (what replay sees)."""
        if self.output:
            return {"o": serde.loads(self.data)}
        data: dict[str, Any] = serde.loads(self.data)
        return data


def output(data: bytes) -> Body:
    """The body of a record whose body is the output itself (JSON)."""
    return Body(data, True)


EVENT_TIMEOUT = Body(b'{"timeout":true}', False)


def state_read(value: bytes | None, version: int) -> Body:
    """A session's or user's state key as read: its value (JSON; None: unset), its version."""
    return Body(b'{"o":%b,"v":%d}' % (value or NO_INPUT, version), False)


def state_written(version: int | None) -> Body:
    """A write of a session's or user's state key: its new version, or None on a conflict."""
    return Body(b'{"v":%b}' % (NO_INPUT if version is None else b"%d" % version), False)


def child_result(child_id: str, result: bytes) -> Body:
    """A child run that completed with ``result`` (JSON)."""
    return Body(b'{"child":%b,"o":%b}' % (serde.dumps(child_id, "a run id"), result), False)


def child_error(child_id: str, error_type: str, message: str) -> Body:
    """A child run that failed or was cancelled."""
    return Body(
        serde.dumps({"child": child_id, "e": {"type": error_type, "message": message}}, "an error"),
        False,
    )


def step_error(error: dict[str, Any], what: str) -> bytes:
    """The body of a step's final failure (``error``: ``errors.describe``'s)."""
    return serde.dumps({"e": error}, what)


def attempt_body(
    seq: int, attempt: int, started: float, ended: float, next_at: float, error: dict[str, Any]
) -> bytes:
    """A failed attempt that is retried, kept beside the journal (``Store.record_attempt``):
    ``seq``, ``attempt`` (from 1), ``t0``/``t1`` (when it ran), ``next`` (when the next
    attempt is due), ``e`` (``errors.describe``'s)."""
    return serde.dumps(
        {"seq": seq, "attempt": attempt, "t0": started, "t1": ended, "next": next_at, "e": error},
        "a failed attempt",
    )


def failed_attempts(bodies: list[bytes]) -> dict[int, list[dict[str, Any]]]:
    """The attempts ``Store.attempts`` answers, by step, in attempt order."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for body in bodies:
        attempt = serde.loads(body)
        by_step.setdefault(attempt["seq"], []).append(attempt)
    return by_step


def encode(kind: Kind, seq: int, name: str, body: Body, input_json: bytes | None) -> bytes:
    """The record of anything but a step (no attempts, no key), with the kind's times."""
    now = time.time() if kind.asked or kind.came else None
    return _core.encode_record(
        kind.code,
        seq,
        0,
        name,
        None,
        input_json,
        body.data,
        body.output,
        now if kind.asked else None,
        now if kind.came else None,
    )


def fields(record: _core.Record, run_id: str) -> dict[str, Any]:
    """A record's fields as one dict (``n`` name, ``k`` key, ``i`` input, ``o`` output or
    the kind's other fields, ``t0``/``t1``), as surestep writes them; ``JournalCorruptError``
    otherwise. Format 1 kept these as a JSON payload; format 2 keeps them apart."""
    data: Any
    payload = record.payload  # format 1 only
    try:
        data = serde.loads(payload) if payload is not None else _format2_fields(record)
    except ValueError:
        data = None
    if type(data) is dict and type(data.get("n")) is str:
        kind = record.kind
        if kind == _core.KIND_STEP:
            if "o" in data:
                return data
        elif kind == _core.KIND_STEP_ERROR:
            error = data.get("e")
            if isinstance(error, dict) and error.keys() >= _ERROR_FIELDS:
                return data
            if "e" in data:
                raise JournalCorruptError(
                    "the record's error is malformed", run_id=run_id, seq=record.seq
                )
        else:
            return data
    raise JournalCorruptError(
        "the record's payload is not what surestep writes", run_id=run_id, seq=record.seq
    )


def identity(data: dict[str, Any]) -> dict[str, Any]:
    """What a record says an operation was (from :func:`fields`): name, key and input."""
    return {"name": data.get("n"), "key": data.get("k"), "input": data.get("i")}


_ERROR_FIELDS = frozenset({"type", "message", "traceback"})


def _format2_fields(record: _core.Record) -> dict[str, Any] | None:
    """The fields of a format-2 record; None when its body is not what surestep writes."""
    assert record.body is not None
    is_output = bool(record.flags & _core.FLAG_OUTPUT)
    kind = record.kind
    if (kind == _core.KIND_STEP and not is_output) or (kind == _core.KIND_STEP_ERROR and is_output):
        return None  # a step's result is its output; its failure, an object
    body = serde.loads(record.body)
    if is_output:
        data = {"o": body}
    elif type(body) is dict:
        data = body
    else:
        return None
    data["n"] = record.name
    if record.key is not None:
        data["k"] = record.key
    if record.input is not None:
        data["i"] = serde.loads(record.input)
    if record.t0 is not None:
        data["t0"] = record.t0
    if record.t1 is not None:
        data["t1"] = record.t1
    return data
