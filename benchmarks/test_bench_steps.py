"""Sequential steps (fsync and process durability), 1,000 concurrent workflows, and
short workflows under load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import workloads


@pytest.mark.benchmark(group="sequential 1,000 steps")
@pytest.mark.parametrize(("durability", "rounds"), [("fsync", 5), ("process", 10)])
def test_sequential(
    measure: Callable[..., dict[str, float]],
    loop: asyncio.AbstractEventLoop,
    durability: str,
    rounds: int,
) -> None:
    """One workflow, 1,000 steps; fsync: per step / one raw LMDB sync commit;
    process: per-step overhead over a plain ``await`` of the same function."""
    measure(
        f"sequential_{durability}",
        lambda: workloads.SequentialSteps(loop, durability),
        rounds,
    )


@pytest.mark.benchmark(group="1,000 workflows x 10 steps")
def test_concurrent(
    measure: Callable[..., dict[str, float]], loop: asyncio.AbstractEventLoop
) -> None:
    """1,000 concurrent workflows of 10 steps at fsync: steps/s, and the ratio to raw
    group commit of the same records with the same key layout."""
    measure("concurrent_fsync", lambda: workloads.ConcurrentSteps(loop), 5)


@pytest.mark.benchmark(group="1,000 short workflows in flight")
@pytest.mark.parametrize("steps", [0, 1])
def test_short_workflows(
    measure: Callable[..., dict[str, float]], loop: asyncio.AbstractEventLoop, steps: int
) -> None:
    """1,000 clients each starting a workflow of 0 or 1 step and waiting for its result,
    5 times, at fsync: workflows/s, and a workflow's cost over one step's in 1,000 x 10."""
    measure(f"short{steps}_fsync", lambda: workloads.ShortWorkflows(loop, steps), 5)
