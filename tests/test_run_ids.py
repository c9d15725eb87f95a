"""Run ids: 32 hex digits, time-ordered, increasing within a process and unique across
processes, forked ones included."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from surestep.store import base
from surestep.store.base import new_run_id, run_key


def test_a_run_id_is_32_hex_digits_led_by_the_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    run_id = new_run_id()
    after = time.time_ns() // 1_000_000
    assert len(run_id) == 32 and run_key(run_id) == bytes.fromhex(run_id)
    assert before <= int(run_id[:12], 16) <= after + 1


def test_ids_increase_within_a_process_even_in_one_millisecond() -> None:
    ids = [new_run_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_keep_increasing_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    first = new_run_id()
    earlier = time.time_ns() - 60 * 10**9

    class BackInTime:
        @staticmethod
        def time_ns() -> int:
            return earlier

    monkeypatch.setattr(base, "time", BackInTime)
    later = [new_run_id() for _ in range(100)]
    assert [first, *later] == sorted([first, *later])
    assert len({first, *later}) == 101


def test_forked_children_draw_ids_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children forked from one process, all reading the same millisecond, draw no id
    their parent or a sibling draws (each reseeds its generator when forked)."""
    now = time.time_ns()

    class Frozen:
        @staticmethod
        def time_ns() -> int:
            return now

    monkeypatch.setattr(base, "time", Frozen)
    new_run_id()  # the generator as the children inherit it
    per_child, children = 2_000, 4
    pipes = []
    for _ in range(children):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its ids to the pipe, then out without pytest's teardown
            try:
                os.close(read)
                with os.fdopen(write, "w") as out:
                    out.write("\n".join(new_run_id() for _ in range(per_child)))
            finally:
                os._exit(0)
        os.close(write)
        pipes.append((pid, read))
    mine = [new_run_id() for _ in range(per_child)]
    drawn = [mine]
    for pid, read in pipes:
        with os.fdopen(read) as got:
            drawn.append(got.read().split("\n"))
        assert os.waitpid(pid, 0)[1] == 0
    assert all(len(ids) == per_child for ids in drawn)
    everything = [run_id for ids in drawn for run_id in ids]
    assert len(set(everything)) == len(everything)
    assert {run_id[:12] for run_id in everything} == {f"{now // 1_000_000:012x}"}


def test_ids_drawn_on_several_threads_at_once_are_all_distinct() -> None:
    """Engines' loops and the LMDB writer draw ids on their own threads."""
    drawn: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(len(drawn))

    def draw(into: list[str]) -> None:
        start.wait()
        into.extend(new_run_id() for _ in range(20_000))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=draw, args=(d,)) for d in drawn]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    every = [run_id for ids in drawn for run_id in ids]
    assert len(set(every)) == len(every)
    assert all(ids == sorted(ids) for ids in drawn)
