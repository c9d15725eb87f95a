"""Where the LMDB writer thread's time goes during 1,000 x 10 (fsync): wall time per
op kind inside the group commits, and of their transactions' begin and commit, against
the whole commits and the loop thread's CPU.

    .venv/bin/python benchmarks/writer_ops.py --rounds 3

A diagnostic (it wraps ``_Env._commit`` and every op), not a goal benchmark.
"""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any

import workloads
from surestep.store import lmdb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    op_time: collections.Counter[str] = collections.Counter()
    op_count: collections.Counter[str] = collections.Counter()
    commits: list[float] = []
    txn_time: collections.Counter[str] = collections.Counter()  # begin, commit
    commit = lmdb._Env._commit

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
            started = time.perf_counter()
            txn = self._env.begin(**kwargs)
            txn_time["begin"] += time.perf_counter() - started
            return TimedTxn(txn)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._env, name)

    def timed_op(op: Any) -> Any:
        name = getattr(op, "__qualname__", "?").replace(".<locals>.op", "")

        def run(txn: Any) -> Any:
            started = time.perf_counter()
            try:
                return op(txn)
            finally:
                op_time[name] += time.perf_counter() - started
                op_count[name] += 1

        return run

    def timed_commit(self: Any, batch: list[Any]) -> Any:
        started = time.perf_counter()
        env, self.env = self.env, TimedEnv(self.env)
        try:
            return commit(self, [(timed_op(op), *rest) for op, *rest in batch])
        finally:
            self.env = env
            commits.append(time.perf_counter() - started)

    lmdb._Env._commit = timed_commit  # type: ignore[method-assign]
    loop = workloads.new_loop()
    for _ in range(rounds):
        work = workloads.ConcurrentSteps(loop)
        work.setup()
        op_time.clear(), op_count.clear(), commits.clear(), txn_time.clear()
        wall, cpu = time.perf_counter(), time.thread_time()
        work.measured()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        work.teardown()
        print(
            f"wall {wall * 1e3:.0f} ms, loop thread CPU {cpu * 1e3:.0f} ms, "
            f"{len(commits)} commits taking {sum(commits) * 1e3:.0f} ms, "
            f"ops inside them {sum(op_time.values()) * 1e3:.0f} ms; the transactions' "
            f"begin {txn_time['begin'] * 1e3:.0f} ms, commit {txn_time['commit'] * 1e3:.0f} ms"
        )
        for name, spent in op_time.most_common():
            n = op_count[name]
            print(f"    {name:32s} {n:6d} x {spent / n * 1e6:6.1f} us = {spent * 1e3:5.0f} ms")


if __name__ == "__main__":
    main()
