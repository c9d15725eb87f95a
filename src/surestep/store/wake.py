"""Cross-process wake-ups for the embedded store, without polling.

Every process that waits on a store binds a Unix datagram socket and
registers it in the store directory (``wake/``, as a symlink to the socket, so
a long store path does not hit the socket path limit). A process that commits
a change worth waking for (a run created, released, finished or cancelled)
sends one byte to every registered socket; a dead process's entry is
removed by the first sender that finds it refused, with the socket and the
private directory it named (a process killed with SIGKILL leaves them behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import tempfile
import uuid

from .base import wait_set


def _prefix(pid: int) -> str:
    return f"ssw-{pid}-"


def others_registered(store_path: str) -> bool:
    """Whether any other process has the store open (registered here, or not cleaned up
    yet after it died). Unreadable: assume so."""
    mine = _prefix(os.getpid())
    try:
        return any(
            not name.startswith(mine) for name in os.listdir(os.path.join(store_path, "wake"))
        )
    except OSError:
        return True


class WakeSender:
    """Used by the writer thread after a commit that others may wait for."""

    def __init__(self, store_path: str) -> None:
        self.directory = os.path.join(store_path, "wake")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def notify(self) -> None:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            entry = os.path.join(self.directory, name)
            try:
                self._sock.sendto(b"!", entry)
            except BlockingIOError:
                pass  # its queue is full: it has a wake-up pending already
            except (ConnectionRefusedError, FileNotFoundError):
                _remove_dead(entry)  # nobody listens there any more
            except OSError:
                pass

    def close(self) -> None:
        self._sock.close()


def _remove_dead(entry: str) -> None:
    """Remove a registration nobody listens to, and the socket and directory it names
    when they are what ``WakeListener`` made (a socket ``s`` of this user alone in an
    ``ssw-`` directory): nothing else is ever removed through a link."""
    try:
        target: str | None = os.readlink(entry)
    except OSError:
        target = None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(entry)
    if target is None:
        return
    folder, name = os.path.split(target)
    try:
        info = os.lstat(target)
    except OSError:
        return
    if (
        name == "s"
        and os.path.basename(folder).startswith("ssw-")
        and stat.S_ISSOCK(info.st_mode)
        and info.st_uid == os.getuid()
    ):
        with contextlib.suppress(OSError):
            os.unlink(target)
            os.rmdir(folder)  # only if empty


class WakeListener:
    """One per store instance that waits; lives on one event loop."""

    def __init__(self, store_path: str) -> None:
        self.name = _prefix(os.getpid()) + uuid.uuid4().hex[:8]
        # In a directory only this user can enter (mkdtemp: 0700), so no other local
        # user can reach the socket whatever the umask; short, for the socket path limit.
        self._private_dir = tempfile.mkdtemp(prefix="ssw-")
        self._socket_path = os.path.join(self._private_dir, "s")
        self._entry = os.path.join(store_path, "wake", self.name)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(self._socket_path)
        os.symlink(self._socket_path, self._entry)
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self._sock.recv(64)
        self._event.set()

    async def wait(self, timeout: float) -> None:
        await wait_set(self._event, timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for path in (self._entry, self._socket_path):
            with contextlib.suppress(OSError):  # gone already, or a read-only filesystem
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(self._private_dir)
