"""A step's own exception reaches the workflow with its type and message, on the first
run and on replay in a fresh engine, rebuilt from the journal's JSON; it is also a
StepFailedError. Classes are rebuilt only when imported already or registered."""

from __future__ import annotations

import asyncio
import sys
import types
from collections import Counter
from typing import Any

import pytest

from support.calls import calls
from surestep import (
    DefinitionError,
    Engine,
    StepFailedError,
    WorkflowContext,
    errors,
    function,
    register_exception,
    workflow,
)

gate: dict[str, asyncio.Event] = {}
seen: list[Any] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    gate.clear()
    seen.clear()


class OutOfStockError(Exception):
    """A custom __init__ whose signature is not its args'."""

    def __init__(self, sku: str, wanted: int) -> None:
        super().__init__(f"{sku}: {wanted} wanted, none left")
        self.sku = sku
        self.wanted = wanted

    def __str__(self) -> str:
        return f"out of stock ({self.args[0]})"


class RejectedError(Exception):
    """Needs keyword arguments it cannot get back from the journal."""

    def __init__(self, *, code: int) -> None:
        super().__init__(f"rejected with code {code}")


@function(retries=1)
async def bad_sku(sku: str) -> None:
    calls["bad_sku"] += 1
    raise ValueError(f"bad sku {sku}")


@function(retries=1)
async def out_of_stock() -> None:
    calls["out_of_stock"] += 1
    raise OutOfStockError("sku-1", 3)


@function(retries=1)
async def rejected() -> None:
    calls["rejected"] += 1
    raise RejectedError(code=7)


@function
async def hold_failures() -> int:
    calls["hold_failures"] += 1
    if "hold_failures" in gate:
        await gate["hold_failures"].wait()
    return 1


@workflow
async def catches(ctx: WorkflowContext) -> list:
    outcomes = []
    try:
        await ctx.step(bad_sku, "x-1")
    except ValueError as exc:  # the step's own type, caught by the workflow
        seen.append(exc)
        outcomes.append(["ValueError", str(exc), isinstance(exc, StepFailedError)])
    try:
        await ctx.step(out_of_stock)
    except OutOfStockError as exc:
        seen.append(exc)
        outcomes.append(["OutOfStock", str(exc), exc.sku, exc.wanted, exc.attempts])
    try:
        await ctx.step(rejected)
    except StepFailedError as exc:  # existing handlers keep working
        seen.append(exc)
        outcomes.append(["Rejected", str(exc), isinstance(exc, RejectedError), exc.error_type])
    await ctx.step(hold_failures)
    return outcomes


EXPECTED = [
    ["ValueError", "bad sku x-1", True],
    ["OutOfStock", "out of stock (sku-1: 3 wanted, none left)", "sku-1", 3, 1],
    ["Rejected", "rejected with code 7", True, f"{__name__}.RejectedError"],
]


async def test_first_run_and_replay_in_a_fresh_engine_see_the_same_exceptions(
    store_url: str,
) -> None:
    gate["hold_failures"] = asyncio.Event()
    engine = Engine(store_url)
    handle = await engine.start(catches)
    while calls["hold_failures"] == 0:  # noqa: ASYNC110 - the step signals nothing else
        await asyncio.sleep(0.005)
    await engine.close()
    del gate["hold_failures"]
    first = list(seen)
    async with Engine(store_url) as engine:
        (resumed,) = await engine.recover()
        assert await resumed.result() == EXPECTED
        journal = await engine.journal(handle.run_id)
    assert calls == Counter(bad_sku=1, out_of_stock=1, rejected=1, hold_failures=2)
    replayed = seen[len(first) :]
    for before, after in zip(first, replayed, strict=True):
        assert type(before) is type(after)  # one cached class per original class
        assert str(before) == str(after)
    assert type(first[0]).__mro__[1] is ValueError and type(first[0]).__name__ == "ValueError"
    # The journal holds JSON only: the type's names, the message, JSON args, the traceback.
    error = journal[0].error
    assert error is not None
    assert error["type"] == "ValueError" and error["module"] == "builtins"
    assert error["qualname"] == "ValueError" and error["args"] == ["bad sku x-1"]
    assert "raise ValueError" in error["traceback"]


def test_a_class_that_cannot_be_imported_gives_a_plain_step_failed_error() -> None:
    def local() -> type[Exception]:
        class HiddenError(Exception):
            pass

        return HiddenError

    hidden = local()
    described = errors.describe(hidden("boom"))
    failure = errors.step_failure("s", 3, described, 2)
    assert type(failure) is StepFailedError
    assert failure.error_type.endswith("<locals>.HiddenError") and failure.message == "boom"
    # Registered, it is rebuilt even though it cannot be imported.
    register_exception(hidden)
    rebuilt = errors.step_failure("s", 3, described, 2)
    assert isinstance(rebuilt, hidden) and isinstance(rebuilt, StepFailedError)
    assert str(rebuilt) == "boom" and rebuilt.attempts == 2


def test_a_module_named_by_stored_data_is_never_imported() -> None:
    name = "surestep_test_never_imported"
    assert name not in sys.modules
    stored = {
        "type": f"{name}.Boom",
        "message": "m",
        "traceback": "",
        "module": name,
        "qualname": "Boom",
        "args": ["m"],
    }
    failure = errors.step_failure("s", 0, stored, 1)
    assert type(failure) is StepFailedError and name not in sys.modules
    # Once the process imported it, the class is found.
    module = types.ModuleType(name)
    exec("class Boom(Exception):\n    pass\n", module.__dict__)
    sys.modules[name] = module
    try:
        assert isinstance(errors.step_failure("s", 0, stored, 1), module.Boom)
    finally:
        del sys.modules[name]


def test_old_records_without_the_new_fields_replay_as_before() -> None:
    old = {"type": "ValueError", "message": "m", "traceback": "tb"}
    failure = errors.step_failure("s", 1, old, 3)
    assert type(failure) is StepFailedError
    assert str(failure) == "step 1 (s) failed after 3 attempt(s): ValueError: m"


def test_stored_names_that_are_not_exception_classes_are_refused() -> None:
    for module, qualname in [("os", "system"), ("builtins", "object"), ("surestep", "errors")]:
        stored = {"type": "x", "message": "m", "traceback": "", "module": module}
        stored["qualname"] = qualname
        assert type(errors.step_failure("s", 0, stored, 1)) is StepFailedError


def test_register_exception_takes_exception_classes_only() -> None:
    with pytest.raises(DefinitionError):
        register_exception(int)  # type: ignore[type-var]


def test_describe_keeps_args_only_when_they_are_json() -> None:
    assert errors.describe(KeyError("k"))["args"] == ["k"]
    assert "args" not in errors.describe(ValueError(object()))
    assert "args" not in errors.describe(ValueError(float("nan")))
