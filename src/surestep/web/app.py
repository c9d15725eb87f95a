"""The HTTP surface: one ASGI application (Starlette) over an :class:`~surestep.Engine`.

``create_app(engine)`` carries the JSON API and, unless ``dashboard=False``,
the dashboard's page. Mount it in a Starlette or FastAPI application, or run
it with ``surestep serve`` / ``surestep ui`` (uvicorn).

API (JSON; errors are ``{"error": "...", "type": "..."}``; scope in brackets)::

    GET  /api/info                        version, store, whether actions are allowed [read]
    GET  /api/runs?status=&q=&workflow=&waiting_for=&limit=&before=
                                          runs, newest first; q matches run, session or user
                                          id; waiting_for: person, event or timer; ``next``
                                          is the ``before`` of the next page
    POST /api/runs[?wait=SECONDS]         {"workflow", "args", "kwargs", "session_id",
                                          "user_id"}: start a run (and wait for it) [act]
    GET  /api/runs/{id}                   the run [read]
    GET  /api/runs/{id}/result?timeout=S  its outcome, waiting up to S seconds (202 if
                                          still unfinished then) [read]
    GET  /api/runs/{id}/stream            its steps and status changes as Server-Sent
                                          Events, until it finishes [read]
    GET  /api/runs/{id}/journal?internal=1
                                          its steps (each with its attempts; the runtime's
                                          own records with internal=1), and its child runs
                                          [read]
    GET  /api/runs/{id}/logs              its log lines [read]
    POST /api/runs/{id}/cancel            cancel it [act]
    POST /api/runs/{id}/events            {"name", "payload"}: send it an event [act]
    POST /api/runs/{id}/answer            {"answer"}: answer the question it waits on
                                          (ctx.wait_for_user; null skips) [act]
    POST /api/events                      {"name", "payload", "id"}: emit an event: start
                                          the workflows subscribed to it [act]
    GET  /api/schedules                   the schedules, with their next tick [read]
    GET  /api/stats                       the store's size, its runs by status, when its
                                          oldest finished run finished, how many purged
                                          runs still have records to delete, and the
                                          default retention [read]
    GET  /api/retention                   the retention that applies: the default, each
                                          workflow registered in this process and each
                                          deployment (with its unfinished runs) [read]

A start with an ``Idempotency-Key`` header returns the run that key started,
if any, instead of starting another. ``POST /webhooks/<workflow>`` starts a
webhook workflow; deliveries authenticate by their signature alone
(:mod:`surestep.web.webhooks`), so that path can be exposed on its own.

Security (see :mod:`surestep.web.access`): on a loopback address requests must
name a loopback host (DNS rebinding); with tokens every API request carries
``Authorization: Bearer TOKEN`` (compared in constant time), of the read or
the act scope. Actions need ``Content-Type: application/json`` and, when the
browser sends one, a same-origin ``Origin``, so that another site's page
cannot drive them; they are refused (403) when actions are not allowed. Every
answer carries the headers of :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__, _core
from ..decorators import find_workflow
from ..engine import Engine
from ..errors import (
    BAD_INPUT,
    NOT_FOUND,
    STORE_FAILED,
    OverloadedError,
    RunCancelledError,
    SurestepError,
    UnknownWorkflowError,
    WorkflowFailedError,
)
from ..hitl import WAITING_FOR
from ..store.base import STATUSES, LiveEngine, RunInfo
from . import webhooks
from .access import ACT, READ, Access
from .views import (
    children_json,
    log_lines,
    matches,
    retention_json,
    run_json,
    step_json,
    steps_json,
)

log = logging.getLogger("surestep.web")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}
#: The largest request body, in bytes: 413 beyond.
MAX_BODY = 1024 * 1024
DEFAULT_LIMIT = 200
LIVE_ENGINES_TTL = 2.0  # seconds a read of the live engines serves the dashboard
MAX_LIMIT = 10_000
#: The longest a request waits for a run's outcome (``?timeout=``, ``?wait=``), in seconds.
MAX_WAIT = 300.0
#: How often a stream looks for new steps (the store wakes it at once on status changes).
STREAM_POLL = 0.25
#: A comment line this often keeps proxies from closing a quiet stream.
STREAM_KEEPALIVE = 15.0
WEBHOOKS = "/webhooks/"


def error_status(exc: SurestepError) -> int:
    """The HTTP status for an error, by the classes of the CLI's exit codes."""
    if isinstance(exc, NOT_FOUND):
        return 404
    if isinstance(exc, (*STORE_FAILED, OverloadedError)):
        return 503
    if isinstance(exc, BAD_INPUT):
        return 422
    return 400


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE),  # a line: curl prints it whole
        status,
        {"Cache-Control": "no-store", **(headers or {})},
        media_type="application/json",
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, kind: str | None = None
) -> Response:
    body: dict[str, Any] = {"error": message}
    if kind is not None:
        body["type"] = kind
    return json_response(body, status, headers)


