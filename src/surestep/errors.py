"""The errors surestep raises.

Every error derives from :class:`SurestepError`; the ones a caller already
catches also derive from the matching builtin (``TypeError``, ``ValueError``,
``LookupError``...). Signals that must cross a user's ``except Exception``
(suspension, cancellation, a lost lease) derive from :class:`BaseException`.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, TypeVar


class SurestepError(Exception):
    """Root of every error surestep raises."""


# ---------------------------------------------------------------- bad input


class SerializationError(SurestepError, TypeError):
    """A step's or workflow's argument or result is not a JSON value."""


class PayloadTooLargeError(SurestepError, ValueError):
    """A journal record would exceed the size limit (``surestep.context.MAX_PAYLOAD``)."""


class DefinitionError(SurestepError, TypeError):
    """A decorator or ``ctx.step`` was used in a way surestep cannot journal."""


class ConfigurationError(SurestepError, ValueError):
    """An option has a value surestep cannot use (negative retries, zero timeout...)."""


class UnknownWorkflowError(SurestepError, LookupError):
    """No workflow of that name is registered in this process."""


class RunNotFoundError(SurestepError, LookupError):
    """The store has no run with that id."""


class ScheduleNotFoundError(SurestepError, LookupError):
    """The store has no schedule for that workflow."""


# ---------------------------------------------------------------- journal


class JournalCorruptError(SurestepError, ValueError):
    """A stored journal record failed validation (length, checksum, kind...)."""

    run_id: str | None
    seq: int | None

    def __init__(self, message: str, *, run_id: str | None = None, seq: int | None = None) -> None:
        self.reason = message
        self.run_id = run_id
        self.seq = seq
        where = []
        if run_id is not None:
            where.append(f"run {run_id}")
        if seq is not None:
            where.append(f"step {seq}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)

    def for_run(self, run_id: str) -> JournalCorruptError:
        """The same error, naming the run whose journal holds the record."""
        return type(self)(self.reason, run_id=run_id, seq=self.seq)


class UnsupportedFormatError(JournalCorruptError):
    """A record was written by a newer journal format than this release reads."""


class NonDeterminismError(SurestepError, RuntimeError):
    """Replay found the code asking for a different step than the journal recorded.

    ``recorded`` and ``requested`` describe the step at position ``seq``: its
    name, key and input (from the core alone, before the runtime names the run:
    the identity and input as bytes, or a format-1 record's hashes).
    """

    run_id: str | None
    seq: int
    recorded: dict[str, Any]
    requested: dict[str, Any]

    def __init__(
        self,
        seq: int,
        recorded: dict[str, Any],
        requested: dict[str, Any],
        *,
        run_id: str | None = None,
        detail: str = "",
    ) -> None:
        self.run_id = run_id
        self.seq = seq
        self.recorded = recorded
        self.requested = requested
        run = f"run {run_id}: " if run_id else ""
        msg = (
            f"{run}step {seq} does not match the journal: recorded {recorded}, "
            f"the code asked for {requested}"
        )
        if detail:
            msg += f". {detail}"
        msg += (
            ". The workflow's code changed under a running workflow; finish or cancel the "
            "run on the old code, or branch with a new step name."
        )
        super().__init__(msg)


# ---------------------------------------------------------------- steps and runs


class StepFailedError(SurestepError):
    """A step raised on its last attempt. Journaled, so replay raises it again.

    ``error_type`` is the qualified name of the original exception class,
    ``traceback`` its formatted traceback as text (the original object is not
    kept: the journal stores JSON only).
    """

    def __init__(
        self,
        step: str,
        seq: int,
        error_type: str,
        message: str,
        *,
        attempts: int = 1,
        traceback: str = "",
    ) -> None:
        self.step = step
        self.seq = seq
        self.error_type = error_type
        self.message = message
        self.attempts = attempts
        self.traceback = traceback
        super().__init__(
            f"step {seq} ({step}) failed after {attempts} attempt(s): {error_type}: {message}"
        )


class StepTimeoutError(SurestepError, TimeoutError):
    """One attempt of a step ran past its ``timeout_ms``."""


class WorkflowFailedError(SurestepError):
    """The workflow itself raised; ``handle.result()`` raises this."""

    def __init__(self, run_id: str, error_type: str, message: str, traceback: str = "") -> None:
        self.run_id = run_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(f"run {run_id} failed: {error_type}: {message}")


class RunCancelledError(SurestepError):
    """``handle.result()`` of a run that was cancelled."""


class RunNotFinishedError(SurestepError):
    """A run's result was asked for (``Client.get_result``) before the run finished."""


class OverloadedError(SurestepError):
    """``start`` refused a new run: the engine has ``limit`` runs in flight (being started
    or executing) and was configured to refuse past that (``Engine(on_full="refuse")``).
    Nothing was stored; try again later, or raise ``max_in_flight``. Over HTTP, a 503
    with ``Retry-After`` (the client raises it too, without the counts)."""

    def __init__(self, message: str, in_flight: int | None = None, limit: int | None = None):
        self.in_flight = in_flight
        self.limit = limit
        super().__init__(message)

    @classmethod
    def at_bound(cls, in_flight: int, limit: int) -> OverloadedError:
        return cls(
            f"the engine has {in_flight} runs in flight (max_in_flight={limit}) and refuses "
            "more: nothing was started; try again later, raise max_in_flight, or let start "
            "wait for a place (on_full='wait')",
            in_flight,
            limit,
        )


class RunFinishedError(SurestepError):
    """An event sent to a run that has finished: nothing would ever receive it."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} has finished ({status}); it receives no more events")


class EventTimeoutError(SurestepError, TimeoutError):
    """``ctx.wait_for_event(name, timeout=...)`` saw no event in time. Journaled."""


class AnswerError(SurestepError, ValueError):
    """An answer the run's question does not take (an option it does not offer, a skip
    it does not allow), or an answer to a run that waits for no person."""


class StateConflictError(SurestepError):
    """Another run wrote a shared state key after this run read it. Journaled; read
    the key again (or use ``state.update``) to build on the newer value."""


class DirectCallError(SurestepError, RuntimeError):
    """A workflow called directly (``await wf(...)``, no engine) waits for what only an
    engine can deliver: an event, a person's answer."""


