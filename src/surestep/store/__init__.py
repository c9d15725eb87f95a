"""Store backends behind one contract (:class:`~surestep.store.base.Store`), chosen by URL.

``".surestep"``, ``"/some/dir"`` or ``"lmdb:///some/dir"``: the embedded LMDB store.
``"postgresql://..."``: the shared PostgreSQL store (``pip install surestep[postgres]``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Literal, NamedTuple

from ..errors import ConfigurationError
from .base import Store


class StoreLocation(NamedTuple):
    """Where a store is: its backend, and the LMDB directory or the PostgreSQL URL."""

    backend: Literal["lmdb", "postgres"]
    target: str


def parse_store_url(location: str | os.PathLike[str]) -> StoreLocation:
    """The backend and target of a store location, the one reading of a store URL:
    a directory or ``lmdb://DIR`` is LMDB at DIR; ``postgresql://...`` or
    ``postgres://...`` is PostgreSQL at that URL. ``ConfigurationError`` for any other
    URL (a scheme followed by ``://``)."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        return StoreLocation("postgres", text)
    if text.startswith("lmdb://"):
        return StoreLocation("lmdb", text[len("lmdb://") :])
    if "://" in text:
        raise ConfigurationError(
            f"unknown store URL {text!r}: use a directory, lmdb:///path or postgresql://..."
        )
    return StoreLocation("lmdb", text)


def open_store(location: str | os.PathLike[str], **options: Any) -> Store:
    """The backend for ``location`` (not yet opened: ``await store.open()``)."""
    backend, target = parse_store_url(location)
    if backend == "postgres":
        try:
            from .postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise ConfigurationError(
                "the PostgreSQL store needs the asyncpg driver: pip install 'surestep[postgres]'"
            ) from None
        return PostgresStore(target, **_known(PostgresStore, "PostgreSQL", options))
    from .lmdb import LmdbStore

    return LmdbStore(target, **_known(LmdbStore, "LMDB", options))


def _known(backend: type[Store], name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options``, refused with a typed error if the backend does not take one of them
    (an LMDB option such as ``map_size`` given with a PostgreSQL URL, say)."""
    unknown = sorted(set(options) - set(inspect.signature(backend).parameters))
    if unknown:
        raise ConfigurationError(
            f"the {name} store takes no option {', '.join(map(repr, unknown))}"
        )
    return options


__all__ = ["Store", "StoreLocation", "open_store", "parse_store_url"]
