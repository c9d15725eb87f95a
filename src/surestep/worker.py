"""Workers: processes that execute the runs other processes start.

``surestep worker MODULE`` imports the modules (registering their workflows)
and claims runs through the same path as recovery: new runs and runs whose
worker died are taken alike, at most ``concurrency`` at a time. It sleeps
until the store says something changed (a run was created, released or
finished), or until it is time to look for leases that expired on their own.

SIGTERM or SIGINT drains: the worker stops claiming, lets the runs it holds
finish for up to ``drain_seconds``, then gives the rest back (their leases
released, so another worker resumes them at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .engine import Engine
from .errors import Suspended, WorkflowFailedError

log = logging.getLogger("surestep.worker")


class ModuleLoadError(ImportError):
    """``target`` names no loadable file (the module's own code did not run)."""


def import_module(target: str) -> ModuleType:
    """A module by dotted name (from the current directory or the path), or a ``.py`` file."""
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise ModuleLoadError(f"no such file: {target}")
        path = path.resolve()
        directory = str(path.parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)  # the file's own sibling imports work
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ModuleLoadError(f"cannot import {target}: not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(path.stem, None)  # no half-imported module left behind
            raise
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(target)


class Worker:
    """Claims and executes runs over one engine until :meth:`stop`."""

    def __init__(self, engine: Engine, concurrency: int = 100, drain_seconds: float = 10.0) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, not {concurrency}")
        self.engine = engine
        self.concurrency = concurrency
        self.drain_seconds = drain_seconds
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop claiming and drain (safe from a signal handler)."""
        self._stopping.set()

    async def run(self) -> None:
        engine = self.engine
        await engine.open()
        # Leases that expire on their own (a worker on another host died) send
        # no wake-up: look again at least this often.
        rescan = max(engine.lease_seconds / 2, 0.05)
        while not self._stopping.is_set():
            ended = engine.next_run_end()  # taken before the count: a later end sets it
            free = self.concurrency - engine.executing
            claimed = await engine.claim(free) if free > 0 else []
            for handle in claimed:
                task = engine.task(handle.run_id)
                if task is not None:
                    log.info("run %s started", handle.run_id)
                    task.add_done_callback(functools.partial(self._on_done, handle.run_id))
            if free > 0 and len(claimed) == free:
                continue  # there may be more waiting
            await self._idle(rescan, ended, full=free == 0)
        await self._drain()

    def _on_done(self, run_id: str, task: asyncio.Task[object]) -> None:
        """One line per claimed run that ends here, saying how."""
        exc = None if task.cancelled() else task.exception()
        if task.cancelled():
            log.info("run %s given back unfinished", run_id)
        elif exc is None:
            log.info("run %s completed", run_id)
        elif isinstance(exc, WorkflowFailedError):
            log.info("run %s failed: %s: %s", run_id, exc.error_type, exc.message)
        elif isinstance(exc, Suspended):
            what = f"event {exc.event}" if exc.event is not None else "sleep"
            until = (
                ""
                if exc.wake_at is None
                else " until " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(exc.wake_at))
            )
            log.info("run %s waiting: %s%s", run_id, what, until)
        else:
            log.info("run %s stopped here (%s); it stays recoverable", run_id, type(exc).__name__)

    async def _idle(self, rescan: float, ended: asyncio.Event, full: bool) -> None:
        """Wait for a stop, a run that stops executing here (one this worker claimed, or
        a child one of them started), or (with a slot free) a change in the store."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._stopping.wait()),
            asyncio.ensure_future(ended.wait()),
        ]
        if not full:
            waiters.append(asyncio.ensure_future(self.engine.store.wait_changed(rescan)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def _drain(self) -> None:
        tasks = self.engine.tasks()
        if tasks:
            log.info("draining %d run(s) for up to %.1fs", len(tasks), self.drain_seconds)
            await asyncio.wait(tasks, timeout=self.drain_seconds)
        await self.engine.close()  # what is left is cancelled and its leases released


async def serve(
    store: str,
    modules: list[str],
    concurrency: int = 100,
    *,
    lease_seconds: float = 15.0,
    drain_seconds: float = 10.0,
    durability: str = "fsync",
    on_ready: Callable[[], object] | None = None,
) -> None:
    """Import ``modules`` and execute runs from ``store`` until SIGTERM/SIGINT.

    ``on_ready`` is called once the signal handlers are installed.
    """
    for module in modules:
        import_module(module)
    engine = Engine(store, lease_seconds=lease_seconds, durability=durability)
    worker = Worker(engine, concurrency=concurrency, drain_seconds=drain_seconds)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        log.info("worker %s serving %s from %s", engine.owner, ", ".join(modules), engine.store.url)
        if on_ready is not None:
            on_ready()
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