class ChildWorkflowError(SurestepError):
    """A child workflow failed or was cancelled; raised in the parent. Journaled."""

    def __init__(self, child_id: str, workflow: str, error_type: str, message: str) -> None:
        self.child_id = child_id
        self.workflow = workflow
        self.error_type = error_type
        self.message = message
        super().__init__(f"child run {child_id} ({workflow}) failed: {error_type}: {message}")


# ---------------------------------------------------------------- store


class StoreError(SurestepError, OSError):
    """The store could not do what was asked; nothing was acknowledged."""


class StoreFullError(StoreError):
    """The store ran out of room (LMDB map full, or the disk is full)."""


# ---------------------------------------------------------------- how the surfaces sort them
# The CLI's exit codes and the HTTP API's statuses follow these groups.

#: What names something the store, or this process, does not have.
NOT_FOUND = (RunNotFoundError, ScheduleNotFoundError, UnknownWorkflowError)
#: The store failing, or what it holds being unreadable.
STORE_FAILED = (StoreError, JournalCorruptError)
#: Input surestep cannot use: an option, a value, a definition.
BAD_INPUT = (ConfigurationError, SerializationError, DefinitionError)


# ---------------------------------------------------------------- control flow (BaseException)


class ControlFlow(BaseException):
    """Base of the signals that a user's ``except Exception`` must not swallow."""


class LeaseLostError(ControlFlow):
    """This worker no longer holds the run's lease: another worker took it over.

    The run stops here without writing; the lease holder continues it.
    """

    def __init__(self, run_id: str, fence: int) -> None:
        self.run_id = run_id
        self.fence = fence
        super().__init__(f"run {run_id}: lease lost (fencing token {fence} is stale)")


class Cancelled(ControlFlow):
    """The run was cancelled; raised at its next step."""


class Suspended(ControlFlow):
    """The run waits (a timer, an event) and gives its worker back: it is resumed by
    replay when ``wake_at`` comes or ``event`` is sent. ``given_back``: the store has
    suspended the run already, in the transaction that recorded why (a retry's backoff)."""

    def __init__(
        self, wake_at: float | None, event: str | None = None, given_back: bool = False
    ) -> None:
        self.wake_at = wake_at
        self.event = event
        self.given_back = given_back
        super().__init__(f"waiting until {wake_at}" + (f" for event {event!r}" if event else ""))


