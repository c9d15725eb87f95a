"""The store contract: what the runtime needs from a backend.

A run's row (:class:`RunInfo`) and its journal (encoded records, each with its
sequence number) live in the store. A run is executed by whoever holds its
lease; claiming a run bumps its fencing token, and every write for the run
carries the token it was claimed with, so a worker that lost its lease
cannot write (:class:`~surestep.errors.LeaseLostError`).
"""

from __future__ import annotations

import abc
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeAlias

from .. import _core
from ..errors import ConfigurationError, RunNotFoundError

if TYPE_CHECKING:
    import asyncio

PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
WAITING = "waiting"  # suspended: until ``wake_at``, an event, or a child's end
# The prefix of the event that carries the answer a run waiting for a person waits for.
ANSWER_EVENT = "@answer:"
STATUSES = (PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED)
FINISHED = frozenset((COMPLETED, FAILED, CANCELLED))


@dataclass(frozen=True)
class Transition:
    """One change of a run's status: the store operations that make it, the status
    before (``None``: no run yet) and after, and when it happens."""

    operations: tuple[str, ...]
    source: str | None
    target: str
    condition: str


# Every change of a run's status a store makes, specified once: each backend cites the
# entry it implements (PostgreSQL in the statement that does it, ``store/pg_sql.py``;
# LMDB above the method whose transaction does it),
# and the contract suite checks that every change the stores make is listed here.
# Operations that keep the status (renew, send_event, set_progress, retry_done) are not
# transitions: send_event makes a run waiting for that event due (``wake_at`` = now).
_CREATES = ("create_run", "create_child", "fire_schedule", "emit_event")
_CLAIMS = ("claim", "claim_available")
TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        _CREATES,
        None,
        PENDING,
        "created unclaimed: no owner given, or the run follows a deployment of another "
        "version (left for a worker serving that version); fence 0, attempt 0",
    ),
    Transition(
        ("create_run", "create_child"),
        None,
        RUNNING,
        "created claimed for its owner: fence 1, attempt 1, the lease from now",
    ),
    Transition(
        _CLAIMS,
        PENDING,
        RUNNING,
        "the lease is free (claimable: no owner, the lease ran out, or the owner is a dead "
        "process of this host); fence + 1, attempt + 1, the owner and a new lease",
    ),
    Transition(
        _CLAIMS,
        RUNNING,
        RUNNING,
        "recovery: the holder's lease ran out or its process died (claimable); as above",
    ),
    Transition(
        _CLAIMS,
        WAITING,
        RUNNING,
        "due (wake_at <= now: its timer ran out, or the event it waits for was sent) and "
        "the lease free; as above, wake_at and waiting_for cleared",
    ),
    Transition(
        ("suspend",),
        RUNNING,
        WAITING,
        "fenced (the caller's token is the run's); the lease given back; wake_at the "
        "timer, or now when the event waited for was sent already",
    ),
    Transition(
        ("record_attempt",),
        RUNNING,
        WAITING,
        "fenced; a failed attempt retried after a backoff (wake_at given), as suspend",
    ),
    Transition(
        ("release",),
        RUNNING,
        PENDING,
        "fenced; the lease given back (an engine closing). A run not running under that "
        "fence stays as it is: a waiting one keeps its timer and what it waits for (suspend "
        "gave its lease back: released, it would lose its timer and be claimed at once), a "
        "pending or finished one changes nothing",
    ),
    *(
        Transition(
            ("finish",),
            RUNNING,
            target,
            f"fenced and running (the workflow {how}); else LeaseLostError: a waiting or "
            "pending run was given back under that fence, a cancelled one fenced out. "
            "Finished already with this outcome under that fence: nothing changes (a "
            "write sent again)",
        )
        for target, how in ((COMPLETED, "returned"), (FAILED, "raised"))
    ),
    *(
        Transition(
            ("cancel",),
            source,
            CANCELLED,
            "unfinished; fence + 1, so the holder's next write is refused; the lease cleared",
        )
        for source in (PENDING, RUNNING, WAITING)
    ),
)


