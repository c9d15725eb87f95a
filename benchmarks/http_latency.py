"""The HTTP surface beside an in-process engine, measured in one run.

    python benchmarks/http_latency.py [--requests 400] [--clients 32] [--seconds 5] [--rounds 3]
                                      [--clients-only]

Two processes: `surestep serve` (uvicorn, this repository's ASGI app) executing a one-step
workflow over a fresh LMDB store (``durability="fsync"``, as ``serve`` opens it), and this
one sending real HTTP requests over loopback. Each round measures, in turn:

- ``http wait``: sequential ``POST /api/runs?wait=30`` (start a run and wait for its result),
  latency from sending to the answer;
- ``engine run``: sequential ``engine.run`` of the same workflow in this process, on a store
  of its own, the floor the HTTP path adds to;
- ``http submit``: ``--clients`` concurrent keep-alive connections posting
  ``POST /api/runs`` (start only) for ``--seconds``: submits per second, and their latency.
  The load comes from a lean HTTP/1.1 client (h11 over asyncio streams) so that what is
  measured is the server: httpx's connection pool, driven by 32 tasks of one process,
  tops out far below what the server takes and would be measured instead;
- ``httpx pool``: the same load through one ``httpx.AsyncClient`` with httpx's own
  connection pool, shared by ``--clients`` tasks (what ``surestep.AsyncClient`` sent
  through before it took aiohttp's pool);
- ``client submit``: the same load through ``surestep.AsyncClient``, what a Python caller
  sharing one client among ``--clients`` tasks gets, and its ratio to ``httpx pool``.

``--clients-only`` measures the last two alone, alternating, ``--rounds`` pairs, and
prints the median of the pairs' ratios.

The server's CPU time a submit (Linux) is the figure the machine's load moves least.
Percentiles come from the full sample of each kind (sorted), never from a mean; the ratios
are of figures measured in the same round. Nothing here is asserted: figures go to
``benchmarks/RESULTS.md`` with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import h11
import httpx
import orjson

from surestep import AsyncClient, Engine, WorkflowContext, workflow

FLOWS = """
from surestep import WorkflowContext, workflow


@workflow
async def http_bench(ctx: WorkflowContext, n: int) -> int:
    return await ctx.step("double", lambda: 2 * n)
