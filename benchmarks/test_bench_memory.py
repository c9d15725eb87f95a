"""Resident memory of 10,000 runs parked in one engine, against 10,000 bare tasks."""

from __future__ import annotations

from typing import Any

import pytest

import workloads


@pytest.mark.benchmark(group="memory")
def test_parked_rss(benchmark: Any) -> None:
    """Each round measures both in fresh interpreters; the timing is of the pair
    (interpreter start-up included) and means little: the figures are in extra_info."""
    rows: list[dict[str, float]] = []

    def pair() -> None:
        engine = workloads.parked_rss("engine")
        tasks = workloads.parked_rss("tasks")
        rows.append(workloads.rss_figures(engine, tasks, workloads.PARKED_RUNS))

    benchmark.pedantic(pair, rounds=3)
    from conftest import record

    record(benchmark, "parked_rss", rows)
