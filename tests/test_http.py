"""The HTTP API through ``surestep serve``: uvicorn in its own process on a loopback
port, real requests (httpx), on both backends; a real worker where runs execute
elsewhere."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.http_server import FLOWS, Served, Worker, served_here, surestep_command
from surestep import Engine
from surestep.web import create_app

JSON = {"Content-Type": "application/json"}


def start(
    base: str, body: dict[str, Any], headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    """POST /api/runs with ``body`` as JSON (and ``headers``), ``params`` in the query."""
    return httpx.post(
        base + "/api/runs",
        json=body,
        params=params,
        headers={**JSON, **(headers or {})},
        timeout=60,
    )


def read_events(response: httpx.Response) -> Iterator[tuple[str, str | None, Any]]:
    """(event, id, data) of each Server-Sent Event, as they arrive."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            name, _, value = line.partition(": ")
            event[name] = value
        elif event:
            yield event["event"], event.get("id"), json.loads(event["data"])
            event = {}


def test_start_wait_and_read_the_result(served: Served) -> None:
    answer = start(served.base, {"workflow": "add", "kwargs": {"a": 1, "b": 2}}, wait=60)
    assert answer.status_code == 200
    outcome = answer.json()
    assert (outcome["status"], outcome["finished"], outcome["result"]) == ("completed", True, 3)
    submitted = start(served.base, {"workflow": "add", "args": [4, 5]})
    assert submitted.status_code == 202
    run_id = submitted.json()["run_id"]
    assert submitted.json()["run"]["workflow"] == "add"
    result = httpx.get(
        f"{served.base}/api/runs/{run_id}/result", params={"timeout": 60}, timeout=90
    )
    assert result.status_code == 200 and result.json()["result"] == 9
    status = httpx.get(f"{served.base}/api/runs/{run_id}").json()
    assert (status["run_id"], status["status"], status["kwargs"]) == (run_id, "completed", {})
    listed = httpx.get(served.base + "/api/runs", params={"workflow": "add"}).json()["runs"]
    assert [run["run_id"] for run in listed] == [run_id, outcome["run_id"]]


def test_an_idempotency_key_starts_one_run(served: Served) -> None:
    body = {"workflow": "add", "kwargs": {"a": 2, "b": 2}}

    def keyed(key: str) -> httpx.Response:
        return httpx.post(
            served.base + "/api/runs",
            json=body,
            headers={**JSON, "Idempotency-Key": key},
            timeout=60,
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(keyed, ["order-1"] * 8))
    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["run_id"] for a in answers}
    assert len(ids) == 1
    other = keyed("order-2").json()["run_id"]
    assert other not in ids
    runs = httpx.get(served.base + "/api/runs").json()["runs"]
    assert sorted(run["run_id"] for run in runs) == sorted([*ids, other])
    again = httpx.post(
        served.base + "/api/runs?wait=60",
        json=body,
        headers={**JSON, "Idempotency-Key": "order-1"},
        timeout=90,
    )
    assert (again.json()["run_id"], again.json()["result"]) == (ids.pop(), 4)


def test_a_long_poll_answers_202_until_the_run_finishes(served: Served) -> None:
    run_id = start(served.base, {"workflow": "approval", "args": ["o-1"]}).json()["run_id"]
    early = httpx.get(f"{served.base}/api/runs/{run_id}/result", params={"timeout": 0.2})
    assert early.status_code == 202
    assert early.json()["finished"] is False and early.json()["result"] is None
    sent = httpx.post(
        f"{served.base}/api/runs/{run_id}/events",
        json={"name": "approved", "payload": {"by": "carol"}},
        headers=JSON,
    )
    assert sent.status_code == 200 and sent.json() == {"sent": True, "name": "approved"}
    done = httpx.get(f"{served.base}/api/runs/{run_id}/result", params={"timeout": 60}, timeout=90)
    assert done.status_code == 200
    assert done.json()["result"] == {"order": "o-1", "by": "carol"}


