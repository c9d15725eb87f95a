"""The open-loop latency benchmark's own parts (benchmarks/openloop.py): its schedule, its
percentiles, its saturation verdicts, and one real generator process against a host."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import openloop


def test_schedule_is_fixed_intervals_for_the_duration() -> None:
    assert openloop.schedule(4, 1) == [0.0, 0.25, 0.5, 0.75]
    assert openloop.schedule(2.5, 1) == [0.0, 0.4, 0.8]
    assert openloop.schedule(3, 1) == [0.0, 1 / 3, 2 / 3]
    due = openloop.schedule(10_000, 2)
    assert len(due) == 20_000
    assert due[1] == 1e-4 and due[-1] == 19_999 / 10_000
    for rate, duration in ((0, 1), (1, 0), (-5, 1)):
        with pytest.raises(ValueError):
            openloop.schedule(rate, duration)


def test_percentiles_are_nearest_rank_over_the_full_sample() -> None:
    sample = [float(v) for v in range(1, 1001)]
    random.Random(7).shuffle(sample)
    assert openloop.summary(sample) == {"p50": 500.0, "p99": 990.0, "p99.9": 999.0, "max": 1000.0}
    ten_thousand = list(range(10_000, 0, -1))
    assert openloop.summary(ten_thousand) == {
        "p50": 5000,
        "p99": 9900,
        "p99.9": 9990,
        "max": 10_000,
    }
    # One slow request in 1,000 is the p99.9 and the max, and moves neither p50 nor p99.
    spike = [1.0] * 999 + [250.0]
    assert openloop.summary(spike) == {"p50": 1.0, "p99": 1.0, "p99.9": 1.0, "max": 250.0}
    spike = [1.0] * 998 + [250.0, 300.0]
    assert openloop.summary(spike)["p99.9"] == 250.0
    assert openloop.summary([3.5]) == {"p50": 3.5, "p99": 3.5, "p99.9": 3.5, "max": 3.5}
    with pytest.raises(ValueError):
        openloop.percentile([], 0.5)
    with pytest.raises(ValueError):
        openloop.percentile([1.0], 0)


def test_a_sustained_rate_is_not_saturated() -> None:
    due = openloop.schedule(1000, 10)
    jitter = random.Random(1)
    latencies: list[float | None] = [0.002 + jitter.random() * 0.003 for _ in due]
    assert openloop.saturation(1000, 998, latencies, due, stopped=False) == []
    # Latency tripling from 1 to 3 ms is noise, not a queue: 2 ms over 5 s is far below
    # the growth a queue at 95% of the offered rate makes.
    rising: list[float | None] = [0.001 + 0.002 * i / len(due) for i in range(len(due))]
    assert openloop.saturation(1000, 1000, rising, due, stopped=False) == []


def test_saturation_reasons() -> None:
    due = openloop.schedule(100, 10)
    flat: list[float | None] = [0.01] * len(due)
    assert openloop.saturation(100, 80, flat, due, stopped=False) == [
        "achieved 80/s < 95% of 100/s"
    ]
    # A host serving 80 of 100 requests a second: each second adds 0.2 s of queue (the
    # medians: requests 125 and 875 of 1,000, due at 1.24 s and 8.74 s).
    queue: list[float | None] = [0.01 + 0.2 * t for t in due]
    (reason,) = openloop.saturation(100, 99, queue, due, stopped=False)
    assert reason == "latency growing: p50 258.0 ms in the first quarter, 1758.0 ms in the last"
    unanswered = [*flat[:-3], None, None, None]
    assert openloop.saturation(100, 100, unanswered, due, stopped=False) == [
        "3 requests never answered"
    ]
    assert openloop.saturation(100, 100, flat, due, stopped=True) == [
        "stopped: the in-flight bound was reached"
    ]


def test_verdict_names_the_saturation_point_and_what_followed() -> None:
    def row(rate: float, saturated: list[str], stopped: float | None = None) -> dict[str, object]:
        return {
            "offered_per_s": rate,
            "saturated": saturated,
            "stopped_at_s": stopped,
            "max_in_flight": 500,
        }

    rows = [row(100, []), row(1000, [])]
    assert openloop.verdict(rows) == "no saturation up to 1,000/s"
    rows += [row(5000, ["achieved 3,000/s < 95% of 5,000/s"]), row(10_000, ["x"], stopped=1.5)]
    assert openloop.verdict(rows).splitlines() == [
        "saturated at 5,000/s (highest sustained: 1,000/s)",
        "  5,000/s: achieved 3,000/s < 95% of 5,000/s",
        "  10,000/s: x; sending stopped 1.5 s in, with 500 in flight (memory bounded)",
    ]
    # A stall flags one rate, and a higher one is sustained: not the saturation point.
    rows = [row(100, []), row(1000, ["latency growing"]), row(5000, []), row(10_000, ["y"])]
    assert openloop.verdict(rows).splitlines() == [
        "saturated at 10,000/s (highest sustained: 5,000/s)",
        "  1,000/s: latency growing (below a rate that was sustained)",
        "  10,000/s: y",
    ]
    assert openloop.verdict(rows[:3]).splitlines() == [
        "no saturation up to 5,000/s",
        "  1,000/s: latency growing (below a rate that was sustained)",
    ]
    assert openloop.verdict([row(5, ["z"])]) == "saturated at 5/s (the lowest rate)\n  5/s: z"


def test_generator_process_against_a_host() -> None:
    served = 0

    async def serve() -> int:
        nonlocal served
        served += 1
        mine = served
        await asyncio.sleep(0)
        return 3 if mine != 7 else 4  # one wrong answer

    result = asyncio.run(openloop.measure_rate(serve, rate=400, duration=0.5, bound=1000, expect=3))
    report = result.report
    assert report.sent == served == 200
    assert len(result.sample) == 200 and all(x >= 0 for x in result.sample)
    assert (report.errors, report.wrong, report.stopped_at) == (0, 1, None)
    assert result.host_error == ""


def test_generator_stops_at_the_bound_and_collects_what_it_is_owed() -> None:
    async def slow() -> int:
        await asyncio.sleep(0.5)
        raise RuntimeError("refused")

    result = asyncio.run(openloop.measure_rate(slow, rate=2000, duration=1, bound=20, expect=1))
    report = result.report
    assert report.stopped_at is not None
    assert report.sent == 20 and report.max_in_flight == 20
    assert report.errors == 20 and len(result.sample) == 20
    assert result.host_error == "RuntimeError('refused')"
    assert "stopped: the in-flight bound was reached" in result.saturated()


def test_achieved_rate_counts_answers_between_the_first_and_the_last() -> None:
    def achieved(answered: int, first: float, last: float) -> float:
        latencies: list[float | None] = [0.5] * answered
        report = openloop.Report(
            rate=100, duration=10, sent=1000, latencies=latencies + [None] * (1000 - answered),
            errors=0, wrong=0, stopped_at=None, max_in_flight=1, first_answer=first,
            last_answer=last,
        )  # fmt: skip
        return openloop.RateResult(report, 1, "").achieved

    # Kept up: 1,000 answers 0.01 s apart, however late the first one came.
    assert achieved(1000, 0.5, 10.49) == pytest.approx(100)
    # A slow start, then catching up: answers came faster than offered for a while.
    assert achieved(1000, 2.0, 10.49) == pytest.approx(100)
    # Fell behind: 600 answers over 10 s is its capacity, 60/s.
    assert achieved(600, 0.5, 10.5) == pytest.approx(59.9)
    assert achieved(1, 0.5, 0.5) == 0.0
