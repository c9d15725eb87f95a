"""Bad input at every public surface gets a typed error, and the store stays consistent.

Where each class of bad input is tested (this file adds what was missing):

============================================  ===============================================
non-JSON workflow arguments                   test_failures.py (set, object), here (NaN, inf)
non-JSON step input / result                  test_failures.py (bytes, int keys, set)
non-JSON workflow result                      test_failures.py
non-JSON event payload                        here
integers past 64 bits                         here
unknown workflow (name, non-workflow)         test_failures.py; here: by name in recover()
unknown run (get_run, journal)                test_failures.py
unknown or malformed run id (every call)      here
wrong arguments to a workflow                 test_failures.py (too few); here (too many, kw)
wrong arguments to a step                     here
invalid @function options                     test_failures.py (retries, timeout_ms, backoff)
invalid @workflow options, step keys          here
invalid Engine options                        test_failures.py (durability, lease, URL); here
malformed CLI input (JSON, ids, modules)      test_cli.py (test_bad_input_is_one_line_...)
corrupt journal record                        test_replay.py, core/test_codec.py, fuzz/
journal from a newer format version           test_replay.py (journal()); here (recovery)
valid record, payload not what a step writes  here
============================================  ===============================================

"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from support.calls import calls
from support.store_edit import rewrite_record, values, with_body, with_version
from surestep import (
    ConfigurationError,
    DefinitionError,
    Engine,
    JournalCorruptError,
    RunNotFoundError,
    SerializationError,
    SurestepError,
    UnsupportedFormatError,
    WorkflowContext,
    WorkflowFailedError,
    _core,
    function,
    workflow,
)


@function(retries={"max_attempts": 3, "initial_interval_ms": 1})
async def bad_input_one_arg(x: int) -> int:
    calls["one_arg"] += 1
    return x


@workflow
async def bad_input_takes(ctx: WorkflowContext, value: Any) -> Any:
    return await ctx.step("echo", lambda: value)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
async def test_non_finite_floats_are_refused(store_url: str, value: Any) -> None:
    async with Engine(store_url) as engine:
        with pytest.raises(SerializationError, match="JSON"):
            await engine.start(bad_input_takes, value)
        assert await engine.runs() == []


async def test_integers_past_64_bits_are_refused(store_url: str) -> None:
    async with Engine(store_url) as engine:
        with pytest.raises(SerializationError, match="64-bit"):
            await engine.start(bad_input_takes, 2**64)
        with pytest.raises(SerializationError, match="64-bit"):
            await engine.start(bad_input_takes, -(2**63) - 1)
        assert await engine.run(bad_input_takes, 2**63 - 1) == 2**63 - 1


async def test_non_json_event_payload_is_refused(store_url: str) -> None:
    @workflow
    async def parked(ctx: WorkflowContext) -> None:
        await ctx.step("wait", asyncio.Event().wait())

    async with Engine(store_url) as engine:
        handle = await engine.start(parked)
        with pytest.raises(SerializationError, match="event"):
            await engine.send_event(handle.run_id, "go", {1, 2})
        await engine.cancel(handle.run_id)


# ---------------------------------------------------------------- runs and workflows


MALFORMED_IDS = [
    "",
    "zz",
    "0" * 31,
    "0" * 34,
    "../../etc",
    "ü" * 32,
]


@pytest.mark.parametrize("run_id", MALFORMED_IDS)
async def test_malformed_run_ids_are_not_found_on_reads(store_url: str, run_id: str) -> None:
    async with Engine(store_url) as engine:
        with pytest.raises(RunNotFoundError):
            await engine.get_run(run_id)
        with pytest.raises(RunNotFoundError):
            await engine.journal(run_id)
        with pytest.raises(RunNotFoundError):
            await engine.logs(run_id)
        with pytest.raises(RunNotFoundError):
            await engine.handle(run_id).result()


def test_malformed_run_ids_are_not_found_on_writes(store_url: str) -> None:
    async def main() -> None:
        async with Engine(store_url) as engine:
            with pytest.raises(RunNotFoundError):
                await engine.send_event("zz", "go", 1)
            with pytest.raises(RunNotFoundError):
                # The guard turns today's hang into a failure; a fixed engine answers at once.
                await asyncio.wait_for(engine.cancel("zz"), 2)
            assert await engine.run(bad_input_takes, 1) == 1  # the store still writes

    asyncio.run(main())


async def test_unknown_runs_are_not_found_on_writes(store_url: str) -> None:
    async with Engine(store_url) as engine:
        with pytest.raises(RunNotFoundError):
            await engine.cancel("0" * 32)
        with pytest.raises(RunNotFoundError):
            await engine.send_event("0" * 32, "go", 1)
        assert await engine.run(bad_input_takes, 1) == 1


async def test_wrong_arguments_to_a_workflow(store_url: str) -> None:
    async with Engine(store_url) as engine:
        with pytest.raises(TypeError, match="too many positional"):
            await engine.start(bad_input_takes, 1, 2)
        with pytest.raises(TypeError, match=r"unexpected keyword|missing a required"):
            await engine.start(bad_input_takes, valeu=1)
        with pytest.raises(TypeError, match="missing a required"):
            await engine.start("bad_input_takes")
        assert await engine.runs() == []


async def test_a_run_of_a_workflow_this_process_does_not_know_stays_pending(
    store_url: str,
) -> None:
    """A run stored by a process that knew its workflow is left alone by one that does not
    (another worker, or a later deploy, serves it), not claimed and failed."""

    @workflow(name="bad_input_elsewhere")
    async def elsewhere(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url, execute=False) as client:
        handle = await client.start(elsewhere)
    from surestep import decorators

    del decorators._workflows["bad_input_elsewhere"]
    async with Engine(store_url) as engine:
        assert await engine.recover() == []
        assert (await engine.get_run(handle.run_id)).status == "pending"


async def test_wrong_arguments_to_a_step_are_refused_at_the_call(store_url: str) -> None:
    @workflow
    async def miscalls(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(bad_input_one_arg, 1, 2)
        except TypeError as exc:
            return str(exc)
        return "called"

    async with Engine(store_url) as engine:
        handle = await engine.start(miscalls)
        message = await handle.result()
        assert "bad_input_one_arg" in message and await engine.journal(handle.run_id) == []


async def test_wrong_arguments_to_a_step_fail_the_step_with_a_typed_error(store_url: str) -> None:
    """Uncaught, the refusal fails the run with the TypeError named."""

    @workflow
    async def miscalls(ctx: WorkflowContext) -> None:
        await ctx.step(bad_input_one_arg, 1, 2)

    async with Engine(store_url) as engine:
        with pytest.raises(WorkflowFailedError, match=r"TypeError.*positional argument"):
            await engine.run(miscalls)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    "options",
    [
        {"version": ""},
        {"version": 2},
        {"name": ""},
    ],
)
def test_invalid_workflow_options(options: dict[str, Any]) -> None:
    with pytest.raises((ConfigurationError, DefinitionError)):

        @workflow(**options)
        async def wf(ctx: WorkflowContext) -> None: ...


@pytest.mark.parametrize("key", ["", 1.5, ["a"], None])
async def test_invalid_step_keys(store_url: str, key: Any) -> None:
    @workflow
    async def keyed(ctx: WorkflowContext) -> str:
        try:
            await ctx.step("s", lambda: 1, key=key)
        except DefinitionError as exc:
            return str(exc)
        return "accepted"

    async with Engine(store_url) as engine:
        result = await engine.run(keyed)
    assert result == "accepted" if key is None else "step key" in result


@pytest.mark.parametrize(
    "options",
    [
        {"lease_seconds": -1},
        {"lease_seconds": math.nan},
        {"durability": None},
        {"durability": ""},
        {"lease_seconds": "5"},
        {"map_size": -5},
        {"map_size": "big"},
        {"max_map_size": -1},
    ],
)
async def test_invalid_engine_options(store_url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        engine = Engine(store_url, **options)
        await engine.open()
        await engine.close()


# ---------------------------------------------------------------- malformed journals


async def _stored_run(store_url: str) -> str:
    """A run that took one step and then stopped (its engine closed mid-run)."""

    @function
    async def step_one() -> int:
        return 1

    entered = asyncio.Event()

    @function
    async def parks() -> None:
        calls["parks"] += 1
        entered.set()
        if calls["parks"] == 1:
            await asyncio.Event().wait()

    @workflow(name="bad_input_two_steps")
    async def two_steps(ctx: WorkflowContext) -> int:
        value: int = await ctx.step(step_one)
        await ctx.step(parks)
        return value

    engine = Engine(store_url)
    handle = await engine.start(two_steps)
    await entered.wait()
    await engine.close()
    return handle.run_id


async def test_newer_format_version_fails_recovery_naming_the_run(store_url: str) -> None:
    """``test_replay.py`` reads such a journal; recovering the run is refused just as clearly,
    and the record is left for the newer release to read."""
    run_id = await _stored_run(store_url)
    newer = b""

    def newer_version(record: bytes) -> bytes:
        nonlocal newer
        newer = with_version(record, _core.FORMAT_VERSION + 1)
        return newer

    rewrite_record(store_url, run_id, 0, newer_version)
    async with Engine(store_url) as engine:
        (handle,) = await engine.recover()
        with pytest.raises(WorkflowFailedError, match="UnsupportedFormatError") as failed:
            await handle.result()
        assert run_id in failed.value.message and "upgrade surestep" in failed.value.message
    assert any(newer in value for value in values(store_url, run_id))  # kept for the newer release


@pytest.mark.parametrize(
    ("body", "output"),
    [(b"not json", True), (b"{}", False), (b"[1, 2]", False), (b'{"o":1}', False)],
)
async def test_step_record_with_a_foreign_payload_is_corrupt(
    store_url: str, body: bytes, output: bool
) -> None:
    """A step's record whose body is not JSON, or not an object with its output."""
    run_id = await _stored_run(store_url)
    rewrite_record(store_url, run_id, 0, lambda record: with_body(record, body, output))
    async with Engine(store_url) as engine:
        (handle,) = await engine.recover()
        with pytest.raises(WorkflowFailedError, match="JournalCorruptError") as failed:
            await handle.result()
        assert run_id in failed.value.message and "step 0" in failed.value.message
        with pytest.raises(JournalCorruptError):
            await engine.journal(run_id)


def test_every_bad_input_error_is_a_surestep_error_and_a_builtin() -> None:
    """Callers can catch either the library's root or the builtin they already expect."""
    assert issubclass(SerializationError, SurestepError) and issubclass(
        SerializationError, TypeError
    )
    assert issubclass(ConfigurationError, ValueError) and issubclass(RunNotFoundError, LookupError)
    assert issubclass(UnsupportedFormatError, JournalCorruptError)
    assert issubclass(JournalCorruptError, ValueError)
