"""Cross-process wake-ups of the embedded store: what a killed process leaves is cleaned."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest

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
        assert alive._event.is_set()  # the live listener (this process's: on its loop) woke
        assert [e.name for e in wake.iterdir()] == [alive.name]
        assert _present(socket_path) == []
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        alive.close()
        sender.close()


async def test_a_listener_of_this_process_is_woken_on_its_loop_not_by_a_datagram(
    tmp_path: Path,
) -> None:
    """The writer thread's notify wakes this process's listeners through their loops (a
    datagram to its own process made the loop take the GIL in the middle of the writer's
    system call); other processes still get datagrams."""
    store = str(tmp_path / "store")
    sender = WakeSender(store)
    listener = WakeListener(store)
    try:
        waiting = asyncio.ensure_future(listener.wait(timeout=30.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        await asyncio.to_thread(sender.notify)  # from another thread, as the writer's
        await asyncio.wait_for(waiting, timeout=30.0)
        with pytest.raises(BlockingIOError):
            listener._sock.recv(64)  # no datagram was sent to it
        assert sender.local() == [listener]
    finally:
        listener.close()
        sender.close()
    assert sender.local() == []


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_the_wake_lock_is_held_can_take_it() -> None:
    """A fork while another thread (the writer, waking this process's loops) holds the
    lock of this process's listeners: the child gets a lock of its own, not a copy held
    for ever by a thread it does not have."""
    from surestep.store import wake

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with wake._local_lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit 0 if the lock can be taken
            os._exit(0 if wake._local_lock.acquire(timeout=10) else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join()
    assert os.waitstatus_to_exitcode(status) == 0
