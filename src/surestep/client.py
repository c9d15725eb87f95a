"""Clients of the HTTP API (``surestep serve``): :class:`Client` and :class:`AsyncClient`.

Their methods are AGNT5's (``run``, ``submit``, ``get_status``, ``get_result``,
``wait_for_result``, ``stream``), so that client code written for AGNT5 ports
by changing the import. ``input_data`` is the workflow's keyword arguments.
They need httpx (``pip install 'surestep[http]'``); :class:`AsyncClient` sends over
aiohttp's connection pool (httpx-aiohttp), which many tasks share at the server's pace.

Errors are surestep's: a failed run raises :class:`~surestep.WorkflowFailedError`,
a cancelled one :class:`~surestep.RunCancelledError`, an unknown run
:class:`~surestep.RunNotFoundError`, a refused token ``PermissionError``,
the server's store failing :class:`~surestep.StoreError`, waiting past a
timeout ``TimeoutError``.

Both clients run one implementation: each operation of :class:`_Api` is a generator
that yields what it needs done (a :class:`_Request` to send, a :class:`_Pause`) and
is sent back the answer, without doing any I/O itself. :class:`Client` performs those
steps with httpx's blocking client, :class:`AsyncClient` with its asyncio one.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from . import errors
from .errors import (
    ConfigurationError,
    RunCancelledError,
    RunNotFinishedError,
    StoreError,
    SurestepError,
    WorkflowFailedError,
)

TOKEN_ENV = "SURESTEP_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"
#: The longest one long-poll request waits on the server, in seconds.
LONG_POLL = 30.0

P = ParamSpec("P")
T = TypeVar("T")
#: A Server-Sent Event of a run: ``{"event": ..., "id": ..., "data": {...}}``.
Event = dict[str, Any]


@dataclass(frozen=True)
class _Request:
    """An HTTP request an operation needs sent: answered with its decoded JSON body."""

    method: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Pause:
    """A pause an operation needs between two requests: answered with ``None``."""

    seconds: float


# An operation: yields its steps, is sent each one's answer, returns its value.
_Op = Generator["_Request | _Pause", Any, T]


class _Api:
    """The HTTP API's operations, as the clients' methods document them; no I/O."""

    def __init__(self, gateway_url: str, timeout: float, api_key: str | None) -> None:
        self.base = gateway_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        token = api_key if api_key is not None else os.environ.get(TOKEN_ENV)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def run(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> _Op[Any]:
        """Start a run of workflow ``component`` and wait for its result (at most
        ``timeout`` seconds; ``None``: as long as it takes)."""
        run_id = yield from self.submit(
            component, input_data, component_type, session_id, user_id, headers, idempotency_key
        )
        return (yield from self.wait_for_result(run_id, timeout=timeout))

    def submit(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> _Op[str]:
        """Start a run; its id. With ``idempotency_key``, the run that key started, if any."""
        if component_type != "workflow":
            raise ConfigurationError(
                f"surestep runs workflows only, not a {component_type!r} (component_type)"
            )
        if input_data is not None and not isinstance(input_data, dict):
            raise ConfigurationError("input_data is a dict of the workflow's keyword arguments")
        body: dict[str, Any] = {"workflow": component, "kwargs": input_data or {}}
        if session_id is not None:
            body["session_id"] = session_id
        if user_id is not None:
            body["user_id"] = user_id
        sent = {**self.headers, "Content-Type": "application/json", **(headers or {})}
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        options = {"content": orjson.dumps(body), "headers": sent}
        answer = yield _Request("POST", "/api/runs", options)
        return str(answer["run_id"])

    def get_status(self, run_id: str) -> _Op[dict[str, Any]]:
        """The run as the API shows it (``status``, ``workflow``, times, ...)."""
        answer: dict[str, Any] = yield _Request("GET", f"/api/runs/{run_id}", self._get())
        return answer

    def get_result(self, run_id: str) -> _Op[Any]:
        """The result of a finished run; :class:`~surestep.errors.RunNotFinishedError`
        while it runs."""
        return _value((yield self._outcome(run_id, 0.0)))

    def wait_for_result(
        self, run_id: str, timeout: float | None = 300.0, poll_interval: float = 1.0
    ) -> _Op[Any]:
        """Wait for the run's result, at most ``timeout`` seconds (``None``: no limit).

        Waits by long polls, each answered as soon as the run finishes;
        ``poll_interval`` is the pause between two long polls."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = yield self._outcome(run_id, _remaining(deadline))
            if outcome["finished"]:
                return _value(outcome)
            yield _Pause(min(poll_interval, _remaining(deadline)))

    def stream(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> _Op[_Request]:
        """Start a run and yield its events as they happen (see :meth:`events`)."""
        run_id = yield from self.submit(
            component, input_data, component_type, session_id, user_id, None, idempotency_key
        )
        return (yield from self.events(run_id))

    def events(self, run_id: str) -> _Op[_Request]:
        """The run's events until it finishes: ``{"event": "step" | "status" | "end",
        "id": ..., "data": {...}}``; a step's data is its journal entry, the end's the
        run's outcome."""
        yield from ()  # nothing to ask before the stream
        return _Request("GET", f"/api/runs/{run_id}/stream", self._get(timeout=None))

    def cancel(self, run_id: str) -> _Op[bool]:
        """Cancel the run; ``False`` if it had finished."""
        return bool((yield self._action(run_id, "cancel", {}))["cancelled"])

    def send_event(self, run_id: str, name: str, payload: Any = None) -> _Op[None]:
        """Send the run an event (its ``ctx.wait_for_event(name)``)."""
        yield self._action(run_id, "events", {"name": name, "payload": payload})

    def _get(self, **options: Any) -> dict[str, Any]:
        return {"headers": self.headers, **options}

    def _outcome(self, run_id: str, wait: float) -> _Request:
        options = self._get(params={"timeout": f"{wait:.3f}"}, timeout=self.timeout + wait)
        return _Request("GET", f"/api/runs/{run_id}/result", options)

    def _action(self, run_id: str, what: str, body: Any) -> _Request:
        headers = {**self.headers, "Content-Type": "application/json"}
        options = {"content": orjson.dumps(body), "headers": headers}
        return _Request("POST", f"/api/runs/{run_id}/{what}", options)


def _raise_for(response: httpx.Response) -> None:
    """A surestep error for an error answer: the class the server named, else by status."""
    if response.status_code < 400:
        return
    try:
        data = response.json()
        message, kind = str(data.get("error", "")), data.get("type")
    except ValueError:
        message, kind = response.text[:200], None
    message = message or f"HTTP {response.status_code}"
    cls = getattr(errors, kind, None) if isinstance(kind, str) else None
    if isinstance(cls, type) and issubclass(cls, SurestepError):
        try:
            error = cls(message)
        except TypeError:
            pass  # an error class with a richer constructor: by status below
        else:
            raise error
    if response.status_code in (401, 403):
        raise PermissionError(message)
    if response.status_code == 404:
        raise errors.RunNotFoundError(message)
    if response.status_code >= 500:
        raise StoreError(message)
    raise SurestepError(message)


def _answer(response: httpx.Response) -> Any:
    _raise_for(response)
    return response.json()


def _value(outcome: dict[str, Any]) -> Any:
    """A finished run's result; its error raised as surestep raises it in-process."""
    status, run_id = outcome["status"], outcome["run_id"]
    if status == "completed":
        return outcome["result"]
    if status == "failed":
        error = outcome.get("error") or {}
        raise WorkflowFailedError(
            run_id, error.get("type", "?"), error.get("message", ""), error.get("traceback", "")
        )
    if status == "cancelled":
        raise RunCancelledError(f"run {run_id} was cancelled")
    raise RunNotFinishedError(f"run {run_id} has not finished ({status})")


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return LONG_POLL
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the run did not finish in time")
    return min(left, LONG_POLL)


class _Events:
    """Server-Sent Events read line by line, as ``{"event", "id", "data"}``."""

    def __init__(self) -> None:
        self._event: dict[str, Any] = {}

    def read(self, lines: Iterable[str]) -> Iterator[Event]:
        """The events the ``lines`` complete."""
        for line in lines:
            if line:
                self._field(line)
                continue
            event, self._event = self._event, {}
            if "data" in event:
                event["data"] = orjson.loads(event["data"])
                event.setdefault("event", "message")
                yield event

    def _field(self, line: str) -> None:
        if line.startswith(":"):
            return  # a comment
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data = self._event.get("data")
            self._event["data"] = value if data is None else data + "\n" + value
        elif name in ("event", "id"):
            self._event[name] = value


class _Steps(Generic[T]):
    """An operation's steps; each answer goes in ``answer``, its value ends in ``value``."""

    def __init__(self, op: _Op[T]) -> None:
        self._op = op
        self.answer: Any = None
        self.value: T

    def __iter__(self) -> Iterator[_Request | _Pause]:
        try:
            while True:
                yield self._op.send(self.answer)
        except StopIteration as done:
            self.value = done.value


class _Method(Generic[P, T]):
    """An operation of :class:`_Api` as a method of both clients: a :class:`Client`
    returns its value, an :class:`AsyncClient` a coroutine of it."""

    _perform = "_complete"

    def __init__(self, op: Callable[Concatenate[_Api, P], _Op[T]]) -> None:
        self._op = op
        self.__doc__ = op.__doc__
        # Its parameters as the operation's, without the generator's type.
        self.__signature__ = inspect.signature(op).replace(
            return_annotation=inspect.Signature.empty
        )
        parameters = list(self.__signature__.parameters.values())
        self._bound_signature = self.__signature__.replace(parameters=parameters[1:])

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    def _bind(self, client: Client | AsyncClient) -> Callable[..., Any]:
        api = client._api  # noqa: SLF001 - the clients' own methods
        operation = getattr(api, self._op.__name__)
        perform = getattr(client, self._perform)

        def method(*args: Any, **kwargs: Any) -> Any:
            return perform(operation(*args, **kwargs))

        method.__name__ = self.__name__
        method.__qualname__ = f"{type(client).__name__}.{self.__name__}"
        method.__doc__ = self.__doc__
        method.__signature__ = self._bound_signature  # type: ignore[attr-defined]
        return method

    def __call__(self, client: Client | AsyncClient, /, *args: Any, **kwargs: Any) -> Any:
        """Called on the class, as ``Client.run(client, ...)``."""
        return self._bind(client)(*args, **kwargs)


class _Call(_Method[P, T]):
    @overload
    def __get__(self, client: None, owner: type) -> _Call[P, T]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Client | AsyncClient | None, owner: type) -> Any:
        return self if client is None else self._bind(client)


