"""``surestep serve`` in a process of its own, on a free loopback port; or an ASGI app
served by uvicorn on the test's own loop (``served_here``)."""

from __future__ import annotations

import asyncio
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

from surestep.web.serve import listen, url_of

FLOWS = Path(__file__).with_name("http_flows.py")


def surestep_command() -> list[str]:
    """The ``surestep`` entry point beside this Python (the venv's)."""
    return [str(Path(sys.executable).with_name("surestep"))]


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is still there after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


class Served:
    """``surestep --store STORE serve http_flows.py --port 0 ARGS`` (or ``argv`` + ARGS),
    until :meth:`close` (SIGTERM)."""

    def __init__(self, store: str, *args: str, argv: list[str] | None = None) -> None:
        argv = argv or [*surestep_command(), "--store", store, "serve", str(FLOWS), "--port", "0"]
        self.store = store
        self.proc = subprocess.Popen(
            [*argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.errors = ""
        self.line = self._first_line()
        self.url = self.line.split(": ", 1)[1].split()[0]
        self.base = self.url.split("?", 1)[0].rstrip("/")

    def _first_line(self, timeout: float = 60.0) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if selector.select(timeout=timeout):
                line = self.proc.stdout.readline()
                if line:
                    return line
        self.close()
        assert self.proc.stderr is not None
        raise AssertionError(f"surestep printed no address: {self.proc.stderr.read()}")

    def close(self) -> int:
        """Stop it (SIGTERM); its exit code. What it logged is then in ``errors``."""
        stop(self.proc)
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.errors = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


class Worker:
    """``surestep worker flows.py`` for the same store, until :meth:`close`."""

    def __init__(self, store: str) -> None:
        self.proc = subprocess.Popen(
            [*surestep_command(), "--store", store, "worker", str(FLOWS)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def close(self) -> int:
        stop(self.proc)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return self.proc.returncode


def wait_until(check: object, timeout: float = 30.0) -> None:
    """Poll ``check()`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@asynccontextmanager
async def served_here(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on this loop, on a free loopback port: its base URL."""

    class Server(uvicorn.Server):
        ready = asyncio.Event()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.ready.set()

    sock = listen("127.0.0.1", 0)
    server = Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await server.ready.wait()
        yield url_of(sock).rstrip("/")
    finally:
        server.should_exit = True
        await serving
        sock.close()
