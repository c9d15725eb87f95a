"""Durable retries: a step's failed attempts are kept in the store, so a crash does not
reset the count, and a backoff longer than the engine's ``inline_sleep`` gives the run
back until the next attempt is due, as a durable sleep does. On both backends; the
crash with a real process killed by SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.http_server import surestep_command
from surestep import Engine, FunctionContext, StepFailedError, WorkflowContext, function, workflow
from surestep.errors import LeaseLostError, RunNotFoundError, Suspended
from surestep.store.base import RunInfo, new_run_id

HERE = Path(__file__).parent
WORKER = HERE / "support" / "retry_worker.py"


class UnavailableError(Exception):
    pass


async def test_a_long_backoff_gives_the_run_back_and_any_engine_resumes_it(
    store_url: str,
) -> None:
    seen: list[int] = []

    @function(retries={"max_attempts": 3, "initial_interval_ms": 1500}, backoff="constant")
    async def flaky(ctx: FunctionContext) -> str:
        seen.append(ctx.attempt)
        if ctx.attempt == 0:
            raise UnavailableError("HTTP 503")
        return f"ok at attempt {ctx.attempt}"

    @workflow
    async def fetch(ctx: WorkflowContext) -> str:
        return str(await ctx.step(flaky))

    async with Engine(store_url, inline_sleep=0.2) as first:
        handle = await first.start(fetch)
        task = first.task(handle.run_id)
        assert task is not None
        await asyncio.wait({task})
        assert first.executing == 0  # the backoff holds no slot
        assert isinstance(task.exception(), Suspended)
        run = await first.get_run(handle.run_id)
        assert run.status == "waiting"
        assert run.retry is not None and run.wake_at == pytest.approx(
            run.retry["next_at"], abs=1e-3
        )
        assert run.status_text.startswith("retrying: step 0 (flaky) attempt 2 of 3, next at ")
        assert run.status_text.endswith("last error: test_retries.UnavailableError: HTTP 503")
    async with Engine(store_url, inline_sleep=0.2) as second:  # another engine's timer
        assert await second.handle(handle.run_id).result() == "ok at attempt 1"
        run = await second.get_run(handle.run_id)
        assert run.retry is None and run.status_text == "completed"
        [step] = await second.journal(handle.run_id)
        assert step.attempt == 2
        [failed] = (await second.attempts(handle.run_id))[0]
        assert failed["attempt"] == 1 and failed["e"]["message"] == "HTTP 503"
        assert failed["t0"] <= failed["t1"] <= failed["next"]
    assert seen == [0, 1]


async def test_short_backoffs_stay_inline_and_every_failure_is_kept(store_url: str) -> None:
    @function(retries={"max_attempts": 4, "initial_interval_ms": 10}, backoff="constant")
    def always_down(ctx: FunctionContext) -> None:
        raise UnavailableError(f"down at {ctx.attempt}")

    @workflow
    async def doomed(ctx: WorkflowContext) -> str:
        try:
            await ctx.step(always_down)
        except StepFailedError as exc:
            return f"{exc.attempts}: {exc}"
        return "no"

    async with Engine(store_url) as engine:
        handle = await engine.start(doomed)
        assert (await handle.result()).startswith("4: ")
        failed = (await engine.attempts(handle.run_id))[0]
        assert [(a["attempt"], a["e"]["message"]) for a in failed] == [
            (1, "down at 0"),
            (2, "down at 1"),
            (3, "down at 2"),
        ]
        [step] = await engine.journal(handle.run_id)
        assert step.kind == "step_error" and step.attempt == 4
        assert (await engine.get_run(handle.run_id)).retry is None


async def test_a_step_that_succeeds_first_writes_nothing_beside_its_record(
    store_url: str,
) -> None:
    @function
    def fine() -> int:
        return 1

    @workflow
    async def plain(ctx: WorkflowContext) -> int:
        return int(await ctx.step(fine)) + int(await ctx.step(fine))

    async with Engine(store_url) as engine:
        handle = await engine.start(plain)
        assert await handle.result() == 2
        assert await engine.attempts(handle.run_id) == {}
        assert await engine.store.attempts(handle.run_id) == []


def test_a_run_killed_after_attempt_3_of_5_resumes_at_attempt_4(
    store_url: str, tmp_path: Path
) -> None:
    """SIGKILL during the backoff after the third failure: the next process takes the
    fourth attempt, not the first again."""
    store, ledger = store_url, str(tmp_path / "attempts")
    env = {**os.environ, "PYTHONPATH": str(HERE / "support")}
    with subprocess.Popen(
        [sys.executable, str(WORKER), "start", store, ledger],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]
        deadline = time.monotonic() + 60
        while _retry_of(store, run_id) != 4:  # attempt 3's failure is in the store
            assert time.monotonic() < deadline, "attempt 3 never failed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert Path(ledger).read_text().split() == ["0", "1", "2"]
    out = subprocess.run(
        [sys.executable, str(WORKER), "recover", store, ledger],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    assert f"result {run_id} succeeded at attempt 3" in out
    assert Path(ledger).read_text().split() == ["0", "1", "2", "3"]

    async def journaled() -> tuple[int, list[int]]:
        async with Engine(store, execute=False) as engine:
            [step] = await engine.journal(run_id)
            failed = (await engine.attempts(run_id))[0]
            return step.attempt, [a["attempt"] for a in failed]

    assert asyncio.run(journaled()) == (4, [1, 2, 3])


def _retry_of(store: str, run_id: str) -> int | None:
    """The attempt the run's retrying step is due to take next, as the store says."""

    async def read() -> int | None:
        async with Engine(store, execute=False) as engine:
            retry = (await engine.get_run(run_id)).retry
            return None if retry is None else int(retry["attempt"])

    return asyncio.run(read())


