"""``surestep.Client`` and ``surestep.AsyncClient`` against ``surestep serve`` (uvicorn in
its own process), on both backends."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.http_server import Served, served_here
from surestep import (
    AsyncClient,
    Client,
    ConfigurationError,
    RunCancelledError,
    RunNotFinishedError,
    RunNotFoundError,
    UnknownWorkflowError,
    WorkflowFailedError,
    errors,
)
from surestep.client import _raise_for


def test_the_client_runs_submits_and_waits(served: Served) -> None:
    with Client(served.base) as client:
        assert client.run("add", {"a": 1, "b": 2}) == 3
        run_id = client.submit("add", {"a": 5, "b": 6}, idempotency_key="k-1")
        assert client.submit("add", {"a": 5, "b": 6}, idempotency_key="k-1") == run_id
        assert client.wait_for_result(run_id, timeout=60) == 11
        assert client.get_result(run_id) == 11
        status = client.get_status(run_id)
        assert (status["run_id"], status["status"], status["kwargs"]) == (
            run_id,
            "completed",
            {"a": 5, "b": 6},
        )
        with pytest.raises(WorkflowFailedError, match="refused: late") as failed:
            client.run("refuse", {"reason": "late"})
        assert failed.value.error_type == "ValueError"
        with pytest.raises(UnknownWorkflowError):
            client.submit("missing")
        with pytest.raises(RunNotFoundError):
            client.get_status("0" * 32)
        with pytest.raises(ConfigurationError, match="component_type"):
            client.submit("add", {"a": 1, "b": 1}, component_type="agent")


def test_the_client_waits_sends_events_and_cancels(served: Served) -> None:
    with Client(served.base) as client:
        run_id = client.submit("approval", {"order": "o-9"}, session_id="s-1")
        assert client.get_status(run_id)["session_id"] == "s-1"
        with pytest.raises(RunNotFinishedError):
            client.get_result(run_id)
        with pytest.raises(TimeoutError):
            client.wait_for_result(run_id, timeout=0.3, poll_interval=0.05)
        client.send_event(run_id, "approved", {"by": "erin"})
        assert client.wait_for_result(run_id, timeout=60) == {"order": "o-9", "by": "erin"}
        other = client.submit("approval", {"order": "o-10"})
        assert client.cancel(other) is True
        assert client.cancel(other) is False
        with pytest.raises(RunCancelledError):
            client.get_result(other)


def test_the_client_streams_a_run(served: Served) -> None:
    with Client(served.base) as client:
        events = list(client.stream("add", {"a": 2, "b": 3}))
        assert [e["event"] for e in events if e["event"] != "status"] == ["step", "end"]
        step = next(e for e in events if e["event"] == "step")
        assert step["data"]["name"] == "sum" and step["id"] == "0"
        assert events[-1]["data"]["result"] == 5


async def test_the_async_client(served: Served) -> None:
    async with AsyncClient(served.base) as client:
        assert await client.run("add", {"a": 1, "b": 1}) == 2
        run_id = await client.submit("approval", {"order": "o-11"})
        with pytest.raises(RunNotFinishedError):
            await client.get_result(run_id)
        seen = []
        async for event in client.events(run_id):
            seen.append(event)
            if event["event"] == "status" and event["data"]["status"] == "waiting":
                await client.send_event(run_id, "approved", {"by": "finn"})
        assert seen[-1]["data"]["result"] == {"order": "o-11", "by": "finn"}
        assert (await client.get_status(run_id))["status"] == "completed"
        assert await client.wait_for_result(run_id) == {"order": "o-11", "by": "finn"}
        streamed = [e async for e in client.stream("add", {"a": 3, "b": 4})]
        assert streamed[-1]["event"] == "end" and streamed[-1]["data"]["result"] == 7
        with pytest.raises(WorkflowFailedError):
            await client.run("refuse", {"reason": "x"}, timeout=60)
        other = await client.submit("approval", {"order": "o-12"})
        assert await client.cancel(other) is True
        with pytest.raises(RunCancelledError):
            await client.wait_for_result(other, timeout=60)


async def test_an_async_client_shared_by_many_tasks_keeps_its_connections(
    lmdb_path: str,
) -> None:
    """32 tasks submitting through one AsyncClient ride at most 32 connections, each
    kept alive for the submits that follow, to the real app under uvicorn here."""
    from surestep import Engine, WorkflowContext, workflow
    from surestep.web import create_app

    @workflow
    async def shared(ctx: WorkflowContext, n: int) -> int:
        return n

    connections: set[tuple[str, int]] = set()
    engine = Engine(lmdb_path)
    app = create_app(engine)

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            connections.add(scope["client"])  # (host, port): one a TCP connection
        await app(scope, receive, send)

    tasks, each = 32, 8
    try:
        async with served_here(counting) as base, AsyncClient(base) as client:

            async def submits(k: int) -> list[str]:
                return [await client.submit("shared", {"n": k * each + i}) for i in range(each)]

            run_ids = [r for ids in await asyncio.gather(*map(submits, range(tasks))) for r in ids]
        assert len(set(run_ids)) == tasks * each
        assert 1 <= len(connections) <= tasks, f"{len(connections)} connections"
    finally:
        await engine.close()


async def _answering_server(seen: list[list[bytes]]) -> asyncio.Server:
    """A bare HTTP server (or proxy) on loopback: keeps each request's head, answers a run
    that completed."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = [await reader.readline()]
        while head[-1] not in (b"\r\n", b""):
            head.append(await reader.readline())
        seen.append(head)
        body = b'{"run_id": "r1", "status": "completed"}'
        top = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        writer.write(top % len(body) + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def test_the_async_client_goes_through_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY applies to AsyncClient as it does to httpx's own pool: the request goes
    to the proxy, in absolute form, for a host NO_PROXY does not name."""
    seen: list[list[bytes]] = []
    async with await _answering_server(seen) as server:
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with AsyncClient("http://surestep.invalid:8000") as client:
            assert (await client.get_status("r1"))["status"] == "completed"
        monkeypatch.setenv("NO_PROXY", "surestep.invalid")
        async with AsyncClient("http://surestep.invalid:8000") as client:
            with pytest.raises(httpx.TransportError):  # asked directly: no such host
                await client.get_status("r1")
    assert [head[0] for head in seen] == [
        b"GET http://surestep.invalid:8000/api/runs/r1 HTTP/1.1\r\n"
    ]


async def test_the_async_client_sends_no_netrc_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ~/.netrc naming any host is not sent (httpx's pool reads none either), and does
    not clash with the client's token."""
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    seen: list[list[bytes]] = []
    async with await _answering_server(seen) as server:
        base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with AsyncClient(base) as client:
            await client.get_status("r1")
        async with AsyncClient(base, api_key="t0ken") as client:
            await client.get_status("r1")
    auth = [[h.lower() for h in head if h.lower().startswith(b"authorization:")] for head in seen]
    assert auth == [[], [b"authorization: bearer t0ken\r\n"]]


def test_the_client_sends_its_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = Served(str(tmp_path / "store"), "--token", "s3cret", "--read-token", "r3ad")
    try:
        with Client(server.base, api_key="s3cret") as client:
            assert client.run("add", {"a": 1, "b": 2}) == 3
        with Client(server.base, api_key="r3ad") as client, pytest.raises(PermissionError):
            client.submit("add", {"a": 1, "b": 2})
        with Client(server.base, api_key="wrong") as client, pytest.raises(PermissionError):
            client.get_status("0" * 32)
        monkeypatch.setenv("SURESTEP_TOKEN", "s3cret")
        with Client(server.base) as client:
            assert client.run("add", {"a": 2, "b": 2}) == 4
    finally:
        assert server.close() == 0


def test_a_blocking_client_in_threads(served: Served) -> None:
    """One Client shared by threads (httpx's Client is thread-safe)."""
    results: list[int] = []
    with Client(served.base) as client:
        threads = [
            threading.Thread(target=lambda i=i: results.append(client.run("add", {"a": i, "b": 1})))
            for i in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert sorted(results) == [1, 2, 3, 4]


def test_both_clients_have_agnt5s_methods_with_one_signature() -> None:
    """One implementation drives both clients: the same parameters, in AGNT5's order
    (callers pass them by position), blocking on one, coroutines on the other."""
    start = ["component", "input_data", "component_type", "session_id", "user_id"]
    expected = {
        "run": [*start, "timeout", "headers", "idempotency_key"],
        "submit": [*start, "headers", "idempotency_key"],
        "stream": [*start, "idempotency_key"],
        "get_status": ["run_id"],
        "get_result": ["run_id"],
        "wait_for_result": ["run_id", "timeout", "poll_interval"],
        "events": ["run_id"],
        "cancel": ["run_id"],
        "send_event": ["run_id", "name", "payload"],
    }
    blocking, asynchronous = Client(), AsyncClient()
    for name, parameters in expected.items():
        for client in (blocking, asynchronous):
            method = getattr(client, name)
            assert list(inspect.signature(method).parameters) == parameters, (client, name)
            assert method.__name__ == name and method.__doc__
        assert inspect.signature(getattr(Client, name)) == inspect.signature(
            getattr(AsyncClient, name)
        )
    with blocking, pytest.raises(ConfigurationError, match="component_type"):
        blocking.submit("add", component_type="agent")  # refused before any request


async def test_the_async_client_refuses_bad_input_before_sending() -> None:
    async with AsyncClient("http://127.0.0.1:9") as client:  # nothing listens there
        with pytest.raises(ConfigurationError, match="input_data"):
            await client.submit("add", ["not", "a", "dict"])  # type: ignore[arg-type]
        events = client.stream("add", component_type="agent")
        with pytest.raises(ConfigurationError, match="component_type"):
            await events.__anext__()


@pytest.mark.parametrize("name", ["SerializationError", "DefinitionError", "RunNotFoundError"])
def test_an_error_answer_is_raised_as_the_class_it_names(name: str) -> None:
    """Also the classes that derive from TypeError as well as from SurestepError."""
    answer = httpx.Response(400, json={"error": "what went wrong", "type": name})
    with pytest.raises(getattr(errors, name), match="what went wrong"):
        _raise_for(answer)
