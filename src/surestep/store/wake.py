"""Cross-process wake-ups for the embedded store, without polling.

Every process that waits on a store binds a Unix datagram socket and
registers it in the store directory (``wake/``, as a symlink to the socket, so
a long store path does not hit the socket path limit). A process that commits
a change worth waking for (a run created, released, finished or cancelled)
sends one byte to every registered socket of another process; a dead
process's entry is removed by the first sender that finds it refused, with the
socket and the private directory it named (a process killed with SIGKILL leaves
them behind).

The listeners of the sending process itself are woken on their event loops, not
by a datagram: the sender is usually the writer thread, and a datagram to its own
process woke the event loop in the middle of the sender's system call, which then
waited for the loop to let go of the GIL before it could tell the loop that the
commit was done (a millisecond or more per notified commit on a lone run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import tempfile
import threading
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


# This process's listeners, by the real path of their store.
_local: dict[str, set[WakeListener]] = {}
_local_lock = threading.Lock()


def _forget_local_in_child() -> None:
    global _local_lock
    _local.clear()  # their loops and sockets are the parent's
    _local_lock = threading.Lock()  # the parent's writer thread may have held it


os.register_at_fork(after_in_child=_forget_local_in_child)


class WakeSender:
    """Used by the writer thread after a commit that others may wait for: ``local()``
    names the listeners of this process to wake on their loops, ``notify_others()``
    wakes the other processes; ``notify()`` does both, from any thread."""

    def __init__(self, store_path: str) -> None:
        self.directory = os.path.join(store_path, "wake")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._key = os.path.realpath(store_path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def local(self) -> list[WakeListener]:
        """The listeners of this process on the store."""
        with _local_lock:
            return list(_local.get(self._key, ()))

    def notify(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        here = self.local()
        for listener in here:
            if listener.loop is running:
                listener.wake()
            else:
                listener.wake_threadsafe()
        self.notify_others(here)

    def notify_others(self, here: list[WakeListener]) -> None:
        """Wake every listener on the store but ``here`` (this process's, woken on their
        loops)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        woken_here = {listener.name for listener in here}
        for name in names:
            if name in woken_here:
                continue  # woken on its loop
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
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self._sock.fileno(), self._readable)
        self._key = os.path.realpath(store_path)
        with _local_lock:
            _local.setdefault(self._key, set()).add(self)

    def wake(self) -> None:
        """Wake it, on its loop's thread."""
        self._event.set()

    def wake_threadsafe(self) -> None:
        """Wake it, from any thread."""
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self._event.set)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self._sock.recv(64)
        self._event.set()

    async def wait(self, timeout: float) -> None:
        await wait_set(self._event, timeout)

    def close(self) -> None:
        with _local_lock:
            listeners = _local.get(self._key)
            if listeners is not None:
                listeners.discard(self)
                if not listeners:
                    del _local[self._key]
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self._sock.fileno())
        self._sock.close()
        for path in (self._entry, self._socket_path):
            with contextlib.suppress(OSError):  # gone already, or a read-only filesystem
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(self._private_dir)
