"""Who may use the HTTP surface, and for what: host names, tokens and their scopes.

Kept free of the web framework, so that the CLI can check an address
without importing it.

Scopes: ``read`` (list and show runs, stream their events, wait for results)
and ``act`` (start, cancel, send events), which includes ``read``. A token
given with ``token=`` has the act scope, one given with ``read_token=`` the
read scope. With no token at all every request has the act scope, which the
CLI allows on a loopback address only.
"""

from __future__ import annotations

import hmac
import ipaddress

READ = "read"
ACT = "act"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]`` stays bracketed)."""
    if header.startswith("["):
        return header[: header.find("]") + 1] or header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Access:
    """The access rules of one app.

    ``host``: the address served. On a loopback one, requests must name a
    loopback host (or ``host`` itself), so that a page of another site whose
    name was rebound to 127.0.0.1 cannot reach the API.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        read_token: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._tokens: list[tuple[bytes, str]] = []
        if token:
            self._tokens.append((token.encode(), ACT))
        if read_token:
            self._tokens.append((read_token.encode(), READ))
        self.host = host
        self.loopback = is_loopback(host)

    @property
    def needs_token(self) -> bool:
        return bool(self._tokens)

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request naming ``header`` as its host is answered (see the class)."""
        if not self.loopback:
            return True
        if header is None:
            return False
        name = host_name(header).lower()
        return name in LOOPBACK_NAMES or name == self.host.lower()

    def scope(self, authorization: str | None) -> str | None:
        """The scope a request's ``Authorization`` header grants; ``None``: no valid token.

        Every configured token is compared, in constant time, whatever matched before.
        """
        if not self._tokens:
            return ACT
        scheme, _, value = (authorization or "").partition(" ")
        given = value.strip().encode()
        granted = None
        for token, scope in self._tokens:
            if hmac.compare_digest(given, token) and scheme.lower() == "bearer":
                granted = granted or scope
        return granted
