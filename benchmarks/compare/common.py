"""What ``compare.py`` and ``workers.py`` share: checks, temporary directories, and the
raw flush that every durable commit on this machine waits for at least once."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time


class CheckError(AssertionError):
    """A measured workload did not do what it should have."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise CheckError(what)


def temp_dir(tag: str) -> str:
    """A new directory under ``$SURESTEP_BENCH_DIR`` when set, else the system's temp dir."""
    return tempfile.mkdtemp(prefix=f"surestep-{tag}-", dir=os.environ.get("SURESTEP_BENCH_DIR"))


def raw_flush_ms(n: int = 100) -> float:
    """Median milliseconds of one ``fdatasync`` after a 4 KiB write, in a fresh file
    where the stores go: the floor of any commit that waits for the disk."""
    path = temp_dir("flush")
    times = []
    try:
        fd = os.open(os.path.join(path, "f"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for i in range(n):
                os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
                started = time.perf_counter()
                os.fdatasync(fd)
                times.append(time.perf_counter() - started)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return statistics.median(times) * 1e3
