"""The admission bound of ``Engine.start``: ``max_in_flight`` runs at once, then a start
waits for a place (``on_full="wait"``) or is refused (``on_full="refuse"``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from surestep import (
    ConfigurationError,
    Engine,
    OverloadedError,
    SurestepError,
    WorkflowContext,
    function,
    workflow,
)
from surestep import engine as engine_module
from surestep.admission import Admission


@function(name="admission.double")
async def double(x: int) -> int:
    return 2 * x


class Gate:
    """Holds the runs of ``held`` until opened; counts how many are inside at once."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.inside = 0
        self.most = 0

    async def wait(self) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.open.wait()
        finally:
            self.inside -= 1


gate: Gate


@workflow(name="admission.held")
async def held(ctx: WorkflowContext, n: int) -> int:
    await gate.wait()
    return int(await ctx.step(double, n))


@pytest.fixture(autouse=True)
def _gate() -> None:
    global gate
    gate = Gate()


async def test_a_burst_waits_for_places_and_is_admitted_in_order(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty starts at once with three places: at most three runs are being created or
    executing at a time, the runs are created in the order of the starts, and all of
    them complete."""
    created: list[int] = []
    async with Engine(store_url, max_in_flight=3) as engine:
        create_run = engine.store.create_run

        async def recorded(run: Any, *args: Any, **kwargs: Any) -> int:
            created.append(run.args[0])
            return await create_run(run, *args, **kwargs)

        monkeypatch.setattr(engine.store, "create_run", recorded)
        starts = [asyncio.ensure_future(engine.start(held, n)) for n in range(20)]
        while gate.inside < 3:  # noqa: ASYNC110 - the runs signal nothing else
            await asyncio.sleep(0.01)
        assert created == [0, 1, 2]  # the others wait for a place
        assert not any(start.done() for start in starts[3:])
        gate.open.set()
        handles = await asyncio.gather(*starts)
        assert [await h.result() for h in handles] == [2 * n for n in range(20)]
        assert gate.most == 3
        assert created == list(range(20))
        assert engine.in_flight == 0


async def test_refused_past_the_bound_when_configured_so(store_url: str) -> None:
    """``on_full="refuse"``: the start past the bound raises OverloadedError and stores
    nothing; once a run finishes, its place takes a new start."""
    async with Engine(store_url, max_in_flight=2, on_full="refuse") as engine:
        first = await engine.start(held, 1)
        second = await engine.start(held, 2)
        with pytest.raises(OverloadedError) as refused:
            await engine.start(held, 3)
        assert isinstance(refused.value, SurestepError)
        assert (refused.value.in_flight, refused.value.limit) == (2, 2)
        assert "max_in_flight=2" in str(refused.value)
        assert len(await engine.runs()) == 2  # the refused start stored nothing
        gate.open.set()
        assert [await first.result(), await second.result()] == [2, 4]
        third = await engine.start(held, 3)
        assert await third.result() == 6
        assert len(await engine.runs()) == 3


@workflow(name="admission.sleeper")
async def sleeper(ctx: WorkflowContext) -> str:
    await ctx.sleep(3600)
    return "woke"


async def test_a_suspended_run_gives_its_place_back(store_url: str) -> None:
    """A run that suspends (a durable sleep) no longer executes here: its place is free."""
    async with Engine(store_url, max_in_flight=1, on_full="refuse", inline_sleep=0) as engine:
        sleeping = await engine.start(sleeper)
        while engine.in_flight:  # noqa: ASYNC110 - the run signals nothing else
            await asyncio.sleep(0.01)
        assert (await sleeping.info()).status == "waiting"
        gate.open.set()
        assert await (await engine.start(held, 5)).result() == 10


async def test_a_failed_start_gives_its_place_back(store_url: str) -> None:
    """A start refused for its arguments leaves its place to the next one."""
    async with Engine(store_url, max_in_flight=1, on_full="refuse") as engine:
        with pytest.raises(TypeError):
            await engine.start(held, 1, 2, 3)
        gate.open.set()
        assert await (await engine.start(held, 4)).result() == 8


async def test_a_cancelled_result_waiter_leaves_the_run_executing(store_url: str) -> None:
    """Cancelling a caller waiting on ``result()`` cancels that wait only: the run goes on,
    the next waiter gets its result, and its end gives its place back."""
    async with Engine(store_url, max_in_flight=1, on_full="refuse") as engine:
        handle = await engine.start(held, 6)
        waiting = asyncio.ensure_future(handle.result())
        while gate.inside < 1:  # noqa: ASYNC110 - the run signals nothing else
            await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert engine.in_flight == 1  # still executing
        gate.open.set()
        assert await handle.result() == 12
        while engine.in_flight:  # noqa: ASYNC110 - the place comes back in a done callback
            await asyncio.sleep(0.01)
        assert (await handle.info()).status == "completed"


async def test_every_waiter_left_gets_the_result_when_some_are_cancelled(
    store_url: str,
) -> None:
    """Callers waiting on one run, through its handle and by its id: those cancelled stop
    waiting, every other one gets the result once the run ends."""
    async with Engine(store_url, max_in_flight=1, on_full="refuse") as engine:
        handle = await engine.start(held, 5)
        waiting = [asyncio.ensure_future(handle.result()) for _ in range(3)]
        waiting += [asyncio.ensure_future(engine.result(handle.run_id)) for _ in range(3)]
        while gate.inside < 1:  # noqa: ASYNC110 - the run signals nothing else
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # every caller is waiting by now
        for cancelled in waiting[::2]:
            cancelled.cancel()
        gate.open.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert [isinstance(o, asyncio.CancelledError) for o in outcomes[::2]] == [True] * 3
        assert outcomes[1::2] == [10, 10, 10]
        assert await handle.result() == 10


async def test_a_run_cancelled_at_once_gives_its_place_back(store_url: str) -> None:
    """A run cancelled right after its start, before its task ran at all, frees its place."""
    async with Engine(store_url, max_in_flight=1, on_full="refuse") as engine:
        handle = await engine.start(held, 1)
        assert await engine.cancel(handle.run_id)
        while engine.in_flight:  # noqa: ASYNC110 - the place comes back in a done callback
            await asyncio.sleep(0.01)
        assert (await handle.info()).status == "cancelled"
        gate.open.set()
        assert await (await engine.start(held, 7)).result() == 14


async def test_a_client_engine_holds_no_place_once_the_run_is_stored(store_url: str) -> None:
    """An engine that executes nothing only stores runs: each place is free again as
    soon as its start returns."""
    async with Engine(store_url, execute=False, max_in_flight=1, on_full="refuse") as client:
        handles = [await client.start(held, n) for n in range(3)]
        assert client.in_flight == 0
        assert {(await h.info()).status for h in handles} == {"pending"}


async def test_a_cancelled_waiting_start_stores_nothing_and_takes_no_place(
    store_url: str,
) -> None:
    async with Engine(store_url, max_in_flight=1) as engine:
        first = await engine.start(held, 1)
        waiting = asyncio.ensure_future(engine.start(held, 2))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.open.set()
        assert await first.result() == 2
        assert await (await engine.start(held, 3)).result() == 6
        assert sorted(run.args[0] for run in await engine.runs()) == [1, 3]


@pytest.mark.parametrize(
    "options",
    [
        {"max_in_flight": 0},
        {"max_in_flight": -5},
        {"max_in_flight": 2.5},
        {"max_in_flight": True},
        {"on_full": "drop"},
        {"on_full": None},
    ],
)
def test_bad_admission_options_are_refused(options: dict[str, Any], tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError):
        Engine(str(tmp_path / "store"), **options)


# -- the bound itself, without an engine


async def test_a_place_handed_to_a_cancelled_waiter_passes_on() -> None:
    """A waiter cancelled after it was handed a place gives that place to the next one,
    so no place is lost."""
    admission = Admission(1)
    await admission.take()
    first = asyncio.ensure_future(admission.take())
    second = asyncio.ensure_future(admission.take())
    await asyncio.sleep(0)
    assert admission.waiting == 2
    admission.give_back()  # handed to ``first``, which is cancelled before it runs
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await second  # the place went on to ``second``
    assert (admission.taken, admission.waiting) == (1, 0)
    admission.give_back()
    assert admission.taken == 0


async def test_waiters_are_served_first_come_first_served() -> None:
    admission = Admission(2)
    await admission.take()
    await admission.take()
    order: list[int] = []

    async def start(n: int) -> None:
        await admission.take()
        order.append(n)

    waiting = [asyncio.ensure_future(start(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert order == []
    for _ in range(5):
        admission.give_back()
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2, 3, 4]
    assert admission.taken == 2


async def test_the_http_api_answers_503_with_retry_after_past_the_bound(tmp_path: Any) -> None:
    import httpx

    from surestep.client import _raise_for as raise_for
    from surestep.web import create_app

    engine = Engine(str(tmp_path / "store"), max_in_flight=1, on_full="refuse")
    transport = httpx.ASGITransport(app=create_app(engine))
    body = {"workflow": "admission.held", "args": [1]}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            first = await client.post("/api/runs", json=body)
            assert first.status_code in (200, 201, 202), first.text
            refused = await client.post("/api/runs", json=body)
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert refused.json()["type"] == "OverloadedError"
            assert "max_in_flight=1" in refused.json()["error"]
            with pytest.raises(OverloadedError, match="max_in_flight=1"):
                raise_for(refused)  # what surestep.Client raises for it
            gate.open.set()
            assert (await engine.result(first.json()["run_id"])) == 2
    finally:
        await engine.close()


async def test_a_burst_of_starts_is_stored_a_bounded_number_at_a_time(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the admission bound, at most MAX_STARTING starts are between admission and
    stored at once (a burst queues that many creations, not all of its rows); all
    complete."""
    monkeypatch.setattr(engine_module, "MAX_STARTING", 3)
    in_flight, most = 0, 0

    @workflow(name="admission.tiny")
    async def tiny(ctx: WorkflowContext, n: int) -> int:
        return int(await ctx.step(double, n))

    async with Engine(store_url) as engine:
        create_run = engine.store.create_run

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                await asyncio.sleep(0.001)
                return await create_run(*args, **kwargs)
            finally:
                in_flight -= 1

        monkeypatch.setattr(engine.store, "create_run", counted)
        handles = await asyncio.gather(*(engine.start(tiny, n) for n in range(20)))
        assert [await h.result() for h in handles] == [2 * n for n in range(20)]
    assert most == 3
