"""``@function`` and ``@workflow``: mark code as a journaled step or a durable workflow.

Both work bare (``@function``) and with options (``@function(retries=3)``) and give
the function a ``__surestep__`` spec. A ``@workflow``, and a ``@function`` taking
``ctx``, come back wrapped (same name, docstring and signature) so that awaited
without an engine they run in memory (:mod:`surestep.local`); engines call the spec's
own function. Names
are registered per process; a second, different definition under a taken
name raises at decoration (a module imported twice re-registers itself).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from . import convert, serde
from .errors import ConfigurationError, DefinitionError, UnknownWorkflowError
from .retention import parse_retention
from .schedules import Schedule, define
from .triggers import check_name

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")

BACKOFFS = ("constant", "linear", "exponential")


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is attempted (``max_attempts`` in all, the first included)
    and how long to wait between attempts (from ``initial_interval_ms``, capped at
    ``max_interval_ms``). The AGNT5 SDK's shape and defaults."""

    max_attempts: int = 3
    initial_interval_ms: int = 1000
    max_interval_ms: int = 60_000

    def __post_init__(self) -> None:
        _whole("max_attempts", self.max_attempts, minimum=1)
        _whole("initial_interval_ms", self.initial_interval_ms, minimum=0)
        _whole("max_interval_ms", self.max_interval_ms, minimum=self.initial_interval_ms)


@dataclass(frozen=True)
class BackoffPolicy:
    """How the wait grows: ``"constant"``, ``"linear"`` or ``"exponential"`` (by ``multiplier``)."""

    type: str = "exponential"
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        kind = str(getattr(self.type, "value", self.type)).lower()
        if kind not in BACKOFFS:
            raise ConfigurationError(f"backoff must be one of {BACKOFFS}, not {self.type!r}")
        object.__setattr__(self, "type", kind)
        if not isinstance(self.multiplier, (int, float)) or not self.multiplier > 0:
            raise ConfigurationError(f"backoff multiplier must be > 0, not {self.multiplier!r}")


