"""A private PostgreSQL server for the tests (a real server, not a mock).

``PgServer`` runs Debian's server binaries (``initdb``, ``pg_ctl``) on a fresh
data directory in a temporary directory, listening on a free TCP port of
127.0.0.1 only (no Unix socket), with trust authentication for the
``postgres`` user, and PostgreSQL's default fsync settings. PostgreSQL refuses
to run as root: as root, the binaries run as the ``postgres`` system user
(created by Debian's ``postgresql`` package) through ``runuser``, and the
temporary directory is handed to that user.

    with PgServer() as server:
        url = server.url   # postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

INSTALL_HINT = (
    "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found: install Debian's "
    "'postgresql' package (apt-get install postgresql), or set SURESTEP_SKIP_POSTGRES=1 to skip "
    "the PostgreSQL tests"
)
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")


class PgServerMissingError(RuntimeError):
    """The server binaries are not installed."""


def _has_server(bindir: str) -> bool:
    return all(os.access(os.path.join(bindir, b), os.X_OK) for b in SERVER_BINARIES)


def find_bindir() -> str:
    """The directory of the server binaries: ``pg_config --bindir``, else the
    newest ``/usr/lib/postgresql/*/bin`` (Debian keeps them off ``PATH``)."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            candidates.append(out.stdout.strip())

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for bindir in candidates:
        if bindir and _has_server(bindir):
            return bindir
    raise PgServerMissingError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    """One throw-away server; :meth:`start` returns its URL, :meth:`stop` removes it."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = 0
        self.tmp = ""
        self.data = ""
        self.logfile = ""
        self._prefix: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PgServerMissingError(
                    "running as root, and there is no 'postgres' system user to run the server "
                    "as (Debian's 'postgresql' package creates it)"
                ) from None
            runuser = shutil.which("runuser")
            if runuser:
                self._prefix = [runuser, "-u", "postgres", "--"]
            else:
                self._prefix = ["su", "postgres", "-s", "/bin/sh", "-c", '"$0" "$@"']

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def tool(self, binary: str, *args: str, timeout: float = 60) -> str:
        """Run one of the server's programs (``pg_dump``, ``psql``...) as the server's user;
        what it printed."""
        return self._run(binary, *args, timeout=timeout)

    def _run(self, binary: str, *args: str, timeout: float = 60) -> str:
        cmd = [*self._prefix, os.path.join(self.bindir, binary), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.tmp)
        if out.returncode != 0:
            raise RuntimeError(
                f"{binary} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
                f"{self._log_tail()}"
            )
        return out.stdout

    def _log_tail(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return "\nserver log:\n" + "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def _base_dir(self) -> str | None:
        """Where to make the temporary directory: the usual place, unless the
        server's user could not reach it (a TMPDIR under root's home, say)."""
        base = tempfile.gettempdir()
        if self._owner is None:
            return None
        path = os.path.realpath(base)
        while True:
            if not os.stat(path).st_mode & 0o001:
                return os.path.join(os.sep, "tmp")  # world-traversable on every POSIX system
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent

    def start(self) -> str:
        self.tmp = tempfile.mkdtemp(prefix="surestep-pg-", dir=self._base_dir())
        if self._owner is not None:
            os.chown(self.tmp, self._owner.pw_uid, self._owner.pw_gid)
        self.data = os.path.join(self.tmp, "data")
        self.logfile = os.path.join(self.tmp, "server.log")
        try:
            self._run(
                "initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            for attempt in range(3):
                self.port = free_port()
                with open(
                    os.path.join(self.data, "postgresql.auto.conf"), "a", encoding="utf-8"
                ) as f:
                    f.write(
                        f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                        "unix_socket_directories = ''\nmax_connections = 200\n"
                    )
                try:
                    self._start()
                    break
                except RuntimeError:  # another process took the port in between: try another
                    if attempt == 2:
                        raise
        except BaseException:
            self.remove()
            raise
        return self.url

    def _start(self) -> None:
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "start", timeout=90
        )

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again on the same port and data."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop", timeout=90)
        self._start()

    def stop(self) -> None:
        if self.data and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self._run(
                    "pg_ctl",
                    "-D",
                    self.data,
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "60",
                    "stop",
                    timeout=90,
                )
        self.remove()

    def remove(self) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = ""

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
