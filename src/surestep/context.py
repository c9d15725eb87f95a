"""What a workflow sees: :class:`WorkflowContext`, and :class:`FunctionContext` for steps.

``ctx.step(...)`` is a plain method, not a coroutine function: it takes the
step's sequence number before returning the awaitable, so steps started
together (``asyncio.gather``) get their numbers in call order, whichever
finishes first, and replay matches them again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random as _random
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from functools import cached_property, partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from . import _core, serde
from .decorators import FunctionSpec, WorkflowSpec, spec_of
from .errors import (
    ChildWorkflowError,
    ConfigurationError,
    DefinitionError,
    EventTimeoutError,
    JournalCorruptError,
    NonDeterminismError,
    PayloadTooLargeError,
    RunCancelledError,
    StateConflictError,
    StepFailedError,
    StepTimeoutError,
    Suspended,
    WorkflowFailedError,
    describe,
)
from .store.base import child_run_id

if TYPE_CHECKING:
    from .engine import Engine
    from .store.base import RunInfo, Store

# The largest journal payload (a step's input and result as JSON). The journal
# is for values that drive the workflow; keep large data elsewhere and journal a
# reference to it.
MAX_PAYLOAD = 64 * 1024 * 1024

_NULL = b"null"


class FunctionContext:
    """Passed to a ``@function`` whose first parameter is ``ctx``.

    ``idempotency_key`` is the same on every attempt of this step in this run,
    including a re-execution after a crash: pass it to external services so
    that a step interrupted mid-flight and run again has its effect once.
    """

    __slots__ = (
        "attempt",
        "idempotency_key",
        "logger",
        "run_id",
        "seq",
        "session_id",
        "step_name",
        "user_id",
    )

    def __init__(
        self, wf: WorkflowContext, step_name: str, seq: int, key: str, attempt: int
    ) -> None:
        self.run_id = wf.run_id
        self.session_id = wf.session_id
        self.user_id = wf.user_id
        self.step_name = step_name
        self.seq = seq
        self.attempt = attempt
        self.idempotency_key = key
        self.logger = _RunLogger(wf, wf.workflow, position=seq)  # its lines say this step


class _RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The run's logger: lines at INFO and above are stored with the run (shown by
    ``engine.logs``), carry the run id, and are not written again on replay."""

    def __init__(self, ctx: WorkflowContext, workflow: str, position: int | None = None) -> None:
        super().__init__(logging.getLogger(f"surestep.workflow.{workflow}"), {"run_id": ctx.run_id})
        self._ctx = ctx
        self._position = position  # a step's own logger; else the workflow's next step

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self._position is None and self._ctx.is_replaying:
            return  # (a step that executes is never a replay)
        if level >= logging.INFO:
            self._ctx._store_log(level, str(msg) % args if args else str(msg), self._position)
        if self.logger.isEnabledFor(level):
            msg, kwargs = self.process(msg, kwargs)
            self.logger.log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "run_id": self._ctx.run_id}
        return f"[{self._ctx.run_id}] {msg}", kwargs


class RunState:
    """``ctx.state``: the run's own durable state (synchronous, as in the AGNT5 SDK).

    Writes are journaled, and replay rebuilds the state from them, so a resumed
    run sees what it had. Values are JSON.
    """

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx
        self._values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = self._ctx._run_state_write(key, value, delete=False)

    def delete(self, key: str) -> None:
        self._ctx._run_state_write(key, None, delete=True)
        self._values.pop(key, None)

    def clear(self) -> None:
        for key in list(self._values):
            self.delete(key)

    def items(self) -> list[tuple[str, Any]]:
        return list(self._values.items())

    def __contains__(self, key: object) -> bool:
        return key in self._values


