"""The HTTP surface: a JSON API, Server-Sent Events and the dashboard, as one ASGI app.

:func:`create_app` (in :mod:`surestep.web.app`) builds it over an engine;
``surestep serve`` and ``surestep ui`` run it under uvicorn
(:mod:`surestep.web.serve`). :mod:`surestep.web.access` decides who may use it.
The web framework is imported on first use of :func:`create_app`, so that
importing this package (as the CLI does) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
