"""The goal workloads, shared by the pytest-benchmark files and ``run_goals.py``.

Each workload has three phases, so that pytest-benchmark (``benchmark.pedantic``
with a setup and a teardown) and ``run_goals.py`` time exactly the same region:

``setup()``      a fresh store, and the workload's *baseline* measured right
                 there, in the same process and on the same kind of directory,
                 so every figure comes with a ratio taken in the same run;
``measured()``   the timed region, nothing else;
``teardown()``   checks that what was measured was correct (the workflow's result,
                 the journal's length and contents, that replay ran no step body),
                 then closes the engine and removes the store.

Everything runs on uvloop, the loop the product uses. Stores go under
``$SURESTEP_BENCH_DIR`` when set (to compare a tmpfs with a disk), else under the
system's temporary directory.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from flows import chain, chain_then_park, inc, reset_state, state, step_park_step
from surestep import Engine, RunHandle, _core, _lmdb
from surestep.store.base import new_run_id, run_key
from surestep.store.lmdb_env import WRITEMAP, rewrites_in_place

SEQ_STEPS = 1_000
CONC_RUNS, CONC_STEPS = 1_000, 10
SHORT_CLIENTS, SHORT_ROUNDS = 1_000, 5
REPLAY_STEPS = 10_000
RECOVERY_RUNS = 10_000
PARKED_RUNS = 10_000


@functools.cache
def _writemap() -> bool:
    """Whether the store writes through a map in the benchmarks' directory (as it decides:
    on Linux, not on a copy-on-write filesystem)."""
    if not WRITEMAP:
        return False
    fd = os.open(os.environ.get("SURESTEP_BENCH_DIR") or tempfile.gettempdir(), os.O_RDONLY)
    try:
        return rewrites_in_place(fd)
    finally:
        os.close(fd)


def raw_env_options(sync: bool) -> dict[str, Any]:
    """The options ``surestep.store.lmdb`` opens its environment with, for raw baselines
    (a map large enough from the start: the baselines do not grow it)."""
    return {
        "map_size": 1 << 30,
        "writemap": _writemap(),
        "max_dbs": 8,
        "sync": sync,
        "metasync": sync,
        "readahead": False,
        "max_readers": 1024,
        "mode": 0o600,
    }


class BenchmarkCheckError(AssertionError):
    """A benchmark measured something that was not correct."""


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchmarkCheckError(what)


def new_loop() -> asyncio.AbstractEventLoop:
    import uvloop

    return uvloop.new_event_loop()


def temp_dir(tag: str) -> str:
    return tempfile.mkdtemp(
        prefix=f"surestep-bench-{tag}-", dir=os.environ.get("SURESTEP_BENCH_DIR")
    )


def sample_record(seq: int) -> bytes:
    """A record shaped like the engine's record of ``ctx.step(inc, x)``."""
    now = time.time()
    return _core.encode_record(
        _core.KIND_STEP, seq, 1, "bench.inc", None, b"[[%d],{}]" % seq, b"%d" % (seq + 1), True,
        now, now,
    )  # fmt: skip


def raw_commits(n: int, sync: bool) -> tuple[float, float]:
    """Seconds per transaction that puts one step record and commits (sync or not):
    the mean over ``n`` transactions, and the median of the individual ones."""
    marks = raw_commit_marks(n, sync)
    return (marks[n] - marks[0]) / n, median(cycles(marks))


