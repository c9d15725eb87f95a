"""How each porting program is run, and what it must return.

A scenario names a program (a module of ``programs/``), the workflow to start and its
input, and the result it must produce (as the store holds it: JSON). ``pause_at`` is
the side effect before which the crash test kills the process (``programs/world.py``):
one whose previous step has returned and been journaled. ``before`` runs the earlier
runs the scenario builds on (a chat's first turn); ``deliver`` gives a waiting run its
outside input (an event), from whichever process finishes the run.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from surestep import Context, Engine, RunHandle

PROGRAMS = Path(__file__).parent / "programs"
if str(PROGRAMS) not in sys.path:
    sys.path.insert(0, str(PROGRAMS))


@dataclass(frozen=True)
class Scenario:
    program: str
    workflow: str
    kwargs: dict[str, Any]
    expect: Any
    pause_at: int | None = None
    session_id: str | None = None
    user_id: str | None = None
    before: Callable[[Engine], Awaitable[None]] | None = None
    deliver: Callable[[Engine, str], Awaitable[None]] | None = None
    direct: bool = True  # the same result when awaited without an engine
    emitted: str | None = None  # started by emitting this event, kwargs as its payload

    def function(self) -> Any:
        return getattr(importlib.import_module(self.program), self.workflow)

    async def start(self, engine: Engine) -> RunHandle:
        if self.before is not None:
            await self.before(engine)
        if self.emitted is not None:
            (handle,) = await engine.emit(self.emitted, self.kwargs, id="evt-1")
            return handle
        return await engine.start(
            self.function(), session_id=self.session_id, user_id=self.user_id, **self.kwargs
        )

    async def finish(self, engine: Engine, handle: RunHandle) -> Any:
        if self.deliver is not None:
            await self.deliver(engine, handle.run_id)
        return await handle.result()

    async def call(self) -> Any:
        """The workflow awaited directly, as AGNT5's examples and unit tests call it."""
        if self.session_id is None and self.user_id is None:
            return await self.function()(**self.kwargs)
        given = Context(session_id=self.session_id, user_id=self.user_id)
        return await self.function()(given, **self.kwargs)


async def _first_chat_turn(engine: Engine) -> None:
    await engine.run("support_chat", message="Where is my order?", session_id="conv-1")


async def _earlier_digest(engine: Engine) -> None:
    await engine.run("personal_digest", topics=["ai", "climate"], user_id="u-42")


async def _manager_approves(engine: Engine, run_id: str) -> None:
    """The manager's decision, sent once the run waits for it (a resumed run that is past
    the wait, or finished, gets nothing)."""
    while True:
        run = await engine.get_run(run_id)
        if run.finished or run.waiting_for == "manager_decision":
            break
        await engine.store.wait_changed(timeout=0.2)
    if not run.finished:
        await engine.send_event(run_id, "manager_decision", {"approved": True, "by": "dana"})


def _answering(replies: dict[str, Any]) -> Callable[[Engine, str], Awaitable[None]]:
    """A person answering each question the run asks (by its text), until it finishes."""

    async def answer(engine: Engine, run_id: str) -> None:
        answered: set[str] = set()
        while True:
            run = await engine.get_run(run_id)
            if run.finished:
                return
            asked = run.question
            if asked is not None and run.waiting_for not in answered:
                assert run.waiting_for is not None
                answered.add(run.waiting_for)
                await engine.answer(run_id, replies[asked["question"]])
            await engine.store.wait_changed(timeout=0.2)

    return answer


ITEMS = [{"sku": "mug", "qty": 2, "price": 7.5}, {"sku": "tee", "qty": 1, "price": 20.0}]

