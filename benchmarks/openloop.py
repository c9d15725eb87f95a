"""Open-loop load: a generator process sending requests on a fixed schedule to a host
process that serves each one, and the statistics of the latencies it measures.

The host (``measure_rate``, in the calling process) listens on a Unix socket and, for each
request, awaits ``serve()`` (start a workflow and wait for its result) and answers with the
result. The generator is this file run as a script, in its own process: request ``i`` is
due at ``i / rate`` seconds after the start, whatever happened to the requests before it
(no coordinated omission), and its latency runs from that scheduled time to the moment
its answer is read, so a stall in the host shows as latency, never as fewer requests.

The generator sends from a thread that sleeps until the next request is due and then
sends every request due by then; the main thread reads the answers. It stops sending once
``bound`` requests are unanswered (the host cannot keep up and would hold an
ever longer queue), says so in its report, and then waits for the answers it is owed, for
the run's duration or ``MIN_DRAIN`` seconds, whichever is longer. A request still
unanswered then has no latency in the sample (the percentiles are of answered requests)
and makes the rate saturated.

Wire format: a request is its index (``<I``); an answer is the index and the result
(``<Iq``), or ``ERROR`` when ``serve()`` raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import select
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REQUEST = struct.Struct("<I")
ANSWER = struct.Struct("<Iq")
ERROR = -(2**63)
START_DELAY = 0.05  # seconds between connecting and the first scheduled request
MIN_DRAIN = 10.0  # seconds the generator waits for owed answers once it stops sending
GROWTH_SHARE = 0.02  # latency growing by 2% of the elapsed time or more: a growing queue
SHORTFALL = 0.95  # achieved below 95% of the offered rate: saturated
GENERATOR = str(Path(__file__).resolve())


# -- the pure parts: schedule, percentiles, saturation


def schedule(rate: float, duration: float) -> list[float]:
    """Offsets (s) from the start at which each request is due: every ``1 / rate`` s,
    for ``duration`` s."""
    if rate <= 0 or duration <= 0:
        raise ValueError(f"rate and duration must be > 0, not {rate!r} and {duration!r}")
    count = math.ceil(rate * duration - 1e-9)
    return [i / rate for i in range(count)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of an ascending sample: the smallest
    value at least ``q`` of the sample is at or below."""
    if not ordered:
        raise ValueError("no sample")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], not {q!r}")
    return ordered[max(0, math.ceil(q * len(ordered) - 1e-9) - 1)]


