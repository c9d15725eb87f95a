"""The dashboard as a person sees it, in headless Chromium, over a store of real runs;
and its HTTP API's rules (hosts, tokens, actions, malformed requests) over real sockets.

The store holds runs made by the ``surestep`` command (``harness.make_runs``): a
completed order with five steps (its charge retried once), a failed payment, a
one-step greeting. The dashboard is ``surestep ui`` in its own process.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cdp import Browser
from harness import FLOWS, DashboardProcess, Process, Runs

RED = "rgb(207, 34, 46)"  # --failed in app.css


def rows_are(ids: list[str]) -> str:
    """A page condition: the runs table lists exactly ``ids``, in this order."""
    return (
        "JSON.stringify([...document.querySelectorAll('tr.run-row')].map(r => r.dataset.runId))"
        f" === {json.dumps(json.dumps(ids, separators=(',', ':')))}"
    )


def status_is(status: str) -> str:
    return f"document.querySelector('h1 .pill')?.dataset.status === {json.dumps(status)}"


def running_run(browser: Browser, dashboard: DashboardProcess, status: str = "running") -> str:
    """Open the list filtered on ``status`` and return the one run it shows."""
    browser.goto(f"{dashboard.base}#/?status={status}")
    return str(
        browser.wait_for(
            "(() => { const r = document.querySelectorAll('tr.run-row');"
            " return r.length === 1 && r[0].dataset.runId; })()"
        )
    )


# ---------------------------------------------------------------- what a person sees


def test_the_runs_list_shows_every_run(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    browser.goto(dashboard.url)
    browser.wait_for(rows_are(runs.as_listed(runs.all)))  # newest first, a child under its parent
    text = {run_id: browser.text(f'tr.run-row[data-run-id="{run_id}"]') for run_id in runs.all}
    assert "order_fulfillment" in text[runs.order] and "completed" in text[runs.order]
    assert "sess-42" in text[runs.order] and "alice" in text[runs.order]
    assert "declined_payment" in text[runs.failed] and "failed" in text[runs.failed]
    assert "greet" in text[runs.greet]
    color = browser.evaluate(
        f"getComputedStyle(document.querySelector('tr[data-run-id=\"{runs.failed}\"] .pill')).color"
    )
    assert color == RED
    assert f"{len(runs.all)} runs" in browser.text("#live")


def test_status_filters_and_search_by_run_session_or_user_id(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    browser.goto(dashboard.url)
    browser.wait_for(rows_are(runs.as_listed(runs.all)))
    browser.click('.filters button[data-status="failed"]')
    browser.wait_for(rows_are([runs.failed]))
    browser.click('.filters button[data-status="completed"]')
    browser.wait_for(rows_are(runs.as_listed(runs.having("completed"))))
    browser.click('.filters button[data-status=""]')
    browser.wait_for(rows_are(runs.as_listed(runs.all)))
    for query, expected in (
        ("alice", [runs.order]),  # a user id
        ("sess-7", [runs.greet]),  # a session id
        (runs.failed[:20], [runs.failed]),  # part of a run id
    ):
        browser.type("#search", query)
        browser.wait_for(rows_are(expected))
    browser.type("#search", "nobody-has-this-id")
    browser.wait_for("document.querySelector('#runs-body td.empty')?.innerText === 'No runs'")


def test_a_run_page_has_one_timeline_bar_per_step(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    steps = get(dashboard, f"/api/runs/{runs.order}/journal")["steps"]
    assert len(steps) == 5
    browser.goto(dashboard.url)
    browser.wait_for(rows_are(runs.as_listed(runs.all)))
    browser.click(f'tr[data-run-id="{runs.order}"] a.run-link')  # as a person gets there
    browser.wait_for(f"document.querySelectorAll('#timeline .tl-bar').length === {len(steps)}")
    assert browser.evaluate("location.hash") == f"#/runs/{runs.order}"
    bars = browser.evaluate(
        "[...document.querySelectorAll('#timeline .tl-bar')].map(b => ({seq: +b.dataset.seq,"
        " cls: b.className, left: b.getBoundingClientRect().left,"
        " width: b.getBoundingClientRect().width}))"
    )
    assert [bar["seq"] for bar in bars] == [0, 1, 2, 3, 4]
    lefts = [bar["left"] for bar in bars]
    assert lefts == sorted(lefts)  # sequential steps, left to right on the time axis
    assert all(bar["width"] >= 2 for bar in bars)
    assert all("completed" in bar["cls"] for bar in bars)
    retried = [bar["seq"] for bar in bars if "retried" in bar["cls"]]
    assert retried == [2]  # charge_card: its first attempt timed out
    labels = browser.text("#timeline")
    for name in (
        "validate_order",
        "reserve_stock",
        "charge_card",
        "create_shipment",
        "send_receipt",
    ):
        assert name in labels
    assert "2 attempts" in labels
    assert browser.count("#steps-body tr.step-row") == 5
    assert "txn-o-17" in browser.text("#result")
    assert 'order_fulfillment("o-17", ["book","lamp"])' in browser.text("#input")
    assert "step 2 charge_card completed after 2 attempts" in browser.text("#logs")


def test_a_failed_run_shows_its_error(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    browser.goto(f"{dashboard.base}#/runs/{runs.failed}")
    browser.wait_for("document.querySelector('#run-error')")
    assert browser.evaluate(status_is("failed"))
    error = browser.text("#run-error")
    assert "card declined for o-18: insufficient funds" in error
    assert "ValueError" in error  # the step's own exception type
    assert browser.count("#timeline .tl-bar") == 2
    failed_bar = '#timeline .tl-bar[data-seq="1"]'
    assert "failed" in browser.evaluate(f"document.querySelector('{failed_bar}').className")
    last_attempt = f"{failed_bar} .tl-attempt:last-of-type"  # its attempts: segments
    assert (
        browser.evaluate(
            f"getComputedStyle(document.querySelector('{last_attempt}')).backgroundColor"
        )
        == RED
    )
    assert "3 attempts" in browser.text("#timeline")
    step_error = browser.text(".step-failed .step-error")
    assert "ValueError: card declined for o-18" in step_error
    # The traceback is one click away.
    browser.click(".step-failed .step-error summary")
    browser.wait_for(
        "document.querySelector('.step-failed .step-error pre')"
        "?.innerText.includes('charge_declined')"
    )
    assert "failed after 3 attempts" in browser.text("#logs")


def test_a_running_run_updates_live(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run = Process(live_store, "run", f"{FLOWS}:held_open", str(gate), "-q")
    try:
        run_id = running_run(browser, live_dashboard)
        browser.click(f'tr[data-run-id="{run_id}"] a.run-link')
        browser.wait_for(
            f"{status_is('running')} && document.querySelectorAll('#timeline .tl-bar').length === 1"
            " && document.querySelector('#timeline .tl-pending')"
        )
        browser.evaluate("window.__samePage = true")
        gate.touch()  # the held step returns; two more steps are journaled
        browser.wait_for(
            f"{status_is('completed')}"
            " && document.querySelectorAll('#timeline .tl-bar').length === 3",
            timeout=30,
        )
        assert browser.evaluate("window.__samePage === true")  # updated in place, not reloaded
        assert browser.count("#timeline .tl-pending") == 0
        assert run.wait() == 0
    finally:
        gate.touch()
        run.close()


def test_cancel_a_running_run_from_its_page(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run = Process(live_store, "run", f"{FLOWS}:held_open", str(gate), "-q")
    try:
        run_id = running_run(browser, live_dashboard)
        browser.goto(f"{live_dashboard.base}#/runs/{run_id}")
        browser.wait_for(f"{status_is('running')} && document.querySelector('#cancel')")
        browser.click("#cancel")  # the first click asks to click again
        browser.wait_for("document.querySelector('#cancel').classList.contains('armed')")
        browser.click("#cancel")
        browser.wait_for(status_is("cancelled"), timeout=30)
        assert "Run cancelled" in browser.text("#notice")
        assert browser.evaluate("document.querySelector('#actions').hidden")
        # Gone, not only marked hidden (the page's style shows #actions as a flex box).
        assert browser.count("#actions button") == 0 and browser.count("#send-event") == 0
        gate.touch()
        assert run.wait() == 1  # `surestep run` of a cancelled run
    finally:
        gate.touch()
        run.close()


def test_send_an_event_to_a_waiting_run_from_its_page(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path
) -> None:
    run = Process(live_store, "run", f"{FLOWS}:approval", "r-1", "-q")
    try:
        run_id = running_run(browser, live_dashboard, status="waiting")
        browser.goto(f"{live_dashboard.base}#/runs/{run_id}")
        browser.wait_for(f"{status_is('waiting')} && document.querySelector('#send-event')")
        assert "event approved" in browser.text("#facts")
        assert browser.count("#timeline .tl-bar.kind-sleep") == 1  # the durable sleep
        browser.type("#event-name", "approved")
        browser.type("#event-payload", "{not json")
        browser.click("#send-event button[type=submit]")
        browser.wait_for("document.querySelector('#notice').innerText.includes('not valid JSON')")
        browser.type("#event-payload", '{"by": "carol"}')
        browser.click("#send-event button[type=submit]")
        browser.wait_for("document.querySelector('#notice').innerText === 'Sent approved'")
        browser.wait_for(status_is("completed"), timeout=60)  # the run resumed on the event
        assert browser.count("#timeline .tl-bar.kind-event") == 1
        assert "carol" in browser.text("#result")
        assert "received event approved" in browser.text("#logs")
        assert run.wait() == 0
    finally:
        run.close()


def test_a_durable_sleep_is_shown_waiting_until_its_time(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path
) -> None:
    run = Process(live_store, "run", f"{FLOWS}:long_nap", "n-1", "-q")
    try:
        run_id = running_run(browser, live_dashboard, status="waiting")
        assert "sleep until" in browser.text(f'tr[data-run-id="{run_id}"]')
        browser.goto(f"{live_dashboard.base}#/runs/{run_id}")
        browser.wait_for(
            f"{status_is('waiting')} && document.querySelector('#timeline .tl-bar.waiting')"
        )
        assert browser.text("#status-text").startswith("waiting: sleep until ")
        sleep_row = browser.text('#steps-body tr[data-seq="1"]')
        assert "@sleep" in sleep_row and "waiting" in sleep_row and "until " in sleep_row
        assert "completed" not in sleep_row
        assert "slept" not in browser.text("#logs") and "sleeps until" in browser.text("#logs")
        # The sleep's bar reaches its end, an hour on: the step before it is a sliver.
        width = browser.evaluate(
            "parseFloat(document.querySelector('#timeline .tl-bar.waiting').style.width)"
        )
        assert width > 90
        browser.click("#cancel")
        browser.wait_for("document.querySelector('#cancel').classList.contains('armed')")
        browser.click("#cancel")
        browser.wait_for(status_is("cancelled"), timeout=30)
        assert browser.count("#actions button") == 0
        assert "cancelled" in browser.text('#steps-body tr[data-seq="1"]')
        assert run.wait() == 1
    finally:
        run.close()


def test_a_run_waiting_for_a_person_shows_its_question_and_progress(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path
) -> None:
    run = Process(live_store, "run", f"{FLOWS}:refund_review", "o-77", "-q")
    try:
        run_id = running_run(browser, live_dashboard, status="person")  # the filter
        assert "a person" in browser.text(f'tr.run-row[data-run-id="{run_id}"]')
        browser.goto(f"{live_dashboard.base}#/runs/{run_id}")
        browser.wait_for(
            "document.querySelector('#question') && document.querySelector('#progress')"
        )
        assert "Refund o-77?" in browser.text("#question")
        assert "approve, reject" in browser.text("#question")
        assert "2 / 5" in browser.text("#progress") and "checked the order" in browser.text(
            "#progress"
        )
        assert browser.count("#progress progress") == 1
        browser.wait_for("document.querySelector('#answer')")  # the answer form
        browser.click("#answer button[type=submit]")
        browser.wait_for("document.querySelector('#notice').innerText === 'Choose an option'")
        browser.click('#answer input[value="approve"]')
        browser.click("#answer button[type=submit]")
        browser.wait_for("document.querySelector('#notice').innerText === 'Answered'")
        browser.wait_for(status_is("completed"), timeout=60)
        assert browser.count("#question") == 0
        assert "approve" in browser.text("#result")
        assert run.wait() == 0
    finally:
        run.close()


def test_a_parent_and_its_child_link_to_each_other(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    browser.goto(f"{dashboard.base}#/runs/{runs.parent}")
    child = json.dumps(runs.child)
    browser.wait_for(f"document.querySelector('#children tr.run-row')?.dataset.runId === {child}")
    assert browser.count("#timeline .tl-bar") == 2
    assert browser.count("#timeline .tl-bar.kind-child") == 1
    browser.click(f'#children a[href="#/runs/{runs.child}"]')
    browser.wait_for(f"document.querySelector('#parent')?.innerText === {json.dumps(runs.parent)}")
    assert browser.evaluate(status_is("completed"))
    assert "hello kid" in browser.text("#result")


def test_a_token_dashboard_asks_for_its_token(browser: Browser, store: Path, runs: Runs) -> None:
    server = DashboardProcess(store, "--token", "correct-horse-battery", "--read-only")
    try:
        browser.goto(server.base)  # without the token
        browser.wait_for("document.querySelector('#token')")
        browser.type("#token", "correct-horse-battery")
        browser.click("button[type=submit]")
        browser.wait_for(rows_are(runs.as_listed(runs.all)))
        assert browser.text("#mode") == "read-only"
        browser.goto(server.url)  # the printed URL carries the token once...
        browser.wait_for(rows_are(runs.as_listed(runs.all)))
        assert "token" not in browser.evaluate("location.href")  # ...and the page drops it
    finally:
        server.close()


# ---------------------------------------------------------------- the API's rules


def request(
    base: str,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Message, Any]:
    """Status, headers (names in any case) and body (JSON decoded) of one request."""
    req = urllib.request.Request(base.rstrip("/") + path, data=body, method=method)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            status, head, raw = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, exc.headers, exc.read()
    kind = head.get("Content-Type", "")
    return status, head, json.loads(raw) if kind.startswith("application/json") else raw


def get(dashboard: DashboardProcess, path: str) -> Any:
    status, _, body = request(dashboard.base, path)
    assert status == 200, body
    return body


def raw_exchange(base: str, data: bytes) -> bytes:
    host, port = base.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)  # a refusal may come before all of it was sent
        chunks = []
        with contextlib.suppress(ConnectionResetError):  # closed with our request unread
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def test_api_lists_filters_and_reads_runs(dashboard: DashboardProcess, runs: Runs) -> None:
    listed = get(dashboard, "/api/runs?status=completed")["runs"]
    assert [run["run_id"] for run in listed] == runs.having("completed")
    assert [r["run_id"] for r in get(dashboard, "/api/runs?q=ALICE")["runs"]] == [runs.order]
    run = get(dashboard, f"/api/runs/{runs.failed}")
    assert run["status"] == "failed" and run["error"]["type"] == "ValueError"
    steps = get(dashboard, f"/api/runs/{runs.failed}/journal")["steps"]
    assert [(s["name"], s["status"], s["attempt"]) for s in steps] == [
        ("validate_order", "completed", 1),
        ("charge_declined", "failed", 3),
    ]
    logs = get(dashboard, f"/api/runs/{runs.failed}/logs")
    assert any("failed after 3 attempts" in line["message"] for line in logs["lines"])
    info = get(dashboard, "/api/info")
    assert info["actions"] is True and info["store"].startswith("lmdb://")
    status, _, body = request(dashboard.base, "/api/runs/" + "0" * 32)
    assert status == 404 and "no run" in body["error"]
    status, _, body = request(dashboard.base, "/api/runs?status=bogus")
    assert status == 400
    status, head, _ = request(dashboard.base, "/api/runs", method="DELETE")
    assert status == 405 and "GET" in head["Allow"] and "DELETE" not in head["Allow"]


def test_pages_carry_a_strict_content_security_policy(dashboard: DashboardProcess) -> None:
    status, head, body = request(dashboard.base, "/")
    assert status == 200 and b"/static/app.js" in body
    assert "script-src 'self'" in head["Content-Security-Policy"]
    assert head["X-Content-Type-Options"] == "nosniff"
    assert request(dashboard.base, "/static/../server.py")[0] == 404
    assert request(dashboard.base, "/static/app.js")[1]["Content-Type"].startswith(
        "text/javascript"
    )


def test_a_loopback_dashboard_refuses_other_host_names(dashboard: DashboardProcess) -> None:
    # A page on another site that rebinds its name to 127.0.0.1 still sends its own Host.
    status, _, body = request(dashboard.base, "/api/runs", headers={"Host": "attacker.example"})
    assert status == 403 and "localhost only" in body["error"]
    assert request(dashboard.base, "/api/runs", headers={"Host": "localhost:1"})[0] == 200


def test_actions_need_json_and_the_same_origin(dashboard: DashboardProcess, runs: Runs) -> None:
    path = f"/api/runs/{runs.order}/cancel"
    status, _, body = request(dashboard.base, path, "POST", b"{}", {"Content-Type": "text/plain"})
    assert status == 415  # what a cross-site <form> can send
    status, _, body = request(
        dashboard.base,
        path,
        "POST",
        b"{}",
        {"Content-Type": "application/json", "Origin": "http://attacker.example"},
    )
    assert status == 403 and "cross-origin" in body["error"]
    status, _, body = request(
        dashboard.base, path, "POST", b"{}", {"Content-Type": "application/json"}
    )
    assert status == 200 and body["cancelled"] is False  # it had completed
    assert body["run"]["status"] == "completed"
    status, _, body = request(
        dashboard.base,
        f"/api/runs/{runs.order}/events",
        "POST",
        b'{"payload": 1}',
        {"Content-Type": "application/json"},
    )
    assert status == 400 and "name" in body["error"]


def test_a_token_is_required_and_a_read_only_dashboard_refuses_actions(
    store: Path, runs: Runs
) -> None:
    server = DashboardProcess(store, "--token", "t0ken-t0ken", "--read-only")
    try:
        assert request(server.base, "/")[0] == 200  # the page itself holds no data
        assert request(server.base, "/api/runs")[0] == 401
        wrong = {"Authorization": "Bearer t0ken-t0keN"}
        assert request(server.base, "/api/runs", headers=wrong)[0] == 401
        right = {"Authorization": "Bearer t0ken-t0ken"}
        assert request(server.base, "/api/runs", headers=right)[0] == 200
        status, _, body = request(
            server.base,
            f"/api/runs/{runs.order}/cancel",
            "POST",
            b"{}",
            {**right, "Content-Type": "application/json"},
        )
        assert status == 403 and "read-only" in body["error"]
    finally:
        server.close()


CLOSE = b"Connection: close\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /api/info HTTP/1.1\r\nHost: localhost\r\nbad header\r\n" + CLOSE + b"\r\n", 400),
        (b"GET /api/info HTTP/1.1\r\n" + CLOSE + b"\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 200_000 + b"\r\n\r\n", 400),
        (
            b"POST /api/runs/x/cancel HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n" + CLOSE + b"\r\nab",
            400,
        ),
        (
            b"POST /api/runs/x/cancel HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: 99999999\r\n" + CLOSE + b"\r\n",
            413,
        ),
        (
            b"POST /api/runs/x/cancel HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            + CLOSE
            + b"\r\n100001\r\n"
            + b"a" * 0x100001
            + b"\r\n0\r\n\r\n",
            413,
        ),
    ],
    ids=["header", "no-host", "huge-head", "two-lengths", "huge-body", "huge-chunked-body"],
)
def test_malformed_requests_are_refused(
    dashboard: DashboardProcess, data: bytes, status: int
) -> None:
    answer = raw_exchange(dashboard.base, data)  # returns only once the server closed
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert get(dashboard, "/api/info")["version"]  # and it still serves


def test_keep_alive_serves_several_requests_on_one_connection(dashboard: DashboardProcess) -> None:
    one = b"GET /api/info HTTP/1.1\r\nHost: localhost\r\n\r\n"
    last = b"GET /api/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(dashboard.base, one + one + last)
    assert answer.count(b"HTTP/1.1 200 OK") == 3


def test_actions_default_to_loopback_only(store: Path, runs: Runs) -> None:
    """Beyond loopback (here 0.0.0.0, reached through 127.0.0.1) the dashboard is read-only
    unless --allow-actions, and the address it prints carries no token."""
    cancel = f"/api/runs/{runs.order}/cancel"
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    remote = DashboardProcess(store, "--host", "0.0.0.0", "--token", "t")
    try:
        assert "read-only" in remote.line and "token" not in remote.url
        local = remote.base.replace("0.0.0.0", "127.0.0.1")
        status, _, body = request(local, cancel, "POST", b"{}", headers)
        assert status == 403 and "read-only" in body["error"]
    finally:
        remote.close()
    acting = DashboardProcess(store, "--host", "0.0.0.0", "--token", "t", "--allow-actions")
    try:
        assert "actions allowed" in acting.line
        local = acting.base.replace("0.0.0.0", "127.0.0.1")
        status, _, body = request(local, cancel, "POST", b"{}", headers)
        assert status == 200 and body["cancelled"] is False  # it had completed
    finally:
        acting.close()


def test_the_schedules_are_listed_under_the_runs(
    browser: Browser, dashboard: DashboardProcess, tmp_path: Path
) -> None:
    import asyncio
    import time

    from surestep.store import open_store
    from surestep.store.base import ScheduleInfo

    browser.goto(dashboard.url)  # a store without schedules: no section
    browser.wait_for("document.querySelector('#schedules')?.hidden === true")

    store = tmp_path / "store"

    async def schedule(paused: bool) -> None:
        opened = open_store(str(store))
        await opened.open()
        try:
            if not paused:  # yearly: never due while the test runs
                yearly = ScheduleInfo("report", "v1", "0 9 1 1 *", None, "Asia/Tokyo", "none")
                await opened.register_schedule("report", "v1", yearly, time.time())
            else:
                await opened.pause_schedule("report", True, time.time())
        finally:
            await opened.close()

    asyncio.run(schedule(paused=False))
    server = DashboardProcess(store)
    try:
        browser.goto(server.url)
        browser.wait_for("document.querySelectorAll('tr.schedule-row').length === 1")
        row = browser.text('tr.schedule-row[data-workflow="report"]')
        assert "cron 0 9 1 1 * (Asia/Tokyo)" in row and "none" in row and "active" in row
        # No tick fired yet; the next one shown as a local date and time.
        assert re.search(r"\t-\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", row), row
        asyncio.run(schedule(paused=True))
        browser.wait_for(
            "document.querySelector('tr.schedule-row')?.innerText.includes('paused')",
            timeout=30,
        )
    finally:
        server.close()