def _whole(option: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{option} must be a whole number >= {minimum}, not {value!r}")


def _name_option(name: Any) -> None:
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigurationError(f"name must be a non-empty string, not {name!r}")


_Policy = TypeVar("_Policy", RetryPolicy, BackoffPolicy)


def _policy(kind: type[_Policy], value: Any, shorthand: Callable[[Any], _Policy]) -> _Policy:
    """``value`` as a ``kind``: its defaults for ``None``, a ``kind`` as it is, one made of
    a dict's fields, else ``shorthand(value)``."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        return kind(**value)
    return shorthand(value)


def _attempts(retries: Any) -> RetryPolicy:
    _whole("retries", retries, minimum=1)
    return RetryPolicy(max_attempts=retries)


def _backoff_named(backoff: Any) -> BackoffPolicy:
    if not isinstance(backoff, str):
        raise ConfigurationError(
            f"backoff must be a name, a dict or a BackoffPolicy, not {backoff!r}"
        )
    return BackoffPolicy(type=backoff)


@dataclass(frozen=True)
class FunctionSpec:
    """How a ``@function`` runs as a step."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    backoff: BackoffPolicy
    timeout_ms: int | None
    takes_ctx: bool

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    @functools.cached_property
    def positional_range(self) -> tuple[int, float]:
        """How many positional arguments (after ``ctx``) a call may pass: the fast
        check for ``ctx.step`` (see ``_positional_range``)."""
        return _positional_range(self.signature, 1 if self.takes_ctx else 0)

    @functools.cached_property
    def synchronous(self) -> bool:
        """A plain ``def``: each attempt runs in a thread, off the event loop."""
        return not (inspect.iscoroutinefunction(self.fn) or inspect.isasyncgenfunction(self.fn))

    @functools.cached_property
    def bare_call(self) -> bool:
        """An attempt is the call itself: asynchronous, without a context or a timeout
        (the common step, called without going through ``_attempt``)."""
        return not self.synchronous and not self.takes_ctx and self.timeout_ms is None

    @functools.cached_property
    def conversion(self) -> convert.Conversion | None:
        """How typed arguments and result cross the journal; None when all are plain
        JSON (decided once, at the first call: string annotations resolve by then)."""
        return convert.conversion_of(self.fn, f"step {self.name!r}")

    @functools.cached_property
    def loads_result(self) -> Callable[[bytes], Any]:
        """The journaled result's bytes back to the value the function returns."""
        conversion = self.conversion
        if conversion is None or conversion.result is inspect.Parameter.empty:
            return serde.loads
        return lambda data: conversion.decode_result(serde.loads(data))

    def check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """``TypeError`` when the function cannot take these arguments."""
        low, high = self.positional_range
        if not kwargs and low <= len(args) <= high:
            return
        self.signature.bind(*((None,) if self.takes_ctx else ()), *args, **kwargs)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (0-based) failed."""
        initial = self.retry.initial_interval_ms
        if self.backoff.type == "constant":
            ms = float(initial)
        elif self.backoff.type == "linear":
            ms = float(initial * (attempt + 1))
        else:
            ms = initial * self.backoff.multiplier**attempt
        return min(ms, self.retry.max_interval_ms) / 1000.0


@dataclass(frozen=True)
class WorkflowSpec:
    """A registered workflow: its name, code and version, and what starts it besides
    ``engine.start``: a schedule, event triggers."""

    name: str
    fn: Callable[..., Any]
    explicit_version: str | None
    # Set when it is started by signed POSTs to /webhooks/<name> (surestep.web.webhooks).
    webhook_secret: str | None = None
    chat: bool = False  # a conversational workflow: a run's session is its conversation
    retention: int | None = None  # milliseconds or KEEP_FOREVER; None: the engine's
    schedule: Schedule | None = None
    events: tuple[str, ...] = ()  # the event names that start it

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self.fn)

    @functools.cached_property
    def version(self) -> str:
        """The declared version, else a digest of the workflow's source."""
        return self.explicit_version or code_digest(self.fn)

    @functools.cached_property
    def versions(self) -> tuple[str, ...]:
        """The versions this code runs: :attr:`version`, and without a declared version
        also the digest 0.2 gave the same source (its stored runs keep resuming)."""
        if self.explicit_version:
            return (self.explicit_version,)
        legacy = legacy_code_digest(self.fn)
        return (self.version,) if legacy == self.version else (self.version, legacy)

    @functools.cached_property
    def positional_range(self) -> tuple[int, float]:
        return _positional_range(self.signature, 1)  # after ctx

    @functools.cached_property
    def names_identities(self) -> bool:
        """Whether a parameter is named ``session_id`` or ``user_id``: an argument given
        to it names the run's session or user (``engine.run_identities``)."""
        return not self.signature.parameters.keys().isdisjoint(("session_id", "user_id"))

    @functools.cached_property
    def conversion(self) -> convert.Conversion | None:
        """How typed arguments and result cross the store; None when all are plain JSON."""
        return convert.conversion_of(self.fn, f"workflow {self.name!r}")

    def check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """``TypeError`` when the workflow cannot take these arguments."""
        low, high = self.positional_range
        if not kwargs and low <= len(args) <= high:
            return
        self.signature.bind(None, *args, **kwargs)


def _positional_range(signature: inspect.Signature, skip: int) -> tuple[int, float]:
    """How many positional arguments a call may pass after the first ``skip`` parameters,
    when no keyword argument is required; (1, 0) (never) when one is: ``bind`` judges."""
    kinds = inspect.Parameter
    everything = list(signature.parameters.values())
    if len(everything) < skip or any(
        p.kind not in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        for p in everything[:skip]
    ):
        return (1, 0)  # the skipped ones (ctx) are not plain positional parameters
    params = everything[skip:]
    if any(p.kind == kinds.KEYWORD_ONLY and p.default is p.empty for p in params):
        return (1, 0)
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    required = sum(p.default is p.empty for p in positional)
    varargs = any(p.kind == kinds.VAR_POSITIONAL for p in params)
    return (required, float("inf") if varargs else len(positional))


_functions: dict[str, FunctionSpec] = {}
_workflows: dict[str, WorkflowSpec] = {}


def code_digest(fn: Callable[..., Any]) -> str:
    """A stable digest of a function's code: its source from the ``def`` line on, so
    that a decorator's options are not part of it (bytecode when there is no source)."""
    try:
        text = _body_source(inspect.getsource(fn)).encode()
    except (OSError, TypeError):
        text = fn.__code__.co_code
    return _digest(text)


def legacy_code_digest(fn: Callable[..., Any]) -> str:
    """The digest surestep 0.2 gave a workflow (its source with its decorators): the
    version its stored runs carry, still served so that they keep resuming."""
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        text = fn.__code__.co_code
    return _digest(text)


def _digest(text: bytes) -> str:
    return "code-" + hashlib.sha256(text).hexdigest()[:12]


def _body_source(source: str) -> str:
    """``source`` (a function's, as ``inspect.getsource`` gives it) without the
    decorator lines above its ``def``."""
    dedented = textwrap.dedent(source)
    try:
        tree = ast.parse(dedented)
    except SyntaxError:
        return source
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.decorator_list:
        return source
    return "".join(dedented.splitlines(keepends=True)[node.lineno - 1 :])


def _takes_ctx(fn: Callable[..., Any]) -> bool:
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return False
    first = params[0]
    annotation = first.annotation
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] in ("FunctionContext", "Context")
    if annotation is not inspect.Parameter.empty:
        return getattr(annotation, "__name__", "") in ("FunctionContext", "Context")
    return first.name in ("ctx", "context")


