"""The dashboard's store page in headless Chromium: the store's size, its runs by status,
the oldest finished run and the retention of each deployment, following a purge made by
``surestep gc`` in another process.

The store holds the runs of ``harness.make_runs`` (four completed, one failed) and two
deployments: ``monthly_report`` (kept 30 days) and ``greet`` (no policy of its own).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cdp import Browser
from harness import FLOWS, DashboardProcess, Runs, surestep


@pytest.fixture(scope="module")
def deployed(store: Path, runs: Runs) -> list[str]:
    surestep(store, "deploy", str(FLOWS), "-w", "monthly_report", "-w", "greet")
    return ["monthly_report", "greet"]


def count_is(status: str, n: int) -> str:
    """A page condition: the runs-by-status table shows ``n`` runs ``status``."""
    selector = json.dumps(f'tr.status-count[data-status="{status}"] td.n')
    return f"document.querySelector({selector})?.innerText === {json.dumps(str(n))}"


def test_the_store_page_shows_size_runs_by_status_and_retention(
    browser: Browser, dashboard: DashboardProcess, runs: Runs, deployed: list[str], store: Path
) -> None:
    browser.goto(dashboard.url)
    browser.wait_for("document.querySelector('tr.run-row')")
    assert browser.evaluate("document.getElementById('nav-runs').getAttribute('aria-current')")
    browser.click("#nav-store")
    browser.wait_for("location.hash === '#/store'")
    browser.wait_for(count_is("completed", 4))
    assert browser.evaluate("document.getElementById('nav-store').getAttribute('aria-current')")
    assert (
        browser.evaluate("document.getElementById('nav-runs').getAttribute('aria-current')") is None
    )
    assert browser.text('tr.status-count[data-status="failed"] td.n') == "1"
    for status in ("running", "pending", "waiting", "cancelled"):
        assert browser.text(f'tr.status-count[data-status="{status}"] td.n') == "0"

    # the LMDB store's size: the pages in use, the data file and the map, as the CLI says
    stats = json.loads(surestep(store, "stats", "--json").stdout)
    said = {
        line.split("  ")[0].strip(): line.split("  ")[-1].strip()
        for line in surestep(store, "stats").stdout.splitlines()
        if "  " in line
    }
    for fact, name in (("size-used", "used"), ("size-file", "file"), ("size-map", "map")):
        label, value = browser.text(f"#{fact}").split("\n")
        assert re.fullmatch(r"\d+(\.\d)? (B|KiB|MiB|GiB)", value) and value == said[name], fact
        assert label.lower() in ("used", "data file", "map size")
    oldest = browser.text("#oldest-finished")
    assert "oldest finished run" in oldest.lower() and re.search(r"\d{4}-\d\d-\d\d \d\d:", oldest)
    assert "ago" in oldest and stats["oldest_finished"] is not None
    assert browser.text("#purging").lower().endswith("0")
    assert browser.text("#default-retention").lower().endswith("7d")
    assert browser.text("#retention-default") == "7d"

    # each deployment with the retention its runs get
    browser.wait_for("document.querySelectorAll('tr.deployment-row').length === 2")
    report = browser.text('tr.deployment-row[data-workflow="monthly_report"] .retention')
    greet = browser.text('tr.deployment-row[data-workflow="greet"] .retention')
    assert (report, greet) == ("30d", "7d (default)")
    assert browser.count("#workflow-retention") == 0  # surestep ui serves no workflow itself

    # a purge in another process: the page follows it
    surestep(store, "gc", "--older-than", "0s")
    browser.wait_for(count_is("completed", 0), timeout=60)  # at its next refresh
    assert browser.text('tr.status-count[data-status="failed"] td.n') == "0"
    assert browser.text("#oldest-finished .mono") == "none"

    # a status links to the runs it counts
    browser.click('tr.status-count[data-status="completed"] a')
    browser.wait_for("location.hash === '#/?status=completed'")
    browser.wait_for("document.querySelector('td.empty')?.innerText === 'No runs'")
    assert not browser.console, browser.console
