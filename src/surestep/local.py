"""Direct calls: a ``@workflow`` (or a ``@function`` taking ``ctx``) awaited without an
engine runs in memory.

``await order_flow(order_id="o-1")`` (or ``await order_flow(Context(run_id="t-1"),
order_id="o-1")``) runs the workflow's body at once, as the AGNT5 SDK's local mode does
for its examples' ``main()`` and for unit tests. It is the same
:class:`~surestep.context.WorkflowContext` as a run in an engine, over a
:class:`MemoryStore` that keeps the call's shared state and journals nothing: steps
execute with their retries, backoff and timeouts, sleeps sleep in place (in real time),
``ctx.state`` and the session's and user's state live as long as the call, the logger
logs, and a workflow called as a step runs inline. Arguments and results cross JSON as
in a run, so a test sees the values a run would. What only an engine can deliver (an
event, a person's answer) raises :class:`~surestep.errors.DirectCallError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import convert, hitl
from .context import Context, WorkflowContext
from .decorators import FunctionSpec, WorkflowSpec, spec_of
from .engine import run_identities
from .errors import DirectCallError, Suspended, WorkflowFailedError, describe
from .recorder import Recorder
from .runtime import child_row, run_row
from .store.base import RunInfo, Store, new_run_id


async def call_workflow(spec: WorkflowSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``spec``'s workflow called as a function: with a workflow's own context first (the
    body called as plain code inside a run), the body itself; else a run in memory, named
    by a :class:`~surestep.Context` given first."""
    first = args[0] if args else None
    if isinstance(first, WorkflowContext):
        return await spec.fn(*args, **kwargs)
    given = first if isinstance(first, Context) else None
    if given is not None:
        args = args[1:]
    session_id, user_id = run_identities(
        spec, args, kwargs, getattr(given, "session_id", None), getattr(given, "user_id", None)
    )
    try:
        spec.check_call(args, kwargs)
    except TypeError as exc:
        raise TypeError(f"workflow {spec.name!r} cannot take these arguments: {exc}") from None
    args, kwargs = convert.journal_arguments(args, kwargs, f"the input of workflow {spec.name!r}")
    run_id = getattr(given, "run_id", None) or new_run_id()
    attempt = getattr(given, "attempt", 0) + 1  # the context counts from 0
    run = run_row(spec, run_id, args, kwargs, session_id, user_id, attempt=attempt)
    store = MemoryStore()  # type: ignore[abstract]  # the engine's operations: set below
    value = await _execute(spec, run, store)
    convert.journal_value(value, f"the result of workflow {spec.name!r}")  # as a run would
    return value


async def call_function(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A ``@function`` that takes ``ctx`` called without one: one step of a run in
    memory, with its retries, backoff and timeout, and a ``FunctionContext``."""
    spec = spec_of(function)
    assert isinstance(spec, FunctionSpec)
    run = RunInfo(new_run_id(), spec.name, version="", args=[], kwargs={}, attempt=1)
    store = MemoryStore()  # type: ignore[abstract]  # the engine's operations: set below
    recorder = Recorder(run, store, None)
    ctx = WorkflowContext(run, recorder, _Inline(store), inline_sleep=math.inf)
    try:
        return await ctx.step(function, *args, **kwargs)
    finally:
        await recorder.flush()


async def _execute(spec: WorkflowSpec, run: RunInfo, store: MemoryStore) -> Any:
    """The body of ``run`` over ``store``, from its JSON arguments as an engine runs it."""
    recorder = Recorder(run, store, None)
    ctx = WorkflowContext(run, recorder, _Inline(store), inline_sleep=math.inf)
    args, kwargs = tuple(run.args), run.kwargs
    if spec.conversion is not None:  # typed parameters: read from their JSON
        args, kwargs = spec.conversion.decode_arguments(args, kwargs, skip=1)
    try:
        return await spec.fn(ctx, *args, **kwargs)
    except Suspended as waiting:
        if hitl.answer_seq(waiting.event) is not None:
            what = "a person's answer (ctx.wait_for_user)"
        else:
            what = f"event {waiting.event!r}" if waiting.event else "a wake-up"
        raise DirectCallError(
            f"workflow {spec.name!r} called directly waits for {what}, which only a run in "
            "an engine can receive: start it with engine.start(...) (or `surestep run`) "
            "and deliver it there"
        ) from None
    finally:
        await recorder.flush()


class _Inline:
    """The :class:`~surestep.runtime.Runtime` of a direct call: a child workflow runs
    inline, in memory, sharing the caller's session and user state."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    async def run_child(
        self,
        spec: WorkflowSpec,
        child_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: WorkflowContext,
    ) -> Any:
        child = child_row(spec, child_id, args, kwargs, parent, attempt=1)
        try:
            value = await _execute(spec, child, self.store)
        except DirectCallError:
            raise
        except Exception as exc:  # the parent sees it as a failed child, as in an engine
            error = describe(exc)
            raise WorkflowFailedError(
                child_id, error["type"], error["message"], error["traceback"]
            ) from exc
        return convert.journal_value(value, f"the result of workflow {spec.name!r}")


class MemoryStore(Store):
    """The store of one direct call: shared state in a dict, and nothing else kept (a
    direct call never replays, so its records are not read: the writes of ``_NOT_KEPT``
    are taken and dropped). The other operations a run takes through the store are an
    engine's and raise ``DirectCallError``."""

    url = "memory:"

    def __init__(self) -> None:
        self._state: dict[str, dict[str, tuple[bytes | None, int]]] = {}

    async def state_read(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        record: Callable[[bytes | None, int], bytes],
    ) -> tuple[bytes | None, int]:
        return self._state.get(scope, {}).get(key, (None, 0))

    async def state_write(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        value: bytes | None,
        expect: int | None,
        record: Callable[[int | None], bytes],
    ) -> int | None:
        values = self._state.setdefault(scope, {})
        version = values.get(key, (None, 0))[1]
        if expect is not None and expect != version:
            return None
        values[key] = (value, version + 1)
        return version + 1

    async def state_items(self, scope: str) -> dict[str, bytes]:
        return {k: v for k, (v, _) in self._state.get(scope, {}).items() if v is not None}


def _not_kept(why: str) -> Callable[..., Any]:
    async def take(self: MemoryStore, *args: Any, **kwargs: Any) -> None:
        return None

    take.__doc__ = why
    return take


def _engine_only(operation: str) -> Callable[..., Any]:
    async def refuse(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        raise DirectCallError(
            f"a workflow called directly cannot {operation}: that needs a run in an engine "
            "(engine.start(...) or `surestep run`)"
        )

    return refuse


# What a run writes through its store that a direct call has no use for: taken, not kept.
_NOT_KEPT = {
    "append": "A direct call never replays, so its records are not read.",
    "record_attempt": "A direct call retries in place (it never gives its run back).",
    "retry_done": "A direct call retries in place (it never gives its run back).",
    "set_progress": "Progress is for those who watch a stored run: a direct call has none.",
    "append_log": "The line went to Python's logging already.",
    "take_event": "Nobody can send one: the run would wait, and the call says so.",
}
for _operation, _why in _NOT_KEPT.items():
    setattr(MemoryStore, _operation, _not_kept(_why))
# Every other store operation belongs to an engine (runs, leases, timers, events sent in):
# refused by name, including the ones a newer Store adds.
for _operation in sorted(Store.__abstractmethods__ - vars(MemoryStore).keys()):
    setattr(MemoryStore, _operation, _engine_only(_operation.replace("_", " ")))
MemoryStore.__abstractmethods__ = frozenset()
