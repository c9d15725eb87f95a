"""Run one fuzz harness under atheris: ``python fuzz/run.py decode|replay [libFuzzer flags]``.

``make fuzz`` (``fuzz/run.sh``) runs this against an AddressSanitizer + UBSan build of the
core; run by hand it fuzzes whichever ``surestep._core`` the interpreter imports. The
harness modules and the oracle are instrumented for Python coverage; the core's own C
coverage reaches libFuzzer when it was built with ``-fsanitize=fuzzer-no-link`` and a
libFuzzer runtime is preloaded (``fuzz/run.sh`` does both when clang is available).

``FUZZ_EXPECT_CORE=<dir>``: refuse to start unless ``surestep._core`` comes from ``<dir>``
(so a sanitized run cannot silently fuzz the ordinary build).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

HARNESSES = {"decode": "fuzz_decode", "replay": "fuzz_replay"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in HARNESSES:
        sys.exit(f"usage: {sys.argv[0]} {{{'|'.join(HARNESSES)}}} [libFuzzer flags]")
    name = HARNESSES[sys.argv.pop(1)]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    # The oracle stays uninstrumented: its pure-Python XXH64 under coverage hooks took most
    # of each run; the harness's branches say which operations ran.
    with atheris.instrument_imports(include=[name, "fuzz_common"]):
        harness = __import__(name)
    from surestep import _core

    expected = os.environ.get("FUZZ_EXPECT_CORE")
    where = str(Path(_core.__file__).resolve())
    if expected and not where.startswith(str(Path(expected).resolve())):
        sys.exit(f"surestep._core comes from {where}, not from {expected}")
    print(f"fuzzing {name}.one_input against {where}", flush=True)
    atheris.Setup(sys.argv, harness.one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