def summary(sample: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max of the full sample."""
    ordered = sorted(sample)
    return {
        "p50": percentile(ordered, 0.5),
        "p99": percentile(ordered, 0.99),
        "p99.9": percentile(ordered, 0.999),
        "max": ordered[-1],
    }


def saturation(
    offered: float,
    achieved: float,
    latencies: Sequence[float | None],
    due: Sequence[float],
    stopped: bool,
) -> list[str]:
    """Why a rate was more than the host sustained (empty: it sustained it).

    ``latencies[i]`` is request ``i``'s latency (``None``: never answered), ``due[i]`` its
    scheduled offset. A queue that grows shows as latency growing through the run: the
    median of the last quarter of the requests (by schedule) is twice that of the first
    quarter and higher by at least ``GROWTH_SHARE`` of the time between the quarters (a
    host serving ``c`` of ``r`` requests a second adds ``1 - c / r`` s of latency per second).
    """
    reasons = []
    if stopped:
        reasons.append("stopped: the in-flight bound was reached")
    unanswered = sum(1 for latency in latencies if latency is None)
    if unanswered:
        reasons.append(f"{unanswered} requests never answered")
    if achieved < SHORTFALL * offered:
        reasons.append(f"achieved {achieved:,.0f}/s < {SHORTFALL:.0%} of {offered:,.0f}/s")
    quarter = len(latencies) // 4
    if quarter >= 4:
        first = [x for x in latencies[:quarter] if x is not None]
        last = [x for x in latencies[-quarter:] if x is not None]
        if first and last:
            p50_first, p50_last = summary(first)["p50"], summary(last)["p50"]
            apart = due[-quarter] - due[quarter - 1]
            if p50_last >= 2 * p50_first and p50_last - p50_first >= GROWTH_SHARE * apart:
                reasons.append(
                    f"latency growing: p50 {p50_first * 1e3:.1f} ms in the first quarter, "
                    f"{p50_last * 1e3:.1f} ms in the last"
                )
    return reasons


# -- the generator process


@dataclass
class Report:
    """What the generator measured at one rate (offsets and latencies in seconds)."""

    rate: float
    duration: float
    sent: int
    latencies: list[float | None]  # by request index; None: not answered
    errors: int
    wrong: int  # answers other than the expected result
    stopped_at: float | None  # offset at which sending stopped for the bound
    max_in_flight: int
    first_answer: float  # offset of the first answer read
    last_answer: float  # offset of the last answer read
    send_lag: dict[str, float] = field(default_factory=dict)  # how late requests went out

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls(**json.loads(text))


def generate(path: str, rate: float, duration: float, bound: int, expect: int) -> Report:
    """Connect to the host at ``path`` and run one rate (the generator process's work)."""
    due = schedule(rate, duration)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    clock = time.perf_counter
    start = clock() + START_DELAY
    sent_at = [0.0] * len(due)
    latencies: list[float | None] = [None] * len(due)
    counts = {"sent": 0, "answered": 0, "errors": 0, "wrong": 0, "max_in_flight": 0}
    stopped: list[float] = []
    failed: list[BaseException] = []
    sender_done = threading.Event()

    def send() -> None:
        i, n = 0, len(due)
        try:
            while i < n:
                wait = start + due[i] - clock()
                if wait > 0:
                    time.sleep(wait)
                now = clock()
                in_flight = counts["sent"] - counts["answered"]
                if in_flight >= bound:
                    stopped.append(now - start)
                    return
                j, most = i, i + bound - in_flight
                while j < most and j < n and start + due[j] <= now:
                    sent_at[j] = now
                    j += 1
                sock.sendall(b"".join(REQUEST.pack(k) for k in range(i, j)))
                counts["sent"] = j
                counts["max_in_flight"] = max(counts["max_in_flight"], j - counts["answered"])
                i = j
        except BaseException as exc:
            failed.append(exc)
        finally:
            sender_done.set()

    sender = threading.Thread(target=send, name="sender", daemon=True)
    sender.start()
    buffer = b""
    first = last = 0.0
    deadline = math.inf  # set once sending stops: how long to wait for the owed answers
    while not (sender_done.is_set() and counts["answered"] == counts["sent"]):
        if sender_done.is_set():
            if deadline == math.inf:
                deadline = clock() + max(MIN_DRAIN, duration)
            elif clock() > deadline:
                break
        readable, _, _ = select.select([sock], [], [], 0.05)  # the socket stays blocking
        if not readable:
            continue
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the host closed the connection")
        now = clock()
        buffer += data
        whole = len(buffer) - len(buffer) % ANSWER.size
        for index, result in ANSWER.iter_unpack(buffer[:whole]):
            latencies[index] = now - (start + due[index])
            if result == ERROR:
                counts["errors"] += 1
            elif result != expect:
                counts["wrong"] += 1
        counts["answered"] += whole // ANSWER.size
        buffer = buffer[whole:]
        last = now - start
        first = first or last
    sender.join()
    sock.close()
    if failed:
        raise failed[0]
    sent = counts["sent"]
    lags = sorted(sent_at[i] - (start + due[i]) for i in range(sent))
    return Report(
        rate=rate,
        duration=duration,
        sent=sent,
        latencies=latencies[:sent],
        errors=counts["errors"],
        wrong=counts["wrong"],
        stopped_at=stopped[0] if stopped else None,
        max_in_flight=counts["max_in_flight"],
        first_answer=first,
        last_answer=last,
        send_lag=summary(lags) if lags else {},
    )


# -- the host, in the calling process


class _Host(asyncio.Protocol):
    """Serves each request read from the generator's connection in a task of its own."""

    def __init__(self, serve: Callable[[], Awaitable[int]]) -> None:
        self.serve = serve
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.first_error = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        whole = len(self.buffer) - len(self.buffer) % REQUEST.size
        loop = asyncio.get_running_loop()
        for (index,) in REQUEST.iter_unpack(self.buffer[:whole]):
            task = loop.create_task(self.answer(index))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self.buffer = self.buffer[whole:]

    async def answer(self, index: int) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = await self.serve()
        except Exception as exc:
            result = ERROR
            self.first_error = self.first_error or repr(exc)
        finally:
            self.in_flight -= 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ANSWER.pack(index, result))


@dataclass
class RateResult:
    """One rate as the generator measured it and the host saw it."""

    report: Report
    host_max_in_flight: int
    host_error: str

    @property
    def sample(self) -> list[float]:
        return [x for x in self.report.latencies if x is not None]

    @property
    def achieved(self) -> float:
        """Answers a second: from the first answer to the last, or over the time the
        requests answered were scheduled across when that is longer. That is the offered
        rate when the host keeps up (never more, however late the first answer and however
        fast the catching up) and its capacity when it falls behind."""
        r = self.report
        answered = len(self.sample)
        span = max(r.last_answer - r.first_answer, (r.sent - 1) / r.rate)
        return (answered - 1) / span if answered > 1 and span > 0 else 0.0

    def saturated(self) -> list[str]:
        r = self.report
        return saturation(
            r.rate,
            self.achieved,
            r.latencies,
            schedule(r.rate, r.duration)[: r.sent],
            r.stopped_at is not None,
        )


async def measure_rate(
    serve: Callable[[], Awaitable[int]], rate: float, duration: float, bound: int, expect: int
) -> RateResult:
    """Offer ``rate`` requests a second for ``duration`` s from a generator process; each
    request awaits ``serve()``, whose result should be ``expect``."""
    loop = asyncio.get_running_loop()
    host = _Host(serve)
    with tempfile.TemporaryDirectory(prefix="surestep-openloop-") as tmp:
        path = os.path.join(tmp, "host.sock")
        server = await loop.create_unix_server(lambda: host, path)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, GENERATOR, path, str(rate), str(duration),
                str(bound), str(expect), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"the load generator exited with {proc.returncode}")
            # Answers the generator gave up waiting for: let them finish, so that the next
            # rate starts on an idle host.
            if host.tasks:
                await asyncio.wait(set(host.tasks), timeout=max(MIN_DRAIN, duration))
            for task in set(host.tasks):
                task.cancel()
        finally:
            server.close()
            if host.transport is not None:
                host.transport.close()
            await server.wait_closed()
    return RateResult(Report.from_json(out.decode()), host.max_in_flight, host.first_error)


