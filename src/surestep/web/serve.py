"""Serving the app under uvicorn, for ``surestep serve`` and ``surestep ui``."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Generator

import uvicorn
from starlette.types import ASGIApp

from ..engine import Engine
from .app import create_app

#: Idle keep-alive connections are closed after this many seconds.
KEEP_ALIVE = 30


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by SIGINT or SIGTERM; once stopped gracefully the
    command exits normally instead of being killed by the signal again.
    ``on_started()`` once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], object]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def server_config(app: ASGIApp) -> uvicorn.Config:
    """uvicorn's settings for the app. HTTP is parsed by h11 whatever else is installed:
    it refuses a request head over 16 KiB with a 400, where uvicorn's httptools protocol
    buffers a head of any size (a third less CPU a request, but no bound on memory)."""
    return uvicorn.Config(
        app,
        http="h11",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=5,
    )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (``port=0``: a free one); ``OSError`` if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def serve(
    engine: Engine,
    *,
    host: str,
    port: int,
    token: str | None = None,
    read_token: str | None = None,
    allow_actions: bool = True,
    dashboard: bool = True,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve :func:`~surestep.web.app.create_app` over ``engine`` until SIGINT or SIGTERM;
    ``on_ready(url)`` once it accepts connections. An executing engine first resumes
    the unfinished runs nobody holds (of the workflows imported here). Closes the engine."""
    sock = listen(host, port)
    try:
        await engine.open()
        if engine.execute:  # what this server executed when it last stopped or died
            await engine.recover()
        app = create_app(
            engine,
            token=token,
            read_token=read_token,
            allow_actions=allow_actions,
            host=host,
            dashboard=dashboard,
        )
        url = url_of(sock)
        config = server_config(app)
        server = _Server(config, lambda: on_ready(url) if on_ready is not None else None)
        await server.serve(sockets=[sock])
    finally:
        sock.close()
        await engine.close()