SCENARIOS: dict[str, Scenario] = {
    "order_fulfillment": Scenario(
        "order_fulfillment",
        "order_fulfillment",
        {"order_id": "o-1", "items": ITEMS, "address": "1 Main St"},
        {
            "order_id": "o-1",
            "status": "completed",
            "reservation": "res-o-1",
            "transaction_id": "txn-o-1",
            "total": 35.0,
            "tracking": "trk-o-1",
            "emailed": True,
        },
        pause_at=3,
    ),
    "retry_policies": Scenario(
        "retry_policies",
        "currency_settlement",
        {"account": "acc-9", "amount": 100.0, "currency": "EUR"},
        {"converted": 108.0, "entry": "entry-acc-9", "notify_attempts": 2},
        pause_at=2,
    ),
    "compensation": Scenario(
        "compensation",
        "checkout_saga",
        {
            "order_id": "o-7",
            "skus": ["lamp", "desk", "sold-out-chair"],
            "amount": 240.0,
            "address": "5 Elm Rd 75011",
        },
        {
            "status": "refunded",
            "reason": "sold-out-chair is out of stock",
            "refund": "rf-ch-o-7",
            "reserved": ["r-lamp", "r-desk"],
            "also_step_failed": True,
        },
        pause_at=3,
    ),
    "research_assistant": Scenario(
        "research_assistant",
        "research_assistant",
        {"question": "durable execution", "limit": 2},
        {
            "question": "durable execution",
            "summary": "durable execution: 2 sources, best 'Journaled steps'",
            "sources": [
                {"title": "Journaled steps", "url": "https://example.org/0", "score": 1.0},
                {"title": "Replay after a crash", "url": "https://example.org/1", "score": 0.9},
            ],
        },
        pause_at=2,
    ),
    "monthly_billing": Scenario(
        "monthly_billing",
        "monthly_billing",
        {"customer": "acme", "seats": 12, "period_start": "2026-11-01T00:00:00+00:00"},
        {
            "number": "INV-acme-202611",
            "customer": "acme",
            "amount": "150.00",
            "period_start": "2026-11-01T00:00:00+00:00",
            "due": "2026-12-01T00:00:00+00:00",
            "plan": "team",
        },
        pause_at=2,
    ),
    "support_chat": Scenario(
        "support_chat",
        "support_chat",
        {"message": "Can I change the address?"},
        {"reply": "Yes, until it leaves the depot.", "turn": 2, "session": "conv-1"},
        pause_at=4,  # the first turn's two effects, then this turn's moderation
        session_id="conv-1",
        before=_first_chat_turn,
        direct=False,  # a direct call is a conversation of its own
    ),
    "document_ingest": Scenario(
        "document_ingest",
        "ingest_batch",
        {"batch": "b-1", "doc_ids": ["d-1", "d-2", "d-3"]},
        {
            "documents": [
                {"doc_id": "d-1", "words": 3},
                {"doc_id": "d-2", "words": 3},
                {"doc_id": "d-3", "words": 3},
            ],
            "total_words": 9,
            "report": "report-b-1",
        },
        pause_at=4,  # inside the second child, after its extract step
    ),
    "trial_reminder": Scenario(
        "trial_reminder",
        "trial_reminder",
        {"email": "ada@example.org", "wait_seconds": 1.5},
        ["welcome sent to ada@example.org", "7 days left, sent to ada@example.org"],
        pause_at=2,
    ),
    "expense_approval": Scenario(
        "expense_approval",
        "expense_approval",
        {"expense_id": "e-5", "amount": 89.9},
        {"ticket": "ticket-e-5", "outcome": "paid-e-5", "decided_by": "dana"},
        pause_at=2,
        deliver=_manager_approves,
        direct=False,  # waits for an event: refused without an engine
    ),
    "ticket_summary": Scenario(
        "ticket_summary",
        "summarize_ticket",
        {"ticket_id": "T-100"},
        {"ticket_id": "T-100", "summary": "Login fails cannot log in works", "posted": True},
    ),
    "market_scan": Scenario(
        "market_scan",
        "market_scan",
        {"topic": "solar", "sources": ["web", "papers", "patents"]},
        {
            "report": "solar: 6 findings, 40 mentions",
            "sources": 3,
            "mentions": {"news": 15, "social": 25},
        },
        pause_at=6,  # every search and count journaled, before the synthesis
    ),
    "news_digest": Scenario(
        "news_digest",
        "personal_digest",
        {"topics": ["space", "ai"]},
        {"user": "u-42", "topics": ["ai", "climate", "space"], "sent": 3},
        pause_at=2,  # the earlier run's digest, then this one's
        user_id="u-42",
        before=_earlier_digest,
        direct=False,  # a direct call starts with no saved preferences
    ),
    "vendor_payout": Scenario(
        "vendor_payout",
        "vendor_payout",
        {"vendor": "globex", "amount": 1000.0, "currency": "EUR"},
        {
            "wire": "wire-globex",
            "amount": 920.0,
            "payout_id_is_uuid": True,
            "started_is_aware": True,
        },
        pause_at=2,
    ),
    "quarterly_report": Scenario(
        "quarterly_report",
        "quarterly_report",
        {"quarter": "2026-Q3", "regions": ["north", "south"]},
        {
            "quarter": "2026-Q3",
            "totals": {"north": 295, "south": 195},
            "path": "reports/2026-Q3.pdf",
        },
        pause_at=2,
    ),
    "classify_ticket": Scenario(
        "quarterly_report",
        "classify_ticket",
        {"subject": "Invoice 42 is wrong"},
        {"label": "billing", "run": True},
    ),
    "etl_pipeline": Scenario(
        "etl_pipeline",
        "etl_workflow",
        {"dataset": "orders"},
        {"table": "warehouse.orders", "rows": 6, "partitions": ["p1", "p2", "p3"]},
        pause_at=3,
    ),
    "refund_approval": Scenario(
        "refund_approval",
        "refund_approval",
        {"order_id": "o-9", "amount": 180.0},
        {"order_id": "o-9", "decision": "approve", "outcome": "rf-o-9"},
        pause_at=2,  # approved, before the refund
        deliver=_answering({"Refund 180.00 for order o-9?": "approve"}),
        direct=False,  # waits for a person
    ),
    "trip_planner": Scenario(
        "trip_planner",
        "trip_planner",
        {"traveller": "ines"},
        {"itinerary": "kyoto with food, museum", "note": None, "booking": "booking-ines"},
        pause_at=2,  # three answers in, before the booking
        deliver=_answering(
            {"Where to?": "kyoto", "Any extras?": ["food", "museum"], "A note for the hotel?": None}
        ),
        direct=False,
    ),
    "deep_research": Scenario(
        "deep_research",
        "deep_research",
        {"topic": "fusion"},
        {
            "report": "fusion: 3 sections, 1 source(s) unavailable",
            "completed": 3,
            "failed": 1,
            "scores": [24, 23, 22],
        },
        pause_at=4,  # every item researched, before the report
    ),
    "daily_digest": Scenario(
        "daily_digest",
        "daily_digest",
        {},
        "digest for growth: +42 / -3",
        pause_at=2,
    ),
    "welcome_flow": Scenario(
        "welcome_flow",
        "welcome_flow",
        {"user_id": "u-7", "email": "kim@example.org"},
        {"workspace": "ws-u-7", "welcomed": True},
        pause_at=2,
        emitted="user.signed_up",
    ),
}
