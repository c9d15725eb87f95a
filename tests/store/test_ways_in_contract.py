"""The store contract for schedules, event subscriptions and idempotency keys, on
both backends (``store_url``: an LMDB directory, or a fresh PostgreSQL schema)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from surestep.errors import ConfigurationError, ScheduleNotFoundError
from surestep.store import Store, open_store
from surestep.store.base import RunInfo, ScheduleInfo, new_run_id

T0 = 1_800_000_000.0  # "now" for these tests: schedule times are the caller's


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def every(seconds: float, version: str = "v1", catchup: str = "latest") -> ScheduleInfo:
    return ScheduleInfo("wf", version, None, seconds, "UTC", catchup)


def tick_run(version: str = "v1") -> RunInfo:
    return RunInfo(run_id=new_run_id(), workflow="wf", version=version, args=[], kwargs={})


async def test_register_keeps_the_schedule_state(store_url: str) -> None:
    async with opened(store_url) as store:
        assert await store.schedules() == []
        first = await store.register_schedule("wf", "v1", every(2), T0)
        assert first is not None
        assert (first.since, first.last_tick, first.paused, first.revision) == (T0, None, False, 1)
        assert await store.schedules() == [first]

        # The same registration again changes nothing (not even the revision).
        assert await store.register_schedule("wf", "v1", every(2), T0 + 5) == first

        assert await store.fire_schedule("wf", 1, T0 + 2, None, "") is None  # skipped tick
        paused = await store.pause_schedule("wf", True, T0 + 3)
        assert (paused.paused, paused.revision, paused.last_tick) == (True, 2, T0 + 2)

        # A new version with the same definition: pause and last tick kept, since too.
        moved = await store.register_schedule("wf", "v2", every(2), T0 + 4)
        assert moved is not None
        assert (moved.version, moved.paused, moved.last_tick, moved.since) == (
            "v2",
            True,
            T0 + 2,
            T0,
        )
        assert moved.revision == 3

        # A new definition: ticks from before it never fire (since moves to now).
        changed = await store.register_schedule("wf", "v2", every(5, catchup="all"), T0 + 6)
        assert changed is not None
        assert (changed.every, changed.catchup, changed.since, changed.last_tick) == (
            5.0,
            "all",
            T0 + 6,
            T0 + 2,
        )
        assert changed.revision == 4 and changed.paused

        # A version that declares none removes it.
        assert await store.register_schedule("wf", "v3", None, T0 + 7) is None
        assert await store.schedules() == []
        with pytest.raises(ScheduleNotFoundError):
            await store.pause_schedule("wf", True, T0)


async def test_the_deployed_versions_schedule_wins(store_url: str) -> None:
    async with opened(store_url) as store:
        await store.record_deployment("wf", "v2", "d2")
        await store.register_schedule("wf", "v2", every(10, "v2"), T0)
        # An older worker, still running v1, does not replace it, nor remove it.
        kept = await store.register_schedule("wf", "v1", every(3), T0 + 1)
        assert kept is not None and (kept.version, kept.every) == ("v2", 10.0)
        assert await store.register_schedule("wf", "v1", None, T0 + 1) == kept
        # Once v3 is deployed, its registration replaces it.
        await store.record_deployment("wf", "v3", "d3")
        new = await store.register_schedule("wf", "v3", every(4, "v3"), T0 + 2)
        assert new is not None and (new.version, new.every) == ("v3", 4.0)


async def test_fire_starts_one_run_per_tick(store_url: str) -> None:
    async with opened(store_url) as store:
        await store.register_schedule("wf", "v1", every(2), T0)
        run = await store.fire_schedule("wf", 1, T0 + 2, tick_run(), "schedule:wf:a")
        assert run is not None
        stored = await store.get_run(run.run_id)
        assert (stored.workflow, stored.version, stored.status, stored.owner) == (
            "wf",
            "v1",
            "pending",
            None,
        )
        assert (stored.args, stored.kwargs, stored.fence) == ([], {}, 0)
        assert await store.idempotency_keys("schedule:wf:") == {"schedule:wf:a": run.run_id}
        [schedule] = await store.schedules()
        assert schedule.last_tick == T0 + 2

        # The same tick again, an earlier one, one from before `since`: nothing.
        assert await store.fire_schedule("wf", 1, T0 + 2, tick_run(), "schedule:wf:b") is None
        assert await store.fire_schedule("wf", 1, T0 + 1, tick_run(), "schedule:wf:c") is None
        assert await store.fire_schedule("wf", 1, T0, tick_run(), "schedule:wf:d") is None
        # A firer that read an older revision of the schedule fires nothing.
        assert await store.fire_schedule("wf", 0, T0 + 4, tick_run(), "schedule:wf:e") is None
        # Paused: nothing; resumed, ticks of the pause never fire.
        await store.pause_schedule("wf", True, T0 + 5)
        assert await store.fire_schedule("wf", 2, T0 + 6, tick_run(), "schedule:wf:f") is None
        again = await store.pause_schedule("wf", False, T0 + 9)
        assert (again.paused, again.since, again.revision) == (False, T0 + 9, 3)
        assert await store.fire_schedule("wf", 3, T0 + 8, tick_run(), "schedule:wf:g") is None
        assert await store.fire_schedule("wf", 3, T0 + 10, tick_run(), "schedule:wf:h") is not None
        assert sorted(await store.idempotency_keys("schedule:wf:")) == [
            "schedule:wf:a",
            "schedule:wf:h",
        ]
        assert len(await store.list_runs(workflow="wf")) == 2


async def test_a_fired_run_takes_the_deployed_version(store_url: str) -> None:
    async with opened(store_url) as store:
        await store.register_schedule("wf", "v1", every(2), T0)
        await store.record_deployment("wf", "v7", "d7")
        run = await store.fire_schedule("wf", 1, T0 + 2, tick_run(), "k")
        assert run is not None and (await store.get_run(run.run_id)).version == "v7"


async def test_concurrent_firers_of_one_tick_start_one_run(store_url: str) -> None:
    async with opened(store_url) as one, opened(store_url) as two:
        await one.register_schedule("wf", "v1", every(2), T0)
        for tick in range(1, 6):
            firers = [
                store.fire_schedule("wf", 1, T0 + 2 * tick, tick_run(), f"schedule:wf:{tick}")
                for store in (one, two)
                for _ in range(4)
            ]
            started = [run for run in await asyncio.gather(*firers) if run is not None]
            assert len(started) == 1
        assert len(await one.list_runs(workflow="wf")) == 5
        assert len(await two.idempotency_keys("schedule:wf:")) == 5


async def test_subscriptions_and_emit(store_url: str) -> None:
    def keys(event_id: str) -> Any:
        return lambda workflow: f"event:user.created:{event_id}:{workflow}"

    async with opened(store_url) as store:
        assert await store.emit_event("user.created", {"a": 1}, keys("e0")) == []
        assert await store.register_subscriptions("welcome", "v1", ["user.created"]) == [
            "user.created"
        ]
        assert await store.register_subscriptions("audit", "a1", ["user.deleted", "user.created"])
        assert await store.subscriptions() == [
            ("user.created", "audit", "a1"),
            ("user.created", "welcome", "v1"),
            ("user.deleted", "audit", "a1"),
        ]
        runs = await store.emit_event("user.created", {"user_id": "u-1"}, keys("e1"))
        assert [(r.workflow, r.version, r.kwargs, r.status) for r in runs] == [
            ("audit", "a1", {"user_id": "u-1"}, "pending"),
            ("welcome", "v1", {"user_id": "u-1"}, "pending"),
        ]
        for run in runs:
            stored = await store.get_run(run.run_id)
            assert (stored.kwargs, stored.args, stored.owner) == ({"user_id": "u-1"}, [], None)

        # The same event id again: the same runs, nothing new.
        again = await store.emit_event("user.created", {"user_id": "other"}, keys("e1"))
        assert [r.run_id for r in again] == [r.run_id for r in runs]
        assert len(await store.list_runs()) == 2
        assert sorted(await store.idempotency_keys("event:user.created:e1:")) == [
            "event:user.created:e1:audit",
            "event:user.created:e1:welcome",
        ]

        # Replacing a workflow's subscriptions; the deployed version's stay.
        await store.record_deployment("audit", "a2", "d")
        assert await store.register_subscriptions("audit", "a2", ["user.deleted"]) == [
            "user.deleted"
        ]
        assert await store.register_subscriptions("audit", "a1", ["x"]) == ["user.deleted"]
        await store.record_deployment("welcome", "v2", "d")
        [run] = await store.emit_event("user.created", {}, keys("e2"))
        assert (run.workflow, run.version) == ("welcome", "v2")  # follows the deployment
        assert await store.register_subscriptions("welcome", "v2", []) == []
        assert await store.emit_event("user.created", {}, keys("e3")) == []


async def test_a_key_refused_before_anything_is_written(store_url: str) -> None:
    def refuse(workflow: str) -> str:
        if workflow == "b":
            raise ConfigurationError("too long")
        return f"event:e:1:{workflow}"

    async with opened(store_url) as store:
        await store.register_subscriptions("a", "v1", ["e"])
        await store.register_subscriptions("b", "v1", ["e"])
        with pytest.raises(ConfigurationError):
            await store.emit_event("e", {}, refuse)
        assert await store.list_runs() == []
        assert await store.idempotency_keys("") == {}


async def test_concurrent_emits_of_one_event_start_one_run_each(store_url: str) -> None:
    async with opened(store_url) as one, opened(store_url) as two:
        for workflow in ("a", "b", "c"):
            await one.register_subscriptions(workflow, "v1", ["e"])
        for event_id in range(5):

            def keys(workflow: str, event_id: int = event_id) -> str:
                return f"event:e:{event_id}:{workflow}"

            emits = [store.emit_event("e", {}, keys) for store in (one, two) for _ in range(3)]
            answers = await asyncio.gather(*emits)
            assert len({tuple(run.run_id for run in runs) for runs in answers}) == 1
            assert [run.workflow for run in answers[0]] == ["a", "b", "c"]
        assert len(await two.list_runs()) == 15
        assert len(await one.idempotency_keys("event:e:")) == 15
