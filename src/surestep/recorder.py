"""One run's journal as its workflow code meets it: the :class:`Recorder`.

It numbers the run's operations, matches each against the record at its number while
replaying, and writes new records in order. :meth:`Recorder.value` and
:meth:`Recorder.operation` are the one way a durable primitive is journaled: given the
operation's kind, tag (its name in the journal), input, how to produce it and how to
decode its record, they write the record on the first run and read it back on replay, so
that both see one value.

The engine makes a run's recorder and drives it (``flush`` before the run is given back,
``check_all_replayed`` when the workflow returns); the workflow context holds it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from . import _core, convert, journal, serde
from .errors import NonDeterminismError, SerializationError, step_failure
from .journal import NO_INPUT, Body, Kind
from .progress import Progress

if TYPE_CHECKING:
    from .store.base import RunInfo, Store

T = TypeVar("T")

# Turns a body into the record at the operation's number; a store operation that writes
# the record in its own transaction calls it (``Store.take_event``, ``state_read``...).
Encode = Callable[[Body], bytes]


class ReplayComplete(BaseException):
    """A replay check reached the end of the journal: everything recorded matched."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        super().__init__(f"replayed {seq} recorded step(s)")


class Recorder:
    """The journal of one run, from the workflow's side (see the module's docstring).

    ``replay_only``: a replay check (``testing.replay``), which reads recorded operations
    and never executes one; ``store`` is then None.
    """

    __slots__ = (
        "caller",
        "fence",
        "index",
        "log_counts",
        "pending",
        "progress",
        "replay_max",
        "replay_only",
        "run_id",
        "seq",
        "store",
    )

    def __init__(
        self,
        run: RunInfo,
        store: Store | None,
        index: _core.ReplayIndex | None,
        replay_only: bool = False,
    ) -> None:
        self.run_id = run.run_id
        self.store: Store = store  # type: ignore[assignment]  # None only when replay_only
        self.fence = run.fence
        self.index = index
        self.replay_max = index.max_seq if index is not None else -1
        self.seq = 0  # the next operation's number
        self.replay_only = replay_only
        self.caller: str | None = None  # where the code asked, for a replay check's report
        # Records written without waiting (values, logs): awaited before the next record
        # and before the run is given back, so the journal keeps its order. Made on first
        # use, as the log's counts: most runs (and every parked one) need neither.
        self.pending: list[Awaitable[Any]] | None = None
        self.log_counts: dict[int, int] | None = None  # lines stored so far at each position
        self.progress: Progress | None = None  # made on the run's first report

    # -- numbering and matching

    def take_seq(self) -> int:
        """The next operation's number, taken synchronously at the call (so operations
        started together, ``asyncio.gather``, are numbered in call order)."""
        seq = self.seq
        if self.replay_only:
            if seq > self.replay_max:
                raise ReplayComplete(seq)
            self.caller = _user_frame()
        self.seq = seq + 1
        return seq

    def recorded(
        self,
        seq: int,
        name: str,
        input_json: bytes = NO_INPUT,
        same: Callable[[Any], bool] | None = None,
    ) -> dict[str, Any] | None:
        """The recorded fields at ``seq`` for this name and input, if replaying;
        ``NonDeterminismError`` when another operation was recorded there.

        ``same``: for an operation whose identity is less than its whole input (a
        state write is its scope and key, not its value), whether a recorded input of
        the same name is this operation's; the record then stands as written."""
        if seq > self.replay_max:
            return None
        assert self.index is not None
        if same is not None:
            input_json = self._input_if_same(seq, name, same) or input_json
        try:
            record = self.index.lookup(seq, name, input_json)
        except NonDeterminismError:
            raise self.diverged(seq, name, input_json) from None
        return None if record is None else journal.fields(record, self.run_id)

    def _input_if_same(self, seq: int, name: str, same: Callable[[Any], bool]) -> bytes | None:
        """The canonical input recorded at ``seq`` when its record is ``name`` and
        ``same`` accepts its input; None otherwise (the full match then decides)."""
        assert self.index is not None
        record = self.index.get(seq)
        if record is None or record.name_hash != _core.name_hash(name):
            return None
        recorded_input = journal.fields(record, self.run_id).get("i")
        if not same(recorded_input):
            return None
        if record.input is not None:
            return record.input
        return serde.canonical(recorded_input, "a recorded input")  # format 1: in the payload

    def next_may_be(self, name: str) -> bool:
        """Whether the next operation may be ``name``: nothing is recorded at its number,
        or a record of that name is (``patched``: a run recorded before the change has
        another operation there)."""
        seq = self.seq
        if seq > self.replay_max:
            return True
        recorded = self.index.get(seq) if self.index is not None else None
        return recorded is not None and recorded.name_hash == _core.name_hash(name)

    def diverged(self, seq: int, name: str, input_json: bytes) -> NonDeterminismError:
        """The error for an operation that differs from the one recorded at ``seq``."""
        assert self.index is not None
        recorded = self.index.get(seq)
        assert recorded is not None
        return NonDeterminismError(
            seq,
            recorded=journal.identity(journal.fields(recorded, self.run_id)),
            requested={"name": name, "input": serde.loads(input_json)},
            run_id=self.run_id,
            detail=f"The code asked at {self.caller}" if self.caller else "",
        )

    def step_failed(self, record: _core.Record, name: str) -> Any:
        """A replayed step's recorded outcome that is not a plain result: its result from
        a format-1 record, or its recorded failure raised as the step's own exception
        (``errors.step_failure``: also a ``StepFailedError``)."""
        data = journal.fields(record, self.run_id)
        if record.kind == _core.KIND_STEP:
            return data["o"]
        raise step_failure(name, record.seq, data["e"], record.attempt)

    def check_all_replayed(self) -> None:
        """At the end of a replayed run: a recorded step the code no longer takes is
        divergence."""
        if self.index is None:
            return
        left = self.index.unconsumed()
        if left:
            seq = left[0]
            recorded = self.index.get(seq)
            assert recorded is not None
            raise NonDeterminismError(
                seq,
                recorded=journal.identity(journal.fields(recorded, self.run_id)),
                requested={"name": None},
                run_id=self.run_id,
                detail="the workflow returned without taking this recorded step",
            )

    # -- journaled operations

    def value(
        self,
        seq: int,
        kind: Kind,
        tag: str,
        input_json: bytes,
        produce: Callable[[], Body],
        decode: Callable[[dict[str, Any]], T],
    ) -> T:
        """A journaled operation that needs no I/O to produce (a value, ``ctx.state``):
        ``produce()``'s body recorded at ``seq`` on the first run, without waiting (the
        write completes before the next record), and ``decode`` of the recorded fields on
        the first run and on replay alike."""
        fields = self.recorded(seq, tag, input_json)
        if fields is None:
            body = produce()
            stored_input = None if input_json is NO_INPUT else input_json
            record = journal.encode(kind, seq, tag, body, stored_input)
            self.append_later(self.store.append(self.run_id, self.fence, seq, record))
            fields = body.fields()
        return decode(fields)

    async def operation(
        self,
        seq: int,
        kind: Kind,
        tag: str,
        input_json: bytes,
        produce: Callable[[int, Encode], Awaitable[Body]],
        decode: Callable[[dict[str, Any]], T],
        same: Callable[[Any], bool] | None = None,
    ) -> T:
        """A journaled operation that waits (sleep, an event, a child run, shared state).

        On the first run, after the records before it are written, ``produce(seq, encode)``
        does the operation and returns its body. Where the record must be written in the
        store's own transaction (taking an event, a compare-and-set of state), ``produce``
        hands ``encode`` to that store operation, which writes ``encode(body)``; otherwise
        the record is appended here. ``decode`` turns the recorded fields into the result,
        on the first run and on replay alike, and may raise the operation's error. An
        exception from ``produce`` (``Suspended``, say) records nothing here. ``same``:
        as :meth:`recorded`'s."""
        fields = self.recorded(seq, tag, input_json, same)
        if fields is None:
            if self.pending:
                await self.flush()
            stored_input = None if input_json is NO_INPUT else input_json
            handed = False

            def encode(body: Body) -> bytes:
                nonlocal handed
                handed = True
                return journal.encode(kind, seq, tag, body, stored_input)

            body = await produce(seq, encode)
            if not handed:
                await self.append(seq, encode(body))
            fields = body.fields()
        return decode(fields)

    # -- writing

    async def append(self, seq: int, record: bytes) -> None:
        """Write ``record`` at ``seq``, after the records written without waiting."""
        if self.pending:
            await self.flush()
        await self.store.append(self.run_id, self.fence, seq, record)

    def append_later(self, write: Awaitable[None]) -> None:
        """A write the workflow does not wait for; :meth:`flush` (run before the next
        record and before the run is given back) waits for it and raises its error. A
        coroutine runs meanwhile, as a task; a future, or the awaitable of a commit done
        already (a store's inline commit), is kept as it is: no task for it."""
        written = asyncio.ensure_future(write) if asyncio.iscoroutine(write) else write
        if self.pending is None:
            self.pending = [written]
        else:
            self.pending.append(written)

    async def flush(self) -> None:
        """Wait for the records written without waiting; their errors surface here."""
        while self.pending:
            pending, self.pending = self.pending, None
            first: BaseException | None = None  # the earliest write's error; every one seen
            for i, write in enumerate(pending):
                try:
                    await write
                except Exception as exc:
                    first = first or exc
                except BaseException:  # cancelled: the writes after it stay to wait for
                    self.pending = pending[i + 1 :] + (self.pending or [])
                    raise
            if first is not None:
                raise first

    def report_progress(self, report: dict[str, Any]) -> None:
        """Store the run's progress (``progress.report``'s), coalesced; not journaled."""
        if self.replay_only:
            return
        if self.progress is None:
            self.progress = Progress(self.store, self.run_id, self.fence)
        self.progress.report(report)

    def settle(self) -> Awaitable[None]:
        """Before the run is given back: the records and the progress report still due,
        awaited. Most runs have neither: then no coroutine is made."""
        if self.progress is None and not self.pending:
            return _SETTLED
        return self._settle()

    async def _settle(self) -> None:
        if self.progress is not None:
            await self.progress.settle()
        await self.flush()

    def log(
        self,
        level: int,
        message: str,
        attributes: dict[str, Any] | None = None,
        position: int | None = None,
    ) -> None:
        """Store a line of the run's log (not awaited) at ``position``: the step that
        logged it, else the workflow's next step; with its keyword attributes (JSON
        values as they are, others as their repr). Numbered per position, so steps
        logging concurrently never share a key, and a step executed again after a
        crash rewrites its own lines."""
        if position is None:
            position = self.seq
        counts = self.log_counts
        if counts is None:
            counts = self.log_counts = {}
        index = counts[position] = counts.get(position, -1) + 1
        entry = {
            "t": time.time(),
            "level": logging.getLevelName(level),
            "message": message,
            "seq": position,
        }
        if attributes:
            entry["attributes"] = {key: _loggable(v) for key, v in attributes.items()}
        line = serde.dumps(entry, "a log line")
        self.append_later(self.store.append_log(self.run_id, position, index, line))


def _loggable(value: Any) -> Any:
    try:
        return convert.journal_value(value, "a log attribute")
    except (SerializationError, ValueError):
        return repr(value)


class _Settled:
    """``settle``'s awaitable when nothing is due: done at once, without a turn of the loop."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]


_SETTLED = _Settled()

_PACKAGE = os.path.dirname(__file__) + os.sep


def _user_frame() -> str:
    """``file:line`` of the workflow code that called into the context."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"
