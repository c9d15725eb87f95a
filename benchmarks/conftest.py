"""pytest-benchmark harness for the goal workloads (see ``workloads.py``).

``make bench`` runs these files. Every benchmark times ``Workload.measured()``
with ``benchmark.pedantic`` and an explicit number of rounds; each round's setup
measures the workload's baseline in the same process, so every round gives a
ratio, and the terminal summary shows the median figure and median ratio of each
goal. Teardown checks that what was measured was correct (no timed assertions).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import workloads

_results: dict[str, tuple[int, dict[str, float], list[dict[str, float]]]] = {}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The product's loop (uvloop), shared by a module's benchmarks and built stores."""
    loop = workloads.new_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture
def measure(benchmark: Any) -> Callable[..., dict[str, float]]:
    """``measure(goal, make_workload, rounds)``: time ``rounds`` fresh workloads."""

    def run(goal: str, make: Callable[[], workloads.Workload], rounds: int) -> dict[str, float]:
        made: list[workloads.Workload] = []

        def setup() -> tuple[tuple[workloads.Workload], dict[str, Any]]:
            work = make()
            made.append(work)
            work.setup()
            gc.collect()
            return (work,), {}

        try:
            benchmark.pedantic(
                lambda work: work.measured(),
                setup=setup,
                teardown=lambda work: work.teardown(),
                rounds=rounds,
            )
            for work in made:  # --benchmark-disable runs one round and no teardown
                work.teardown()
        except BaseException:
            for work in made:
                work.cleanup()
            raise
        if benchmark.stats is None:
            return {}
        rows = [work.figures(t) for work, t in zip(made, benchmark.stats.stats.data, strict=True)]
        return record(benchmark, goal, rows)

    return run


def record(benchmark: Any, goal: str, rows: list[dict[str, float]]) -> dict[str, float]:
    """Attach the per-round figures and their medians to the benchmark and the summary."""
    med = workloads.medians(rows)
    benchmark.extra_info.update({"goal": goal, "rounds": rows, **med})
    benchmark.extra_info["verdict"] = workloads.verdict(goal, med[workloads.GOALS[goal].figure])
    _results[goal] = (len(rows), med, rows)
    return med


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _results:
        return
    order = [name for name in workloads.GOALS if name in _results]
    terminalreporter.section(
        "surestep goals (median per round; ratio to the same round's baseline)"
    )
    terminalreporter.write_line(workloads.format_table({name: _results[name] for name in order}))