"""


@workflow(name="http_bench")
async def http_bench(ctx: WorkflowContext, n: int) -> int:
    return await ctx.step("double", lambda: 2 * n)


def percentile(sample: list[float], q: float) -> float:
    ordered = sorted(sample)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(sample: list[float]) -> str:
    ms = [s * 1000 for s in sample]
    return (
        f"n={len(ms)} p50 {percentile(ms, 0.5):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms, "
        f"max {max(ms):.2f} ms"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``surestep serve`` in its own process, on a free loopback port."""

    def __init__(self, tmp: str) -> None:
        flows = Path(tmp, "http_bench_flows.py")
        flows.write_text(FLOWS, encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "surestep.cli", "serve", str(flows), "--port", str(self.port),
             "--store", str(Path(tmp, "served")), "--no-dashboard"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.url in line:
                break
        else:
            raise RuntimeError(f"surestep serve exited with {self.proc.wait()}")

    def cpu_seconds(self) -> float | None:
        """The server process's CPU time so far, from Linux's /proc (else ``None``)."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state is fields[0]
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


async def http_wait(client: httpx.AsyncClient, requests: int) -> list[float]:
    sample = []
    for i in range(requests):
        began = time.perf_counter()
        answer = await client.post(
            "/api/runs?wait=30", json={"workflow": "http_bench", "args": [i]}
        )
        sample.append(time.perf_counter() - began)
        assert answer.status_code == 200 and answer.json()["result"] == 2 * i, answer.text
    return sample


async def engine_run(engine: Engine, requests: int) -> list[float]:
    sample = []
    for i in range(requests):
        began = time.perf_counter()
        assert await engine.run(http_bench, i) == 2 * i
        sample.append(time.perf_counter() - began)
    return sample


async def answer_of(connection: h11.Connection, reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of the response ``connection`` is reading."""
    status, body = 0, b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, body
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the server closed a keep-alive connection")


async def keep_alive_submits(port: int, k: int, deadline: float, sample: list[float]) -> None:
    """One connection posting starts, one at a time, until ``deadline``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = h11.Connection(h11.CLIENT)
    i = 0
    try:
        while time.perf_counter() < deadline:
            body = orjson.dumps({"workflow": "http_bench", "args": [k * 1_000_000 + i]})
            headers = [
                ("Host", f"127.0.0.1:{port}"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ]
            request = h11.Request(method="POST", target="/api/runs", headers=headers)
            began = time.perf_counter()
            writer.write(
                connection.send(request)
                + connection.send(h11.Data(data=body))
                + connection.send(h11.EndOfMessage())
            )
            status, answer = await answer_of(connection, reader)
            sample.append(time.perf_counter() - began)
            assert status == 202 and "run_id" in orjson.loads(answer), answer
            connection.start_next_cycle()
            i += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def http_submit(port: int, clients: int, seconds: float) -> tuple[float, list[float]]:
    """Submits per second by ``clients`` concurrent connections, and their latencies."""
    sample: list[float] = []
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    await asyncio.gather(*(keep_alive_submits(port, k, deadline, sample) for k in range(clients)))
    return len(sample) / (time.perf_counter() - began), sample


async def submits_by_tasks(
    submit: Callable[[int], Awaitable[object]], clients: int, seconds: float
) -> tuple[float, list[float]]:
    """Submits per second by ``clients`` tasks sharing one client (``submit(n)`` starts a
    run), and their latencies."""
    sample: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one_task(k: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await submit(k * 1_000_000 + i)
            sample.append(time.perf_counter() - began)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(one_task(k) for k in range(clients)))
    return len(sample) / (time.perf_counter() - began), sample


async def client_submit(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """The same load through one ``surestep.AsyncClient`` shared by ``clients`` tasks."""
    async with AsyncClient(url) as client:
        return await submits_by_tasks(
            lambda n: client.submit("http_bench", {"n": n}), clients, seconds
        )


async def httpx_submit(url: str, clients: int, seconds: float) -> tuple[float, list[float]]:
    """The same load through one ``httpx.AsyncClient`` with httpx's own connection pool,
    as ``surestep.AsyncClient`` sent before it took aiohttp's."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def submit(n: int) -> None:
            answer = await client.post("/api/runs", json={"workflow": "http_bench", "args": [n]})
            assert answer.status_code == 202, answer.text

        return await submits_by_tasks(submit, clients, seconds)


async def clients_only(url: str, clients: int, seconds: float, rounds: int) -> None:
    """The two Python clients alone, alternating, and the ratio of each round's pair."""
    ratios = []
    for round_ in range(1, rounds + 1):
        pooled, pooled_sample = await httpx_submit(url, clients, seconds)
        through, sample = await client_submit(url, clients, seconds)
        ratios.append(through / pooled)
        print(f"round {round_}")
        print(f"  httpx pool    {pooled:,.0f}/s, {clients} tasks; {summary(pooled_sample)}")
        print(f"  client submit {through:,.0f}/s, {clients} tasks; {summary(sample)}")
        print(f"  client / httpx pool: {through / pooled:.2f}x")
    print(f"median of the {rounds} ratios: {statistics.median(ratios):.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--clients-only",
        action="store_true",
        help="Measure only surestep.AsyncClient against httpx's own pool, alternating.",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(tmp)
        try:
            if options.clients_only:
                await clients_only(server.url, options.clients, options.seconds, options.rounds)
                return
            async with (
                httpx.AsyncClient(base_url=server.url, timeout=60) as client,
                Engine(Path(tmp, "local")) as engine,
            ):
                await http_wait(client, 20)  # warm both paths up
                await engine_run(engine, 20)
                for round_ in range(1, options.rounds + 1):
                    over_http = await http_wait(client, options.requests)
                    local = await engine_run(engine, options.requests)
                    cpu_before = server.cpu_seconds()
                    rate, submits = await http_submit(server.port, options.clients, options.seconds)
                    cpu_after = server.cpu_seconds()
                    pooled, pooled_submits = await httpx_submit(
                        server.url, options.clients, options.seconds
                    )
                    through, client_submits = await client_submit(
                        server.url, options.clients, options.seconds
                    )
                    ratio = statistics.median(over_http) / statistics.median(local)
                    print(f"round {round_}")
                    print(f"  http wait    {summary(over_http)}")
                    print(f"  engine run   {summary(local)}")
                    print(f"  http / engine p50: {ratio:.2f}x")
                    clients = options.clients
                    print(f"  http submit  {rate:,.0f}/s, {clients} clients; {summary(submits)}")
                    if cpu_before is not None and cpu_after is not None:
                        per_submit = (cpu_after - cpu_before) / len(submits) * 1e6
                        print(f"  server CPU   {per_submit:.0f} us a submit, its run included")
                    print(
                        f"  httpx pool    {pooled:,.0f}/s, {clients} tasks; "
                        f"{summary(pooled_submits)}"
                    )
                    print(
                        f"  client submit {through:,.0f}/s, {clients} tasks; "
                        f"{summary(client_submits)} ({through / pooled:.2f}x httpx's pool)"
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
