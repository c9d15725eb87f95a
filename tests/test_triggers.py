"""Event triggers on both backends: an emit from a process that does not import the
workflows, duplicate ids, and an emitting process SIGKILLed right after emit returned."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from surestep import ConfigurationError, Engine, WorkflowContext, event, workflow
from surestep.engine import run_loop

HERE = Path(__file__).parent

SERVE = """
import sys
from surestep.engine import run_loop
from surestep.worker import serve
ready = lambda: print("ready", flush=True)
run_loop(serve(sys.argv[1], ["support.ways_in_workload"], concurrency=8, lease_seconds=2.0,
               on_ready=ready))
"""

# Emits, prints the runs' ids, then dies at once: nothing after emit's return runs.
EMIT_AND_DIE = """
import asyncio, json, os, signal, sys
from surestep import Engine

async def main():
    engine = Engine(sys.argv[1], execute=False)
    handles = await engine.emit("user.created", {"user_id": "u-9"}, id="evt-9")
    print(json.dumps([h.run_id for h in handles]), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def spawn_worker(store: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE), "SURESTEP_TEST_EVERY": "3600"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, store], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    assert proc.stdout is not None
    proc.stdout.close()
    return code


def subscribed(store_url: str, count: int) -> None:
    """Wait until ``count`` subscriptions are stored (a worker registers them as it opens)."""

    async def wait() -> None:
        async with Engine(store_url, execute=False) as reader:
            while len(await reader.store.subscriptions()) < count:
                await reader.store.wait_changed(1.0)

    run_loop(asyncio.wait_for(wait(), 60))


def surestep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "surestep.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_emit_from_a_process_without_the_workflows(store_url: str) -> None:
    """The test process never imports ``support.ways_in_workload``; the CLI emits."""
    worker = spawn_worker(store_url)
    try:
        subscribed(store_url, 3)
        payload = json.dumps({"user_id": "u-1"})
        first = surestep(
            "emit", "user.created", payload, "--id", "evt-1", "--store", store_url, "--json"
        )
        assert first.returncode == 0, first.stderr
        runs = {row["workflow"]: row["run_id"] for row in json.loads(first.stdout)}
        assert sorted(runs) == ["audit", "welcome"]
        again = surestep(
            "emit", "user.created", payload, "--id", "evt-1", "--store", store_url, "--json"
        )
        assert again.returncode == 0, again.stderr
        assert {row["workflow"]: row["run_id"] for row in json.loads(again.stdout)} == runs
        deleted = surestep("emit", "user.deleted", payload, "--id", "evt-1", "--store", store_url)
        assert deleted.returncode == 0 and deleted.stdout.split()[1] == "audit"
        nobody = surestep("emit", "order.paid", "{}", "--store", store_url)
        assert nobody.returncode == 0 and "no workflow is subscribed" in nobody.stdout
        if "://" not in store_url:  # no store there: nothing is created
            nowhere = surestep("emit", "user.created", "{}", "--store", store_url + "-typo")
            assert nowhere.returncode == 4 and not os.path.exists(store_url + "-typo")
        bad = surestep("emit", "user.created", "[1, 2]", "--store", store_url)
        assert bad.returncode == 2 and "JSON object" in bad.stderr

        async def results() -> dict[str, object]:
            async with Engine(store_url, execute=False) as client:
                return {
                    name: await asyncio.wait_for(client.handle(run_id).result(), 60)
                    for name, run_id in runs.items()
                }

        assert run_loop(results()) == {"welcome": "welcome u-1", "audit": ["u-1", "free"]}

        async def counts() -> dict[str, int]:
            async with Engine(store_url, execute=False) as reader:
                every = await reader.runs()
                return {
                    name: sum(r.workflow == name for r in every) for name in ("welcome", "audit")
                }

        assert run_loop(counts()) == {"welcome": 1, "audit": 2}  # audit: one per event
    finally:
        assert stop(worker) == 0


def test_an_emit_that_returned_survives_a_kill(store_url: str) -> None:
    worker = spawn_worker(store_url)
    try:
        subscribed(store_url, 3)
    finally:
        assert stop(worker) == 0  # no worker while the emitter dies
    emitter = subprocess.run(
        [sys.executable, "-c", EMIT_AND_DIE, store_url], capture_output=True, text=True, timeout=120
    )
    assert emitter.returncode == -signal.SIGKILL
    run_ids = json.loads(emitter.stdout)
    assert len(run_ids) == 2
    worker = spawn_worker(store_url)
    try:

        async def results() -> list[object]:
            async with Engine(store_url, execute=False) as client:
                return [
                    await asyncio.wait_for(client.handle(run_id).result(), 60) for run_id in run_ids
                ]

        assert sorted(map(str, run_loop(results()))) == sorted(["['u-9', 'free']", "welcome u-9"])
    finally:
        assert stop(worker) == 0


