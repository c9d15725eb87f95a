"""Schedules: workflows started on a cron expression, or every so many seconds.

``@workflow(cron="*/5 * * * *", timezone="Europe/Paris")`` or
``@workflow(every=30)`` (seconds, or a ``timedelta``; at least one second)
declares a workflow's schedule. An executing engine stores the schedules of
the workflows it serves when it opens, and so does ``engine.deploy``; when two
versions of a workflow declare different schedules, the last deployed version's
schedule wins (:func:`~surestep.store.base.keep_registration`).

A tick is an instant in epoch seconds: a cron expression's ticks are computed
by croniter in the schedule's time zone (zoneinfo), so they follow daylight
saving time; ``every=N`` ticks at the multiples of N seconds since the Unix
epoch, so that every engine computes the same ticks. Each tick starts at most
one run: the store fires it (:meth:`~surestep.store.base.Store.fire_schedule`)
by advancing the schedule's last tick and creating the run in one transaction,
with ``schedule:<workflow>:<tick, ISO 8601 UTC>`` as the run's idempotency key.
The run is pending, with no arguments, for a worker serving the workflow's
current version.

After downtime (no engine was running, or all were too busy), ``catchup``
decides what the missed ticks get:

``"latest"`` (default)  one run, for the latest missed tick;
``"all"``               one run per missed tick, for the last :data:`MAX_CATCHUP` of them;
``"none"``              no run for a tick found more than :data:`LATE_AFTER` seconds
                        after it came due; the schedule carries on with the next tick.

A schedule's ticks start after it was first stored: ticks from before then, from
before its definition last changed, or from while it was paused never fire.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigurationError, StoreError
from .store.base import RunInfo, ScheduleInfo, Store, new_run_id

if TYPE_CHECKING:
    from .decorators import WorkflowSpec

log = logging.getLogger("surestep.schedules")

CATCHUP = ("latest", "all", "none")
MAX_CATCHUP = 100  # catchup="all": missed ticks beyond the last 100 get no run
LATE_AFTER = 10.0  # seconds: catchup="none" gives no run to a tick found later than this
MIN_EVERY = 1.0  # seconds: the shortest interval
LONGEST_SLEEP = 60.0  # the scheduler looks again at least this often
REREAD_GAP = 0.5  # seconds between two reads of the schedules when the store keeps changing


@dataclass(frozen=True)
class Schedule:
    """When a workflow is started: a cron expression in a time zone, or an interval."""

    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    catchup: str = "latest"


def define(
    cron: Any = None, every: Any = None, timezone: Any = None, catchup: Any = None
) -> Schedule | None:
    """The schedule that ``@workflow``'s options declare, checked; ``None`` for none.
    ``ConfigurationError`` names the option that is wrong."""
    if cron is None and every is None:
        for option, value in (("timezone", timezone), ("catchup", catchup)):
            if value is not None:
                raise ConfigurationError(f"{option}= goes with cron= or every=, which are missing")
        return None
    if cron is not None and every is not None:
        raise ConfigurationError("give cron= or every=, not both")
    if catchup is None:
        catchup = "latest"
    if catchup not in CATCHUP:
        raise ConfigurationError(f"catchup must be one of {CATCHUP}, not {catchup!r}")
    if every is not None:
        if timezone is not None:
            raise ConfigurationError("timezone= goes with cron=; every= counts seconds")
        return Schedule(every=_interval(every), catchup=catchup)
    zone = "UTC" if timezone is None else timezone
    _zone(zone)
    return Schedule(cron=_cron(cron), timezone=zone, catchup=catchup)


def _interval(every: Any) -> float:
    if isinstance(every, timedelta):
        seconds = every.total_seconds()
    elif isinstance(every, (int, float)) and not isinstance(every, bool):
        seconds = float(every)
    else:
        raise ConfigurationError(f"every= is a number of seconds or a timedelta, not {every!r}")
    if not math.isfinite(seconds) or seconds < MIN_EVERY:
        raise ConfigurationError(f"every= is at least {MIN_EVERY:g} second, not {every!r}")
    if round(seconds * 1000) != seconds * 1000:
        raise ConfigurationError(f"every= is a whole number of milliseconds, not {every!r}")
    return seconds


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"timezone= is an IANA time zone name, not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"timezone={name!r} is not a time zone this system knows (an IANA name such as "
            "'Europe/Paris'; on a system without tz data, pip install tzdata)"
        ) from None


def _cron(expression: Any) -> str:
    from croniter import croniter

    if not isinstance(expression, str) or not expression.strip():
        raise ConfigurationError(f"cron= is a cron expression, not {expression!r}")
    text = " ".join(expression.split())
    if not text.startswith("@") and len(text.split()) != 5:
        raise ConfigurationError(
            f"cron={expression!r}: a cron expression has 5 fields (minute hour day month "
            "weekday) or is an alias such as @hourly; for seconds use every="
        )
    if not croniter.is_valid(text):
        raise ConfigurationError(f"cron={expression!r} is not a valid cron expression")
    return text


# -- ticks


def _step_ms(every: float) -> int:
    return round(every * 1000)


def ticks_between(schedule: ScheduleInfo, after: float, now: float, limit: int) -> list[float]:
    """The ticks in ``(after, now]``, newest first, at most ``limit`` of them."""
    found: list[float] = []
    if schedule.every is not None:
        step = _step_ms(schedule.every)
        tick_ms = math.floor(now * 1000) // step * step
        while len(found) < limit and tick_ms / 1000 > after:
            found.append(tick_ms / 1000)
            tick_ms -= step
        return found
    # From just after now, so that a tick at exactly now counts.
    moments = _cron_ticks(schedule, now + 0.001)
    while len(found) < limit:
        tick = _cron_step(schedule, moments, backwards=True)
        if tick <= after:
            break
        found.append(tick)
    return found


def next_tick(schedule: ScheduleInfo, after: float) -> float:
    """The first tick after ``after``."""
    if schedule.every is not None:
        step = _step_ms(schedule.every)
        return (math.floor(after * 1000) // step + 1) * step / 1000
    return _cron_step(schedule, _cron_ticks(schedule, after), backwards=False)


def _cron_ticks(schedule: ScheduleInfo, start: float) -> Any:
    from croniter import croniter

    assert schedule.cron is not None
    return croniter(schedule.cron, datetime.fromtimestamp(start, ZoneInfo(schedule.timezone)))


def _cron_step(schedule: ScheduleInfo, moments: Any, backwards: bool) -> float:
    """The next (or previous) tick of croniter's ``moments``. When clocks go back, a
    wall-clock time comes twice: croniter gives both, and both are kept for a schedule
    that names no hour (``0 * * * *``: each is another real hour), while a schedule at
    set hours (``30 2 * * *``) keeps the first only, as cron does."""
    assert schedule.cron is not None
    every_hour = _every_hour(schedule.cron)
    while True:
        moment: datetime = moments.get_prev(datetime) if backwards else moments.get_next(datetime)
        if every_hour or not _second_of_two(moment):
            return moment.timestamp()


def _every_hour(cron: str) -> bool:
    if cron.startswith("@"):
        return cron == "@hourly"
    return cron.split()[1].startswith("*")


def _second_of_two(moment: datetime) -> bool:
    """Whether ``moment`` is the second time its wall-clock time comes (clocks went back)."""
    wall = moment.replace(tzinfo=None)
    first = wall.replace(tzinfo=moment.tzinfo, fold=0)
    second = wall.replace(tzinfo=moment.tzinfo, fold=1)
    return first.utcoffset() != second.utcoffset() and moment.timestamp() == second.timestamp()


def plan(schedule: ScheduleInfo, now: float) -> tuple[list[float], float | None]:
    """What is due at ``now``: the ticks to fire (oldest first), and a tick to skip to
    without a run (``catchup="none"``, a tick found too late)."""
    after = max(schedule.since, schedule.last_tick or schedule.since)
    limit = MAX_CATCHUP if schedule.catchup == "all" else 1
    due = ticks_between(schedule, after, now, limit)
    if not due:
        return [], None
    if schedule.catchup == "none" and now - due[0] > LATE_AFTER:
        return [], due[0]
    return due[::-1], None


def tick_key(workflow: str, tick: float) -> str:
    """The idempotency key of the run that ``tick`` of ``workflow``'s schedule starts."""
    return f"schedule:{quote(workflow, safe='')}:{iso(tick)}"