class SharedState:
    """The durable state of a session or a user, shared by their runs (``await`` it).

    Reads are journaled, so replay sees the value the run saw even if another run
    changed it since. A ``set`` after a ``get`` of the same key writes only if no
    other run wrote that key in between; otherwise it raises
    ``StateConflictError`` (journaled too). ``update(key, fn)`` retries for you:
    concurrent runs of one session never lose each other's updates.
    """

    def __init__(self, ctx: WorkflowContext, scope: str) -> None:
        self._ctx = ctx
        self.scope = scope
        self._versions: dict[str, int] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        ctx = self._ctx
        seq = ctx._take_seq()
        input_json = serde.canonical([self.scope, key], "a state key")
        recorded = ctx._recorded(seq, "@state.get", input_json)
        if recorded is None:
            await ctx._flush()

            def record(value: bytes | None, version: int) -> bytes:
                body = b'{"o":%b,"v":%d}' % (value or _NULL, version)
                return ctx._encode(_core.KIND_STATE, seq, "@state.get", body, False, input_json)

            value, version = await ctx._store.state_read(
                ctx.run_id, ctx._fence, seq, self.scope, key, record
            )
            recorded = {"o": serde.loads(value) if value else None, "v": version}
        self._versions[key] = recorded["v"]
        return default if recorded["o"] is None else recorded["o"]

    async def set(self, key: str, value: Any) -> None:
        await self._write(key, serde.dumps(value, f"the value of state key {key!r}"))

    async def delete(self, key: str) -> None:
        await self._write(key, None)

    async def update(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Read, apply ``fn``, write; again on a conflict. Returns the value written."""
        for _ in range(100):
            value = fn(await self.get(key, default))
            try:
                await self.set(key, value)
            except StateConflictError:
                continue
            return value
        raise StateConflictError(
            f"{self.scope}: key {key!r} kept changing; gave up after 100 tries"
        )

    async def _write(self, key: str, value: bytes | None) -> None:
        ctx = self._ctx
        seq = ctx._take_seq()
        input_json = b"[%b,%b]" % (
            serde.canonical([self.scope, key], "a state key"),
            value or _NULL,
        )
        recorded = ctx._recorded(seq, "@state.set", input_json)
        if recorded is None:
            await ctx._flush()

            def record(version: int | None) -> bytes:
                body = b'{"v":%b}' % (_NULL if version is None else b"%d" % version)
                return ctx._encode(_core.KIND_STATE, seq, "@state.set", body, False, input_json)

            version = await ctx._store.state_write(
                ctx.run_id, ctx._fence, seq, self.scope, key, value, self._versions.get(key), record
            )
            recorded = {"v": version}
        if recorded["v"] is None:
            self._versions.pop(key, None)
            raise StateConflictError(
                f"{self.scope}: key {key!r} changed since this run read it (step {seq}); "
                "read it again"
            )
        self._versions[key] = recorded["v"]


class Scope:
    """``ctx.session`` / ``ctx.user``: an id and its shared ``state``."""

    def __init__(self, ctx: WorkflowContext, kind: str, ident: str) -> None:
        self.id = ident
        self.state = SharedState(ctx, f"{kind}:{ident}")


class WorkflowContext:
    """The durable context of one run of a workflow."""

    def __init__(
        self,
        run: RunInfo,
        store: Store,
        index: _core.ReplayIndex | None,
        engine: Engine | None = None,
        inline_sleep: float = 1.0,
        replay_only: bool = False,
        tracer: Any = None,
    ) -> None:
        self.run_id = run.run_id
        self.session_id = run.session_id or run.run_id
        self.user_id = run.user_id
        self.attempt = run.attempt - 1  # 0 on the first execution, as in the AGNT5 SDK
        self.workflow = run.workflow
        self._store = store
        self._fence = run.fence
        self._index = index
        self._replay_max = index.max_seq if index is not None else -1
        self._seq = 0
        self._engine = engine
        self._inline_sleep = inline_sleep
        # A replay check: recorded steps only, never executing one (testing.replay).
        self._replay_only = replay_only
        self._caller: str | None = None
        self._tracer = tracer  # OpenTelemetry, when the engine traces (surestep.telemetry)
        self._attempts_taken: dict[int, int] = {}
        # Records written without waiting (values, logs): awaited before the next
        # record and before the run is given back, so the journal keeps its order.
        self._pending: list[asyncio.Future[Any]] = []
        self._log_counts: dict[int, int] = {}  # lines stored so far at each step position

    # Made on first use: most runs touch few of them, and every object a parked run
    # keeps costs memory and a garbage collector's walk.

    @cached_property
    def state(self) -> RunState:
        """The run's own durable state (synchronous)."""
        return RunState(self)

    @cached_property
    def session(self) -> Scope:
        """State shared by the runs of this session (``session_id``)."""
        return Scope(self, "session", self.session_id)

    @cached_property
    def user(self) -> Scope | None:
        """State shared by the runs of this user; None when the run has no ``user_id``."""
        return Scope(self, "user", self.user_id) if self.user_id is not None else None

    @cached_property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """The run's logger: INFO and above are stored with the run, not again on replay."""
        return _RunLogger(self, self.workflow)

    @property
    def step_count(self) -> int:
        """How many steps this run has taken so far (the next step's number)."""
        return self._seq

    @property
    def is_replaying(self) -> bool:
        """True while the next step is one the journal has already recorded."""
        return self._seq <= self._replay_max

    # -- steps

    def step(
        self, target: Any, *args: Any, key: str | int | None = None, **kwargs: Any
    ) -> Awaitable[Any]:
        """Run a journaled step, or return its recorded result on replay.

        Three forms::

            await ctx.step(charge_card, order_id)          # a @function and its arguments
            await ctx.step("charge", payments.charge(id))   # a name and an awaitable
            await ctx.step("stamp", lambda: make_stamp())   # a name and a callable (+ args)

        ``key`` distinguishes steps by more than their position (it becomes part
        of the step's identity and of its idempotency key).
        """
        function = getattr(target, "__surestep__", None)
        if type(function) is FunctionSpec:  # the common form, before any slower test
            seq = self._take_seq()
            if key is not None:
                _check_key(key)
            low, high = function.positional_range
            if kwargs or not low <= len(args) <= high or self._tracer is not None:
                return self._function(seq, function, key, args, kwargs)
            return self._run(seq, function.name, key, function, function.fn, args, kwargs, None)
        if _is_awaitable(target):  # a bare awaitable, named after its function
            return self.step(
                getattr(target, "__name__", "awaitable"), target, *args, key=key, **kwargs
            )
        seq = self._take_seq()
        _check_key(key)
        if isinstance(target, str):
            name = target
            if not args:
                raise DefinitionError(
                    f"ctx.step({name!r}, ...) needs an awaitable or a callable after the name"
                )
            body, args = args[0], args[1:]
            if _is_awaitable(body):
                if args or kwargs:
                    _close(body)
                    raise DefinitionError(
                        f"ctx.step({name!r}, awaitable) takes no further arguments"
                    )
                return self._traced(seq, name, self._run(seq, name, key, None, None, (), {}, body))
            if not callable(body):
                raise DefinitionError(
                    f"ctx.step({name!r}, x): x must be an awaitable or a callable, not {body!r}"
                )
            return self._traced(
                seq, name, self._run(seq, name, key, None, body, args, kwargs, None)
            )
        spec = spec_of(target)
        if isinstance(spec, FunctionSpec):
            return self._function(seq, spec, key, args, kwargs)
        if isinstance(spec, WorkflowSpec):
            return self._child(seq, spec, key, args, kwargs)
        if callable(target):
            raise DefinitionError(
                f"ctx.step({getattr(target, '__name__', target)!r}) needs a @function; for a plain "
                "callable give the step a name: ctx.step('name', fn, *args)"
            )
        raise DefinitionError(f"ctx.step() cannot run {target!r}")

    def _function(
        self,
        seq: int,
        spec: FunctionSpec,
        key: str | int | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[Any]:
        low, high = spec.positional_range
        if kwargs or not low <= len(args) <= high:
            try:  # refused here, not retried as a failure of the step
                spec.check_call(args, kwargs)
            except TypeError as exc:
                raise TypeError(
                    f"step {seq}: {spec.name}() cannot take these arguments: {exc}"
                ) from None
        step = self._run(seq, spec.name, key, spec, spec.fn, args, kwargs, None)
        return step if self._tracer is None else self._in_span(step, seq, spec.name)

    def run(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Another name for :meth:`step`."""
        return self.step(*args, **kwargs)

    def task(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Deprecated spelling of :meth:`step`."""
        warnings.warn(
            "ctx.task() is deprecated, use ctx.step() instead (same arguments)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.step(*args, **kwargs)

    async def parallel(self, *steps: Awaitable[Any]) -> list[Any]:
        """Wait for steps started together; results in call order (``asyncio.gather``)."""
        return list(await asyncio.gather(*steps))

    async def gather(self, **steps: Awaitable[Any]) -> dict[str, Any]:
        """Wait for named steps started together; a dict of their results."""
        values = await asyncio.gather(*steps.values())
        return dict(zip(steps, values, strict=True))

    def _traced(self, seq: int, name: str, step: Coroutine[Any, Any, Any]) -> Awaitable[Any]:
        """The step, in a span of its own when the engine traces."""
        return step if self._tracer is None else self._in_span(step, seq, name)

    async def _in_span(self, step: Awaitable[Any], seq: int, name: str) -> Any:
        attributes = {
            "surestep.run_id": self.run_id,
            "surestep.workflow": self.workflow,
            "surestep.step.name": name,
            "surestep.step.seq": seq,
            "surestep.replay": seq <= self._replay_max,
        }
        with self._tracer.start_as_current_span(
            f"surestep.step {name}", attributes=attributes
        ) as span:
            try:
                return await step
            finally:
                attempts = self._attempts_taken.pop(seq, None)
                if attempts is not None:
                    span.set_attribute("surestep.step.attempts", attempts)

    async def _run(
        self,
        seq: int,
        name: str,
        key: str | int | None,
        spec: FunctionSpec | None,
        fn: Callable[..., Any] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        awaitable: Awaitable[Any] | None,
    ) -> Any:
        ident = name if key is None else f"{name}#{key}"
        try:
            input_json = (
                serde.canonical((args, kwargs), "the input of step %d (%s)", seq, name)
                if args or kwargs
                else _NULL
            )
            if seq <= self._replay_max:
                assert self._index is not None
                # Match (name, key, input) and decode: one compiled call.
                recorded = self._index.replay(seq, ident, input_json, serde.loads)
                if recorded is not _core.NOT_RECORDED:
                    _close(awaitable)
                    if type(recorded) is _core.Record:  # anything but a plain result
                        return self._replayed(recorded, name)
                    return recorded
            ident.encode()  # a name that is not UTF-8 fails here, before the step runs
        except NonDeterminismError:
            _close(awaitable)
            raise self._diverged(seq, name, input_json) from None
        except BaseException:
            _close(awaitable)
            raise
        stored_input = None if input_json is _NULL else input_json  # no arguments: no input
        if key is not None and type(key) not in (str, int):
            key = f"{key}"  # a bool, an IntEnum...: recorded as the text its identity uses

        started = time.time()
        try:
            if awaitable is not None:
                attempts = 1
                try:
                    output = await awaitable
                except Exception as exc:
                    raise _AttemptsExhausted(exc, 1) from exc
            else:
                assert fn is not None
                failed_first: Exception | None = None
                try:  # the first attempt here, the retries (if any) in _retry
                    output = self._attempt(spec, fn, args, kwargs, name, seq, key, 0)
                    if _is_awaitable(output):
                        output = await output
                    attempts = 1
                except Exception as exc:
                    failed_first = exc
                if failed_first is not None:  # retried outside the handler: nothing chains
                    again = partial(self._attempt, spec, fn, args, kwargs, name, seq, key)
                    output, attempts = await self._retry(spec, name, seq, failed_first, again)
        except _AttemptsExhausted as failed:
            error = await self._journal_failure(seq, name, key, stored_input, started, failed)
            raise error from failed.error
        output_json = serde.dumps(output, "the result of step %d (%s)", seq, name)
        if len(output_json) + len(input_json) > MAX_PAYLOAD:
            raise PayloadTooLargeError(
                f"the record of step {seq} ({name}) holds more than {MAX_PAYLOAD} bytes of "
                "input and result (surestep.context.MAX_PAYLOAD); keep large data outside "
                "the journal and return a reference to it"
            )
        record = _core.encode_record(
            _core.KIND_STEP, seq, attempts, name, key, stored_input, output_json, True, started,
            time.time(),
        )  # fmt: skip
        if self._pending:
            await self._flush()
        await self._store.append(self.run_id, self._fence, seq, record)
        if self._tracer is not None:
            self._attempts_taken[seq] = attempts
        # Hand back what the journal holds, so the first run and every replay see one value
        # (a str, an int, a bool or None comes back from JSON as it went in).
        return output if type(output) in _SAME_FROM_JSON else serde.loads(output_json)

    def _attempt(
        self,
        spec: FunctionSpec | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str,
        seq: int,
        key: str | int | None,
        attempt: int,
    ) -> Any:
        """Call the step's body once (``attempt`` counts from 0, as FunctionContext.attempt,
        the AGNT5 convention); an awaitable it returns comes back to be awaited, bounded by
        the function's ``timeout_ms``."""
        if spec is not None and spec.takes_ctx:
            idempotency_key = f"{self.run_id}:{seq}" if key is None else f"{self.run_id}:{key}"
            result = fn(FunctionContext(self, name, seq, idempotency_key, attempt), *args, **kwargs)
        else:
            result = fn(*args, **kwargs)
        if spec is not None and spec.timeout_ms is not None and _is_awaitable(result):
            return _with_timeout(result, spec.timeout_ms, name, seq, attempt)
        return result

    async def _retry(
        self,
        spec: FunctionSpec | None,
        name: str,
        seq: int,
        error: Exception,
        attempt_again: Callable[[int], Any],
    ) -> tuple[Any, int]:
        """The attempts after a failed first one (``attempt_again(n)``: attempt ``n``), as
        the function's retry policy allows; the result and the number of attempts taken,
        or ``_AttemptsExhausted``."""
        attempt = 0
        while True:
            if spec is None or attempt + 1 >= spec.retry.max_attempts:
                raise _AttemptsExhausted(error, attempt + 1) from error
            self.logger.info(
                "step %d (%s) attempt %d of %d failed: %r; retrying",
                seq,
                name,
                attempt + 1,
                spec.retry.max_attempts,
                error,
            )
            await asyncio.sleep(spec.delay(attempt))
            attempt += 1
            try:
                result = attempt_again(attempt)
                if _is_awaitable(result):
                    result = await result
                return result, attempt + 1
            except Exception as exc:
                error = exc

    async def _journal_failure(
        self,
        seq: int,
        name: str,
        key: str | int | None,
        input_json: bytes | None,
        started: float,
        failed: _AttemptsExhausted,
    ) -> StepFailedError:
        """Journal a step's final failure; return the error the workflow sees."""
        error = describe(failed.error)
        body = serde.dumps({"e": error}, f"the error of step {seq} ({name})")
        record = _core.encode_record(
            _core.KIND_STEP_ERROR, seq, failed.attempts, name, key, input_json, body, False,
            started, time.time(),
        )  # fmt: skip
        await self._append(seq, record)
        return StepFailedError(
            name,
            seq,
            error["type"],
            error["message"],
            attempts=failed.attempts,
            traceback=error["traceback"],
        )

    # -- durable primitives

    def now(self) -> datetime:
        """The current time (UTC), journaled: replay returns the recorded time."""
        return datetime.fromtimestamp(self._value("@now", time.time), timezone.utc)

    def random(self) -> float:
        """A random float in [0, 1), journaled."""
        return float(self._value("@random", _random.random))

    def uuid4(self) -> uuid.UUID:
        """A random UUID, journaled."""
        return uuid.UUID(self._value("@uuid4", lambda: uuid.uuid4().hex))

    async def sleep(self, seconds: float) -> None:
        """Sleep durably: the wake-up time is journaled, so a run resumed after a
        crash wakes at the original time. Long sleeps give the run back and hold
        nothing but a timer entry in the store."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ConfigurationError(f"sleep takes seconds >= 0, not {seconds!r}")
        await self._sleep_until(lambda: time.time() + seconds)

    async def sleep_until(self, when: float | datetime) -> None:
        """Sleep durably until ``when`` (a UTC timestamp or an aware datetime)."""
        at = when.timestamp() if isinstance(when, datetime) else float(when)
        await self._sleep_until(lambda: at)

    async def _sleep_until(self, produce: Callable[[], float]) -> None:
        seq = self._take_seq()
        recorded = self._recorded(seq, "@sleep")
        if recorded is not None:
            wake_at = float(recorded["o"])
        else:
            wake_at = produce()
            record = self._encode(_core.KIND_SLEEP, seq, "@sleep", b"%r" % wake_at, t0=time.time())
            await self._append(seq, record)
        remaining = wake_at - time.time()
        if remaining <= 0 or self._replay_only:
            return
        if remaining <= self._inline_sleep:
            while remaining > 0:  # the loop's timers can fire a little early by the wall clock
                await asyncio.sleep(remaining)
                remaining = wake_at - time.time()
            return
        raise Suspended(wake_at)

    async def wait_for_event(self, name: str, timeout: float | None = None) -> Any:
        """Wait for ``engine.send_event(run_id, name, payload)`` and return the payload.

        An event sent before the wait is kept for it. The run gives its worker
        back while it waits. With ``timeout`` (seconds), ``EventTimeoutError`` is
        raised in the workflow when no event came in time (journaled too).
        """
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ConfigurationError(f"an event name is a non-empty str without NUL, not {name!r}")
        deadline = None
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
                raise ConfigurationError(f"timeout takes seconds >= 0, not {timeout!r}")
            deadline = float(self._value("@deadline", lambda: time.time() + timeout))
        seq = self._take_seq()
        tag = f"@event:{name}"
        recorded = self._recorded(seq, tag)
        if recorded is None:
            await self._flush()

            def record(payload: bytes) -> bytes:
                return self._encode(_core.KIND_EVENT, seq, tag, payload, t1=time.time())

            payload = await self._store.take_event(self.run_id, self._fence, name, seq, record)
            if payload is not None:
                return serde.loads(payload)
            if deadline is None or time.time() < deadline:
                raise Suspended(deadline, event=name)
            body = b'{"timeout":true}'
            await self._append(
                seq, self._encode(_core.KIND_EVENT, seq, tag, body, output=False, t1=time.time())
            )
            recorded = {"timeout": True}
        if recorded.get("timeout"):
            raise EventTimeoutError(f"run {self.run_id}: no event {name!r} within {timeout} s")
        return recorded["o"]

    async def _child(
        self,
        seq: int,
        spec: WorkflowSpec,
        key: str | int | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        tag = f"@child:{spec.name}" if key is None else f"@child:{spec.name}#{key}"
        input_json = serde.canonical((args, kwargs), f"the input of child step {seq} ({spec.name})")
        recorded = self._recorded(seq, tag, input_json)
        if recorded is None:
            if self._engine is None:
                raise DefinitionError("child workflows need the run to execute in an Engine")
            await self._flush()
            child_id = child_run_id(self.run_id, seq)
            head = b'{"child":"%b"' % child_id.encode()
            try:
                result = await self._engine._run_child(spec, child_id, args, kwargs, self)
                body = head + b',"o":%b}' % serde.dumps(result, f"the result of child {child_id}")
            except (WorkflowFailedError, RunCancelledError) as exc:
                error = {
                    "type": getattr(exc, "error_type", type(exc).__name__),
                    "message": getattr(exc, "message", str(exc)),
                }
                body = head + b',"e":%b}' % serde.dumps(error, "an error")
            await self._append(
                seq, self._encode(_core.KIND_CHILD, seq, tag, body, False, input_json)
            )
            recorded = serde.loads(body)
        if "e" in recorded:
            error = recorded["e"]
            raise ChildWorkflowError(recorded["child"], spec.name, error["type"], error["message"])
        return recorded["o"]

    def _run_state_write(self, key: str, value: Any, delete: bool) -> Any:
        """Journal a write of ``ctx.state``; on replay, the recorded value."""
        if not isinstance(key, str):
            raise ConfigurationError(f"a state key is a str, not {key!r}")
        seq = self._take_seq()
        tag = "@state.delete" if delete else "@state.set"
        key_json = serde.dumps(key, "a state key")
        recorded = self._recorded(seq, tag, key_json)
        if recorded is not None:
            return recorded["o"]
        value_json = _NULL if delete else serde.dumps(value, f"the value of state key {key!r}")
        record = self._encode(_core.KIND_STATE, seq, tag, value_json, True, key_json)
        self._append_later(self._store.append(self.run_id, self._fence, seq, record))
        return serde.loads(value_json)

    # -- journal plumbing

    def _take_seq(self) -> int:
        seq = self._seq
        if self._replay_only:
            if seq > self._replay_max:
                raise ReplayComplete(seq)
            self._caller = _user_frame()
        self._seq = seq + 1
        return seq

    def patched(self, change_id: str) -> bool:
        """True where the code takes its new branch for ``change_id``.

        A run that reached this point before the change was deployed replays
        the old branch (``False``); every other run takes the new one and
        records that it did, so its replay takes it again::

            if ctx.patched("charge-with-3ds"):
                await ctx.step(charge_with_3ds, order_id)
            else:
                await ctx.step(charge_card, order_id)
        """
        tag = f"@patch:{change_id}"
        seq = self._seq
        if seq <= self._replay_max:
            recorded = self._index.get(seq) if self._index is not None else None
            if recorded is None or recorded.name_hash != _core.name_hash(tag):
                return False  # recorded before the change: the old branch, no step taken
        self._value(tag, lambda: True)
        return True

    def _recorded(self, seq: int, name: str, input_json: bytes = _NULL) -> dict[str, Any] | None:
        """The recorded payload at ``seq`` for this name and input, if replaying."""
        if seq > self._replay_max:
            return None
        record = self._lookup(seq, name, input_json)
        return None if record is None else record_payload(record, self.run_id)

    def _value(self, name: str, produce: Callable[[], Any]) -> Any:
        """A journaled value: recorded on the first run, read back on replay."""
        seq = self._take_seq()
        recorded = self._recorded(seq, name)
        if recorded is not None:
            return recorded["o"]
        value = produce()
        record = self._encode(_core.KIND_VALUE, seq, name, serde.dumps(value, name))
        self._append_later(self._store.append(self.run_id, self._fence, seq, record))
        return value

    @staticmethod
    def _encode(
        kind: int,
        seq: int,
        name: str,
        body: bytes,
        output: bool = True,
        input_json: bytes | None = None,
        t0: float | None = None,
        t1: float | None = None,
    ) -> bytes:
        """The record of anything but a step: no attempts, no key."""
        return _core.encode_record(kind, seq, 0, name, None, input_json, body, output, t0, t1)

    async def _append(self, seq: int, record: bytes) -> None:
        if self._pending:
            await self._flush()
        await self._store.append(self.run_id, self._fence, seq, record)

    def _append_later(self, write: Awaitable[None]) -> None:
        """A write the workflow does not wait for; ``_flush`` (run before the next record
        and before the run is given back) waits for it and raises its error."""
        self._pending.append(asyncio.ensure_future(write))

    async def _flush(self) -> None:
        """Wait for the records written without waiting; their errors surface here."""
        while self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)

    def _store_log(self, level: int, message: str, position: int | None = None) -> None:
        """Store a line at ``position``: the step that logged it, else the workflow's
        next step. Numbered per position, so steps logging concurrently never share
        a key, and a step executed again after a crash rewrites its own lines."""
        if position is None:
            position = self._seq
        index = self._log_counts[position] = self._log_counts.get(position, -1) + 1
        line = serde.dumps(
            {
                "t": time.time(),
                "level": logging.getLevelName(level),
                "message": message,
                "seq": position,
            },
            "a log line",
        )
        self._append_later(self._store.append_log(self.run_id, position, index, line))

    def _lookup(self, seq: int, name: str, input_json: bytes) -> _core.Record | None:
        assert self._index is not None
        try:
            return self._index.lookup(seq, name, input_json)
        except NonDeterminismError:
            raise self._diverged(seq, name, input_json) from None

    def _diverged(self, seq: int, name: str, input_json: bytes) -> NonDeterminismError:
        """The error for a step that differs from the one recorded at ``seq``."""
        assert self._index is not None
        recorded = self._index.get(seq)
        assert recorded is not None
        data = record_payload(recorded, self.run_id)
        return NonDeterminismError(
            seq,
            recorded={"name": data.get("n"), "key": data.get("k"), "input": data.get("i")},
            requested={"name": name, "input": serde.loads(input_json)},
            run_id=self.run_id,
            detail=f"The code asked at {self._caller}" if self._caller else "",
        )

    def _replayed(self, record: _core.Record, name: str) -> Any:
        data = record_payload(record, self.run_id)
        if record.kind == _core.KIND_STEP:
            return data["o"]
        error = data["e"]
        raise StepFailedError(
            name,
            record.seq,
            error["type"],
            error["message"],
            attempts=record.attempt,
            traceback=error["traceback"],
        )

    def _check_all_replayed(self) -> None:
        """At the end of a replayed run: a recorded step the code no longer takes is divergence."""
        if self._index is None:
            return
        left = self._index.unconsumed()
        if left:
            seq = left[0]
            recorded = self._index.get(seq)
            assert recorded is not None
            data = record_payload(recorded, self.run_id)
            raise NonDeterminismError(
                seq,
                recorded={"name": data.get("n"), "key": data.get("k"), "input": data.get("i")},
                requested={"name": None},
                run_id=self.run_id,
                detail="the workflow returned without taking this recorded step",
            )


def record_payload(record: _core.Record, run_id: str) -> dict[str, Any]:
    """A record's fields as one dict (``n`` name, ``k`` key, ``i`` input, ``o`` output or
    the kind's other fields, ``t0``/``t1``), as surestep writes them; ``JournalCorruptError``
    otherwise. Format 1 kept these as a JSON payload; format 2 keeps them apart."""
    data: Any
    payload = record.payload  # format 1 only
    try:
        data = serde.loads(payload) if payload is not None else _fields(record)
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


_ERROR_FIELDS = frozenset({"type", "message", "traceback"})


def _fields(record: _core.Record) -> dict[str, Any] | None:
    """The fields of a format-2 record; None when its body is not what surestep writes."""
    assert record.body is not None
    output = bool(record.flags & _core.FLAG_OUTPUT)
    kind = record.kind
    if (kind == _core.KIND_STEP and not output) or (kind == _core.KIND_STEP_ERROR and output):
        return None  # a step's result is its output; its failure, an object
    body = serde.loads(record.body)
    if output:
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


class ReplayComplete(BaseException):
    """A replay check reached the end of the journal: everything recorded matched."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        super().__init__(f"replayed {seq} recorded step(s)")


def _check_key(key: object) -> None:
    if key is not None and (not isinstance(key, (str, int)) or key == ""):
        raise DefinitionError(f"a step key must be a non-empty str or an int, not {key!r}")


_SAME_FROM_JSON = frozenset({str, int, bool, type(None)})
_PLAIN = frozenset({int, str, float, bool, dict, list, tuple, type(None)})


def _is_awaitable(value: object) -> bool:
    """``inspect.isawaitable``, without its ABC check for coroutines and plain values."""
    kind = type(value)
    if kind is CoroutineType:
        return True
    return kind not in _PLAIN and inspect.isawaitable(value)


def _user_frame() -> str:
    """``file:line`` of the workflow code that called into the context."""
    frame = sys._getframe(1)
    here = __file__
    while frame is not None and frame.f_code.co_filename == here:
        frame = frame.f_back  # type: ignore[assignment]
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


class _AttemptsExhausted(Exception):  # noqa: N818 - internal signal
    def __init__(self, error: Exception, attempts: int) -> None:
        self.error = error
        self.attempts = attempts


async def _with_timeout(
    aw: Awaitable[Any], timeout_ms: int, name: str, seq: int, attempt: int
) -> Any:
    try:
        if sys.version_info >= (3, 11):  # wait_for can swallow a cancellation before 3.12
            async with asyncio.timeout(timeout_ms / 1000.0):
                return await aw
        return await asyncio.wait_for(aw, timeout_ms / 1000.0)
    except asyncio.TimeoutError:
        raise StepTimeoutError(
            f"step {seq} ({name}) attempt {attempt} ran past timeout_ms={timeout_ms}"
        ) from None


def _close(aw: Any) -> None:
    """Drop an awaitable that will not be awaited (replay): close a coroutine unrun."""
    if aw is None:
        return
    if isinstance(aw, Coroutine):
        aw.close()
    elif isinstance(aw, asyncio.Future):
        aw.cancel()
