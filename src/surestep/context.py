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
import time
import warnings
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import _core, serde
from .decorators import FunctionSpec, WorkflowSpec, spec_of
from .errors import (
    DefinitionError,
    NonDeterminismError,
    StepFailedError,
    StepTimeoutError,
    describe,
)

if TYPE_CHECKING:
    from .store.base import RunInfo, Store

_NULL = b"null"
_NULL_DIGEST = _core.input_digest(_NULL)


class FunctionContext:
    """Passed to a ``@function`` whose first parameter is ``ctx``.

    ``idempotency_key`` is the same on every attempt of this step in this run,
    including a re-execution after a crash: pass it to external services so
    that a step interrupted mid-flight and run again has its effect once.
    """

    __slots__ = ("attempt", "idempotency_key", "logger", "run_id", "seq", "session_id", "step_name", "user_id")

    def __init__(self, wf: WorkflowContext, step_name: str, seq: int, key: str, attempt: int) -> None:
        self.run_id = wf.run_id
        self.session_id = wf.session_id
        self.user_id = wf.user_id
        self.step_name = step_name
        self.seq = seq
        self.attempt = attempt
        self.idempotency_key = key
        self.logger = wf.logger


class _RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The run's logger: lines carry the run id and are silent while replaying."""

    def __init__(self, ctx: WorkflowContext, workflow: str) -> None:
        super().__init__(logging.getLogger(f"surestep.workflow.{workflow}"), {"run_id": ctx.run_id})
        self._ctx = ctx

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return not self._ctx.is_replaying and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "run_id": self._ctx.run_id}
        return f"[{self._ctx.run_id}] {msg}", kwargs


