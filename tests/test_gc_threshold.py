"""The garbage collector's first threshold while an executing engine is open
(``Engine(gc_threshold=...)``, ``surestep.collector``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from surestep import ConfigurationError, Engine
from surestep.collector import GC_THRESHOLD


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, ...]]:
    """Each test starts from the interpreter's default thresholds and leaves them so."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*before)


async def test_an_executing_engine_raises_the_first_threshold_while_open(
    tmp_path: Path,
) -> None:
    async with Engine(str(tmp_path / "store")):
        assert gc.get_threshold() == (GC_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


async def test_the_last_of_several_engines_to_close_puts_the_thresholds_back(
    tmp_path: Path,
) -> None:
    first = await Engine(str(tmp_path / "one"), gc_threshold=5_000).open()
    second = await Engine(str(tmp_path / "two"), gc_threshold=20_000).open()
    assert gc.get_threshold() == (20_000, 10, 10)  # the largest asked for
    await first.close()
    assert gc.get_threshold() == (20_000, 10, 10)
    await second.close()
    assert gc.get_threshold() == (700, 10, 10)


async def test_none_leaves_the_collector_alone_and_a_client_does_not_touch_it(
    tmp_path: Path,
) -> None:
    async with Engine(str(tmp_path / "a"), gc_threshold=None):
        assert gc.get_threshold() == (700, 10, 10)
    async with Engine(str(tmp_path / "b"), execute=False):
        assert gc.get_threshold() == (700, 10, 10)


async def test_a_threshold_the_application_set_meanwhile_is_kept(tmp_path: Path) -> None:
    async with Engine(str(tmp_path / "store")):
        gc.set_threshold(1_234, 5, 5)
    assert gc.get_threshold() == (1_234, 5, 5)
    gc.set_threshold(50_000, 10, 10)  # already above: nothing to set, nothing to undo
    async with Engine(str(tmp_path / "store")):
        assert gc.get_threshold() == (50_000, 10, 10)
        gc.set_threshold(60_000, 10, 10)
    assert gc.get_threshold() == (60_000, 10, 10)


@pytest.mark.parametrize("bad", [0, -5, 1.5, "10000", True])
def test_a_threshold_that_is_not_a_count_is_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="gc_threshold"):
        Engine(str(tmp_path / "store"), gc_threshold=bad)  # type: ignore[arg-type]
