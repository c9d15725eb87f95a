"""Store backends behind one contract (:class:`~surestep.store.base.Store`), chosen by URL.

``".surestep"``, ``"/some/dir"`` or ``"lmdb:///some/dir"``: the embedded LMDB store.
``"postgresql://..."``: the shared PostgreSQL store (``pip install surestep[postgres]``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from ..errors import ConfigurationError
from .base import Store


def open_store(location: str | os.PathLike[str], **options: Any) -> Store:
    """The backend for ``location`` (not yet opened: ``await store.open()``)."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            raise ConfigurationError(
                "the PostgreSQL store needs the asyncpg driver: pip install 'surestep[postgres]'"
            ) from None
        return PostgresStore(text, **_known(PostgresStore, "PostgreSQL", options))
    if text.startswith("lmdb://"):
        text = text[len("lmdb://") :]
    elif "://" in text:
        raise ConfigurationError(
            f"unknown store URL {text!r}: use a directory, lmdb:///path or postgresql://..."
        )
    from .lmdb import LmdbStore

    return LmdbStore(text, **_known(LmdbStore, "LMDB", options))


def _known(backend: type[Store], name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options``, refused with a typed error if the backend does not take one of them
    (an LMDB option such as ``map_size`` given with a PostgreSQL URL, say)."""
    unknown = sorted(set(options) - set(inspect.signature(backend).parameters))
    if unknown:
        raise ConfigurationError(
            f"the {name} store takes no option {', '.join(map(repr, unknown))}"
        )
    return options


__all__ = ["Store", "open_store"]
