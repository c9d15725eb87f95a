"""What a workflow sees: :class:`WorkflowContext`, and :class:`FunctionContext` for steps.

The context is the public API, the step executor (attempts, retries, timeouts) and the
durable primitives. Each primitive is one method over the run's
:class:`~surestep.recorder.Recorder` (``value`` or ``operation``: kind, tag, input,
produce, decode); the record bodies are :mod:`surestep.journal`'s; state is
:mod:`surestep.state`'s.

``ctx.step(...)`` is a plain method, not a coroutine function: it takes the
step's sequence number before returning the awaitable, so steps started
together (``asyncio.gather``) get their numbers in call order, whichever
finishes first, and replay matches them again.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import inspect
import logging
import math
import random as _random
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import cached_property, partial
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from . import _core, convert, hitl, journal, serde
from .batch import BatchItemError, BatchItemResult, BatchResult, BatchStats, run_bounded
from .decorators import FunctionSpec, WorkflowSpec, spec_of
from .errors import (
    ChildWorkflowError,
    ConfigurationError,
    DefinitionError,
    EventTimeoutError,
    NonDeterminismError,
    PayloadTooLargeError,
    RunCancelledError,
    SerializationError,
    StepFailedError,
    StepTimeoutError,
    Suspended,
    WorkflowFailedError,
    describe,
    step_failure,
)
from .journal import NO_INPUT, Body
from .progress import report as progress_report
from .recorder import Encode, Recorder
from .state import RunState, Scope
from .store.base import child_run_id

if TYPE_CHECKING:
    from .runtime import Runtime
    from .store.base import RunInfo

# The largest journal payload (a step's input and result as JSON). The journal
# is for values that drive the workflow; keep large data elsewhere and journal a
# reference to it.
MAX_PAYLOAD = 64 * 1024 * 1024

_KIND_STEP = journal.STEP.code
_KIND_STEP_ERROR = journal.STEP_ERROR.code


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
        self,
        wf: WorkflowContext,
        step_name: str,
        seq: int,
        key: str,
        attempt: int,
        logger: logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
    ) -> None:
        self.run_id = wf.run_id
        self.session_id = wf.session_id
        self.user_id = wf.user_id
        self.step_name = step_name
        self.seq = seq
        self.attempt = attempt
        self.idempotency_key = key
        self.logger = logger or wf.logger  # the step's own: its lines say this step

    def log(self, message: str, **attributes: Any) -> None:
        """Log ``message`` at INFO with keyword attributes (``ctx.log("sent", to=addr)``)."""
        self.logger.info(message, **attributes)


class _RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The run's logger: lines at INFO and above are stored with the run (shown by
    ``engine.logs``), carry the run id, and are not written again on replay."""

    def __init__(
        self, ctx: WorkflowContext, recorder: Recorder, position: int | None = None
    ) -> None:
        logger = logging.getLogger(f"surestep.workflow.{ctx.workflow}")
        super().__init__(logger, {"run_id": ctx.run_id})
        self._ctx = ctx
        self._recorder = recorder
        self._position = position  # a step's own logger; else the workflow's next step

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        """``logging``'s keywords, and any other keyword as an attribute of the line
        (``logger.warning("low stock", sku="a-1")``): stored with it, passed as ``extra``."""
        if self._position is None and self._ctx.is_replaying:
            return  # (a step that executes is never a replay)
        attributes = None
        if kwargs.keys() - _LOGGING_KEYWORDS:
            attributes = {k: v for k, v in kwargs.items() if k not in _LOGGING_KEYWORDS}
            kwargs = {k: v for k, v in kwargs.items() if k in _LOGGING_KEYWORDS}
            kwargs["extra"] = {
                **(kwargs.get("extra") or {}),
                **{k: v for k, v in attributes.items() if k not in _RECORD_FIELDS},
            }
        if level >= logging.INFO:
            message = str(msg) % args if args else str(msg)
            self._recorder.log(level, message, attributes, self._position)
        if self.logger.isEnabledFor(level):
            msg, kwargs = self.process(msg, kwargs)
            self.logger.log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "run_id": self._ctx.run_id}
        return f"[{self._ctx.run_id}] {msg}", kwargs


