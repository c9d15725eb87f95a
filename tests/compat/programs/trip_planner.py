"""Human in the loop, selection: the traveller picks a destination (select, with their
own words allowed), optional extras (multiselect) and may skip a question."""

from __future__ import annotations

import world

from surestep import FunctionContext, WorkflowContext, function, workflow

DESTINATIONS = [{"id": "lisbon", "label": "Lisbon"}, {"id": "kyoto", "label": "Kyoto"}]
EXTRAS = [
    {"id": "museum", "label": "Museum pass"},
    {"id": "food", "label": "Food tour"},
    {"id": "bike", "label": "Bike rental"},
]


@function
async def draft_itinerary(
    ctx: FunctionContext, traveller: str, city: str, extras: list[str]
) -> str:
    world.effect("draft", traveller, city=city, extras=extras)
    return f"{city} with {', '.join(extras) or 'no extras'}"


@function
async def book_trip(ctx: FunctionContext, traveller: str, itinerary: str, note: str | None) -> str:
    world.effect("book", traveller, itinerary=itinerary, note=note)
    return f"booking-{traveller}"


@workflow
async def trip_planner(ctx: WorkflowContext, traveller: str) -> dict:
    city = await ctx.wait_for_user(
        "Where to?", input_type="select", options=DESTINATIONS, allow_custom=True
    )
    picked = await ctx.wait_for_user("Any extras?", input_type="multiselect", options=EXTRAS)
    extras = [extra for extra in (picked or "").split(",") if extra]
    itinerary = await ctx.step(draft_itinerary, traveller, city, extras)
    note = await ctx.wait_for_user("A note for the hotel?", skippable=True)
    booking = await ctx.step(book_trip, traveller, itinerary, note)
    return {"itinerary": itinerary, "note": note, "booking": booking}
