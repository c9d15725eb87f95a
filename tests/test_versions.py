"""Versions and deploys: golden journals, the replay check, patching, fork,
deployments, and worker processes of two versions serving one store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import golden_workflows
from surestep import Engine, WorkflowContext, _core, decorators, function, testing, workflow
from surestep.store.base import RunInfo

HERE = Path(__file__).parent
GOLDEN = HERE / "golden"

# The journals beside make_golden.py were recorded by surestep 0.1 (journal format 1);
# format2/ holds the same runs as this surestep records them. Both must replay.
GOLDEN_DIRS = pytest.mark.parametrize("golden", [GOLDEN, GOLDEN / "format2"], ids=["f1", "f2"])


@GOLDEN_DIRS
def test_golden_journal_replays_compatibly(golden: Path) -> None:
    report = testing.replay(
        golden_workflows.checkout, testing.load_journal(golden / "checkout-v1.json")
    )
    assert report.compatible, report.describe()
    assert report.replayed == 6  # reserve, reserve, patch marker, receipt, pay, deadline


@GOLDEN_DIRS
def test_golden_journal_from_before_a_patch_takes_the_old_branch(golden: Path) -> None:
    report = testing.replay(
        golden_workflows.checkout, testing.load_journal(golden / "checkout-before-receipt.json")
    )
    assert report.compatible, report.describe()


@GOLDEN_DIRS
def test_incompatible_golden_journal_names_the_divergence(golden: Path) -> None:
    report = testing.replay("checkout", testing.load_journal(golden / "checkout-paid-first.json"))
    assert not report.compatible and report.divergence is not None
    assert report.divergence.seq == 0
    assert report.divergence.recorded["name"] == "pay"
    assert report.divergence.requested["name"] == "reserve"
    assert "golden_workflows.py:" in str(report.divergence)  # the source line that asked
    assert "INCOMPATIBLE" in report.describe()


def test_golden_journals_are_in_the_format_they_claim() -> None:
    for golden, version in ((GOLDEN, 1), (GOLDEN / "format2", 2)):
        for path in sorted(golden.glob("*.json")):
            for raw in testing.load_journal(path).records:
                assert _core.decode_record(raw).version == version, path


async def test_a_run_recorded_by_surestep_0_1_resumes_and_forks(store_url: str) -> None:
    """A store upgraded under a waiting run, on either backend: its format-1 records are
    replayed, the steps after them are journaled in format 2 beside them, and a fork
    copies both."""
    recorded = testing.load_journal(GOLDEN / "checkout-v1.json")
    async with Engine(store_url) as engine:
        run = RunInfo(
            run_id=recorded.run_id,
            workflow=recorded.workflow,
            version=recorded.version,
            args=recorded.args,
            kwargs=recorded.kwargs,
        )
        fence = await engine.store.create_run(run, engine.owner, 60.0)
        for raw in recorded.records:
            await engine.store.append(run.run_id, fence, _core.decode_record(raw).seq, raw)
        await engine.store.release(run.run_id, fence)
        await engine.send_event(run.run_id, "note", "fragile")  # its deadline has passed
        (handle,) = await engine.recover()
        result = await handle.result()
        assert result["note"] == "fragile" and result["payment"] == "paid-250"
        journal = await engine.journal(run.run_id)
        assert [e.seq for e in journal] == list(range(len(journal)))
        versions = [r.version for r in await engine.records(run.run_id)]
        assert versions[:6] == [1] * 6 and set(versions[6:]) == {2}
        fork = await engine.fork(run.run_id, from_step=len(journal))
        assert await fork.result() == result
        forked = [r.version for r in await engine.records(fork.run_id)]
        assert forked[:6] == [1] * 6 and set(forked[6:]) == {2}


async def test_check_store_reports_each_in_flight_run(store_url: str) -> None:
    @workflow(name="checked", version="1")
    async def checked(ctx: WorkflowContext, n: int) -> int:
        a = await ctx.step("a", lambda: n)
        await ctx.wait_for_event("go")
        return a

    async with Engine(store_url) as engine:
        waiting = [await engine.start(checked, n) for n in range(3)]
        done = await engine.start(checked, 9)
        await engine.send_event(done.run_id, "go")
        await done.result()
        while len(await engine.runs(status="waiting")) < 3:
            await engine.store.wait_changed(1.0)  # a suspension wakes it
        decorators._workflows.pop("checked")

        @workflow(name="checked", version="1")
        async def checked_changed(ctx: WorkflowContext, n: int) -> int:
            return await ctx.step("b", lambda: n)

        reports = await testing.check_store(engine)
    assert {r.run_id for r in reports} == {h.run_id for h in waiting}  # only in-flight runs
    assert all(not r.compatible and r.divergence is not None for r in reports)
    assert all(r.divergence.recorded["name"] == "a" for r in reports if r.divergence)


async def test_patched_old_runs_keep_the_old_branch_new_runs_take_the_new(store_url: str) -> None:
    @workflow(name="patchy", version="1")
    async def before(ctx: WorkflowContext) -> list:
        a = await ctx.step("a", lambda: "a")
        b = await ctx.step("old", lambda: "old")
        await ctx.wait_for_event("go")
        return [a, b]

    async with Engine(store_url) as engine:
        old_run = await engine.start(before)  # passes the patch point on the old code
        while (await engine.get_run(old_run.run_id)).status != "waiting":
            await engine.store.wait_changed(1.0)
    decorators._workflows.pop("patchy")

    @workflow(name="patchy", version="1")
    async def after(ctx: WorkflowContext) -> list:
        a = await ctx.step("a", lambda: "a")
        if ctx.patched("new-middle"):
            b = await ctx.step("new", lambda: "new")
        else:
            b = await ctx.step("old", lambda: "old")
        await ctx.wait_for_event("go")
        return [a, b]

    async with Engine(store_url) as engine:
        new_run = await engine.start(after)
        for handle in (old_run, new_run):
            await engine.send_event(handle.run_id, "go")
        assert await engine.handle(old_run.run_id).result() == ["a", "old"]
        assert await engine.handle(new_run.run_id).result() == ["a", "new"]
        assert [e.name for e in await engine.journal(new_run.run_id)] == [
            "a",
            "@patch:new-middle",
            "new",
            "@event:go",
        ]


async def test_fork_reuses_the_journal_before_a_step(store_url: str) -> None:
    ran: list[str] = []

    @function
    async def note(tag: str) -> str:
        ran.append(tag)
        return tag

    @workflow
    async def three(ctx: WorkflowContext) -> list:
        return [await ctx.step(note, t) for t in ("x", "y", "z")]

    async with Engine(store_url) as engine:
        first = await engine.start(three)
        assert await first.result() == ["x", "y", "z"]
        forked = await engine.fork(first.run_id, from_step=1)
        assert await forked.result() == ["x", "y", "z"]
        assert forked.run_id != first.run_id
        assert [e.seq for e in await engine.journal(forked.run_id)] == [0, 1, 2]
    assert ran == ["x", "y", "z", "y", "z"]  # step 0 came from the journal


async def test_deployments_pin_new_runs_and_count_in_flight(store_url: str) -> None:
    @workflow(name="deployed", version="2024.1")
    async def deployed(ctx: WorkflowContext) -> str:
        await ctx.wait_for_event("go")
        return "done"

    async with Engine(store_url) as engine:
        assert await engine.deploy(deployed) == {
            "workflow": "deployed",
            "version": "2024.1",
            "digest": decorators.code_digest(deployed),
        }
        served = await engine.start(deployed)
        await engine.deploy(deployed, version="2024.2")  # a newer version is current now
        pinned = await engine.start(deployed)
        assert (await engine.get_run(served.run_id)).version == "2024.1"
        assert (await engine.get_run(pinned.run_id)).version == "2024.2"
        assert (await engine.get_run(pinned.run_id)).status == "pending"  # no worker serves it here
        rows = await engine.deployments()
    assert [(d["version"], d["in_flight"]) for d in rows] == [("2024.1", 1), ("2024.2", 1)]


# -- real processes


SERVE = """
import sys
from surestep.engine import run_loop
from surestep.worker import serve
ready = lambda: print("ready", flush=True)
run_loop(serve(sys.argv[1], ["support.versioned"], concurrency=8, on_ready=ready))
"""


def _worker(store: str, version: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, store],
        env={**os.environ, "PYTHONPATH": str(HERE), "SURESTEP_TEST_VERSION": version},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.slow
def test_two_versions_of_workers_serve_one_store(store_url: str) -> None:
    import importlib

    from surestep.engine import run_loop

    store = store_url
    os.environ["SURESTEP_TEST_VERSION"] = "v1"
    from support import versioned

    versioned = importlib.reload(versioned)

    async def start_v1() -> list[str]:
        async with Engine(store, execute=False) as client:
            await client.deploy("greeter")
            return [(await client.start("greeter", f"old{i}")).run_id for i in range(4)]

    old_ids = run_loop(start_v1())
    v1 = _worker(store, "v1")
    try:

        async def wait_greeted(ids: list[str]) -> None:
            async with Engine(store, execute=False) as client:
                await wait_greeted_on(client, ids)

        run_loop(wait_greeted(old_ids))

        # v2 changes the code incompatibly: the replay check catches it before any run fails.
        decorators._workflows.pop("greeter")
        os.environ["SURESTEP_TEST_VERSION"] = "v2"
        versioned = importlib.reload(versioned)

        async def check_and_deploy() -> list[str]:
            async with Engine(store, execute=False) as client:
                reports = await testing.check_store(client)
                assert len(reports) == 4 and not any(r.compatible for r in reports)
                await client.deploy("greeter")  # deployed anyway: old runs stay on v1
                return [(await client.start("greeter", f"new{i}")).run_id for i in range(4)]

        new_ids = run_loop(check_and_deploy())
        v2 = _worker(store, "v2")
        try:

            async def finish_all() -> dict[str, str]:
                async with Engine(store, execute=False) as client:
                    await wait_greeted_on(client, new_ids)
                    for run_id in old_ids + new_ids:
                        await client.send_event(run_id, "go")
                    return {r: await client.handle(r).result() for r in old_ids + new_ids}

            results = run_loop(finish_all())
        finally:
            v2.terminate()
            v2.wait()
            assert v2.stdout is not None
            v2.stdout.close()
    finally:
        v1.terminate()
        v1.wait()
        assert v1.stdout is not None
        v1.stdout.close()
        os.environ.pop("SURESTEP_TEST_VERSION", None)
    assert all(results[r] == f"v1:hello old{i}:{v1.pid}" for i, r in enumerate(old_ids))
    assert all(results[r] == f"v2:stamped:hello new{i}:{v2.pid}" for i, r in enumerate(new_ids))


async def wait_greeted_on(client: Engine, ids: list[str]) -> None:
    """Until every run waits for its event (each worker took and greeted its runs)."""
    while [(await client.get_run(r)).status for r in ids] != ["waiting"] * len(ids):
        await client.store.wait_changed(1.0)