def _surestep(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*surestep_command(), "--store", store, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_surestep_run_says_when_a_step_is_retried(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    done = _surestep(store, "run", f"{WORKER}:refused_once")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"accepted"'
    lines = done.stderr.splitlines()  # the progress: one line a step
    [retrying] = [line for line in lines if "retrying" in line]
    assert "once_refused  retrying: attempt 2 of 3 at " in retrying
    assert retrying.endswith("last error: ConnectionError: refused, once")
    assert any("once_refused" in line and "2 attempts" in line for line in lines)
    assert lines.index(retrying) < next(i for i, line in enumerate(lines) if "2 attempts" in line)


def test_runs_and_show_say_a_run_is_retrying(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with subprocess.Popen(
        [*surestep_command(), "--store", store, "run", f"{WORKER}:retried_in_an_hour", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while True:
                listed = _surestep(store, "runs", "--json")
                runs = json.loads(listed.stdout) if listed.returncode == 0 else []
                if runs and runs[0]["status"] == "waiting":
                    break
                assert time.monotonic() < deadline, listed.stderr
                time.sleep(0.1)
            [run] = runs
            expected = "retrying: step 1 (partner_down) attempt 2 of 4, next at "
            assert run["status_text"].startswith(expected)
            assert run["retry"]["error"] == "ConnectionError: partner API answered HTTP 503"
            table = _surestep(store, "runs").stdout
            assert expected in table
            shown = _surestep(store, "show", run["run_id"])
            assert shown.returncode == 0
            assert f"status    {expected}" in shown.stdout
            step_line = next(
                line for line in shown.stdout.splitlines() if "partner_down" in line and "2" in line
            )
            assert "retrying" in step_line and "HTTP 503" in step_line
            assert "failed" not in shown.stdout  # a step between attempts has not failed
            as_json = json.loads(_surestep(store, "show", run["run_id"], "--json").stdout)
            step = as_json["steps"][-1]
            assert (step["status"], step["attempt"], step["of"]) == ("retrying", 2, 4)
            assert [a["status"] for a in step["attempts"]] == ["failed", "retrying"]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


async def test_the_store_keeps_attempts_fenced_and_suspends_in_the_same_write(
    store_url: str,
) -> None:
    async with Engine(store_url, execute=False) as engine:
        store = engine.store
        run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
        fence = await store.create_run(run, "here:1:a", 60.0)
        retry = {"seq": 3, "name": "charge", "attempt": 2, "of": 5, "next_at": 2e9, "error": "E: x"}
        await store.record_attempt(run.run_id, fence, 3, 1, b'{"seq":3,"attempt":1}', retry, None)
        stored = await store.get_run(run.run_id)
        assert stored.status == "running" and stored.retry == retry
        with pytest.raises(LeaseLostError):
            await store.record_attempt(run.run_id, fence + 1, 3, 2, b"{}", retry, None)
        again = {**retry, "attempt": 3}
        await store.record_attempt(run.run_id, fence, 3, 2, b'{"seq":3,"attempt":2}', again, 2e9)
        stored = await store.get_run(run.run_id)
        assert (stored.status, stored.owner, stored.retry) == ("waiting", None, again)
        assert stored.wake_at == pytest.approx(2e9)
        await store.record_attempt(
            run.run_id, fence, 3, 2, b'{"seq":3,"attempt":2,"x":1}', again, 2e9
        )
        assert await store.attempts(run.run_id) == [
            b'{"seq":3,"attempt":1}',
            b'{"seq":3,"attempt":2,"x":1}',  # written again after a crash: replaced
        ]
        await store.retry_done(run.run_id, fence, 4)  # another step: the retry stays
        assert (await store.get_run(run.run_id)).retry == again
        await store.retry_done(run.run_id, fence, 3)
        assert (await store.get_run(run.run_id)).retry is None
        # Given back (waiting for its retry): it ends by a cancel, its holder's finish
        # refused (base.TRANSITIONS).
        with pytest.raises(LeaseLostError):
            await store.finish(run.run_id, fence, "completed", None, None, 0)
        assert await store.cancel(run.run_id, 0)
        await store.hide_expired(time.time() + 1, 0, None, 10)
        assert await store.attempts(run.run_id) == []
        while await store.sweep_hidden(100) != (0, 0):
            pass


async def test_runs_page_by_run_id(store_url: str) -> None:
    async with Engine(store_url, execute=False) as engine:
        made = []
        for i in range(7):
            run = RunInfo(
                run_id=f"{i:012x}{'cd' * 10}", workflow="ab"[i % 2], version="v", args=[], kwargs={}
            )
            await engine.store.create_run(run, None, 60.0)
            made.append(run.run_id)
        newest = made[::-1]
        first = await engine.runs(limit=3)
        assert [r.run_id for r in first] == newest[:3]
        second = await engine.runs(limit=3, before=first[-1].run_id)
        assert [r.run_id for r in second] == newest[3:6]
        assert [r.run_id for r in await engine.runs(before=made[0])] == []
        assert [r.run_id for r in await engine.runs(workflow="a", before=made[4])] == [
            made[2],
            made[0],
        ]
        with pytest.raises(RunNotFoundError):
            await engine.runs(before="not-a-run-id")


def test_status_text_of_a_retrying_run() -> None:
    retry = {"seq": 2, "name": "charge", "attempt": 3, "of": 5, "error": "TimeoutError: 503"}
    run = RunInfo(run_id=new_run_id(), workflow="wf", version="v1", args=[], kwargs={})
    run.status, run.retry, run.wake_at = "waiting", {**retry, "next_at": time.time() + 60}, 1.0
    assert run.status_text.startswith("retrying: step 2 (charge) attempt 3 of 5, next at ")
    assert run.status_text.endswith(", last error: TimeoutError: 503")
    run.status, run.lease_until = "running", time.time() + 30
    run.retry = {**retry, "next_at": time.time() - 1}
    assert "attempt 3 of 5, running since " in run.status_text
    run.lease_until = time.time() - 1  # its worker stopped: that is what it waits for
    assert run.status_text == "waiting: a worker serving wf v1 (the last one stopped)"
    run.status = "completed"
    assert run.status_text == "completed"


def test_a_surestep_worker_takes_the_next_attempt_of_a_run_given_back(store_url: str) -> None:
    from support.retry_worker import refused_once

    async def start_until_given_back() -> str:
        async with Engine(store_url, inline_sleep=0.2) as first:
            handle = await first.start(refused_once)
            task = first.task(handle.run_id)
            assert task is not None
            await asyncio.wait({task})
            assert (await first.get_run(handle.run_id)).status == "waiting"
            return handle.run_id

    async def finished(run_id: str) -> tuple[RunInfo, int]:
        async with Engine(store_url, execute=False) as reader:
            deadline = time.monotonic() + 60
            while (run := await reader.get_run(run_id)).status != "completed":
                assert time.monotonic() < deadline and worker.poll() is None, run.status_text
                await reader.store.wait_changed(0.2)
            [step] = await reader.journal(run_id)
            return run, step.attempt

    run_id = asyncio.run(start_until_given_back())
    with subprocess.Popen(
        [*surestep_command(), "--store", store_url, "worker", str(WORKER)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        try:
            run, attempts = asyncio.run(finished(run_id))
            assert run.result == "accepted" and run.retry is None and attempts == 2
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 0, stderr