def describe(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON for the journal: qualified type name, message, traceback,
    and what :func:`step_failure` needs to rebuild it: the class's module and
    qualified name, its ``args`` when they are JSON values, and its instance
    attributes that are JSON values (``self.sku = sku`` in a custom ``__init__``)."""
    kind = getattr(type(exc), "__surestep_original__", type(exc))
    described: dict[str, Any] = {
        "type": f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins."),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "module": kind.__module__,
        "qualname": kind.__qualname__,
    }
    if _is_json(exc.args):
        described["args"] = list(exc.args)
    attributes = {
        key: value
        for key, value in getattr(exc, "__dict__", {}).items()
        if _is_json(value) and not key.startswith("__")  # not our own marks, not notes
    }
    if attributes and not issubclass(kind, SurestepError):
        described["attributes"] = attributes
    return described


def _is_json(value: Any) -> bool:
    kind = type(value)
    if kind in (str, bool, float) or value is None:
        return kind is not float or bool(value == value and value not in (_INF, -_INF))
    if kind is int:
        return bool(-(2**63) <= value < 2**64)
    if kind in (list, tuple):
        return all(_is_json(item) for item in value)
    if kind is dict:
        return all(type(key) is str and _is_json(item) for key, item in value.items())
    return False


_INF = float("inf")


# ---------------------------------------------------------------- a step's own exception

_registered: dict[tuple[str, str], type[Exception]] = {}
_rebuilt: dict[type[Exception], type[Exception] | None] = {}

E = TypeVar("E", bound=type[Exception])


def register_exception(cls: E) -> E:
    """Let a step's failure with ``cls`` be rebuilt as ``cls`` even where its module is
    not imported or it is not importable (a class defined in a function). Usable as a
    class decorator; returns ``cls``."""
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        raise DefinitionError(f"register_exception takes an Exception subclass, not {cls!r}")
    _registered[(cls.__module__, cls.__qualname__)] = cls
    return cls


def step_failure(step: str, seq: int, error: dict[str, Any], attempts: int) -> StepFailedError:
    """The error a workflow sees for a step that failed with ``error`` (as ``describe``
    wrote it): an instance of the step's own exception class that is also a
    :class:`StepFailedError`, with the same ``str()``, when that class is registered
    or already imported (a module named by stored data is never imported); else a
    plain ``StepFailedError`` naming the original type."""
    cls = _known_class(error.get("module"), error.get("qualname"))
    rebuilt = _rebuilt_class(cls) if cls is not None else None
    if rebuilt is None:
        return StepFailedError(
            step,
            seq,
            error["type"],
            error["message"],
            attempts=attempts,
            traceback=error["traceback"],
        )
    args = error.get("args")
    args = tuple(args) if isinstance(args, list) else (error["message"],)
    try:
        instance = rebuilt(*args)  # the class's own __init__, so its attributes are set
    except Exception:
        instance = rebuilt.__new__(rebuilt, *args)
        instance.args = args
    attributes = error.get("attributes")
    if isinstance(attributes, dict):
        vars(instance).update(attributes)
    fields = {
        "step": step,
        "seq": seq,
        "error_type": error["type"],
        "message": error["message"],
        "attempts": attempts,
        "traceback": error["traceback"],
    }
    for name, value in fields.items():
        if name not in vars(instance) and not hasattr(cls, name):  # the class's own wins
            setattr(instance, name, value)
    setattr(instance, "__surestep_message__", error["message"])  # noqa: B010 - for __str__
    if sys.version_info >= (3, 11):  # shown under the traceback: where it came from
        instance.add_note(f"(step {seq} ({step}) failed after {attempts} attempt(s))")
    assert isinstance(instance, StepFailedError)
    return instance


def _known_class(module: Any, qualname: Any) -> type[Exception] | None:
    """The exception class named ``module``/``qualname`` if registered or importable
    from a module already imported; None otherwise (nothing is imported here)."""
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None  # a record written before these fields existed
    found: Any = _registered.get((module, qualname))
    if found is None:
        found = sys.modules.get(module)
        for part in qualname.split("."):
            if found is None or part.startswith("<"):
                return None
            found = getattr(found, part, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        return None
    if issubclass(found, (StepFailedError, ControlFlow)):
        return None
    return found


class _RebuiltStepError(StepFailedError):
    """The StepFailedError half of a rebuilt step exception: its ``__init__`` takes what
    the original class's ``__init__`` passes up (``super().__init__(...)``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Exception.__init__(self, *args)

    def __str__(self) -> str:
        return str(getattr(self, "__surestep_message__", Exception.__str__(self)))


def _rebuilt_class(cls: type[Exception]) -> type[Exception] | None:
    """A subclass of both ``cls`` and StepFailedError (cached); None when the two cannot
    be combined (a C layout that conflicts)."""
    if cls in _rebuilt:
        return _rebuilt[cls]
    try:
        combined: type[Exception] | None = type(
            cls.__name__,
            (cls, _RebuiltStepError),
            {
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
                "__surestep_original__": cls,
                "__str__": _RebuiltStepError.__str__,
            },
        )
    except TypeError:
        combined = None
    _rebuilt[cls] = combined
    return combined