# -- printing


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def describe(result: RateResult, floor: float | None) -> dict[str, Any]:
    """The figures of one rate, as printed and as written to ``--json``."""
    r = result.report
    row: dict[str, Any] = {
        "offered_per_s": r.rate,
        "achieved_per_s": result.achieved,
        "sent": r.sent,
        "answered": len(result.sample),
        "errors": r.errors,
        "wrong_results": r.wrong,
        "max_in_flight": r.max_in_flight,
        "host_max_in_flight": result.host_max_in_flight,
        "stopped_at_s": r.stopped_at,
        "send_lag": r.send_lag,
        "saturated": result.saturated(),
    }
    if result.sample:
        row.update(summary(result.sample))
        row["p99_over_p50"] = row["p99"] / row["p50"]
        if floor:
            row["floor"] = floor
            row["p50_over_floor"] = row["p50"] / floor
    if result.host_error:
        row["first_error"] = result.host_error
    return row


HEADER = (
    "offered/s",
    "achieved/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "floor ms",
    "p50/floor",
    "p99/p50",
    "max in flight",
    "send lag p99 ms",
)


def table_row(row: dict[str, Any]) -> tuple[str, ...]:
    def get(key: str, fmt: Callable[[float], str]) -> str:
        return fmt(row[key]) if key in row else "-"

    return (
        f"{row['offered_per_s']:,.0f}",
        f"{row['achieved_per_s']:,.0f}",
        get("p50", ms),
        get("p99", ms),
        get("p99.9", ms),
        get("max", ms),
        get("floor", ms),
        get("p50_over_floor", lambda x: f"{x:.2f}x"),
        get("p99_over_p50", lambda x: f"{x:.2f}x"),
        f"{row['max_in_flight']:,}",
        ms(row["send_lag"]["p99"]) if row["send_lag"] else "-",
    )


def format_table(head: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in [head, *lines]) for i in range(len(head))]
    out = ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(0, "  ".join(c.rjust(w) for c, w in zip(head, widths, strict=True)))
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def verdict(rows: Sequence[dict[str, Any]]) -> str:
    """Where a ladder of rates (ascending) saturated, and what happened past that point.

    The saturation point is the lowest saturated rate above the highest sustained one; a
    rate flagged below a sustained one (a stall on a busy machine) is listed as such."""
    sustained = max((r["offered_per_s"] for r in rows if not r["saturated"]), default=0.0)
    over = [r for r in rows if r["saturated"]]
    beyond = [r for r in over if r["offered_per_s"] > sustained]
    if not beyond:
        first = f"no saturation up to {rows[-1]['offered_per_s']:,.0f}/s"
    else:
        first = f"saturated at {beyond[0]['offered_per_s']:,.0f}/s " + (
            f"(highest sustained: {sustained:,.0f}/s)" if sustained else "(the lowest rate)"
        )
    lines = [first]
    for r in over:
        what = "; ".join(r["saturated"])
        stop = r["stopped_at_s"]
        if stop is not None:
            what += (
                f"; sending stopped {stop:.1f} s in, with {r['max_in_flight']:,} in flight "
                f"(memory bounded)"
            )
        if r["offered_per_s"] < sustained:
            what += " (below a rate that was sustained)"
        lines.append(f"  {r['offered_per_s']:,.0f}/s: {what}")
    return "\n".join(lines)


def _main() -> None:
    parser = argparse.ArgumentParser(description="the load generator (run by measure_rate)")
    parser.add_argument("socket")
    parser.add_argument("rate", type=float)
    parser.add_argument("duration", type=float)
    parser.add_argument("bound", type=int)
    parser.add_argument("expect", type=int)
    a = parser.parse_args()
    print(generate(a.socket, a.rate, a.duration, a.bound, a.expect).to_json())


if __name__ == "__main__":
    _main()