def transition(operation: str, source: str | None, target: str) -> Transition | None:
    """The entry of :data:`TRANSITIONS` that lets ``operation`` take a run from
    ``source`` to ``target``, if any."""
    for entry in TRANSITIONS:
        if operation in entry.operations and (entry.source, entry.target) == (source, target):
            return entry
    return None


# A finished run's retention as the store keeps it: milliseconds, or one of these.
KEEP_FOREVER = -1
KEEP_DEFAULT = -2  # the store's default, decided when a purge runs


def retention_due(
    keep: int, finished_ms: int, now_ms: int, default_ms: int, cutoff_ms: int | None
) -> bool:
    """Whether a run finished at ``finished_ms`` (epoch milliseconds) with policy ``keep``
    may go: its age has reached its retention (``default_ms`` for KEEP_DEFAULT), or,
    when ``cutoff_ms`` is given, it finished at or before that, whatever its policy."""
    if cutoff_ms is not None:
        return finished_ms <= cutoff_ms
    if keep == KEEP_DEFAULT:
        keep = default_ms
    return keep != KEEP_FOREVER and finished_ms + keep <= now_ms


class _RunIds:
    """Run ids: 32 hex digits, 48 bits of milliseconds then 80 random bits, strictly
    increasing within a process (an id drawn in the millisecond of the last one, or
    below it, is the last one plus one, as ULID's monotonic ids).

    The random bits come from a generator seeded from ``os.urandom`` once per process
    (and again in a forked child, which would otherwise repeat its parent's ids): a
    system call per id releases the GIL, and taking it back waits for whichever thread
    holds it (the store's writer). Run ids name runs, they grant nothing: unguessable
    is not asked of them, unique is.
    """

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        """A generator of this process's own; a forked child also forgets its parent's
        last id, or it would go on from there as the parent does."""
        self.random = random.Random(os.urandom(32))
        self.last = 0
        # Ids are drawn on event loops' threads and on the LMDB writer's (events'
        # triggers): the check and the set of ``last`` must not interleave.
        self.lock = threading.Lock()

    def new(self) -> str:
        with self.lock:
            value = (time.time_ns() // 1_000_000) << 80 | self.random.getrandbits(80)
            if value <= self.last:
                value = self.last + 1
            self.last = value
        return value.to_bytes(16, "big").hex()  # 32 digits; half the time of f"{value:032x}"


_run_ids = _RunIds()
if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_run_ids.reseed)


def new_run_id() -> str:
    """A new run's id: 32 hex digits, time-ordered (48 bits of milliseconds, then 80
    random bits), unique across processes and increasing within one (:class:`_RunIds`).

    New runs' journals land at the end of the key space, and listing by id
    lists by creation time.
    """
    return _run_ids.new()


def run_key(run_id: str) -> bytes:
    """The 16-byte key prefix of a run's journal; ``RunNotFoundError`` for anything
    that is not a run id (32 hex digits)."""
    if not isinstance(run_id, str) or len(run_id) != 32:
        raise RunNotFoundError(f"{run_id!r} is not a run id (32 hex digits)")
    try:
        return bytes.fromhex(run_id)
    except ValueError:
        raise RunNotFoundError(f"{run_id!r} is not a run id (32 hex digits)") from None


#: The longest idempotency key, in UTF-8 bytes (an LMDB key holds 511 at most).
MAX_IDEMPOTENCY_KEY = 255


