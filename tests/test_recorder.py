"""The journal's vocabulary (surestep.journal) and the one helper every durable primitive
is journaled through (surestep.recorder.Recorder), on both stores."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from surestep import (
    ConfigurationError,
    Engine,
    NonDeterminismError,
    WorkflowContext,
    _core,
    journal,
    workflow,
)
from surestep import engine as engine_module
from surestep.journal import NO_INPUT, Body
from surestep.recorder import Encode, Recorder
from surestep.store import open_store
from surestep.store.base import RunInfo, Store, new_run_id


def test_the_kind_table_is_the_cores() -> None:
    assert {kind.code for kind in journal.KINDS} == _core.KINDS
    assert len({kind.name for kind in journal.KINDS}) == len(journal.KINDS)
    assert engine_module.KIND_NAMES is journal.KIND_NAMES  # the surfaces read it there


BODIES = {
    "value": (journal.VALUE, journal.output(b'{"a":[1,2.5]}')),
    "sleep": (journal.SLEEP, journal.output(b"1733590000.25")),
    "event": (journal.EVENT, journal.output(b'"hi"')),
    "event timeout": (journal.EVENT, journal.EVENT_TIMEOUT),
    "state read": (journal.STATE, journal.state_read(b'{"n":1}', 4)),
    "state read unset": (journal.STATE, journal.state_read(None, 0)),
    "state written": (journal.STATE, journal.state_written(5)),
    "state conflict": (journal.STATE, journal.state_written(None)),
    "child result": (journal.CHILD, journal.child_result("c" * 32, b"[1]")),
    "child error": (journal.CHILD, journal.child_error("c" * 32, "ValueError", "no")),
}


@pytest.mark.parametrize("case", BODIES)
def test_a_body_reads_back_as_replay_sees_it(case: str) -> None:
    """What the first run decodes (``Body.fields``) is what replay decodes from the record
    (``journal.fields``): the two runs of a primitive see one value."""
    kind, body = BODIES[case]
    record = _core.decode_record(journal.encode(kind, 3, "@tag", body, b'["k"]'))
    fields = journal.fields(record, "r")
    assert record.kind == kind.code and record.seq == 3 and record.attempt == 0
    assert {k: fields[k] for k in body.fields()} == body.fields()
    assert fields["n"] == "@tag" and fields["i"] == ["k"]
    assert ("t0" in fields, "t1" in fields) == (kind.asked, kind.came)


def test_the_bodies_are_frozen() -> None:
    """Stored journals hold these bytes: a change here orphans them (tests/golden too)."""
    assert journal.state_read(b"[1]", 7) == Body(b'{"o":[1],"v":7}', False)
    assert journal.state_read(None, 0) == Body(b'{"o":null,"v":0}', False)
    assert journal.state_written(8) == Body(b'{"v":8}', False)
    assert journal.state_written(None) == Body(b'{"v":null}', False)
    assert journal.child_result("ab", b"3") == Body(b'{"child":"ab","o":3}', False)
    assert journal.child_error("ab", "E", "m") == Body(
        b'{"child":"ab","e":{"type":"E","message":"m"}}', False
    )
    assert Body(b'{"timeout":true}', False) == journal.EVENT_TIMEOUT
    assert journal.step_error({"type": "E"}, "x") == b'{"e":{"type":"E"}}'


@contextlib.asynccontextmanager
async def opened(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url, durability="process")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _owned_run(store: Store) -> RunInfo:
    run = RunInfo(run_id=new_run_id(), workflow="w", version="v1", args=[], kwargs={})
    run.fence = await store.create_run(run, "me:1:a", 60.0)
    return run


def _never(*args: Any) -> Any:
    raise AssertionError("replay produced an operation the journal holds")


async def _journal_ops(recorder: Recorder, produce_value: Any, produce: Any) -> list[Any]:
    """Three operations: a value written without waiting, a waiting operation appended by
    the helper, and one whose record the store writes in its own transaction."""
    got = [
        recorder.value(recorder.take_seq(), journal.VALUE, "@v", NO_INPUT, produce_value, dict),
        await recorder.operation(
            recorder.take_seq(), journal.SLEEP, "@sleep", NO_INPUT, produce[0], dict
        ),
        await recorder.operation(
            recorder.take_seq(), journal.EVENT, "@event:go", NO_INPUT, produce[1], dict
        ),
    ]
    await recorder.flush()
    return got


async def test_an_operation_is_recorded_once_and_replayed_without_producing(
    store_url: str,
) -> None:
    async with opened(store_url) as store:
        await _record_and_replay(store)


async def _record_and_replay(store: Store) -> None:
    run = await _owned_run(store)
    await store.send_event(run.run_id, "go", b'{"x":1}')

    async def sleep(seq: int, encode: Encode) -> Body:
        return journal.output(b"12.5")

    async def take(seq: int, encode: Encode) -> Body:
        payload = await store.take_event(
            run.run_id, run.fence, "go", seq, lambda p: encode(journal.output(p))
        )
        assert payload is not None
        return journal.output(payload)

    first = await _journal_ops(
        Recorder(run, store, None), lambda: journal.output(b'"v"'), (sleep, take)
    )
    assert first == [{"o": "v"}, {"o": 12.5}, {"o": {"x": 1}}]

    stored = await store.journal(run.run_id)
    records = sorted((r for raw in stored for r in _core.decode_records(raw)), key=lambda r: r.seq)
    assert [(r.seq, r.kind, r.name) for r in records] == [
        (0, _core.KIND_VALUE, "@v"),
        (1, _core.KIND_SLEEP, "@sleep"),
        (2, _core.KIND_EVENT, "@event:go"),
    ]  # the event's record once: written by the store, not appended again

    replaying = Recorder(run, store, _core.ReplayIndex.from_records(stored))
    replayed = await _journal_ops(replaying, _never, (_never, _never))
    assert [{"o": f["o"]} for f in replayed] == first
    replaying.check_all_replayed()


async def test_a_different_operation_at_a_recorded_number_is_divergence(store_url: str) -> None:
    async with opened(store_url) as store:
        await _diverge(store)


async def _diverge(store: Store) -> None:
    run = await _owned_run(store)
    recorder = Recorder(run, store, None)
    recorder.value(recorder.take_seq(), journal.VALUE, "@now", NO_INPUT, lambda: Body(b"1"), dict)
    await recorder.flush()

    replaying = Recorder(
        run, store, _core.ReplayIndex.from_records(await store.journal(run.run_id))
    )
    with pytest.raises(NonDeterminismError) as diverged:
        replaying.value(replaying.take_seq(), journal.VALUE, "@random", NO_INPUT, _never, dict)
    assert diverged.value.recorded["name"] == "@now"
    assert diverged.value.requested["name"] == "@random"


@pytest.mark.parametrize("seconds", [float("inf"), float("nan")])
async def test_sleep_refuses_a_time_that_is_not_finite(store_url: str, seconds: float) -> None:
    @workflow
    async def sleeper(ctx: WorkflowContext) -> list[str]:
        refused = []
        for sleep in (ctx.sleep, ctx.sleep_until):
            try:
                await sleep(seconds)
            except ConfigurationError:
                refused.append(sleep.__name__)
        return refused

    async with Engine(store_url) as engine:
        handle = await engine.start(sleeper)
        assert await handle.result() == ["sleep", "sleep_until"]
        assert await engine.journal(handle.run_id) == []
