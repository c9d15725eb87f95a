"""Retries with backoff policies: flaky services that succeed after a few attempts,
configured the AGNT5 ways (an int, a dict, RetryPolicy / BackoffPolicy / BackoffType),
and a per-attempt timeout."""

from __future__ import annotations

import asyncio

import world

from surestep import FunctionContext, WorkflowContext, function, workflow
from surestep.types import BackoffPolicy, BackoffType, RetryPolicy

RATES = {"EUR": 1.08, "GBP": 1.27}


@function(
    retries=RetryPolicy(max_attempts=4, initial_interval_ms=20, max_interval_ms=100),
    backoff=BackoffPolicy(type=BackoffType.EXPONENTIAL, multiplier=2.0),
)
async def fetch_exchange_rate(ctx: FunctionContext, currency: str) -> float:
    if ctx.attempt < 2:  # the rate service is flaky: two failures, then an answer
        raise ConnectionError(f"rate service unavailable (attempt {ctx.attempt})")
    world.effect("rate", currency, attempt=ctx.attempt)
    return RATES[currency]


@function(retries={"max_attempts": 3, "initial_interval_ms": 10}, backoff=BackoffType.LINEAR)
def post_ledger_entry(ctx: FunctionContext, account: str, amount: float) -> str:
    if ctx.attempt == 0:
        raise TimeoutError("ledger database busy")
    world.effect("ledger", account, amount=amount)
    return f"entry-{account}"


@function(retries=2, backoff={"type": "constant"}, timeout_ms=200)
async def notify_treasury(ctx: FunctionContext, account: str, amount: float) -> int:
    if ctx.attempt == 0:
        await asyncio.sleep(5)  # hangs: cut off by timeout_ms and tried again
    world.effect("notify", account, amount=amount)
    return ctx.attempt + 1


@workflow
async def currency_settlement(
    ctx: WorkflowContext, account: str, amount: float, currency: str
) -> dict:
    rate = await ctx.step(fetch_exchange_rate, currency)
    converted = round(amount * rate, 2)
    entry = await ctx.step(post_ledger_entry, account, converted)
    attempts = await ctx.step(notify_treasury, account, converted)
    return {"converted": converted, "entry": entry, "notify_attempts": attempts}