def iso(tick: float) -> str:
    return datetime.fromtimestamp(tick, timezone.utc).isoformat()


def stored(workflow: str, version: str, schedule: Schedule) -> ScheduleInfo:
    """``schedule`` as :meth:`Store.register_schedule` takes it."""
    return ScheduleInfo(
        workflow=workflow,
        version=version,
        cron=schedule.cron,
        every=schedule.every,
        timezone=schedule.timezone,
        catchup=schedule.catchup,
    )


def status(schedule: ScheduleInfo, now: float) -> dict[str, Any]:
    """A stored schedule as ``engine.schedules()`` and ``surestep schedules`` show it."""
    after = max(now, schedule.since, schedule.last_tick or 0.0)
    return {
        "workflow": schedule.workflow,
        "version": schedule.version,
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone,
        "catchup": schedule.catchup,
        "paused": schedule.paused,
        "last_tick": schedule.last_tick,
        "next_tick": None if schedule.paused else next_tick(schedule, after),
    }


# -- firing


async def fire_due(store: Store, now: float) -> float | None:
    """Fire every tick due at ``now`` of every schedule not paused; when the next
    tick comes due (``None``: no schedule)."""
    wake: float | None = None
    for schedule in await store.schedules():
        if schedule.paused:
            continue
        try:
            await _fire(store, schedule, now)
            due = next_tick(schedule, now)
        except StoreError:
            raise
        except Exception:  # this host cannot compute it (a time zone it lacks, say)
            log.exception("schedule of %s: its ticks cannot be computed here", schedule.workflow)
            continue
        wake = due if wake is None else min(wake, due)
    return wake


