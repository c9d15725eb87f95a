"""A few thousand seeded-random inputs through the fuzz harnesses, without atheris.

``make fuzz`` runs the same ``one_input`` functions (``fuzz/fuzz_decode.py``,
``fuzz/fuzz_replay.py``) for a million coverage-guided inputs each against an ASan+UBSan
build; this keeps their code, and the invariants they assert, exercised on every CI run.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
if not (FUZZ / "fuzz_decode.py").exists():  # an sdist without fuzz/
    pytest.skip("the fuzz/ harnesses are not in this source tree", allow_module_level=True)
if str(FUZZ) not in sys.path:
    sys.path.insert(0, str(FUZZ))

import fuzz_decode  # noqa: E402
import fuzz_replay  # noqa: E402

from surestep import _core  # noqa: E402

INPUTS = 4000


def _inputs(seed: int) -> list[bytes]:
    """Random bytes of every small length, and mutants of them (what a fuzzer starts with)."""
    rng = random.Random(seed)
    out = []
    for _ in range(INPUTS):
        data = bytearray(rng.randbytes(rng.randrange(0, 160)))
        for _ in range(rng.randrange(0, 3)):  # bias toward the low bytes that pick paths
            if data:
                data[rng.randrange(len(data))] = rng.randrange(8)
        out.append(bytes(data))
    return out


@pytest.mark.parametrize("harness", [fuzz_decode.one_input, fuzz_replay.one_input])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_inputs_keep_every_invariant(harness: Callable[[bytes], None], seed: int) -> None:
    for data in _inputs(seed):
        harness(data)


def test_every_decode_path_is_reached() -> None:
    """Each of the decode harness's modes gets inputs (its first byte picks one)."""
    for mode in range(fuzz_decode.MODES):
        for data in _inputs(mode)[:200]:
            fuzz_decode.one_input(bytes([mode]) + data)


class _Mutant:
    """``surestep._core`` with one thing broken, to show the harnesses notice."""

    def __init__(self, **broken: Any) -> None:
        self.__dict__.update(broken)

    def __getattr__(self, name: str) -> Any:
        return getattr(_core, name)


def test_the_harnesses_catch_a_broken_core(monkeypatch: pytest.MonkeyPatch) -> None:
    def crashing_decode(buf: Any) -> Any:
        if len(buf) > 40:
            raise SystemError("simulated crash in the decoder")
        return _core.decode_record(buf)

    monkeypatch.setattr(fuzz_decode, "_core", _Mutant(decode_record=crashing_decode))
    with pytest.raises(SystemError):
        for data in _inputs(3):
            fuzz_decode.one_input(data)

    class LenientIndex(_core.ReplayIndex):  # type: ignore[misc]
        def lookup(self, seq: int, ident: str, input_canonical: Any) -> Any:
            return self.get(seq)  # never refuses a mismatch

    monkeypatch.setattr(fuzz_replay, "_core", _Mutant(ReplayIndex=LenientIndex))
    with pytest.raises(AssertionError):
        for data in _inputs(4):
            fuzz_replay.one_input(data)


def test_the_harnesses_catch_a_value_decoder_that_drops_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def first_only(buf: Any) -> Any:
        return _core.decode_records(buf)[:1]  # the other records of a value are lost

    monkeypatch.setattr(fuzz_decode, "_core", _Mutant(decode_records=first_only))
    with pytest.raises(AssertionError):
        for data in _inputs(5):
            fuzz_decode.one_input(bytes([5]) + data)
