"""The one reading of a store URL (``surestep.store.parse_store_url``): the forms it takes,
the typed error for any other, and its callers (``open_store``, the CLI) agreeing."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from surestep import cli
from surestep.errors import ConfigurationError
from surestep.store import StoreLocation, open_store, parse_store_url
from surestep.store.lmdb import LmdbStore


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (".surestep", StoreLocation("lmdb", ".surestep")),
        ("/some/dir", StoreLocation("lmdb", "/some/dir")),
        ("relative/dir", StoreLocation("lmdb", "relative/dir")),
        ("lmdb:///some/dir", StoreLocation("lmdb", "/some/dir")),
        ("lmdb://relative/dir", StoreLocation("lmdb", "relative/dir")),
        ("dir:with:colons", StoreLocation("lmdb", "dir:with:colons")),
        (
            "postgresql://u:p@localhost/db",
            StoreLocation("postgres", "postgresql://u:p@localhost/db"),
        ),
        ("postgres://localhost:5433/db", StoreLocation("postgres", "postgres://localhost:5433/db")),
    ],
)
def test_the_forms_of_a_store_url(location: str, expected: StoreLocation) -> None:
    assert parse_store_url(location) == expected


def test_a_path_object_is_a_directory(tmp_path: Path) -> None:
    assert parse_store_url(tmp_path / "store") == StoreLocation("lmdb", str(tmp_path / "store"))


@pytest.mark.parametrize(
    "location", ["redis://localhost", "file:///some/dir", "mysql://db", "LMDB:///x", "://x"]
)
def test_any_other_url_is_a_typed_error(location: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown store URL") as caught:
        parse_store_url(location)
    assert repr(location) in str(caught.value)
    assert "lmdb:///path or postgresql://" in str(caught.value)
    with pytest.raises(ConfigurationError, match="unknown store URL"):
        open_store(location)


def test_open_store_opens_the_directory_parsed(tmp_path: Path) -> None:
    store = open_store(f"lmdb://{tmp_path / 'store'}", durability="process")
    assert isinstance(store, LmdbStore)
    assert store.path == str(tmp_path / "store")


def test_the_cli_reads_a_store_url_the_same_way(tmp_path: Path) -> None:
    """A bad URL gives the CLI's usage exit and the parser's words; an ``lmdb://`` URL and
    the bare directory name the same store."""
    runner = CliRunner()
    bad = runner.invoke(cli.main, ["--store", "redis://localhost", "runs"])
    assert bad.exit_code == cli.EXIT_USAGE, bad.output
    assert "unknown store URL 'redis://localhost'" in bad.stderr
    missing = tmp_path / "missing"
    for given in (str(missing), f"lmdb://{missing}"):
        result = runner.invoke(cli.main, ["--store", given, "runs"])
        assert result.exit_code == cli.EXIT_STORE, result.output
        assert f"no surestep store at {str(missing)!r}" in result.stderr
