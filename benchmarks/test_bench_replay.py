"""Replay of a 10,000-step journal, recovery with 10,000 unfinished runs, journal bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

import workloads


@pytest.fixture(scope="module")
def replay_store(loop: asyncio.AbstractEventLoop) -> Iterator[workloads.Built]:
    built = workloads.build_replay_store(loop)
    yield built
    built.remove()


@pytest.fixture(scope="module")
def recovery_store(loop: asyncio.AbstractEventLoop) -> Iterator[workloads.Built]:
    built = workloads.build_recovery_store(loop)
    yield built
    built.remove()


@pytest.mark.benchmark(group="replay")
def test_replay(
    measure: Callable[..., dict[str, float]],
    loop: asyncio.AbstractEventLoop,
    replay_store: workloads.Built,
) -> None:
    """``recover()`` to result of one run whose 10,000 steps are recorded; each round
    resumes a fresh copy of the built store. Checks no step body runs again."""
    measure("replay", lambda: workloads.Replay(loop, replay_store), 5)


@pytest.mark.benchmark(group="recovery")
def test_recovery(
    measure: Callable[..., dict[str, float]],
    loop: asyncio.AbstractEventLoop,
    recovery_store: workloads.Built,
) -> None:
    """Engine open to the first step that was not recorded, 10,000 unfinished runs;
    checks every run then finishes with its own result."""
    measure("recovery", lambda: workloads.Recovery(loop, recovery_store), 5)


@pytest.mark.benchmark(group="journal bytes")
def test_journal_bytes(
    measure: Callable[..., dict[str, float]], loop: asyncio.AbstractEventLoop
) -> None:
    """Bytes per recorded step beyond its payload (the timing is of reading them all)."""
    measure("journal_bytes", lambda: workloads.JournalBytes(loop), 1)