class _Stream(_Method[P, _Request]):
    _perform = "_stream"

    @overload
    def __get__(self, client: None, owner: type) -> _Stream[P]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, Iterator[Event]]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, AsyncIterator[Event]]: ...
    def __get__(self, client: Client | AsyncClient | None, owner: type) -> Any:
        return self if client is None else self._bind(client)


class _Methods:
    """The methods both clients have (AGNT5's, and the run's events and actions)."""

    run = _Call(_Api.run)
    submit = _Call(_Api.submit)
    get_status = _Call(_Api.get_status)
    get_result = _Call(_Api.get_result)
    wait_for_result = _Call(_Api.wait_for_result)
    stream = _Stream(_Api.stream)
    events = _Stream(_Api.events)
    cancel = _Call(_Api.cancel)
    send_event = _Call(_Api.send_event)

    def __init__(self, gateway_url: str, timeout: float, api_key: str | None) -> None:
        self._api = _Api(gateway_url, timeout, api_key)


class Client(_Methods):
    """A blocking client of ``surestep serve``.

    ``gateway_url``: where it serves. ``api_key``: its token (by default
    ``$SURESTEP_TOKEN``), sent as ``Authorization: Bearer``. ``timeout``: for
    each request, beyond the time a request asks the server to wait.
    """

    def __init__(
        self, gateway_url: str = DEFAULT_URL, timeout: float = 30.0, api_key: str | None = None
    ) -> None:
        super().__init__(gateway_url, timeout, api_key)
        self._http = httpx.Client(base_url=self._api.base, timeout=timeout)

    def _complete(self, op: _Op[T]) -> T:
        steps = _Steps(op)
        for step in steps:
            steps.answer = self._step(step)
        return steps.value

    def _step(self, step: _Request | _Pause) -> Any:
        if isinstance(step, _Pause):
            time.sleep(step.seconds)
            return None
        return _answer(self._http.request(step.method, step.path, **step.options))

    def _stream(self, op: _Op[_Request]) -> Iterator[Event]:
        call = self._complete(op)
        with self._http.stream(call.method, call.path, **call.options) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            yield from _Events().read(response.iter_lines())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _environment_proxy(base: str) -> httpx.Proxy | None:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for the gateway, unless ``NO_PROXY``
    exempts its host: what httpx's own pool would use."""
    url = httpx.URL(base)
    proxy = urllib.request.getproxies().get(url.scheme)
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return httpx.Proxy(proxy)