async def test_emit_in_process(store_url: str) -> None:
    @workflow(triggers=[event("invoice.paid")])
    async def thank(ctx: WorkflowContext, invoice: str, amount: int) -> str:
        return f"{invoice}: {amount}"

    async with Engine(store_url) as engine:
        assert await engine.emit("nobody.listens", {"a": 1}) == []
        [handle] = await engine.emit("invoice.paid", {"invoice": "i-1", "amount": 5}, id="p-1")
        [same] = await engine.emit("invoice.paid", {"invoice": "i-1", "amount": 5}, id="p-1")
        assert same.run_id == handle.run_id
        [other] = await engine.emit("invoice.paid", {"invoice": "i-2", "amount": 7})
        assert other.run_id != handle.run_id
        run = await handle.info()
        assert (run.workflow, run.kwargs) == ("thank", {"invoice": "i-1", "amount": 5})
        assert await handle.result() == "i-1: 5"  # executed here: this engine serves it
        assert await other.result() == "i-2: 7"
        async with Engine(store_url, execute=False) as client:
            [pending] = await client.emit("invoice.paid", {"invoice": "i-3", "amount": 1})
            assert (await pending.info()).status == "pending"  # a client executes nothing
        assert len(await engine.runs(workflow="thank")) == 3
        for payload in ([1], "text", 3):
            with pytest.raises(ConfigurationError, match="JSON object"):
                await engine.emit("invoice.paid", payload)
        for bad_id in ("", 5, "a\x00b"):
            with pytest.raises(ConfigurationError):
                await engine.emit("invoice.paid", {}, id=bad_id)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="shorter"):
            await engine.emit("invoice.paid", {}, id="x" * 300)
        for name in ("", "a\x00b", 5):
            with pytest.raises(ConfigurationError):
                await engine.emit(name, {})  # type: ignore[arg-type]
        assert len(await engine.runs(workflow="thank")) == 3  # nothing refused was stored


async def test_the_runs_keys_are_idempotency_keys(store_url: str) -> None:
    """A start with the key of a run an event or a tick started returns that run."""
    from surestep.schedules import fire_due, tick_key
    from surestep.triggers import event_key

    @workflow(triggers=[event("invoice.paid")])
    async def thank(ctx: WorkflowContext, invoice: str) -> str:
        return invoice

    @workflow(name="nightly", every=3600)
    async def nightly(ctx: WorkflowContext) -> int:
        return 1

    async with Engine(store_url) as engine:
        [emitted] = await engine.emit("invoice.paid", {"invoice": "i-1"}, id="p-1")
        key = event_key("invoice.paid", "p-1", "thank")
        again = await engine.start(thank, invoice="i-1", idempotency_key=key)
        assert again.run_id == emitted.run_id
        [schedule] = await engine.store.schedules()
        tick = schedule.since + 3600 - schedule.since % 3600
        await fire_due(engine.store, tick + 1)  # as the scheduler does at that time
        [(key, run_id)] = (await engine.store.idempotency_keys("schedule:nightly:")).items()
        assert key == tick_key("nightly", tick)
        assert (await engine.start(nightly, idempotency_key=key)).run_id == run_id


def test_emit_and_schedules_over_http(store_url: str) -> None:
    """POST /api/events and GET /api/schedules of `surestep serve`, real requests."""
    import httpx

    from support.http_server import Served

    async def subscribe() -> None:
        async with Engine(store_url, execute=False) as engine:
            await engine.store.register_subscriptions("welcome", "v1", ["user.created"])

    run_loop(subscribe())
    served = Served(store_url)
    try:
        json_type = {"Content-Type": "application/json"}
        body = {"name": "user.created", "payload": {"user_id": "u-7"}, "id": "evt-7"}
        first = httpx.post(served.base + "/api/events", json=body, headers=json_type, timeout=60)
        assert first.status_code == 202, first.text
        [run] = first.json()["runs"]
        assert (run["workflow"], run["kwargs"]) == ("welcome", {"user_id": "u-7"})
        again = httpx.post(served.base + "/api/events", json=body, headers=json_type, timeout=60)
        assert [r["run_id"] for r in again.json()["runs"]] == [run["run_id"]]
        bad = httpx.post(
            served.base + "/api/events",
            json={"name": "user.created", "payload": [1]},
            headers=json_type,
            timeout=60,
        )
        assert bad.status_code == 422 and "JSON object" in bad.json()["error"]
        listed = httpx.get(served.base + "/api/schedules", timeout=60)
        assert listed.status_code == 200 and listed.json() == {"schedules": []}
    finally:
        assert served.close() == 0
