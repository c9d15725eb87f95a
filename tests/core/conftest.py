"""Core tests: the compiled ``surestep._core`` against golden values and the oracle
(``tests/support/oracle.py``)."""

import sys
from pathlib import Path

# tests/support holds the pure-Python oracle; the test modules here import it from there.
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
