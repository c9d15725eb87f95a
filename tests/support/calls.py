"""How many times each step body ran: ``calls["name"] += 1`` in a body, then assert on it.

One counter for every test module (module-level ``@function`` bodies need a global);
``tests/conftest.py`` empties it before each test."""

from __future__ import annotations

from collections import Counter
from typing import Any

calls: Counter[Any] = Counter()
