"""Schedules: one run per tick across worker processes killed around ticks, catch-up
after downtime, pause and resume, on both backends; cron ticks in a time zone
across daylight saving time; the options' checks. No timed assertion: the tests
count runs per tick key."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from surestep import ConfigurationError, DefinitionError, Engine, WorkflowContext, workflow
from surestep.engine import run_loop
from surestep.errors import ScheduleNotFoundError
from surestep.schedules import (
    LATE_AFTER,
    MAX_CATCHUP,
    fire_due,
    next_tick,
    plan,
    ticks_between,
)
from surestep.store import Store, open_store
from surestep.store.base import ScheduleInfo

HERE = Path(__file__).parent
PREFIX = "schedule:ticker:"

SERVE = """
import sys
from surestep.engine import run_loop
from surestep.worker import serve
ready = lambda: print("ready", flush=True)
run_loop(serve(sys.argv[1], ["support.ways_in_workload"], concurrency=8, lease_seconds=2.0,
               on_ready=ready))
"""


def spawn(store: str, every: float = 1.0, catchup: str = "all") -> subprocess.Popen[str]:
    """A worker process serving ``ways_in_workload``, returned once it serves."""
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "SURESTEP_TEST_EVERY": str(every),
        "SURESTEP_TEST_CATCHUP": catchup,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, store], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def stop(procs: list[subprocess.Popen[str]], sig: int = signal.SIGTERM) -> list[int]:
    for proc in procs:
        proc.send_signal(sig)
    codes = [proc.wait(timeout=60) for proc in procs]
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.close()
    return codes


async def fired(store: Store) -> dict[float, str]:
    """Each tick of ``ticker``'s schedule that started a run, with the run's id."""
    keys = await store.idempotency_keys(PREFIX)
    return {
        datetime.fromisoformat(key[len(PREFIX) :]).timestamp(): run for key, run in keys.items()
    }


async def until(store: Store, done: Callable[[], Awaitable[bool]], limit: float = 60.0) -> None:
    """Wait for the store's changes until ``done()`` is true (``limit``: a hang guard)."""

    async def loop() -> None:
        while not await done():
            await store.wait_changed(1.0)

    await asyncio.wait_for(loop(), limit)


