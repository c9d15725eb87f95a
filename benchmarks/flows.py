"""The workflows every benchmark measures, in one module.

``chain(n)`` runs ``n`` durable steps one after the other, each adding one to the previous
step's output, and returns ``n`` (the sequential and concurrent goals, the DBOS
comparison, the worker-scaling runs). ``compare/compare.py`` defines the same two
functions for DBOS (``@DBOS.workflow()`` / ``@DBOS.step()``), with the same bodies.
``chain_of`` is the same loop over another step, for diagnostics whose step body does
more than add one. ``chain_then_park`` and ``step_park_step`` build unfinished runs for the
replay and recovery goals. Worker processes import this module by name, so that a client
and its workers register the same workflows at the same versions.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from surestep import WorkflowContext, function, workflow


class _State:
    """What the workflows below consult; reset by each workload's setup."""

    hold = False  # park after the recorded part (to build an unfinished run)
    want = 0  # how many runs must park before ``all_parked`` is set
    parked = 0
    all_parked: asyncio.Event | None = None
    executed = 0  # bodies of ``counted`` actually run
    first_new_step: asyncio.Event | None = None
    first_new_at = 0.0


state = _State()


def reset_state(hold: bool = False, want: int = 0) -> None:
    state.hold, state.want, state.parked, state.executed = hold, want, 0, 0
    state.all_parked = asyncio.Event() if hold else None
    state.first_new_step, state.first_new_at = None, 0.0


@function(name="bench.inc")
async def inc(x: int) -> int:
    return x + 1


@function(name="bench.counted")
async def counted(x: int) -> int:
    state.executed += 1
    return x + 1


@function(name="bench.first_new")
async def first_new(x: int) -> int:
    if state.first_new_step is not None and not state.first_new_step.is_set():
        state.first_new_at = time.perf_counter()
        state.first_new_step.set()
    return x + 1


async def _park() -> None:
    if not state.hold:
        return
    state.parked += 1
    if state.parked == state.want and state.all_parked is not None:
        state.all_parked.set()
    await asyncio.get_running_loop().create_future()  # until the engine closes


async def chain_of(ctx: WorkflowContext, step: Any, n: int) -> int:
    """``n`` durable steps of ``step`` one after the other, each on the last one's output."""
    x = 0
    for _ in range(n):
        x = await ctx.step(step, x)
    return x


@workflow(name="bench.chain")
async def chain(ctx: WorkflowContext, n: int) -> int:
    return await chain_of(ctx, inc, n)


@workflow(name="bench.chain_then_park")
async def chain_then_park(ctx: WorkflowContext, n: int) -> int:
    x = await chain_of(ctx, counted, n)
    await _park()
    return x


@workflow(name="bench.step_park_step")
async def step_park_step(ctx: WorkflowContext, i: int) -> int:
    x = await ctx.step(inc, i)
    await _park()
    return await ctx.step(first_new, x)