def check_idempotency_key(key: object) -> str:
    """``key`` if it is a usable idempotency key; ``ConfigurationError`` otherwise."""
    if not isinstance(key, str) or not key or "\x00" in key:
        raise ConfigurationError(f"an idempotency key is a non-empty str without NUL, not {key!r}")
    if len(key.encode()) > MAX_IDEMPOTENCY_KEY:
        raise ConfigurationError(
            f"an idempotency key is at most {MAX_IDEMPOTENCY_KEY} bytes (UTF-8), "
            f"not {len(key.encode())}"
        )
    return key


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
    parent_id: str | None = None
    wake_at: float | None = None
    waiting_for: str | None = None
    owner: str | None = None
    lease_until: float = 0.0
    fence: int = 0
    # ``ctx.progress``'s last report stored: {"n", "total", "message", "t"}
    progress: dict[str, Any] | None = None
    # The question a run waiting for a person asked (``ctx.wait_for_user``): read from
    # its journal by the engine, not kept in the run's row
    question: dict[str, Any] | None = None
    # A step between attempts: ``seq``, ``name``, the next ``attempt`` (from 1) ``of`` how
    # many, ``next_at`` (epoch seconds) and the last ``error`` ("type: message").
    retry: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        # Shallow (not dataclasses.asdict, which deep-copies args and result):
        # the row goes straight to orjson.
        return dict(zip(RUN_FIELDS, _RUN_VALUES(self), strict=True))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(**data)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def status_text(self) -> str:
        """The status in words, with what an unfinished run waits for:
        ``waiting: sleep until 2026-12-07 15:40:02``, ``waiting: event approved``,
        ``waiting: a person: Ship it?`` (``ctx.wait_for_user``; the question once the
        engine read it),
        (``until ...`` with a timeout), ``waiting: a worker serving checkout v2``
        (not claimed yet, or its worker stopped), ``retrying: step 2 (charge) attempt 3
        of 5, next at 2026-12-07 15:40:02, last error: TimeoutError: 503`` (``running
        since ...`` once that attempt is under way); else the status itself."""
        worker = f"waiting: a worker serving {self.workflow} {self.version}"
        retry = self.retry
        if retry is not None and self.waiting_for is None and self.status in (RUNNING, WAITING):
            if self.status == RUNNING and self.lease_until < time.time():
                return f"{worker} (the last one stopped)"
            next_at = retry["next_at"]
            when = (  # a running run past that time is taking the attempt
                f"running since {_clock(next_at)}"
                if self.status == RUNNING and next_at <= time.time()
                else f"next at {_clock(next_at)}"
            )
            return (
                f"retrying: step {retry['seq']} ({retry['name']}) attempt {retry['attempt']} "
                f"of {retry['of']}, {when}, last error: {retry['error']}"
            )
        if self.status == WAITING:
            until = "" if self.wake_at is None else f"until {_clock(self.wake_at)}"
            if self.waiting_for is not None and self.waiting_for.startswith(ANSWER_EVENT):
                asked = self.question["question"] if self.question is not None else None
                return "waiting: a person" + (f": {asked}" if asked else "")
            if self.waiting_for is not None:
                return f"waiting: event {self.waiting_for}" + (f" ({until})" if until else "")
            if self.wake_at is not None and self.wake_at <= time.time():
                return f"{worker} (its sleep ended {_clock(self.wake_at)})"
            return f"waiting: sleep {until}" if until else "waiting"
        if self.status == PENDING:
            return worker
        if self.status == RUNNING and self.lease_until < time.time():
            return f"{worker} (the last one stopped)"
        return self.status


