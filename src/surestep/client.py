"""Clients of the HTTP API (``surestep serve``): :class:`Client` and :class:`AsyncClient`.

Their methods are AGNT5's (``run``, ``submit``, ``get_status``, ``get_result``,
``wait_for_result``, ``stream``), so that client code written for AGNT5 ports
by changing the import. ``input_data`` is the workflow's keyword arguments.
They need httpx (``pip install 'surestep[http]'``).

Errors are surestep's: a failed run raises :class:`~surestep.WorkflowFailedError`,
a cancelled one :class:`~surestep.RunCancelledError`, an unknown run
:class:`~surestep.RunNotFoundError`, a refused token ``PermissionError``,
the server's store failing :class:`~surestep.StoreError`, waiting past a
timeout ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson

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


# One request: method, path, and httpx's options for it.
_Call = tuple[str, str, dict[str, Any]]


class _Calls:
    """What both clients send: each call as (method, path, httpx options); no I/O."""

    def __init__(self, gateway_url: str, timeout: float, api_key: str | None) -> None:
        self.base = gateway_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        token = api_key if api_key is not None else os.environ.get(TOKEN_ENV)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def submit(
        self,
        component: str,
        input_data: dict[str, Any] | None,
        component_type: str,
        session_id: str | None,
        user_id: str | None,
        headers: dict[str, str] | None,
        idempotency_key: str | None,
    ) -> _Call:
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
        return "POST", "/api/runs", {"content": orjson.dumps(body), "headers": sent}

    def status(self, run_id: str) -> _Call:
        return "GET", f"/api/runs/{run_id}", {"headers": self.headers}

    def outcome(self, run_id: str, wait: float) -> _Call:
        options = {
            "params": {"timeout": f"{wait:.3f}"},
            "headers": self.headers,
            "timeout": self.timeout + wait,
        }
        return "GET", f"/api/runs/{run_id}/result", options

    def action(self, run_id: str, what: str, body: Any) -> _Call:
        headers = {**self.headers, "Content-Type": "application/json"}
        return (
            "POST",
            f"/api/runs/{run_id}/{what}",
            {"content": orjson.dumps(body), "headers": headers},
        )

    def events(self, run_id: str) -> _Call:
        return "GET", f"/api/runs/{run_id}/stream", {"headers": self.headers, "timeout": None}


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
            raise cls(message)
        except TypeError:
            pass  # an error class with a richer constructor: by status below
    if response.status_code in (401, 403):
        raise PermissionError(message)
    if response.status_code == 404:
        raise errors.RunNotFoundError(message)
    if response.status_code >= 500:
        raise StoreError(message)
    raise SurestepError(message)


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


def _events(lines: Iterator[str] | list[str]) -> Iterator[dict[str, Any]]:
    """Server-Sent Events from their lines, as ``{"event", "id", "data"}``."""
    event: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in event:
                event["data"] = orjson.loads(event["data"])
                event.setdefault("event", "message")
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                event["data"] = event["data"] + "\n" + value if "data" in event else value
            elif name in ("event", "id"):
                event[name] = value


def _remaining(deadline: float | None) -> float:
    if deadline is None:
        return LONG_POLL
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the run did not finish in time")
    return min(left, LONG_POLL)


class Client:
    """A blocking client of ``surestep serve``.

    ``gateway_url``: where it serves. ``api_key``: its token (by default
    ``$SURESTEP_TOKEN``), sent as ``Authorization: Bearer``. ``timeout``: for
    each request, beyond the time a request asks the server to wait.
    """

    def __init__(
        self, gateway_url: str = DEFAULT_URL, timeout: float = 30.0, api_key: str | None = None
    ) -> None:
        self._calls = _Calls(gateway_url, timeout, api_key)
        self._http = httpx.Client(base_url=self._calls.base, timeout=timeout)

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
    ) -> Any:
        """Start a run of workflow ``component`` and wait for its result (at most
        ``timeout`` seconds; ``None``: as long as it takes)."""
        run_id = self.submit(
            component, input_data, component_type, session_id, user_id, headers, idempotency_key
        )
        return self.wait_for_result(run_id, timeout=timeout)

    def submit(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a run; its id. With ``idempotency_key``, the run that key started, if any."""
        call = self._calls.submit(
            component, input_data, component_type, session_id, user_id, headers, idempotency_key
        )
        return str(self._send(call)["run_id"])

    def get_status(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it (``status``, ``workflow``, times, ...)."""
        return self._send(self._calls.status(run_id))

    def get_result(self, run_id: str) -> Any:
        """The result of a finished run; :class:`~surestep.errors.RunNotFinishedError`
        while it runs."""
        return _value(self._send(self._calls.outcome(run_id, 0.0)))

    def wait_for_result(
        self, run_id: str, timeout: float | None = 300.0, poll_interval: float = 1.0
    ) -> Any:
        """Wait for the run's result, at most ``timeout`` seconds (``None``: no limit).

        Waits by long polls, each answered as soon as the run finishes;
        ``poll_interval`` is the pause between two long polls."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = self._send(self._calls.outcome(run_id, _remaining(deadline)))
            if outcome["finished"]:
                return _value(outcome)
            time.sleep(min(poll_interval, _remaining(deadline)))

    def stream(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Start a run and yield its events as they happen (see :meth:`events`)."""
        run_id = self.submit(
            component, input_data, component_type, session_id, user_id, None, idempotency_key
        )
        yield from self.events(run_id)

    def events(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's events until it finishes: ``{"event": "step" | "status" | "end",
        "id": ..., "data": {...}}``; a step's data is its journal entry, the end's the
        run's outcome."""
        method, path, options = self._calls.events(run_id)
        with self._http.stream(method, path, **options) as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
            yield from _events(response.iter_lines())

    def cancel(self, run_id: str) -> bool:
        """Cancel the run; ``False`` if it had finished."""
        return bool(self._send(self._calls.action(run_id, "cancel", {}))["cancelled"])

    def send_event(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send the run an event (its ``ctx.wait_for_event(name)``)."""
        self._send(self._calls.action(run_id, "events", {"name": name, "payload": payload}))

    def _send(self, call: _Call) -> dict[str, Any]:
        method, path, options = call
        response = self._http.request(method, path, **options)
        _raise_for(response)
        answer: dict[str, Any] = response.json()
        return answer

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """:class:`Client` for asyncio: the same methods, as coroutines (``stream`` and
    ``events`` as async iterators)."""

    def __init__(
        self, gateway_url: str = DEFAULT_URL, timeout: float = 30.0, api_key: str | None = None
    ) -> None:
        self._calls = _Calls(gateway_url, timeout, api_key)
        self._http = httpx.AsyncClient(base_url=self._calls.base, timeout=timeout)

    async def run(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        run_id = await self.submit(
            component, input_data, component_type, session_id, user_id, headers, idempotency_key
        )
        return await self.wait_for_result(run_id, timeout=timeout)

    async def submit(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        call = self._calls.submit(
            component, input_data, component_type, session_id, user_id, headers, idempotency_key
        )
        return str((await self._send(call))["run_id"])

    async def get_status(self, run_id: str) -> dict[str, Any]:
        return await self._send(self._calls.status(run_id))

    async def get_result(self, run_id: str) -> Any:
        return _value(await self._send(self._calls.outcome(run_id, 0.0)))

    async def wait_for_result(
        self, run_id: str, timeout: float | None = 300.0, poll_interval: float = 1.0
    ) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = await self._send(self._calls.outcome(run_id, _remaining(deadline)))
            if outcome["finished"]:
                return _value(outcome)
            await asyncio.sleep(min(poll_interval, _remaining(deadline)))

    async def stream(
        self,
        component: str,
        input_data: dict[str, Any] | None = None,
        component_type: str = "workflow",
        session_id: str | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        run_id = await self.submit(
            component, input_data, component_type, session_id, user_id, None, idempotency_key
        )
        async for event in self.events(run_id):
            yield event

    async def events(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        method, path, options = self._calls.events(run_id)
        async with self._http.stream(method, path, **options) as response:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            lines: list[str] = []
            async for line in response.aiter_lines():
                lines.append(line)
                if not line:  # an event is complete
                    for event in _events(lines):
                        yield event
                    lines = []

    async def cancel(self, run_id: str) -> bool:
        return bool((await self._send(self._calls.action(run_id, "cancel", {})))["cancelled"])

    async def send_event(self, run_id: str, name: str, payload: Any = None) -> None:
        await self._send(self._calls.action(run_id, "events", {"name": name, "payload": payload}))

    async def _send(self, call: _Call) -> dict[str, Any]:
        method, path, options = call
        response = await self._http.request(method, path, **options)
        _raise_for(response)
        answer: dict[str, Any] = response.json()
        return answer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
