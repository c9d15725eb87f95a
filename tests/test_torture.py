"""The torture test at a small size (the full size: ``python tests/support/torture.py``)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.torture import torture

pytestmark = [pytest.mark.slow, pytest.mark.torture, pytest.mark.citus_forms]


def test_torture(tmp_path: Path, store_url: str) -> None:
    seed = random.randrange(1 << 30)
    figures = torture(store_url, str(tmp_path / "ledger"), 80, 3, 12, seed, concurrency=2)
    assert figures.kills == 12 and figures.kills_mid_step >= 6, (figures, seed)
    assert figures.redone_steps >= figures.kills_mid_step, figures
