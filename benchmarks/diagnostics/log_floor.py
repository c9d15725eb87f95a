"""The premise of a per-process commit log: one device flush against LMDB's two.

    .venv/bin/python benchmarks/diagnostics/log_floor.py --rounds 9

Three kinds of durable commit of one step record, taking turns in blocks of BLOCK (each
kind first in turn) so that all of them meet the disk of the same seconds:

- ``log``: the record, length-framed and checksummed as ``surestep.store.commit_log``
  frames it, written at the end of an append-only segment whose blocks were written
  (zeros) and flushed when it was made, then ``fdatasync``: one flush of data, no
  metadata to journal;
- ``log, fallocated``: the same into a segment reserved with ``posix_fallocate`` only
  (its extents unwritten: the first write into each block changes the file's metadata,
  which ``fdatasync`` must journal too);
- ``lmdb``: one LMDB sync commit of the same record under its step key, with the
  store's options (the data pages, then the meta page: two flushes).

Each round runs twice: ``quiet`` (nothing else writes) and ``applier`` (a background
thread makes an LMDB sync commit of the records logged since its last one, every 5-50
ms at random, into an environment of its own: what the log's applier does off the
critical path). The two phases alternate which goes first from one round to the next.

Per round and phase: the median cycle of each kind and the ratios ``lmdb / log``;
then the medians over rounds. The machine is shared and noisy: read the ratios, not
the microseconds (ratios are taken within one phase of one round, never across). A
diagnostic, not a goal benchmark.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import workloads
from surestep import _core, _lmdb
from surestep.store import commit_log
from surestep.store.base import new_run_id, run_key

STEPS = 1_000
BLOCK = 25
SEGMENT_BYTES = 16 << 20
KINDS = ("log", "log, fallocated", "lmdb")
PHASES = ("quiet", "applier")


SEED = commit_log.log_seed(bytes(16))


class Segment:
    """An append-only file of SEGMENT_BYTES, written with zeros first or only reserved."""

    def __init__(self, directory: str, zeroed: bool) -> None:
        path = os.path.join(directory, f"segment-{'zeroed' if zeroed else 'fallocated'}")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if zeroed:
            zeros = bytes(1 << 20)
            for _ in range(SEGMENT_BYTES >> 20):
                os.write(self.fd, zeros)
        else:
            os.posix_fallocate(self.fd, 0, SEGMENT_BYTES)
        os.fsync(self.fd)
        self.offset = 0

    def commit(self, data: bytes) -> None:
        if self.offset + len(data) > SEGMENT_BYTES:
            self.offset = 0  # the benchmark's segments are large enough; never reached
        os.pwrite(self.fd, data, self.offset)
        os.fdatasync(self.fd)
        self.offset += len(data)

    def close(self) -> None:
        os.close(self.fd)


class Lmdb:
    """One environment with the store's options; a sync commit of one record."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.env: Any = _lmdb.open(directory, **workloads.raw_env_options(True))
        self.db = self.env.open_db(b"journal")
        self.key = run_key(new_run_id())

    def commit(self, items: list[tuple[int, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for seq, record in items:
                txn.put(_core.step_key(self.key, seq), record, db=self.db)

    def close(self) -> None:
        self.env.close()


class Applier:
    """A thread that makes an LMDB sync commit of what was logged since its last one,
    every 5-50 ms (chosen at random each time), until stopped."""

    def __init__(self, directory: str) -> None:
        self.store = Lmdb(directory)
        self.pending: list[tuple[int, bytes]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.commits = 0
        self.thread = threading.Thread(target=self.run, name="applier", daemon=True)

    def add(self, seq: int, record: bytes) -> None:
        with self.lock:
            self.pending.append((seq, record))

    def run(self) -> None:
        rng = random.Random(7)
        while not self.stopping.wait(rng.uniform(0.005, 0.050)):
            with self.lock:
                batch, self.pending = self.pending, []
            self.store.commit(batch or [(0, b"")])
            self.commits += 1

    def __enter__(self) -> Applier:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.store.close()


def one_phase(directory: str, applier: Applier | None) -> dict[str, float]:
    """Median and 90th percentile microseconds per commit of each kind, STEPS of each, in
    turns of BLOCK."""
    log = Segment(directory, zeroed=True)
    fallocated = Segment(directory, zeroed=False)
    lmdb = Lmdb(os.path.join(directory, "lmdb"))
    records = [workloads.sample_record(seq) for seq in range(STEPS)]
    cycles: dict[str, list[float]] = {kind: [] for kind in KINDS}
    clock = time.perf_counter
    try:
        for block, start in enumerate(range(0, STEPS, BLOCK)):
            for kind in KINDS[block % 3 :] + KINDS[: block % 3]:  # each kind first in turn
                for seq in range(start, min(start + BLOCK, STEPS)):
                    record = records[seq]
                    t0 = clock()
                    if kind == "lmdb":
                        lmdb.commit([(seq, record)])
                    else:
                        (log if kind == "log" else fallocated).commit(
                            commit_log.frame(SEED, seq + 1, record)
                        )
                    cycles[kind].append(clock() - t0)
                    if applier is not None and kind == "log":
                        applier.add(seq, record)
    finally:
        log.close()
        fallocated.close()
        lmdb.close()
    out = {kind: statistics.median(values) * 1e6 for kind, values in cycles.items()}
    for kind, values in cycles.items():
        out[f"{kind} p90"] = statistics.quantiles(values, n=10)[-1] * 1e6
    return out


def one_round(first: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for phase in (first, *(p for p in PHASES if p != first)):
        directory = workloads.temp_dir("log-floor")
        try:
            if phase == "quiet":
                out[phase] = one_phase(directory, None)
            else:
                with Applier(os.path.join(directory, "applied")) as applier:
                    out[phase] = one_phase(directory, applier)
                out[phase]["applier commits"] = applier.commits
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    rounds = [one_round(PHASES[i % 2]) for i in range(args.rounds)]
    for i, result in enumerate(rounds, 1):
        cells = "; ".join(
            f"{phase}: " + ", ".join(f"{kind} {result[phase][kind]:.0f}" for kind in KINDS)
            for phase in PHASES
        )
        print(f"round {i}: {cells} us (applier commits {result['applier']['applier commits']:.0f})")
    print()
    print(
        "| phase | kind | median us (min..max over rounds) | lmdb / kind, medians "
        "| p90 us | lmdb / kind, p90s |"
    )
    print("|---|---|---|---|---|---|")
    for phase in PHASES:
        for kind in KINDS:
            values = [r[phase][kind] for r in rounds]
            ratios = [r[phase]["lmdb"] / r[phase][kind] for r in rounds]
            p90s = [r[phase][f"{kind} p90"] for r in rounds]
            p90_ratios = [r[phase]["lmdb p90"] / r[phase][f"{kind} p90"] for r in rounds]
            print(
                f"| {phase} | {kind} | {statistics.median(values):.0f} "
                f"({min(values):.0f}..{max(values):.0f}) | {_spread(ratios)} "
                f"| {statistics.median(p90s):.0f} | {_spread(p90_ratios)} |"
            )


def _spread(ratios: list[float]) -> str:
    """The median of the rounds' ratios, with their range."""
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"


if __name__ == "__main__":
    main()
