"""The engine: starts, waits for, lists and recovers runs over one store.

A run is executed by the engine that holds its lease. Starting a run claims
it for this engine; recovery claims unfinished runs that nobody live holds
through the same claim, so exactly one engine executes a run at a time. A
heartbeat renews the leases of every run this engine executes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

from . import _core, collector, convert, hitl, journal, schedules, serde, triggers
from .admission import WAIT, Admission
from .context import WorkflowContext
from .decorators import WorkflowSpec, code_digest, find_workflow, served_versions
from .errors import (
    AnswerError,
    ConfigurationError,
    JournalCorruptError,
    LeaseLostError,
    RunCancelledError,
    StoreError,
    Suspended,
    UnknownWorkflowError,
    WorkflowFailedError,
    describe,
)
from .recorder import Recorder
from .retention import (
    DEFAULT_RETENTION,
    PURGE_INTERVAL,
    Purger,
    PurgeReport,
    describe_retention,
    parse_duration,
    parse_retention,
    purge,
)
from .runtime import child_row
from .store import open_store
from .store.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    KEEP_DEFAULT,
    KEEP_FOREVER,
    PENDING,
    RUNNING,
    WAITING,
    LiveEngine,
    Owner,
    RunInfo,
    Store,
    check_idempotency_key,
    claimable,
    new_run_id,
    served_now,
)
from .telemetry import tracer_for

log = logging.getLogger("surestep.engine")
T = TypeVar("T")
# How many runs one engine's start() lets in at once by default (being started, or
# executing here): past it a start waits, instead of holding rows, futures and frames
# for every run of a burst together.
MAX_IN_FLIGHT = 10_000
# How many of them may be between admission and stored at once: a burst of starts
# queues this many creations for the writer, not the whole burst's rows and frames.
MAX_STARTING = 1_024

KIND_NAMES = journal.KIND_NAMES  # kept here for the surfaces that read it from the engine


@dataclass(frozen=True)
class JournalEntry:
    """One recorded step, as ``engine.journal(run_id)`` shows it."""

    seq: int
    name: str
    kind: str
    key: Any
    input: Any
    output: Any
    error: dict[str, Any] | None
    attempt: int
    started_at: float
    finished_at: float
    child: str | None = None


class RunHandle:
    """A started run: its id, and a way to wait for its outcome."""

    __slots__ = ("_active", "engine", "run_id")

    def __init__(self, engine: Engine, run_id: str, active: _Active | None = None) -> None:
        self.engine = engine
        self.run_id = run_id
        # The run executing here, when this handle's start launched it: its task's
        # outcome is the run's, with no read of the store once it is done.
        self._active = active

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"

    def result(self) -> Coroutine[Any, Any, Any]:
        """The workflow's return value, awaited; ``WorkflowFailedError`` if it raised.
        (The engine's coroutine itself: no second one around it.)"""
        return self.engine._outcome(self.run_id, self._active)  # noqa: SLF001 - its engine

    async def info(self) -> RunInfo:
        """The run's current row in the store."""
        return await self.engine.get_run(self.run_id)


class _Active:
    """A run executing here: its fence, whether its lease was lost, its task; and that
    task's done callback (itself: no object made per run, which a parked run would keep):
    it marks the task's outcome retrieved, gives its place in ``admission`` back if the
    run's code did not (``give_back``), and wakes the callers waiting for its outcome, all
    in one call of the loop."""

    __slots__ = ("admission", "fence", "lost", "task", "waiters")

    def __init__(self, fence: int, admission: Admission | None) -> None:
        self.fence = fence
        self.lost = False
        self.task: asyncio.Task[Any] | None = None
        self.admission = admission
        self.waiters: list[asyncio.Future[None]] | None = None  # made by the first caller

    def give_back(self) -> None:
        """Give the run's place in ``admission`` back, once: when its code ends (so that
        whoever sees its outcome sees the place free), or when its task ends without
        having run (cancelled before its first step)."""
        admission, self.admission = self.admission, None
        if admission is not None:
            admission.give_back()

    def __call__(self, task: asyncio.Task[Any]) -> None:
        # A failed, suspended or lost run's exception is recorded or logged already;
        # whoever waits reads the store. Retrieved here, so asyncio stays quiet.
        if not task.cancelled():
            task.exception()
        self.give_back()
        waiters, self.waiters = self.waiters, None
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():  # (a caller cancelled meanwhile)
                    waiter.set_result(None)


class Engine:
    """Runs workflows durably over a store.

    ``path`` is an LMDB directory (the embedded default) or a store URL.
    ``durability="fsync"`` (default) returns from a step once its record is on
    disk: on LMDB, one flush of this process's commit log for a run stepping alone,
    an LMDB sync commit shared by every step committing at that moment otherwise
    (``commit="log"``, the default there; ``commit="lmdb"``: always the latter);
    ``"process"`` returns once it is in the operating system's page cache: it
    survives the process being killed, not the machine losing power.
    ``tracing=True`` (or a tracer provider) emits OpenTelemetry spans for runs
    and steps (:mod:`surestep.telemetry`).
    ``retention`` is how long runs this engine finishes stay in the store (a
    duration such as ``"7d"``, or ``"forever"``) unless their workflow declares
    its own; not given, the store's default (:mod:`surestep.retention`). An
    executing engine purges finished runs whose time is up every
    ``purge_interval`` seconds.
    ``max_in_flight`` bounds the runs this engine's ``start`` lets in at once (being
    started, or executing here until they finish, suspend or go to a worker); past it
    ``start`` waits for a place (``on_full="wait"``, first come first served) or raises
    ``OverloadedError`` at once, storing nothing (``on_full="refuse"``).
    ``gc_threshold``: while an executing engine is open, the garbage collector's first
    threshold is at least this (:mod:`surestep.collector`: runs in flight are many
    containers for it to walk); ``None`` leaves the collector alone.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ".surestep",
        *,
        durability: str = "fsync",
        lease_seconds: float = 15.0,
        execute: bool = True,
        inline_sleep: float = 1.0,
        tracing: Any = False,
        retention: Any = None,
        purge_interval: float = PURGE_INTERVAL,
        max_in_flight: int = MAX_IN_FLIGHT,
        on_full: str = WAIT,
        gc_threshold: int | None = collector.GC_THRESHOLD,
        **store_options: Any,
    ) -> None:
        if (
            isinstance(lease_seconds, bool)
            or not isinstance(lease_seconds, (int, float))
            or not 0 < lease_seconds < float("inf")
        ):
            raise ConfigurationError(f"lease_seconds must be a number > 0, not {lease_seconds!r}")
        self.retention = parse_retention(retention)
        self.purge_interval = parse_duration(purge_interval, "purge_interval")
        if self.purge_interval <= 0:
            raise ConfigurationError(f"purge_interval must be > 0, not {purge_interval!r}")
        self.gc_threshold = collector.check_threshold(gc_threshold)
        self._gc_held: int | None = None  # the threshold this engine holds while open
        # Made again by open(): a start waiting for a place waits on its loop.
        self._admission = Admission(max_in_flight, on_full)
        self._starting = Admission(MAX_STARTING)
        self.store: Store = open_store(path, durability=durability, **store_options)
        self.lease_seconds = lease_seconds
        self.execute = execute
        self.inline_sleep = inline_sleep
        self._tracer = tracer_for(tracing)
        self.owner = str(Owner.this_process())
        self._active: dict[str, _Active] = {}
        self._run_left: asyncio.Event | None = None  # see next_run_end
        self._opened = False
        self._opening: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._waker: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self._default_keep = KEEP_FOREVER  # decided by open(), from the store
        self._presence: asyncio.Task[None] | None = None
        self._live_seen: tuple[float, list[LiveEngine]] = (-math.inf, [])
        self._scheduler: asyncio.Task[None] | None = None

    # -- lifecycle

    async def open(self) -> Engine:
        """Open the store and start this engine's background tasks. Concurrent calls
        share one opening (the first starts it, the others await it); after one that
        failed, the next call tries again."""
        if not self._opened:
            opening = self._opening
            if opening is None:
                opening = asyncio.get_running_loop().create_task(self._open(), name="surestep-open")
                # Retrieved here too: an opening whose callers were all cancelled.
                opening.add_done_callback(lambda done: done.cancelled() or done.exception())
                self._opening = opening
            # Shielded: a caller cancelled does not cancel the opening the others await.
            await asyncio.shield(opening)
        return self

    async def _open(self) -> None:
        try:
            await self.store.open()
            try:
                self._admission = Admission(self._admission.limit, self._admission.on_full)
                self._starting = Admission(MAX_STARTING)
                self._default_keep = await self._store_default_keep()
                if self.execute:
                    # The schedules and event triggers of the workflows served here.
                    served = [find_workflow(name) for name in served_versions()]
                    await schedules.register(self.store, served)
                    await triggers.register(self.store, served)
                    await self._announce()  # live before its first run is started
            except BaseException:
                await self.store.close()
                raise
            if self.execute:
                loop = asyncio.get_running_loop()
                self._waker = loop.create_task(self._wake_due(), name="surestep-timers")
                self._scheduler = loop.create_task(
                    schedules.run_scheduler(self.store), name="surestep-schedules"
                )
                purger = Purger(self.store, self._default_keep, self.purge_interval)
                self._purger = loop.create_task(purger.run(), name="surestep-purge")
                self._presence = loop.create_task(self._stay_live(), name="surestep-presence")
                if self.gc_threshold is not None:
                    collector.hold(self.gc_threshold)
                    self._gc_held = self.gc_threshold
            self._opened = True
        finally:
            self._opening = None

    async def _store_default_keep(self) -> int:
        """The policy of runs finished under none of their own: this engine's, else a
        bounded default, except in a store made by surestep 0.2 (said once)."""
        if self.retention is not None:
            return self.retention
        if await self.store.made_by_previous_release():
            log.info(
                "the store %s was made by surestep 0.2: its finished runs are kept for ever "
                "until retention is configured (Engine(retention=...), @workflow(retention=...))",
                self.store.url,
            )
            return KEEP_FOREVER
        return round(DEFAULT_RETENTION * 1000)

    def _keep(self, spec: WorkflowSpec | None) -> int:
        """The retention a run of ``spec`` gets when it finishes here."""
        if spec is not None and spec.retention is not None:
            return spec.retention
        return KEEP_DEFAULT if self.retention is None else self.retention

    async def close(self) -> None:
        """Stop this engine's runs (they stay recoverable, their leases given back) and close."""
        if self._opening is not None:  # an opening in flight: close what it opens
            await asyncio.gather(asyncio.shield(self._opening), return_exceptions=True)
        if not self._opened:
            return
        if self._gc_held is not None:
            collector.release(self._gc_held)
            self._gc_held = None
        background_tasks = (
            self._heartbeat,
            self._waker,
            self._scheduler,
            self._purger,
            self._presence,
        )
        for background in background_tasks:
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
        if self._presence is not None:
            await _quietly(self.store.withdraw(self.owner))
        self._heartbeat = self._waker = self._scheduler = self._purger = self._presence = None
        active = self.tasks()
        for task in active:
            task.cancel()
        await asyncio.gather(*active, return_exceptions=True)
        # A task cancelled before it first ran never reached its own release.
        for run_id, left in list(self._active.items()):
            await _quietly(self.store.release(run_id, left.fence))
        self._active.clear()
        await self.store.close()
        self._opened = False

    async def __aenter__(self) -> Engine:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- starting and waiting

    async def start(
        self,
        workflow: Callable[..., Any] | str,
        /,
        *args: Any,
        session_id: str | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> RunHandle:
        """Record a new run and start executing it here; returns once it is stored.

        ``session_id`` and ``user_id`` name the run's session and user. When the
        workflow has a parameter of that name, the keyword is also its argument, and
        an argument given to that parameter names the run's session or user.

        ``idempotency_key``: a start with a key already used, by any process, starts
        nothing and returns the handle of the run that key started.
        """
        if not self._opened:
            await self.open()
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        admission = self._admission
        if not admission.take_now():
            await admission.take()
        starting = self._starting
        try:
            if not starting.take_now():
                await starting.take()
            try:
                spec, run = self._new_run(workflow, args, kwargs, session_id, user_id)
                proposed = run.run_id
                # The last deployed version, if any, else this code's: decided by the store.
                await self.store.create_run(
                    run,
                    self.owner if self.execute else None,
                    self.lease_seconds,
                    follow_deployment=True,
                    idempotency_key=idempotency_key,
                )
                active = self._launch_new(spec, run, proposed, idempotency_key, admission)
                if active is None and run.run_id == proposed:
                    # A client, or another version is current: a worker serving it claims it.
                    await self._warn_if_unserved(run, spec)
            finally:
                starting.give_back()
        except BaseException:
            admission.give_back()
            raise
        if active is None:  # not executed here: its place is free at once
            admission.give_back()
        return RunHandle(self, run.run_id, active)

    def _new_run(
        self,
        workflow: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        session_id: str | None,
        user_id: str | None,
    ) -> tuple[WorkflowSpec, RunInfo]:
        """The workflow started and the row of its new run, not stored yet (the arguments
        checked and made JSON)."""
        spec = find_workflow(workflow)
        if spec.names_identities:  # (most workflows do not: no call)
            session_id, user_id = run_identities(spec, args, kwargs, session_id, user_id)
        try:
            spec.check_call(args, kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {spec.name!r} cannot take these arguments: {exc}") from None
        args, kwargs = convert.journal_arguments(
            args, kwargs, "the input of workflow %r", spec.name
        )
        run_id = new_run_id()
        if spec.chat and session_id is None:  # a new conversation, named by its first turn
            session_id = run_id
        # By position (RunInfo's first fields): keywords to its 22 parameters take half
        # again as long.
        run = RunInfo(
            run_id, spec.name, spec.version, list(args), kwargs, PENDING, session_id, user_id
        )
        return spec, run

    def _launch_new(
        self,
        spec: WorkflowSpec,
        run: RunInfo,
        proposed: str,
        idempotency_key: str | None,
        admission: Admission,
    ) -> _Active | None:
        """Once the new run is stored: the run executing here, whose task holds its place
        in ``admission`` until it ends, when the store claimed it for this engine; else
        ``None``. A run of another id is the idempotency key's, started before (wherever
        it executes), and must be of the same workflow."""
        if run.run_id != proposed:
            if run.workflow != spec.name:
                raise ConfigurationError(
                    f"idempotency key {idempotency_key!r} started run {run.run_id} of "
                    f"workflow {run.workflow!r}, not {spec.name!r}"
                )
            return None
        if run.owner is None:
            return None
        return self._launch(spec, run, replay=False, admission=admission)

    async def _warn_if_unserved(self, run: RunInfo, spec: WorkflowSpec) -> None:
        """Warn when no live engine serves the version a new run waits for, or when the
        run takes another version than this code's (an older worker executes it)."""
        now = time.monotonic()
        if now - self._live_seen[0] > 1.0:  # a burst of starts reads the registry once
            self._live_seen = (now, await self.live_engines())
        live = self._live_seen[1]
        if any(engine.serves(run.workflow, run.version) for engine in live):
            if run.version != spec.version:
                log.warning(
                    "run %s takes %s version %s, the one deployed, not this code's version "
                    "%s: a worker serving %s executes it (deploy this code to make it current)",
                    run.run_id,
                    run.workflow,
                    run.version,
                    spec.version,
                    run.version,
                )
            return
        why = (
            f"the one deployed; this code is version {spec.version} (deploy it to make it current)"
            if run.version != spec.version
            else "and this process does not execute runs"
        )
        log.warning(
            "run %s waits for a worker serving %s version %s, %s; %s",
            run.run_id,
            run.workflow,
            run.version,
            why,
            served_now(live, run.workflow),
        )

    async def live_engines(self) -> list[LiveEngine]:
        """The engines executing runs over this store now, with the versions they serve."""
        await self.open()
        return await self.store.live_engines()

    async def run(self, workflow: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Start a run and wait for its result (as the workflow's return annotation says:
        a typed result comes back typed; ``handle.result()`` gives its JSON)."""
        handle = await self.start(workflow, *args, **kwargs)
        result = await handle.result()
        conversion = find_workflow(workflow).conversion
        return result if conversion is None else conversion.decode_result(result)

    def handle(self, run_id: str) -> RunHandle:
        return RunHandle(self, run_id)

    async def recover(self) -> list[RunHandle]:
        """Take responsibility for every unfinished run of the versions served here
        that no live engine holds, and return a handle for each.

        Runs that can go on now are resumed at once; waiting runs (a sleep, an
        event) stay with their timer, which resumes them here when they come due:
        their handle's ``result()`` waits for that. Unfinished runs of a workflow
        served here but of another version are left for a worker serving that
        version, and named in a WARNING.
        """
        handles: list[RunHandle] = []
        batch = 16  # a small first claim, so the first run resumes at once; then larger ones
        while True:
            claimed = await self.claim(batch)
            handles += claimed
            if len(claimed) < batch:
                break
            batch = min(batch * 4, 1024)
        await asyncio.sleep(0)  # the runs claimed take their first steps before the scans
        served = served_versions()
        taken = {handle.run_id for handle in handles}
        elsewhere: dict[tuple[str, str], list[str]] = {}
        for status in (PENDING, RUNNING, WAITING):
            for run in await self.store.list_runs(status=status):
                versions = served.get(run.workflow)
                if versions is not None and run.version not in versions:
                    elsewhere.setdefault((run.workflow, run.version), []).append(run.run_id)
                elif versions is not None and status == WAITING and run.run_id not in taken:
                    handles.append(RunHandle(self, run.run_id))  # its timer resumes it here
                elif (
                    versions is not None
                    and status == RUNNING
                    and run.owner == self.owner
                    and run.attempt > 1
                    and run.run_id not in taken
                ):
                    # A waiting run that came due as the engine opened, resumed by its
                    # timer before these claims: this engine's too.
                    handles.append(RunHandle(self, run.run_id))
        live = await self.store.live_engines() if elsewhere else []
        for (workflow, version), run_ids in sorted(elsewhere.items()):
            more = f" and {len(run_ids) - 5} more" if len(run_ids) > 5 else ""
            log.warning(
                "%d unfinished run(s) of %s version %s are left for a worker serving that "
                "version (this process serves %s; %s): %s; list them with `surestep runs "
                "--workflow %s`",
                len(run_ids),
                workflow,
                version,
                ", ".join(served[workflow]),
                served_now(live, workflow),
                ", ".join(run_ids[:5]) + more,
                workflow,
            )
        return handles

    async def claim(self, limit: int) -> list[RunHandle]:
        """Claim up to ``limit`` available runs (new or abandoned) and execute them here."""
        await self.open()
        runs = await self.store.claim_available(
            self.owner, self.lease_seconds, limit, workflows=served_versions()
        )
        for run in runs:
            self._launch(find_workflow(run.workflow), run, replay=run.attempt > 1)
        return [RunHandle(self, run.run_id) for run in runs]

    async def cancel(self, run_id: str) -> bool:
        """Cancel an unfinished run, wherever it executes; ``False`` if it had finished.

        The run's fencing token moves on, so the engine executing it stops at
        its next write or lease renewal, whichever comes first.
        """
        await self.open()
        run = await self.store.get_run(run_id)
        try:
            spec: WorkflowSpec | None = find_workflow(run.workflow)
        except UnknownWorkflowError:
            spec = None  # cancelled from a process that does not define it
        cancelled = await self.store.cancel(run_id, self._keep(spec))
        active = self._active.get(run_id)
        if cancelled and active is not None and active.task is not None:
            active.lost = True
            active.task.cancel()
        return cancelled

    async def deploy(
        self, workflow: Callable[..., Any] | str, version: str | None = None
    ) -> dict[str, Any]:
        """Make this code's version of ``workflow`` (or ``version``) current for new runs.

        Runs already started keep the version they started on, and only workers
        serving that version resume them.
        """
        await self.open()
        spec = find_workflow(workflow)
        deployment = {
            "workflow": spec.name,
            "version": version or spec.version,
            "digest": code_digest(spec.fn),
        }
        await self.store.record_deployment(**deployment, retention=spec.retention)
        if deployment["version"] == spec.version:  # this code: its schedule and triggers
            await schedules.register(self.store, [spec], force=True)
            await triggers.register(self.store, [spec], force=True)
        return deployment

    async def purge(
        self, older_than: Any = None, dry_run: bool = False, limit: int | None = None
    ) -> PurgeReport:
        """Remove finished runs whose retention ran out now, rather than at the next
        background purge; ``older_than`` (a duration): every run that finished longer
        ago than that, whatever its retention. ``dry_run``: only list what would go.
        Unfinished runs, and runs whose parent is still in the store, never go."""
        await self.open()
        cutoff = None if older_than is None else parse_duration(older_than, "older_than")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ConfigurationError(f"limit must be a whole number >= 1, not {limit!r}")
        return await purge(self.store, self._default_keep, cutoff, dry_run, limit)

    async def stats(self) -> dict[str, Any]:
        """The store's size, its runs by status and the oldest finished run's finish time,
        with the default retention this engine applies."""
        await self.open()
        stats = await self.store.stats()
        stats["default_retention"] = self.default_retention
        return stats

    @property
    def default_retention(self) -> str:
        """The retention of runs finished under no policy of their own, as people read
        it (``"7d"``, ``"forever"``): this engine's, else the store's default. Decided
        when the engine opens."""
        return describe_retention(self._default_keep)

    async def deployments(self) -> list[dict[str, Any]]:
        """Recorded deployments, oldest first, each with how many runs of it are unfinished."""
        await self.open()
        in_flight: dict[tuple[str, str], int] = {}
        for run in await self.store.list_runs():
            if not run.finished:
                in_flight[(run.workflow, run.version)] = (
                    in_flight.get((run.workflow, run.version), 0) + 1
                )
        return [
            {**d, "in_flight": in_flight.get((d["workflow"], d["version"]), 0)}
            for d in await self.store.deployments()
        ]

    async def fork(self, run_id: str, from_step: int) -> RunHandle:
        """A new run of the same workflow and input that reuses the journal before step
        ``from_step`` and executes from there on today's code."""
        await self.open()
        source = await self.store.get_run(run_id)
        try:
            spec: WorkflowSpec | None = find_workflow(source.workflow)
        except UnknownWorkflowError:
            if self.execute:
                raise
            spec = None  # a client: the fork waits for a worker serving the current version
        if isinstance(from_step, bool) or not isinstance(from_step, int) or from_step < 0:
            raise ConfigurationError(f"from_step is a step number >= 0, not {from_step!r}")
        records = await self.records(run_id)
        steps = records[-1].seq + 1 if records else 0
        if from_step > steps:
            raise ConfigurationError(
                f"run {run_id} has {steps} step(s) (0 to {steps - 1}): fork it from a step "
                f"0 to {steps}, not {from_step}"
                if steps
                else f"run {run_id} has no steps: fork it from step 0, not {from_step}"
            )
        kept = [r for r in records if r.seq < from_step]
        if spec is not None:
            version = spec.version
        else:
            deployed = [
                d for d in await self.store.deployments() if d["workflow"] == source.workflow
            ]
            version = deployed[-1]["version"] if deployed else source.version
        run = RunInfo(
            run_id=new_run_id(),
            workflow=source.workflow,
            version=version,
            args=source.args,
            kwargs=source.kwargs,
            session_id=source.session_id,
            user_id=source.user_id,
        )
        fence = await self.store.create_run(run, self.owner, self.lease_seconds)
        await asyncio.gather(*(self.store.append(run.run_id, fence, r.seq, r.raw) for r in kept))
        if self.execute and spec is not None:
            self._launch(spec, run, replay=bool(kept))
        else:
            await self.store.release(run.run_id, fence)
        return RunHandle(self, run.run_id)

    async def send_event(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send ``payload`` (JSON) to the run's ``ctx.wait_for_event(name)``; kept
        until the run waits for it, and wakes the run if it waits already.
        ``RunFinishedError`` if the run has finished (nothing is kept)."""
        await self.open()
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ConfigurationError(f"an event name is a non-empty str without NUL, not {name!r}")
        await self.store.send_event(
            run_id, name, serde.dumps(payload, f"the payload of event {name!r}")
        )

    async def answer(self, run_id: str, answer: str | list[str] | None) -> None:
        """Answer the question the run waits on (``ctx.wait_for_user``); the run continues
        with it, in whichever engine serves its workflow. ``None`` skips a skippable
        question; a multiselect answer is a list of option ids (or ids joined by
        commas). ``AnswerError`` for an answer the question does not take, or a run
        that waits for no person; nothing is sent then."""
        await self.open()
        run = await self.store.get_run(run_id)
        asked = await self._question(run)
        if asked is None or run.waiting_for is None:
            raise AnswerError(f"run {run_id} waits for no person's answer (it is {run.status})")
        value = hitl.checked_answer(asked, answer, run_id)
        await self.store.send_event(run_id, run.waiting_for, serde.dumps(value, "an answer"))

    async def _question(self, run: RunInfo) -> dict[str, Any] | None:
        """The question of a run waiting for a person, read from its journal."""
        seq = hitl.answer_seq(run.waiting_for) if run.status == WAITING else None
        if seq is None:
            return None
        for record in await self.records(run.run_id):
            if record.seq == seq - 1:
                data = journal.fields(record, run.run_id)
                if data.get("n") == hitl.ASK and isinstance(data.get("i"), dict):
                    asked: dict[str, Any] = data["i"]
                    return asked
        return None

    async def emit(
        self, name: str, payload: Any = None, *, id: str | None = None
    ) -> list[RunHandle]:
        """Start one run of every workflow subscribed to event ``name``
        (``@workflow(triggers=[event(name)])``), with the JSON object ``payload`` as
        its keyword arguments; the runs are stored when this returns. The same ``id``
        again starts nothing new and returns the same runs (``None``: a new id). Runs
        of workflows this engine serves are executed here, others by workers."""
        await self.open()
        runs = await triggers.emit(self.store, name, payload, id)
        if self.execute:  # as a start does: executed here when this code serves it
            served = served_versions()
            for run in runs:
                if run.version in served.get(run.workflow, ()) and run.run_id not in self._active:
                    claimed = await self.store.claim(run.run_id, self.owner, self.lease_seconds)
                    if claimed is not None:
                        self._launch(
                            find_workflow(run.workflow), claimed, replay=claimed.attempt > 1
                        )
        return [RunHandle(self, run.run_id) for run in runs]

    async def schedules(self) -> list[dict[str, Any]]:
        """The stored schedules: definition, paused or not, last and next tick."""
        await self.open()
        now = time.time()
        return [schedules.status(s, now) for s in await self.store.schedules()]

    async def pause_schedule(self, workflow: Callable[..., Any] | str) -> dict[str, Any]:
        """Fire no more ticks of ``workflow``'s schedule, in any process, until resumed."""
        return await self._pause(workflow, True)

    async def resume_schedule(self, workflow: Callable[..., Any] | str) -> dict[str, Any]:
        """Fire ``workflow``'s schedule again, from its next tick: the ticks of the
        pause get no run."""
        return await self._pause(workflow, False)

    async def _pause(self, workflow: Callable[..., Any] | str, paused: bool) -> dict[str, Any]:
        await self.open()
        name = workflow if isinstance(workflow, str) else find_workflow(workflow).name
        now = time.time()
        return schedules.status(await self.store.pause_schedule(name, paused, now), now)

    @property
    def in_flight(self) -> int:
        """How many runs this engine's ``start`` lets in now (being started, or executing
        here): at most ``max_in_flight``."""
        return self._admission.taken

    @property
    def executing(self) -> int:
        """How many runs this engine executes right now."""
        return len(self._active)

    def next_run_end(self) -> asyncio.Event:
        """An event set when the next run executing here stops (finished, suspended,
        given back), whoever started it (a worker's claim, ``start``, a parent's child):
        take it before reading :attr:`executing`, wait for it when that is too many."""
        if self._run_left is None:
            self._run_left = asyncio.Event()
        return self._run_left

    def task(self, run_id: str) -> asyncio.Task[Any] | None:
        """The task executing ``run_id`` here, if this engine executes it."""
        active = self._active.get(run_id)
        return None if active is None else active.task

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks of every run this engine executes."""
        return [a.task for a in self._active.values() if a.task is not None]

    # -- reading

    async def get_run(self, run_id: str) -> RunInfo:
        """The run as stored; ``question`` set when it waits for a person's answer."""
        await self.open()
        run = await self.store.get_run(run_id)
        run.question = await self._question(run)
        return run

    async def runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        limit: int | None = None,
        waiting_for: str | None = None,
        before: str | None = None,
    ) -> list[RunInfo]:
        """Runs in the store, newest first. ``waiting_for``: only waiting runs that wait
        for ``"person"`` (an answer, their ``question`` set), an ``"event"`` or a
        ``"timer"``. ``before`` (a run id): only runs older than it (the next page)."""
        await self.open()
        if waiting_for is None:
            return await self.store.list_runs(
                status=status, workflow=workflow, limit=limit, before=before
            )
        if waiting_for not in hitl.WAITING_FOR:
            raise ConfigurationError(
                f"waiting_for is one of {', '.join(hitl.WAITING_FOR)}, not {waiting_for!r}"
            )
        if status not in (None, WAITING):
            return []
        found = []
        for run in await self.store.list_runs(status=WAITING, workflow=workflow, before=before):
            if hitl.waits_for(run) == waiting_for:
                run.question = await self._question(run)
                found.append(run)
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def records(self, run_id: str) -> list[_core.Record]:
        """The run's journal records, decoded, in step order (``journal`` reads them)."""
        await self.open()
        records = []
        try:
            for raw in await self.store.journal(run_id):
                records += _core.decode_records(raw)
        except JournalCorruptError as exc:
            raise exc.for_run(run_id) from exc
        records.sort(key=attrgetter("seq"))
        return records

    async def journal(self, run_id: str) -> list[JournalEntry]:
        """The run's recorded steps, in order."""
        await self.open()
        await self.store.get_run(run_id)  # RunNotFoundError for an unknown id
        entries = []
        for record in await self.records(run_id):
            data = journal.fields(record, run_id)
            entries.append(
                JournalEntry(
                    seq=record.seq,
                    name=data.get("n", ""),
                    kind=KIND_NAMES.get(record.kind, str(record.kind)),
                    key=data.get("k"),
                    input=data.get("i"),
                    output=data.get("o"),
                    error=data.get("e"),
                    attempt=record.attempt,
                    started_at=data.get("t0", 0.0),
                    finished_at=data.get("t1", 0.0),
                    child=data.get("child"),
                )
            )
        return entries

    async def attempts(self, run_id: str) -> dict[int, list[dict[str, Any]]]:
        """The failed attempts of the run's steps that were retried, by step: each with
        ``attempt`` (from 1), ``t0``/``t1`` (when it ran), ``next`` (when the next attempt
        was due) and ``e`` (its error: type, message, traceback)."""
        await self.open()
        await self.store.get_run(run_id)
        return journal.failed_attempts(await self.store.attempts(run_id))

    async def state(
        self,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """The durable state of one scope, read from outside any run."""
        await self.open()
        if [session_id, user_id, run_id].count(None) != 2:
            raise ConfigurationError("name exactly one of session_id, user_id, run_id")
        if run_id is not None:
            values: dict[str, Any] = {}
            for entry in await self.journal(run_id):
                if type(entry.input) is not str:
                    continue  # a session's or a user's state: its input is [scope, key, value]
                if entry.name == "@state.set":
                    values[entry.input] = entry.output
                elif entry.name == "@state.delete":
                    values.pop(entry.input, None)
            return values
        scope = f"session:{session_id}" if session_id is not None else f"user:{user_id}"
        return {key: serde.loads(raw) for key, raw in (await self.store.state_items(scope)).items()}

    async def logs(self, run_id: str) -> list[dict[str, Any]]:
        """The lines the run's ``ctx.logger`` wrote (time, level, message, step position)."""
        await self.open()
        await self.store.get_run(run_id)
        return [serde.loads(line) for line in await self.store.logs(run_id)]

    # -- execution

    def _launch(
        self, spec: WorkflowSpec, run: RunInfo, replay: bool, admission: Admission | None = None
    ) -> _Active:
        """Execute the run in a task of its own; its end gives its place in ``admission``
        back, if it holds one."""
        active = _Active(run.fence, admission)
        self._active[run.run_id] = active
        loop = asyncio.get_running_loop()
        task = active.task = loop.create_task(
            self._execute(spec, run, active, replay), name=f"surestep-run-{run.run_id}"
        )
        task.add_done_callback(active, context=_CALLBACK_CONTEXT)
        if self._heartbeat is None:
            self._heartbeat = loop.create_task(self._beat(), name="surestep-heartbeat")
        return active

    async def _execute(
        self, spec: WorkflowSpec, run: RunInfo, active: _Active, replay: bool
    ) -> Any:
        store, run_id = self.store, run.run_id
        recorder: Recorder | None = None
        try:
            try:
                index = None
                retried = None
                if replay:
                    index = await self._replay_index(run_id)
                    retried = journal.failed_attempts(await store.attempts(run_id))
                recorder = Recorder(run, store, index)
                ctx = WorkflowContext(run, recorder, self, self.inline_sleep, self._tracer, retried)
                body = _workflow_body(spec, ctx, run)
                # A parked run keeps neither its row, nor its arguments, nor what replay read.
                del run, index, retried
                if self._tracer is None:
                    value = await body
                else:
                    attributes = {
                        "surestep.run_id": run_id,
                        "surestep.workflow": spec.name,
                        "surestep.attempt": ctx.attempt,
                        "surestep.replay": replay,
                    }
                    name = f"surestep.run {spec.name}"
                    with self._tracer.start_as_current_span(name, attributes=attributes):
                        value = await body
                recorder.check_all_replayed()
                result, encoded = convert.journal_encoded(
                    value, "the result of workflow %r", spec.name
                )
                await recorder.settle()
            except (LeaseLostError, StoreError, asyncio.CancelledError, Suspended):
                raise
            except Exception as exc:
                if recorder is not None:
                    await recorder.settle()
                error = describe(exc)
                await store.finish(run_id, active.fence, FAILED, None, error, self._keep(spec))
                raise WorkflowFailedError(
                    run_id, error["type"], error["message"], error["traceback"]
                ) from exc
            # The result's bytes as they are (encoded once); a None result stays None.
            stored = None if result is None else serde.Fragment(encoded)
            await store.finish(run_id, active.fence, COMPLETED, stored, None, self._keep(spec))
            return result
        except Suspended as suspended:
            assert recorder is not None
            await recorder.settle()
            if not suspended.given_back:
                await store.suspend(run_id, active.fence, suspended.wake_at, suspended.event)
            raise
        except asyncio.CancelledError:
            if active.lost:  # cancelled, or the lease moved on: write nothing more
                raise LeaseLostError(run_id, active.fence) from None
            await _quietly(store.release(run_id, active.fence))  # closing: give the run back
            raise
        except LeaseLostError:
            log.warning("run %s: lease lost; another engine continues it", run_id)
            raise
        except StoreError:
            log.exception("run %s: the store failed; the run stays recoverable", run_id)
            raise
        finally:
            self._active.pop(run_id, None)
            active.give_back()
            left = self._run_left
            if left is not None:
                self._run_left = None
                left.set()

    async def _replay_index(self, run_id: str) -> _core.ReplayIndex:
        """The index of the run's journal, from one read of it."""
        records = await self.store.journal(run_id)
        try:
            return _core.ReplayIndex.from_records(records)
        except JournalCorruptError as exc:
            raise exc.for_run(run_id) from exc

    async def run_child(
        self,
        spec: WorkflowSpec,
        child_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: WorkflowContext,
    ) -> Any:
        """Start (or find again) the child run ``child_id`` and wait for its result
        (the :class:`~surestep.runtime.Runtime` side of ``ctx.step(child_workflow, ...)``)."""
        what = f"the input of child workflow {spec.name!r}"
        args, kwargs = convert.journal_arguments(args, kwargs, what)
        child = child_row(spec, child_id, args, kwargs, parent)
        stored = await self.store.create_child(child, self.owner, self.lease_seconds)
        if child_id not in self._active:
            if stored.owner == self.owner and not stored.finished:
                self._launch(spec, stored, replay=stored.attempt > 1)
            elif claimable(stored, time.time()):
                claimed = await self.store.claim(child_id, self.owner, self.lease_seconds)
                if claimed is not None:
                    self._launch(spec, claimed, replay=True)
        return await self.result(child_id)

    async def _wake_due(self) -> None:
        """Resume the waiting runs that come due (timers, events), for the workflows known here."""
        while True:
            try:
                served = served_versions()
                runs = await self.store.claim_available(
                    self.owner, self.lease_seconds, 100, workflows=served, due_only=True
                )
                for run in runs:
                    self._launch(find_workflow(run.workflow), run, replay=True)
                if runs:
                    continue
                wake = await self.store.next_wake(served)
                timeout = 60.0 if wake is None else min(max(wake - time.time(), 0.0), 60.0)
                await self.store.wait_changed(timeout)
            except StoreError:
                log.exception("resuming due runs failed; retrying")
                await asyncio.sleep(1.0)

    async def _announce(self) -> None:
        await self.store.announce(self.owner, served_versions(), self.lease_seconds)

    async def _stay_live(self) -> None:
        """Renew this engine's entry among the live engines (with the versions it serves
        now), a third of a lease apart."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._announce()
            except StoreError:
                log.exception("announcing this engine failed; retrying")

    async def _beat(self) -> None:
        """Renew the leases of the runs executing here, a third of a lease apart."""
        while self._active:
            await asyncio.sleep(self.lease_seconds / 3)
            held = [(run_id, a.fence) for run_id, a in self._active.items()]
            try:
                lost = await self.store.renew(held, self.owner, self.lease_seconds)
            except StoreError:
                log.exception("lease renewal failed; retrying")
                continue
            for run_id in lost:
                active = self._active.get(run_id)
                if active is not None and active.task is not None:
                    active.lost = True
                    active.task.cancel()
        self._heartbeat = None

    async def result(self, run_id: str) -> Any:
        """Wait for the run's outcome: its result; ``WorkflowFailedError`` if it failed,
        ``RunCancelledError`` if it was cancelled. The engine must be open (``async with``)."""
        return await self._outcome(run_id, None)

    async def _outcome(self, run_id: str, active: _Active | None) -> Any:
        """``result``, first from ``active``'s task when given (the run a start launched)."""
        while True:
            if active is None:
                active = self._active.get(run_id)
            if active is not None:
                task = active.task
                assert task is not None  # set as it is launched
                if not task.done():  # as asyncio.shield: woken by the task's done callback
                    waiter = task.get_loop().create_future()
                    if active.waiters is None:
                        active.waiters = [waiter]
                    else:
                        active.waiters.append(waiter)
                    try:
                        await waiter
                    except asyncio.CancelledError:  # the waiter is cancelled, not the run
                        if active.waiters is not None:
                            with contextlib.suppress(ValueError):
                                active.waiters.remove(waiter)
                        raise
                try:
                    return task.result()
                except (LeaseLostError, Suspended, asyncio.CancelledError):
                    pass  # it waits, was cancelled, or continues elsewhere: ask the store
                active = None
            run = await self.store.get_run(run_id)
            if run.status == COMPLETED:
                return run.result
            if run.status == FAILED:
                error = run.error or {}
                raise WorkflowFailedError(
                    run_id,
                    error.get("type", "?"),
                    error.get("message", ""),
                    error.get("traceback", ""),
                )
            if run.status == CANCELLED:
                raise RunCancelledError(f"run {run_id} was cancelled")
            if run_id in self._active:
                continue  # resumed here meanwhile
            # Woken when any run finishes; the timeout only bounds a missed wake-up.
            await self.store.wait_changed(timeout=5.0)


def run_identities(
    spec: WorkflowSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    session_id: str | None,
    user_id: str | None,
) -> tuple[str | None, str | None]:
    """The run's session and user: ``start``'s keywords, which also go to the workflow's
    own ``session_id`` / ``user_id`` parameter when it has one; an argument given to
    such a parameter names them too (``kwargs`` is completed in place)."""
    if not spec.names_identities:
        return session_id, user_id
    parameters = spec.signature.parameters
    named = {"session_id": session_id, "user_id": user_id}
    for name, value in named.items():
        param = parameters.get(name)
        if param is None or param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
            continue
        if value is not None and name not in kwargs:
            kwargs[name] = value
    if all(value is not None for value in named.values()):
        return session_id, user_id
    try:
        given = spec.signature.bind_partial(None, *args, **kwargs).arguments
    except TypeError:
        return session_id, user_id  # check_call names what is wrong with the arguments
    for name in named:
        param = parameters.get(name)
        if named[name] is None and param is not None and param.kind is not param.VAR_KEYWORD:
            value = given.get(name)
            named[name] = value if isinstance(value, str) else None
    return named["session_id"], named["user_id"]


# The context the engine's own done callbacks run in: they read no context variable,
# and a callback given none would copy the caller's (an object per callback).
_CALLBACK_CONTEXT = contextvars.Context()


def _workflow_body(
    spec: WorkflowSpec, ctx: WorkflowContext, run: RunInfo
) -> Coroutine[Any, Any, Any]:
    """The workflow's coroutine over the run's arguments (read as the parameters' types
    when it has typed parameters)."""
    if spec.conversion is None:
        return spec.fn(ctx, *run.args, **run.kwargs)  # type: ignore[no-any-return]
    args, kwargs = spec.conversion.decode_arguments(run.args, run.kwargs, skip=1)
    return spec.fn(ctx, *args, **kwargs)  # type: ignore[no-any-return]


async def _quietly(aw: Coroutine[Any, Any, Any]) -> None:
    try:
        await aw
    except Exception:
        log.debug("ignored while closing", exc_info=True)


def run(
    workflow: Callable[..., Any] | str,
    *args: Any,
    path: str | os.PathLike[str] = ".surestep",
    durability: str = "fsync",
    **kwargs: Any,
) -> Any:
    """Run a workflow to completion from synchronous code, on uvloop where available."""

    async def main() -> Any:
        async with Engine(path, durability=durability) as engine:
            return await engine.run(workflow, *args, **kwargs)

    return run_loop(main())


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
