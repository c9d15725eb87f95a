"""The dashboard served by ``surestep ui``: a JSON API and a single-page UI (no build step).

See :mod:`surestep.web.server` for the API and its security model,
:mod:`surestep.web.http` for the HTTP/1.1 server it runs on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Dashboard

__all__ = ["Dashboard"]


def __getattr__(name: str) -> Any:
    # On first use: the CLI imports surestep.web.views and must not start the server's imports.
    if name != "Dashboard":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(f"{__name__}.server").Dashboard
    globals()[name] = value
    return value
