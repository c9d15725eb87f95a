"""Typed dataclass results: a billing run whose steps pass dataclasses, Decimal money,
timezone-aware datetimes and enums, decoded to their annotations on replay too."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import world

from surestep import FunctionContext, WorkflowContext, function, workflow


class Plan(enum.Enum):
    TEAM = "team"
    ENTERPRISE = "enterprise"


@dataclass
class Quote:
    customer: str
    plan: Plan
    seats: int
    unit_price: Decimal


@dataclass
class Invoice:
    number: str
    customer: str
    amount: Decimal
    period_start: datetime
    due: datetime
    plan: Plan


@function
async def quote_subscription(ctx: FunctionContext, customer: str, seats: int) -> Quote:
    plan = Plan.ENTERPRISE if seats >= 50 else Plan.TEAM
    return Quote(customer, plan, seats, Decimal("12.50") if plan is Plan.TEAM else Decimal("9.90"))


@function
async def issue_invoice(ctx: FunctionContext, quote: Quote, period_start: datetime) -> Invoice:
    amount = quote.unit_price * quote.seats  # exact: Decimal survived the journal
    number = f"INV-{quote.customer}-{period_start:%Y%m}"
    world.effect("invoice", number, amount=str(amount))
    return Invoice(
        number, quote.customer, amount, period_start, period_start + timedelta(days=30), quote.plan
    )


@function
async def email_invoice(ctx: FunctionContext, invoice: Invoice) -> bool:
    world.effect("email", invoice.number, due=invoice.due.isoformat())
    return True


@workflow
async def monthly_billing(
    ctx: WorkflowContext, customer: str, seats: int, period_start: datetime
) -> Invoice:
    quote = await ctx.step(quote_subscription, customer, seats)
    invoice = await ctx.step(issue_invoice, quote, period_start)
    await ctx.step(email_invoice, invoice)
    return invoice
