"""Test harness: every ``async def`` test runs on asyncio's loop and on uvloop, and every
test that takes ``store_url`` runs on each store backend (``BACKENDS``; those marked
``citus_forms`` also on ``CITUS_FORMS``).

The registry of ``@function`` / ``@workflow`` names is restored after each
test, so tests may define workflows with the same names.

``--lmdb-commit=lmdb|log`` runs every LMDB store that names no commit mode, in this process
and the worker processes tests start, in that mode (it sets ``$SURESTEP_LMDB_COMMIT``,
which they inherit).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Iterator
from typing import Any

import pytest

from support.calls import calls
from surestep import decorators
from surestep.store import lmdb

LOOPS = ["asyncio", "uvloop"]
# Every backend the engine-level tests run on. A new backend is one entry here and one
# branch in ``store_url``.
BACKENDS = ["lmdb", "postgres"]
# Plain PostgreSQL with the store's Citus forms of the statements that have a faster form
# there (store/pg_sql.py, PLAIN_FORMS): one more backend for the tests marked citus_forms.
CITUS_FORMS = "postgres-citus"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--lmdb-commit",
        choices=lmdb.COMMITS,
        help=f"the commit mode of LMDB stores that name none (sets ${lmdb.COMMIT_ENV})",
    )


def pytest_configure(config: pytest.Config) -> None:
    mode = config.getoption("--lmdb-commit")
    if mode is not None:
        os.environ[lmdb.COMMIT_ENV] = mode


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_url" in metafunc.fixturenames:
        backends = BACKENDS
        if metafunc.definition.get_closest_marker("citus_forms"):
            backends = [*BACKENDS, CITUS_FORMS]
        metafunc.parametrize("store_url", backends, indirect=True)
    if inspect.iscoroutinefunction(metafunc.function):
        metafunc.fixturenames.append("loop_kind")
        metafunc.parametrize("loop_kind", LOOPS)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kind = pyfuncitem.callspec.params["loop_kind"]
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    loop = new_loop(kind)
    try:
        loop.run_until_complete(asyncio.wait_for(pyfuncitem.obj(**kwargs), 60))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    return True


@pytest.fixture(autouse=True)
def _registry() -> Iterator[None]:
    functions = dict(decorators._functions)
    workflows = dict(decorators._workflows)
    yield
    decorators._functions.clear()
    decorators._functions.update(functions)
    decorators._workflows.clear()
    decorators._workflows.update(workflows)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh store on each backend (``pytest_generate_tests``): an LMDB directory, or a
    new schema on the session's PostgreSQL server (its URL names the schema, and Citus's
    forms on CITUS_FORMS, for worker processes)."""
    if request.param == "lmdb":
        return str(tmp_path / "store")
    import uuid

    url: str = request.getfixturevalue("pg_url")
    url += f"{'&' if '?' in url else '?'}schema=t_{uuid.uuid4().hex[:16]}"
    return url + "&dialect=citus" if request.param == CITUS_FORMS else url


@pytest.fixture
def lmdb_path(tmp_path: Any) -> str:
    """A fresh LMDB store directory, for the tests of what only the LMDB backend has (its
    memory map, writer thread, chunk layout, files on a local disk, in-process lease
    clock); every other engine-level test takes ``store_url`` and runs on each backend."""
    return str(tmp_path / "store")


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A private PostgreSQL server for the session (``tests/support/pgserver.py``).

    Fails when the server binaries are missing, unless SURESTEP_SKIP_POSTGRES=1.
    """
    import os

    from support.pgserver import PgServer, PgServerMissingError

    if os.environ.get("SURESTEP_SKIP_POSTGRES") == "1":
        pytest.skip("SURESTEP_SKIP_POSTGRES=1")
    try:
        server = PgServer()
    except PgServerMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: Any) -> str:
    """``postgresql://...`` of the session's private server."""
    url: str = pg_server.url
    return url


# ---------------------------------------------------------------- HTTP


@pytest.fixture
def served(store_url: str) -> Iterator[Any]:
    """``surestep serve tests/support/http_flows.py`` on a free loopback port, on each backend;
    it must exit 0 on SIGTERM."""
    from support.http_server import Served

    server = Served(store_url)
    try:
        yield server
    finally:
        assert server.close() == 0
