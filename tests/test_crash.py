"""Crash tests with real processes killed by SIGKILL, then recovered by another.

Side-effect ledgers prove: every completed step ran exactly once, an
interrupted step at most once more (with the same idempotency key), and the
result equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from support.crash_worker import expected
from support.processes import kill_when_paused

pytestmark = pytest.mark.slow
WORKER = str(Path(__file__).parent / "support" / "crash_worker.py")


def start_and_kill(args: list[str], pause: str, env: dict[str, str] | None = None) -> str:
    """Run the worker until it reports ``paused``, then SIGKILL it; return its run id."""
    command = [sys.executable, WORKER, *args]
    return kill_when_paused(command, {**os.environ, **(env or {}), "PAUSE_AT": pause})


def recover(store: str, ledger: str, env: dict[str, str] | None = None) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, WORKER, "recover", store, ledger],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results = {}
    for line in out.stdout.splitlines():
        if line.startswith("result "):
            _, run_id, value = line.split(" ", 2)
            results[run_id] = json.loads(value)
    return results


def effects(ledger: str) -> list[dict]:
    with open(ledger, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("durability", ["fsync", "process"])
def test_kill_between_steps(tmp_path: Path, store_url: str, durability: str) -> None:
    store, ledger = store_url, str(tmp_path / "ledger")
    env = {"DURABILITY": durability}
    run_id = start_and_kill(["start", store, ledger, "6"], "between:2", env)
    assert [e["seq"] for e in effects(ledger)] == [0, 1, 2]
    assert recover(store, ledger, env) == {run_id: expected(6)}
    seqs = Counter(e["seq"] for e in effects(ledger))
    assert seqs == Counter(range(6))  # every step exactly once


def test_kill_inside_a_step(tmp_path: Path, store_url: str) -> None:
    store, ledger = store_url, str(tmp_path / "ledger")
    run_id = start_and_kill(["start", store, ledger, "6"], "inside:3")
    assert recover(store, ledger) == {run_id: expected(6)}
    lines = effects(ledger)
    seqs = Counter(e["seq"] for e in lines)
    assert seqs == Counter({0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1})  # step 3 once more
    keys = {e["key"] for e in lines if e["seq"] == 3}
    assert keys == {f"{run_id}:3"}  # the same idempotency key both times
    assert len({e["pid"] for e in lines if e["seq"] == 3}) == 2


def test_kill_while_replaying(tmp_path: Path, store_url: str) -> None:
    store, ledger = store_url, str(tmp_path / "ledger")
    run_id = start_and_kill(["start", store, ledger, "40"], "between:29")
    # The second process is killed while it replays the 30 recorded steps.
    start_and_kill(["recover", store, ledger], "replay:15")
    assert Counter(e["seq"] for e in effects(ledger)) == Counter(range(30))
    assert recover(store, ledger) == {run_id: expected(40)}
    assert Counter(e["seq"] for e in effects(ledger)) == Counter(range(40))


@pytest.mark.citus_forms
def test_many_runs_killed_mid_flight_all_finish(tmp_path: Path, store_url: str) -> None:
    store, ledger = store_url, str(tmp_path / "ledger")
    ids = [start_and_kill(["start", store, ledger, "5"], f"between:{k}") for k in range(4)]
    assert recover(store, ledger) == {run_id: expected(5) for run_id in ids}
    per_run = Counter((e["run"], e["seq"]) for e in effects(ledger))
    assert per_run == Counter((run_id, k) for run_id in ids for k in range(5))


def test_kill_during_a_sleep_wakes_at_the_original_time(tmp_path: Path, store_url: str) -> None:
    store, ledger = store_url, str(tmp_path / "ledger")
    env = {**os.environ, "INLINE_SLEEP": "60"}  # sleeps in place, holding its lease
    with subprocess.Popen(
        [sys.executable, WORKER, "nap", store, ledger, "3"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]
        wake_at = None
        while wake_at is None:  # kill it once the wake-up time is journaled
            wake_at = _sleep_record(store, run_id)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    # Restart a second before the journaled wake-up time: waking at that time comes about
    # a second after the restart, a sleep counted anew from the restart 3 s after it. (A
    # restart right after the kill left only milliseconds between the two, less than a
    # timer may fire late on a busy machine.)
    time.sleep(max(0.0, wake_at - 1 - time.time()))
    restarted_at = time.time()
    woke = recover(store, ledger, {"INLINE_SLEEP": "60"})[run_id]
    assert wake_at <= woke < restarted_at + 3  # the journaled time, not 3 s after the restart


def _sleep_record(store: str, run_id: str) -> float | None:
    from surestep import Engine
    from surestep.engine import run_loop

    async def read() -> float | None:
        async with Engine(store, execute=False) as engine:
            entries = [e for e in await engine.journal(run_id) if e.kind == "sleep"]
            return float(entries[0].output) if entries else None

    return run_loop(read())