_LOGGING_KEYWORDS = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})
# Names a LogRecord has already: an attribute so named is stored, not passed as extra.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class WorkflowContext:
    """The durable context of one run of a workflow.

    ``recorder`` is the run's journal (made by the runtime, which flushes it);
    ``runtime`` starts child runs (None in a replay check).
    """

    def __init__(
        self,
        run: RunInfo,
        recorder: Recorder,
        runtime: Runtime | None = None,
        inline_sleep: float = 1.0,
        tracer: Any = None,
        failed_attempts: dict[int, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.run_id = run.run_id
        self.session_id = run.session_id or run.run_id
        self.user_id = run.user_id
        self.attempt = run.attempt - 1  # 0 on the first execution, as in the AGNT5 SDK
        self.workflow = run.workflow
        self._recorder = recorder
        self._runtime = runtime
        self._inline_sleep = inline_sleep
        self._tracer = tracer  # OpenTelemetry, when the engine traces (surestep.telemetry)
        # Attempts each step took, for its span: kept only when the engine traces.
        self._attempts_taken: dict[int, int] | None = None if tracer is None else {}
        # Steps whose attempts failed before the run was resumed (Store.attempts), by step.
        self._failed_attempts = failed_attempts or None

    # Made on first use: most runs touch few of them, and every object a parked run
    # keeps costs memory and a garbage collector's walk.

    @cached_property
    def state(self) -> RunState:
        """The run's own durable state (synchronous)."""
        return RunState(self._recorder)

    @cached_property
    def session(self) -> Scope:
        """State shared by the runs of this session (``session_id``)."""
        return Scope(self._recorder, "session", self.session_id)

    @cached_property
    def user(self) -> Scope | None:
        """State shared by the runs of this user; None when the run has no ``user_id``."""
        return Scope(self._recorder, "user", self.user_id) if self.user_id is not None else None

    @cached_property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """The run's logger: INFO and above are stored with the run, not again on replay."""
        return _RunLogger(self, self._recorder)

    @property
    def step_count(self) -> int:
        """How many steps this run has taken so far (the next step's number)."""
        return self._recorder.seq

    @property
    def is_replaying(self) -> bool:
        """True while the next step is one the journal has already recorded."""
        recorder = self._recorder
        return recorder.seq <= recorder.replay_max

    @property
    def _is_replay(self) -> bool:
        """:attr:`is_replaying`, by the name AGNT5's docs give it (``if not
        ctx._is_replay: notify(...)`` before a ``wait_for_user`` runs once)."""
        return self.is_replaying

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
            seq = self._recorder.take_seq()
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
        seq = self._recorder.take_seq()
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
        """Deprecated spelling of :meth:`step` (as in the AGNT5 SDK). Older AGNT5 code
        passes the argument as ``input=``: ``ctx.task(fn, input=x)`` is
        ``ctx.step(fn, x)``, unless ``fn`` has a parameter named ``input``."""
        warnings.warn(
            "ctx.task() is deprecated, use ctx.step() instead (same arguments)",
            DeprecationWarning,
            stacklevel=2,
        )
        if args and "input" in kwargs:
            spec = spec_of(args[0])
            if spec is None or "input" not in spec.signature.parameters:
                args = (args[0], kwargs.pop("input"), *args[1:])
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
            "surestep.replay": seq <= self._recorder.replay_max,
        }
        with self._tracer.start_as_current_span(
            f"surestep.step {name}", attributes=attributes
        ) as span:
            try:
                return await step
            finally:
                assert self._attempts_taken is not None  # made for a traced run
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
        recorder = self._recorder
        loads = serde.loads if spec is None else spec.loads_result  # typed results: decoded
        try:
            input_json = NO_INPUT
            if args or kwargs:
                try:
                    input_json = serde.canonical(
                        (args, kwargs), "the input of step %d (%s)", seq, name
                    )
                except SerializationError:  # typed values (a model, a datetime): as JSON
                    typed = convert.encode((args, kwargs), f"the input of step {seq} ({name})")
                    input_json = serde.canonical(typed, "the input of step %d (%s)", seq, name)
            if seq <= recorder.replay_max:
                assert recorder.index is not None
                # Match (name, key, input) and decode: one compiled call.
                recorded = recorder.index.replay(seq, ident, input_json, loads)
                if recorded is not _core.NOT_RECORDED:
                    _close(awaitable)
                    if type(recorded) is _core.Record:  # anything but a plain result
                        return recorder.step_failed(recorded, name)
                    return recorded
            ident.encode()  # a name that is not UTF-8 fails here, before the step runs
        except NonDeterminismError:
            _close(awaitable)
            raise recorder.diverged(seq, name, input_json) from None
        except BaseException:
            _close(awaitable)
            raise
        stored_input = None if input_json is NO_INPUT else input_json  # no arguments: no input
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
                failed_before = self._failed_attempts.get(seq) if self._failed_attempts else None
                if failed_before:  # attempts failed before the run was resumed
                    started = failed_before[0]["t0"]
                    again = partial(self._attempt, spec, fn, args, kwargs, name, seq, key)
                    output, attempts = await self._retry(spec, name, seq, failed_before, again)
                else:
                    failed_first: Exception | None = None
                    try:  # the first attempt here, the retries (if any) in _retry
                        if spec is None or spec.bare_call:
                            output = fn(*args, **kwargs)
                        else:
                            output = self._attempt(spec, fn, args, kwargs, name, seq, key, 0)
                        if type(output) is CoroutineType or _is_awaitable(output):
                            output = await output
                        attempts = 1
                    except Exception as exc:
                        failed_first = exc
                    if failed_first is not None:  # retried outside the handler: no chain
                        again = partial(self._attempt, spec, fn, args, kwargs, name, seq, key)
                        failure = _Failure(failed_first, started)
                        output, attempts = await self._retry(spec, name, seq, failure, again)
        except _AttemptsExhausted as failed:
            error = await self._journal_failure(seq, name, key, stored_input, started, failed)
            raise error from (failed.error if isinstance(failed.error, Exception) else None)
        try:
            output_json = serde.dumps(output, "the result of step %d (%s)", seq, name)
        except SerializationError:  # a typed result: as JSON, decoded below as on replay
            typed = convert.encode(output, f"the result of step {seq} ({name})")
            output_json = serde.dumps(typed, "the result of step %d (%s)", seq, name)
        if len(output_json) + len(input_json) > MAX_PAYLOAD:
            raise PayloadTooLargeError(
                f"the record of step {seq} ({name}) holds more than {MAX_PAYLOAD} bytes of "
                "input and result (surestep.context.MAX_PAYLOAD); keep large data outside "
                "the journal and return a reference to it"
            )
        record = _core.encode_record(
            _KIND_STEP, seq, attempts, name, key, stored_input, output_json, True, started,
            time.time(),
        )  # fmt: skip
        if recorder.pending:
            await recorder.flush()
        await recorder.store.append(self.run_id, recorder.fence, seq, record)
        if attempts > 1:
            await recorder.store.retry_done(self.run_id, recorder.fence, seq)
        if self._attempts_taken is not None:
            self._attempts_taken[seq] = attempts
        # Hand back what the journal holds, so the first run and every replay see one value
        # (a str, an int, a bool or None comes back from JSON as it went in).
        if loads is not serde.loads or type(output) not in _SAME_FROM_JSON:
            return loads(output_json)
        return output

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
        if spec is not None and spec.synchronous:  # in a thread: the loop serves other runs
            fn = partial(_in_thread, fn)
        if spec is not None and spec.takes_ctx:
            idempotency_key = f"{self.run_id}:{seq}" if key is None else f"{self.run_id}:{key}"
            logger = _RunLogger(self, self._recorder, position=seq)
            step_ctx = FunctionContext(self, name, seq, idempotency_key, attempt, logger)
            result = fn(step_ctx, *args, **kwargs)
        else:
            result = fn(*args, **kwargs)
        if (
            spec is not None
            and spec.timeout_ms is not None
            and not spec.synchronous  # a thread cannot be stopped: no timeout there
            and _is_awaitable(result)
        ):
            return _with_timeout(result, spec.timeout_ms, name, seq, attempt)
        return result

    async def _retry(
        self,
        spec: FunctionSpec | None,
        name: str,
        seq: int,
        failed: _Failure | list[dict[str, Any]],
        attempt_again: Callable[[int], Any],
    ) -> tuple[Any, int]:
        """The attempts after failed ones, as the function's retry policy allows: the
        result and the number of attempts taken, or ``_AttemptsExhausted``.

        ``failed``: the attempt that just failed, or the attempts recorded as failed before
        the run was resumed (``Store.attempts``). Each failure that is retried is kept in
        the store before the backoff, so a crash does not reset the count; a backoff
        longer than the engine's ``inline_sleep`` gives the run back until the next
        attempt is due, as a durable sleep does. (``attempt_again(n)``: attempt ``n``,
        from 0.)"""
        recorder = self._recorder
        most = 1 if spec is None else spec.retry.max_attempts
        if isinstance(failed, list):
            taken, next_at = len(failed), failed[-1]["next"]
            error: Exception | dict[str, Any] = failed[-1]["e"]
        else:
            assert failed.error is not None
            taken, error, next_at = 1, failed.error, None
        while True:
            if taken >= most:
                raise _AttemptsExhausted(error, taken)
            assert spec is not None
            if next_at is None:  # a new failure: kept before waiting for the next attempt
                assert isinstance(error, Exception) and isinstance(failed, _Failure)
                ended = time.time()
                next_at = ended + spec.delay(taken - 1)
                self.logger.info(
                    "step %d (%s) attempt %d of %d failed: %r; retrying",
                    seq,
                    name,
                    taken,
                    most,
                    error,
                )
                described = describe(error)
                retry = {
                    "seq": seq,
                    "name": name,
                    "attempt": taken + 1,
                    "of": most,
                    "next_at": next_at,
                    "error": f"{described['type']}: {described['message']}",
                }
                body = journal.attempt_body(seq, taken, failed.started, ended, next_at, described)
                give_back = next_at - ended > self._inline_sleep
                if give_back:
                    await (
                        recorder.settle()
                    )  # the run's records and progress before it is given back
                await recorder.store.record_attempt(
                    self.run_id, recorder.fence, seq, taken, body, retry,
                    next_at if give_back else None,
                )  # fmt: skip
                if give_back:
                    raise Suspended(next_at, given_back=True)
            remaining = next_at - time.time()
            if remaining > self._inline_sleep:  # resumed early (a crash): wait durably
                raise Suspended(next_at)
            while remaining > 0:  # the loop's timers can fire a little early by the wall clock
                await asyncio.sleep(remaining)
                remaining = next_at - time.time()
            failed = _Failure(None, time.time())
            try:
                result = attempt_again(taken)
                if _is_awaitable(result):
                    result = await result
                return result, taken + 1
            except Exception as exc:
                failed.error = error = exc
            taken += 1
            next_at = None

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
        error = failed.error if isinstance(failed.error, dict) else describe(failed.error)
        body = journal.step_error(error, f"the error of step {seq} ({name})")
        record = _core.encode_record(
            _KIND_STEP_ERROR, seq, failed.attempts, name, key, input_json, body, False,
            started, time.time(),
        )  # fmt: skip
        await self._recorder.append(seq, record)
        if failed.attempts > 1:
            await self._recorder.store.retry_done(self.run_id, self._recorder.fence, seq)
        return step_failure(name, seq, error, failed.attempts)

    # -- durable primitives: each one method over the recorder (value or operation)

    def now(self) -> datetime:
        """The current time (UTC), journaled: replay returns the recorded time."""
        return datetime.fromtimestamp(self._value("@now", time.time), timezone.utc)

    def random(self) -> float:
        """A random float in [0, 1), journaled."""
        return float(self._value("@random", _random.random))

    def uuid4(self) -> uuid.UUID:
        """A random UUID, journaled."""
        return uuid.UUID(self._value("@uuid4", lambda: uuid.uuid4().hex))

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
        if not self._recorder.next_may_be(tag):
            return False  # recorded before the change: the old branch, no step taken
        self._value(tag, lambda: True)
        return True

    def _value(self, tag: str, produce: Callable[[], Any]) -> Any:
        """A journaled value: ``produce()`` recorded on the first run, read back on replay."""
        recorder = self._recorder
        return recorder.value(
            recorder.take_seq(),
            journal.VALUE,
            tag,
            NO_INPUT,
            lambda: journal.output(serde.dumps(produce(), tag)),
            _output,
        )

    async def sleep(self, seconds: float, name: str | None = None) -> None:
        """Sleep durably: the wake-up time is journaled, so a run resumed after a
        crash wakes at the original time. Long sleeps give the run back and hold
        nothing but a timer entry in the store. ``name`` names the sleep in the
        journal (``@sleep:{name}``), where the CLI and the dashboard show it."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < math.inf
        ):
            raise ConfigurationError(
                f"sleep takes a finite number of seconds >= 0, not {seconds!r}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigurationError(f"a sleep's name is a non-empty str, not {name!r}")
        await self._sleep_until(lambda: time.time() + seconds, name)

    async def sleep_until(self, when: float | datetime) -> None:
        """Sleep durably until ``when`` (a UTC timestamp or an aware datetime)."""
        at = when.timestamp() if isinstance(when, datetime) else float(when)
        if not math.isfinite(at):
            raise ConfigurationError(f"sleep_until takes a finite time, not {when!r}")
        await self._sleep_until(lambda: at)

    async def _sleep_until(self, wake_time: Callable[[], float], name: str | None = None) -> None:
        recorder = self._recorder

        async def start(seq: int, encode: Encode) -> Body:
            return journal.output(b"%r" % wake_time())

        wake_at = await recorder.operation(
            recorder.take_seq(),
            journal.SLEEP,
            "@sleep" if name is None else f"@sleep:{name}",
            NO_INPUT,
            start,
            _wake_time,
        )
        remaining = wake_at - time.time()
        if remaining <= 0 or recorder.replay_only:
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

        def received(fields: dict[str, Any]) -> Any:
            if fields.get("timeout"):
                raise EventTimeoutError(f"run {self.run_id}: no event {name!r} within {timeout} s")
            return fields["o"]

        recorder = self._recorder
        return await self._take_event(
            recorder.take_seq(), f"@event:{name}", lambda seq: name, deadline, received
        )

    async def _take_event(
        self,
        seq: int,
        tag: str,
        event_of: Callable[[int], str],
        deadline: float | None,
        decode: Callable[[dict[str, Any]], Any],
    ) -> Any:
        """Wait for the event ``event_of(seq)`` (sent to this run), recorded at ``seq``
        as ``tag``; the run gives its worker back until it comes or ``deadline``."""
        recorder = self._recorder

        async def take(seq: int, encode: Encode) -> Body:
            name = event_of(seq)
            payload = await recorder.store.take_event(
                self.run_id, recorder.fence, name, seq, lambda p: encode(journal.output(p))
            )
            if payload is not None:
                return journal.output(payload)
            if deadline is None or time.time() < deadline:
                raise Suspended(deadline, event=name)
            return journal.EVENT_TIMEOUT

        return await recorder.operation(seq, journal.EVENT, tag, NO_INPUT, take, decode)

    async def wait_for_user(
        self,
        question: str,
        input_type: str = "text",
        options: Sequence[Mapping[str, Any] | str] | None = None,
        allow_custom: bool = False,
        skippable: bool = False,
    ) -> str | None:
        """Ask a person and wait for the answer (``engine.answer``, ``surestep answer``).

        The run gives its worker back while it waits, and resumes on the answer in
        any process. As in the AGNT5 SDK: ``text`` returns the text; ``approval`` and
        ``select`` the chosen option's id (``approval`` offers approve/reject unless
        ``options`` says otherwise); ``multiselect`` the chosen ids joined by commas;
        with ``allow_custom`` a person may answer in their own words instead (that text
        is returned); with ``skippable`` they may skip (None is returned). ``options``:
        ``{"id": ..., "label": ...}`` dicts, or plain strings (id and label alike).
        """
        asked = hitl.question(question, input_type, options, allow_custom, skippable)
        recorder = self._recorder
        # The question is journaled first (where the engine reads it while the run
        # waits), then the answer, an event named after the answer's own number.
        self._recorder.value(
            recorder.take_seq(),
            journal.VALUE,
            hitl.ASK,
            serde.canonical(asked, "the question"),
            lambda: journal.output(NO_INPUT),
            _output,
        )
        answer: str | None = await self._take_event(
            recorder.take_seq(), hitl.ANSWER, hitl.answer_event, None, _output
        )
        return answer

    async def batch(
        self,
        fn: Any,
        items: Iterable[Any],
        max_concurrency: int = 10,
        continue_on_failure: bool = True,
        timeout_per_item: float | None = None,
    ) -> BatchResult:
        """Run ``fn`` (a ``@function``, or a workflow as a child run) on every item, each
        item a journaled step taking it as its argument, at most ``max_concurrency`` at
        a time. Returns a :class:`~surestep.batch.BatchResult`: the outputs in input
        order (None for a failed item), the errors, and counts. With
        ``continue_on_failure=False`` the first failure (the lowest item's) is raised
        and the items not started yet are not run. A restarted run replays the items
        that finished and runs only the others."""
        first = self._recorder.seq
        steps = self._fan_out(fn, items, max_concurrency, timeout_per_item)
        outcomes = await run_bounded(
            steps, max_concurrency, not continue_on_failure, self._recorded_at(first)
        )
        results = []
        for index, (output, error) in enumerate(outcomes):
            if error is None:
                results.append(BatchItemResult(index, self.run_id, "completed", output=output))
            else:
                code = getattr(error, "error_type", None) or type(error).__name__
                message = getattr(error, "message", None) or str(error)
                results.append(
                    BatchItemResult(
                        index, self.run_id, "failed", error=BatchItemError(code, message),
                        exception=error,
                    )
                )  # fmt: skip
        failed = sum(1 for item in results if item.is_failed)
        status = "completed"
        if failed:
            status = "failed" if failed == len(results) else "partial_failure"
        stats = BatchStats(len(results), len(results) - failed, failed)
        return BatchResult(f"{self.run_id}:{first}", status, results, stats)

    async def map(self, fn: Any, items: Iterable[Any], max_concurrency: int = 10) -> list[Any]:
        """:meth:`batch` that returns the outputs alone, in input order, and raises the
        first failure (the lowest item's), running no item not started yet."""
        first = self._recorder.seq
        steps = self._fan_out(fn, items, max_concurrency, None)
        outcomes = await run_bounded(steps, max_concurrency, True, self._recorded_at(first))
        return [output for output, _ in outcomes]

    def _fan_out(
        self,
        fn: Any,
        items: Iterable[Any],
        max_concurrency: object,
        timeout_per_item: object,
    ) -> list[Awaitable[Any]]:
        """One step per item, numbered now in input order (so that replay numbers them
        alike, whichever finishes first), not started yet."""
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError(f"max_concurrency is an int >= 1, not {max_concurrency!r}")
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency is an int >= 1, not {max_concurrency!r}")
        items = list(items)
        if timeout_per_item is None:
            return [self.step(fn, item) for item in items]
        spec = spec_of(fn)
        if (
            isinstance(timeout_per_item, bool)
            or not isinstance(timeout_per_item, (int, float))
            or not 0 < timeout_per_item < math.inf
        ):
            raise ConfigurationError(f"timeout_per_item is seconds > 0, not {timeout_per_item!r}")
        if not isinstance(spec, FunctionSpec):
            raise ConfigurationError("timeout_per_item bounds a @function's items only")
        # The item's attempts are bounded as the function's own timeout_ms would bound
        # them: a timed-out item is a journaled failure, replayed as such.
        limit = max(1, int(timeout_per_item * 1000))
        bounded = dataclasses.replace(spec, timeout_ms=min(spec.timeout_ms or limit, limit))
        return [
            self._function(self._recorder.take_seq(), bounded, None, (item,), {}) for item in items
        ]

    def _recorded_at(self, first: int) -> Callable[[int], bool]:
        """Whether the journal holds the record of the ``index``-th operation from ``first``."""
        index = self._recorder.index
        return lambda i: index is not None and index.get(first + i) is not None

    def progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report how far the run has got (``ctx.progress(3, total=10, message="...")``):
        stored with the run, where ``engine.get_run``, ``surestep run`` and the dashboard
        read it. Not journaled, and never read back by the run: reports are coalesced
        (at most one write a second, the last always written before the run finishes or
        waits), progress never goes backwards, and a replay reports nothing again."""
        report = progress_report(progress, total, message)
        if not self.is_replaying:
            self._recorder.report_progress(report)

    async def _child(
        self,
        seq: int,
        spec: WorkflowSpec,
        key: str | int | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        runtime = self._runtime
        what = f"the input of child step {seq} ({spec.name})"
        args, kwargs = convert.journal_arguments(args, kwargs, what)  # typed values: as JSON

        async def start_and_wait(seq: int, encode: Encode) -> Body:
            if runtime is None:
                raise DefinitionError("child workflows need the run to execute in an Engine")
            child_id = child_run_id(self.run_id, seq)
            try:
                result = await runtime.run_child(spec, child_id, args, kwargs, self)
            except (WorkflowFailedError, RunCancelledError) as exc:
                return journal.child_error(
                    child_id,
                    getattr(exc, "error_type", type(exc).__name__),
                    getattr(exc, "message", str(exc)),
                )
            return journal.child_result(
                child_id, serde.dumps(result, f"the result of child {child_id}")
            )

        def outcome(fields: dict[str, Any]) -> Any:
            if "e" in fields:
                error = fields["e"]
                raise ChildWorkflowError(
                    fields["child"], spec.name, error["type"], error["message"]
                )
            if spec.conversion is not None:  # a typed result, as the child's annotation says
                return spec.conversion.decode_result(fields["o"])
            return fields["o"]

        return await self._recorder.operation(
            seq,
            journal.CHILD,
            f"@child:{spec.name}" if key is None else f"@child:{spec.name}#{key}",
            serde.canonical((args, kwargs), what),
            start_and_wait,
            outcome,
        )


class Context(abc.ABC):  # noqa: B024 - a name to annotate with, nothing to implement
    """What code written for the AGNT5 SDK annotates as ``ctx: Context``: a step's
    :class:`FunctionContext` and a workflow's :class:`WorkflowContext` are both
    instances of it.

    Made directly, it names the run of a workflow called without an engine, as AGNT5's
    tests write it: ``await order_flow(Context(run_id="t-1"), order_id="o-1")`` runs in
    memory (:mod:`surestep.local`) as run ``t-1`` of session ``session_id`` (default: the
    run) and user ``user_id``, at ``attempt`` (0-based). ``correlation_id`` and
    ``parent_correlation_id`` are kept as given, for code that reads them.
    """

    def __init__(
        self,
        run_id: str | None = None,
        correlation_id: str | None = None,
        parent_correlation_id: str | None = None,
        attempt: int = 0,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> None:
        for name, value in (
            ("run_id", run_id),
            ("correlation_id", correlation_id),
            ("parent_correlation_id", parent_correlation_id),
            ("session_id", session_id),
            ("user_id", user_id),
        ):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"Context {name} must be a non-empty str, not {value!r}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
            raise ConfigurationError(
                f"Context attempt must be a whole number >= 0, not {attempt!r}"
            )
        self.run_id = run_id
        self.correlation_id = correlation_id
        self.parent_correlation_id = parent_correlation_id
        self.attempt = attempt
        self.session_id = session_id
        self.user_id = user_id


Context.register(FunctionContext)
Context.register(WorkflowContext)


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A synchronous step body, run in the default thread pool (bounded) with the
    caller's context variables, so that it does not hold up the event loop."""
    result = await asyncio.to_thread(fn, *args, **kwargs)
    return await result if _is_awaitable(result) else result


def _output(fields: dict[str, Any]) -> Any:
    return fields["o"]


def _wake_time(fields: dict[str, Any]) -> float:
    return float(fields["o"])


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


class _AttemptsExhausted(Exception):  # noqa: N818 - internal signal
    """The last attempt failed: its error (an exception, or as recorded before the run
    was resumed) and how many attempts were taken."""

    def __init__(self, error: Exception | dict[str, Any], attempts: int) -> None:
        self.error = error
        self.attempts = attempts


class _Failure:
    """An attempt that ran from ``started`` (epoch seconds), and its error once it failed."""

    __slots__ = ("error", "started")

    def __init__(self, error: Exception | None, started: float) -> None:
        self.error = error
        self.started = started


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
