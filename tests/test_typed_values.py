"""Typed values (pydantic models, dataclasses, datetimes, UUIDs, Decimals, enums) as step
and workflow arguments and results: encoded to JSON for the journal, decoded back to the
annotated type on the first run and on replay; plain functions take the plain path."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

import pydantic
import pytest

from support.calls import calls
from surestep import (
    Engine,
    SerializationError,
    WorkflowContext,
    convert,
    decorators,
    function,
    testing,
    workflow,
)

gate: dict[str, asyncio.Event] = {}
seen: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    gate.clear()
    seen.clear()


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(pydantic.BaseModel):
    sku: str
    price: Decimal


class Order(pydantic.BaseModel):
    order_id: uuid.UUID
    placed: datetime
    items: list[Item]


@dataclasses.dataclass
class Receipt:
    order_id: uuid.UUID
    total: Decimal
    due: date
    colour: Colour
    lines: list[Item]


@function
async def price(order: Order, discount: Decimal) -> Receipt:
    calls["price"] += 1
    assert isinstance(order, Order) and isinstance(discount, Decimal)
    total = sum((item.price for item in order.items), Decimal(0)) - discount
    return Receipt(order.order_id, total, order.placed.date(), Colour.BLUE, order.items)


@function
async def stamp() -> datetime:
    calls["stamp"] += 1
    return datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=timezone(timedelta(hours=2)))


@function
async def maybe(flag: bool) -> Optional[Colour]:  # noqa: UP045 - the Optional spelling too
    return Colour.RED if flag else None


@function
async def hold_typed() -> int:
    calls["hold_typed"] += 1
    if "hold_typed" in gate:
        await gate["hold_typed"].wait()
    return 1


@workflow
async def typed_checkout(ctx: WorkflowContext, order: Order, discount: Decimal) -> Receipt:
    receipt = await ctx.step(price, order, discount)
    when = await ctx.step(stamp)
    colours = [await ctx.step(maybe, True), await ctx.step(maybe, False)]
    seen.append({"receipt": receipt, "when": when, "colours": colours, "order": order})
    await ctx.step(hold_typed)
    return receipt


def an_order() -> Order:
    return Order(
        order_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        placed=datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc),
        items=[Item(sku="a", price=Decimal("10.10")), Item(sku="b", price=Decimal("0.20"))],
    )


def check_seen(entry: dict[str, Any]) -> None:
    receipt = entry["receipt"]
    assert type(receipt) is Receipt
    assert receipt.total == Decimal("10.20") and str(receipt.total) == "10.20"  # exact
    assert receipt.colour is Colour.BLUE and receipt.due == date(2026, 3, 4)
    assert receipt.order_id == an_order().order_id and type(receipt.lines[0]) is Item
    assert entry["when"] == datetime(2026, 1, 2, 1, 4, 5, 600_000, tzinfo=timezone.utc)
    assert entry["when"].utcoffset() == timedelta(hours=2)
    assert entry["colours"] == [Colour.RED, None]
    assert entry["order"] == an_order()


async def test_typed_values_first_run_and_replay_after_restart(store_url: str) -> None:
    gate["hold_typed"] = asyncio.Event()
    engine = Engine(store_url)
    handle = await engine.start(typed_checkout, an_order(), Decimal("0.10"))
    while calls["hold_typed"] == 0:  # noqa: ASYNC110 - the step signals nothing else
        await asyncio.sleep(0.005)
    await engine.close()
    del gate["hold_typed"]
    check_seen(seen[0])

    async with Engine(store_url) as engine:
        (resumed,) = await engine.recover()
        result = await resumed.result()
        journal = await engine.journal(handle.run_id)
        info = await engine.get_run(handle.run_id)
    assert resumed.run_id == handle.run_id
    check_seen(seen[1])  # the replay decoded the journal to the same types
    assert calls == Counter(price=1, stamp=1, hold_typed=2)
    # The store holds JSON: the Decimal as an exact string, the datetime in ISO 8601.
    assert result["total"] == "10.20" and result["colour"] == "blue"
    assert journal[0].input == [
        [
            {
                "order_id": "12345678-1234-5678-1234-567812345678",
                "placed": "2026-03-04T05:06:07Z",
                "items": [{"sku": "a", "price": "10.10"}, {"sku": "b", "price": "0.20"}],
            },
            "0.10",
        ],
        {},
    ]
    assert journal[1].output == "2026-01-02T03:04:05.600000+02:00"
    assert info.args[1] == "0.10"


async def test_unannotated_typed_values_go_through_as_json(store_url: str) -> None:
    @function
    async def untyped(value):  # type: ignore[no-untyped-def]
        return value

    @workflow
    async def passes(ctx: WorkflowContext) -> list:
        return [
            await ctx.step(untyped, Colour.RED),
            await ctx.step(untyped, uuid.UUID(int=1)),
            await ctx.step(untyped, Decimal("1.5")),
        ]

    async with Engine(store_url) as engine:
        assert await engine.run(passes) == ["red", str(uuid.UUID(int=1)), "1.5"]


class Opaque:
    def __repr__(self) -> str:
        return "<opaque thing>"


@function
async def naive() -> datetime:
    return datetime(2026, 1, 1)  # a datetime without a timezone


@function
async def takes(value: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("step", "args", "expected"),
    [
        (naive, (), ["step 0 (naive)", "no timezone"]),
        (takes, (Opaque(),), ["step 0 (takes)", "<opaque thing>"]),
    ],
)
async def test_refusals_name_the_step_and_the_value(
    store_url: str, step: Any, args: tuple, expected: list[str]
) -> None:
    @workflow
    async def refused(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(step, *args)
        except SerializationError as exc:
            return str(exc)
        return "accepted"

    async with Engine(store_url) as engine:
        message = await engine.run(refused)
    assert all(part in message for part in expected), message


def test_plain_functions_take_the_plain_path() -> None:
    @function
    async def plain(ctx: Any, a: int, b: str, c: dict[str, list[int]], d=None) -> dict:  # type: ignore[no-untyped-def]
        return {}

    @function
    async def bare(x, y):  # type: ignore[no-untyped-def]
        return x

    for fn in (plain, bare):
        spec = decorators.spec_of(fn)
        assert isinstance(spec, decorators.FunctionSpec)
        assert spec.conversion is None
        assert spec.loads_result is convert.serde.loads
    assert decorators.find_workflow(typed_checkout).conversion is not None


def test_string_annotations_resolve_against_the_module() -> None:
    # This module uses ``from __future__ import annotations``: every annotation is a string.
    assert isinstance(inspect.signature(price).parameters["order"].annotation, str)
    conversion = convert.conversion_of(price, "price")
    assert conversion is not None
    assert conversion.params == {"order": Order, "discount": Decimal}
    assert conversion.result is Receipt


def test_unresolvable_annotation_leaves_the_value_unconverted() -> None:
    def uses_missing(x: NotImportedHere, y: Decimal) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 0

    conversion = convert.conversion_of(uses_missing, "f")
    assert conversion is not None and conversion.params == {"y": Decimal}


@pytest.mark.parametrize(
    ("value", "annotation", "data"),
    [
        (Decimal("0.1000"), Decimal, "0.1000"),
        (uuid.UUID(int=7), uuid.UUID, str(uuid.UUID(int=7))),
        (date(2026, 2, 3), date, "2026-02-03"),
        (Colour.RED, Colour, "red"),
        ([Colour.RED, Colour.BLUE], list[Colour], ["red", "blue"]),
        ({"a": Decimal("1")}, dict[str, Decimal], {"a": "1"}),
        ((1, Decimal("2")), tuple[int, Decimal], [1, "2"]),
        ((Decimal("1"), Decimal("2")), tuple[Decimal, ...], ["1", "2"]),
        (None, Optional[Decimal], None),  # noqa: UP045
        (Decimal("3"), Decimal | None, "3"),
        (Item(sku="x", price=Decimal("1.5")), Item, {"sku": "x", "price": "1.5"}),
        (5, int | Colour, 5),
        (Colour.BLUE, int | Colour, "blue"),
    ],
)
def test_round_trip(value: Any, annotation: Any, data: Any) -> None:
    assert convert.encode(value, "v") == data
    assert convert.decode(data, annotation, "v") == value
    assert convert.needs_conversion(annotation)


def test_decode_refuses_data_of_the_wrong_shape() -> None:
    with pytest.raises(SerializationError, match="cannot be read as Decimal"):
        convert.decode(1.5, Decimal, "the thing")
    with pytest.raises(SerializationError, match="the thing"):
        convert.decode("not a uuid", uuid.UUID, "the thing")
    with pytest.raises(SerializationError, match="no timezone"):
        convert.decode("2026-01-01T00:00:00", datetime, "the thing")


def test_cli_arguments_follow_the_annotations() -> None:
    def wf(ctx: Any, name: str, count: int, order: Order, when: date, free, *rest: Decimal) -> None:  # type: ignore[no-untyped-def]
        return None

    order = an_order()
    argv = ["42", "7", order.model_dump_json(), "2026-01-02", "[1]", "1.10", "2"]
    values = convert.cli_arguments(wf, argv)
    assert values == ["42", 7, order, date(2026, 1, 2), [1], Decimal("1.10"), Decimal("2")]
    assert (
        convert.cli_arguments(wf, ["plain", "1", order.model_dump_json(), "2026-01-02", "x"])[-1]
        == "x"
    )  # unannotated: JSON when it parses, else the string
    with pytest.raises(SerializationError, match="argument 'count'"):
        convert.cli_arguments(wf, ["a", "seven"])


@workflow
async def typed_child(ctx: WorkflowContext, order: Order) -> Receipt:
    return await ctx.step(price, order, Decimal("0"))


@workflow
async def typed_parent(ctx: WorkflowContext, order: Order) -> list:
    receipt = await ctx.step(typed_child, order)
    return [type(receipt).__name__, str(receipt.total)]


async def test_child_workflows_run_and_replay_check_typed_values(store_url: str) -> None:
    async with Engine(store_url) as engine:
        handle = await engine.start(typed_parent, an_order())
        assert await handle.result() == ["Receipt", "10.30"]
        # engine.run decodes the result to the workflow's return annotation.
        receipt = await engine.run(typed_child, an_order())
        assert type(receipt) is Receipt and receipt.total == Decimal("10.30")
        recorded = await testing.recorded_run(engine, handle.run_id)
    report = await testing.replay_async(typed_parent, recorded)
    assert report.compatible, report.describe()
