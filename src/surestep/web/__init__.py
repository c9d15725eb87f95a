"""The dashboard served by ``surestep ui``: a JSON API and a single-page UI (no build step).

See :mod:`surestep.web.server` for the API and its security model,
:mod:`surestep.web.http` for the HTTP/1.1 server it runs on.
"""

from __future__ import annotations

from .server import Dashboard

__all__ = ["Dashboard"]
