"""What the fuzz harnesses share: a reader over the fuzz bytes, the oracle, outcome helpers.

The harnesses take plain ``bytes`` and use no atheris API, so the same functions run under
atheris (``fuzz/run.py``, ``make fuzz``) and in the regular suite
(``tests/test_fuzz_smoke.py``, seeded random bytes).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

# The pure-Python model of the core lives with the tests (tests/support/oracle.py).
_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from support import oracle  # noqa: E402
from surestep import _core  # noqa: E402
from surestep.errors import JournalCorruptError, UnsupportedFormatError  # noqa: E402

__all__ = ["Reader", "fields", "oracle", "outcome", "reseal"]

fields = oracle.fields  # a record (core or oracle) as a plain tuple; None stays None


class Reader:
    """Consumes the fuzz input front to back; past its end every read gives zeros.

    Reading never fails, so every byte string is a valid program for a harness, and
    small mutations of the input make small changes to what the harness does.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return max(0, len(self.data) - self.pos)

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk + bytes(n - len(chunk))

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "little")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "little")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def blob(self, limit: int) -> bytes:
        """A length byte (modulo ``limit + 1``), then that many bytes."""
        return self.take(self.u8() % (limit + 1))

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def _sealed_checksum(data: bytes) -> bytes:
    return struct.pack("<I", _core.xxh64(data, _core.CHECKSUM_SEED) & 0xFFFFFFFF)


def reseal(raw: bytes | bytearray) -> bytes:
    """``raw`` with a correct checksum, so only the defect we made remains.

    Format 1 (32 bytes or more): over the header's first 28 bytes and the payload.
    Format 2 (any other first byte): where the record's own length field puts it, if that
    field reads and the buffer reaches that far; otherwise ``raw`` unchanged.
    """
    raw = bytearray(raw)
    if raw[:1] == b"\x01":
        if len(raw) >= _core.HEADER_SIZE:
            raw[28:32] = _sealed_checksum(bytes(raw[:28] + raw[32:]))
        return bytes(raw)
    try:
        length, pos = oracle.read_varint(bytes(raw), 1, len(raw))
    except Exception:  # the length field itself is cut or malformed
        return bytes(raw)
    end = pos + length
    if end + 4 <= len(raw):
        raw[end : end + 4] = _sealed_checksum(bytes(raw[:end]))
    return bytes(raw)


def outcome(call: Any, *args: Any) -> tuple[Any, ...]:
    """What ``call(*args)`` does: ``("ok", fields)`` or ``(error class name, seq)``.

    A list of records (``decode_records``) gives ``("ok", [fields, ...])``. Only the
    journal's own errors are caught: anything else escapes and is a finding.
    """
    try:
        result = call(*args)
    except UnsupportedFormatError as exc:
        return ("unsupported", exc.seq)
    except JournalCorruptError as exc:
        return ("corrupt", exc.seq)
    if isinstance(result, list):
        return ("ok", [fields(rec) for rec in result])
    return ("ok", fields(result))