class _Guard:
    """Pure ASGI middleware: the host check and the security headers, on every answer
    (the page, the API, streams and errors alike)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                headers.extend(
                    (name.lower().encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.lower().encode() not in present
                )
                if b"cache-control" not in present:  # the page's files: checked on every load
                    headers.append((b"cache-control", b"no-cache"))
            await send(message)

        refused = self._refusal(scope)
        if refused is not None:
            await refused(scope, receive, secured)
            return
        await self.app(scope, receive, secured)

    def _refusal(self, scope: Scope) -> Response | None:
        path, mounted_at = scope["path"], scope.get("root_path", "")
        if path.removeprefix(mounted_at).startswith(WEBHOOKS):
            return None  # authenticated by signature, whatever name it was sent to
        hosts = [value.decode("latin-1") for name, value in scope["headers"] if name == b"host"]
        if not hosts and scope.get("http_version") == "1.0":
            return None
        if not hosts:
            return error_response(400, "a Host header is required")
        for host in hosts:
            if not self.access.host_allowed(host):
                return error_response(403, f"this server answers for localhost only, not {host!r}")
        return None


class Api:
    """The endpoints, over one engine."""

    def __init__(self, engine: Engine, access: Access, allow_actions: bool) -> None:
        self.engine = engine
        self.access = access
        self.allow_actions = allow_actions
        self._live: tuple[float, list[LiveEngine]] = (-math.inf, [])

    async def live_engines(self) -> list[LiveEngine]:
        """The live engines, read at most once per :data:`LIVE_ENGINES_TTL` seconds: every
        run a listing shows says which versions they serve, from one read."""
        now = time.monotonic()
        if now - self._live[0] > LIVE_ENGINES_TTL:
            self._live = (now, await self.engine.live_engines())
        return self._live[1]

    # -- checks

    def authorize(self, request: Request, scope: str) -> None:
        granted = self.access.scope(request.headers.get("authorization"))
        if granted is None:
            raise HTTPException(401, "this server needs its token", {"WWW-Authenticate": "Bearer"})
        if scope == ACT:
            if granted != ACT:
                raise HTTPException(403, "this token may only read")
            if not self.allow_actions:
                raise HTTPException(
                    403, "this server is read-only: it starts, cancels and sends nothing"
                )
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise HTTPException(415, "actions take Content-Type: application/json")
            origin = request.headers.get("origin")
            host = request.headers.get("host", "")
            if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
                raise HTTPException(403, "cross-origin actions are refused")

    @staticmethod
    async def raw_body(request: Request) -> bytes:
        """The request's body, at most :data:`MAX_BODY` bytes (413 beyond, as it streams in)."""
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise HTTPException(413, f"request body over {MAX_BODY} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise HTTPException(413, f"request body over {MAX_BODY} bytes")
        return bytes(data)

    @classmethod
    async def body(cls, request: Request) -> Any:
        """The request's body as JSON (``None`` when empty); 400 when it is not JSON."""
        data = await cls.raw_body(request)
        if not data:
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"the request body is not JSON: {exc}") from None

    # -- reading

    async def info(self, request: Request) -> Response:
        self.authorize(request, READ)
        return json_response(
            {
                "version": __version__,
                "format": _core.FORMAT_VERSION,
                "store": self.engine.store.url,
                "actions": self.allow_actions,
                "statuses": list(STATUSES),
            }
        )

    async def runs(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.start(request)
        self.authorize(request, READ)
        query = request.query_params
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"status must be one of {', '.join(STATUSES)}")
        try:
            limit = max(min(int(query.get("limit") or DEFAULT_LIMIT), MAX_LIMIT), 1)
        except ValueError:
            raise HTTPException(400, "limit must be a whole number") from None
        q = query.get("q", "").strip()
        workflow = query.get("workflow") or None
        waiting_for = query.get("waiting_for") or None
        if waiting_for is not None and waiting_for not in WAITING_FOR:
            raise HTTPException(400, f"waiting_for must be one of {', '.join(WAITING_FOR)}")
        before = query.get("before") or None
        runs = await self.engine.runs(
            status=status,
            workflow=workflow,
            limit=None if q else limit + 1,
            waiting_for=waiting_for,
            before=before,
        )
        if q:
            runs = [run for run in runs if matches(run, q)]
        live = await self.live_engines()
        page = runs[:limit]
        more = len(runs) > limit
        return json_response(
            {
                "runs": [run_json(run, live) for run in page],
                "truncated": more,
                "next": page[-1].run_id if more else None,
            }
        )

    async def run(self, request: Request) -> Response:
        self.authorize(request, READ)
        run = await self.engine.get_run(request.path_params["run_id"])
        return json_response(run_json(run, await self.live_engines()))

    async def journal(self, request: Request) -> Response:
        self.authorize(request, READ)
        run = await self.engine.get_run(request.path_params["run_id"])
        internal = request.query_params.get("internal", "") in ("1", "true")
        steps = await steps_json(self.engine, run, internal)
        children = await children_json(self.engine, run, steps)
        return json_response({"steps": steps, "children": children})

    async def logs(self, request: Request) -> Response:
        self.authorize(request, READ)
        lines = await log_lines(self.engine, request.path_params["run_id"])
        return json_response({"lines": lines})

    async def result(self, request: Request) -> Response:
        self.authorize(request, READ)
        timeout = seconds(request.query_params.get("timeout"), "timeout")
        return await self.outcome(request.path_params["run_id"], timeout)

    async def outcome(self, run_id: str, timeout: float) -> Response:
        """The run's outcome once it finished (200), else after ``timeout`` its state (202)."""
        await self.engine.get_run(run_id)  # 404 for an unknown run, at once
        with contextlib.suppress(asyncio.TimeoutError, WorkflowFailedError, RunCancelledError):
            await asyncio.wait_for(self.engine.handle(run_id).result(), timeout)
        run = await self.engine.get_run(run_id)
        return json_response(outcome_json(run), 200 if run.finished else 202)

    async def stream(self, request: Request) -> Response:
        self.authorize(request, READ)
        run = await self.engine.get_run(request.path_params["run_id"])
        after = request.headers.get("last-event-id", "")
        return StreamingResponse(
            self.events(run, int(after) if after.isdigit() else -1),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def events(self, run: RunInfo, after: int) -> AsyncIterator[bytes]:
        """The run's events: ``step`` for each recorded step (its id its step number, so a
        client that reconnects with ``Last-Event-ID`` gets only later ones), ``status``
        when its status changes, and ``end`` with its outcome, last."""
        engine, run_id, status = self.engine, run.run_id, None
        quiet = 0.0
        while True:
            sent = False
            for entry in await engine.journal(run_id):
                if entry.seq > after:
                    after = entry.seq
                    yield sse("step", step_json(entry), str(entry.seq))
                    sent = True
            if run.status != status:
                status = run.status
                yield sse("status", run_json(run, await self.live_engines()))
                sent = True
            if run.finished:
                yield sse("end", outcome_json(run))
                return
            quiet = 0.0 if sent else quiet + STREAM_POLL
            if quiet >= STREAM_KEEPALIVE:
                quiet = 0.0
                yield b": keep-alive\n\n"
            await engine.store.wait_changed(STREAM_POLL)
            run = await engine.get_run(run_id)

    # -- acting

    async def start(self, request: Request) -> Response:
        self.authorize(request, ACT)
        body = await self.body(request)
        if not isinstance(body, dict) or not isinstance(body.get("workflow"), str):
            raise HTTPException(400, 'send {"workflow": "name", "args": [...], "kwargs": {...}}')
        args, kwargs = body.get("args", []), body.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise HTTPException(400, '"args" is a JSON array and "kwargs" a JSON object')
        options = {}
        for name in ("session_id", "user_id"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise HTTPException(400, f'"{name}" is a string')
            options[name] = value
        unknown = set(body) - {"workflow", "args", "kwargs", "session_id", "user_id"}
        if unknown:
            raise HTTPException(400, f"unknown fields: {', '.join(sorted(unknown))}")
        wait = request.query_params.get("wait")
        waited = seconds(wait, "wait")  # checked before anything starts
        reserved_names(kwargs)
        try:
            handle = await self.engine.start(
                body["workflow"],
                *args,
                idempotency_key=request.headers.get("idempotency-key"),
                **options,
                **kwargs,
            )
        except TypeError as exc:
            if isinstance(exc, SurestepError):
                raise
            raise HTTPException(422, str(exc)) from None
        if wait is not None:
            return await self.outcome(handle.run_id, waited)
        run = await self.engine.get_run(handle.run_id)
        return json_response({"run_id": run.run_id, "run": run_json(run)}, 202)

    async def cancel(self, request: Request) -> Response:
        self.authorize(request, ACT)
        await self.body(request)
        run_id = request.path_params["run_id"]
        await self.engine.get_run(run_id)
        cancelled = await self.engine.cancel(run_id)
        run = await self.engine.get_run(run_id)
        return json_response({"cancelled": bool(cancelled), "run": run_json(run)})

    async def send(self, request: Request) -> Response:
        self.authorize(request, ACT)
        body = await self.body(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise HTTPException(400, 'send {"name": "...", "payload": <any JSON>}')
        run_id = request.path_params["run_id"]
        await self.engine.get_run(run_id)
        await self.engine.send_event(run_id, body["name"], body.get("payload"))
        return json_response({"sent": True, "name": body["name"]})

    async def answer(self, request: Request) -> Response:
        self.authorize(request, ACT)
        body = await self.body(request)
        if not isinstance(body, dict) or "answer" not in body:
            raise HTTPException(
                400, 'send {"answer": "..."} (a list for a multiselect, null skips)'
            )
        run_id = request.path_params["run_id"]
        await self.engine.answer(run_id, body["answer"])  # AnswerError: 400, nothing sent
        return json_response({"answered": True, "run": run_json(await self.engine.get_run(run_id))})

    async def emit(self, request: Request) -> Response:
        self.authorize(request, ACT)
        body = await self.body(request)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise HTTPException(400, 'send {"name": "...", "payload": {...}, "id": "..."}')
        unknown = set(body) - {"name", "payload", "id"}
        if unknown:
            raise HTTPException(400, f"unknown fields: {', '.join(sorted(unknown))}")
        handles = await self.engine.emit(body["name"], body.get("payload"), id=body.get("id"))
        runs = [await self.engine.get_run(handle.run_id) for handle in handles]
        return json_response({"runs": [run_json(run) for run in runs]}, 202)

    async def schedules(self, request: Request) -> Response:
        self.authorize(request, READ)
        return json_response({"schedules": await self.engine.schedules()})

    async def stats(self, request: Request) -> Response:
        self.authorize(request, READ)
        return json_response(await self.engine.stats())

    async def retention(self, request: Request) -> Response:
        self.authorize(request, READ)
        deployments = await self.engine.deployments()
        return json_response(retention_json(self.engine.default_retention, deployments))

    async def no_api(self, request: Request) -> Response:
        self.authorize(request, READ)
        raise HTTPException(404, f"no API at {request.url.path}")

    async def webhook(self, request: Request) -> Response:
        """A delivery to a webhook workflow (:mod:`surestep.web.webhooks`); no token."""
        name = request.path_params["name"]
        try:
            secret = find_workflow(name).webhook_secret
        except UnknownWorkflowError:
            secret = None
        if secret is None:
            raise HTTPException(404, f"no webhook for workflow {name!r}")
        if not self.allow_actions:
            raise HTTPException(403, "this server is read-only: webhooks start nothing")
        body = await self.raw_body(request)
        refused = webhooks.problem(secret, request.headers, body, time.time())
        if refused is not None:
            log.warning("webhook %s: delivery refused: %s", name, refused)
            raise HTTPException(401, "the webhook's signature check failed")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise HTTPException(400, "a webhook's body is a JSON object: the workflow's arguments")
        delivery = request.headers.get(webhooks.DELIVERY)
        key = None if delivery is None else f"webhook:{name}:{delivery}"
        # A payload's session_id / user_id name the run's session and user (and reach the
        # workflow's parameters of those names); the key is the delivery's.
        reserved_names(payload, frozenset({"idempotency_key"}))
        try:
            handle = await self.engine.start(name, idempotency_key=key, **payload)
        except TypeError as exc:
            if isinstance(exc, SurestepError):
                raise
            raise HTTPException(422, str(exc)) from None
        return json_response({"run_id": handle.run_id}, 202)


#: Keyword arguments of ``Engine.start`` that a start's body gives on their own.
START_OPTIONS = frozenset({"session_id", "user_id", "idempotency_key"})


def reserved_names(kwargs: dict[str, Any], names: frozenset[str] = START_OPTIONS) -> None:
    """422 when workflow arguments are named as ``Engine.start``'s own options."""
    clash = sorted(names & set(kwargs))
    if clash:
        raise HTTPException(
            422, f"a workflow's keyword arguments cannot be named {', '.join(clash)}"
        )


def seconds(raw: str | None, name: str) -> float:
    """A wait in seconds from a query parameter: 0 when absent, at most :data:`MAX_WAIT`."""
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_WAIT:
        raise HTTPException(400, f"{name} is a number of seconds from 0 to {MAX_WAIT:g}")
    return value


def outcome_json(run: RunInfo) -> dict[str, Any]:
    """What a waiting client needs: the status, and the result or the error once finished."""
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status,
        "finished": run.finished,
        "result": run.result,
        "error": run.error,
    }


def sse(event: str, data: Any, ident: str | None = None) -> bytes:
    """One Server-Sent Event; the data is one line of JSON."""
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, dict(exc.headers or {}))


async def _surestep_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SurestepError)
    status = error_status(exc)
    if isinstance(exc, OverloadedError):  # the engine is at its bound: come back soon
        return error_response(status, str(exc), {"Retry-After": "1"}, kind="OverloadedError")
    message = f"store: {exc}" if status == 503 else str(exc)
    return error_response(status, message, kind=type(exc).__name__)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error; see the server's log")


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    read_token: str | None = None,
    allow_actions: bool = True,
    host: str = "127.0.0.1",
    dashboard: bool = True,
) -> Callable[[Scope, Receive, Send], Any]:
    """The ASGI application over ``engine``.

    ``token``: requests must carry it (or ``read_token``, which only reads).
    ``allow_actions=False``: starts, cancels and events are refused (403).
    ``host``: the address it is served on; on a loopback one, requests naming
    another host are refused (403). ``dashboard=False``: the API only.
    The engine is opened on first use; whoever made it closes it.
    """
    access = Access(token=token, read_token=read_token, host=host)
    api = Api(engine, access, allow_actions)
    run = "/api/runs/{run_id}"
    routes: list[BaseRoute] = [
        Route("/api/info", api.info, methods=["GET"]),
        Route("/api/runs", api.runs, methods=["GET", "POST"]),
        Route(run, api.run, methods=["GET"]),
        Route(run + "/result", api.result, methods=["GET"]),
        Route(run + "/stream", api.stream, methods=["GET"]),
        Route(run + "/journal", api.journal, methods=["GET"]),
        Route(run + "/logs", api.logs, methods=["GET"]),
        Route(run + "/cancel", api.cancel, methods=["POST"]),
        Route(run + "/events", api.send, methods=["POST"]),
        Route(run + "/answer", api.answer, methods=["POST"]),
        Route("/api/events", api.emit, methods=["POST"]),
        Route("/api/schedules", api.schedules, methods=["GET"]),
        Route("/api/stats", api.stats, methods=["GET"]),
        Route("/api/retention", api.retention, methods=["GET"]),
        Route("/api/{rest:path}", api.no_api),
        Route(WEBHOOKS + "{name}", api.webhook, methods=["POST"]),
    ]
    if dashboard:
        static = StaticFiles(packages=[("surestep.web", "static")])
        routes += [
            Route("/", _page(static), methods=["GET"]),
            Route("/index.html", _page(static), methods=["GET"]),
            Mount("/static", static),
        ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: _http_error,
            SurestepError: _surestep_error,
            Exception: _internal_error,
        },
    )
    return _Guard(app, access)


def _page(static: StaticFiles) -> Callable[[Request], Any]:
    """The dashboard's page: ``index.html``."""

    async def page(request: Request) -> Response:
        return await static.get_response("index.html", request.scope)

    return page
