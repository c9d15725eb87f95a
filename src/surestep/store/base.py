"""The store contract: what the runtime needs from a backend.

A run's row (:class:`RunInfo`) and its journal (encoded records keyed by
sequence number) live in the store. A run is executed by whoever holds its
lease; claiming a run bumps its fencing token, and every write for the run
carries the token it was claimed with, so a worker that lost its lease
cannot write (:class:`~surestep.errors.LeaseLostError`).
"""

from __future__ import annotations

import abc
import os
import socket
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
FINISHED = frozenset((COMPLETED, FAILED, CANCELLED))


def new_run_id() -> str:
    """32 hex digits, time-ordered: 48 bits of milliseconds, then 80 random bits.

    New runs' journals land at the end of the key space, and listing by id
    lists by creation time.
    """
    ms = time.time_ns() // 1_000_000
    return f"{ms:012x}{uuid.uuid4().hex[:20]}"


def run_key(run_id: str) -> bytes:
    """The 16-byte key prefix of a run's journal."""
    return bytes.fromhex(run_id)


@dataclass
class RunInfo:
    """One run: what to execute, where it stands, and who holds it."""

    run_id: str
    workflow: str
    version: str
    args: list[Any]
    kwargs: dict[str, Any]
    status: str = PENDING
    session_id: str | None = None
    user_id: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    attempt: int = 0
    result: Any = None
    error: dict[str, Any] | None = None
    owner: str | None = None
    lease_until: float = 0.0
    fence: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**data)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Owner:
    """Who holds a lease: host, process and one engine in it."""

    host: str
    pid: int
    engine: str

    @classmethod
    def this_process(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.engine}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), rest)
        except ValueError:
            return None

    def is_dead(self) -> bool:
        """True only when this owner is on this host and its process is gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def claimable(run: RunInfo, now: float) -> bool:
    """An unfinished run nobody live holds: never claimed, lease expired, or owner dead."""
    if run.finished:
        return False
    if run.owner is None or run.lease_until <= now:
        return True
    owner = Owner.parse(run.owner)
    return owner is not None and owner.is_dead()


class Store(abc.ABC):
    """One backend. All methods are coroutines; none blocks the event loop on I/O."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # -- runs and leases

    @abc.abstractmethod
    async def create_run(self, run: RunInfo, owner: str | None, lease_s: float) -> int:
        """Insert ``run``; claim it for ``owner`` when given. Returns the fencing token."""

    @abc.abstractmethod
    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunInfo | None:
        """Take ``run_id`` if :func:`claimable`; bump its token and attempt. ``None`` if held."""

    @abc.abstractmethod
    async def claim_available(
        self, owner: str, lease_s: float, limit: int, workflows: Collection[str]
    ) -> list[RunInfo]:
        """Claim up to ``limit`` runs of ``workflows`` that are :func:`claimable`.

        New (pending) runs and runs whose engine died are taken alike: recovery
        and new work go through this one claim. Each claimed run comes back with
        its token bumped, ``attempt`` + 1, status ``running`` and ``owner`` set.
        Safe against concurrent claimers: a run is handed to one of them only.
        """

    @abc.abstractmethod
    async def renew(self, leases: Sequence[tuple[str, int]], owner: str, lease_s: float) -> list[str]:
        """Extend the leases ``(run_id, fence)`` held by ``owner``; return the runs lost."""

    @abc.abstractmethod
    async def release(self, run_id: str, fence: int) -> None:
        """Give a run back unfinished (graceful shutdown): its lease ends now."""

    @abc.abstractmethod
    async def finish(
        self, run_id: str, fence: int, status: str, result: Any, error: dict[str, Any] | None
    ) -> None:
        """Record the run's outcome, fenced."""

    @abc.abstractmethod
    async def cancel(self, run_id: str) -> bool:
        """Mark an unfinished run cancelled and bump its token, so the engine
        executing it can write nothing more; ``False`` if it had finished."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunInfo:
        """The run, or ``RunNotFoundError``."""

    @abc.abstractmethod
    async def list_runs(
        self, status: str | None = None, workflow: str | None = None, limit: int | None = None
    ) -> list[RunInfo]:
        """Runs, newest first."""

    @abc.abstractmethod
    async def wait_changed(self, timeout: float) -> None:
        """Return soon after a run is created, released or finished by any
        process using the store, or after ``timeout`` seconds. May return
        early; callers re-check what they wait for. Never busy-polls."""

    # -- journal

    @abc.abstractmethod
    async def append(self, run_id: str, fence: int, seq: int, record: bytes) -> None:
        """Durably store one encoded record; returns once committed. Fenced."""

    @abc.abstractmethod
    async def journal(self, run_id: str) -> list[bytes]:
        """The run's encoded records in sequence order."""