def raw_log_flushes(n: int) -> tuple[float, float]:
    """Seconds per append of one step record to a file written with zeros beforehand,
    each followed by ``fdatasync``: the one device flush a commit log needs per durable
    step. The mean over ``n`` appends, and the median of the individual ones."""
    path = temp_dir("rawlog")
    records = [sample_record(seq) for seq in range(n)]
    fd = os.open(os.path.join(path, "segment"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, bytes(sum(len(r) + 32 for r in records)))  # frame headers' worth more
        os.fsync(fd)
        marks = [0.0] * (n + 1)
        clock = time.perf_counter
        offset = 0
        for i, record in enumerate(records):
            marks[i] = clock()
            offset += os.pwrite(fd, record, offset)
            os.fdatasync(fd)
        marks[n] = clock()
    finally:
        os.close(fd)
        shutil.rmtree(path)
    return (marks[n] - marks[0]) / n, median(cycles(marks))


def raw_commit_marks(n: int, sync: bool) -> list[float]:
    """``n`` transactions in a row, each putting one step record and committing (sync or
    not), in a raw environment of their own: the clock before each, and after the last."""
    path = temp_dir("raw")
    env = _lmdb.open(path, **raw_env_options(sync))
    try:
        db = env.open_db(b"journal")
        key = run_key(new_run_id())
        items = [(_core.step_key(key, seq), sample_record(seq)) for seq in range(n)]
        marks = [0.0] * (n + 1)
        clock = time.perf_counter
        for i, (k, v) in enumerate(items):
            marks[i] = clock()
            with env.begin(write=True) as txn:
                txn.put(k, v, db=db)
        marks[n] = clock()
        with env.begin() as txn:
            check(txn.stat(db)["entries"] == n, "raw baseline: every record committed")
    finally:
        env.close()
        shutil.rmtree(path)
    return marks


def cycles(marks: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(marks)]


def raw_group_commits(runs: int, steps: int, layout: str) -> float:
    """Seconds per record when ``runs`` records share each sync commit, ``steps`` commits.

    ``layout="run"`` keys records as the journal does (run key + seq), so one commit
    dirties pages all over the tree; ``"append"`` keys them by a global counter, as an
    append-ordered journal would, so one commit dirties the tail pages only.
    """
    path = temp_dir("rawgroup")
    env = _lmdb.open(path, **raw_env_options(True))
    try:
        db = env.open_db(b"journal")
        keys = [run_key(new_run_id()) for _ in range(runs)]
        record = sample_record(0)
        batches = []
        counter = 0
        for seq in range(steps):
            batch = []
            for key in keys:
                k = _core.step_key(key, seq) if layout == "run" else counter.to_bytes(8, "big")
                batch.append((k, record))
                counter += 1
            batches.append(batch)
        started = time.perf_counter()
        for batch in batches:
            with env.begin(write=True) as txn:
                for k, v in batch:
                    txn.put(k, v, db=db)
        elapsed = time.perf_counter() - started
        with env.begin() as txn:
            check(txn.stat(db)["entries"] == runs * steps, "raw group baseline: all committed")
    finally:
        env.close()
        shutil.rmtree(path)
    return elapsed / (runs * steps)


async def plain_awaits(n: int) -> float:
    """Seconds per ``await inc(x)`` without the engine."""
    x = 0
    started = time.perf_counter()
    for _ in range(n):
        x = await inc(x)
    elapsed = time.perf_counter() - started
    check(x == n, "plain await: result")
    return elapsed / n


def store_commits(path: str) -> int:
    """Write transactions committed in a closed store (LMDB's last transaction id;
    the first few created the store's named databases)."""
    env = _lmdb.open(path, readonly=True, **raw_env_options(False))
    try:
        commits: int = env.info()["last_txnid"]
    finally:
        env.close()
    return commits


# -- workloads


class Workload:
    """One measured workload; see the module docstring for the phases."""

    name = ""
    unit = "step"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirs: list[str] = []
        self.engine: Engine | None = None
        self.base: dict[str, float] = {}
        self.done = False

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def tmp(self, tag: str) -> str:
        path = temp_dir(tag)
        self.dirs.append(path)
        return path

    def open_engine(self, path: str, durability: str = "fsync", **options: Any) -> Engine:
        self.engine = Engine(path, durability=durability, **options)
        self.run(self.engine.open())
        return self.engine

    def setup(self) -> None:
        raise NotImplementedError

    def measured(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.check()
            self.close_engine()
            self.after_close()
        finally:
            self.cleanup()

    def after_close(self) -> None:
        """Checks that read the store's files once the engine has let go of them."""

    def close_engine(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            self.run(engine.close())

    def cleanup(self) -> None:
        self.close_engine()
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        self.dirs.clear()

    def figures(self, elapsed: float) -> dict[str, float]:
        """The goal's figure and its ratio to the baseline, from one round's time."""
        raise NotImplementedError


class SequentialSteps(Workload):
    """One run of ``SEQ_STEPS`` sequential steps (1,002 commits: start, steps, finish).

    Baselines: ``fsync``: one raw LMDB sync commit of one step record (same options,
    same key layout, fresh directory beside the store). ``process``: a plain ``await``
    of the same function, and one raw LMDB commit without sync.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        durability: str,
        steps: int = SEQ_STEPS,
        commit: str = "lmdb",
    ):
        super().__init__(loop)
        self.durability = durability
        self.steps = steps
        self.commit = commit
        self.name = "sequential_log" if commit == "log" else f"sequential_{durability}"

    def setup(self) -> None:
        mean, typical = raw_commits(self.steps, sync=self.durability == "fsync")
        self.base = {"raw_commit": mean, "raw_commit_median": typical}
        if self.commit == "log":  # the step's floor is then one flush of the log
            self.base["raw_lmdb_median"] = typical
            mean, typical = raw_log_flushes(self.steps)
            self.base.update(raw_commit=mean, raw_commit_median=typical)
        if self.durability == "process":
            self.base["plain_await"] = self.run(plain_awaits(self.steps))
        self.path = self.tmp("seq")
        self.open_engine(self.path, self.durability, commit=self.commit)

    def measured(self) -> None:
        loop_cpu = time.thread_time()
        self.result, self.run_id = self.run(self._go())
        self.loop_cpu = time.thread_time() - loop_cpu

    async def _go(self) -> tuple[Any, str]:
        assert self.engine is not None
        handle = await self.engine.start(chain, self.steps)
        return await handle.result(), handle.run_id

    def check(self) -> None:
        assert self.engine is not None
        check(self.result == self.steps, f"chain({self.steps}) returned {self.result!r}")
        journal = self.run(self.engine.journal(self.run_id))
        check(len(journal) == self.steps, f"journal has {len(journal)} steps, not {self.steps}")
        check(
            [(e.seq, e.output) for e in journal] == [(i, i + 1) for i in range(self.steps)],
            "journal holds every step's output in order",
        )
        # Each step starts right after the previous one's commit: the gaps between
        # the recorded start times are the step cycles, one commit each.
        self.cycle = median(cycles([e.started_at for e in journal]))

    def after_close(self) -> None:
        self.commits = store_commits(self.path)
        if self.commit == "lmdb":  # a log's appends reach LMDB in groups, off the path
            check(self.commits >= self.steps + 2, f"{self.commits} commits: one per step")

    def figures(self, elapsed: float) -> dict[str, float]:
        """``ratio``: this round's mean step over its mean raw commit. ``ratio_op``: the
        median step cycle over the median raw commit, which one disk stall on either
        side does not move (this shared VM's sync commits vary 0.3-6 ms)."""
        per_step = elapsed / self.steps
        raw, raw_op = self.base["raw_commit"], self.base["raw_commit_median"]
        out = {
            "us_per_step": per_step * 1e6,
            "cycle_us": self.cycle * 1e6,
            "base_us": raw * 1e6,
            "base_op_us": raw_op * 1e6,
            "ratio": per_step / raw,
            "ratio_op": self.cycle / raw_op,
            "commits": self.commits,
        }
        if self.commit == "log":
            out["lmdb_op_us"] = self.base["raw_lmdb_median"] * 1e6
        if self.durability == "process":
            plain = self.base["plain_await"]
            out["plain_await_us"] = plain * 1e6
            out["overhead_us"] = (per_step - plain) * 1e6
            out["overhead_op_us"] = (self.cycle - plain) * 1e6
            # Time the loop's thread was runnable but not running (nothing blocks it at
            # this durability): another task had its CPU. A repetition's mean can double
            # from this alone on a shared machine.
            out["off_cpu_us"] = (elapsed - self.loop_cpu) / self.steps * 1e6
        return out


class ConcurrentSteps(Workload):
    """``CONC_RUNS`` workflows of ``CONC_STEPS`` steps at once, fsync: start to last result.

    Baseline: raw LMDB group commit, ``CONC_RUNS`` records per sync transaction keyed
    as the journal keys them (run key + seq), ``CONC_STEPS`` transactions. The same
    with append-ordered keys is recorded as ``append_us`` (what that layout would allow).
    """

    name = "concurrent_fsync"

    def __init__(
        self, loop: asyncio.AbstractEventLoop, runs: int = CONC_RUNS, steps: int = CONC_STEPS
    ):
        super().__init__(loop)
        self.runs, self.steps = runs, steps

    def setup(self) -> None:
        self.base = {
            "raw_group_run_ordered": raw_group_commits(self.runs, self.steps, "run"),
            "raw_group_append_ordered": raw_group_commits(self.runs, self.steps, "append"),
        }
        self.path = self.tmp("conc")
        self.open_engine(self.path, "fsync")

    def measured(self) -> None:
        cpu, loop_cpu = time.process_time(), time.thread_time()
        self.handles, self.results = self.run(self._go())
        self.cpu = (time.process_time() - cpu, time.thread_time() - loop_cpu)

    async def _go(self) -> tuple[list[RunHandle], list[Any]]:
        assert self.engine is not None
        handles = await asyncio.gather(
            *[self.engine.start(chain, self.steps) for _ in range(self.runs)]
        )
        return handles, await asyncio.gather(*[h.result() for h in handles])

    def check(self) -> None:
        assert self.engine is not None
        check(self.results == [self.steps] * self.runs, "every workflow returned its step count")

        async def lengths() -> list[int]:
            assert self.engine is not None
            return [len(await self.engine.journal(h.run_id)) for h in self.handles]

        check(self.run(lengths()) == [self.steps] * self.runs, "every journal has every step")

    def after_close(self) -> None:
        self.commits = store_commits(self.path)

    def figures(self, elapsed: float) -> dict[str, float]:
        per_step = elapsed / (self.runs * self.steps)
        base = self.base["raw_group_run_ordered"]
        process_cpu, loop_cpu = self.cpu
        steps = self.runs * self.steps
        return {
            "steps_per_s": 1 / per_step,
            "us_per_step": per_step * 1e6,
            "base_us": base * 1e6,
            "append_us": self.base["raw_group_append_ordered"] * 1e6,
            "ratio": per_step / base,
            "commits": self.commits,
            "steps_per_commit": steps / self.commits,
            # CPU time per step: the event loop's thread, and the others (the writer)
            "loop_cpu_us": loop_cpu / steps * 1e6,
            "other_cpu_us": (process_cpu - loop_cpu) / steps * 1e6,
        }


async def concurrent_steps(engine: Engine, runs: int, steps: int) -> float:
    """Seconds per step of ``runs`` workflows of ``steps`` steps started at once, start
    to last result (what ``ConcurrentSteps`` measures), checked."""
    started = time.perf_counter()
    handles = await asyncio.gather(*[engine.start(chain, steps) for _ in range(runs)])
    results = await asyncio.gather(*[h.result() for h in handles])
    elapsed = time.perf_counter() - started
    check(results == [steps] * runs, "baseline: every workflow returned its step count")
    return elapsed / (runs * steps)


class ShortWorkflows(Workload):
    """Short workflows (``steps`` = 0 or 1) under load: ``SHORT_CLIENTS`` clients, each
    starting a workflow and waiting for its result ``SHORT_ROUNDS`` times, so that about
    ``SHORT_CLIENTS`` runs are in flight throughout; start of the first to the last result.

    Baseline: one step's cost in ``CONC_RUNS`` x ``CONC_STEPS`` (the concurrent goal's
    workload) with an engine of the same durability, measured in setup: a workflow's
    own cost (start, finish, result) judged against a step's.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        steps: int,
        durability: str = "fsync",
        clients: int = SHORT_CLIENTS,
        rounds: int = SHORT_ROUNDS,
    ) -> None:
        super().__init__(loop)
        self.steps, self.durability = steps, durability
        self.clients, self.rounds = clients, rounds
        self.name = f"short{steps}_{durability}"

    def setup(self) -> None:
        engine = self.open_engine(self.tmp("short-base"), self.durability)
        self.base = {"step": self.run(concurrent_steps(engine, CONC_RUNS, CONC_STEPS))}
        self.close_engine()
        self.open_engine(self.tmp("short"), self.durability)

    def measured(self) -> None:
        cpu, loop_cpu = time.process_time(), time.thread_time()
        self.results = self.run(self._go())
        self.cpu = (time.process_time() - cpu, time.thread_time() - loop_cpu)

    async def _go(self) -> list[tuple[str, Any]]:
        assert self.engine is not None
        engine, steps = self.engine, self.steps

        async def client() -> list[tuple[str, Any]]:
            done = []
            for _ in range(self.rounds):
                handle = await engine.start(chain, steps)
                done.append((handle.run_id, await handle.result()))
            return done

        outcomes = await asyncio.gather(*[client() for _ in range(self.clients)])
        return [one for done in outcomes for one in done]

    def check(self) -> None:
        assert self.engine is not None
        runs = self.clients * self.rounds
        check(len({run_id for run_id, _ in self.results}) == runs, "every start made a run")
        check(all(r == self.steps for _, r in self.results), "every workflow returned")

        async def stored() -> list[Any]:
            assert self.engine is not None
            return await self.engine.runs(status="completed")

        check(len(self.run(stored())) == runs, "every run is stored as completed")

    def figures(self, elapsed: float) -> dict[str, float]:
        runs = self.clients * self.rounds
        per_workflow = elapsed / runs
        step = self.base["step"]
        process_cpu, loop_cpu = self.cpu
        return {
            "workflows_per_s": 1 / per_workflow,
            "us_per_workflow": per_workflow * 1e6,
            "base_us": step * 1e6,
            "ratio": per_workflow / step,
            # CPU time per workflow: the event loop's thread, and the others (the writer)
            "loop_cpu_us": loop_cpu / runs * 1e6,
            "other_cpu_us": (process_cpu - loop_cpu) / runs * 1e6,
        }


@dataclass
class Built:
    """A store built once and copied for every round (an unfinished run left behind)."""

    path: str
    run_id: str
    steps: int

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def build_replay_store(loop: asyncio.AbstractEventLoop, steps: int = REPLAY_STEPS) -> Built:
    """One run of ``chain_then_park`` with ``steps`` steps recorded, parked, then given back.

    Built at ``durability="process"`` (same journal bytes, far quicker to write); the
    engine closing releases the run's lease, as a dead process's lease runs out.
    """

    async def build(path: str) -> str:
        reset_state(hold=True, want=1)
        engine = Engine(path, durability="process")
        try:
            handle = await engine.start(chain_then_park, steps)
            assert state.all_parked is not None
            await state.all_parked.wait()
            check(state.executed == steps, "build: every step body ran once")
        finally:
            await engine.close()
            reset_state()
        return handle.run_id

    path = temp_dir("replay-built")
    return Built(path, loop.run_until_complete(build(path)), steps)


def copy_store(built: Built, into: str) -> str:
    """A copy of the built store, flushed to the disk: the timed region must not pay for
    writing back the copy's pages (a store's data file is allocated to its map's size, so
    the copy writes all of it, unused tail included)."""
    target = os.path.join(into, "store")
    shutil.copytree(built.path, target)
    for name in os.listdir(target):
        fd = os.open(os.path.join(target, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return target


async def replay_floor(path: str, run_id: str, steps: int) -> float:
    """Seconds per step of the least a replay has to do with this journal format.

    One range scan of the run's journal, one ``ReplayIndex`` built from it, then per
    step: canonical input bytes, ``lookup`` (which compares them with the recorded
    ones), decoding the recorded output, and one ``await`` of a coroutine.
    Straight-line code, no engine.
    """
    env = _lmdb.open(path, readonly=True, **{**raw_env_options(False), "mode": 0o600})
    try:
        db = env.open_db(b"journal", create=False)
        prefix = run_key(run_id)

        async def one(index: _core.ReplayIndex, seq: int, x: int) -> int:
            canonical = orjson.dumps(((x,), {}), option=orjson.OPT_SORT_KEYS)
            record = index.lookup(seq, "bench.counted", canonical)
            assert record is not None and record.body is not None
            value: int = orjson.loads(record.body)
            return value

        started = time.perf_counter()
        with env.begin(buffers=True) as txn:
            cursor = txn.cursor(db=db)
            raws = []
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if bytes(key[: _core.RUN_KEY_SIZE]) != prefix:
                        break
                    raws.append(bytes(value))
        index = _core.ReplayIndex.from_records(raws)
        x = 0
        for seq in range(steps):
            x = await one(index, seq, x)
        elapsed = time.perf_counter() - started
        check(x == steps and not index.unconsumed(), "replay floor: every record replayed")
    finally:
        env.close()
    return elapsed / steps


class Replay(Workload):
    """``engine.recover()`` to the result of a run whose ``REPLAY_STEPS`` steps are recorded.

    Each round copies the built store into a fresh directory (so every round resumes
    the same unfinished run from byte-identical files, without touching the store's
    internals or API beyond what a user does) and opens the engine in setup; the
    timed region is ``recover()`` + ``result()``: the claim (one sync commit), the
    journal scan, the replay of every step, and the finish (one sync commit).
    Baseline: :func:`replay_floor` on the same journal.
    """

    name = "replay"

    def __init__(self, loop: asyncio.AbstractEventLoop, built: Built) -> None:
        super().__init__(loop)
        self.built = built

    def setup(self) -> None:
        self.base = {
            "floor": self.run(replay_floor(self.built.path, self.built.run_id, self.built.steps))
        }
        path = copy_store(self.built, self.tmp("replay"))
        reset_state()
        self.open_engine(path, "fsync")

    def measured(self) -> None:
        self.handles, self.result = self.run(self._go())

    async def _go(self) -> tuple[list[RunHandle], Any]:
        assert self.engine is not None
        handles = await self.engine.recover()
        return handles, await handles[0].result()

    def check(self) -> None:
        assert self.engine is not None
        check([h.run_id for h in self.handles] == [self.built.run_id], "recover() resumed the run")
        check(self.result == self.built.steps, f"replayed result {self.result!r}")
        check(state.executed == 0, f"replay ran {state.executed} step bodies again")
        journal = self.run(self.engine.journal(self.built.run_id))
        check(len(journal) == self.built.steps, "the journal is unchanged by replay")

    def figures(self, elapsed: float) -> dict[str, float]:
        per_step = elapsed / self.built.steps
        base = self.base["floor"]
        return {"us_per_step": per_step * 1e6, "base_us": base * 1e6, "ratio": per_step / base}


def build_recovery_store(loop: asyncio.AbstractEventLoop, runs: int = RECOVERY_RUNS) -> Built:
    """``runs`` runs of ``step_park_step``, each with its first step recorded, given back."""

    async def build(path: str) -> None:
        reset_state(hold=True, want=runs)
        engine = Engine(path, durability="process")
        try:
            await asyncio.gather(*[engine.start(step_park_step, i) for i in range(runs)])
            assert state.all_parked is not None
            await state.all_parked.wait()
        finally:
            await engine.close()
            reset_state()

    path = temp_dir("recovery-built")
    loop.run_until_complete(build(path))
    return Built(path, "", runs)


def scan_floor(path: str) -> float:
    """Seconds to open the environment, count the unfinished runs, and read the first
    one's row and journal: what any recovery has to do before its first step."""
    started = time.perf_counter()
    env = _lmdb.open(path, **raw_env_options(True))
    try:
        active, runs, journal = (
            env.open_db(n, create=False) for n in (b"active", b"runs", b"journal")
        )
        with env.begin(buffers=True) as txn:
            keys = [bytes(k) for k in txn.cursor(db=active).iternext(values=False)]
            row = orjson.loads(bytes(txn.get(keys[0], db=runs)))
            cursor = txn.cursor(db=journal)
            cursor.set_range(keys[0])
            record = _core.decode_records(cursor.value())[0]
        elapsed = time.perf_counter() - started
    finally:
        env.close()
    check(row["status"] == "pending" and record.seq == 0, "scan floor: found a pending run")
    return elapsed


class Recovery(Workload):
    """Engine construction and open, ``recover()``, until the first step that was not
    recorded runs, with ``RECOVERY_RUNS`` unfinished runs in the store (fsync).
    Baseline: :func:`scan_floor` on the same store."""

    name = "recovery"
    unit = "recovery"

    def __init__(self, loop: asyncio.AbstractEventLoop, built: Built) -> None:
        super().__init__(loop)
        self.built = built

    def setup(self) -> None:
        self.base = {"scan": scan_floor(self.built.path)}
        self.path = copy_store(self.built, self.tmp("recovery"))
        reset_state()
        state.first_new_step = asyncio.Event()

    def measured(self) -> None:
        self.recovering = self.run(self._go())

    async def _go(self) -> asyncio.Task[list[RunHandle]]:
        self.started = time.perf_counter()
        self.engine = Engine(self.path)
        await self.engine.open()
        recovering = asyncio.get_running_loop().create_task(self.engine.recover())
        assert state.first_new_step is not None
        await state.first_new_step.wait()
        self.first_at = state.first_new_at
        return recovering

    def check(self) -> None:
        handles = self.run(self.recovering)
        check(len(handles) == self.built.steps, f"recover() resumed {len(handles)} runs")

        async def results() -> list[Any]:
            return list(await asyncio.gather(*[h.result() for h in handles]))

        check(
            sorted(self.run(results())) == [i + 2 for i in range(self.built.steps)],
            "every resumed run finished with its own result",
        )

    def figures(self, elapsed: float) -> dict[str, float]:
        """From the engine's construction to the first call of the first step that was
        not recorded (the timed region also holds the wake-up of the waiter, which
        comes after the other runs launched with the first one have had their turn)."""
        first = self.first_at - self.started
        base = self.base["scan"]
        return {
            "ms": first * 1e3,
            "region_ms": elapsed * 1e3,
            "base_ms": base * 1e3,
            "ratio": first / base,
        }


# -- journal bytes per step


def journal_bytes(path: str) -> dict[str, float]:
    """Bytes per journal record beyond the payload (the step's input and output JSON).

    ``logical``: every LMDB entry's key and value (a chunk of records, or one record) and
    its per-entry cost (8-byte node header, 2-byte slot), over the records, minus the
    payload. ``physical``: the journal database's pages (leaf + branch + overflow) over
    its records, minus the payload.
    """
    env = _lmdb.open(path, readonly=True, **raw_env_options(False))
    try:
        db = env.open_db(b"journal", create=False)
        logical = payload = n = 0
        with env.begin(buffers=True) as txn:
            stat = txn.stat(db)
            for key, value in txn.cursor(db=db):
                for record in _core.decode_records(value):
                    assert record.input is not None and record.body is not None
                    payload += len(record.input) + len(record.body)
                    n += 1
                logical += len(key) + len(value) + 8 + 2
    finally:
        env.close()
    pages = stat["leaf_pages"] + stat["branch_pages"] + stat["overflow_pages"]
    return {
        "records": n,
        "payload": payload / n,
        "logical_overhead": (logical - payload) / n,
        "physical_overhead": (pages * stat["psize"] - payload) / n,
        "fill": logical / (stat["leaf_pages"] * stat["psize"]),
    }


class JournalBytes(Workload):
    """Journal bytes per step: one sequential run, and ``CONC_RUNS`` interleaved runs."""

    name = "journal_bytes"

    def __init__(self, loop: asyncio.AbstractEventLoop, steps: int = REPLAY_STEPS) -> None:
        super().__init__(loop)
        self.steps = steps

    def setup(self) -> None:
        reset_state()
        self.seq_path, self.conc_path = self.tmp("bytes-seq"), self.tmp("bytes-conc")

        async def fill() -> None:
            async with Engine(self.seq_path, durability="process") as engine:
                check(await engine.run(chain, self.steps) == self.steps, "sequential run")
            async with Engine(self.conc_path, durability="process") as engine:
                handles = await asyncio.gather(
                    *[engine.start(chain, CONC_STEPS) for _ in range(CONC_RUNS)]
                )
                results = await asyncio.gather(*[h.result() for h in handles])
                check(results == [CONC_STEPS] * CONC_RUNS, "concurrent runs")

        self.run(fill())

    def measured(self) -> None:
        self.sequential = journal_bytes(self.seq_path)
        self.concurrent = journal_bytes(self.conc_path)

    def check(self) -> None:
        check(self.sequential["records"] == self.steps, "sequential journal length")
        check(self.concurrent["records"] == CONC_RUNS * CONC_STEPS, "concurrent journal length")

    def figures(self, elapsed: float) -> dict[str, float]:
        return {
            "payload": self.sequential["payload"],
            "logical_overhead": self.sequential["logical_overhead"],
            "physical_overhead": self.sequential["physical_overhead"],
            "physical_overhead_concurrent": self.concurrent["physical_overhead"],
            "fill": self.sequential["fill"],
            "fill_concurrent": self.concurrent["fill"],
        }


# -- resident memory of parked runs, each measured in a fresh process


def rss_bytes() -> tuple[int, int]:
    """(resident, resident anonymous) bytes of this process, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        fields = [int(x) for x in f.read().split()]
    page = os.sysconf("SC_PAGE_SIZE")
    return fields[1] * page, (fields[1] - fields[2]) * page


def _trimmed_rss() -> tuple[int, int]:
    """RSS once garbage is collected and the C allocator has returned its free pages:
    what the parked objects themselves hold, without the high-water mark of starting them."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: report it untrimmed
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


async def _park_in_engine(n: int) -> dict[str, float]:
    path = temp_dir("rss")
    try:
        reset_state(hold=True, want=n)
        engine = Engine(path)
        await engine.open()
        await asyncio.sleep(0)
        before = _trimmed_rss()
        started = time.perf_counter()
        await asyncio.gather(*[engine.start(step_park_step, i) for i in range(n)])
        assert state.all_parked is not None
        await state.all_parked.wait()
        elapsed = time.perf_counter() - started
        after = rss_bytes()
        trimmed = _trimmed_rss()
        parked = state.parked
        await engine.close()
        check(parked == n, f"{parked} runs parked, not {n}")
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return {
        "rss": after[0] - before[0],
        "anon": after[1] - before[1],
        "trimmed": trimmed[0] - before[0],
        "seconds": elapsed,
    }


async def _park_bare_tasks(n: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    parked = 0

    async def task() -> None:
        nonlocal parked
        parked += 1
        await loop.create_future()

    before = _trimmed_rss()
    started = time.perf_counter()
    tasks = [loop.create_task(task()) for _ in range(n)]
    await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    after = rss_bytes()
    trimmed = _trimmed_rss()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    check(parked == n, "bare tasks parked")
    return {
        "rss": after[0] - before[0],
        "anon": after[1] - before[1],
        "trimmed": trimmed[0] - before[0],
        "seconds": elapsed,
    }


def parked_rss(kind: str, n: int = PARKED_RUNS) -> dict[str, float]:
    """RSS growth of ``n`` parked runs (``kind="engine"``) or bare tasks (``"tasks"``),
    measured in a fresh interpreter so no earlier allocation hides growth."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "rss", kind, str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(out)
    return figures


def rss_figures(engine: dict[str, float], tasks: dict[str, float], n: int) -> dict[str, float]:
    return {
        "mib_per_10k": engine["rss"] / n * 10_000 / 2**20,
        "anon_mib_per_10k": engine["anon"] / n * 10_000 / 2**20,
        "trimmed_mib_per_10k": engine["trimmed"] / n * 10_000 / 2**20,
        "bytes_per_run": engine["rss"] / n,
        "base_bytes_per_task": tasks["rss"] / n,
        "ratio": engine["rss"] / max(tasks["rss"], 1),
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- goals, verdicts, the table, the machine


@dataclass(frozen=True)
class Goal:
    title: str
    figure: str  # the key of ``figures()`` judged against the goal
    unit: str
    op: str  # "<=", ">=", or "" (report only)
    target: float
    base: str  # the key of the baseline figure the ratio is taken to
    base_title: str
    notes: tuple[tuple[str, str], ...] = ()  # other figures worth a look: (key, label)


GOALS: dict[str, Goal] = {
    "sequential_fsync": Goal(
        title="sequential durable step / raw sync commit",
        figure="ratio_op", unit="x (median op)", op="<=", target=1.1,
        base="base_op_us", base_title="us raw LMDB sync commit (median op)",
        notes=(("cycle_us", "us step (median op)"), ("us_per_step", "us step (mean)"),
               ("base_us", "us raw (mean)"), ("commits", "commits")),
    ),
    "sequential_process": Goal(
        title="step overhead over plain await, process",
        figure="overhead_us", unit="us", op="<=", target=10,
        base="base_us", base_title="us raw LMDB no-sync commit",
        notes=(("overhead_op_us", "us overhead (median op, whole us: journal stamps)"),
               ("plain_await_us", "us plain await"),
               ("ratio_op", "x raw no-sync commit (median op)"),
               ("off_cpu_us", "us/step the loop's thread waited for a CPU")),
    ),
    "sequential_log": Goal(
        title="sequential durable step, commit=log / raw log flush",
        figure="ratio_op", unit="x (median op)", op="<=", target=1.3,
        base="base_op_us", base_title="us raw append + fdatasync (median op)",
        notes=(("cycle_us", "us step (median op)"),
               ("lmdb_op_us", "us raw LMDB sync commit (median op)"),
               ("commits", "LMDB commits")),
    ),
    "concurrent_fsync": Goal(
        title="1,000 workflows x 10 steps, fsync",
        figure="steps_per_s", unit="steps/s", op=">=", target=50_000,
        base="base_us", base_title="us/record raw group commit, run-ordered keys",
        notes=(
            ("us_per_step", "us/step"),
            ("append_us", "us/record raw, append-ordered keys"),
            ("steps_per_commit", "steps/commit"),
            ("loop_cpu_us", "us CPU/step, loop thread"),
            ("other_cpu_us", "us CPU/step, other threads"),
        ),
    ),
    **{
        f"short{steps}_fsync": Goal(
            title=f"{steps}-step workflow / one step of 1,000 x 10, fsync",
            figure="ratio", unit="x", op="<=", target=target,
            base="base_us", base_title="us/step in 1,000 x 10",
            notes=(("workflows_per_s", "workflows/s, 1,000 in flight"),
                   ("us_per_workflow", "us/workflow"),
                   ("loop_cpu_us", "us CPU/workflow, loop thread"),
                   ("other_cpu_us", "us CPU/workflow, other threads")),
        )
        for steps, target in ((1, 1.5), (0, 1.0))
    },
    "replay": Goal(
        title="replay of a 10,000-step journal",
        figure="us_per_step", unit="us/step", op="<=", target=3,
        base="base_us", base_title="us/step replay floor",
    ),
    "journal_bytes": Goal(
        title="journal bytes/step beyond payload",
        figure="logical_overhead", unit="B", op="<=", target=40,
        base="payload", base_title="B payload/step",
        notes=(
            ("physical_overhead", "B on pages, one run"),
            ("physical_overhead_concurrent", "B on pages, 1,000 runs"),
        ),
    ),
    "recovery": Goal(
        title="open -> first resumed step, 10,000 runs",
        figure="ms", unit="ms", op="<=", target=50,
        base="base_ms", base_title="ms open + scan floor",
        notes=(("region_ms", "ms timed region"),),
    ),
    "parked_rss": Goal(
        title="RSS per 10,000 parked runs",
        figure="mib_per_10k", unit="MiB", op="", target=0,
        base="base_bytes_per_task", base_title="B per bare parked task",
        notes=(
            ("bytes_per_run", "B/run"),
            ("anon_mib_per_10k", "MiB anonymous"),
            ("trimmed_mib_per_10k", "MiB after gc + malloc_trim"),
        ),
    ),
}  # fmt: skip


def verdict(name: str, value: float) -> str:
    goal = GOALS[name]
    if not goal.op:
        return "report"
    ok = value <= goal.target if goal.op == "<=" else value >= goal.target
    return "pass" if ok else "MISS"


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-key median over rounds; a ratio's median is the median of per-round ratios."""
    return {key: median([row[key] for row in rows]) for key in rows[0]}


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: dict[str, tuple[int, dict[str, float], list[dict[str, float]]]]) -> str:
    """One line per goal: median of the goal figure (and its spread), the baseline's
    median, the median of per-round ratios to that baseline, the goal, the verdict."""
    head = ("goal", "n", "median", "min..max", "ratio", "baseline", "target", "verdict", "also")
    lines = [head]
    for name, (n, med, rows) in results.items():
        goal = GOALS[name]
        values = [row[goal.figure] for row in rows]
        target = f"{goal.op} {_fmt(goal.target)} {goal.unit}" if goal.op else "report"
        lines.append(
            (
                goal.title,
                str(n),
                f"{_fmt(med[goal.figure])} {goal.unit}",
                f"{_fmt(min(values))}..{_fmt(max(values))}",
                f"{med['ratio']:.2f}x" if "ratio" in med else "-",
                f"{_fmt(med[goal.base])} {goal.base_title}",
                target,
                verdict(name, med[goal.figure]),
                "; ".join(f"{_fmt(med[key])} {label}" for key, label in goal.notes),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine() -> dict[str, str]:
    """What the figures were measured on (no paths)."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    where = os.path.realpath(os.environ.get("SURESTEP_BENCH_DIR") or tempfile.gettempdir())
    fs, mount = "?", ""
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if (where + "/").startswith(parts[1].rstrip("/") + "/") and len(parts[1]) >= len(mount):
                mount, fs = parts[1], parts[2]
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": sys.version.split()[0],
        "lmdb": ".".join(map(str, _lmdb.version())),
        "orjson": orjson.__version__,
        "store filesystem": fs,
    }


def _main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "rss":
        kind, n = argv[1], int(argv[2])
        work = _park_in_engine if kind == "engine" else _park_bare_tasks
        loop = new_loop()
        try:
            print(json.dumps(loop.run_until_complete(work(n))))
        finally:
            loop.close()
        return
    raise SystemExit("usage: workloads.py rss engine|tasks N")


if __name__ == "__main__":
    _main(sys.argv[1:])