def test_the_stream_carries_each_step_and_status_and_ends_with_the_run(served: Served) -> None:
    run_id = start(served.base, {"workflow": "approval", "args": ["o-2"]}).json()["run_id"]
    seen: list[tuple[str, str | None, Any]] = []
    url = f"{served.base}/api/runs/{run_id}/stream"
    with httpx.stream("GET", url, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in read_events(response):
            seen.append(event)
            if event[0] == "status" and event[2]["status"] == "waiting":
                httpx.post(
                    f"{served.base}/api/runs/{run_id}/events",
                    json={"name": "approved", "payload": {"by": "dan"}},
                    headers=JSON,
                )
    steps = [(ident, data["name"], data["kind"]) for kind, ident, data in seen if kind == "step"]
    assert steps == [("0", "requested", "step"), ("1", "@event:approved", "event")]
    statuses = [data["status"] for kind, _, data in seen if kind == "status"]
    assert "waiting" in statuses and statuses[-1] == "completed"
    assert seen[-1][0] == "end"
    assert seen[-1][2] == {
        "run_id": run_id,
        "workflow": "approval",
        "status": "completed",
        "finished": True,
        "result": {"order": "o-2", "by": "dan"},
        "error": None,
    }
    # A client that reconnects says the last step it saw, and gets only what came after.
    with httpx.stream("GET", url, headers={"Last-Event-ID": "0"}, timeout=60) as response:
        again = list(read_events(response))
    assert [(kind, ident) for kind, ident, _ in again] == [
        ("step", "1"),
        ("status", None),
        ("end", None),
    ]


def test_a_failed_run_reports_its_error(served: Served) -> None:
    outcome = start(served.base, {"workflow": "refuse", "args": ["no stock"]}, wait=60).json()
    assert (outcome["status"], outcome["finished"]) == ("failed", True)
    assert outcome["error"]["type"] == "ValueError"
    assert outcome["error"]["message"] == "refused: no stock"


def test_stats_and_retention_show_the_store_and_each_policy(served: Served) -> None:
    base = served.base
    empty = httpx.get(base + "/api/stats").json()
    assert empty["oldest_finished"] is None and sum(empty["runs"].values()) == 0
    assert empty["hidden"] == 0 and empty["default_retention"] == "7d"
    for body in ({"workflow": "add", "args": [1, 2]}, {"workflow": "refuse", "args": ["x"]}):
        assert start(base, body, wait=60).status_code == 200
    waiting = start(base, {"workflow": "approval", "args": ["o-1"]}).json()["run_id"]

    stats = httpx.get(base + "/api/stats")
    assert stats.status_code == 200 and stats.headers["cache-control"] == "no-store"
    data = stats.json()
    assert data["runs"]["completed"] == data["runs"]["failed"] == 1
    assert data["runs"]["running"] + data["runs"]["waiting"] + data["runs"]["pending"] == 1
    finished = [
        httpx.get(f"{base}/api/runs/{run['run_id']}").json()["updated_at"]
        for run in httpx.get(base + "/api/runs").json()["runs"]
        if run["finished"]
    ]
    assert data["oldest_finished"] == pytest.approx(min(finished), abs=1e-3)
    size = data["size"]
    if "tables" in size:  # PostgreSQL: its relations, with their indexes
        assert {"runs", "journal"} <= set(size["tables"])
        assert size["total_bytes"] == sum(size["tables"].values()) > 0
    else:  # LMDB: the pages in use, within the data file, within the map
        assert 0 < size["used_bytes"] <= size["file_bytes"] <= size["map_bytes"]
        assert size["used_bytes"] % size["page_bytes"] == 0

    deployed = subprocess.run(
        [*surestep_command(), "--store", served.store, "deploy", str(FLOWS), "-w", "audit"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert deployed.returncode == 0, deployed.stderr
    policy = httpx.get(base + "/api/retention").json()
    assert policy["default"] == "7d"
    served_here = {w["workflow"]: w for w in policy["workflows"]}
    assert served_here["audit"]["retention"] == 30 * 86_400_000
    assert served_here["audit"]["retention_text"] == "30d"
    assert served_here["add"]["retention"] is None
    assert served_here["add"]["retention_text"] == "7d (default)"
    (row,) = policy["deployments"]
    assert (row["workflow"], row["retention"], row["retention_text"]) == (
        "audit",
        30 * 86_400_000,
        "30d",
    )
    assert row["in_flight"] == 0 and row["version"]

    # what a purge removes leaves the counts at once; the waiting run stays
    gc = subprocess.run(
        [*surestep_command(), "--store", served.store, "gc", "--older-than", "0s"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gc.returncode == 0 and "removed 2 finished runs" in gc.stdout, gc.stderr
    after = httpx.get(base + "/api/stats").json()
    assert after["runs"]["completed"] == after["runs"]["failed"] == 0
    assert after["oldest_finished"] is None
    assert httpx.get(f"{base}/api/runs/{waiting}").status_code == 200


def test_errors_are_json_with_the_cli_error_classes(served: Served) -> None:
    base = served.base

    def check(answer: httpx.Response, status: int, text: str, kind: str | None = None) -> None:
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert text in answer.json()["error"]
        if kind is not None:
            assert answer.json()["type"] == kind

    check(start(base, {"workflow": "nope"}), 404, "nope", "UnknownWorkflowError")
    check(start(base, {"workflow": "add", "args": [1]}), 422, "cannot take these arguments")
    check(start(base, {"workflow": "add", "args": [1, 2], "extra": 1}), 400, "unknown fields")
    check(start(base, {"workflow": "add", "args": {"a": 1}}), 400, '"args"')
    check(start(base, {"args": []}), 400, '"workflow"')
    check(httpx.post(base + "/api/runs", content=b"{not json", headers=JSON), 400, "not JSON")
    big = b'{"workflow": "add", "args": ["' + b"x" * (1024 * 1024) + b'"]}'
    check(httpx.post(base + "/api/runs", content=big, headers=JSON), 413, "over")
    check(httpx.get(f"{base}/api/runs/{'0' * 32}"), 404, "no run", "RunNotFoundError")
    check(httpx.get(f"{base}/api/runs/{'0' * 32}/result"), 404, "no run")
    check(httpx.get(f"{base}/api/runs/nonsense/stream"), 404, "nonsense")
    check(httpx.get(base + "/api/runs", params={"status": "bogus"}), 400, "status must be")
    check(start(base, {"workflow": "add", "args": [1, 2]}, wait=-1), 400, "wait is a number")
    check(httpx.get(base + "/api/nothing"), 404, "no API at /api/nothing")
    check(
        httpx.post(
            base + "/api/runs",
            content=b'{"workflow": "add", "args": [1, 2]}',
            headers={"Content-Type": "text/plain"},
        ),
        415,
        "application/json",
    )
    add = {"workflow": "add", "args": [1, 2]}
    check(start(base, add, {"Origin": "http://attacker.example"}), 403, "cross-origin")
    check(
        httpx.get(base + "/api/runs", headers={"Host": "attacker.example"}), 403, "localhost only"
    )
    check(start(base, add, {"Idempotency-Key": ""}), 422, "idempotency key", "ConfigurationError")
    assert httpx.get(base + "/api/runs").json()["runs"] == []  # nothing was started


def test_tokens_grant_read_or_act(tmp_path: Path) -> None:
    server = Served(str(tmp_path / "store"), "--token", "act-secret", "--read-token", "ro-secret")
    try:
        assert "token=act-secret" in server.url  # a loopback URL carries it, to be opened here
        base, body = server.base, {"workflow": "add", "args": [1, 2]}
        reader = {"Authorization": "Bearer ro-secret"}
        actor = {"Authorization": "Bearer act-secret"}
        refused = httpx.get(base + "/api/runs")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer act-secreT"}
        assert httpx.get(base + "/api/runs", headers=wrong).status_code == 401
        assert (
            httpx.get(base + "/api/runs", headers={"Authorization": "act-secret"}).status_code
            == 401
        )
        assert httpx.get(base + "/api/runs", headers=reader).status_code == 200
        for path in ("/api/stats", "/api/retention"):
            assert httpx.get(base + path).status_code == 401
            assert httpx.get(base + path, headers=reader).status_code == 200
        read_only = httpx.post(base + "/api/runs", json=body, headers={**JSON, **reader})
        assert read_only.status_code == 403 and "only read" in read_only.json()["error"]
        started = httpx.post(base + "/api/runs?wait=60", json=body, headers={**JSON, **actor})
        assert started.status_code == 200 and started.json()["result"] == 3
        run_id = started.json()["run_id"]
        assert httpx.get(f"{base}/api/runs/{run_id}/result", headers=reader).json()["result"] == 3
        assert httpx.get(base + "/").status_code == 200  # the page holds no data
        # Webhooks answer for themselves (by signature), not to the tokens.
        hook = httpx.post(base + "/webhooks/add", content=b"{}", headers=JSON)
        assert hook.status_code == 404 and "no webhook" in hook.json()["error"]
    finally:
        assert server.close() == 0


def test_a_worker_executes_the_runs_started_through_the_api(store_url: str) -> None:
    server = Served(store_url, "--no-execute")
    worker = Worker(store_url)
    try:
        answer = start(server.base, {"workflow": "add", "args": [20, 22]}, wait=60)
        assert answer.status_code == 200 and answer.json()["result"] == 42
        run = httpx.get(f"{server.base}/api/runs/{answer.json()['run_id']}").json()
        assert run["attempt"] == 1  # claimed once, by the worker
    finally:
        assert worker.close() == 0
        assert server.close() == 0


def test_a_failing_store_answers_503(tmp_path: Path) -> None:
    not_a_store = tmp_path / "file"
    not_a_store.write_text("not an LMDB directory")
    app = create_app(Engine(not_a_store))

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.get("/api/runs")

    answer = asyncio.run(ask())
    assert answer.status_code == 503 and answer.json()["error"].startswith("store: ")


def test_the_server_stops_on_sigterm_while_a_stream_is_open(served: Served) -> None:
    run_id = start(served.base, {"workflow": "approval", "args": ["o-3"]}).json()["run_id"]
    opened = threading.Event()

    def follow() -> None:
        try:
            with httpx.stream("GET", f"{served.base}/api/runs/{run_id}/stream", timeout=60) as r:
                for _ in r.iter_lines():
                    opened.set()
        except httpx.HTTPError:
            pass

    reader = threading.Thread(target=follow)
    reader.start()
    assert opened.wait(30)
    assert served.close() == 0
    reader.join(30)
    assert not reader.is_alive()


async def test_the_app_mounted_in_another_app(tmp_path: Path) -> None:
    """create_app() under a prefix of the user's own Starlette app, served by uvicorn here."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from surestep import WorkflowContext, workflow

    @workflow
    async def multiply(ctx: WorkflowContext, a: int, b: int) -> int:
        return a * b

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the user's own page")

    engine = Engine(tmp_path / "store")
    outer = Starlette(
        routes=[
            Route("/", home),
            Mount("/workflows", create_app(engine, token="tok", dashboard=False)),
        ]
    )
    try:
        async with served_here(outer) as base:
            auth = {"Authorization": "Bearer tok", "Content-Type": "application/json"}
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                assert (await client.get("/")).text == "the user's own page"
                started = await client.post(
                    "/workflows/api/runs?wait=30",
                    json={"workflow": "multiply", "args": [3, 4]},
                    headers=auth,
                )
                assert started.status_code == 200 and started.json()["result"] == 12
                assert (await client.get("/workflows/api/runs")).status_code == 401
                assert (await client.get("/workflows/")).status_code == 404  # no dashboard
                # The webhooks under the prefix still skip the host check (and the token).
                hook = await client.post(
                    "/workflows/webhooks/add", content=b"{}", headers={"Host": "hooks.example"}
                )
                assert hook.status_code == 404 and "no webhook" in hook.json()["error"]
    finally:
        await engine.close()


async def test_counting_a_store_leaves_the_server_answering(
    lmdb_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Store page's count of every run runs off the event loop: another request is
    answered while a count is held in the middle (a gate in the count), and the count,
    read in several read transactions, is right."""
    from surestep import WorkflowContext, workflow
    from surestep.store import lmdb as lmdb_store

    @workflow
    async def echo(ctx: WorkflowContext, n: int) -> int:
        return n

    in_count, go_on = threading.Event(), threading.Event()
    counted_on: list[threading.Thread] = []
    real_data_size = lmdb_store.data_size

    def held_data_size(path: str) -> int:  # read by the count, after the runs
        counted_on.append(threading.current_thread())
        in_count.set()
        if not go_on.wait(30):  # only if the count blocks the loop: then fail, below
            counted_on.append(threading.current_thread())
        return real_data_size(path)

    monkeypatch.setattr(lmdb_store, "STATS_BATCH", 2)  # several read transactions
    engine = Engine(lmdb_path)
    try:
        handles = [await engine.start(echo, n) for n in range(5)]
        for handle in handles:
            await handle.result()
        async with (
            served_here(create_app(engine)) as base,
            httpx.AsyncClient(base_url=base, timeout=60) as client,
        ):
            monkeypatch.setattr(lmdb_store, "data_size", held_data_size)
            stats = asyncio.ensure_future(client.get("/api/stats"))
            assert await asyncio.to_thread(in_count.wait, 30)
            runs = await client.get("/api/runs")
            assert runs.status_code == 200 and len(runs.json()["runs"]) == 5
            held = not go_on.is_set() and len(counted_on) == 1
            go_on.set()
            answer = await stats
        assert held, "the count of the runs held the event loop"
        assert counted_on[0] is not threading.main_thread()
        assert answer.status_code == 200
        assert answer.json()["runs"] == {
            "pending": 0, "running": 0, "waiting": 0, "completed": 5, "failed": 0, "cancelled": 0
        }  # fmt: skip
    finally:
        go_on.set()
        await engine.close()


@pytest.mark.slow
def test_a_run_survives_the_server_killed_and_started_again(store_url: str) -> None:
    server = Served(store_url)
    run_id = start(server.base, {"workflow": "approval", "args": ["o-5"]}).json()["run_id"]
    early = httpx.get(f"{server.base}/api/runs/{run_id}/result", params={"timeout": 0.2})
    assert early.json()["status"] in ("running", "waiting")
    server.proc.send_signal(signal.SIGKILL)
    server.close()
    again = Served(store_url)  # resumes the run it held
    try:
        sent = httpx.post(
            f"{again.base}/api/runs/{run_id}/events",
            json={"name": "approved", "payload": {"by": "gil"}},
            headers=JSON,
        )
        assert sent.status_code == 200
        done = httpx.get(
            f"{again.base}/api/runs/{run_id}/result", params={"timeout": 60}, timeout=90
        )
        assert done.json()["result"] == {"order": "o-5", "by": "gil"}
        steps = httpx.get(f"{again.base}/api/runs/{run_id}/journal").json()["steps"]
        assert [s["name"] for s in steps] == ["requested", "@event:approved"]  # none twice
    finally:
        assert again.close() == 0


def test_serve_needs_a_token_beyond_loopback(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    refused = subprocess.run(
        [*surestep_command(), "--store", store, "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "without --token" in refused.stderr
    server = Served(store, "--host", "0.0.0.0", "--token", "s3cret")
    try:
        assert "surestep server: http://0.0.0.0:" in server.line
        assert "s3cret" not in server.line  # not printed in an address anyone may open
        local = server.base.replace("0.0.0.0", "127.0.0.1")
        assert httpx.get(local + "/api/runs").status_code == 401
        # Beyond loopback there is no host check: the token protects it.
        answer = httpx.get(
            local + "/api/info",
            headers={"Authorization": "Bearer s3cret", "Host": "workflows.example"},
        )
        assert answer.status_code == 200 and answer.json()["actions"] is True
    finally:
        assert server.close() == 0


async def test_serve_parses_http_with_h11_whatever_is_installed(tmp_path: Path) -> None:
    """h11 bounds a request's head (tests/e2e: a 200 KB header is refused with a 400);
    uvicorn would pick httptools, which does not, wherever it is installed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from surestep.web.serve import server_config

    async with Engine(tmp_path / "store") as engine:
        config = server_config(create_app(engine))
        config.load()
        assert config.http_protocol_class is H11Protocol