def _register(table: dict[str, Any], kind: str, spec: Any) -> None:
    old = table.get(spec.name)
    if old is not None and _origin(old.fn) != _origin(spec.fn):
        raise DefinitionError(
            f"a {kind} named {spec.name!r} is already registered ({_origin(old.fn)}); "
            f"give {_origin(spec.fn)} another name with @{kind}(name=...)"
        )
    table[spec.name] = spec


def _origin(fn: Callable[..., Any]) -> str:
    """Where ``fn`` is defined: its file, so a script run as ``__main__`` and also
    imported by name counts as one definition."""
    fn = inspect.unwrap(fn)  # a synchronous body's coroutine: the body's own place
    try:
        where = inspect.getsourcefile(fn) or fn.__module__
    except TypeError:
        where = fn.__module__
    return f"{where}:{fn.__qualname__}"


class _Decorate(Protocol):
    """What a decorator's options make: the decorator proper."""

    def __call__(self, fn: F, /) -> F: ...


class _Decorator(Protocol[P]):
    """A decorator used bare (``@function``) or with options (``@function(retries=3)``)."""

    @overload
    def __call__(self, fn: F, /) -> F: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> _Decorate: ...


def _bare_or_with_options(options: Callable[P, _Decorate]) -> _Decorator[P]:
    """The decorator whose ``options`` (keyword-only, each with a default) make the
    decorator proper: called with a function, it decorates it with the defaults."""
    make = cast(Callable[..., _Decorate], options)

    @functools.wraps(options)
    def decorator(fn: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
        decorate = make(**kwargs)
        return decorate if fn is None else decorate(fn)

    return cast(_Decorator[P], decorator)


@_bare_or_with_options
def function(
    *,
    name: str | None = None,
    retries: int | dict[str, Any] | RetryPolicy | None = None,
    backoff: str | dict[str, Any] | BackoffPolicy | None = None,
    timeout_ms: int | None = None,
) -> _Decorate:
    """Mark ``fn`` as a step handler for ``ctx.step(fn, *args)``.

    ``retries`` is the number of attempts in all (an int, or a
    :class:`RetryPolicy` / dict of its fields; default 3 attempts, waiting 1 s,
    2 s... capped at 60 s), as in the AGNT5 SDK. ``backoff`` is
    ``"constant"``, ``"linear"`` or ``"exponential"`` (or a
    :class:`BackoffPolicy`). ``timeout_ms`` bounds each attempt of an async
    function. A synchronous function runs in a thread of asyncio's default
    (bounded) pool, with the caller's context variables, so the event loop
    keeps serving other runs meanwhile. A function whose first parameter is
    ``ctx`` (or annotated ``FunctionContext`` / ``Context``) receives a
    :class:`~surestep.FunctionContext`.
    """
    retry = _policy(RetryPolicy, retries, _attempts)
    backoff_policy = _policy(BackoffPolicy, backoff, _backoff_named)
    if timeout_ms is not None:
        _whole("timeout_ms", timeout_ms, minimum=1)

    _name_option(name)

    def decorate(target: F) -> F:
        if not callable(target):
            raise DefinitionError(f"@function decorates a function, not {target!r}")
        spec = FunctionSpec(
            name=name or target.__name__,
            fn=target,
            retry=retry,
            backoff=backoff_policy,
            timeout_ms=timeout_ms,
            takes_ctx=_takes_ctx(target),
        )
        _register(_functions, "function", spec)
        target.__surestep__ = spec  # type: ignore[attr-defined]
        if not spec.takes_ctx:
            return target  # called directly, it is the function itself
        return cast(F, _function_call(spec, target))

    return decorate


def _function_call(spec: FunctionSpec, target: Callable[..., Any]) -> Callable[..., Any]:
    """What ``@function`` returns for a function that takes ``ctx``: ``target``'s name,
    docstring and signature (``__wrapped__``). Called with a context first, it is the
    function; called without one, as AGNT5's unit tests call it, it runs as one step of a
    run in memory, with its retry policy and a ``FunctionContext`` made for it
    (:mod:`surestep.local`): an awaitable, as in AGNT5, even for a ``def``. Engines
    call ``spec.fn``."""
    if inspect.iscoroutinefunction(target):

        @functools.wraps(target)
        async def function_call(*args: Any, **kwargs: Any) -> Any:
            if args and _is_context(args[0]):
                return await target(*args, **kwargs)
            from .local import call_function

            return await call_function(function_call, args, kwargs)

    else:

        @functools.wraps(target)
        def function_call(*args: Any, **kwargs: Any) -> Any:
            if args and _is_context(args[0]):
                return target(*args, **kwargs)
            from .local import call_function

            return call_function(function_call, args, kwargs)

    function_call.__surestep__ = spec  # type: ignore[attr-defined]
    return function_call


def _is_context(value: object) -> bool:
    from .context import Context  # the context module imports this one

    return isinstance(value, Context)


@_bare_or_with_options
def workflow(
    *,
    name: str | None = None,
    version: str | None = None,
    chat: bool = False,
    cron: str | None = None,
    timezone: str | None = None,
    every: float | timedelta | None = None,
    catchup: str | None = None,
    triggers: Sequence[Any] | None = None,
    webhook: bool = False,
    webhook_secret: str | None = None,
    retention: Any = None,
) -> _Decorate:
    """Mark an ``async def wf(ctx: WorkflowContext, ...)`` as a durable workflow.

    ``chat=True`` marks a conversational workflow: each run is a turn of the
    conversation named by its ``session_id``; a run started without one opens a
    new conversation whose id is the run's id (recorded as its ``session_id``,
    so the next turn can pass it). ``webhook=True`` with a ``webhook_secret``:
    the HTTP app starts it on a POST to ``/webhooks/<name>`` signed with that
    secret (:mod:`surestep.web.webhooks`). ``cron`` (5 fields, in ``timezone``,
    default UTC) or ``every`` (seconds, or a ``timedelta``) starts a run at each
    tick, ``catchup`` ("latest", "all" or "none") deciding what ticks missed
    during downtime get (:mod:`surestep.schedules`); ``triggers=[event("name")]``
    starts a run at each such event emitted (:mod:`surestep.triggers`);
    ``webhook(...)`` triggers are refused (use ``webhook=True``). Options never
    change the workflow's version: it digests the code, not its decorator.
    ``retention``: how long its finished runs stay in the store (a duration, or
    ``"forever"``; :mod:`surestep.retention`); ``None``: the engine's policy.
    """
    if version is not None and (not isinstance(version, str) or not version):
        raise ConfigurationError(f"version must be a non-empty string, not {version!r}")
    _name_option(name)
    if not isinstance(chat, bool):
        raise ConfigurationError(f"chat must be True or False, not {chat!r}")
    schedule = define(cron, every, timezone, catchup)
    events = _check_ways_in(triggers, webhook, webhook_secret)
    keep = parse_retention(retention)

    def decorate(target: F) -> F:
        if (
            not inspect.isfunction(target)
            or inspect.isgeneratorfunction(target)
            or inspect.isasyncgenfunction(target)
        ):
            raise DefinitionError(
                f"@workflow decorates a function (async def, or def), not {target!r}"
            )
        body: Callable[..., Any] = target
        if not inspect.iscoroutinefunction(target):
            _check_synchronous_body(target)
            body = _on_the_loop(target)
        spec = WorkflowSpec(
            name=name or target.__name__,
            fn=body,
            explicit_version=version,
            chat=chat,
            webhook_secret=webhook_secret,
            retention=keep,
            schedule=schedule,
            events=events,
        )
        if schedule is not None:
            try:
                spec.check_call((), {})
            except TypeError:
                raise DefinitionError(
                    f"scheduled workflow {spec.name!r} is started with no arguments: "
                    "give its parameters after ctx default values"
                ) from None
        _register(_workflows, "workflow", spec)
        target.__surestep__ = spec  # type: ignore[attr-defined]
        return cast(F, _direct_callable(spec, target))

    return decorate


def _on_the_loop(body: Callable[..., Any]) -> Callable[..., Any]:
    """A synchronous workflow body as the coroutine function the engine awaits: called on
    the event loop, as the AGNT5 SDK calls it (its context is the loop's, not a thread's)."""

    @functools.wraps(body)
    async def synchronous_body(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    return synchronous_body


def _direct_callable(spec: WorkflowSpec, target: Callable[..., Any]) -> Callable[..., Any]:
    """What ``@workflow`` returns: ``target``'s name, docstring and signature
    (``__wrapped__``), awaitable without an engine (:mod:`surestep.local`). The engine
    never calls it: it calls ``spec.fn``."""

    @functools.wraps(target)
    async def workflow_call(*args: Any, **kwargs: Any) -> Any:
        from .local import call_workflow  # local imports the context, which imports us

        return await call_workflow(spec, args, kwargs)

    return workflow_call


# What a workflow's context gives only as something to await: a synchronous body cannot
# await it, so the operation would never happen.
_AWAITED = frozenset({"step", "run", "task"})


def _check_synchronous_body(body: Callable[..., Any]) -> None:
    """``DefinitionError`` for a synchronous body that calls an operation it would have to
    await (a step, a sleep, an event, shared state): written in a plain ``def``, the call
    only makes an awaitable, and the operation never runs. The AGNT5 SDK lets that pass
    and the step silently never happens; here the decorator says so."""
    from .context import WorkflowContext
    from .state import SharedState

    awaited = _AWAITED | {
        name
        for name, member in vars(WorkflowContext).items()
        if inspect.iscoroutinefunction(member)
    }
    shared = {n for n, m in vars(SharedState).items() if inspect.iscoroutinefunction(m)}
    params = list(inspect.signature(body).parameters)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(body)))
    except (OSError, TypeError, SyntaxError):
        return  # no source to read: nothing to check
    ctx = params[0] if params else "ctx"
    for node in _outside_coroutines(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        chain = _attribute_chain(node.func)
        if not chain or chain[0] != ctx:
            continue
        method = chain[-1]
        scoped = len(chain) == 4 and chain[1] in ("session", "user") and chain[2] == "state"
        if (len(chain) == 2 and method in awaited) or (scoped and method in shared):
            where = (
                f"{inspect.getsourcefile(body)}:{body.__code__.co_firstlineno + node.lineno - 1}"
            )
            call = ".".join(chain)
            raise DefinitionError(
                f"workflow {body.__qualname__} is a plain def but calls {call}() ({where}), "
                f"which must be awaited: a synchronous body cannot wait for it, so it would "
                f"never happen. Write the workflow as `async def` and `await {call}(...)`"
            )


def _outside_coroutines(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` but those inside an ``async def`` or lambda nested in it
    (which may await what they like)."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        pending += [
            child
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, (ast.AsyncFunctionDef, ast.Lambda))
        ]


def _attribute_chain(node: ast.expr) -> list[str]:
    """``ctx.session.state.get`` as ["ctx", "session", "state", "get"]; [] for anything
    that is not a chain of names."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    names.append(node.id)
    return names[::-1]


def _check_ways_in(triggers: Any, webhook: Any, webhook_secret: Any) -> tuple[str, ...]:
    """Check ``triggers`` and the webhook options; the names of the events that start
    the workflow. ``webhook(...)`` triggers are refused (an option accepted and
    ignored would leave a workflow silently never started). The secret is never
    echoed."""
    events: list[str] = []
    if triggers is not None:
        from .types import EventTrigger, WebhookTrigger

        if isinstance(triggers, (str, bytes)) or not isinstance(triggers, Sequence):
            raise ConfigurationError(
                f"triggers must be a list of event(...) / webhook(...), not {triggers!r}"
            )
        for trigger in triggers:
            if isinstance(trigger, EventTrigger):
                events.append(check_name(trigger.name))
            elif not isinstance(trigger, WebhookTrigger):
                raise ConfigurationError(
                    f"each trigger must be made by surestep.types.event() or webhook(), "
                    f"not {trigger!r}"
                )
    if not isinstance(webhook, bool):
        raise ConfigurationError(f"webhook must be True or False, not {webhook!r}")
    if webhook_secret is not None:
        if not isinstance(webhook_secret, str) or not webhook_secret:
            raise ConfigurationError("webhook_secret must be a non-empty string")
        if not webhook:
            raise ConfigurationError("webhook_secret= goes with webhook=True")
    elif webhook:  # an unsigned webhook would let anyone who reaches it start runs
        raise ConfigurationError("webhook=True needs webhook_secret=...: deliveries are signed")
    if len(events) < len(triggers or ()):
        raise ConfigurationError(
            "webhook(...) triggers are not available: declare a webhook with "
            "@workflow(webhook=True, webhook_secret=...)"
        )
    return tuple(events)


def spec_of(obj: Any) -> FunctionSpec | WorkflowSpec | None:
    """The spec a decorator attached to ``obj``, if any."""
    spec = getattr(obj, "__surestep__", None)
    return spec if isinstance(spec, (FunctionSpec, WorkflowSpec)) else None


def served_versions() -> dict[str, tuple[str, ...]]:
    """The versions of each workflow registered in this process: the runs it may execute."""
    return {name: spec.versions for name, spec in _workflows.items()}


def find_workflow(target: Any) -> WorkflowSpec:
    """A workflow by decorated function or registered name; ``UnknownWorkflowError`` else."""
    if isinstance(target, str):
        spec = _workflows.get(target)
        if spec is None:
            known = ", ".join(sorted(_workflows)) or "none"
            raise UnknownWorkflowError(
                f"no workflow named {target!r} is registered in this process (registered: "
                f"{known}); import the module that defines it"
            )
        return spec
    found = getattr(target, "__surestep__", None)  # (spec_of, without its call)
    if not isinstance(found, WorkflowSpec):
        raise UnknownWorkflowError(f"{target!r} is not a @workflow")
    return found
