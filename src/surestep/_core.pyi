"""The compiled core: journal record codec, step keys, hashing, replay index.

Pure functions and small classes over bytes: no I/O, no asyncio. Built from
the Cython sources in ``ext/``. Only the runtime and the store import it.

Record layout (little-endian), ``HEADER_SIZE`` = 32 bytes, then the payload::

    0  u8   format version (FORMAT_VERSION)
    1  u8   kind (KIND_*)
    2  u16  attempt (how many attempts the step took; 0 when not a step)
    4  u32  sequence number
    8  u64  step-name hash   (name_hash)
    16 u64  input digest     (input_digest)
    24 u32  payload length
    28 u32  checksum: low 32 bits of XXH64(bytes[0:28] + payload, CHECKSUM_SEED)

A step key is the 16-byte run key followed by the big-endian u32 sequence
number, so one run's journal is one contiguous, ordered LMDB range.
"""

from collections.abc import Callable, Iterable
from typing import Any, final

from typing_extensions import Buffer

__version__: str
FORMAT_VERSION: int
HEADER_SIZE: int
RUN_KEY_SIZE: int
STEP_KEY_SIZE: int
MAX_SEQ: int
MAX_PAYLOAD: int
NAME_SEED: int
INPUT_SEED: int
CHECKSUM_SEED: int

@final
class _NotRecorded: ...

NOT_RECORDED: _NotRecorded  # ReplayIndex.replay: nothing is recorded at that seq

KIND_STEP: int
KIND_STEP_ERROR: int
KIND_SLEEP: int
KIND_EVENT: int
KIND_VALUE: int
KIND_CHILD: int
KIND_STATE: int
KINDS: frozenset[int]

def xxh64(data: Buffer, seed: int = 0) -> int:
    """XXH64 of ``data`` (the reference algorithm, frozen by golden tests)."""

def name_hash(name: str) -> int:
    """Hash of a step name: XXH64 of its UTF-8 bytes with ``NAME_SEED``."""

def input_digest(canonical: Buffer) -> int:
    """Digest of a step's canonical input bytes: XXH64 with ``INPUT_SEED``."""

def step_key(run_key: Buffer, seq: int) -> bytes:
    """``run_key`` (RUN_KEY_SIZE bytes) + big-endian u32 ``seq``."""

def split_step_key(key: Buffer) -> tuple[bytes, int]:
    """Inverse of :func:`step_key`; ``JournalCorruptError`` on a bad key."""

def encode_record(
    kind: int, seq: int, attempt: int, name_hash: int, input_digest: int, payload: Buffer
) -> bytes:
    """Header + payload; ``ValueError`` on an out-of-range field or unknown kind."""

class Record:
    """A decoded, validated journal record (fields are read-only)."""

    @property
    def version(self) -> int: ...
    @property
    def kind(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def name_hash(self) -> int: ...
    @property
    def input_digest(self) -> int: ...
    @property
    def payload(self) -> bytes: ...

def decode_record(buf: Buffer) -> Record:
    """Validate and decode one record; the buffer is copied, never trusted.

    Raises ``UnsupportedFormatError`` for a newer format version and
    ``JournalCorruptError`` for any other defect (short, truncated, trailing
    bytes, unknown kind, bad checksum). Never crashes the process.
    """

class ReplayIndex:
    """One run's recorded steps, by sequence number, for replay."""

    def __init__(self) -> None: ...
    @staticmethod
    def from_records(buffers: Iterable[Buffer]) -> ReplayIndex:
        """Decode every buffer (a run's journal range, in any order) into an index."""

    def add(self, buf: Buffer) -> Record:
        """Decode and insert one record; a repeated sequence number is corrupt."""

    def lookup(self, seq: int, name_hash: int, input_digest: int) -> Record | None:
        """The record at ``seq`` if it matches; ``None`` when nothing is recorded.

        A record at ``seq`` whose name hash or input digest differs raises
        ``NonDeterminismError`` (with ``run_id`` unset: the caller adds it).
        Marks the record as consumed.
        """

    def replay(
        self, seq: int, ident: str, input_canonical: Buffer, loads: Callable[[bytes], Any]
    ) -> Any:
        """A replayed step in one call: hash ``ident``, digest ``input_canonical``,
        ``lookup`` (same errors), and decode a recorded result with ``loads``.

        Returns ``NOT_RECORDED`` when nothing is recorded at ``seq``; the recorded
        output when the record is a step's result whose payload decodes to an object
        with a str ``"n"`` and an ``"o"``; otherwise the matched ``Record``, for the
        caller to read (a recorded failure, another kind, a payload that is not what
        surestep writes).
        """

    def get(self, seq: int) -> Record | None:
        """The record at ``seq`` without checking or consuming it."""

    def unconsumed(self) -> list[int]:
        """Sequence numbers recorded but never looked up, ascending."""

    def __len__(self) -> int: ...
    @property
    def max_seq(self) -> int:
        """Highest recorded sequence number, -1 when empty."""
