"""Stores made by the previous release open and keep working on this one.

``v0_2/`` holds an LMDB store and a PostgreSQL schema that surestep 0.2.0 wrote
(``make_stores.py``): runs completed, failed, parent and child, sleeping, waiting for an
event, and two in flight when their process was killed. Each test opens a fresh copy
with today's code.
"""

from __future__ import annotations

import json
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import flows_v0_2 as flows  # noqa: E402

from surestep import Engine, WorkflowFailedError  # noqa: E402

RELEASE = HERE / "v0_2"
MANIFEST = json.loads((RELEASE / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(params=["lmdb", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A fresh copy of the 0.2 store of one backend, and the ids of its runs."""
    if request.param == "lmdb":
        store = tmp_path / "store"
        store.mkdir()
        with tarfile.open(RELEASE / "lmdb.tar.gz") as tar:
            tar.extractall(store, filter="data")
        return str(store), MANIFEST["lmdb"]
    url: str = request.getfixturevalue("pg_url")
    schema = f"v02_{uuid.uuid4().hex[:12]}"
    restore(url, schema)
    return f"{url}?schema={schema}", MANIFEST["postgres"]


def restore(url: str, schema: str) -> None:
    """Load the 0.2 schema's dump under the name ``schema``."""
    import asyncio

    import asyncpg

    dump = (RELEASE / "postgres.sql").read_text(encoding="utf-8")
    script = "\n".join(
        line
        for line in dump.splitlines()
        if not line.startswith("\\")  # psql commands
    ).replace(MANIFEST["schema"], schema)

    async def load() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(script)
        finally:
            await conn.close()

    asyncio.run(load())


@pytest.fixture(autouse=True)
def _calls() -> None:
    flows.calls.clear()


async def test_every_run_of_a_0_2_store_reads_as_it_was(
    old_store: tuple[str, dict[str, str]],
) -> None:
    store, ids = old_store
    async with Engine(store, execute=False) as engine:
        status = {role: (await engine.get_run(run_id)).status for role, run_id in ids.items()}
        assert status == {
            "completed": "completed",
            "failed": "failed",
            "parent": "completed",
            "child": "completed",
            "sleeping": "waiting",
            "waiting_event": "waiting",
            "in_flight": "running",
            "in_flight_digest": "running",
        }
        assert len(await engine.runs()) == len(ids)
        assert await engine.handle(ids["completed"]).result() == {
            "sku": "a",
            "reservation": "res-a",
            "tracking": "ship-res-a",
        }
        with pytest.raises(WorkflowFailedError, match="no stock for x"):
            await engine.handle(ids["failed"]).result()
        steps = await engine.journal(ids["parent"])
        assert [(s.name, s.kind, s.child) for s in steps] == [
            ("@child:v02_order", "child", ids["child"]),
            ("@now", "value", None),
            ("@uuid4", "value", None),
        ]
        journal = await engine.journal(ids["in_flight"])
        assert [(s.name, s.output) for s in journal] == [("v02_reserve", "res-b")]
        deployed = await engine.deployments()
        assert [(d["workflow"], d["version"], d["in_flight"]) for d in deployed] == [
            ("v02_order", "1", 1)
        ]


async def test_runs_left_in_flight_by_0_2_resume_with_nothing_done_twice(
    old_store: tuple[str, dict[str, str]],
) -> None:
    store, ids = old_store
    async with Engine(store) as engine:
        resumed = {handle.run_id: handle for handle in await engine.recover()}
        assert {ids["in_flight"], ids["in_flight_digest"]} <= set(resumed)
        assert await resumed[ids["in_flight"]].result() == {
            "sku": "b",
            "reservation": "res-b",
            "tracking": "ship-res-b",
        }
        assert await resumed[ids["in_flight_digest"]].result() == {
            "sku": "c",
            "reservation": "res-c",
            "tracking": "ship-res-c",
        }
        # The sleep 0.2 journaled is long over: the run wakes by its timer.
        assert await engine.handle(ids["sleeping"]).result() == "woke-res-n"
        # reserve ran under 0.2 for all three; only the interrupted ship steps run again.
        assert flows.calls == {"ship": 2}


async def test_a_run_waiting_under_0_2_takes_its_event_and_shared_state(
    old_store: tuple[str, dict[str, str]],
) -> None:
    store, ids = old_store
    async with Engine(store) as engine:
        run_id = ids["waiting_event"]
        await engine.send_event(run_id, "approval", {"ok": True})
        assert await engine.handle(run_id).result() == {
            "sku": "q",
            "decision": {"ok": True},
            "asked": "q",
        }
        assert await engine.state(session_id="sess-1") == {"last-decision": {"ok": True}}
        assert await engine.state(run_id=run_id) == {"asked": "q"}
        messages = [line["message"] for line in await engine.logs(run_id)]
        assert "decision for q: {'ok': True}" in messages
        assert flows.calls == {}


async def test_new_runs_and_new_workflows_work_on_a_0_2_store(
    old_store: tuple[str, dict[str, str]],
) -> None:
    from surestep import WorkflowContext, workflow

    @workflow
    async def added_after_upgrade(ctx: WorkflowContext, n: int) -> list[Any]:
        first = await ctx.step("double", lambda: n * 2)
        await ctx.session.state.set("n", first)
        return [first, await ctx.session.state.get("n")]

    store, ids = old_store
    async with Engine(store) as engine:
        assert await engine.run(flows.v02_order, "new") == {
            "sku": "new",
            "reservation": "res-new",
            "tracking": "ship-res-new",
        }
        assert await engine.run(added_after_upgrade, 21, session_id="s-new") == [42, 42]
        assert len(await engine.runs()) == len(ids) + 2
