"""Make the stores of ``tests/upgrade/v0_2/`` with the surestep that is installed (0.2.0).

    PYTHONPATH=src python tests/upgrade/make_stores.py tests/upgrade/v0_2

run in a checkout of that release with this file, ``flows_v0_2.py`` and
``tests/support/pgserver.py`` copied in. The stores keep tracebacks, which name where that
checkout was: make them in a directory that says nothing of the machine (the ones here
were made in ``/surestep-0.2``).

Each backend's store holds runs in every state a release leaves behind: completed,
failed, a parent and its child, a run sleeping durably, a run waiting for an event (with
run, session and log records), a deployment, and two runs in flight (one of an explicit
version, one of a source digest) whose process was killed with SIGKILL inside their second
step. ``manifest.json`` names each run. The LMDB store is kept as a tarball of its
directory, the PostgreSQL one as ``pg_dump --inserts`` of its schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import flows_v0_2 as flows  # noqa: E402

from surestep import Engine, WorkflowFailedError, __version__  # noqa: E402

SCHEMA = "upgrade_v0_2"  # the schema name in the dump; tests restore it under another


async def _until_waiting(engine: Engine, run_id: str) -> None:
    while (await engine.get_run(run_id)).status != "waiting":
        await engine.store.wait_changed(0.05)


async def settled_runs(store: str) -> dict[str, str]:
    """The runs that end, or park, while their process lives."""
    async with Engine(store, inline_sleep=0.1) as engine:
        done = await engine.start(flows.v02_order, "a")
        await done.result()
        failed = await engine.start(flows.v02_failing, "x")
        with contextlib.suppress(WorkflowFailedError):
            await failed.result()
        parent = await engine.start(flows.v02_parent, "p")
        await parent.result()
        child = (await engine.journal(parent.run_id))[0].child
        assert child is not None
        napping = await engine.start(flows.v02_napper, "n")
        waiting = await engine.start(flows.v02_approver, "q", session_id="sess-1", user_id="u-1")
        await _until_waiting(engine, napping.run_id)
        await _until_waiting(engine, waiting.run_id)
        await engine.deploy(flows.v02_order)
        return {
            "completed": done.run_id,
            "failed": failed.run_id,
            "parent": parent.run_id,
            "child": child,
            "sleeping": napping.run_id,
            "waiting_event": waiting.run_id,
        }


async def hang(store: str) -> None:
    """Start two runs and stay inside their second step until killed (run by ``in_flight``)."""
    async with Engine(store) as engine:
        explicit = await engine.start(flows.v02_order, "b")
        digest = await engine.start(flows.v02_digest_order, "c")
        print(f"started {explicit.run_id} {digest.run_id}", flush=True)
        await asyncio.sleep(3600)


def in_flight(store: str) -> dict[str, str]:
    """Runs whose process dies with SIGKILL after their first step is journaled."""
    with subprocess.Popen(
        [sys.executable, __file__, "--hang", store],
        env={**os.environ, "SURESTEP_UPGRADE_HANG": "1"},
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        ids: list[str] = []
        shipping = 0
        for line in proc.stdout:
            if line.startswith("started "):
                ids = line.split()[1:]
            shipping += line.startswith("shipping ")
            if shipping == 2:
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait(timeout=30) == -signal.SIGKILL, "the hanging process ended by itself"
    return {"in_flight": ids[0], "in_flight_digest": ids[1]}


def make(store: str) -> dict[str, str]:
    runs = asyncio.run(settled_runs(store))
    runs.update(in_flight(store))
    return runs


def make_lmdb(out: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        runs = make(store)
        with tarfile.open(out / "lmdb.tar.gz", "w:gz") as tar:
            for name in ("data.mdb",):  # the lock files and wake sockets belong to processes
                tar.add(os.path.join(store, name), arcname=name)
    return runs


def make_postgres(out: Path) -> dict[str, str]:
    from support.pgserver import PgServer

    with PgServer() as server:
        runs = make(f"{server.url}?schema={SCHEMA}")
        dump = server.tool(
            "pg_dump", "--host=127.0.0.1", f"--port={server.port}", "--username=postgres",
            f"--schema={SCHEMA}", "--inserts", "--no-owner", "--no-privileges", "postgres",
        )  # fmt: skip
    (out / "postgres.sql").write_text(dump, encoding="utf-8")
    return runs


def main() -> None:
    if sys.argv[1] == "--hang":
        asyncio.run(hang(sys.argv[2]))
        return
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "made_by": __version__,
        "made_at": time.strftime("%Y-%m-%d", time.gmtime()),
        "schema": SCHEMA,
        "lmdb": make_lmdb(out),
        "postgres": make_postgres(out),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
