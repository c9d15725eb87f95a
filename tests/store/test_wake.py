"""Cross-process wake-ups of the embedded store: what a killed process leaves is cleaned."""

from __future__ import annotations

import asyncio
import signal
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

from surestep.store.wake import WakeListener, WakeSender

_LISTEN = """
import asyncio, sys
from surestep.store.wake import WakeListener

async def main():
    listener = WakeListener(sys.argv[1])
    print(listener._socket_path, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def _present(socket_path: Path) -> list[Path]:
    """Which of a listener's socket and private directory exist."""
    return [p for p in (socket_path, socket_path.parent) if p.exists()]


async def test_a_killed_listeners_entry_socket_and_directory_are_removed(tmp_path: Path) -> None:
    """A process killed with SIGKILL cannot unregister: the first notify that finds its
    socket refused removes the entry, the socket and the private directory it lived in,
    and still wakes the listeners that are alive."""
    store = str(tmp_path / "store")
    sender = WakeSender(store)
    alive = WakeListener(store)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _LISTEN, store, stdout=PIPE)
    assert child.stdout is not None
    try:
        socket_path = Path((await child.stdout.readline()).decode().strip())
        assert _present(socket_path) == [socket_path, socket_path.parent]
        wake = Path(store) / "wake"
        assert len(list(wake.iterdir())) == 2
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        sender.notify()
        assert alive._sock.recv(64) == b"!"  # the live listener got its wake-up
        assert [e.name for e in wake.iterdir()] == [alive.name]
        assert _present(socket_path) == []
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        alive.close()
        sender.close()
