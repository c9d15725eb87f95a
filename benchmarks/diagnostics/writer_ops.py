"""Where the LMDB writer thread's time goes during 1,000 x 10 (fsync): wall time per
op kind inside the group commits (the appends per run of them, applied in one compiled
call), and of their transactions' begin and commit, against the whole commits; and
the CPU time of the loop thread and of the writer thread (Linux: /proc).

    .venv/bin/python benchmarks/diagnostics/writer_ops.py --rounds 3

A diagnostic (it wraps ``Env._commit`` and the ops), not a goal benchmark.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import workloads
from surestep.store import lmdb_env


def thread_cpu(native_id: int) -> float:
    """Seconds of CPU (user + system) the thread has used; 0 where /proc has none."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    op_time: collections.Counter[str] = collections.Counter()
    op_count: collections.Counter[str] = collections.Counter()
    commits: list[float] = []
    txn_time: collections.Counter[str] = collections.Counter()  # begin, commit
    commit, append_run = lmdb_env.Env._commit, lmdb_env.Env._append_run

    class TimedTxn:
        def __init__(self, txn: Any) -> None:
            self._txn = txn

        def commit(self) -> None:
            started = time.perf_counter()
            try:
                self._txn.commit()
            finally:
                txn_time["commit"] += time.perf_counter() - started

        def __getattr__(self, name: str) -> Any:
            return getattr(self._txn, name)

    class TimedEnv:
        def __init__(self, env: Any) -> None:
            self._env = env

        def begin(self, **kwargs: Any) -> Any:
            if not kwargs.get("write"):  # a read on the loop's thread: not the writer's time
                return self._env.begin(**kwargs)
            started = time.perf_counter()
            txn = self._env.begin(**kwargs)
            txn_time["begin"] += time.perf_counter() - started
            return TimedTxn(txn)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._env, name)

    def timed_op(op: Any) -> Any:
        if type(op) is lmdb_env.Append:
            return op  # timed by the run it is applied in (timed_append_run)
        name = getattr(op, "__qualname__", "?").replace(".<locals>.op", "")

        def run(txn: Any) -> Any:
            started = time.perf_counter()
            try:
                return op(txn)
            finally:
                op_time[name] += time.perf_counter() - started
                op_count[name] += 1

        return run

    def timed_append_run(self: Any, txn: Any, batch: list[Any], start: int, *rest: Any) -> Any:
        started = time.perf_counter()
        end = append_run(self, txn, batch, start, *rest)
        op_time["LmdbStore.append"] += time.perf_counter() - started
        op_count["LmdbStore.append"] += end - start
        return end

    def timed_commit(self: Any, batch: list[Any]) -> Any:
        started = time.perf_counter()
        env, self.env = self.env, TimedEnv(self.env)
        try:
            return commit(self, [timed_op(op) for op in batch])
        finally:
            self.env = env
            commits.append(time.perf_counter() - started)

    lmdb_env.Env._commit = timed_commit  # type: ignore[method-assign]
    lmdb_env.Env._append_run = timed_append_run  # type: ignore[method-assign]
    loop = workloads.new_loop()
    for _ in range(rounds):
        work = workloads.ConcurrentSteps(loop)
        work.setup()
        writers = [t.native_id for t in threading.enumerate() if t.name == "surestep-writer"]
        op_time.clear(), op_count.clear(), commits.clear(), txn_time.clear()
        writer_cpu = sum(thread_cpu(w) for w in writers if w is not None)
        wall, cpu = time.perf_counter(), time.thread_time()
        work.measured()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        writer_cpu = sum(thread_cpu(w) for w in writers if w is not None) - writer_cpu
        work.teardown()
        print(
            f"wall {wall * 1e3:.0f} ms, CPU of the loop thread {cpu * 1e3:.0f} ms and of the "
            f"writer {writer_cpu * 1e3:.0f} ms; {len(commits)} commits taking "
            f"{sum(commits) * 1e3:.0f} ms, ops inside them {sum(op_time.values()) * 1e3:.0f} ms; "
            f"the transactions' begin {txn_time['begin'] * 1e3:.0f} ms, "
            f"commit {txn_time['commit'] * 1e3:.0f} ms"
        )
        for name, spent in op_time.most_common():
            n = op_count[name]
            print(f"    {name:32s} {n:6d} x {spent / n * 1e6:6.1f} us = {spent * 1e3:5.0f} ms")


if __name__ == "__main__":
    main()
