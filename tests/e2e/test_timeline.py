"""The dashboard's timeline and run list at scale, in headless Chromium: a retried step's
attempts with their backoff gaps, a step retrying now, internal records behind a toggle,
a 500-step run grouped by name, pages beyond 200 runs, the workflow filter, and children
listed under their parent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cdp import Browser
from harness import FLOWS, DashboardProcess, Process, Runs, surestep
from test_dashboard import get, rows_are, running_run, status_is

RED = "rgb(207, 34, 46)"  # --failed in app.css


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of 500 steps and a run with 210 children (212 runs in all)."""
    store = tmp_path_factory.mktemp("big") / "store"
    surestep(store, "run", f"{FLOWS}:many_steps", "500", "-q")
    surestep(store, "run", f"{FLOWS}:fan_out", "210", "-q")
    return store


@pytest.fixture(scope="module")
def big_dashboard(big_store: Path) -> Iterator[DashboardProcess]:
    server = DashboardProcess(big_store)
    try:
        yield server
    finally:
        server.close()


def _by_workflow(dashboard: DashboardProcess, workflow: str) -> list[str]:
    runs = get(dashboard, f"/api/runs?workflow={workflow}&limit=1000")["runs"]
    return [run["run_id"] for run in runs]


def test_each_attempt_is_a_segment_with_its_backoff_gap(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    steps = get(dashboard, f"/api/runs/{runs.order}/journal")["steps"]
    charge = steps[2]
    assert [(a["attempt"], a["status"]) for a in charge["attempts"]] == [
        (1, "failed"),
        (2, "completed"),
    ]
    assert charge["attempts"][0]["error"] == "TimeoutError: payment gateway timed out"
    assert charge["attempts"][0]["next_at"] >= charge["attempts"][0]["finished_at"]
    browser.goto(f"{dashboard.base}#/runs/{runs.order}")
    bar = '#timeline .tl-bar[data-seq="2"]'
    browser.wait_for(f"document.querySelectorAll('{bar} .tl-attempt').length === 2")
    segments = browser.evaluate(
        f"[...document.querySelectorAll('{bar} .tl-attempt, {bar} .tl-gap')].map(e =>"
        " ({cls: e.className, left: e.getBoundingClientRect().left,"
        " right: e.getBoundingClientRect().right}))"
    )
    assert [s["cls"] for s in segments] == ["tl-attempt failed", "tl-gap", "tl-attempt completed"]
    failed, gap, completed = segments
    assert failed["right"] <= gap["left"] + 1 and gap["right"] <= completed["left"] + 1
    assert browser.count("#timeline .tl-bar.split") == 1  # the steps that were not retried: one bar
    browser.click('#steps-body tr[data-seq="2"] details.attempts summary')
    assert "payment gateway timed out" in browser.text('#steps-body tr[data-seq="2"] ol')


def test_a_failed_steps_last_attempt_is_red(
    browser: Browser, dashboard: DashboardProcess, runs: Runs
) -> None:
    browser.goto(f"{dashboard.base}#/runs/{runs.failed}")
    bar = '#timeline .tl-bar[data-seq="1"]'
    browser.wait_for(f"document.querySelectorAll('{bar} .tl-attempt').length === 3")
    colors = browser.evaluate(
        f"[...document.querySelectorAll('{bar} .tl-attempt')]"
        ".map(e => getComputedStyle(e).backgroundColor)"
    )
    assert colors == [RED, RED, RED]
    assert browser.count(f"{bar} .tl-gap") == 2


def test_a_step_retrying_later_is_shown_with_its_next_attempt(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path
) -> None:
    run = Process(live_store, "run", f"{FLOWS}:retry_later", "p-1", "-q")
    try:
        run_id = running_run(browser, live_dashboard, status="waiting")
        row = browser.text(f'tr[data-run-id="{run_id}"]')
        assert "retrying: step 1 (call_partner) attempt 2 of 5, next at " in row
        assert "last error: ConnectionError: partner API refused p-1: HTTP 503" in row
        browser.goto(f"{live_dashboard.base}#/runs/{run_id}")
        browser.wait_for("document.querySelector('#timeline .tl-bar.retrying')")
        assert browser.text("#status-text").startswith("retrying: step 1 (call_partner)")
        bar = "#timeline .tl-bar.retrying"
        assert browser.count(f"{bar} .tl-attempt.failed") == 1
        assert browser.count(f"{bar} .tl-attempt.retrying") == 1  # the attempt to come
        assert browser.count(f"{bar} .tl-gap") == 1  # an hour's backoff
        step = browser.text('#steps-body tr[data-seq="1"]')
        assert "retrying" in step and "2 of 5" in step and "HTTP 503" in step
        assert "completed" not in step
        browser.click("#cancel")
        browser.wait_for("document.querySelector('#cancel').classList.contains('armed')")
        browser.click("#cancel")
        browser.wait_for(status_is("cancelled"), timeout=30)
        assert run.wait() == 1
    finally:
        run.close()


def test_internal_records_are_hidden_until_asked_for(
    browser: Browser, live_dashboard: DashboardProcess, live_store: Path
) -> None:
    run = Process(live_store, "run", f"{FLOWS}:approval", "r-2", "-q")
    try:
        run_id = running_run(browser, live_dashboard, status="waiting")
        browser.goto(f"{live_dashboard.base}#/runs/{run_id}")
        browser.wait_for("document.querySelector('#timeline .tl-bar.kind-event.waiting')")
        names = browser.text("#steps-body")
        assert "@deadline" not in names and "@event:approved" in names
        browser.click("#show-internal")
        browser.wait_for("document.querySelector('#steps-body').innerText.includes('@deadline')")
        assert browser.count("#steps-body tr.internal") == 1
        browser.click("#show-internal")
        browser.wait_for("!document.querySelector('#steps-body').innerText.includes('@deadline')")
        surestep(live_store, "send", run_id, "approved", '"yes"')
        browser.wait_for(status_is("completed"), timeout=60)
        assert run.wait() == 0
    finally:
        run.close()


def test_a_run_of_500_steps_is_grouped_by_name(
    browser: Browser, big_dashboard: DashboardProcess
) -> None:
    [run_id] = _by_workflow(big_dashboard, "many_steps")
    browser.goto(f"{big_dashboard.base}#/runs/{run_id}")
    browser.wait_for("document.querySelectorAll('#steps-body tr.step-group').length === 3")
    groups = browser.text("#steps-body")
    for name, count in (("fetch", 167), ("parse", 167), ("store", 166)):
        assert f"{name} \N{MULTIPLICATION SIGN}{count}" in groups
    assert browser.count("#timeline .tl-row.group") == 3
    assert browser.count("#timeline .tl-bar") == 0  # not 500 bars
    assert browser.count("#steps-body tr.step-row") == 0
    browser.click('#steps-body tr.step-group[data-name="parse"] button')
    browser.wait_for("document.querySelectorAll('#steps-body tr.step-row').length === 167")
    assert browser.evaluate(
        "[...document.querySelectorAll('#steps-body tr.step-row')].every(r =>"
        " r.children[1].innerText === 'parse')"
    )
    assert browser.count('#steps-body tr.step-row[data-seq="499"]') == 1  # 499 % 3 == 1
    assert browser.count('#steps-body tr.step-row[data-seq="0"]') == 0  # a fetch
    height = browser.evaluate("document.querySelector('#timeline').getBoundingClientRect().height")
    assert height < 300  # a usable page: three rows, not five hundred


def _shown(browser: Browser) -> list[list[str]]:
    return list(
        browser.evaluate(
            "[...document.querySelectorAll('tr.run-row')]"
            ".map(r => [r.dataset.runId, r.dataset.depth])"
        )
    )


def _page_is(ids: list[str]) -> str:
    """A page condition: the runs table lists exactly ``ids``, in any order (a child
    listed under its parent moves)."""
    return (
        "JSON.stringify([...document.querySelectorAll('tr.run-row')].map(r => r.dataset.runId)"
        f".sort()) === {json.dumps(json.dumps(sorted(ids), separators=(',', ':')))}"
    )


def test_the_run_list_pages_beyond_200_runs_and_filters_by_workflow(
    browser: Browser, big_dashboard: DashboardProcess
) -> None:
    everything = [r["run_id"] for r in get(big_dashboard, "/api/runs?limit=1000")["runs"]]
    assert len(everything) == 212
    browser.goto(big_dashboard.url)
    browser.wait_for(_page_is(everything[:200]))
    assert browser.evaluate("document.querySelector('#newer').disabled")
    browser.click("#older")
    browser.wait_for(f"{_page_is(everything[200:])} && !document.querySelector('#newer').disabled")
    assert browser.evaluate("document.querySelector('#older').disabled")
    assert browser.text("#page") == "page 2"
    browser.click("#newer")
    browser.wait_for(_page_is(everything[:200]))
    browser.type("#workflow", "many_steps")
    browser.wait_for(rows_are(_by_workflow(big_dashboard, "many_steps")))
    assert "workflow=many_steps" in browser.evaluate("location.hash")


def test_children_are_listed_under_their_parent_and_link_to_it(
    browser: Browser, big_dashboard: DashboardProcess
) -> None:
    [parent] = _by_workflow(big_dashboard, "fan_out")
    children = _by_workflow(big_dashboard, "greet")
    assert len(children) == 210
    browser.goto(f"{big_dashboard.base}#/?workflow=greet")
    browser.wait_for("document.querySelectorAll('tr.run-row').length === 200")
    # The parent is not listed: each child links to it.
    assert browser.count(f'tr.run-row a.parent-link[href="#/runs/{parent}"]') == 200
    everything = [r["run_id"] for r in get(big_dashboard, "/api/runs?limit=1000")["runs"]]
    first_page = parent in everything[:200]
    page = everything[:200] if first_page else everything[200:]
    browser.goto(f"{big_dashboard.base}#/")
    browser.wait_for(_page_is(everything[:200]))
    if not first_page:
        browser.click("#older")
    browser.wait_for(_page_is(page))
    shown = _shown(browser)
    at = [run_id for run_id, _ in shown].index(parent)
    listed_children = [run_id for run_id in page if run_id in set(children)]
    under = shown[at + 1 : at + 1 + len(listed_children)]
    assert sorted(run_id for run_id, _ in under) == sorted(listed_children)
    assert all(depth == "1" for _, depth in under)  # right under it, indented
    browser.goto(f"{big_dashboard.base}#/runs/{parent}")
    browser.wait_for("document.querySelectorAll('#children tr.run-row').length === 210")
    browser.click(f'#children a[href="#/runs/{children[0]}"]')
    browser.wait_for(f"document.querySelector('#parent')?.innerText === {json.dumps(parent)}")


def test_a_run_waiting_for_a_worker_says_which_versions_are_served(
    browser: Browser, tmp_path: Path
) -> None:
    """The dashboard's status text carries the live engines' versions, as the CLI's does."""
    from flows import greet
    from surestep import Engine

    async def stored_only() -> str:  # a run no engine executes
        async with Engine(store, execute=False) as engine:
            return (await engine.start(greet, "nobody")).run_id

    store = tmp_path / "store"
    run_id = asyncio.run(stored_only())
    dashboard = DashboardProcess(store)
    try:
        run = get(dashboard, f"/api/runs/{run_id}")
        assert run["status"] == "pending"
        assert run["status_text"].endswith("(no live engine serves greet)")
        [listed] = get(dashboard, "/api/runs")["runs"]
        assert listed["status_text"] == run["status_text"]
        browser.goto(dashboard.url)
        browser.wait_for(rows_are([run_id]))
        assert "no live engine serves greet" in browser.text(f'tr[data-run-id="{run_id}"]')
    finally:
        dashboard.close()


def test_journaled_values_are_internal_records(tmp_path: Path) -> None:
    store = tmp_path / "store"
    surestep(store, "run", f"{FLOWS}:stamped", "s-1", "-q")
    [run] = json.loads(surestep(store, "runs", "--json").stdout)
    shown = surestep(store, "show", run["run_id"]).stdout
    assert "label" in shown and "@now" not in shown
    assert "@now" in surestep(store, "show", run["run_id"], "--internal").stdout
    dashboard = DashboardProcess(store)
    try:
        steps = get(dashboard, f"/api/runs/{run['run_id']}/journal")["steps"]
        assert [s["name"] for s in steps] == ["label"]
        steps = get(dashboard, f"/api/runs/{run['run_id']}/journal?internal=1")["steps"]
        assert [(s["name"], s["internal"]) for s in steps] == [("@now", True), ("label", False)]
    finally:
        dashboard.close()