def _clock(at: float) -> str:
    """A time as people read it, in local time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


RUN_FIELDS = tuple(f.name for f in fields(RunInfo))
_RUN_VALUES = attrgetter(*RUN_FIELDS)  # every field in one call
# What Store.create_run may set on the RunInfo it is given.
CREATE_FIELDS = (
    "version",
    "status",
    "attempt",
    "fence",
    "owner",
    "lease_until",
    "updated_at",
    "wake_at",
    "waiting_for",
)


@dataclass
class ScheduleInfo:
    """A workflow's schedule as stored: its definition, and how far it has fired.

    One per workflow (``workflow`` is its name). ``cron`` (in ``timezone``) or
    ``every`` (seconds) says when it ticks; ``version`` is the workflow version
    whose code declared it. Ticks are epoch seconds: the ones after
    ``max(last_tick, since)`` are due. ``since`` moves to the present when the
    schedule is created, its definition changes or it is resumed, so ticks from
    before then never fire. ``revision`` changes with every change but a firing.
    """

    workflow: str
    version: str
    cron: str | None
    every: float | None
    timezone: str
    catchup: str
    paused: bool = False
    last_tick: float | None = None
    since: float = field(default_factory=time.time)
    revision: int = 0
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleInfo:
        return cls(**data)

    def fires(self, revision: int, tick: float) -> bool:
        """Whether ``tick`` may fire now (see ``Store.fire_schedule``)."""
        return (
            self.revision == revision
            and not self.paused
            and tick > self.since
            and (self.last_tick is None or tick > self.last_tick)
        )

    def pause(self, paused: bool, now: float) -> bool:
        """Pause or resume (see ``Store.pause_schedule``); whether that is a change."""
        if self.paused == paused:
            return False
        self.paused, self.revision, self.updated_at = paused, self.revision + 1, now
        if not paused:
            self.since = now
        return True

    def same_definition(self, other: ScheduleInfo) -> bool:
        return (self.cron, self.every, self.timezone, self.catchup) == (
            other.cron,
            other.every,
            other.timezone,
            other.catchup,
        )


def keep_registration(stored_version: str | None, deployed: str | None, version: str) -> bool:
    """Whether a registration (schedule or subscriptions) by ``version`` leaves the
    stored one as it is: the stored one belongs to the deployed version and the
    registering version is another (an older worker still running, say)."""
    return deployed is not None and stored_version == deployed and version != deployed


def registered_schedule(
    stored: ScheduleInfo | None,
    deployed: str | None,
    version: str,
    schedule: ScheduleInfo | None,
    now: float,
) -> tuple[ScheduleInfo | None, bool]:
    """What ``Store.register_schedule`` stores, given the schedule stored now and the
    last deployed version: the schedule afterwards, and whether that is a change."""
    if keep_registration(None if stored is None else stored.version, deployed, version):
        return stored, False
    if schedule is None:
        return None, stored is not None
    new = ScheduleInfo.from_dict(schedule.to_dict())
    new.version, new.updated_at = version, now
    if stored is None:
        new.since, new.last_tick, new.paused, new.revision = now, None, False, 1
        return new, True
    if stored.same_definition(new) and stored.version == version:
        return stored, False
    new.paused, new.last_tick, new.revision = stored.paused, stored.last_tick, stored.revision + 1
    new.since = stored.since if stored.same_definition(new) else now
    return new, True


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


# The workflows a process serves: each name with the version it runs, or the several
# versions it can run (a workflow's current source digest and the digest 0.2 gave it).
ServedVersions: TypeAlias = Mapping[str, "str | Collection[str]"]


def versions_by_workflow(workflows: ServedVersions) -> dict[str, frozenset[str]]:
    """Each served workflow's versions as a set (a str stands for one version)."""
    return {
        name: frozenset((versions,) if isinstance(versions, str) else versions)
        for name, versions in workflows.items()
    }


@dataclass(frozen=True)
class LiveEngine:
    """An engine that executes runs, as it announced itself in the store."""

    owner: str
    served: dict[str, list[str]]  # workflow -> the versions it executes
    alive_until: float

    def serves(self, workflow: str, version: str) -> bool:
        return version in self.served.get(workflow, ())


def served_now(live: Sequence[LiveEngine], workflow: str) -> str:
    """Which versions of ``workflow`` the live engines serve, in words."""
    versions = sorted({v for e in live for v in e.served.get(workflow, ())})
    if not versions:
        return f"no live engine serves {workflow}"
    return f"served now: {', '.join(versions)}"


def child_run_id(parent_id: str, seq: int) -> str:
    """The child started by step ``seq`` of ``parent_id``: derived, so that a parent
    replayed after a crash finds the child it started instead of starting another."""
    digest = _core.xxh64(f"{parent_id}:{seq}".encode(), _core.NAME_SEED)
    salt = _core.xxh64(f"{seq}:{parent_id}".encode(), _core.INPUT_SEED)
    return f"{parent_id[:12]}{digest:016x}{salt:016x}"[:32]