class AsyncClient(_Methods):
    """:class:`Client` for asyncio: the same methods, as coroutines (``stream`` and
    ``events`` as async iterators)."""

    def __init__(
        self, gateway_url: str = DEFAULT_URL, timeout: float = 30.0, api_key: str | None = None
    ) -> None:
        super().__init__(gateway_url, timeout, api_key)
        # Over aiohttp's connection pool: httpcore's, shared by many tasks, spends a pass
        # over every connection on each request (encode/httpx#3215) and held one process
        # near 100 submits a second. The environment's proxy is chosen here, once: an
        # aiohttp session trusting the environment would also send ~/.netrc's logins.
        transport = AiohttpTransport(proxy=_environment_proxy(self._api.base))
        self._http = httpx.AsyncClient(
            base_url=self._api.base, timeout=timeout, transport=transport
        )

    async def _complete(self, op: _Op[T]) -> T:
        steps = _Steps(op)
        for step in steps:
            steps.answer = await self._step(step)
        return steps.value

    async def _step(self, step: _Request | _Pause) -> Any:
        if isinstance(step, _Pause):
            await asyncio.sleep(step.seconds)
            return None
        return _answer(await self._http.request(step.method, step.path, **step.options))

    async def _stream(self, op: _Op[_Request]) -> AsyncIterator[Event]:
        call = await self._complete(op)
        async with self._http.stream(call.method, call.path, **call.options) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            events = _Events()
            async for line in response.aiter_lines():
                for event in events.read((line,)):
                    yield event

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
