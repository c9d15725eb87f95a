"""What a power cut would leave of the commit log's files, at any point of its life.

``PowerCutFiles`` stands between the commit log and the disk (``commit_log.Files``): it
makes every operation for real and keeps, beside it, a model of what the device holds
for sure. A file's bytes are sure once ``fdatasync`` of that file returned; a name
(created, renamed, removed) once ``fsync`` of its directory returned. Everything else
is *pending*: after a power cut any of it may or may not be there. Writes are kept or
lost per 512-byte sector (a sector is written whole or not at all; sectors of one write
may land in any order), names in the order they were made (a journaling filesystem
commits its metadata in order).

``snapshot()`` after each operation records the model, and ``Image(snapshot, rng)``
is one state the device could be in after a cut there: the sure part, plus a random
choice of the pending sectors and a random prefix of the pending names. An image is a
``Files`` that the log's reader (``read_records``) reads from.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from surestep.store.commit_log import Files

SECTOR = 512


@dataclass
class Snapshot:
    sure: dict[int, bytes]  # inode -> the file's bytes as of its last flush
    pending: dict[int, list[tuple[int, bytes]]]  # inode -> writes since, in order
    names: dict[str, int]  # path -> inode, as of the last flush of its directory
    name_ops: list[tuple[str, int | None]]  # (path, inode or None: removed) since, in order


class PowerCutFiles(Files):
    def __init__(self, on_op: Callable[[], None] | None = None) -> None:
        self.on_op = on_op
        # Each operation and its bookkeeping at once, whichever thread makes it (the
        # log's, the event loop's, the writer's); ``on_op`` runs under it too.
        self.lock = threading.RLock()
        self._next_inode = 0
        self._inode_of_fd: dict[int, int] = {}
        self._sure: dict[int, bytearray] = {}
        self._pending: dict[int, list[tuple[int, bytes]]] = {}
        self._live_names: dict[str, int] = {}
        self._sure_names: dict[str, int] = {}
        self._name_ops: list[tuple[str, int | None]] = []

    def _done(self) -> None:
        if self.on_op is not None:
            self.on_op()

    def _inode(self, path: str) -> int:
        inode = self._live_names.get(path)
        if inode is None:  # a file made before the shim was in place: sure as it is
            inode = self._next_inode = self._next_inode + 1
            self._sure[inode] = bytearray(super().read(path))
            self._pending[inode] = []
            self._live_names[path] = self._sure_names[path] = inode
        return inode

    def open(self, path: str, create: bool = False) -> int:
        with self.lock:
            fd = super().open(path, create)
            if create:
                inode = self._next_inode = self._next_inode + 1
                self._sure[inode], self._pending[inode] = bytearray(), []
                self._live_names[path] = inode
                self._name_ops.append((path, inode))
            else:
                inode = self._inode(path)
            self._inode_of_fd[fd] = inode
            self._done()
            return fd

    def close(self, fd: int) -> None:
        with self.lock:
            super().close(fd)
            del self._inode_of_fd[fd]

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
        with self.lock:
            super().pwrite(fd, data, offset)
            self._pending[self._inode_of_fd[fd]].append((offset, bytes(data)))
            self._done()

    def fdatasync(self, fd: int) -> None:
        with self.lock:
            super().fdatasync(fd)
            inode = self._inode_of_fd[fd]
            content = self._sure[inode]
            for offset, data in self._pending[inode]:
                _put(content, offset, data)
            self._pending[inode] = []
            self._done()

    def fsync_dir(self, path: str) -> None:
        with self.lock:
            super().fsync_dir(path)
            kept = []
            for name, inode in self._name_ops:
                if os.path.dirname(name) != path:
                    kept.append((name, inode))
                elif inode is None:
                    self._sure_names.pop(name, None)
                else:
                    self._sure_names[name] = inode
            self._name_ops = kept
            self._done()

    def rename(self, src: str, dst: str) -> None:
        with self.lock:
            super().rename(src, dst)
            inode = self._live_names.pop(src)
            self._live_names[dst] = inode
            self._name_ops += [(src, None), (dst, inode)]
            self._done()

    def unlink(self, path: str) -> None:
        with self.lock:
            super().unlink(path)
            self._live_names.pop(path, None)
            self._name_ops.append((path, None))
            self._done()

    def snapshot(self) -> Snapshot:
        with self.lock:
            return Snapshot(
                {inode: bytes(content) for inode, content in self._sure.items()},
                {inode: list(writes) for inode, writes in self._pending.items() if writes},
                dict(self._sure_names),
                list(self._name_ops),
            )


class Image(Files):
    """One state the device may be in after a power cut at ``snapshot``: read-only."""

    def __init__(self, snapshot: Snapshot, rng: random.Random, keep: float | None = None) -> None:
        """``keep``: the chance that each pending sector and name survives (random per
        image when None); 0 and 1 give the two extremes."""
        chance = rng.random() if keep is None else keep
        names = dict(snapshot.names)
        for path, inode in snapshot.name_ops:
            if rng.random() >= chance:
                break  # names are made in order: the first lost one ends them
            if inode is None:
                names.pop(path, None)
            else:
                names[path] = inode
        self.files: dict[str, bytes] = {}
        for path, inode in names.items():
            content = bytearray(snapshot.sure[inode])
            for offset, data in snapshot.pending.get(inode, []):
                start = 0
                while start < len(data):  # whole sectors of the device, each kept or not
                    end = min(len(data), (offset + start) // SECTOR * SECTOR + SECTOR - offset)
                    if rng.random() < chance:
                        _put(content, offset + start, data[start:end])
                    start = end
            self.files[path] = bytes(content)

    def read(self, path: str) -> bytes:
        return self.files[path]

    def listdir(self, path: str) -> list[str]:
        return [os.path.basename(name) for name in self.files if os.path.dirname(name) == path]


def _put(content: bytearray, offset: int, data: bytes) -> None:
    if len(content) < offset:
        content.extend(bytes(offset - len(content)))
    content[offset : offset + len(data)] = data
