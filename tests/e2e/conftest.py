"""Fixtures of the dashboard's end-to-end tests: a store with real runs, the
dashboard serving it (``surestep ui`` in its own process), and headless Chromium.

Chromium is required: a machine without it fails these tests with a message
saying how to install it, unless ``SURESTEP_SKIP_BROWSER=1`` says to skip them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cdp import Browser, BrowserMissingError, find_chromium
from harness import DashboardProcess, Runs, make_runs


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard") / "store"


@pytest.fixture(scope="module")
def runs(store: Path) -> Runs:
    return make_runs(store)


@pytest.fixture(scope="module")
def dashboard(store: Path, runs: Runs) -> Iterator[DashboardProcess]:
    server = DashboardProcess(store)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def live_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store for the runs the tests hold open (kept apart from ``runs``'s)."""
    path = tmp_path_factory.mktemp("live") / "store"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def live_dashboard(live_store: Path) -> Iterator[DashboardProcess]:
    server = DashboardProcess(live_store)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if os.environ.get("SURESTEP_SKIP_BROWSER") == "1":
        pytest.skip("SURESTEP_SKIP_BROWSER=1: the dashboard's browser tests are skipped")
    try:
        binary = find_chromium()
        chromium = Browser(binary)
    except BrowserMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield chromium
    finally:
        chromium.close()
