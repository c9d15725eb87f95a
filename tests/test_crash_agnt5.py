"""Crash tests of the AGNT5 primitives: real worker processes killed with SIGKILL while a
run waits for a person and in the middle of a batch, then resumed by another process,
on both stores. The ledger counts every execution of a step's effect."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support.polling import until
from surestep import Engine
from test_crash import WORKER, effects, recover

pytestmark = pytest.mark.slow


def start_kill_when(args: list[str], ready, env: dict[str, str] | None = None) -> str:  # type: ignore[no-untyped-def]
    """Run the worker until ``ready(run_id)`` (a coroutine function, asked of the store
    from this process) is true, then SIGKILL it; its run id."""
    with subprocess.Popen(
        [sys.executable, WORKER, *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("started "), line
        run_id = line.split()[1]
        try:
            asyncio.run(until(lambda: ready(run_id), timeout=60))
        finally:
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    return run_id


def test_a_run_waiting_for_a_person_survives_sigkill_and_resumes_on_the_answer(
    tmp_path: Path, store_url: str
) -> None:
    ledger = str(tmp_path / "ledger.jsonl")

    async def asks(run_id: str) -> bool:
        async with Engine(store_url, execute=False) as engine:
            return (await engine.get_run(run_id)).question is not None

    run_id = start_kill_when(["ask", store_url, ledger], asks)

    async def answer() -> None:
        async with Engine(store_url, execute=False) as engine:
            run = await engine.get_run(run_id)
            assert run.status == "waiting" and run.question is not None
            assert run.question["question"] == "Ship it?"
            await engine.answer(run_id, "only on Monday")  # allow_custom: their own words

    asyncio.run(answer())
    assert recover(store_url, ledger) == {run_id: {"answer": "only on Monday"}}
    done = Counter(e["seq"] for e in effects(ledger))
    assert done == Counter({0: 1, 3: 1})  # before and after the question, once each


def test_a_batch_killed_in_the_middle_resumes_only_its_unfinished_items(
    tmp_path: Path, store_url: str
) -> None:
    ledger = str(tmp_path / "ledger.jsonl")
    n = 8

    async def all_but_one_recorded(run_id: str) -> bool:
        async with Engine(store_url, execute=False) as engine:
            return len(await engine.journal(run_id)) == n - 1

    # Item 3 pauses inside its step; the other items finish, two at a time, around it.
    run_id = start_kill_when(
        ["fan", store_url, ledger, str(n)], all_but_one_recorded, {"PAUSE_AT": "inside:3"}
    )
    first = effects(ledger)
    assert len(first) == n
    assert recover(store_url, ledger) == {run_id: [k * k for k in range(n)]}
    runs = Counter(e["seq"] for e in effects(ledger))
    # Only the item that was running when the process died ran again.
    assert runs == Counter({**{k: 1 for k in range(n)}, 3: 2})
    pids = {e["pid"] for e in effects(ledger) if e["seq"] == 3}
    assert len(pids) == 2