def sleep_to(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


# -- exactly one run per tick, across processes


def test_one_run_per_tick_across_workers_killed_around_ticks(store_url: str) -> None:
    rng = random.Random()
    workers = [spawn(store_url) for _ in range(3)]
    kills = 0
    try:
        for i in range(4):
            # SIGKILL a worker just before a tick, or just after (in its firing, perhaps),
            # and start another.
            tick = math.ceil(time.time()) + 1
            sleep_to(tick - 0.01 if i % 2 else tick + 0.003)
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            assert victim.stdout is not None
            victim.stdout.close()
            kills += 1
            workers.append(spawn(store_url))

        async def check() -> tuple[dict[float, str], list[str]]:
            store = open_store(store_url)
            await store.open()
            try:
                last = math.floor(time.time())

                async def fired_all() -> bool:
                    ticks = await fired(store)
                    runs = await store.list_runs(workflow="ticker")
                    return (
                        bool(ticks)
                        and max(ticks) >= last + 2
                        and all(run.status == "completed" for run in runs)
                    )

                await until(store, fired_all)
                ticks = await fired(store)
                statuses = [run.run_id for run in await store.list_runs(workflow="ticker")]
                return ticks, statuses
            finally:
                await store.close()

        ticks, run_ids = run_loop(check())
    finally:
        assert stop(workers) == [0, 0, 0]
    assert kills == 4
    # Every tick from the first on started exactly one run, and no run started otherwise.
    ordered = sorted(ticks)
    assert ordered == [ordered[0] + n for n in range(len(ordered))]
    assert len(set(ticks.values())) == len(ticks)
    assert sorted(run_ids) == sorted(ticks.values())
    assert len(ticks) >= 6


# -- catch-up, pause, resume (engines in this process; runs stay pending: no worker)


@pytest.mark.parametrize("catchup", ["all", "latest"])
async def test_catchup_after_downtime(store_url: str, catchup: str) -> None:
    @workflow(name="ticker", every=1, catchup=catchup)
    async def ticker(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine:
        await until(engine.store, lambda: _count(engine.store, 2))
    async with Engine(store_url, execute=False) as reader:
        before = await fired(reader.store)
        last_before = max(before)
        await asyncio.sleep(3.5)  # no engine runs a scheduler: ticks are missed
        up = math.floor(time.time())
    async with Engine(store_url) as engine:
        await until(engine.store, lambda: _after(engine.store, up))
    # Read once the engine is closed: its scheduler fires a tick a second until then.
    async with Engine(store_url, execute=False) as reader:
        after = await fired(reader.store)
        runs = [run.run_id for run in await reader.runs(workflow="ticker")]
    missed = [last_before + n for n in range(1, int(up - last_before) + 1)]
    assert len(missed) >= 3
    new = sorted(t for t in after if t > last_before)
    if catchup == "all":
        assert new[: len(missed)] == missed  # one run each, in order
    else:  # one run, for the latest of them: the earlier ones get none
        assert not [t for t in new if t < up]
        assert new[0] >= up
    assert len(set(after.values())) == len(after)
    assert sorted(runs) == sorted(after.values())


async def _count(store: Store, n: int) -> bool:
    return len(await fired(store)) >= n


async def _after(store: Store, moment: float) -> bool:
    return any(t >= moment for t in await fired(store))


async def test_pause_and_resume(store_url: str) -> None:
    @workflow(name="ticker", every=1)
    async def ticker(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine, Engine(store_url) as other:
        await until(engine.store, lambda: _count(engine.store, 1))
        [paused] = [await other.pause_schedule("ticker")]
        assert paused["paused"] and paused["next_tick"] is None
        paused_at = time.time()
        before = await fired(engine.store)
        await asyncio.sleep(2.5)  # two engines' schedulers run all along
        assert await fired(engine.store) == before  # no tick fired while paused
        [listed] = await engine.schedules()
        assert listed["paused"] is True
        resumed = await engine.resume_schedule(ticker)
        assert resumed["paused"] is False and resumed["next_tick"] > paused_at
        await until(engine.store, lambda: _count(engine.store, len(before) + 1))
        new = sorted(set(await fired(engine.store)) - set(before))
        assert new and new[0] > paused_at + 2  # the ticks of the pause got no run
        with pytest.raises(ScheduleNotFoundError):
            await engine.pause_schedule("no_such_workflow")


async def test_a_deployment_decides_the_schedule(store_url: str) -> None:
    @workflow(name="report", version="v1", every=60)
    async def report_v1(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine:
        [schedule] = await engine.schedules()
        assert (schedule["version"], schedule["every"]) == ("v1", 60.0)
        await engine.deploy("report")
    from surestep import decorators

    decorators._workflows.pop("report")

    @workflow(name="report", version="v2", cron="0 9 * * 1", timezone="Europe/Paris")
    async def report_v2(ctx: WorkflowContext) -> int:
        return 2

    async with Engine(store_url) as engine:  # v2 serves, but v1 is deployed: v1's stays
        [schedule] = await engine.schedules()
        assert (schedule["version"], schedule["every"]) == ("v1", 60.0)
        await engine.deploy("report")  # now v2's
        [schedule] = await engine.schedules()
        assert (schedule["version"], schedule["cron"], schedule["timezone"]) == (
            "v2",
            "0 9 * * 1",
            "Europe/Paris",
        )
        local = datetime.fromtimestamp(schedule["next_tick"], ZoneInfo("Europe/Paris"))
        assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)


@pytest.mark.parametrize(("catchup", "runs"), [("all", 11), ("latest", 1), ("none", 0)])
async def test_fire_due_applies_the_catchup_policy(store_url: str, catchup: str, runs: int) -> None:
    """Downtime simulated by the times given: the store takes them from the caller."""
    base = math.floor(time.time() / 60) * 60
    store = open_store(store_url)
    await store.open()
    try:
        schedule = ScheduleInfo("ticker", "v1", None, 60.0, "UTC", catchup)
        await store.register_schedule("ticker", "v1", schedule, base - 600 - 1)
        # 11 ticks due (base - 600 ... base), the latest 30 s late.
        assert await fire_due(store, base + 30) == base + 60
        ticks = await fired(store)
        assert sorted(ticks) == [base - 60 * n for n in range(runs)][::-1]
        [stored] = await store.schedules()
        assert stored.last_tick == base  # the missed ticks are behind it, fired or not
        # The next tick, on time: every policy fires it.
        await fire_due(store, base + 61)
        assert sorted(await fired(store))[-1] == base + 60
        assert len(await store.list_runs(workflow="ticker")) == runs + 1
    finally:
        await store.close()


# -- ticks (croniter in the schedule's time zone)


def cron(expression: str, zone: str = "Europe/Paris", catchup: str = "latest") -> ScheduleInfo:
    return ScheduleInfo("wf", "v1", expression, None, zone, catchup, since=0.0)


def at(zone: str, *fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold).timestamp()  # type: ignore[misc]


def local(tick: float, zone: str = "Europe/Paris") -> str:
    return datetime.fromtimestamp(tick, ZoneInfo(zone)).isoformat()


def test_cron_ticks_follow_daylight_saving_time() -> None:
    daily = cron("30 2 * * *")
    # Clocks go back on 2026-10-25 (03:00 CEST -> 02:00 CET): 02:30 comes twice; a
    # daily schedule runs once, at the first.
    start = at("Europe/Paris", 2026, 10, 24, 12, 0)
    ticks = [start]
    for _ in range(3):
        ticks.append(next_tick(daily, ticks[-1]))
    assert [local(t) for t in ticks[1:]] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    back = ticks_between(daily, start, at("Europe/Paris", 2026, 10, 27, 0, 0), 10)
    assert [local(t) for t in back] == ["2026-10-26T02:30:00+01:00", "2026-10-25T02:30:00+02:00"]
    # Clocks go forward on 2026-03-29 (02:00 CET -> 03:00 CEST): 02:30 does not exist
    # that day; croniter fires at 03:00, the moment after the gap.
    spring = next_tick(daily, at("Europe/Paris", 2026, 3, 28, 12, 0))
    assert local(spring) == "2026-03-29T03:00:00+02:00"
    # An hourly schedule runs each real hour, both 02:00 of the night clocks go back.
    hourly = cron("0 * * * *")
    got = ticks_between(
        hourly, at("Europe/Paris", 2026, 10, 25, 0, 30), at("Europe/Paris", 2026, 10, 25, 3, 30), 10
    )
    assert [local(t) for t in reversed(got)] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]
    # The same cron in two zones: the ticks are those zones' 09:00.
    for zone in ("America/New_York", "Asia/Tokyo", "UTC"):
        tick = next_tick(cron("0 9 * * *", zone), at("UTC", 2026, 7, 1, 0, 0))
        assert local(tick, zone).startswith("2026-07-01T09:00:00") or local(tick, zone).startswith(
            "2026-07-02T09:00:00"
        )


def test_every_ticks_on_multiples_of_the_interval() -> None:
    schedule = ScheduleInfo("wf", "v1", None, 2.5, "UTC", "latest", since=0.0)
    assert ticks_between(schedule, 100.0, 107.6, 10) == [107.5, 105.0, 102.5]
    assert next_tick(schedule, 107.5) == 110.0 and next_tick(schedule, 107.4) == 107.5


def test_catchup_plans() -> None:
    def plan_for(catchup: str, last: float, now: float) -> tuple[list[float], float | None]:
        schedule = ScheduleInfo("wf", "v1", None, 60.0, "UTC", catchup, last_tick=last, since=0.0)
        return plan(schedule, now)

    on_time = 6000.0 + 0.2
    for catchup in ("all", "latest", "none"):
        assert plan_for(catchup, 5940.0, on_time) == ([6000.0], None)  # the usual case
        assert plan_for(catchup, 6000.0, on_time) == ([], None)  # fired already
    down = 6000.0 + 3 * 60 + LATE_AFTER + 1  # ticks 6060, 6120, 6180 missed, the last late
    assert plan_for("all", 6000.0, down) == ([6060.0, 6120.0, 6180.0], None)
    assert plan_for("latest", 6000.0, down) == ([6180.0], None)
    assert plan_for("none", 6000.0, down) == ([], 6180.0)  # skipped to, no run
    assert plan_for("none", 6000.0, 6180.0 + LATE_AFTER - 1) == ([6180.0], None)  # not late
    # "all" is bounded: after a long downtime, the last MAX_CATCHUP ticks only.
    fire, _ = plan_for("all", 0.0, 60.0 * 1000)
    assert len(fire) == MAX_CATCHUP and fire[-1] == 60_000.0


# -- the options


def test_schedule_options_are_checked() -> None:
    bad: list[dict[str, object]] = [
        {"cron": "*/5 * * *"},  # four fields
        {"cron": "61 * * * *"},
        {"cron": "* * * * * *"},  # seconds: every= does that
        {"cron": 5},
        {"cron": "* * * * *", "every": 5},
        {"every": 0.5},
        {"every": True},
        {"every": "5"},
        {"every": 1.0001},
        {"every": float("inf")},
        {"every": 5, "timezone": "Europe/Paris"},
        {"cron": "* * * * *", "timezone": "Mars/Olympus"},
        {"cron": "* * * * *", "catchup": "some"},
        {"timezone": "UTC"},
        {"catchup": "all"},
        {"triggers": "user.created"},
        {"triggers": ["user.created"]},
    ]
    for options in bad:
        with pytest.raises(ConfigurationError):
            workflow(**options)  # type: ignore[call-overload]

    with pytest.raises(DefinitionError, match="no arguments"):

        @workflow(every=5)
        async def needs_input(ctx: WorkflowContext, order_id: str) -> None: ...

    @workflow(every=timedelta(minutes=5), catchup="none")
    async def defaults(ctx: WorkflowContext, limit: int = 10) -> None: ...

    spec = defaults.__surestep__  # type: ignore[attr-defined]
    assert (spec.schedule.every, spec.schedule.catchup, spec.schedule.cron) == (300.0, "none", None)


def test_the_schedules_command(store_url: str) -> None:
    async def store_one() -> None:
        store = open_store(store_url)
        await store.open()
        try:
            schedule = ScheduleInfo("report", "v1", "0 9 * * 1-5", None, "Asia/Tokyo", "none")
            await store.register_schedule("report", "v1", schedule, time.time())
        finally:
            await store.close()

    def surestep(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "surestep.cli", *args, "--store", store_url],
            capture_output=True,
            text=True,
            timeout=120,
        )

    run_loop(store_one())
    listed = surestep("schedules", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["workflow"], row["cron"], row["timezone"], row["catchup"], row["paused"]) == (
        "report",
        "0 9 * * 1-5",
        "Asia/Tokyo",
        "none",
        False,
    )
    upcoming = datetime.fromtimestamp(row["next_tick"], ZoneInfo("Asia/Tokyo"))
    assert (upcoming.hour, upcoming.minute) == (9, 0) and upcoming.weekday() < 5
    table = surestep("schedules")
    assert table.returncode == 0 and "cron 0 9 * * 1-5 (Asia/Tokyo)" in table.stdout
    assert surestep("schedules", "pause", "report").stdout == "paused the schedule of report\n"
    [row] = json.loads(surestep("schedules", "--json").stdout)
    assert row["paused"] is True and row["next_tick"] is None
    assert "paused" in surestep("schedules").stdout
    assert surestep("schedules", "resume", "report").returncode == 0
    assert json.loads(surestep("schedules", "--json").stdout)[0]["paused"] is False
    missing = surestep("schedules", "pause", "nope")
    assert missing.returncode == 3 and "no schedule for workflow 'nope'" in missing.stderr


async def test_a_schedule_this_host_cannot_compute_does_not_stop_the_others(
    store_url: str,
) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        now = time.time()
        alien = ScheduleInfo("alien", "v1", "0 * * * *", None, "Nowhere/Atlantis", "latest")
        await store.register_schedule("alien", "v1", alien, now - 7200)
        fine = ScheduleInfo("ticker", "v1", None, 60.0, "UTC", "latest")
        await store.register_schedule("ticker", "v1", fine, now - 7200)
        assert await fire_due(store, now) == next_tick(fine, now)
        assert len(await fired(store)) == 1
    finally:
        await store.close()