def claimable(run: RunInfo, now: float) -> bool:
    """An unfinished run nobody live holds: never claimed, lease expired, or owner
    dead; a waiting run only once it is due (its timer ran out, or it was woken)."""
    if run.finished:
        return False
    if run.status == WAITING and (run.wake_at is None or run.wake_at > now):
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
    def create_run(
        self,
        run: RunInfo,
        owner: str | None,
        lease_s: float,
        follow_deployment: bool = False,
        idempotency_key: str | None = None,
    ) -> Awaitable[int]:
        """Insert ``run``; claim it for ``owner`` when given. Returns the fencing token
        and sets the stored lease on ``run``. ``StoreError`` if a run with its id exists.

        ``follow_deployment`` (for a new run): when another version of the run's
        workflow is the last one deployed (:meth:`record_deployment`), the run takes
        that version and is stored unclaimed, for a worker serving it; decided in
        the insert's own transaction, so a start never reads the deployments.

        ``idempotency_key`` (checked by :func:`check_idempotency_key`): the key is
        kept with the run, in the insert's transaction. When a run was created with
        that key already, by any process, nothing is written: ``run`` becomes a copy
        of the stored run (so its ``run_id`` differs from the one given) and its
        fencing token is returned. Of concurrent creates with one key, one inserts.

        A plain method returning an awaitable, as :meth:`append` (a store may hand back
        its commit's future as it is); awaited at once by its callers."""

    @abc.abstractmethod
    async def claim(self, run_id: str, owner: str, lease_s: float) -> RunInfo | None:
        """Take ``run_id`` if :func:`claimable`; bump its token and attempt. ``None`` if held."""

    @abc.abstractmethod
    async def claim_available(
        self,
        owner: str,
        lease_s: float,
        limit: int,
        workflows: ServedVersions,
        due_only: bool = False,
    ) -> list[RunInfo]:
        """Claim up to ``limit`` :func:`claimable` runs whose workflow is a key of
        ``workflows`` and whose version is its value, or one of its values (the
        versions served here).

        New (pending) runs and runs whose engine died are taken alike: recovery
        and new work go through this one claim. Each claimed run comes back with
        its token bumped, ``attempt`` + 1, status ``running`` and ``owner`` set.
        Safe against concurrent claimers: a run is handed to one of them only.
        ``due_only``: only waiting runs that are due (timers, woken runs).
        """

    @abc.abstractmethod
    async def create_child(self, run: RunInfo, owner: str, lease_s: float) -> RunInfo:
        """Create ``run`` (its id derived from its parent) claimed for ``owner``,
        unless it exists: then return it as stored. Idempotent."""

    @abc.abstractmethod
    async def suspend(
        self, run_id: str, fence: int, wake_at: float | None, event: str | None = None
    ) -> None:
        """Give the run back, waiting until ``wake_at`` and, when ``event`` is given,
        until that event is sent (``wake_at`` is then its deadline, or ``None``).
        Fenced. If the event was sent already, the run is due at once: nothing
        sent in between is lost."""

    @abc.abstractmethod
    async def next_wake(self, workflows: ServedVersions) -> float | None:
        """The earliest time a waiting run of a served version becomes due, if any:
        ``workflows`` maps each workflow served here to its version or versions, as for
        :meth:`claim_available`. Overdue timers of other versions are not this
        engine's to wait for (they wait for a worker serving their version)."""

    @abc.abstractmethod
    async def record_attempt(
        self,
        run_id: str,
        fence: int,
        seq: int,
        attempt: int,
        body: bytes,
        retry: dict[str, Any],
        wake_at: float | None,
    ) -> None:
        """Keep the failed ``attempt`` (from 1) of step ``seq`` (``body``: JSON) and set
        the run's ``retry``, in one transaction; with ``wake_at``, the run is also given
        back until then, as :meth:`suspend` does. Fenced. Writing an attempt again
        replaces it (a step executed again after a crash)."""

    @abc.abstractmethod
    async def retry_done(self, run_id: str, fence: int, seq: int) -> None:
        """Step ``seq`` has its outcome: clear the run's ``retry`` if it names that step.
        Fenced."""

    @abc.abstractmethod
    async def attempts(self, run_id: str) -> list[bytes]:
        """The failed attempts kept by :meth:`record_attempt` (JSON), by step, then by
        attempt; empty for a run that is gone."""

    # -- live engines

    @abc.abstractmethod
    async def announce(self, owner: str, served: ServedVersions, lease_s: float) -> None:
        """Record ``owner`` as a live engine executing the ``served`` versions (workflow
        -> its version or versions) for ``lease_s`` seconds; renewed with its heartbeat."""

    @abc.abstractmethod
    async def withdraw(self, owner: str) -> None:
        """Forget ``owner`` (an engine closing)."""

    @abc.abstractmethod
    async def live_engines(self) -> list[LiveEngine]:
        """The engines announced and not expired, nor dead on this host."""

    # -- deployments

    @abc.abstractmethod
    async def record_deployment(
        self, workflow: str, version: str, digest: str, retention: int | None = None
    ) -> None:
        """Make ``version`` of ``workflow`` current for new runs (kept with the time, and
        the workflow's declared retention: milliseconds, KEEP_FOREVER, or ``None``)."""

    @abc.abstractmethod
    async def deployments(self) -> list[dict[str, Any]]:
        """Every recorded deployment (workflow, version, digest, time, retention), oldest
        first; ``retention`` is ``None`` where none was declared or recorded."""

    # -- schedules

    @abc.abstractmethod
    async def register_schedule(
        self, workflow: str, version: str, schedule: ScheduleInfo | None, now: float
    ) -> ScheduleInfo | None:
        """Store the schedule that ``version`` of ``workflow`` declares (``None``: it
        declares none, and a stored one is removed), in one transaction, unless
        :func:`keep_registration` says the stored one stays. A stored schedule keeps
        its pause and its last tick; when its definition changes, ``since`` becomes
        ``now``. Returns the schedule as stored afterwards (``None`` if there is none)."""

    @abc.abstractmethod
    async def schedules(self) -> list[ScheduleInfo]:
        """Every stored schedule, by workflow name."""

    @abc.abstractmethod
    async def pause_schedule(self, workflow: str, paused: bool, now: float) -> ScheduleInfo:
        """Pause or resume ``workflow``'s schedule; resuming moves ``since`` to
        ``now``, so the ticks of the pause never fire. ``ScheduleNotFoundError``
        when there is no such schedule."""

    @abc.abstractmethod
    async def fire_schedule(
        self, workflow: str, revision: int, tick: float, run: RunInfo | None, key: str
    ) -> RunInfo | None:
        """Fire ``tick`` of ``workflow``'s schedule, in ONE transaction: only when the
        schedule is stored with ``revision``, is not paused, and ``tick`` is after
        both its last tick and ``since``. Then the last tick becomes ``tick`` and,
        when ``run`` is given, the run is created pending (unclaimed), on the
        workflow's last deployed version if there is one, with ``key`` as its
        idempotency key. Returns the run created, else ``None`` (also for a skipped
        tick, ``run=None``). Of concurrent firers of one tick, one succeeds."""

    # -- event triggers

    @abc.abstractmethod
    async def register_subscriptions(
        self, workflow: str, version: str, events: Sequence[str]
    ) -> list[str]:
        """Make ``events`` the event names that start ``workflow`` (replacing the ones
        stored for it), unless :func:`keep_registration` says the stored ones stay.
        Returns the names stored for it afterwards."""

    @abc.abstractmethod
    async def subscriptions(self) -> list[tuple[str, str, str]]:
        """Every subscription: ``(event name, workflow, version)``, sorted."""

    @abc.abstractmethod
    async def emit_event(
        self, name: str, kwargs: dict[str, Any], keys: Callable[[str], str]
    ) -> list[RunInfo]:
        """Start one run of every workflow subscribed to ``name``, with ``kwargs`` as
        its input, in ONE transaction: each run pending (unclaimed), on the
        workflow's last deployed version if there is one (else the subscription's),
        with ``keys(workflow)`` as its idempotency key. A workflow whose key names a
        run already gets no new one: that run is returned in its place. Returns the
        runs, by workflow name."""

    @abc.abstractmethod
    async def idempotency_keys(self, prefix: str) -> dict[str, str]:
        """The idempotency keys that start with ``prefix``, each with the id of the
        run it created."""

    # -- events

    @abc.abstractmethod
    async def send_event(self, run_id: str, name: str, payload: bytes) -> None:
        """Keep ``payload`` (JSON) for the run's next ``wait_for_event(name)``; wake it
        if it waits. ``RunNotFoundError`` for an unknown run, ``RunFinishedError``
        (nothing kept) for a finished one."""

    @abc.abstractmethod
    async def take_event(
        self, run_id: str, fence: int, name: str, seq: int, record: Callable[[bytes], bytes]
    ) -> bytes | None:
        """Consume the oldest event ``name`` sent to the run and append
        ``record(payload)`` at ``seq`` in the same transaction (fenced); the payload,
        or ``None`` when no such event is waiting."""

    # -- shared state (session and user scopes)

    @abc.abstractmethod
    async def state_read(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        record: Callable[[bytes | None, int], bytes],
    ) -> tuple[bytes | None, int]:
        """Read ``key`` of ``scope`` (value JSON or ``None``, and its version) and append
        ``record(value, version)`` at ``seq`` in the same transaction. Fenced."""

    @abc.abstractmethod
    async def state_write(
        self,
        run_id: str,
        fence: int,
        seq: int,
        scope: str,
        key: str,
        value: bytes | None,
        expect: int | None,
        record: Callable[[int | None], bytes],
    ) -> int | None:
        """Write ``value`` (``None`` deletes) unless ``expect`` is given and the stored
        version differs; append ``record(new version, or None on conflict)`` at ``seq``
        in the same transaction. Fenced. Returns the new version, ``None`` on conflict."""

    @abc.abstractmethod
    async def state_items(self, scope: str) -> dict[str, bytes]:
        """Every key of ``scope`` with its value (JSON)."""

    # -- progress

    @abc.abstractmethod
    async def set_progress(self, run_id: str, fence: int, report: bytes) -> None:
        """Keep ``report`` (JSON) as the run's progress, replacing the last one; read
        back as ``RunInfo.progress`` by :meth:`get_run` and :meth:`list_runs`. Fenced."""

    # -- logs

    @abc.abstractmethod
    async def append_log(self, run_id: str, position: int, index: int, line: bytes) -> None:
        """Store a log line (JSON) at (step position, index): replay rewrites the same key."""

    @abc.abstractmethod
    async def logs(self, run_id: str) -> list[bytes]:
        """The run's log lines in order."""

    @abc.abstractmethod
    async def renew(
        self, leases: Sequence[tuple[str, int]], owner: str, lease_s: float
    ) -> list[str]:
        """Extend the leases ``(run_id, fence)`` held by ``owner``; return the runs lost
        (claimed by another, cancelled, or finished)."""

    @abc.abstractmethod
    async def release(self, run_id: str, fence: int) -> None:
        """Give a run back unfinished (graceful shutdown): its lease ends now. A run
        that finished meanwhile (cancelled) stays finished."""

    @abc.abstractmethod
    def finish(
        self,
        run_id: str,
        fence: int,
        status: str,
        result: Any,
        error: dict[str, Any] | None,
        keep: int = KEEP_DEFAULT,
    ) -> Awaitable[None]:
        """Record the run's outcome, fenced, with its retention ``keep`` (milliseconds,
        KEEP_FOREVER or KEEP_DEFAULT) from now, in the same transaction. ``result``: JSON
        data, or its bytes already encoded as a :data:`surestep.serde.Fragment` (the
        engine's, so a result is encoded once), stored as they are. A plain method
        returning an awaitable, as :meth:`create_run`."""

    @abc.abstractmethod
    async def cancel(self, run_id: str, keep: int = KEEP_DEFAULT) -> bool:
        """Mark an unfinished run cancelled (retention ``keep``, as ``finish``) and bump
        its token, so the engine executing it can write nothing more; ``False`` if it
        had finished."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunInfo:
        """The run, or ``RunNotFoundError``."""

    @abc.abstractmethod
    async def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first; with ``before`` (a run id), only older ones: the next page
        after the run listed last."""

    @abc.abstractmethod
    async def wait_changed(self, timeout: float) -> None:
        """Return soon after a run is created, released or finished by any
        process using the store since ``open()``, or after ``timeout`` seconds.
        May return early; callers re-check what they wait for. Never busy-polls.
        Times (leases, timers) are the server's clock on PostgreSQL."""

    # -- journal

    @abc.abstractmethod
    def append(self, run_id: str, fence: int, seq: int, record: bytes) -> Awaitable[None]:
        """Durably store one encoded record; done once committed. Fenced. One record per
        step: LMDB refuses a second one (``StoreError``, nothing written); PostgreSQL
        replaces it, so that a statement sent again after a lost connection is harmless.
        (A plain method returning an awaitable: a store may hand back its commit's future
        as it is.)"""

    @abc.abstractmethod
    async def journal(self, run_id: str) -> list[bytes]:
        """The run's journal as stored: buffers of one or more encoded records each
        (``_core.decode_records`` reads them), not necessarily in step order. Empty for
        a run that is gone (purged, even while its records are still being deleted)."""

    # -- retention

    @abc.abstractmethod
    async def made_by_previous_release(self) -> bool:
        """Whether the store was made by surestep 0.2, which kept every run for ever
        (and so keeps them until retention is configured)."""

    @abc.abstractmethod
    async def expired_runs(
        self, now: float, default_ms: int, cutoff: float | None, limit: int | None
    ) -> list[dict[str, Any]]:
        """What :meth:`hide_expired` would hide now (nothing changes): the finished
        top-level runs that :func:`retention_due` says may go, each with every run it
        started (recursively) when all of those may go too. One dict a run: ``run_id``,
        ``root`` (the top-level run it goes with), ``workflow``, ``status``,
        ``finished_at``. At most ``limit`` top-level runs when given."""

    @abc.abstractmethod
    async def hide_expired(
        self, now: float, default_ms: int, cutoff: float | None, limit: int
    ) -> list[dict[str, Any]]:
        """Hide up to ``limit`` top-level runs that may go, with the runs they started,
        in one transaction: from then on no read finds them (rows, journal, logs), and
        their records wait for :meth:`sweep_hidden`. A run whose descendants may not go
        yet is put off until its longest-kept descendant may (the longer policy wins);
        unfinished runs and runs whose parent exists are never hidden. Returns what
        :meth:`expired_runs` describes."""

    @abc.abstractmethod
    async def sweep_hidden(self, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` records (journal chunks, log lines, events) of hidden runs
        in one transaction, and the tombstones of runs left with none: how many records,
        how many tombstones (both 0: nothing is left to delete)."""

    @abc.abstractmethod
    async def stats(self) -> dict[str, Any]:
        """The store's size (``size``: backend-specific byte counts), ``runs`` by status,
        ``oldest_finished`` (epoch seconds, or ``None``), ``hidden`` (runs purged whose
        records are still being deleted)."""


async def wait_set(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass, then clear it.

    Not ``asyncio.wait_for``: before Python 3.12 it can swallow a cancellation that
    arrives as the event is set, and the engine stops such waits by cancelling them
    (an intermittent hang of ``Engine.close()``)."""
    import asyncio  # here: the CLI imports this module and starts without asyncio

    if not event.is_set():
        timer = asyncio.get_running_loop().call_later(timeout, event.set)
        try:
            await event.wait()
        finally:
            timer.cancel()
    event.clear()