class WorkflowContext:
    """The durable context of one run of a workflow."""

    def __init__(
        self,
        run: RunInfo,
        store: Store,
        index: _core.ReplayIndex | None,
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
        self.logger: logging.LoggerAdapter = _RunLogger(self, run.workflow)  # type: ignore[type-arg]

    @property
    def step_count(self) -> int:
        """How many steps this run has taken so far (the next step's number)."""
        return self._seq

    @property
    def is_replaying(self) -> bool:
        """True while the next step is one the journal has already recorded."""
        return self._seq <= self._replay_max

    # -- steps

    def step(self, target: Any, *args: Any, key: str | int | None = None, **kwargs: Any) -> Awaitable[Any]:
        """Run a journaled step, or return its recorded result on replay.

        Three forms::

            await ctx.step(charge_card, order_id)          # a @function and its arguments
            await ctx.step("charge", payments.charge(id))   # a name and an awaitable
            await ctx.step("stamp", lambda: make_stamp())   # a name and a callable (+ args)

        ``key`` distinguishes steps by more than their position (it becomes part
        of the step's identity and of its idempotency key).
        """
        if inspect.isawaitable(target):  # a bare awaitable, named after its function
            return self.step(getattr(target, "__name__", "awaitable"), target, *args, key=key, **kwargs)
        seq = self._seq
        self._seq = seq + 1
        if key is not None and (not isinstance(key, (str, int)) or key == ""):
            raise DefinitionError(f"a step key must be a non-empty str or an int, not {key!r}")
        if isinstance(target, str):
            name = target
            if not args:
                raise DefinitionError(
                    f"ctx.step({name!r}, ...) needs an awaitable or a callable after the name"
                )
            body, args = args[0], args[1:]
            if inspect.isawaitable(body):
                if args or kwargs:
                    _close(body)
                    raise DefinitionError(
                        f"ctx.step({name!r}, awaitable) takes no further arguments"
                    )
                return self._run(seq, name, key, None, None, (), {}, body)
            if not callable(body):
                raise DefinitionError(
                    f"ctx.step({name!r}, x): x must be an awaitable or a callable, not {body!r}"
                )
            return self._run(seq, name, key, None, body, args, kwargs, None)
        spec = spec_of(target)
        if isinstance(spec, FunctionSpec):
            return self._run(seq, spec.name, key, spec, spec.fn, args, kwargs, None)
        if isinstance(spec, WorkflowSpec):
            raise DefinitionError(
                f"ctx.step({spec.name}) names a workflow; child workflows are not supported yet"
            )
        if callable(target):
            raise DefinitionError(
                f"ctx.step({getattr(target, '__name__', target)!r}) needs a @function; for a plain "
                "callable give the step a name: ctx.step('name', fn, *args)"
            )
        raise DefinitionError(f"ctx.step() cannot run {target!r}")

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
        return dict(zip(steps, values))

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
        name_hash = _core.name_hash(ident)
        if fn is not None and (args or kwargs):
            try:
                input_json = serde.canonical((args, kwargs), f"the input of step {seq} ({name})")
            except TypeError:
                _close(awaitable)
                raise
            digest = _core.input_digest(input_json)
        else:
            input_json, digest = _NULL, _NULL_DIGEST

        if seq <= self._replay_max:
            record = self._lookup(seq, name, name_hash, digest, input_json)
            if record is not None:
                _close(awaitable)
                return self._replayed(record, name)

        idempotency_key = f"{self.run_id}:{seq}" if key is None else f"{self.run_id}:{key}"
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
                output, attempts = await self._attempts(spec, fn, args, kwargs, name, seq, idempotency_key)
        except _AttemptsExhausted as failed:
            error = await self._journal_failure(seq, name, key, name_hash, digest, input_json, started, failed)
            raise error from failed.error
        output_json = serde.dumps(output, f"the result of step {seq} ({name})")
        payload = b'{"n":%b,"k":%b,"i":%b,"o":%b,"t0":%r,"t1":%r}' % (
            serde.dumps(name, "a step name"),
            serde.dumps(key, "a step key") if key is not None else _NULL,
            input_json,
            output_json,
            started,
            time.time(),
        )
        record = _core.encode_record(_core.KIND_STEP, seq, attempts, name_hash, digest, payload)
        await self._store.append(self.run_id, self._fence, seq, record)
        # Hand back what the journal holds, so the first run and every replay see one value.
        return serde.loads(output_json)

    async def _attempts(
        self,
        spec: FunctionSpec | None,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str,
        seq: int,
        idempotency_key: str,
    ) -> tuple[Any, int]:
        attempt = 0  # 0-based, as FunctionContext.attempt (the AGNT5 convention)
        while True:
            try:
                if spec is not None and spec.takes_ctx:
                    fctx = FunctionContext(self, name, seq, idempotency_key, attempt)
                    result = fn(fctx, *args, **kwargs)
                else:
                    result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    if spec is not None and spec.timeout_ms is not None:
                        result = await _with_timeout(result, spec.timeout_ms, name, seq, attempt)
                    else:
                        result = await result
                return result, attempt + 1
            except Exception as exc:
                if spec is None or attempt + 1 >= spec.retry.max_attempts:
                    raise _AttemptsExhausted(exc, attempt + 1) from exc
                self.logger.info("step %d (%s) attempt %d failed: %r; retrying", seq, name, attempt, exc)
                await asyncio.sleep(spec.delay(attempt))
                attempt += 1

    async def _journal_failure(
        self,
        seq: int,
        name: str,
        key: str | int | None,
        name_hash: int,
        digest: int,
        input_json: bytes,
        started: float,
        failed: _AttemptsExhausted,
    ) -> StepFailedError:
        """Journal a step's final failure; return the error the workflow sees."""
        error = describe(failed.error)
        payload = serde.dumps(
            {"n": name, "k": key, "i": serde.loads(input_json), "e": error, "t0": started, "t1": time.time()},
            f"the error of step {seq} ({name})",
        )
        record = _core.encode_record(_core.KIND_STEP_ERROR, seq, failed.attempts, name_hash, digest, payload)
        await self._store.append(self.run_id, self._fence, seq, record)
        return StepFailedError(
            name, seq, error["type"], error["message"], attempts=failed.attempts, traceback=error["traceback"]
        )

    def _lookup(self, seq: int, name: str, name_hash: int, digest: int, input_json: bytes) -> _core.Record | None:
        assert self._index is not None
        try:
            return self._index.lookup(seq, name_hash, digest)
        except NonDeterminismError:
            recorded = self._index.get(seq)
            assert recorded is not None
            data = serde.loads(recorded.payload)
            raise NonDeterminismError(
                seq,
                recorded={"name": data.get("n"), "key": data.get("k"), "input": data.get("i")},
                requested={"name": name, "input": serde.loads(input_json)},
                run_id=self.run_id,
            ) from None

    def _replayed(self, record: _core.Record, name: str) -> Any:
        data = serde.loads(record.payload)
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
            data = serde.loads(recorded.payload)
            raise NonDeterminismError(
                seq,
                recorded={"name": data.get("n"), "key": data.get("k"), "input": data.get("i")},
                requested={"name": None},
                run_id=self.run_id,
                detail="the workflow returned without taking this recorded step",
            )


class _AttemptsExhausted(Exception):  # noqa: N818 - internal signal
    def __init__(self, error: Exception, attempts: int) -> None:
        self.error = error
        self.attempts = attempts


async def _with_timeout(aw: Awaitable[Any], timeout_ms: int, name: str, seq: int, attempt: int) -> Any:
    try:
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