async def _fire(store: Store, schedule: ScheduleInfo, now: float) -> None:
    fire, skip = plan(schedule, now)
    if skip is not None:
        log.info("schedule of %s: tick %s missed, no run (catchup='none')",
                 schedule.workflow, iso(skip))  # fmt: skip
        await store.fire_schedule(schedule.workflow, schedule.revision, skip, None, "")
    for tick in fire:
        run = RunInfo(new_run_id(), schedule.workflow, schedule.version, args=[], kwargs={})
        key = tick_key(schedule.workflow, tick)
        started = await store.fire_schedule(schedule.workflow, schedule.revision, tick, run, key)
        if started is not None:
            log.info("schedule of %s: tick %s started run %s",
                     schedule.workflow, iso(tick), started.run_id)  # fmt: skip


async def run_scheduler(store: Store) -> None:
    """Fire due ticks until cancelled: sleep until the next tick, or until the store
    changes (a schedule registered, paused or resumed, anywhere)."""
    import asyncio  # here: `surestep --help` imports this module, and no asyncio

    while True:
        try:
            wake = await fire_due(store, time.time())
        except StoreError:
            log.exception("firing schedules failed; retrying")
            await asyncio.sleep(1.0)
            continue
        if wake is None:
            timeout = LONGEST_SLEEP
        else:
            timeout = min(max(wake - time.time(), 0.0), LONGEST_SLEEP)
        started = time.monotonic()
        await store.wait_changed(timeout)
        # Woken by a change (most are runs, not schedules): read again, but not at
        # every change of a busy store.
        waited = time.monotonic() - started
        if waited < timeout:
            await asyncio.sleep(min(REREAD_GAP, timeout - waited))


# -- registration


async def register(store: Store, specs: Sequence[WorkflowSpec], force: bool = False) -> None:
    """Store the schedules ``specs`` declare, and remove those they no longer declare;
    only what differs from the store is written, unless ``force`` (a deploy)."""
    held = {schedule.workflow: schedule for schedule in await store.schedules()}
    now = time.time()
    for spec in specs:
        have = held.get(spec.name)
        want = None if spec.schedule is None else stored(spec.name, spec.version, spec.schedule)
        if not force and (
            (want is None and have is None)
            or (
                want is not None
                and have is not None
                and have.same_definition(want)
                and have.version == want.version
            )
        ):
            continue
        kept = await store.register_schedule(spec.name, spec.version, want, now)
        if kept is None:
            log.info("schedule of %s: removed", spec.name)
        else:
            when = (
                f"cron {kept.cron!r} ({kept.timezone})" if kept.cron else f"every {kept.every:g}s"
            )
            log.info("schedule of %s: %s, catchup=%r, version %s%s", spec.name, when,
                     kept.catchup, kept.version, " (paused)" if kept.paused else "")  # fmt: skip
