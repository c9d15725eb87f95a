"""The dashboard: a JSON API over an :class:`~surestep.Engine` and a single-page UI.

API (every answer JSON; errors are ``{"error": "..."}``)::

    GET  /api/info                       version, store, whether actions are allowed
    GET  /api/runs?status=&q=&workflow=&limit=
                                         runs, newest first; q matches run, session or user id
    GET  /api/runs/{id}                  the run
    GET  /api/runs/{id}/journal          its steps, and its child runs
    GET  /api/runs/{id}/logs             its log lines (or its journal's events)
    POST /api/runs/{id}/cancel           cancel it
    POST /api/runs/{id}/events           {"name": ..., "payload": ...}: send it an event

Security: bound to 127.0.0.1 by default, where requests must name a loopback
host (a DNS-rebinding page cannot reach the API). With a token every API
request must carry ``Authorization: Bearer TOKEN`` (compared in constant
time). Actions (POST) need ``Content-Type: application/json`` and, when the
browser sends one, a same-origin ``Origin``, so another site's page cannot
drive them; they are refused (403) on a read-only dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from .. import __version__, _core
from ..engine import Engine
from ..errors import RunNotFoundError, StoreError, SurestepError
from ..store.base import STATUSES
from .http import (
    HttpError,
    HttpServer,
    Request,
    Response,
    error_response,
    is_loopback,
    json_response,
)
from .views import children_json, log_lines, matches, run_json, steps_json

log = logging.getLogger("surestep.web")

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
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
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
DEFAULT_LIMIT = 200
MAX_LIMIT = 10_000
_RUN_ROUTE = re.compile(r"^/api/runs/([^/]+)(?:/(journal|logs|cancel|events))?$")


def load_static() -> dict[str, tuple[bytes, str]]:
    """The UI's files, read once from the package: name -> (content, content type)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in importlib.resources.files(__package__).joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return files


class Dashboard:
    """Serves the dashboard for one store.

    ``allow_actions``: ``None`` allows cancel and send-event on a loopback
    address only; ``True`` or ``False`` decides it either way.
    """

    def __init__(
        self,
        store: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        allow_actions: bool | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.token = token.encode() if token else None
        self.loopback = is_loopback(host)
        # Actions (cancel, send an event) by default only where only this machine can reach.
        self.allow_actions = self.loopback if allow_actions is None else allow_actions
        self.engine = Engine(store)
        self.static = load_static()
        self.url = ""
        self._http = HttpServer(self.handle, SECURITY_HEADERS)

    # -- lifecycle

    async def start(self) -> str:
        """Open the store and listen; returns the dashboard's URL."""
        await self.engine.open()
        try:
            host, port = await self._http.start(self.host, self.port)
        except BaseException:
            await self.engine.close()
            raise
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        return self.url

    async def close(self) -> None:
        await self._http.close()
        await self.engine.close()

    async def serve_forever(self, on_ready: Callable[[str], object] | None = None) -> None:
        """Serve until SIGINT or SIGTERM (or cancellation)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        url = await self.start()
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if on_ready is not None:
                on_ready(url + (f"?token={self.token.decode()}" if self.token else ""))
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await self.close()

    # -- requests

    async def handle(self, request: Request) -> Response:
        self._check_host(request)
        path = request.path
        if not path.startswith("/api/"):
            return self._static(request)
        self._check_token(request)
        try:
            return await self._api(request)
        except RunNotFoundError as exc:
            return error_response(404, str(exc))
        except StoreError as exc:
            return error_response(503, f"store: {exc}")
        except SurestepError as exc:
            return error_response(400, str(exc))

    def _check_host(self, request: Request) -> None:
        """On loopback, refuse requests for other host names (DNS rebinding)."""
        if not self.loopback:
            return
        host = request.headers.get("host")
        if host is None:
            if request.version == "HTTP/1.0":
                return
            raise HttpError(400, "a Host header is required")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in LOOPBACK_NAMES and name != self.host:
            raise HttpError(403, f"this dashboard answers for localhost only, not {host!r}")

    def _check_token(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token)
        if not ok:
            raise HttpError(401, "this dashboard needs its token", {"WWW-Authenticate": "Bearer"})

    def _static(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, "use GET", {"Allow": "GET, HEAD"})
        path = request.path
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        if (path in ("/", "/index.html") or path.startswith("/static/")) and name in self.static:
            body, kind = self.static[name]
            return Response(200, body, kind, {"Cache-Control": "no-cache"})
        return Response(404, b"not found\n", "text/plain; charset=utf-8")

    async def _api(self, request: Request) -> Response:
        path = request.path
        if path == "/api/info":
            self._method(request, "GET")
            return self._json(
                {
                    "version": __version__,
                    "format": _core.FORMAT_VERSION,
                    "store": self.engine.store.url,
                    "actions": self.allow_actions,
                    "statuses": list(STATUSES),
                }
            )
        if path == "/api/runs":
            self._method(request, "GET")
            return self._json(await self._runs(request.query))
        match = _RUN_ROUTE.match(path)
        if match is None:
            raise HttpError(404, f"no API at {path}")
        run_id, what = match.group(1), match.group(2)
        if what is None:
            self._method(request, "GET")
            return self._json(run_json(await self.engine.get_run(run_id)))
        if what == "journal":
            self._method(request, "GET")
            run = await self.engine.get_run(run_id)
            steps = await steps_json(self.engine, run)
            children = await children_json(self.engine, run, steps)
            return self._json({"steps": steps, "children": children})
        if what == "logs":
            self._method(request, "GET")
            return self._json({"lines": await log_lines(self.engine, run_id)})
        self._method(request, "POST")
        self._check_action(request)
        if what == "cancel":
            return await self._act(self._cancel(run_id))
        return await self._act(self._send(run_id, request.json()))

    async def _runs(self, query: dict[str, str]) -> dict[str, Any]:
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise HttpError(400, f"status must be one of {', '.join(STATUSES)}")
        try:
            limit = min(int(query.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
        except ValueError:
            raise HttpError(400, "limit must be a whole number") from None
        q = query.get("q", "").strip()
        workflow = query.get("workflow") or None
        runs = await self.engine.runs(
            status=status, workflow=workflow, limit=None if q else limit + 1
        )
        if q:
            runs = [run for run in runs if matches(run, q)]
        return {"runs": [run_json(run) for run in runs[:limit]], "truncated": len(runs) > limit}

    async def _cancel(self, run_id: str) -> dict[str, Any]:
        await self.engine.get_run(run_id)
        cancelled = await self.engine.cancel(run_id)
        return {"cancelled": bool(cancelled), "run": run_json(await self.engine.get_run(run_id))}

    async def _send(self, run_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise HttpError(400, 'send {"name": "...", "payload": <any JSON>}')
        await self.engine.get_run(run_id)
        await self.engine.send_event(run_id, body["name"], body.get("payload"))
        return {"sent": True, "name": body["name"]}

    async def _act(self, action: Awaitable[dict[str, Any]]) -> Response:
        return self._json(await action)

    def _check_action(self, request: Request) -> None:
        if not self.allow_actions:
            raise HttpError(403, "this dashboard is read-only (start it with --allow-actions)")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HttpError(415, "actions take Content-Type: application/json")
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            raise HttpError(403, "cross-origin actions are refused")

    @staticmethod
    def _method(request: Request, allowed: str) -> None:
        if request.method != allowed and not (allowed == "GET" and request.method == "HEAD"):
            raise HttpError(405, f"use {allowed}", {"Allow": allowed})

    @staticmethod
    def _json(value: Any) -> Response:
        return json_response(value, headers={"Cache-Control": "no-store"})
